//! When the supervisor starts OpenBao again after it exited, and when that is a crash loop.
//!
//! An OpenBao that was serving when it died (the watchdog saw it unsealed and healthy since it was
//! started, or it ran for [`HEALTHY_UPTIME`]) crashed once: it is started again at once, however many
//! times that happened before. One that dies before it became healthy is in trouble at start (a
//! corrupt data dir, a port taken, a bad configuration): it is started again after a pause that
//! doubles from [`FIRST_PAUSE`] to [`MAX_PAUSE`], and from the [`CRASH_LOOP_AFTER`]th such exit in a
//! row the supervisor reports a crash loop (log, health reason, metrics) until a start becomes healthy.

use std::fmt;
use std::time::Duration;

/// First pause before starting again an OpenBao that died before it became healthy.
pub const FIRST_PAUSE: Duration = Duration::from_millis(200);
/// Longest pause between two starts.
pub const MAX_PAUSE: Duration = Duration::from_secs(10);
/// An OpenBao that ran this long was healthy, even if nobody said so (no watchdog yet).
pub const HEALTHY_UPTIME: Duration = Duration::from_secs(60);
/// Early exits in a row from which OpenBao is reported crash-looping.
pub const CRASH_LOOP_AFTER: u32 = 3;

/// How the run that just ended went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// Time from its start to its exit.
    pub uptime: Duration,
    /// The watchdog saw it unsealed and healthy.
    pub seen_healthy: bool,
}

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Wait this long before the next start.
    pub pause: Duration,
    /// Exits before becoming healthy, in a row (0 after a healthy run).
    pub early_exits: u32,
}

impl Decision {
    /// Whether OpenBao is crash-looping.
    pub fn crash_loop(&self) -> bool {
        self.early_exits >= CRASH_LOOP_AFTER
    }
}

/// The supervisor's memory of recent exits.
#[derive(Debug, Default)]
pub struct RestartPolicy {
    early_exits: u32,
}

impl RestartPolicy {
    /// The decision after `exit`. A start that could not even be made counts as an early exit.
    pub fn after(&mut self, exit: Exit) -> Decision {
        if exit.seen_healthy || exit.uptime >= HEALTHY_UPTIME {
            self.early_exits = 0;
            return Decision { pause: Duration::ZERO, early_exits: 0 };
        }
        self.early_exits = self.early_exits.saturating_add(1);
        let doublings = self.early_exits.saturating_sub(1).min(16);
        let pause = FIRST_PAUSE.saturating_mul(1 << doublings).min(MAX_PAUSE);
        Decision { pause, early_exits: self.early_exits }
    }
}

/// A crash loop, as reported to operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrashLoop {
    /// Exits before becoming healthy, in a row.
    pub exits: u32,
    /// How the last one ended ("exit status: 1", "cannot start: …").
    pub last_exit: String,
    /// Pause before the next start.
    pub next_start_in: Duration,
}

impl fmt::Display for CrashLoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "OpenBao keeps crashing: it exited {} times in a row before becoming healthy (last: {}); next start in {:.1} s; \
             its output is in openbao.log in secret_store.supervise.data_dir",
            self.exits,
            self.last_exit,
            self.next_start_in.as_secs_f64()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn early(n: u64) -> Exit {
        Exit { uptime: ms(n), seen_healthy: false }
    }

    #[test]
    fn pauses_and_crash_loops_follow_the_exits() {
        let healthy = Exit { uptime: ms(1_000), seen_healthy: true };
        let long_unwatched = Exit { uptime: HEALTHY_UPTIME, seen_healthy: false };
        // (exit, pause in ms, early exits in a row, crash loop?)
        let cases = [
            (healthy, 0, 0, false),
            (healthy, 0, 0, false),
            (early(50), 200, 1, false),
            (early(50), 400, 2, false),
            (early(50), 800, 3, true),
            (early(50), 1_600, 4, true),
            (early(50), 3_200, 5, true),
            (early(50), 6_400, 6, true),
            (early(50), 10_000, 7, true),
            (early(50), 10_000, 8, true),
            // A start that became healthy ends the loop: the next crash restarts at once.
            (healthy, 0, 0, false),
            (early(50), 200, 1, false),
            (long_unwatched, 0, 0, false),
        ];
        let mut policy = RestartPolicy::default();
        for (i, (exit, pause_ms, early_exits, looping)) in cases.into_iter().enumerate() {
            let decision = policy.after(exit);
            assert_eq!(decision, Decision { pause: ms(pause_ms), early_exits }, "case {i}: {exit:?}");
            assert_eq!(decision.crash_loop(), looping, "case {i}");
        }
    }

    #[test]
    fn an_endless_loop_stays_at_the_longest_pause() {
        let mut policy = RestartPolicy::default();
        let last =
            (0..100_000).map(|_| policy.after(early(1))).last().unwrap_or(Decision { pause: ms(1), early_exits: 0 });
        assert_eq!(last.pause, MAX_PAUSE);
        assert_eq!(last.early_exits, 100_000);
    }

    #[test]
    fn the_report_says_what_happened_and_where_to_look() {
        let report = CrashLoop { exits: 4, last_exit: "exit status: 1".into(), next_start_in: ms(1_600) }.to_string();
        for want in ["keeps crashing", "4 times in a row", "exit status: 1", "1.6 s", "openbao.log"] {
            assert!(report.contains(want), "{want:?} in {report}");
        }
    }
}
