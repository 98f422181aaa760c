//! Who a limit counts against, and the per-peer request rate limit.
//!
//! A *peer* is a container (by id, from the caller's cgroup, together with the caller's uid) or, on
//! the host, a uid: a process that forks or reconnects is still the same peer, so neither new pids
//! nor new connections buy a caller more requests. The container id is only a cgroup name, and a
//! user with a delegated cgroup subtree can name a cgroup after a victim's container: keying by (id,
//! uid) keeps such a user from spending the victim's rate and connection slots. A caller that could
//! not be pinned is its own kind of peer ([`PeerKey::Unpinned`]), so it never spends the buckets of
//! the host uid it happens to share. The rate limiter is a token bucket per peer in a map bounded to [`MAX_PEERS`]
//! entries: buckets that have refilled completely are dropped first (forgetting them changes
//! nothing), then the least recently used one.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::attest::facts::short;

/// Most peers the rate limiter remembers at once.
pub const MAX_PEERS: usize = 4096;

/// What the per-peer limits count against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PeerKey {
    /// A host process, by effective uid.
    Host {
        /// From SO_PEERCRED.
        uid: u32,
    },
    /// A process in a container, by container id and effective uid.
    Container {
        /// The 64-hex id from `/proc/<pid>/cgroup`.
        id: String,
        /// From SO_PEERCRED.
        uid: u32,
    },
    /// A caller that could not be pinned (it exited before accept, or the kernel gives no pidfd and
    /// that is refused): it can never get a token, so it gets its own small share, by uid.
    Unpinned {
        /// From SO_PEERCRED.
        uid: u32,
    },
}

impl PeerKey {
    /// The peer of a caller with `uid` in container `container_id` (if any).
    pub fn new(uid: u32, container_id: Option<&str>) -> Self {
        match container_id {
            Some(id) => Self::Container { id: id.to_string(), uid },
            None => Self::Host { uid },
        }
    }
}

impl fmt::Display for PeerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Host { uid } => write!(f, "uid {uid}"),
            Self::Container { id, uid } => write!(f, "container {} (uid {uid})", short(id)),
            Self::Unpinned { uid } => write!(f, "unpinned callers of uid {uid}"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets keyed by peer.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    max_peers: usize,
    buckets: Mutex<HashMap<PeerKey, Bucket>>,
}

impl RateLimiter {
    /// `per_second` sustained, `burst` at once, per peer.
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self::bounded(per_second, burst, MAX_PEERS)
    }

    fn bounded(per_second: u32, burst: u32, max_peers: usize) -> Self {
        Self {
            per_second: f64::from(per_second),
            burst: f64::from(burst.max(1)),
            max_peers: max_peers.max(1),
            buckets: Mutex::default(),
        }
    }

    /// Takes one token for `peer`; false when the peer is over its rate.
    pub fn allow(&self, peer: &PeerKey) -> bool {
        self.allow_at(peer, Instant::now())
    }

    /// Number of peers remembered (for tests and metrics).
    pub fn len(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no peer is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn allow_at(&self, peer: &PeerKey, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if !buckets.contains_key(peer) && buckets.len() >= self.max_peers {
            self.make_room(&mut buckets, now);
        }
        let bucket = buckets.entry(peer.clone()).or_insert(Bucket { tokens: self.burst, last: now });
        let refill = now.saturating_duration_since(bucket.last).as_secs_f64() * self.per_second;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Drops every bucket that would be full by `now` (a new peer starts full, so nothing is lost);
    /// if none is, the least recently used one.
    fn make_room(&self, buckets: &mut HashMap<PeerKey, Bucket>, now: Instant) {
        buckets.retain(|_, b| !self.full_at(b, now));
        if buckets.len() >= self.max_peers {
            if let Some(oldest) = buckets.iter().min_by_key(|(_, b)| b.last).map(|(k, _)| k.clone()) {
                buckets.remove(&oldest);
            }
        }
    }

    fn full_at(&self, bucket: &Bucket, now: Instant) -> bool {
        let idle = now.saturating_duration_since(bucket.last);
        self.per_second > 0.0
            && idle >= Duration::from_secs_f64(((self.burst - bucket.tokens) / self.per_second).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(uid: u32) -> PeerKey {
        PeerKey::new(uid, None)
    }

    #[test]
    fn burst_then_refill_per_key() {
        let limiter = RateLimiter::new(10, 3);
        let t0 = Instant::now();
        assert!((0..3).all(|_| limiter.allow_at(&host(1000), t0)));
        assert!(!limiter.allow_at(&host(1000), t0), "burst spent");
        assert!(limiter.allow_at(&host(1001), t0), "other peers are not affected");
        assert!(limiter.allow_at(&host(1000), t0 + Duration::from_millis(100)), "one token back after 1/rate");
        assert!(!limiter.allow_at(&host(1000), t0 + Duration::from_millis(110)));
    }

    #[test]
    fn keyed_by_uid_on_the_host_and_by_container_and_uid_inside_one() {
        let id = "a".repeat(64);
        let cases = [
            (PeerKey::new(1000, None), PeerKey::new(1000, None), true),
            (PeerKey::new(1000, None), PeerKey::new(1001, None), false),
            // A delegated cgroup named after a victim's container, by another uid, is another peer.
            (PeerKey::new(0, Some(&id)), PeerKey::new(1000, Some(&id)), false),
            (PeerKey::new(1000, Some(&id)), PeerKey::new(1000, Some(&id)), true),
            (PeerKey::Unpinned { uid: 0 }, PeerKey::new(0, None), false),
            (PeerKey::new(0, Some(&id)), PeerKey::new(0, None), false),
            (PeerKey::new(0, Some(&id)), PeerKey::new(0, Some(&"b".repeat(64))), false),
        ];
        for (a, b, same) in cases {
            assert_eq!(a == b, same, "{a} vs {b}");
        }
        assert_eq!(PeerKey::new(7, None).to_string(), "uid 7");
        assert_eq!(PeerKey::new(7, Some(&id)).to_string(), format!("container {} (uid 7)", &id[..12]));
        assert_eq!(PeerKey::Unpinned { uid: 7 }.to_string(), "unpinned callers of uid 7");
    }

    #[test]
    fn a_new_pid_of_the_same_uid_shares_the_bucket() {
        // The key has no pid: reconnecting from a fresh process does not refill the bucket.
        let limiter = RateLimiter::new(1, 2);
        let t0 = Instant::now();
        assert!(limiter.allow_at(&PeerKey::new(1000, None), t0));
        assert!(limiter.allow_at(&PeerKey::new(1000, None), t0));
        assert!(!limiter.allow_at(&PeerKey::new(1000, None), t0));
    }

    #[test]
    fn map_is_bounded_and_forgets_full_buckets_first() {
        let limiter = RateLimiter::bounded(10, 2, 3);
        let t0 = Instant::now();
        // uid 1 spends its burst; uids 2 and 3 take one token each.
        assert!(limiter.allow_at(&host(1), t0) && limiter.allow_at(&host(1), t0));
        assert!(limiter.allow_at(&host(2), t0));
        assert!(limiter.allow_at(&host(3), t0));
        assert_eq!(limiter.len(), 3);
        // 150 ms later uids 2 and 3 have refilled (one token at 10/s), uid 1 has not (two tokens).
        let t1 = t0 + Duration::from_millis(150);
        assert!(limiter.allow_at(&host(4), t1));
        assert_eq!(limiter.len(), 2, "the refilled buckets were dropped, the drained one kept");
        assert!(limiter.allow_at(&host(1), t1), "1.5 tokens refilled");
        assert!(!limiter.allow_at(&host(1), t1), "uid 1 was remembered: it did not start over with a full burst");
    }

    #[test]
    fn when_nothing_is_full_the_least_recently_used_goes() {
        let limiter = RateLimiter::bounded(0, 1, 2);
        let t0 = Instant::now();
        assert!(limiter.allow_at(&host(1), t0));
        assert!(limiter.allow_at(&host(2), t0 + Duration::from_millis(1)));
        assert!(!limiter.allow_at(&host(2), t0 + Duration::from_millis(2)), "rate 0: no refill");
        assert!(limiter.allow_at(&host(3), t0 + Duration::from_millis(3)));
        assert_eq!(limiter.len(), 2);
        assert!(!limiter.allow_at(&host(2), t0 + Duration::from_millis(4)), "uid 2 was kept (used last)");
        assert!(limiter.allow_at(&host(1), t0 + Duration::from_millis(5)), "uid 1 was forgotten");
    }

    #[test]
    fn many_peers_never_grow_the_map_past_its_bound() {
        let limiter = RateLimiter::bounded(50, 100, 64);
        let t0 = Instant::now();
        for uid in 0..10_000 {
            assert!(limiter.allow_at(&host(uid), t0));
        }
        assert!(limiter.len() <= 64);
    }
}
