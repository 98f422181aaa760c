//! `make bench` — boot times of `security-bootstrap run` with a supervised OpenBao, for both seals of
//! that OpenBao measured in the same run, interleaved (static, shamir, static, shamir, …) so that the
//! noise of a small machine hits both alike:
//!
//! * `seal: static` (the default): OpenBao opens itself with a key edgeseal hands it, initializes
//!   itself from an `initialize` block, edgeseal logs in with its client certificate;
//! * `seal: shamir` (the old path): `sys/init`, unseal shares, the unseal watchdog.
//!
//! Measured, each from the real release binaries:
//!
//! 1. first boot → ready: a fresh device directory each time, process start → the ready file (PKI,
//!    OpenBao's first start and raft election, initialization, setup, token socket serving);
//! 2. warm boot → ready: the same device booted again;
//! 3. OpenBao SIGKILLed under a running `run` → the first token the `demo` service gets from the
//!    socket (`security-bootstrap token --socket …`, attested by uid 0 + executable path), i.e. the
//!    supervisor's restart, OpenBao's start, its unseal (by itself, or by the watchdog at its next
//!    tick) and the token server's first successful call. Each kill is the first OpenBao death
//!    under that `run` (the warm boot just measured), at an instant spread evenly over one watchdog
//!    interval after ready, the same instants for both seals;
//!
//! side by side with the floor: OpenBao's own start to a listening socket with the same config and
//! data. The device is configured as a user would: default `watchdog_interval` and `wait_timeout`,
//! 20 Docker-selected services plus the `demo` one. Release binaries; medians, p90s and ratios, not
//! thresholds.
//!
//! Environment: `CARGO_TARGET_DIR` (where the release binaries are, as for cargo; a relative one is
//! taken from the workspace root, where `make bench` runs), `EDGESEAL_BAO` (the `bao` binary, see the
//! harness), `BENCH_FIRST` (first boots per seal, default 5), `BENCH_WARM` (warm boots and OpenBao
//! kills per seal, default 7).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

use std::fs;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use edgeseal_tests::bench::{bao_version, cpu_time, cpus, env_count, loadavg, ms, percentile, time_until, Figure};
use edgeseal_tests::openbao::bao_binary;

/// Warm `run` → ready at most this many times OpenBao's own spawn → listening (issue 16).
const TARGET_RUN_RATIO: f64 = 2.0;
use edgeseal_tests::release::{release_binary, Node, Seal, SEALS};

/// Samples of one measure, per seal.
#[derive(Default)]
struct Samples {
    static_seal: Vec<Duration>,
    shamir: Vec<Duration>,
}

impl Samples {
    fn push(&mut self, seal: Seal, took: Duration) {
        match seal {
            Seal::Static => self.static_seal.push(took),
            Seal::Shamir => self.shamir.push(took),
        }
    }
}

fn row(what: &str, s: &Samples) {
    let (a, b) = (&s.static_seal, &s.shamir);
    let ratio = |p| percentile(a, p).as_secs_f64() / percentile(b, p).as_secs_f64();
    println!(
        "| {what} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {:.2} |",
        a.len(),
        ms(percentile(a, 0.5)),
        ms(percentile(a, 0.9)),
        ms(*a.iter().max().unwrap()),
        ms(percentile(b, 0.5)),
        ms(percentile(b, 0.9)),
        ms(*b.iter().max().unwrap()),
        ratio(0.5),
        ratio(0.9),
    );
}

fn samples_line(what: &str, s: &Samples) {
    let list = |v: &[Duration]| v.iter().map(|d| format!("{:.0}", d.as_secs_f64() * 1e3)).collect::<Vec<_>>().join(" ");
    println!("- {what}, in run order (ms): static [{}], shamir [{}]", list(&s.static_seal), list(&s.shamir));
}

/// Lines of `run`'s log that mark a boot's milestones (their message starts so), and what they mean.
const MILESTONES: [(&str, &str); 5] = [
    ("pki-init done", "pki-init done (KDF plug-in, keystore, PKI scan)"),
    ("OpenBao started", "OpenBao spawned"),
    ("OpenBao opened itself", "store open, edgeseal logged in (static seal)"),
    ("setup done", "store converged (policies, roles, secrets, file tokens, admin credential)"),
    ("edgeseal is ready", "token server listening, ready file written"),
];

/// When each milestone of the boot logged to `log` from byte `from` on was reached, from `spawned`.
fn milestones(log: &Path, from: u64, spawned: SystemTime) -> Vec<(&'static str, Duration)> {
    let text = fs::read(log).unwrap();
    let text = String::from_utf8_lossy(text.get(from as usize..).unwrap_or_default());
    let mut seen = Vec::new();
    for line in text.lines() {
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let message = entry["fields"]["message"].as_str().unwrap_or_default();
        let Some((marker, _)) = MILESTONES.iter().find(|(marker, _)| message.starts_with(marker)) else { continue };
        let Some(at) = entry["timestamp"].as_str().and_then(|t| humantime::parse_rfc3339(t).ok()) else { continue };
        if !seen.iter().any(|(m, _)| m == marker) {
            seen.push((*marker, at.duration_since(spawned).unwrap_or_default()));
        }
    }
    seen
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let first_runs = env_count("BENCH_FIRST", 5, 1);
    let warm_runs = env_count("BENCH_WARM", 7, 1);
    let bootstrap = release_binary("security-bootstrap");
    let watchdog = secretstore_setup::config::SecretStoreConfig::default().watchdog_interval;

    // 1. First boots: a fresh device each time, the seals alternating.
    let mut first = Samples::default();
    for round in 0..first_runs {
        for seal in SEALS {
            let node = Node::new(seal, &bootstrap);
            let (run, took) = node.boot();
            node.stop(run);
            first.push(seal, took);
            eprintln!("first boot {round} {seal:?}: {}", ms(took));
        }
    }

    // 2. + 3. Warm boots of one device per seal, each followed (same run) by one OpenBao kill.
    let nodes: Vec<(Seal, Node)> = SEALS
        .iter()
        .map(|&seal| {
            let node = Node::new(seal, &bootstrap);
            let (run, _) = node.boot();
            node.stop(run);
            (seal, node)
        })
        .collect();
    let (mut warm, mut crash) = (Samples::default(), Samples::default());
    let mut phases: Vec<(Seal, Vec<(&str, Duration)>)> = Vec::new();
    // CPU time of `run` and of its OpenBao from spawn to ready, per warm boot.
    let mut cpu: Vec<(Seal, Duration, Duration)> = Vec::new();
    for round in 0..warm_runs {
        // The kill's instant within the watchdog's period, spread evenly over the rounds.
        let after_ready = watchdog.mul_f64((round as f64 + 0.5) / warm_runs as f64);
        for (seal, node) in &nodes {
            let (log_from, spawned) = (fs::metadata(node.log()).map_or(0, |m| m.len()), SystemTime::now());
            let (mut run, took) = node.boot();
            warm.push(*seal, took);
            phases.push((*seal, milestones(&node.log(), log_from, spawned)));
            let bao = node.openbao_pid().map_or(Duration::ZERO, |pid| cpu_time(pid.unsigned_abs()));
            cpu.push((*seal, cpu_time(run.pid()), bao));
            std::thread::sleep(after_ready);
            let recovered = node.crash_to_token(&mut run);
            crash.push(*seal, recovered);
            node.stop(run);
            eprintln!(
                "round {round} {seal:?}: warm boot {}, OpenBao killed {} after ready -> first token {}",
                ms(took),
                ms(after_ready),
                ms(recovered)
            );
        }
    }

    // The floor: OpenBao alone, the Shamir device's config and data (the static one's needs the seal
    // key, which only `run` holds), spawn → TCP listener accepting.
    let shamir = &nodes.iter().find(|(seal, _)| *seal == Seal::Shamir).unwrap().1;
    let hcl = shamir.data_dir().join("openbao.hcl");
    let bao_start: Vec<Duration> = (0..warm_runs)
        .map(|_| {
            let mut command = Command::new(bao_binary());
            command.arg("server").arg(format!("-config={}", hcl.display()));
            time_until(command, || TcpStream::connect(("127.0.0.1", shamir.port)).is_ok())
        })
        .collect();

    println!(
        "security-bootstrap run → ready, supervised OpenBao, seal: static vs seal: shamir, 20 services + 1 (release build; {} CPUs, load {}; {})",
        cpus(),
        loadavg(),
        bao_version(&bao_binary())
    );
    println!("| boot | N | static p50 | static p90 | static max | shamir p50 | shamir p90 | shamir max | static/shamir p50 | static/shamir p90 |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    row("first boot (fresh device: PKI, raft election, init, configure)", &first);
    row("warm boot (open the store + converge + serve)", &warm);
    row("OpenBao SIGKILLed under run → first token on the socket", &crash);
    let (bao_p50, bao_p90) = (percentile(&bao_start, 0.5), percentile(&bao_start, 0.9));
    println!(
        "| floor: OpenBao alone, spawn → listening | {} | {} | {} | {} | | | | | |",
        bao_start.len(),
        ms(bao_p50),
        ms(bao_p90),
        ms(*bao_start.iter().max().unwrap())
    );
    for (seal, samples) in [("static", &warm.static_seal), ("shamir", &warm.shamir)] {
        let p50 = percentile(samples, 0.5);
        let ratio = p50.as_secs_f64() / bao_p50.as_secs_f64();
        println!(
            "edgeseal's own share of a warm boot ({seal}): {:.0} ms ({ratio:.1}x the bare OpenBao start)",
            p50.saturating_sub(bao_p50).as_secs_f64() * 1e3,
        );
        Figure::new(
            "boot",
            &format!("warm run -> ready, seal: {seal}, p50"),
            ms(p50),
            &format!("<= {TARGET_RUN_RATIO}x"),
            ratio <= TARGET_RUN_RATIO,
        )
        .against(format!("OpenBao alone, spawn -> listening: {}", ms(bao_p50)), format!("{ratio:.1}x"))
        .record();
    }
    println!(
        "OpenBao kills at {:.1}..{:.1} s after ready (watchdog_interval {watchdog:?}, the default: a Shamir-sealed store waits for its next tick to be unsealed; a static-sealed one opens itself)",
        watchdog.mul_f64(0.5 / warm_runs as f64).as_secs_f64(),
        watchdog.mul_f64((warm_runs as f64 - 0.5) / warm_runs as f64).as_secs_f64()
    );
    println!("where a warm boot's time goes: medians from spawn to each line of `run`'s log (JSON timestamps)");
    println!("| milestone | static | shamir |");
    println!("|---|---|---|");
    for (marker, what) in MILESTONES {
        let median = |want: Seal| {
            let mut at: Vec<Duration> = phases
                .iter()
                .filter(|(seal, _)| *seal == want)
                .filter_map(|(_, seen)| seen.iter().find(|(m, _)| *m == marker).map(|(_, at)| *at))
                .collect();
            at.sort();
            if at.is_empty() {
                "-".to_string()
            } else {
                ms(percentile(&at, 0.5))
            }
        };
        println!("| {what} | {} | {} |", median(Seal::Static), median(Seal::Shamir));
    }
    for want in SEALS {
        let median = |pick: fn(&(Seal, Duration, Duration)) -> Duration| {
            let times: Vec<Duration> = cpu.iter().filter(|c| c.0 == want).map(pick).collect();
            if times.is_empty() {
                "-".to_string()
            } else {
                ms(percentile(&times, 0.5))
            }
        };
        println!(
            "CPU from spawn to ready ({want:?}, medians, 10 ms ticks, on {} CPUs): run {}, its OpenBao {}",
            cpus(),
            median(|c| c.1),
            median(|c| c.2)
        );
    }
    samples_line("first boot", &first);
    samples_line("warm boot", &warm);
    samples_line("kill → token", &crash);
}
