//! `make bench` — a three-gateway cluster (issue 15), from the real release binaries on loopback:
//! three `security-bootstrap run`, each with its own KDF answer and its own supervised OpenBao raft
//! member (gateway 1 creates the store, gateways 2 and 3 join with `cluster invite`/`cluster join`).
//!
//! 1. **Failover**: SIGKILL of the active member's OpenBao → the first token a surviving gateway's
//!    socket issues (`security-bootstrap token` as the `demo` service every 10 ms on the next
//!    gateway), over `BENCH_KILLS` kills (default 10), each once the cluster has three healthy voters
//!    again. Side by side, in the same run, what a single device does when its only OpenBao is
//!    killed: its supervisor restarts it, it opens itself, the first token (the alternative a user
//!    would otherwise have). Target: median ≤ 3 s (raft with `performance_multiplier = 1`).
//! 2. **Throughput**: service tokens over the socket, `token-load` (one process, C requests in flight)
//!    for `BENCH_SECONDS` (default 3) at 1 and 8 clients (as uid 4243 through `setpriv`), on the single device, on the cluster's
//!    active member and on a standby (which forwards the token creation to the active member). A
//!    service token is a raft write: on the cluster it is committed by two of three members.
//!
//! Environment: `CARGO_TARGET_DIR` (the release binaries), `EDGESEAL_BAO`, `BENCH_KILLS`,
//! `BENCH_SECONDS`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use edgeseal_tests::bench::{bao_version, cpus, env_count, env_number, loadavg, ms, percentile, Figure};
use edgeseal_tests::openbao::bao_binary;
use edgeseal_tests::poll_until;
use edgeseal_tests::process::ChildGuard;
use edgeseal_tests::release::{release_binary, Node, Seal, LIMIT, LOAD_UID};
use nix::sys::signal::Signal;
use secretstore_setup::cluster::ClusterConfig;
use serde_json::Value;

/// Target: failover median at most this long.
const TARGET_FAILOVER: Duration = Duration::from_secs(3);
const IKM: [&str; 3] = [
    "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1",
    "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2",
    "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3",
];
const NODE_IDS: [&str; 3] = ["edgeseal-node1", "gw2", "gw3"];
const CLIENTS: [usize; 2] = [1, 8];

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn command(bootstrap: &Path, node: &Node, args: &[&str]) -> Output {
    Command::new(bootstrap).args(args).arg("--config").arg(node.config_path()).output().unwrap()
}

fn node_show(bootstrap: &Path, node: &Node) -> Value {
    serde_json::from_str(&ok(&command(bootstrap, node, &["node", "show", "--json"]), "node show")).unwrap()
}

fn cluster_status(bootstrap: &Path, node: &Node) -> Option<Value> {
    let out = Command::new(bootstrap)
        .args(["cluster", "status", "--json", "--admin-socket"])
        .arg(node.admin_socket())
        .output()
        .unwrap();
    out.status.success().then(|| serde_json::from_slice(&out.stdout).unwrap())
}

fn three_healthy_voters(bootstrap: &Path, nodes: &[Node]) {
    let healthy = poll_until(LIMIT, || {
        nodes.iter().find_map(|node| {
            let autopilot = cluster_status(bootstrap, node)?["autopilot"].clone();
            (autopilot["healthy"] == true && autopilot["voters"].as_array().map_or(0, Vec::len) == 3).then_some(())
        })
    });
    assert!(healthy.is_some(), "no three healthy voters in {LIMIT:?}");
}

/// Whether `node`'s OpenBao is the active member (`sys/leader`).
fn is_active(node: &Node) -> bool {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "2", "--cacert"])
        .arg(node.device.path().join("pki/ca/ca.pem"))
        .arg(format!("https://127.0.0.1:{}/v1/sys/leader", node.port))
        .output()
        .unwrap();
    serde_json::from_slice::<Value>(&out.stdout).is_ok_and(|v| v["is_self"] == true)
}

fn kill_and_wait_gone(pid: i32) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    let gone = poll_until(LIMIT, || {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        (stat.is_empty() || stat.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('Z'))).then_some(())
    });
    assert!(gone.is_some(), "OpenBao {pid} did not die");
}

/// Forms the cluster: gateway 1 boots, the others are invited by it, join, and boot.
fn form(bootstrap: &Path, load: &Path, bundles: &Path) -> (Vec<Node>, Vec<ChildGuard>) {
    let mut nodes: Vec<Node> = Vec::new();
    let mut runs = Vec::new();
    for index in 0..3 {
        let mut node = Node::new(Seal::Static, bootstrap);
        node.device.set_hardware(IKM[index]);
        let join = if index == 0 { Vec::new() } else { vec![nodes[0].address()] };
        node.set_cluster(ClusterConfig { node_id: NODE_IDS[index].into(), join });
        node.set_load_executable(load.to_path_buf());
        if index > 0 {
            let recipient = node_show(bootstrap, &node)["recipient"].as_str().unwrap().to_string();
            let signer = node_show(bootstrap, &nodes[0])["signing_key"].as_str().unwrap().to_string();
            let bundle = bundles.join(format!("{}.join", NODE_IDS[index]));
            let args =
                ["cluster", "invite", "--node-id", NODE_IDS[index], "--to", &recipient, "-o", bundle.to_str().unwrap()];
            ok(&command(bootstrap, &nodes[0], &args), "cluster invite");
            let args = ["cluster", "join", bundle.to_str().unwrap(), "--from", &signer];
            ok(&command(bootstrap, &node, &args), "cluster join");
        }
        let (run, took) = node.boot();
        eprintln!("gateway {} ({}) ready in {}", index + 1, NODE_IDS[index], ms(took));
        runs.push(run);
        nodes.push(node);
    }
    three_healthy_voters(bootstrap, &nodes);
    (nodes, runs)
}

/// One failover: SIGKILL of the active member's OpenBao → the first token on the next gateway.
fn failover(bootstrap: &Path, nodes: &[Node]) -> Duration {
    let active = poll_until(LIMIT, || nodes.iter().position(is_active)).expect("an active member");
    let survivor = &nodes[(active + 1) % nodes.len()];
    assert!(survivor.fetch(), "no token on a survivor before the kill:\n{}", survivor.log_tail());
    let pid = nodes[active].openbao_pid().expect("the active member's OpenBao");
    let killed = Instant::now();
    kill_and_wait_gone(pid);
    let took = poll_until(LIMIT, || survivor.fetch().then(|| killed.elapsed()))
        .unwrap_or_else(|| panic!("no token on a survivor {LIMIT:?} after the kill:\n{}", survivor.log_tail()));
    three_healthy_voters(bootstrap, nodes);
    took
}

struct Load {
    rate: f64,
    p50_us: u64,
    p99_us: u64,
}

fn load(exe: &Path, socket: &Path, concurrency: usize, secs: f64) -> Load {
    let out = Command::new("setpriv")
        .arg(format!("--reuid={LOAD_UID}"))
        .arg(format!("--regid={LOAD_UID}"))
        .arg("--clear-groups")
        .arg(exe)
        .arg("--socket")
        .arg(socket)
        .args(["--concurrency", &concurrency.to_string(), "--duration", &secs.to_string(), "--warmup", "10"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("token-load printed no JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    assert!(out.status.success(), "token-load failed: {} {}", report["statuses"], report["first_error"]);
    Load {
        rate: report["throughput_per_sec"].as_f64().unwrap_or(0.0),
        p50_us: report["latency_us"]["p50"].as_u64().unwrap_or(0),
        p99_us: report["latency_us"]["p99"].as_u64().unwrap_or(0),
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let kills = env_count("BENCH_KILLS", 10, 1);
    let secs = env_number("BENCH_SECONDS", 3.0);
    let bootstrap = release_binary("security-bootstrap");
    let public = tempfile::tempdir().unwrap();
    fs::set_permissions(public.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let load_exe = public.path().join("token-load");
    edgeseal_tests::install_executable(&release_binary("token-load"), &load_exe);
    let bundles = tempfile::tempdir().unwrap();

    // The alternative: one device (its own OpenBao, the same services and load service).
    let mut single = Node::new(Seal::Static, &bootstrap);
    single.set_load_executable(load_exe.clone());
    let (mut single_run, _) = single.boot();

    let (nodes, mut runs) = form(&bootstrap, &load_exe, bundles.path());

    // 1. Failover, interleaved with single-device restarts.
    let (mut cluster_failover, mut single_restart) = (Vec::new(), Vec::new());
    for round in 0..kills {
        let took = failover(&bootstrap, &nodes);
        let restart = single.crash_to_token(&mut single_run);
        eprintln!("kill {round}: cluster failover {} | single device restart {}", ms(took), ms(restart));
        cluster_failover.push(took);
        single_restart.push(restart);
    }

    // 2. Throughput: single device, the active member, a standby.
    let active = poll_until(LIMIT, || nodes.iter().position(is_active)).expect("an active member");
    let standby = (active + 1) % nodes.len();
    let mut rows: Vec<(String, usize, Load)> = Vec::new();
    for clients in CLIENTS {
        for (name, socket) in [
            ("single device".to_string(), single.socket()),
            (format!("cluster, active member ({})", NODE_IDS[active]), nodes[active].socket()),
            (format!("cluster, standby ({}, forwards)", NODE_IDS[standby]), nodes[standby].socket()),
        ] {
            let measured = load(&load_exe, &socket, clients, secs);
            eprintln!("{name}, {clients} client(s): {:.0}/s", measured.rate);
            rows.push((name, clients, measured));
        }
    }

    println!(
        "three-gateway cluster vs one device (release build; {} CPUs, load {}; {}; all on one host)",
        cpus(),
        loadavg(),
        bao_version(&bao_binary())
    );
    println!("| kill → first token | N | p50 | p90 | max |");
    println!("|---|---|---|---|---|");
    for (what, samples) in [
        ("cluster: active member's OpenBao SIGKILLed → token on a surviving gateway", &cluster_failover),
        ("one device: its OpenBao SIGKILLed → restarted, opened, token", &single_restart),
    ] {
        println!(
            "| {what} | {} | {} | {} | {} |",
            samples.len(),
            ms(percentile(samples, 0.5)),
            ms(percentile(samples, 0.9)),
            ms(*samples.iter().max().unwrap())
        );
    }
    println!("\n| service tokens over the socket | clients | tokens/s | p50 | p99 |");
    println!("|---|---|---|---|---|");
    for (name, clients, l) in &rows {
        println!(
            "| {name} | {clients} | {:.0} | {:.2} ms | {:.2} ms |",
            l.rate,
            l.p50_us as f64 / 1e3,
            l.p99_us as f64 / 1e3
        );
    }
    let (failover_p50, restart_p50) = (percentile(&cluster_failover, 0.5), percentile(&single_restart, 0.5));
    Figure::new(
        "cluster",
        "failover: kill active member -> token on a survivor, p50",
        ms(failover_p50),
        "<= 3 s",
        failover_p50 <= TARGET_FAILOVER,
    )
    .against(
        format!("one device, OpenBao restart -> token: {}", ms(restart_p50)),
        format!("{:.2}x", failover_p50.as_secs_f64() / restart_p50.as_secs_f64()),
    )
    .record();
    let rate = |label: &str, clients: usize| {
        rows.iter().find(|(n, c, _)| n.starts_with(label) && *c == clients).map_or(0.0, |(_, _, l)| l.rate)
    };
    for clients in CLIENTS {
        let (one, standby_rate) = (rate("single", clients), rate("cluster, standby", clients));
        Figure::new(
            "cluster",
            &format!("service tokens via a standby, {clients} client(s)"),
            format!("{standby_rate:.0}/s"),
            "reported",
            true,
        )
        .against(format!("one device: {one:.0}/s"), format!("{:.2}x", standby_rate / one.max(1.0)))
        .record();
    }

    for run in &mut runs {
        run.stop(Signal::SIGTERM, LIMIT);
    }
    single.stop(single_run);
}
