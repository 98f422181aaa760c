//! When the supervisor starts OpenBao again after it exited, and when that is a crash loop.
//!
//! An OpenBao that was serving when it died (the watchdog saw it unsealed and healthy since it was
//! started, or it ran for [`HEALTHY_UPTIME`]) crashed once: it is started again at once, however many
//! times that happened before. One that dies before it became healthy is in trouble at start (a
//! corrupt data dir, a port taken, a bad configuration): it is started again after a pause that
//! doubles from [`FIRST_PAUSE`] to [`MAX_PAUSE`], and from the [`CRASH_LOOP_AFTER`]th such exit in a
//! row the supervisor reports a crash loop (log, health reason, metrics) until a start becomes healthy.
//!
//! One that keeps crashing soon after it became healthy (more than [`FREQUENT_EXITS`] exits within
//! [`EXIT_WINDOW`]: a panic on some request, an OOM limit) is treated the same way — paused and
//! reported — so that it is never restarted at full speed forever (with a Shamir seal, each start
//! also runs the KDF plug-in). The issue's own soak, 20 kills a second apart, stays below it.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

/// First pause before starting again an OpenBao that died before it became healthy.
pub const FIRST_PAUSE: Duration = Duration::from_millis(200);
/// Longest pause between two starts.
pub const MAX_PAUSE: Duration = Duration::from_secs(10);
/// An OpenBao that ran this long was healthy, even if nobody said so (no watchdog yet).
pub const HEALTHY_UPTIME: Duration = Duration::from_secs(60);
/// Early exits in a row from which OpenBao is reported crash-looping.
pub const CRASH_LOOP_AFTER: u32 = 3;
/// More exits than this within [`EXIT_WINDOW`] count as early, whatever came before each.
pub const FREQUENT_EXITS: usize = 30;
/// The window of [`FREQUENT_EXITS`].
pub const EXIT_WINDOW: Duration = Duration::from_secs(300);

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
    /// Exits before becoming healthy (or too frequent ones), in a row (0 after a healthy run).
    pub early_exits: u32,
    /// Whether this exit counted as early because exits are too frequent.
    pub frequent: bool,
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
    /// When the recent exits happened (within [`EXIT_WINDOW`], at most one more than counted).
    recent: VecDeque<Instant>,
}

impl RestartPolicy {
    /// The decision after `exit`, which happened at `now`. A start that could not even be made
    /// counts as an early exit.
    pub fn after(&mut self, exit: Exit, now: Instant) -> Decision {
        self.recent.push_back(now);
        while self.recent.front().is_some_and(|&at| now.saturating_duration_since(at) > EXIT_WINDOW)
            || self.recent.len() > FREQUENT_EXITS + 1
        {
            self.recent.pop_front();
        }
        let frequent = self.recent.len() > FREQUENT_EXITS;
        if (exit.seen_healthy || exit.uptime >= HEALTHY_UPTIME) && !frequent {
            self.early_exits = 0;
            return Decision { pause: Duration::ZERO, early_exits: 0, frequent: false };
        }
        self.early_exits = self.early_exits.saturating_add(1);
        let doublings = self.early_exits.saturating_sub(1).min(16);
        let pause = FIRST_PAUSE.saturating_mul(1 << doublings).min(MAX_PAUSE);
        Decision { pause, early_exits: self.early_exits, frequent }
    }
}

/// A crash loop, as reported to operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrashLoop {
    /// Early (or too frequent) exits, in a row.
    pub exits: u32,
    /// The last one counted because exits are too frequent, not because it came before health.
    pub frequent: bool,
    /// How the last one ended ("exit status: 1", "cannot start: …").
    pub last_exit: String,
    /// Pause before the next start.
    pub next_start_in: Duration,
}

impl fmt::Display for CrashLoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = if self.frequent {
            format!("soon after starting (more than {FREQUENT_EXITS} exits in {} s)", EXIT_WINDOW.as_secs())
        } else {
            "before becoming healthy".to_string()
        };
        write!(
            f,
            "OpenBao keeps crashing: it exited {} times in a row {how} (last: {}); next start in {:.1} s; \
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
        let start = Instant::now();
        for (i, (exit, pause_ms, early_exits, looping)) in cases.into_iter().enumerate() {
            // A minute apart: never too frequent.
            let decision = policy.after(exit, start + Duration::from_secs(60 * i as u64));
            assert_eq!(decision, Decision { pause: ms(pause_ms), early_exits, frequent: false }, "case {i}: {exit:?}");
            assert_eq!(decision.crash_loop(), looping, "case {i}");
        }
    }

    #[test]
    fn healthy_runs_that_crash_too_often_are_paused_and_reported_and_isolated_ones_never() {
        let healthy = Exit { uptime: ms(1_200), seen_healthy: true };
        let mut policy = RestartPolicy::default();
        let start = Instant::now();
        // The soak: 20 kills about 1.3 s apart, each after tokens flowed again.
        for i in 0..20u64 {
            assert_eq!(policy.after(healthy, start + ms(1_300 * i)).pause, Duration::ZERO, "kill {i}");
        }
        // Ten more within the window: from the 31st, paused and counted toward a crash loop.
        let later: Vec<Decision> = (20..40u64).map(|i| policy.after(healthy, start + ms(1_300 * i))).collect();
        assert!(later[..10].iter().all(|d| d.pause.is_zero()), "{later:?}");
        assert_eq!(later[10], Decision { pause: ms(200), early_exits: 1, frequent: true });
        assert!(later[12].crash_loop() && later[12].frequent);
        // Once the exits are spread out again, a healthy run's crash is restarted at once.
        let calm = start + ms(1_300 * 40) + EXIT_WINDOW + ms(1);
        assert_eq!(policy.after(healthy, calm), Decision { pause: Duration::ZERO, early_exits: 0, frequent: false });
    }

    #[test]
    fn an_endless_loop_stays_at_the_longest_pause() {
        let mut policy = RestartPolicy::default();
        let start = Instant::now();
        let last = (0..100_000u64).map(|i| policy.after(early(1), start + ms(i))).last().unwrap_or(Decision {
            pause: ms(1),
            early_exits: 0,
            frequent: false,
        });
        assert_eq!(last.pause, MAX_PAUSE);
        assert_eq!(last.early_exits, 100_000);
    }

    #[test]
    fn the_report_says_what_happened_and_where_to_look() {
        let report =
            CrashLoop { exits: 4, frequent: false, last_exit: "exit status: 1".into(), next_start_in: ms(1_600) }
                .to_string();
        for want in
            ["keeps crashing", "4 times in a row before becoming healthy", "exit status: 1", "1.6 s", "openbao.log"]
        {
            assert!(report.contains(want), "{want:?} in {report}");
        }
        let frequent = CrashLoop { exits: 3, frequent: true, last_exit: "signal: 9".into(), next_start_in: ms(800) };
        assert!(frequent.to_string().contains("soon after starting (more than 30 exits in 300 s)"), "{frequent}");
    }
}
