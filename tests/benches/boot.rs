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

use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use edgeseal_tests::bench::{bao_version, cpus, env_count, loadavg, ms, percentile, time_until, Figure};
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
    for round in 0..warm_runs {
        // The kill's instant within the watchdog's period, spread evenly over the rounds.
        let after_ready = watchdog.mul_f64((round as f64 + 0.5) / warm_runs as f64);
        for (seal, node) in &nodes {
            let (mut run, took) = node.boot();
            warm.push(*seal, took);
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
    samples_line("first boot", &first);
    samples_line("warm boot", &warm);
    samples_line("kill → token", &crash);
}
