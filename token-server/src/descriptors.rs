//! The process's file-descriptor budget. Every token-socket connection holds descriptors for as long
//! as it is open (the socket, the pinned `/proc/<pid>` directory, the pidfd, and one transient `/proc`
//! or executable read during attestation), so the number of connections served at once must leave
//! room for what the process itself needs: OpenBao TLS connections (token issuance and the unseal
//! watchdog), the Docker client, KDF plug-in pipes, log files. This module raises the soft
//! `RLIMIT_NOFILE` to the hard limit at startup and derives the connection cap from the result.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use thiserror::Error;

/// Descriptors kept for the process's own needs, never given to token-socket connections.
pub const RESERVE: u64 = 256;
/// Descriptors one connection may hold at once (socket, `/proc/<pid>` directory, pidfd, one transient read).
pub const PER_CONNECTION: u64 = 4;
/// The soft limit asked for when the hard limit is unlimited (the kernel's default `fs.nr_open`).
pub const UNLIMITED_TARGET: u64 = 1 << 20;

/// The soft descriptor limit could not be raised.
#[derive(Debug, Error)]
#[error("cannot raise the open-file limit (RLIMIT_NOFILE) from {from} to {to}: {source}; raise it for the service (systemd: LimitNOFILE=65536)")]
pub struct RaiseError {
    /// The soft limit before.
    pub from: u64,
    /// The soft limit asked for.
    pub to: u64,
    /// What setrlimit said.
    #[source]
    pub source: std::io::Error,
}

/// RLIMIT_NOFILE before and after [`raise_nofile_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofileLimit {
    /// The soft limit found at startup.
    pub before: u64,
    /// The soft limit now in effect.
    pub now: u64,
}

/// The soft limit to ask for: the hard limit (capped at [`UNLIMITED_TARGET`] when unlimited), never
/// lower than the current soft limit. `None` stands for `RLIM_INFINITY`.
pub fn nofile_target(soft: Option<u64>, hard: Option<u64>) -> Option<u64> {
    match (soft, hard) {
        (None, _) => None,
        (Some(soft), None) => Some(soft.max(UNLIMITED_TARGET)),
        (Some(soft), Some(hard)) => Some(soft.max(hard)),
    }
}

/// How many connections may be served at once: `configured`, but no more than the descriptors above
/// [`RESERVE`] allow at [`PER_CONNECTION`] each (at least 1).
pub fn connection_budget(configured: usize, soft_limit: Option<u64>) -> usize {
    let Some(limit) = soft_limit else { return configured.max(1) };
    let fits = usize::try_from(limit.saturating_sub(RESERVE) / PER_CONNECTION).unwrap_or(usize::MAX);
    configured.min(fits).max(1)
}

/// The current soft RLIMIT_NOFILE (`None`: unlimited).
pub fn nofile_soft_limit() -> Option<u64> {
    getrlimit(Resource::Nofile).current
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (children such as OpenBao and plug-ins inherit it).
pub fn raise_nofile_limit() -> Result<NofileLimit, RaiseError> {
    let limit = getrlimit(Resource::Nofile);
    let before = limit.current.unwrap_or(u64::MAX);
    let Some(target) = nofile_target(limit.current, limit.maximum) else {
        return Ok(NofileLimit { before, now: before });
    };
    if target > before {
        setrlimit(Resource::Nofile, Rlimit { current: Some(target), maximum: limit.maximum })
            .map_err(|e| RaiseError { from: before, to: target, source: e.into() })?;
    }
    Ok(NofileLimit { before, now: nofile_soft_limit().unwrap_or(u64::MAX) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_is_the_hard_limit() {
        let cases = [
            (Some(1024), Some(524_288), Some(524_288)),
            (Some(1024), Some(1024), Some(1024)),
            (Some(65_536), Some(65_536), Some(65_536)),
            (Some(1024), None, Some(UNLIMITED_TARGET)),
            (Some(2_000_000), None, Some(2_000_000)),
            (None, None, None),
            // A soft limit above the hard one cannot exist, but is never lowered.
            (Some(4096), Some(1024), Some(4096)),
        ];
        for (soft, hard, want) in cases {
            assert_eq!(nofile_target(soft, hard), want, "soft={soft:?} hard={hard:?}");
        }
    }

    #[test]
    fn budget_leaves_the_reserve() {
        let cases = [
            (2048, Some(1024), (1024 - 256) / 4),
            (2048, Some(65_536), 2048),
            (100, Some(65_536), 100),
            (2048, Some(8_000), (8_000 - 256) / 4),
            (2048, Some(100), 1),
            (2048, Some(0), 1),
            (0, Some(65_536), 1),
            (2048, None, 2048),
        ];
        for (configured, limit, want) in cases {
            assert_eq!(connection_budget(configured, limit), want, "configured={configured} limit={limit:?}");
        }
    }
}
