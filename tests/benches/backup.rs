//! `make bench` — backup and restore (SPEC §13) of a store of `BENCH_SECRETS` (default 1,000) secrets,
//! beside what a user would script instead with a plain OpenBao: `bao operator raft snapshot
//! save/restore` plus manual unseals. Same secrets (KV v2, same paths and values) in both stores;
//! release binaries, real OpenBao, TLS on 127.0.0.1 with edgeseal's own PKI for both.
//!
//! 1. edgeseal: device A (release `security-bootstrap run`, static seal) holds the secrets under
//!    `demo/` (written for the benchmark with a token of the `edgeseal-admin` policy, untimed).
//!    Timed: `security-bootstrap backup --to <age recipient> -o FILE` through A's admin socket, and
//!    the file's size. A stops. Device B (other hardware IKM, fresh directories, nothing running):
//!    - *restore alone*: `security-bootstrap restore --identity KEY FILE --from <A's signing key>
//!      --config B.yaml` (the key from A's `node show`, untimed), from its spawn to its exit;
//!    - *run to serving*: then `security-bootstrap run` from its spawn until the ready file exists
//!      AND a token fetched by the `demo` service over the token socket reads one of A's secrets
//!      (value compared);
//!    - *restore to serving* = both, from the spawn of `restore` to that read.
//! 2. The alternative: a plain OpenBao (Shamir, `bao operator init -key-shares=N -key-threshold=T`,
//!    `BENCH_SHARES`, default 1/1: the fewest unseal calls, the alternative's best case; root token)
//!    with the same secrets. Timed: `bao operator raft snapshot save FILE` and the file's size. The
//!    source stops. *Snapshot restore alone*, from "nothing running" (an empty data directory, the
//!    config written) to "a secret is readable", all of it inside the window: spawn `bao server` and
//!    wait for its listener; `bao operator init`; `bao write sys/unseal key=-` (the key on stdin)
//!    with the new node's own T keys; `bao operator raft snapshot restore -force FILE` (retried
//!    until the node is active); the node seals itself (RECIPES.md §1.f): the same unseal call with
//!    the SOURCE's T keys whenever `bao status` says sealed; `bao kv get` of the same secret with the SOURCE's root token
//!    until it returns the value. Every step is one `bao` CLI call, as a script would make them.
//!
//! Printed: backup vs snapshot save (time, size), restore to serving vs snapshot restore alone (the
//! ratio and the verdict against the target, ≤ 2x), medians over `BENCH_ROUNDS` rounds, and
//! where the time goes inside edgeseal's restore (one round: its `--log-format json` log at info, its
//! OpenBao's log and audit log, merged by time) and inside the alternative's (OpenBao's log).
//! No timing is asserted.
//!
//! Environment: `CARGO_TARGET_DIR` (where the release binaries are), `EDGESEAL_BAO` (the `bao`
//! binary), `BENCH_SECRETS` (default 1000), `BENCH_ROUNDS` (default 3), `BENCH_SHARES` (`N/T`,
//! default `1/1`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use edgeseal_tests::bench::{bao_version, cpus, env_count, loadavg, ms, percentile, verdict, Figure};
use edgeseal_tests::device::{DEVICE_IKM, OTHER_IKM};
use edgeseal_tests::openbao::bao_binary;
use edgeseal_tests::pki::TestPki;
use edgeseal_tests::ports::free_port;
use edgeseal_tests::process::ChildGuard;
use edgeseal_tests::release::{release_binary, Node, Seal, LIMIT};
use edgeseal_tests::{age_keygen, output_with_stdin};
use nix::sys::signal::Signal;
use openbao_client::{Client, Pin, Token};
use secretstore_setup::keystore::{derive_file_kek, open};
use secretstore_setup::seal::material::SealMaterial;
use secretstore_setup::seal::{CERT_MOUNT, CERT_NAME};
use secretstore_setup::server_config::ServerConfig;
use secretstore_setup::KeystoreDir;
use serde_json::{Map, Value};

/// Calls `check` every 10 ms (a finer grain than the harness's `poll_until`, whose pauses grow to
/// 100 ms: these waits are inside timed windows) until it returns `Some`; `None` after `LIMIT`.
fn retry<T>(mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let started = Instant::now();
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if started.elapsed() > LIMIT {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The secret both stores are read back through, by index.
const PROBE: usize = 500;

fn secret_name(i: usize) -> String {
    format!("bench-{i:04}")
}

/// `count` distinct pseudo-random 48-character values (xorshift: not compressible like repeats,
/// the same in both stores).
fn values(count: usize, seed: u64) -> Vec<String> {
    let mut x = seed | 1;
    (0..count)
        .map(|_| {
            (0..3)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    format!("{x:016x}")
                })
                .collect()
        })
        .collect()
}

/// Writes `values` as `secret/edgeseal/demo/bench-NNNN` (`{"value": …}`) with `token`.
fn seed(rt: &tokio::runtime::Runtime, client: &Client, token: &Token, values: &[String]) {
    rt.block_on(async {
        for (i, value) in values.iter().enumerate() {
            let mut data = Map::new();
            data.insert("value".into(), Value::String(value.clone()));
            client.kv_write(token, "secret", &format!("edgeseal/demo/{}", secret_name(i)), &data, None).await.unwrap();
        }
    });
}

/// Runs `program args` with `stdin`; its output (must succeed).
fn exec(program: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let out = output_with_stdin(Command::new(program).args(args), stdin);
    assert!(out.status.success(), "{} {args:?}: {}", program.display(), String::from_utf8_lossy(&out.stderr));
    out
}

/// A token with the `edgeseal-admin` policy, made as edgeseal makes its own (as `benches/admin.rs`).
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

/// One read of `demo/bench-NNNN` by the `demo` service: a token from the token socket, then the
/// secret over HTTPS. `None` while either fails.
fn service_read(node: &Node, i: usize) -> Option<String> {
    let out = Command::new(node.client()).arg("token").arg("--socket").arg(node.socket()).output().unwrap();
    if !out.status.success() {
        return None;
    }
    let answer: Value = serde_json::from_slice(&out.stdout).ok()?;
    let token = answer["auth"]["client_token"].as_str()?.to_string();
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--cacert"])
        .arg(node.device.path().join("pki/ca/ca.pem"))
        .arg("-H")
        .arg(format!("X-Vault-Token: {token}"))
        .arg(format!("https://127.0.0.1:{}/v1/secret/data/edgeseal/demo/{}", node.port, secret_name(i)))
        .output()
        .unwrap();
    let body: Value = serde_json::from_slice(&out.stdout).ok()?;
    body["data"]["data"]["value"].as_str().map(str::to_string)
}

/// One round of edgeseal's figures.
struct Ours {
    backup: Duration,
    size: u64,
    restore: Duration,
    serving: Duration,
    total: Duration,
    /// When the restore command was spawned, its JSON log, the log of the OpenBao it ran, and that
    /// OpenBao's audit log (its first start, on the throwaway store, has one).
    log: (SystemTime, String, String, String),
}

fn edgeseal_round(bootstrap: &Path, rt: &tokio::runtime::Runtime, values: &[String]) -> Ours {
    let a = Node::new(Seal::Static, bootstrap);
    let (run, _) = a.boot();
    let (client, token) = admin_token(&a, rt);
    seed(rt, &client, &token, values);
    rt.block_on(client.revoke_self(&token)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (key, recipient) = age_keygen(dir.path(), "recovery.key");
    let file = dir.path().join("a.backup");
    let socket = a.admin_socket();
    // A's signing key, which the restore pins (`--from`), as an operator notes it beside the backup.
    let node = exec(bootstrap, &["node", "show", "--json", "--admin-socket", socket.to_str().unwrap()], b"");
    let node: Value = serde_json::from_slice(&node.stdout).unwrap();
    let signer = node["signing_key"].as_str().expect("node show names the signing key").to_string();
    let args = ["backup", "--to", &recipient, "-o", file.to_str().unwrap(), "--admin-socket", socket.to_str().unwrap()];
    let started = Instant::now();
    exec(bootstrap, &args, b"");
    let backup = started.elapsed();
    let size = fs::metadata(&file).unwrap().len();
    a.stop(run);
    drop(a);

    let b = Node::new(Seal::Static, bootstrap);
    b.device.set_hardware(OTHER_IKM);
    let spawned = SystemTime::now();
    let started = Instant::now();
    // A one-shot command logs warnings only, unless told: its info events are its steps.
    let out = Command::new(bootstrap)
        .env("EDGESEAL_LOG", "info")
        .args(["--log-format", "json", "restore", "--identity"])
        .arg(&key)
        .arg(&file)
        .args(["--from", &signer])
        .arg("--config")
        .arg(b.config_path())
        .output()
        .unwrap();
    let restore = started.elapsed();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "restore failed:\n{log}");
    let bao_log = fs::read_to_string(b.data_dir().join("openbao.log")).unwrap_or_default();
    let audit = fs::read_to_string(b.data_dir().join("audit.log")).unwrap_or_default();
    let run_started = Instant::now();
    let (run, _) = b.boot();
    let read = retry(|| service_read(&b, PROBE));
    let total = started.elapsed();
    let serving = run_started.elapsed();
    assert_eq!(read.as_deref(), Some(values[PROBE].as_str()), "B serves A's secret:\n{}", b.log_tail());
    b.stop(run);
    Ours { backup, size, restore, serving, total, log: (spawned, log, bao_log, audit) }
}

/// A plain OpenBao (raft, TLS from `pki`, no audit device) in its own directory.
struct Plain {
    dir: tempfile::TempDir,
    listen: SocketAddr,
    ca: PathBuf,
    child: Option<ChildGuard>,
}

impl Plain {
    /// Writes the config of a fresh OpenBao (nothing started).
    fn new(pki: &TestPki) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        fs::create_dir_all(&data).unwrap();
        let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
        let server = ServerConfig {
            data_dir: data,
            listen,
            cluster: SocketAddr::from((Ipv4Addr::LOCALHOST, free_port())),
            tls_cert: pki.cert("openbao"),
            tls_key: pki.key("openbao"),
            audit_log: None,
            unauthed_generate_root: false,
            api_socket: None,
            tcp_client_ca: None,
            static_seal: None,
            self_init: None,
            member: None,
        };
        fs::write(dir.path().join("config.hcl"), server.render()).unwrap();
        Self { dir, listen, ca: pki.ca(), child: None }
    }

    /// Spawns `bao server` and waits for its listener.
    fn start(&mut self, bao: &Path) {
        let log = fs::File::create(self.dir.path().join("server.log")).unwrap();
        let child = Command::new(bao)
            .arg("server")
            .arg(format!("-config={}", self.dir.path().join("config.hcl").display()))
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(ChildGuard::new("openbao", child));
        let up = retry(|| TcpStream::connect_timeout(&self.listen, Duration::from_millis(200)).ok());
        assert!(up.is_some(), "OpenBao did not listen:\n{}", self.server_log());
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.stop(Signal::SIGTERM, LIMIT);
        }
    }

    fn server_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// One `bao args` call against this server (with `token`, `stdin`): its output, success or not.
    fn bao(&self, bao: &Path, token: Option<&str>, args: &[&str], stdin: &[u8]) -> Output {
        let mut command = Command::new(bao);
        command
            .args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", self.dir.path())
            .env("BAO_ADDR", format!("https://{}", self.listen))
            .env("BAO_CACERT", &self.ca);
        if let Some(token) = token {
            command.env("BAO_TOKEN", token);
        }
        output_with_stdin(&mut command, stdin)
    }

    fn bao_ok(&self, bao: &Path, token: Option<&str>, args: &[&str], stdin: &[u8]) -> Output {
        let out = self.bao(bao, token, args, stdin);
        assert!(out.status.success(), "bao {args:?}: {}\n{}", String::from_utf8_lossy(&out.stderr), self.server_log());
        out
    }

    /// `bao operator init` with `shares`: the unseal keys and the root token.
    fn init(&self, bao: &Path, (n, t): (usize, usize)) -> (Vec<String>, String) {
        let out = self.bao_ok(
            bao,
            None,
            &["operator", "init", &format!("-key-shares={n}"), &format!("-key-threshold={t}"), "-format=json"],
            b"",
        );
        let init: Value = serde_json::from_slice(&out.stdout).unwrap();
        let keys = init["unseal_keys_b64"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_string());
        (keys.take(t).collect(), init["root_token"].as_str().unwrap().to_string())
    }

    /// Unseals with each key: `bao write sys/unseal key=-`, the key on stdin (`bao operator unseal`
    /// takes it in argv or from a terminal only; the same call to `sys/unseal`).
    fn unseal(&self, bao: &Path, keys: &[String]) {
        for key in keys {
            self.bao_ok(bao, None, &UNSEAL, format!("{key}\n").as_bytes());
        }
    }

    /// `bao args` until it succeeds (the node may still be electing itself).
    fn bao_until_ok(&self, bao: &Path, token: &str, args: &[&str]) -> Output {
        let out = retry(|| {
            let out = self.bao(bao, Some(token), args, b"");
            out.status.success().then_some(out)
        });
        out.unwrap_or_else(|| panic!("bao {args:?} never succeeded:\n{}", self.server_log()))
    }
}

/// One unseal call, the key on stdin.
const UNSEAL: [&str; 4] = ["write", "-format=json", "sys/unseal", "key=-"];

/// One round of the alternative's figures.
struct Theirs {
    save: Duration,
    size: u64,
    restore: Duration,
    /// When the fresh OpenBao was spawned, and its log.
    log: (SystemTime, String),
}

fn plain_round(bao: &Path, rt: &tokio::runtime::Runtime, values: &[String], shares: (usize, usize)) -> Theirs {
    let pki = TestPki::new();
    let mut source = Plain::new(&pki);
    source.start(bao);
    let (source_keys, root) = source.init(bao, shares);
    source.unseal(bao, &source_keys);
    source.bao_until_ok(bao, &root, &["secrets", "enable", "-path=secret", "kv-v2"]);
    let client = Client::new(
        &format!("https://{}", source.listen),
        &pki.ca(),
        &Pin::ServerCert(pki.cert("openbao")),
        Duration::from_secs(30),
    )
    .unwrap();
    let token = Token::new(root.clone());
    // KV v2's first write may race its mount's upgrade: retry the first one.
    source.bao_until_ok(bao, &root, &["kv", "put", "-mount=secret", "edgeseal/demo/warmup", "value=x"]);
    seed(rt, &client, &token, values);
    let file = source.dir.path().join("snap.bin");
    let started = Instant::now();
    source.bao_ok(bao, Some(&root), &["operator", "raft", "snapshot", "save", file.to_str().unwrap()], b"");
    let save = started.elapsed();
    let size = fs::metadata(&file).unwrap().len();
    source.stop();

    let mut fresh = Plain::new(&pki);
    let probe = format!("edgeseal/demo/{}", secret_name(PROBE));
    let spawned = SystemTime::now();
    let started = Instant::now();
    fresh.start(bao);
    let (own_keys, own_root) = fresh.init(bao, shares);
    fresh.unseal(bao, &own_keys);
    fresh.bao_until_ok(bao, &own_root, &["operator", "raft", "snapshot", "restore", "-force", file.to_str().unwrap()]);
    let read = retry(|| {
        let status = fresh.bao(bao, None, &["status", "-format=json"], b"");
        let sealed = serde_json::from_slice::<Value>(&status.stdout).ok().and_then(|s| s["sealed"].as_bool());
        if sealed == Some(true) {
            // Not checked: a call racing the node's own sealing is simply made again.
            for key in &source_keys {
                fresh.bao(bao, None, &UNSEAL, format!("{key}\n").as_bytes());
            }
        }
        let out = fresh.bao(bao, Some(&root), &["kv", "get", "-mount=secret", "-field=value", &probe], b"");
        if out.status.success() {
            return Some(String::from_utf8_lossy(&out.stdout).trim_end().to_string());
        }
        None
    });
    let restore = started.elapsed();
    assert_eq!(read.as_deref(), Some(values[PROBE].as_str()), "the restored OpenBao serves the secret");
    fresh.stop();
    Theirs { save, size, restore, log: (spawned, fresh.server_log()) }
}

/// OpenBao's log lines that mark a restore's steps (hclog text: `TIME [LEVEL] source: message`).
const BAO_STEPS: [&str; 9] = [
    "security barrier initialized",
    "election won",
    "vault is unsealed",
    "shutting down prior to restoring snapshot",
    "restored user snapshot",
    "running post snapshot restore invalidations",
    "vault is sealed",
    "raft recovery initiated",
    "shutdown triggered",
];

/// The restore's steps: edgeseal's JSON log events and OpenBao's step lines, as offsets from the
/// command's spawn, in time order.
fn log_steps(spawned: SystemTime, log: &str, bao_log: &str, audit: &str) -> Vec<(Duration, String)> {
    let ours = log.lines().filter_map(|line| serde_json::from_str::<Value>(line).ok()).filter_map(|event| {
        let at = humantime::parse_rfc3339_weak(event["timestamp"].as_str()?).ok()?;
        Some((at, format!("edgeseal: {}", event["fields"]["message"].as_str()?)))
    });
    let theirs = bao_log.lines().filter(|line| BAO_STEPS.iter().any(|step| line.contains(step))).filter_map(|line| {
        let (time, rest) = line.split_once(' ')?;
        let at = humantime::parse_rfc3339_weak(time).ok()?;
        Some((at, format!("openbao: {}", rest.trim_start())))
    });
    let requests = audit.lines().filter_map(|line| serde_json::from_str::<Value>(line).ok()).filter_map(|entry| {
        (entry["type"] == "request").then_some(())?;
        let at = humantime::parse_rfc3339_weak(entry["time"].as_str()?).ok()?;
        let request = &entry["request"];
        Some((at, format!("request: {} {}", request["operation"].as_str()?, request["path"].as_str()?)))
    });
    let mut steps: Vec<(Duration, String)> = ours
        .chain(theirs)
        .chain(requests)
        .map(|(at, what)| (at.duration_since(spawned).unwrap_or_default(), what))
        .collect();
    steps.sort_by_key(|(at, _)| *at);
    steps
}

fn kb(bytes: u64) -> String {
    format!("{:.0} kB", bytes as f64 / 1e3)
}

fn median(samples: impl Iterator<Item = Duration>) -> Duration {
    percentile(&samples.collect::<Vec<_>>(), 0.5)
}

fn median_size(samples: impl Iterator<Item = u64>) -> u64 {
    let mut sizes: Vec<u64> = samples.collect();
    sizes.sort_unstable();
    sizes[(sizes.len() - 1) / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let secrets = env_count("BENCH_SECRETS", 1000, PROBE + 1);
    let rounds = env_count("BENCH_ROUNDS", 3, 1);
    let shares = std::env::var("BENCH_SHARES").unwrap_or_else(|_| "1/1".into());
    let shares: (usize, usize) = shares
        .split_once('/')
        .and_then(|(n, t)| Some((n.parse().ok()?, t.parse().ok()?)))
        .filter(|&(n, t)| t >= 1 && t <= n)
        .unwrap_or_else(|| panic!("BENCH_SHARES={shares}: N/T with 1 <= T <= N"));
    let bootstrap = release_binary("security-bootstrap");
    let bao = bao_binary();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let values = values(secrets, 0x9e37_79b9_7f4a_7c15);

    println!("## Backup and restore: edgeseal vs `bao operator raft snapshot save/restore` + manual unseal");
    println!();
    println!("- machine: {} CPUs, load {}; {}", cpus(), loadavg(), bao_version(&bao));
    println!(
        "- {secrets} secrets (KV v2, 48-char random values, same paths and values in both stores); {rounds} round(s), medians"
    );
    println!(
        "- edgeseal: static seal, backup to an age recipient; restore onto other hardware, then `run` until a service token reads a restored secret"
    );
    println!(
        "- alternative: plain OpenBao, Shamir {}/{} (`bao operator init -key-shares={} -key-threshold={}`), root token, TLS on 127.0.0.1 (edgeseal's PKI, no audit device), every step a `bao` CLI call (unseal: `bao write sys/unseal key=-`); the fresh node is unsealed with its own keys, restored with -force, then unsealed with the source's keys",
        shares.0, shares.1, shares.0, shares.1
    );
    println!();

    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        ours.push(edgeseal_round(&bootstrap, &rt, &values));
        theirs.push(plain_round(&bao, &rt, &values, shares));
        let (o, t) = (ours.last().unwrap(), theirs.last().unwrap());
        eprintln!(
            "round {}: backup {} {} | restore {} + run {} = {} | save {} {} | snapshot restore {}",
            round + 1,
            ms(o.backup),
            kb(o.size),
            ms(o.restore),
            ms(o.serving),
            ms(o.total),
            ms(t.save),
            kb(t.size),
            ms(t.restore)
        );
    }

    let backup = median(ours.iter().map(|o| o.backup));
    let save = median(theirs.iter().map(|t| t.save));
    let (size, snap) = (median_size(ours.iter().map(|o| o.size)), median_size(theirs.iter().map(|t| t.size)));
    println!("| make the backup | edgeseal | alternative | edgeseal / alternative |");
    println!("|---|---|---|---|");
    println!(
        "| time (median) | {} `backup` | {} `snapshot save` | {:.1}x |",
        ms(backup),
        ms(save),
        backup.as_secs_f64() / save.as_secs_f64()
    );
    println!(
        "| file size | {} (age, armored) | {} (raft snapshot) | {:.1}x |",
        kb(size),
        kb(snap),
        size as f64 / snap as f64
    );
    println!();

    let restore = median(ours.iter().map(|o| o.restore));
    let serving = median(ours.iter().map(|o| o.serving));
    let total = median(ours.iter().map(|o| o.total));
    let alone = median(theirs.iter().map(|t| t.restore));
    let ratio = total.as_secs_f64() / alone.as_secs_f64();
    println!("| restore, nothing running → a secret readable (median) | edgeseal | alternative |");
    println!("|---|---|---|");
    println!("| `restore` alone | {} | |", ms(restore));
    println!("| `run` to serving (ready + a service token reads a restored secret) | {} | |", ms(serving));
    println!(
        "| restore to serving / snapshot restore alone (start, init, unseal, restore -force, unseal with the source's keys, read) | {} | {} |",
        ms(total),
        ms(alone)
    );
    println!();
    println!(
        "target restore to serving within 2x the snapshot restore alone: {ratio:.2}x ({} vs {}), {}",
        ms(total),
        ms(alone),
        verdict(ratio <= 2.0)
    );
    Figure::new("backup", "restore onto a new board -> serving, median", ms(total), "<= 2x", ratio <= 2.0)
        .against(format!("OpenBao snapshot restore alone: {}", ms(alone)), format!("{ratio:.2}x"))
        .record();
    println!();

    // Where the time goes inside edgeseal's restore: the round whose total is the median.
    let mut by_total: Vec<&Ours> = ours.iter().collect();
    by_total.sort_by_key(|o| o.total);
    let middle = by_total[(by_total.len() - 1) / 2];
    let steps = log_steps(middle.log.0, &middle.log.1, &middle.log.2, &middle.log.3);
    println!(
        "Inside `restore` (median round, {} from spawn to exit): its JSON log (EDGESEAL_LOG=info), its OpenBao's log, and the requests in that OpenBao's audit log (its first start only has one):",
        ms(middle.restore)
    );
    println!();
    steps_table(&steps, middle.restore, "(process exit)");
    println!();

    let mut by_restore: Vec<&Theirs> = theirs.iter().collect();
    by_restore.sort_by_key(|t| t.restore);
    let middle = by_restore[(by_restore.len() - 1) / 2];
    println!(
        "The alternative's snapshot restore (median round, {} to the read), from OpenBao's log:",
        ms(middle.restore)
    );
    println!();
    steps_table(&log_steps(middle.log.0, "", &middle.log.1, ""), middle.restore, "(the secret read)");
}

fn steps_table(steps: &[(Duration, String)], end: Duration, last: &str) {
    println!("| at | since previous | event |");
    println!("|---|---|---|");
    let mut previous = Duration::ZERO;
    let mut said = "";
    // Up to the end of the window (OpenBao's own stop comes after it), repeats once.
    for (at, message) in steps.iter().filter(|(at, _)| *at <= end) {
        if std::mem::replace(&mut said, message.as_str()) == message {
            continue;
        }
        let text: String = message.chars().take(100).collect();
        println!("| {} | +{} | {} |", ms(*at), ms(at.saturating_sub(previous)), text.replace('|', "/"));
        previous = *at;
    }
    println!("| {} | +{} | {last} |", ms(end), ms(end.saturating_sub(previous)));
}
