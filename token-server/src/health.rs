//! `GET /v1/health` answers from a short-lived cache: whatever the number of callers, the server asks
//! OpenBao at most once per `health_cache` interval (each probe is a `sys/health` and an audited
//! `lookup-self`). Concurrent callers of an expired entry wait for one probe instead of each making one.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

/// The last probe's outcome and when it was taken.
#[derive(Debug)]
pub struct HealthCache {
    ttl: Duration,
    last: Mutex<Option<(Instant, Result<(), String>)>>,
}

impl HealthCache {
    /// Probe results are reused for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, last: Mutex::new(None) }
    }

    /// The cached outcome if fresh, else the outcome of `probe` (then cached).
    pub async fn get<F: Future<Output = Result<(), String>>>(&self, probe: impl FnOnce() -> F) -> Result<(), String> {
        let mut last = self.last.lock().await;
        if let Some((at, outcome)) = last.as_ref() {
            if fresh(*at, Instant::now(), self.ttl) {
                return outcome.clone();
            }
        }
        let outcome = probe().await;
        *last = Some((Instant::now(), outcome.clone()));
        outcome
    }
}

impl HealthCache {
    /// Forgets the cached outcome: the next caller probes again. Called when a token request found
    /// the store unavailable, so health never reports "ok" about a store that was just seen down.
    pub fn invalidate(&self) {
        if let Ok(mut last) = self.last.try_lock() {
            *last = None;
        }
    }
}

/// What is known to be wrong with the store beyond a failed call — a supervised OpenBao that keeps
/// crashing — told to callers with every 503 and in the health reason, so that an operator reading
/// either learns what to fix.
#[derive(Debug, Default)]
pub struct StoreProblem(std::sync::RwLock<Option<String>>);

impl StoreProblem {
    /// Sets (or clears) the problem.
    pub fn set(&self, problem: Option<String>) {
        *self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner) = problem;
    }

    /// `why`, followed by the problem if there is one.
    pub fn explain(&self, why: &str) -> String {
        match self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner).as_deref() {
            Some(problem) => format!("{why}; {problem}"),
            None => why.to_string(),
        }
    }
}

/// Whether a probe taken at `at` still answers at `now`.
fn fresh(at: Instant, now: Instant, ttl: Duration) -> bool {
    now.saturating_duration_since(at) < ttl
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[test]
    fn a_known_problem_is_appended_to_the_reason_until_cleared() {
        let problem = StoreProblem::default();
        assert_eq!(problem.explain("the secret store is unreachable"), "the secret store is unreachable");
        problem.set(Some("OpenBao keeps crashing".into()));
        assert_eq!(problem.explain("sealed"), "sealed; OpenBao keeps crashing");
        problem.set(None);
        assert_eq!(problem.explain("sealed"), "sealed");
    }

    #[test]
    fn freshness() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(1);
        let cases = [(0, true), (999, true), (1000, false), (5000, false)];
        for (ms, want) in cases {
            assert_eq!(fresh(t0, t0 + Duration::from_millis(ms), ttl), want, "{ms} ms");
        }
        assert!(!fresh(t0, t0, Duration::ZERO), "a zero ttl disables the cache");
    }

    #[tokio::test]
    async fn one_probe_per_interval_and_failures_are_cached_too() {
        let cache = HealthCache::new(Duration::from_secs(3600));
        let probes = AtomicU32::new(0);
        for _ in 0..10 {
            let outcome = cache
                .get(|| async {
                    probes.fetch_add(1, Ordering::Relaxed);
                    Err("OpenBao is sealed".to_string())
                })
                .await;
            assert_eq!(outcome, Err("OpenBao is sealed".into()));
        }
        assert_eq!(probes.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn invalidate_forces_the_next_probe() {
        let cache = HealthCache::new(Duration::from_secs(3600));
        let probes = AtomicU32::new(0);
        let probe = || async {
            probes.fetch_add(1, Ordering::Relaxed);
            Ok(())
        };
        cache.get(probe).await.unwrap();
        cache.get(probe).await.unwrap();
        cache.invalidate();
        cache.get(probe).await.unwrap();
        assert_eq!(probes.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn zero_ttl_probes_every_time() {
        let cache = HealthCache::new(Duration::ZERO);
        let probes = AtomicU32::new(0);
        for _ in 0..3 {
            let _ = cache
                .get(|| async {
                    probes.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                })
                .await;
        }
        assert_eq!(probes.load(Ordering::Relaxed), 3);
    }
}
