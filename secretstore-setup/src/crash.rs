//! Named crash points for crash-safety tests.
//!
//! Built with the cargo feature `crash-points` (the test build enables it; release builds do not),
//! the process kills itself with SIGKILL when it reaches the point named by the environment variable
//! [`CRASH_ENV`] — exactly what `kill -9` at that instant would do. Without the feature, [`point`] is
//! an empty inline function: no environment lookup, nothing a production process could be made to do.

/// The environment variable naming the point to crash at (read only with the `crash-points` feature).
pub const CRASH_ENV: &str = "EDGESEAL_TEST_CRASH_AT";

/// Whether this build has crash points (the cargo feature `crash-points`).
pub const ENABLED: bool = cfg!(feature = "crash-points");

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

/// The points of a supervised, static-sealed boot ([`crate::seal::boot`]), in order; a first boot
/// reaches all of them, a reboot those not in [`STATIC_FIRST_BOOT_ONLY`]. After the login the
/// configuration points of [`POINTS`] from `after-kv-mount` on are reached too.
pub const STATIC_POINTS: &[&str] = &[
    "after-kek",
    "after-pending-marker",
    "after-seal-material",
    "after-first-login",
    "after-recovery-key",
    "before-setup-revoke",
];

/// The points of `restore` ([`crate::seal::restore`]), in order. After the last one the restore is
/// done but for its converging boot, which `run` also does.
pub const RESTORE_POINTS: &[&str] = &[
    "restore-after-marker",
    "restore-after-set-aside",
    "restore-after-keys",
    "restore-after-self-init",
    "restore-after-snapshot",
    "restore-after-revoke",
    "restore-after-marker-removed",
];

/// The points of `cluster join` ([`crate::cluster::ops::join`]), in order, then the one of the joining
/// boot: the member is open but not yet checked to be in the bundle's cluster (`join-pending` stays).
pub const JOIN_POINTS: &[&str] =
    &["join-after-membership", "join-after-marker", "join-after-keys", "join-before-check", "after-join"];

/// The static-seal points only a first boot reaches.
pub const STATIC_FIRST_BOOT_ONLY: &[&str] =
    &["after-pending-marker", "after-seal-material", "after-first-login", "after-recovery-key"];

/// The points only a run with a seed file still to scrub reaches (`services.<svc>.seed_file`): after
/// its values were written to the store, before the file is rewritten without them.
pub const SEED_POINTS: &[&str] = &["before-seed-scrub"];

/// The points of a fleet sync inside `run` (`security-bootstrap` `commands::fleet_node`): after the
/// first secret of a sync is written to the local store, before what is installed is persisted.
pub const FLEET_POINTS: &[&str] = &["fleet-mid-install"];

/// The points of `keystore rewrap` ([`crate::rewrap`]), in order: once the old KEK opened the
/// keystore, once the new KEK is derived (nothing written yet), once the new file is in place.
pub const REWRAP_POINTS: &[&str] = &["rewrap-after-old-kek", "rewrap-after-new-kek", "rewrap-after-write"];

/// The points of a Shamir `security-bootstrap rekey` ([`crate::rekey`]), in order.
pub const REKEY_POINTS: &[&str] =
    &["rekey-after-init", "rekey-after-pending", "rekey-after-verify", "rekey-after-promote"];

/// The points only a first initialization reaches.
pub const FIRST_INIT_ONLY: &[&str] = &["before-init", "after-init", "after-keystore"];

/// The points a run on an already initialized store (a reboot) reaches.
pub fn reboot_points() -> impl Iterator<Item = &'static str> {
    POINTS.iter().copied().filter(|p| !FIRST_INIT_ONLY.contains(p))
}

/// Dies here if the test asked for it.
#[cfg(feature = "crash-points")]
pub fn point(name: &str) {
    if std::env::var_os(CRASH_ENV).is_some_and(|v| v == name) {
        tracing::warn!(point = name, "test crash point reached: killing the process");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

/// Without the `crash-points` feature a crash point is nothing at all.
#[cfg(not(feature = "crash-points"))]
#[inline(always)]
pub fn point(_name: &str) {}
