//! Named crash points between the write phases of a run ([`crate::write`]), for crash-safety tests.
//!
//! Built with the cargo feature `crash-points` (pki-init's own tests turn it on through a
//! dev-dependency on the crate itself; release builds do not), the process kills itself with SIGKILL
//! when it reaches the point named by the environment variable [`CRASH_ENV`] — exactly what `kill -9`
//! at that instant would do. Without the feature, a point is an empty inline function: no environment
//! lookup, nothing a production process could be made to do.

/// The environment variable naming the point to crash at (read only with the `crash-points` feature).
pub const CRASH_ENV: &str = "EDGESEAL_TEST_PKI_CRASH_AT";

/// Whether this build has crash points (the cargo feature `crash-points`).
pub const ENABLED: bool = cfg!(feature = "crash-points");

/// Every temp file is written and durable; nothing is in place yet.
pub const AFTER_SYNC: &str = "pki-after-sync";
/// The CA certificates and the leaf keys are in place and durable; no leaf certificate is.
pub const AFTER_KEYS: &str = "pki-after-keys";
/// Every certificate is in place; leaves no longer configured are not removed yet, and the renames
/// of the leaf certificates are not synced yet.
pub const AFTER_CERTS: &str = "pki-after-certs";

/// Every crash point, in the order a run that writes reaches them.
pub const POINTS: &[&str] = &[AFTER_SYNC, AFTER_KEYS, AFTER_CERTS];

/// Dies here if the test asked for it.
#[cfg(feature = "crash-points")]
pub(crate) fn point(name: &str) {
    if std::env::var_os(CRASH_ENV).is_some_and(|v| v == name) {
        tracing::warn!(point = name, "test crash point reached: killing the process");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

/// Without the `crash-points` feature a crash point is nothing at all.
#[cfg(not(feature = "crash-points"))]
#[inline(always)]
pub(crate) fn point(_name: &str) {}
