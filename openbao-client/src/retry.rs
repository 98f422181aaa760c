//! The one retry policy of edgeseal's loops around OpenBao: exponential backoff with a cap, bounded
//! by a number of attempts or by a deadline (or, for the supervisor's restarts, by nothing).
//!
//! Whether a step may be repeated at all is the caller's decision, made per error ([`Attempt`]): an
//! OpenBao call that is not idempotent (`sys/init`) is never handed to [`retry`] with
//! [`Attempt::Retry`].

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// What bounds the attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    Attempts(u32),
    Until(Instant),
    Never,
}

/// A backoff schedule: pauses of `first`, `2·first`, `4·first`… capped at `max`, within a limit.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    next: Duration,
    max: Duration,
    limit: Limit,
    done: u32,
}

impl Backoff {
    /// At most `attempts` attempts in all (so `attempts - 1` pauses), the first pause `first`.
    pub fn attempts(attempts: u32, first: Duration) -> Self {
        Self { next: first, max: Duration::MAX, limit: Limit::Attempts(attempts.max(1)), done: 0 }
    }

    /// Attempts until `timeout` from now has passed; pauses from `first` doubling up to `max`.
    pub fn within(timeout: Duration, first: Duration, max: Duration) -> Self {
        Self::until(Instant::now() + timeout, first, max)
    }

    /// Attempts until `deadline`; pauses from `first` doubling up to `max`.
    pub fn until(deadline: Instant, first: Duration, max: Duration) -> Self {
        Self { next: first, max, limit: Limit::Until(deadline), done: 0 }
    }

    /// Never gives up (a supervisor restarting a child); pauses from `first` doubling up to `max`.
    pub fn forever(first: Duration, max: Duration) -> Self {
        Self { next: first, max, limit: Limit::Never, done: 0 }
    }

    /// The pause before the next attempt, or `None` when no attempt is left. Advances the schedule.
    pub fn next_pause(&mut self) -> Option<Duration> {
        self.done = self.done.saturating_add(1);
        let pause = match self.limit {
            Limit::Attempts(n) if self.done >= n => return None,
            Limit::Until(deadline) => {
                let left = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())?;
                self.next.min(left)
            }
            _ => self.next,
        };
        self.next = self.next.saturating_mul(2).min(self.max);
        Some(pause)
    }

    /// Sleeps before the next attempt; `false` when no attempt is left.
    pub async fn wait(&mut self) -> bool {
        match self.next_pause() {
            Some(pause) => {
                tokio::time::sleep(pause).await;
                true
            }
            None => false,
        }
    }
}

/// The outcome of one attempt.
#[derive(Debug)]
pub enum Attempt<T, E> {
    /// Succeeded.
    Done(T),
    /// Failed in a way that may pass (connection refused, someone else's attempt in the way): try again.
    Retry(E),
    /// Failed for good, or must not be repeated.
    Fail(E),
}

/// Runs `op` until it is done, fails for good, or `backoff` is exhausted (then the last error).
pub async fn retry<T, E, F, Fut>(mut backoff: Backoff, mut op: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Attempt<T, E>>,
{
    loop {
        match op().await {
            Attempt::Done(value) => return Ok(value),
            Attempt::Fail(e) => return Err(e),
            Attempt::Retry(e) => {
                if !backoff.wait().await {
                    return Err(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn pauses_double_up_to_the_cap_and_stop_at_the_limit() {
        let cases: [(Backoff, &[u64]); 3] = [
            (Backoff::attempts(4, 50 * MS), &[50, 100, 200]),
            (Backoff::attempts(1, 50 * MS), &[]),
            (Backoff::forever(200 * MS, 500 * MS), &[200, 400, 500, 500, 500]),
        ];
        for (mut backoff, want) in cases {
            let mut got = Vec::new();
            while let Some(pause) = backoff.next_pause() {
                got.push(u64::try_from(pause.as_millis()).unwrap());
                if got.len() == want.len() && matches!(backoff.limit, Limit::Never) {
                    break;
                }
            }
            assert_eq!(got, want, "{backoff:?}");
        }
    }

    #[test]
    fn a_deadline_in_the_past_allows_no_more_pause() {
        let mut backoff = Backoff::until(Instant::now(), MS, MS);
        assert_eq!(backoff.next_pause(), None);
        let mut backoff = Backoff::within(Duration::from_secs(60), 20 * MS, 500 * MS);
        assert_eq!(backoff.next_pause(), Some(20 * MS));
    }

    #[tokio::test]
    async fn retry_stops_on_done_on_fail_and_when_exhausted() {
        let mut calls = 0;
        let done: Result<u32, &str> = retry(Backoff::attempts(5, Duration::ZERO), || {
            calls += 1;
            let n = calls;
            async move {
                if n < 3 {
                    Attempt::Retry("busy")
                } else {
                    Attempt::Done(n)
                }
            }
        })
        .await;
        assert_eq!(done, Ok(3));

        let mut calls = 0;
        let failed: Result<(), &str> = retry(Backoff::attempts(5, Duration::ZERO), || {
            calls += 1;
            async { Attempt::Fail("never again") }
        })
        .await;
        assert_eq!((failed, calls), (Err("never again"), 1));

        let mut calls = 0;
        let exhausted: Result<(), String> = retry(Backoff::attempts(3, Duration::ZERO), || {
            calls += 1;
            let n = calls;
            async move { Attempt::Retry(format!("attempt {n}")) }
        })
        .await;
        assert_eq!(exhausted, Err("attempt 3".to_string()));
    }
}
