//! Named crash points for crash-safety tests.
//!
//! When the environment variable `EDGESEAL_TEST_CRASH_AT` names a point, the process kills itself with
//! SIGKILL when it reaches it — exactly what `kill -9` at that instant would do. Unset (always, in
//! production), each point is one environment lookup.

/// The environment variable naming the point to crash at.
pub const CRASH_ENV: &str = "EDGESEAL_TEST_CRASH_AT";

/// Every crash point, in the order a first initialization reaches them.
pub const POINTS: &[&str] = &[
    "after-health",
    "after-kek",
    "before-init",
    "after-init",
    "after-keystore",
    "after-unseal",
    "after-root",
    "after-kv-mount",
    "after-approle",
    "mid-services",
    "after-services",
    "after-secrets",
    "after-issuer",
    "mid-file-tokens",
    "after-file-tokens",
    "before-root-revoke",
];

/// The points only a first initialization reaches.
pub const FIRST_INIT_ONLY: &[&str] = &["before-init", "after-init", "after-keystore"];

/// The points a run on an already initialized store (a reboot) reaches.
pub fn reboot_points() -> impl Iterator<Item = &'static str> {
    POINTS.iter().copied().filter(|p| !FIRST_INIT_ONLY.contains(p))
}

/// Dies here if the test asked for it.
pub fn point(name: &str) {
    if std::env::var_os(CRASH_ENV).is_some_and(|v| v == name) {
        tracing::warn!(point = name, "test crash point reached: killing the process");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}
