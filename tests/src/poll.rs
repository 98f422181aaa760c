//! Waiting for a condition instead of sleeping: the one polling helper behind every wait in the
//! harness and the tests.
//!
//! A test never sleeps for a guessed time when it can look at what it waits for (a file, a socket
//! that answers, a process gone, a counter). [`wait_until`] checks the condition at once, then at
//! growing intervals (1 ms doubling up to [`MAX_PAUSE`]), so a fast condition is seen fast and a
//! slow one costs little CPU; its timeout is only a bound against hanging, never a measurement.

use std::future::Future;
use std::time::{Duration, Instant};

/// The longest pause between two checks.
pub const MAX_PAUSE: Duration = Duration::from_millis(100);

/// The first pause between two checks.
const FIRST_PAUSE: Duration = Duration::from_millis(1);

/// Calls `check` until it returns `Some`, and returns that; `None` once `timeout` has passed (the
/// condition is checked one last time at the deadline). For callers that act on a timeout
/// themselves (kill a child, report a log); the others use [`wait_until`].
pub fn poll_until<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    let mut pause = FIRST_PAUSE;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// Calls `check` until it returns `Some`, and returns that. Panics with "timed out after …
/// waiting until {what}" when `timeout` passes first. `check` may itself panic to fail early (a
/// process it waits on has exited).
#[track_caller]
pub fn wait_until<T>(what: &str, timeout: Duration, check: impl FnMut() -> Option<T>) -> T {
    match poll_until(timeout, check) {
        Some(value) => value,
        None => panic!("timed out after {timeout:?} waiting until {what}"),
    }
}

/// [`poll_until`] for an async condition, pausing with the tokio timer (the runtime keeps running
/// other tasks meanwhile).
pub async fn poll_until_async<T, F>(timeout: Duration, mut check: impl FnMut() -> F) -> Option<T>
where
    F: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    let mut pause = FIRST_PAUSE;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[test]
    fn returns_the_first_value_the_condition_gives() {
        let calls = Cell::new(0);
        let got = wait_until("the third call", Duration::from_secs(60), || {
            calls.set(calls.get() + 1);
            (calls.get() == 3).then_some("third")
        });
        assert_eq!((got, calls.get()), ("third", 3));
    }

    #[test]
    fn gives_up_after_the_timeout_having_checked_at_the_deadline() {
        let calls = Cell::new(0);
        let got: Option<()> = poll_until(Duration::ZERO, || {
            calls.set(calls.get() + 1);
            None
        });
        assert_eq!((got, calls.get()), (None, 1));
    }

    #[test]
    #[should_panic(expected = "waiting until the impossible happens")]
    fn wait_until_panics_with_what_it_waited_for() {
        wait_until::<()>("the impossible happens", Duration::ZERO, || None);
    }

    #[test]
    fn the_async_form_waits_the_same_way() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let calls = Cell::new(0);
        let got = rt.block_on(poll_until_async(Duration::from_secs(60), || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move { (n == 2).then_some(n) }
        }));
        assert_eq!(got, Some(2));
    }
}
