//! `make soak` (and part of `make bench`) — OpenBao crashes under load: `security-bootstrap run` with a
//! supervised OpenBao, `BENCH_CLIENTS` services (threads of this process, attested as `demo` by uid 0
//! and executable) fetching tokens back to back, and the OpenBao SIGKILLed `BENCH_CRASHES` times
//! (default 20), each one second after tokens flowed again. For each seal, in the same run:
//!
//! * kill → OpenBao listening again (the supervisor's restart plus OpenBao's start),
//! * listening → the first token on the socket (opening or unsealing, the token server's first call),
//! * the outcome of every request (200, 503, anything else: a hang or a reset would show there),
//! * the server's RSS and descriptors before the first crash and after the last (quiet, no request
//!   in flight),
//!
//! beside the floor: the bare OpenBao restart, spawn → listening, with the same configuration and data
//! (the Shamir device's: the static one needs the key only `run` holds). Release binaries; medians,
//! p90s and maxima, the targets (restart ≤ 0.5 s, tokens ≤ 1 s after listening, no growth) printed
//! met or not — never asserted.
//!
//! Environment: `CARGO_TARGET_DIR` (see the harness), `EDGESEAL_BAO`, `BENCH_CRASHES` (default 20),
//! `BENCH_CLIENTS` (default 2).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout, clippy::print_stderr)]

use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use edgeseal_tests::bench::{bao_version, cpus, env_count, loadavg, ms, percentile, time_until, verdict, Figure};
use edgeseal_tests::openbao::bao_binary;
use edgeseal_tests::process::{descriptors, rss_kib};
use edgeseal_tests::release::{release_binary, Node, Seal, LIMIT, SEALS};
use edgeseal_tests::token_server::{Answer, TokenLoop};
use nix::sys::signal::Signal;

/// Counts of the answers: (200s, 503s, anything else with its first example).
fn tally(answers: &[Answer]) -> (usize, usize, usize, Option<Answer>) {
    let ok = answers.iter().filter(|a| matches!(a, Answer::Status(200, _))).count();
    let unavailable = answers.iter().filter(|a| matches!(a, Answer::Status(503, _))).count();
    let other: Vec<&Answer> = answers.iter().filter(|a| !matches!(a, Answer::Status(200 | 503, _))).collect();
    (ok, unavailable, other.len(), other.first().map(|a| (*a).clone()))
}

/// One seal's soak.
struct Soak {
    seal: Seal,
    to_listening: Vec<Duration>,
    to_token: Vec<Duration>,
    listening_to_token: Vec<Duration>,
    answers: (usize, usize, usize, Option<Answer>),
    rss: (u64, u64),
    /// RSS one second after each crash.
    rss_series: Vec<u64>,
    fds: (usize, usize),
}

/// When `check` first held, looking every millisecond (a measurement: no growing pause).
fn spin_until(mut check: impl FnMut() -> bool) -> Option<Instant> {
    let deadline = Instant::now() + LIMIT;
    while Instant::now() < deadline {
        if check() {
            return Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

fn soak(seal: Seal, bootstrap: &std::path::Path, crashes: usize, clients: usize, pause: Duration) -> (Soak, Node) {
    let mut node = Node::new(seal, bootstrap);
    node.set_demo_executable(std::env::current_exe().unwrap());
    let (run, _) = node.boot();
    let load = TokenLoop::start(&node.socket(), clients, pause);
    load.first_token_after(Instant::now(), LIMIT).unwrap_or_else(|| panic!("no token:\n{}", node.log_tail()));
    std::thread::sleep(Duration::from_secs(1));
    let (rss_before, fds_before) = load.quiet(|| (rss_kib(run.pid()), descriptors(run.pid()).len()));
    let (mut to_listening, mut to_token, mut listening_to_token) = (Vec::new(), Vec::new(), Vec::new());
    let mut rss = Vec::new();
    for crash in 1..=crashes {
        let pid = node.openbao_pid().unwrap_or_else(|| panic!("no OpenBao under run:\n{}", node.log_tail()));
        let killed = Instant::now();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL).unwrap();
        // The next OpenBao is started only once the killed one is reaped, all its threads gone and
        // its listener closed (its main thread shows as a zombie earlier): from the new pid on, a
        // connection or a request can only reach the new one.
        let respawned = spin_until(|| node.openbao_pid().is_some_and(|p| p != pid));
        let respawned = respawned.unwrap_or_else(|| panic!("no new OpenBao:\n{}", node.log_tail()));
        let listening = spin_until(|| TcpStream::connect(("127.0.0.1", node.port)).is_ok());
        let listening = listening.unwrap_or_else(|| panic!("OpenBao not back:\n{}", node.log_tail()));
        let token = load
            .first_token_after(respawned, LIMIT)
            .unwrap_or_else(|| panic!("no token after crash {crash}:\n{}", node.log_tail()));
        to_listening.push(listening - killed);
        to_token.push(token - killed);
        listening_to_token.push(token.saturating_duration_since(listening));
        eprintln!(
            "{seal:?} crash {crash}: listening after {}, first token after {} ({} after listening)",
            ms(listening - killed),
            ms(token - killed),
            ms(token.saturating_duration_since(listening))
        );
        std::thread::sleep(Duration::from_secs(1));
        rss.push(rss_kib(run.pid()));
    }
    let (rss_after, fds_after) = load.quiet(|| (rss_kib(run.pid()), descriptors(run.pid()).len()));
    let answers = tally(&load.finish());
    node.stop(run);
    let soak = Soak {
        seal,
        to_listening,
        to_token,
        listening_to_token,
        answers,
        rss: (rss_before, rss_after),
        rss_series: rss,
        fds: (fds_before, fds_after),
    };
    (soak, node)
}

fn triple(samples: &[Duration]) -> String {
    format!(
        "{} / {} / {}",
        ms(percentile(samples, 0.5)),
        ms(percentile(samples, 0.9)),
        ms(samples.iter().max().copied().unwrap_or_default())
    )
}

fn main() {
    let crashes = env_count("BENCH_CRASHES", 20, 1);
    let clients = env_count("BENCH_CLIENTS", 1, 1);
    // Under the token server's default rate limit (50/s per uid): above it, answers are 429s.
    let pause = Duration::from_millis(env_count("BENCH_PAUSE_MS", 20, 0) as u64);
    let bootstrap = release_binary("security-bootstrap");
    let mut soaks = Vec::new();
    let mut shamir_node = None;
    for seal in SEALS {
        let (soak, node) = soak(seal, &bootstrap, crashes, clients, pause);
        soaks.push(soak);
        if seal == Seal::Shamir {
            shamir_node = Some(node);
        }
    }
    // The floor: OpenBao alone restarted with the Shamir device's config and data.
    let node = shamir_node.unwrap();
    let hcl = node.data_dir().join("openbao.hcl");
    let floor: Vec<Duration> = (0..crashes.min(10))
        .map(|_| {
            let mut command = Command::new(bao_binary());
            command.arg("server").arg(format!("-config={}", hcl.display()));
            time_until(command, || TcpStream::connect(("127.0.0.1", node.port)).is_ok())
        })
        .collect();

    println!(
        "OpenBao SIGKILLed {crashes} times under {clients} token client(s) fetching every {} ms, each kill 1 s after tokens flowed again (release build; {} CPUs, load {}; {})",
        pause.as_millis(),
        cpus(),
        loadavg(),
        bao_version(&bao_binary())
    );
    println!("| seal | kill → listening p50 / p90 / max | listening → first token p50 / p90 / max | kill → first token p50 / p90 / max | 200 | 503 | other | RSS before → after | fds before → after |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for s in &soaks {
        println!(
            "| {:?} | {} | {} | {} | {} | {} | {} | {} → {} KiB | {} → {} |",
            s.seal,
            triple(&s.to_listening),
            triple(&s.listening_to_token),
            triple(&s.to_token),
            s.answers.0,
            s.answers.1,
            s.answers.2,
            s.rss.0,
            s.rss.1,
            s.fds.0,
            s.fds.1
        );
        if let Some(other) = &s.answers.3 {
            println!("  first answer that was neither 200 nor 503: {other:?}");
        }
        let series: Vec<String> = s.rss_series.iter().map(u64::to_string).collect();
        println!("  {:?} RSS (KiB) one second after each crash: {}", s.seal, series.join(" "));
    }
    println!("| floor: bare OpenBao, spawn → listening | {} | | | | | | | |", triple(&floor));
    let floor_p50 = percentile(&floor, 0.5);
    for s in &soaks {
        let restart = percentile(&s.to_listening, 0.5);
        let max_restart = s.to_listening.iter().max().copied().unwrap_or_default();
        let max_token = s.listening_to_token.iter().max().copied().unwrap_or_default();
        println!(
            "{:?}: restart p50 {} = {:.2}x the bare start ({}); max {} — target ≤ 500 ms: {}; first token ≤ 1 s after listening (max {}): {}; every request 200 or 503: {}; fds {} → {}: {}; RSS drift {:+} KiB",
            s.seal,
            ms(restart),
            restart.as_secs_f64() / floor_p50.as_secs_f64(),
            ms(floor_p50),
            ms(max_restart),
            verdict(max_restart <= Duration::from_millis(500)),
            ms(max_token),
            verdict(max_token <= Duration::from_secs(1)),
            verdict(s.answers.2 == 0),
            s.fds.0,
            s.fds.1,
            verdict(s.fds.1 <= s.fds.0),
            s.rss.1 as i64 - s.rss.0 as i64
        );
        let seal = format!("{:?}", s.seal).to_lowercase();
        let ratio = format!("{:.2}x (p50)", restart.as_secs_f64() / floor_p50.as_secs_f64());
        let bare = format!("bare OpenBao start p50: {}", ms(floor_p50));
        let slowest = format!("max {} (p50 {})", ms(max_restart), ms(restart));
        Figure::new(
            "soak",
            &format!("OpenBao SIGKILLed -> listening again ({seal})"),
            slowest,
            "<= 500 ms",
            max_restart <= Duration::from_millis(500),
        )
        .against(bare, ratio)
        .record();
        let figure = format!("listening -> first token ({seal}), max");
        Figure::new("soak", &figure, ms(max_token), "<= 1 s", max_token <= Duration::from_secs(1)).record();
        let answers = format!("{} non-200/503 answers", s.answers.2);
        Figure::new(
            "soak",
            &format!("answers under crashes ({seal})"),
            answers,
            "every answer 200 or 503",
            s.answers.2 == 0,
        )
        .record();
        let fds = format!("{} -> {}", s.fds.0, s.fds.1);
        Figure::new("soak", &format!("descriptors across crashes ({seal})"), fds, "no growth", s.fds.1 <= s.fds.0)
            .record();
    }
}
