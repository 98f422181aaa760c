//! Connection caps: how many connections the server holds open at once in total, per peer (a host
//! uid or a container), and per uid across all its containers. The accept loop never waits for a
//! free slot: a connection over a cap is answered at once and closed ("shed"), so a flood from one
//! peer costs the others nothing but the accept itself.
//!
//! The per-uid cap exists because a container id is read from the caller's cgroup path, and a user
//! with a delegated cgroup subtree (systemd user sessions) can name a cgroup like a container's:
//! without it, one local user could open `max_connections_per_peer` connections under each invented
//! container id. What remains: a user owning many uids (subordinate uid ranges for rootless
//! containers) can fill the global cap with `max_connections_per_uid` connections per uid; the cap
//! then still holds the descriptors below the process limit, and connections are short-lived.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use hyper::StatusCode;

use crate::limits::PeerKey;

/// Connections a uid may hold open from processes that could not be pinned ([`PeerKey::Unpinned`]):
/// they can never get a token, only an answer.
pub const UNPINNED_PER_UID: usize = 2;

/// The caps, counted per live connection.
#[derive(Debug)]
pub struct ConnectionLimits {
    total: usize,
    per_peer: usize,
    per_uid: usize,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    peers: HashMap<PeerKey, usize>,
    uids: HashMap<u32, usize>,
}

/// Why a connection was shed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shed {
    /// The server holds its most connections.
    Total {
        /// The global cap.
        limit: usize,
    },
    /// This peer holds its most connections.
    Peer {
        /// The peer.
        peer: PeerKey,
        /// The per-peer cap.
        limit: usize,
    },
    /// This uid holds its most connections (host and containers together).
    Uid {
        /// The uid.
        uid: u32,
        /// The per-uid cap.
        limit: usize,
    },
}

impl Shed {
    /// 503 when the server is full, 429 when the caller is over its own share.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Total { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Peer { .. } | Self::Uid { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }
}

impl fmt::Display for Shed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Total { limit } => {
                write!(f, "the token server holds its most connections ({limit}); retry shortly")
            }
            Self::Peer { peer, limit } => write!(
                f,
                "too many open connections from {peer} (at most {limit}); close idle connections and retry"
            ),
            Self::Uid { uid, limit } => write!(
                f,
                "too many open connections from uid {uid} (at most {limit}, host and containers together); close idle connections and retry"
            ),
        }
    }
}

/// One counted connection; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot {
    limits: Arc<ConnectionLimits>,
    peer: PeerKey,
    uid: u32,
}

impl ConnectionLimits {
    /// At most `total` connections, `per_peer` per peer, `per_uid` per uid (each at least 1).
    pub fn new(total: usize, per_peer: usize, per_uid: usize) -> Self {
        Self { total: total.max(1), per_peer: per_peer.max(1), per_uid: per_uid.max(1), counts: Mutex::default() }
    }

    /// The global cap.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.lock().total
    }

    /// Counts a connection from `uid` as `peer`, or says which cap it would exceed. Never waits.
    pub fn try_acquire(self: &Arc<Self>, uid: u32, peer: PeerKey) -> Result<Slot, Shed> {
        let mut counts = self.lock();
        if counts.total >= self.total {
            return Err(Shed::Total { limit: self.total });
        }
        if counts.uids.get(&uid).copied().unwrap_or(0) >= self.per_uid {
            return Err(Shed::Uid { uid, limit: self.per_uid });
        }
        let per_peer =
            if matches!(peer, PeerKey::Unpinned { .. }) { self.per_peer.min(UNPINNED_PER_UID) } else { self.per_peer };
        if counts.peers.get(&peer).copied().unwrap_or(0) >= per_peer {
            return Err(Shed::Peer { peer, limit: per_peer });
        }
        counts.total += 1;
        *counts.uids.entry(uid).or_default() += 1;
        *counts.peers.entry(peer.clone()).or_default() += 1;
        Ok(Slot { limits: self.clone(), peer, uid })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.limits.lock();
        counts.total = counts.total.saturating_sub(1);
        // Entries are removed at zero, so the maps never hold more keys than there are connections.
        if let Some(n) = counts.uids.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                counts.uids.remove(&self.uid);
            }
        }
        if let Some(n) = counts.peers.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                counts.peers.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(uid: u32) -> PeerKey {
        PeerKey::new(uid, None)
    }

    fn container(c: char) -> PeerKey {
        PeerKey::new(0, Some(&c.to_string().repeat(64)))
    }

    #[test]
    fn per_peer_cap_does_not_touch_other_peers() {
        let limits = Arc::new(ConnectionLimits::new(100, 2, 100));
        let held: Vec<_> = (0..2).map(|_| limits.try_acquire(1000, host(1000)).unwrap()).collect();
        assert_eq!(limits.try_acquire(1000, host(1000)).unwrap_err(), Shed::Peer { peer: host(1000), limit: 2 });
        assert!(limits.try_acquire(1001, host(1001)).is_ok(), "another uid still gets in");
        drop(held);
        assert!(limits.try_acquire(1000, host(1000)).is_ok(), "slots come back when connections close");
    }

    #[test]
    fn per_container_cap_and_per_uid_cap_across_containers() {
        let limits = Arc::new(ConnectionLimits::new(100, 2, 3));
        let _a: Vec<_> = (0..2).map(|_| limits.try_acquire(0, container('a')).unwrap()).collect();
        assert!(matches!(limits.try_acquire(0, container('a')), Err(Shed::Peer { .. })));
        let _b = limits.try_acquire(0, container('b')).unwrap();
        // uid 0 holds 3 (its cap) across two containers: a third container is refused too.
        assert_eq!(limits.try_acquire(0, container('c')).unwrap_err(), Shed::Uid { uid: 0, limit: 3 });
        assert!(limits.try_acquire(2002, PeerKey::new(2002, Some(&"c".repeat(64)))).is_ok());
    }

    #[test]
    fn unpinned_callers_get_a_small_share_of_their_own() {
        let limits = Arc::new(ConnectionLimits::new(100, 10, 100));
        let unpinned = PeerKey::Unpinned { uid: 0 };
        let _held: Vec<_> = (0..UNPINNED_PER_UID).map(|_| limits.try_acquire(0, unpinned.clone()).unwrap()).collect();
        assert_eq!(
            limits.try_acquire(0, unpinned.clone()).unwrap_err(),
            Shed::Peer { peer: unpinned, limit: UNPINNED_PER_UID }
        );
        assert!(limits.try_acquire(0, host(0)).is_ok(), "the host uid's own slots are untouched");
    }

    #[test]
    fn a_cgroup_named_after_a_container_by_another_uid_does_not_use_its_slots() {
        let limits = Arc::new(ConnectionLimits::new(100, 2, 100));
        let id = "a".repeat(64);
        let _squatter: Vec<_> =
            (0..2).map(|_| limits.try_acquire(1000, PeerKey::new(1000, Some(&id))).unwrap()).collect();
        assert!(limits.try_acquire(0, PeerKey::new(0, Some(&id))).is_ok(), "the real container (uid 0) still gets in");
    }

    #[test]
    fn global_cap_and_counts() {
        let limits = Arc::new(ConnectionLimits::new(3, 10, 10));
        let held: Vec<_> = (0..3).map(|uid| limits.try_acquire(uid, host(uid)).unwrap()).collect();
        assert_eq!(limits.open(), 3);
        let shed = limits.try_acquire(9, host(9)).unwrap_err();
        assert_eq!(shed, Shed::Total { limit: 3 });
        assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
        drop(held);
        assert_eq!(limits.open(), 0);
        let counts = limits.lock();
        assert!(counts.peers.is_empty() && counts.uids.is_empty(), "no stale keys");
    }

    #[test]
    fn messages_say_what_to_do() {
        let cases = [
            (Shed::Total { limit: 5 }, 503, "holds its most connections (5)"),
            (Shed::Peer { peer: host(7), limit: 64 }, 429, "from uid 7 (at most 64); close idle"),
            (Shed::Uid { uid: 7, limit: 256 }, 429, "uid 7 (at most 256, host and containers together)"),
        ];
        for (shed, status, text) in cases {
            assert_eq!(shed.status().as_u16(), status);
            assert!(shed.to_string().contains(text), "{shed}");
        }
    }
}
