//! `make bench` — the admin interface (SPEC §12) beside what an operator would use instead, measured
//! in the same run against the same OpenBao (the node's, booted by the release `security-bootstrap
//! run`, static seal, raft on this machine's disk):
//!
//! 1. One secret written then read back, end to end as an operator types it:
//!    `security-bootstrap secrets set demo/bench` (value on stdin) + `secrets get demo/bench` through
//!    the admin socket, against `bao kv put -mount=secret edgeseal/demo/bench-bao value=-` + `bao kv
//!    get -field=value …` with a token of the same policy (`edgeseal-admin`, made for this benchmark
//!    with edgeseal's client certificate from the keystore; revoked at the end). Interleaved rounds,
//!    every value checked. Target: ≥ 5x faster per round trip (median).
//! 2. `security-bootstrap audit --service demo --json` over an OpenBao audit log of 100,000 lines
//!    (the node's own, padded with copies of its real entries under 1,000 issued accessors, and as
//!    many issuance records in edgeseal's log), against `jq` selecting the same service's
//!    responses from the same file (what one would script without edgeseal: it only filters one
//!    accessor list it is given, and joins nothing). Target: under 1 s.
//!
//! Environment: `CARGO_TARGET_DIR` (where the release binaries are), `EDGESEAL_BAO` (the `bao` binary),
//! `BENCH_ROUNDS` (round trips per tool, default 30), `BENCH_AUDIT_LINES` (default 100000).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use edgeseal_tests::bench::{bao_version, cpus, env_count, loadavg, ms, percentile, verdict, Figure};
use edgeseal_tests::device::DEVICE_IKM;
use edgeseal_tests::openbao::bao_binary;
use edgeseal_tests::output_with_stdin;
use edgeseal_tests::release::{release_binary, Node, Seal};
use openbao_client::{Client, Pin, Token};
use secretstore_setup::keystore::{derive_file_kek, open};
use secretstore_setup::seal::material::SealMaterial;
use secretstore_setup::seal::{CERT_MOUNT, CERT_NAME};
use secretstore_setup::KeystoreDir;

/// Runs `program args` with `stdin`, with `env`; its output (must succeed).
fn exec(program: &Path, args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Output {
    let out = output_with_stdin(Command::new(program).args(args).envs(env.iter().copied()), stdin);
    assert!(out.status.success(), "{} {args:?}: {}", program.display(), String::from_utf8_lossy(&out.stderr));
    out
}

/// A token with the `edgeseal-admin` policy, made as edgeseal makes its own: a login with the client
/// certificate in the keystore, then the admin token role.
fn admin_token(node: &Node, rt: &tokio::runtime::Runtime) -> (Client, Token) {
    let store = KeystoreDir::new(node.device.keystore_dir());
    let file = store.read().unwrap().unwrap();
    let kek = derive_file_kek(&file, &kdf_plugins::Ikm::new(hex::decode(DEVICE_IKM).unwrap())).unwrap();
    let material = SealMaterial::from_keystore(&open(&file, &kek).unwrap()).unwrap().unwrap();
    let identity = material.identity.client_identity().unwrap();
    let pki = node.device.path().join("pki");
    let client = Client::with_identity(
        &format!("https://127.0.0.1:{}", node.port),
        &pki.join("ca/ca.pem"),
        &Pin::ServerCert(pki.join("openbao/cert.pem")),
        Some(&identity),
        Duration::from_secs(30),
    )
    .unwrap();
    let setup = rt.block_on(client.cert_login(CERT_MOUNT, CERT_NAME)).unwrap().client_token;
    let admin = rt.block_on(secretstore_setup::setup::configure::admin_token(&client, &setup)).unwrap();
    rt.block_on(client.revoke_self(&setup)).unwrap();
    (client, admin)
}

fn row(what: &str, edgeseal: &[Duration], other: &[Duration], other_name: &str) -> f64 {
    let ratio = percentile(other, 0.5).as_secs_f64() / percentile(edgeseal, 0.5).as_secs_f64();
    println!(
        "| {what} | {} | {} | {} | {other_name} {} | {} | {ratio:.1}x |",
        edgeseal.len(),
        ms(percentile(edgeseal, 0.5)),
        ms(percentile(edgeseal, 0.9)),
        ms(percentile(other, 0.5)),
        ms(percentile(other, 0.9)),
    );
    ratio
}

/// Pads the node's OpenBao audit log to `lines` lines with copies of its own response entries, under
/// `accessors` accessors that edgeseal's audit log says were issued to `demo`. Returns the accessors.
fn pad_audit_logs(node: &Node, lines: usize, accessors: usize) -> Vec<String> {
    let bao_log = node.data_dir().join("audit.log");
    let text = fs::read_to_string(&bao_log).unwrap();
    let read = text
        .lines()
        .find(|l| l.contains(r#""type":"response""#) && l.contains("secret/data/edgeseal/demo/bench"))
        .expect("a service's read in OpenBao's audit log")
        .to_string();
    let entry: serde_json::Value = serde_json::from_str(&read).unwrap();
    let accessor = entry["auth"]["accessor"].as_str().expect("accessors in clear").to_string();
    let names: Vec<String> = (0..accessors).map(|i| format!("bench{i:020}")).collect();
    let existing = text.lines().count();
    let mut out = fs::OpenOptions::new().append(true).open(&bao_log).unwrap();
    let mut buf = String::new();
    for i in 0..lines.saturating_sub(existing) {
        let line = read.replace(&accessor, &names[i % names.len()]);
        // Half of them request entries, as in a real log (one request and one response per call).
        let line = if i % 2 == 0 { line.replace(r#""type":"response""#, r#""type":"request""#) } else { line };
        buf.push_str(&line);
        buf.push('\n');
    }
    out.write_all(buf.as_bytes()).unwrap();
    let ours = node.device.keystore_dir().join("audit.log");
    let mut log = fs::OpenOptions::new().append(true).open(&ours).unwrap();
    let now = humantime::format_rfc3339_micros(std::time::SystemTime::now());
    for name in &names {
        writeln!(log, r#"{{"time":"{now}","event":"issued","service":"demo","accessor":"{name}","pid":1,"uid":0}}"#)
            .unwrap();
    }
    names
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rounds = env_count("BENCH_ROUNDS", 30, 3);
    let audit_lines = env_count("BENCH_AUDIT_LINES", 100_000, 1000);
    let bootstrap = release_binary("security-bootstrap");
    let bao = bao_binary();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();

    let node = Node::new(Seal::Static, &bootstrap);
    let (run, _) = node.boot();
    let (client, token) = admin_token(&node, &rt);
    let socket = node.admin_socket();
    let socket = socket.to_str().unwrap();
    let ca = node.device.path().join("pki/ca/ca.pem");
    let address = format!("https://127.0.0.1:{}", node.port);
    let bao_env = [("BAO_ADDR", address.as_str()), ("BAO_CACERT", ca.to_str().unwrap()), ("BAO_TOKEN", token.expose())];

    println!("## Admin interface: edgeseal vs the bao CLI, same OpenBao, same policy");
    println!();
    println!("- machine: {} CPUs, load {}; {}", cpus(), loadavg(), bao_version(&bao));
    println!("- {rounds} round trips each, interleaved; every value read back and compared");
    println!();

    // 1. set + get round trips, interleaved.
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let value = format!("bench-value-{round}-{}", "x".repeat(32));
        let started = Instant::now();
        exec(&bootstrap, &["secrets", "set", "demo/bench", "--admin-socket", socket], &[], value.as_bytes());
        let got = exec(&bootstrap, &["secrets", "get", "demo/bench", "--admin-socket", socket], &[], b"");
        ours.push(started.elapsed());
        assert_eq!(String::from_utf8_lossy(&got.stdout), value);

        let started = Instant::now();
        exec(&bao, &["kv", "put", "-mount=secret", "edgeseal/demo/bench-bao", "value=-"], &bao_env, value.as_bytes());
        let got = exec(&bao, &["kv", "get", "-mount=secret", "-field=value", "edgeseal/demo/bench-bao"], &bao_env, b"");
        theirs.push(started.elapsed());
        assert_eq!(String::from_utf8_lossy(&got.stdout).trim_end(), value);
    }
    println!("| round trip (set + get) | n | edgeseal p50 | p90 | alternative p50 | p90 | edgeseal faster by |");
    println!("|---|---|---|---|---|---|---|");
    let ratio = row("set + get", &ours, &theirs, "bao kv put/get");
    println!();
    println!("target ≥ 5x faster per round trip: {:.1}x, {}", ratio, verdict(ratio >= 5.0));
    Figure::new("admin", "secrets set + get, p50", ms(percentile(&ours, 0.5)), ">= 5x faster", ratio >= 5.0)
        .against(format!("bao kv put + get: {}", ms(percentile(&theirs, 0.5))), format!("{ratio:.1}x faster"))
        .record();
    println!();

    // The service reads what was set, so that OpenBao's audit log holds a service's read to copy.
    assert!(node.fetch());
    let out = exec(&node.client(), &["token", "--socket", node.socket().to_str().unwrap()], &[], b"");
    let service_token: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let service_token = service_token["auth"]["client_token"].as_str().unwrap().to_string();
    let read = Command::new("curl")
        .args(["-sS", "--fail", "--cacert", ca.to_str().unwrap(), "-H"])
        .arg(format!("X-Vault-Token: {service_token}"))
        .arg(format!("{address}/v1/secret/data/edgeseal/demo/bench"))
        .output()
        .unwrap();
    assert!(read.status.success());

    // 2. audit over a 100,000-line OpenBao audit log.
    let accessors = pad_audit_logs(&node, audit_lines, 1000);
    let bao_log = node.data_dir().join("audit.log");
    let lines = fs::read_to_string(&bao_log).unwrap().lines().count();
    let size = fs::metadata(&bao_log).unwrap().len();
    let mut audit = Vec::new();
    let mut jq = Vec::new();
    let accessor_list = serde_json::to_string(&accessors).unwrap();
    let filter = format!(
        r#"select(.type == "response" and (.auth.accessor as $a | {accessor_list} | index($a))) | {{time, path: .request.path, op: .request.operation}}"#
    );
    let mut events = 0;
    for _ in 0..5 {
        let started = Instant::now();
        let out = exec(&bootstrap, &["audit", "--service", "demo", "--json", "--admin-socket", socket], &[], b"");
        audit.push(started.elapsed());
        events = out.stdout.iter().filter(|&&b| b == b'\n').count();
        let started = Instant::now();
        exec(Path::new("jq"), &["-c", &filter, bao_log.to_str().unwrap()], &[], b"");
        jq.push(started.elapsed());
    }
    println!(
        "| audit over OpenBao's log ({lines} lines, {:.0} MB) | n | edgeseal p50 | p90 | alternative p50 | p90 | edgeseal faster by |",
        size as f64 / 1e6
    );
    println!("|---|---|---|---|---|---|---|");
    row("audit --service demo --json", &audit, &jq, "jq filter (no join)");
    println!();
    let p50 = percentile(&audit, 0.5);
    println!("- {events} events joined and printed");
    println!("target audit under 1 s over {lines} lines: {}, {}", ms(p50), verdict(p50 < Duration::from_secs(1)));
    let jq_p50 = percentile(&jq, 0.5);
    Figure::new("admin", &format!("audit over {lines} lines, p50"), ms(p50), "< 1 s", p50 < Duration::from_secs(1))
        .against(
            format!("jq filter, no join: {}", ms(jq_p50)),
            format!("{:.1}x faster", jq_p50.as_secs_f64() / p50.as_secs_f64()),
        )
        .record();

    rt.block_on(client.revoke_self(&token)).unwrap();
    node.stop(run);
}
