//! `cargo bench -p edgeseal-tests --bench secrets`: what a service pays to read one secret through
//! edgeseal's socket (`GET /v1/secrets/<name>`, issue 19), side by side with what it does without
//! edgeseal, in the same run, against the same OpenBao, the same secret (one 32-byte value) and the
//! same policy (`edgeseal-svc-shared`, the one the token server's tokens for that service carry).
//!
//! * (s1) edgeseal, `reuse: true` service `shared`: `token-load --method GET` (this crate's load
//!   generator) runs on the host, so every request is attested by SO_PEERCRED and `/proc` (the unix
//!   selector is its uid and its executable, a copy of `token-load` named for the service); each get
//!   is a new connection, `GET /v1/secrets/db-password`, and the server reads with the service's
//!   cached shared token. The case the target is about.
//! * (s2) the same for service `fresh` (no `reuse`), run as uid 4242 through `setpriv` (the config
//!   refuses two services that only the executable tells apart): the server creates a token for
//!   this read, reads, and revokes it before answering. So the bench runs as root.
//! * (d1) without edgeseal: an AppRole login (auth/bench-approle, a role with the same policy and
//!   TTL) then the KV read over TLS, per get, on a pooled client (what a service does that logs in
//!   for each read, or a script with a role_id/secret_id).
//! * (d2) the floor: the KV read alone with a token already held (one login before the run), on a
//!   pooled client (what a long-running service does between logins).
//! * A cached get in the `edgeseal-client` crate never reaches the socket (no I/O until its check
//!   interval has passed): `client/examples/cached_get.rs` measures it, beside checking on every get
//!   (`make bench` runs it after this bench).
//!
//! The token server is the real `security-bootstrap token-server --config FILE` process (release
//! build). Every load generator is single-threaded with C requests in flight (C = 1 and 8). The
//! scenarios run interleaved in rounds (d2, s1, d1, s2 at 1 client, then at 8) so the storage noise
//! of raft hits them alike; the figures merge all rounds and the s1/d1 and s1/d2 ratios are also
//! given round by round. OpenBao's audit log gives, per scenario, the OpenBao requests each get made
//! (by path, warm-up gets included) and the time spent inside OpenBao; `/proc` gives the CPU time
//! the token server and OpenBao spent per get.
//!
//! Environment: `EDGESEAL_BOOTSTRAP`/`CARGO_TARGET_DIR` (the release `security-bootstrap`, see the
//! harness), `EDGESEAL_BAO` (the `bao` binary), `BENCH_SECONDS` (per scenario per round, default
//! 1.2), `BENCH_ROUNDS` (default 5), `BENCH_ONLY` (comma-separated scenarios among `s1,s2,d1,d2`,
//! default all: e.g. `BENCH_ONLY=s1` to profile the token server's cached-token read path alone).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use edgeseal_tests::bench::{self, bao_version, cpus, loadavg, verdict, Figure};
use edgeseal_tests::device::{service, Device};
use edgeseal_tests::openbao::{bao_binary, OpenBao};
use edgeseal_tests::pki::TestPki;
use openbao_client::api::sys::GenerateRoot;
use openbao_client::{Client, SecretString, Token};
use security_bootstrap::config::ServiceName;
use serde_json::{json, Map, Value};
use token_server::config::{Selectors, ServerConfig, UnixSelector};

/// Target: (s1) p50 at most this many times (d1) p50.
const TARGET_S1_D1: f64 = 0.5;
/// Gets `token-load` sends before its clock starts; the direct scenarios' warm-up calls.
const WARMUP_SOCKET: u64 = 10;
const WARMUP_HOST: u64 = 5;
/// The services' token TTL (`device::service`), asked for by the AppRole too.
const TTL_SECS: u64 = 3600;
const APPROLE_MOUNT: &str = "bench-approle";
/// The secret every scenario reads (in the folder of the service it reads as).
const SECRET: &str = "db-password";
/// The uid (s2)'s load runs as (through `setpriv`; the bench runs as root).
const FRESH_UID: u32 = 4242;
/// Its value: 32 bytes, written to both services' folders before the run.
const VALUE: &str = "bench19-secret-value-32-bytes-ok";

/// Requests in flight: one client, then eight.
const CLIENTS: [usize; 2] = [1, 8];

/// The scenarios, in the order they run within a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    D2,
    S1,
    D1,
    S2,
}

/// Where a scenario's row is: rows are [`CLIENTS`] x [`Scenario::ALL`], in that order.
fn row_index(scenario: Scenario, clients: usize) -> usize {
    let c = CLIENTS.iter().position(|&n| n == clients).unwrap();
    let s = Scenario::ALL.iter().position(|&x| x == scenario).unwrap();
    c * Scenario::ALL.len() + s
}

impl Scenario {
    const ALL: [Scenario; 4] = [Scenario::D2, Scenario::S1, Scenario::D1, Scenario::S2];

    fn key(self) -> &'static str {
        match self {
            Scenario::S1 => "s1",
            Scenario::S2 => "s2",
            Scenario::D1 => "d1",
            Scenario::D2 => "d2",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Scenario::S1 => "(s1) edgeseal socket, cached token",
            Scenario::S2 => "(s2) edgeseal socket, token per read",
            Scenario::D1 => "(d1) AppRole login + KV read, TLS",
            Scenario::D2 => "(d2) KV read, token held, TLS",
        }
    }

    /// The OpenBao requests one get makes, by construction (the audit log counts them too).
    fn by_construction(self) -> &'static str {
        match self {
            Scenario::S1 => "1: KV read (the shared token is cached)",
            Scenario::S2 => "3: token create, KV read, revoke-accessor",
            Scenario::D1 => "2: AppRole login, KV read",
            Scenario::D2 => "1: KV read",
        }
    }
}

fn main() {
    let bootstrap = edgeseal_tests::release::release_binary("security-bootstrap");
    let load = PathBuf::from(env!("CARGO_BIN_EXE_token-load"));
    let secs = bench::env_number("BENCH_SECONDS", 1.2);
    let rounds = bench::env_number("BENCH_ROUNDS", 5.0) as usize;
    assert!(secs > 0.0 && rounds >= 1, "BENCH_SECONDS must be > 0 and BENCH_ROUNDS >= 1");
    let only = std::env::var("BENCH_ONLY").unwrap_or_else(|_| "s1,s2,d1,d2".into());
    let chosen: HashSet<&str> = only.split(',').map(str::trim).collect();
    for key in &chosen {
        assert!(Scenario::ALL.iter().any(|s| s.key() == *key), "BENCH_ONLY={only}: {key} is none of s1,s2,d1,d2");
    }
    let on = |s: Scenario| chosen.contains(s.key());
    let wall = Instant::now();

    println!("edgeseal secret-read benchmark: one secret for a host-attested service, with and without edgeseal");
    println!(
        "  token server: {} token-server (separate process, EDGESEAL_LOG={})",
        bootstrap.display(),
        std::env::var("EDGESEAL_LOG").unwrap_or_else(|_| "unset: the command's default".into())
    );
    println!("  load client:  copies of {} (one thread, C requests in flight)", load.display());
    println!("  OpenBao:      {}", bao_version(&bao_binary()));
    println!("  machine:      {} CPUs, load average at start {}", cpus(), loadavg());
    println!(
        "  each scenario: {rounds} rounds x {secs} s, interleaved (BENCH_ROUNDS, BENCH_SECONDS); BENCH_ONLY={only}"
    );

    // OpenBao with two services: `shared` (reuse) and `fresh` (a token per read), one secret each.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let pki = TestPki::new();
    let bao = OpenBao::start(&pki);
    let device = Device::new();
    let setup = device.setup(&bao, vec![service("shared", &[SECRET], None), service("fresh", &[SECRET], None)]);
    rt.block_on(setup.run()).unwrap();
    let client = setup.client().unwrap();
    let (mount, prefix) = (setup.store.kv_mount.clone(), setup.store.service_prefix.clone());
    let path_of = |service: &str| format!("{prefix}/{service}/{SECRET}");

    // A root token from the unseal shares (revoked at the end): the same 32-byte value in both
    // folders, and the AppRole of the alternative, with the policy of service `shared`.
    let root = rt
        .block_on(
            client.generate_root(
                GenerateRoot::Unauthenticated,
                bench::keystore_shares(&device).iter().map(Vec::as_slice),
            ),
        )
        .unwrap();
    let data = Map::from_iter([("value".to_string(), json!(VALUE))]);
    for name in ["shared", "fresh"] {
        rt.block_on(client.kv_write(&root, &mount, &path_of(name), &data, None)).unwrap();
    }
    let (role_id, secret_id) = rt.block_on(bench::approle(&client, &root, APPROLE_MOUNT, "shared", TTL_SECS));

    // The load generator as each service's executable (the unix selector is uid + path).
    let run_dir = tempfile::tempdir().unwrap();
    fs::set_permissions(run_dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let exe = |name: &str| run_dir.path().join(format!("secret-load-{name}"));
    for name in ["shared", "fresh"] {
        fs::copy(&load, exe(name)).unwrap();
        fs::set_permissions(exe(name), fs::Permissions::from_mode(0o755)).unwrap();
    }
    let socket = run_dir.path().join("token.sock");
    let config = write_server_config(&device, &setup, &socket, &exe);
    let server_log = run_dir.path().join("token-server.log");
    let server = bench::start_token_server(&bootstrap, &config, &socket, &server_log);
    let (server_pid, bao_pid) = (server.pid(), bao.pid().unwrap_or(0));
    println!("  raft storage: {} ({})", bao.dir().display(), bench::fs_type(bao.dir()));
    println!(
        "  pids:         token server {server_pid}, OpenBao {bao_pid} (to profile: BENCH_ONLY=s1 and perf record -p)"
    );
    println!();

    // What is measured is what is meant: each path answers the value (checked again on every direct get).
    let direct = |token: Option<Token>| Direct {
        client: Client::new(&bao.address(), bao.ca(), &bao.pin(), Duration::from_secs(10)).unwrap(),
        login: token.is_none().then(|| (role_id.clone(), secret_id.clone())),
        token,
        mount: mount.clone(),
        path: path_of("shared"),
    };
    let held = rt.block_on(client.approle_login(APPROLE_MOUNT, &role_id, &secret_id)).unwrap().client_token;
    let (d1_op, d2_op) = (direct(None), direct(Some(held)));
    rt.block_on(d1_op.once()).unwrap();
    rt.block_on(d2_op.once()).unwrap();

    let socket_load = |scenario: Scenario, n: usize, cpu: &mut Cpu| -> Load {
        let name = if scenario == Scenario::S1 { "shared" } else { "fresh" };
        let before = Cpu::sample(server_pid, bao_pid);
        let load = run_socket_load(&exe(name), uid_of(name), &socket, n, secs);
        cpu.add(&before, &Cpu::sample(server_pid, bao_pid));
        load
    };

    let mut rows: Vec<Row> = CLIENTS.iter().flat_map(|&n| Scenario::ALL.map(|s| Row::new(s, n))).collect();
    let mut windows = Vec::new();
    let mut cpu: HashMap<&str, Cpu> = HashMap::new();
    for round in 0..rounds {
        for n in CLIENTS {
            for scenario in Scenario::ALL.into_iter().filter(|s| on(*s)) {
                let i = row_index(scenario, n);
                let start = SystemTime::now();
                let load = match scenario {
                    Scenario::S1 | Scenario::S2 => socket_load(scenario, n, cpu.entry(scenario.key()).or_default()),
                    Scenario::D1 => rt.block_on(d1_op.clone().run(n, secs)),
                    Scenario::D2 => rt.block_on(d2_op.clone().run(n, secs)),
                };
                windows.push(Window { start, end: SystemTime::now(), row: i });
                rows[i].add(load);
            }
        }
        eprint!("\rround {}/{rounds} done ({:.0} s)", round + 1, wall.elapsed().as_secs_f64());
    }
    eprintln!();
    let _ = rt.block_on(client.revoke_self(&root));

    // The socket's answers were the secret, at the version written above (the value itself is
    // compared on every direct get; token-load reports `secret:v<version>`, never the value).
    for row in rows.iter().filter(|r| matches!(r.scenario, Scenario::S1 | Scenario::S2) && r.ok > 0) {
        assert_eq!(row.samples, HashSet::from(["secret:v2".to_string()]), "{}: {:?}", row.label(), row.samples);
    }

    print_table(&rows);
    println!();
    print_verdict(&rows, on(Scenario::S1) && on(Scenario::D1), on(Scenario::S1) && on(Scenario::D2));
    println!();
    let audit = openbao_requests(&bao.audit_log(), &windows, rows.len());
    print_requests(&rows, &audit);
    println!();
    print_cpu(&rows, &cpu);
    println!();
    println!("notes:");
    println!("  * Latency is per get as the caller sees it: (s1)/(s2) connect to the socket .. last body byte");
    println!(
        "    (a new connection per get); (d1)/(d2) first request .. last body byte on kept-alive TLS connections."
    );
    println!("  * (d1) leaves each login's token to expire at its TTL (revoking it would be a 3rd request per get);");
    println!("    (s2) revokes its token before answering; (s1) and (d2) create no token.");
    println!("  * (d1)/(d2) need a role_id and secret_id delivered to the service; (s1)/(s2) need no credential.");
    println!(
        "  * The bench config raises token_server.rate_per_second/rate_burst to 1000000 (defaults: 50/s, burst 100)."
    );
    println!(
        "  * Client, token server and OpenBao share {} CPUs (load average at the end {}). The run took {:.0} s.",
        cpus(),
        loadavg(),
        wall.elapsed().as_secs_f64()
    );
    drop(server);
    let log = fs::read_to_string(&server_log).unwrap_or_default();
    let count = |what: &str| log.lines().filter(|l| l.contains(what)).count();
    println!("  * token-server log: {} warning/error lines.", count("WARN") + count("ERROR"));
}

// ---- the load -------------------------------------------------------------------------------------

/// `token-load --method GET` as `exe` (a copy named for the service) and `uid`, on the host: one
/// load run.
fn run_socket_load(exe: &Path, uid: u32, socket: &Path, concurrency: usize, secs: f64) -> Load {
    let mut command = if uid == nix::unistd::geteuid().as_raw() {
        Command::new(exe)
    } else {
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={uid}")).arg(format!("--regid={uid}")).arg("--clear-groups").arg(exe);
        c
    };
    let out = command
        .arg("--socket")
        .arg(socket)
        .args(["--method", "GET", "--path", &format!("/v1/secrets/{SECRET}"), "--raw"])
        .args(["--concurrency", &concurrency.to_string(), "--duration", &secs.to_string()])
        .args(["--warmup", &WARMUP_SOCKET.to_string()])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", exe.display()));
    let text = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!("{} printed no JSON ({e}): {}", exe.display(), String::from_utf8_lossy(&out.stderr))
    });
    assert!(
        out.status.success(),
        "{} failed: statuses {} warm-up {} first error {}",
        exe.display(),
        report["statuses"],
        report["warmup"]["statuses"],
        report["first_error"]
    );
    let latencies_us: Vec<u64> =
        report["latencies_us"].as_array().map(|a| a.iter().filter_map(Value::as_u64).collect()).unwrap_or_default();
    Load {
        ok: report["ok"].as_u64().unwrap_or(0),
        elapsed: Duration::from_secs_f64(report["elapsed_secs"].as_f64().unwrap_or(0.0)),
        warmup: WARMUP_SOCKET,
        samples: report["sample_accessor"].as_str().map(str::to_string).into_iter().collect(),
        latencies_us,
    }
}

/// A get straight from OpenBao, as a service without edgeseal does it.
#[derive(Clone)]
struct Direct {
    client: Client,
    /// (d1): an AppRole login before each read.
    login: Option<(String, SecretString)>,
    /// (d2): the token every read uses.
    token: Option<Token>,
    mount: String,
    path: String,
}

impl Direct {
    /// One get; checks the value.
    async fn once(&self) -> Result<(), String> {
        let token = match (&self.login, &self.token) {
            (Some((role_id, secret_id)), _) => {
                self.client
                    .approle_login(APPROLE_MOUNT, role_id, secret_id)
                    .await
                    .map_err(|e| e.to_string())?
                    .client_token
            }
            (None, Some(token)) => token.clone(),
            (None, None) => return Err("neither a login nor a token".into()),
        };
        let read = self.client.kv_read_version(&token, &self.mount, &self.path, None).await;
        match read.map_err(|e| e.to_string())? {
            Some(secret) if secret.data.get("value") == Some(&json!(VALUE)) => Ok(()),
            Some(_) => Err(format!("{}: not the value written", self.path)),
            None => Err(format!("{}: no such secret", self.path)),
        }
    }

    /// `concurrency` loops of [`Direct::once`] for `secs` (after [`WARMUP_HOST`] unmeasured gets),
    /// on the caller's current-thread runtime.
    async fn run(self, concurrency: usize, secs: f64) -> Load {
        for _ in 0..WARMUP_HOST {
            self.once().await.unwrap_or_else(|e| panic!("warm-up: {e}"));
        }
        let started = Instant::now();
        let deadline = started + Duration::from_secs_f64(secs);
        let tasks: Vec<_> = (0..concurrency)
            .map(|_| {
                let op = self.clone();
                tokio::spawn(async move {
                    let (mut lat, mut errors) = (Vec::new(), Vec::new());
                    while Instant::now() < deadline {
                        let t0 = Instant::now();
                        let result = op.once().await;
                        lat.push(u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX));
                        if let Err(e) = result {
                            errors.push(e);
                        }
                    }
                    (lat, errors)
                })
            })
            .collect();
        let (mut latencies_us, mut errors) = (Vec::new(), Vec::new());
        for task in tasks {
            let (lat, err) = task.await.unwrap();
            latencies_us.extend(lat);
            errors.extend(err);
        }
        let elapsed = started.elapsed();
        assert!(errors.is_empty(), "{} gets failed, first: {}", errors.len(), errors[0]);
        Load { ok: latencies_us.len() as u64, elapsed, warmup: WARMUP_HOST, samples: HashSet::new(), latencies_us }
    }
}

/// One load run's results.
struct Load {
    latencies_us: Vec<u64>,
    ok: u64,
    elapsed: Duration,
    /// Unmeasured gets before the clock started (they reach OpenBao too).
    warmup: u64,
    /// What the socket answered (`secret:v<version>`).
    samples: HashSet<String>,
}

/// One scenario at one concurrency, across rounds.
struct Row {
    scenario: Scenario,
    clients: usize,
    latencies_us: Vec<u64>,
    ok: u64,
    warmup: u64,
    elapsed: Duration,
    samples: HashSet<String>,
    /// p50 of each round, for same-round ratios.
    round_p50: Vec<u64>,
}

impl Row {
    fn new(scenario: Scenario, clients: usize) -> Self {
        Self {
            scenario,
            clients,
            latencies_us: Vec::new(),
            ok: 0,
            warmup: 0,
            elapsed: Duration::ZERO,
            samples: HashSet::new(),
            round_p50: Vec::new(),
        }
    }

    fn label(&self) -> &'static str {
        self.scenario.label()
    }

    fn add(&mut self, mut load: Load) {
        load.latencies_us.sort_unstable();
        self.round_p50.push(bench::nearest_rank_us(&load.latencies_us, 50.0));
        self.latencies_us.extend(load.latencies_us);
        self.latencies_us.sort_unstable();
        self.ok += load.ok;
        self.warmup += load.warmup;
        self.elapsed += load.elapsed;
        self.samples.extend(load.samples);
    }

    fn p(&self, p: f64) -> u64 {
        bench::nearest_rank_us(&self.latencies_us, p)
    }

    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

// ---- reports --------------------------------------------------------------------------------------

fn print_table(rows: &[Row]) {
    println!(
        "{:<38} {:>7} {:>7} {:>9} {:>9} {:>9} {:>9} {:>8}",
        "scenario", "clients", "gets", "p50", "p90", "p99", "max", "gets/s"
    );
    for row in rows.iter().filter(|r| r.ok > 0) {
        println!(
            "{:<38} {:>7} {:>7} {:>9} {:>9} {:>9} {:>9} {:>8.0}",
            row.label(),
            row.clients,
            row.ok,
            ms(row.p(50.0)),
            ms(row.p(90.0)),
            ms(row.p(99.0)),
            ms(row.latencies_us.last().copied().unwrap_or(0)),
            row.rate()
        );
    }
}

fn print_verdict(rows: &[Row], s1_d1: bool, s1_d2: bool) {
    let target = format!("target (s1) p50 <= {TARGET_S1_D1}x (d1) p50");
    let ratio = |a: Scenario, b: Scenario, n: usize| {
        let (a, b) = (&rows[row_index(a, n)], &rows[row_index(b, n)]);
        (a.p(50.0) as f64 / b.p(50.0).max(1) as f64, paired(a, b))
    };
    if s1_d1 {
        let ((r1, spread1), (r8, spread8)) =
            (ratio(Scenario::S1, Scenario::D1, 1), ratio(Scenario::S1, Scenario::D1, 8));
        println!(
            "{target}: {} (1 client {r1:.2}x, 8 clients {r8:.2}x)",
            verdict(r1 <= TARGET_S1_D1 && r8 <= TARGET_S1_D1)
        );
        for (n, r) in [(1, r1), (8, r8)] {
            let (s1, d1) = (&rows[row_index(Scenario::S1, n)], &rows[row_index(Scenario::D1, n)]);
            let figure = format!("(s1) secret read over the socket, {n} client(s), p50");
            Figure::new(
                "secrets",
                &figure,
                bench::ms(Duration::from_micros(s1.p(50.0))),
                &format!("<= {TARGET_S1_D1}x"),
                r <= TARGET_S1_D1,
            )
            .against(format!("{}: {}", d1.label(), bench::ms(Duration::from_micros(d1.p(50.0)))), format!("{r:.2}x"))
            .record();
        }
        println!("  same-round (s1)/(d1) p50 ratios, median [min..max]: 1 client {spread1}; 8 clients {spread8}");
    } else {
        println!("{target}: not run (BENCH_ONLY)");
    }
    if s1_d2 {
        let ((r1, spread1), (r8, spread8)) =
            (ratio(Scenario::S1, Scenario::D2, 1), ratio(Scenario::S1, Scenario::D2, 8));
        println!(
            "(s1)/(d2) p50, no target (the floor: a read with a held token): 1 client {r1:.2}x, 8 clients {r8:.2}x"
        );
        println!("  same-round (s1)/(d2) p50 ratios, median [min..max]: 1 client {spread1}; 8 clients {spread8}");
    }
}

/// Per-round ratios of `a`'s p50 to `b`'s (the two ran in the same round), summarized.
fn paired(a: &Row, b: &Row) -> String {
    let mut ratios: Vec<f64> =
        a.round_p50.iter().zip(&b.round_p50).map(|(x, y)| *x as f64 / (*y).max(1) as f64).collect();
    ratios.sort_by(f64::total_cmp);
    match (ratios.first(), ratios.last()) {
        (Some(min), Some(max)) => format!("{:.2}x [{min:.2}..{max:.2}]", ratios[ratios.len() / 2]),
        _ => "-".into(),
    }
}

/// When a load run ran: the OpenBao requests audited inside the window are its.
struct Window {
    start: SystemTime,
    end: SystemTime,
    row: usize,
}

/// What OpenBao's audit log says of one row: requests by path, and time inside OpenBao (µs).
#[derive(Default)]
struct Audited {
    by_path: BTreeMap<String, u64>,
    inside_us: u64,
}

/// Reads OpenBao's audit log once: each request falls in the row whose window holds it.
fn openbao_requests(log: &Path, windows: &[Window], rows: usize) -> Vec<Audited> {
    use std::io::BufRead as _;
    let mut out: Vec<Audited> = (0..rows).map(|_| Audited::default()).collect();
    let mut pending: HashMap<String, (SystemTime, usize)> = HashMap::new();
    let file = fs::File::open(log).unwrap_or_else(|e| panic!("OpenBao audit log {}: {e}", log.display()));
    for line in std::io::BufReader::new(file).lines().map_while(Result::ok) {
        let Ok(entry) = serde_json::from_str::<Value>(&line) else { continue };
        let Some(time) = entry["time"].as_str().and_then(|t| humantime::parse_rfc3339(t).ok()) else { continue };
        let id = entry["request"]["id"].as_str().unwrap_or_default().to_string();
        match entry["type"].as_str() {
            Some("request") => {
                let Some(w) = windows.iter().find(|w| w.start <= time && time <= w.end) else { continue };
                let path = entry["request"]["path"].as_str().unwrap_or("?").to_string();
                *out[w.row].by_path.entry(path).or_default() += 1;
                pending.insert(id, (time, w.row));
            }
            Some("response") => {
                if let Some((sent, row)) = pending.remove(&id) {
                    let took = time.duration_since(sent).unwrap_or_default();
                    out[row].inside_us += u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
                }
            }
            _ => {}
        }
    }
    out
}

fn print_requests(rows: &[Row], audited: &[Audited]) {
    println!("OpenBao requests per get (its audit log, warm-up gets included) and time inside OpenBao:");
    println!(
        "{:<38} {:>7} {:>9} {:>12} {:>13} {:>10}  by path (per get)",
        "scenario", "clients", "req/get", "in OpenBao", "caller mean", "outside"
    );
    for (row, audit) in rows.iter().zip(audited).filter(|(r, _)| r.ok > 0) {
        let gets = (row.ok + row.warmup).max(1) as f64;
        let total: u64 = audit.by_path.values().sum();
        let inside = audit.inside_us as f64 / gets;
        let mean = row.latencies_us.iter().sum::<u64>() as f64 / row.ok.max(1) as f64;
        // A request made once for the whole run (the shared token's creation) is shown as a count.
        let per_get = |n: u64| match n as f64 / gets {
            r if r < 0.01 => format!("{n} in {gets:.0} gets"),
            r => format!("{r:.2}"),
        };
        let paths: Vec<String> = audit.by_path.iter().map(|(path, n)| format!("{path} {}", per_get(*n))).collect();
        println!(
            "{:<38} {:>7} {:>9.2} {:>12} {:>13} {:>10}  {}",
            row.label(),
            row.clients,
            total as f64 / gets,
            ms(inside as u64),
            ms(mean as u64),
            ms_signed(mean - inside),
            paths.join(", ")
        );
    }
    println!("  by construction:");
    for s in Scenario::ALL {
        println!("    {:<36} {}", s.label(), s.by_construction());
    }
    println!("  (with 8 clients, time inside OpenBao overlaps: the caller mean is per get, the sum is not wall time)");
}

/// CPU time (utime + stime, 10 ms ticks) of the token server and OpenBao around socket runs.
#[derive(Debug, Default, Clone)]
struct Cpu {
    server_ticks: u64,
    bao_ticks: u64,
}

impl Cpu {
    fn sample(server: u32, bao: u32) -> Cpu {
        Cpu { server_ticks: stat_ticks(server), bao_ticks: stat_ticks(bao) }
    }

    fn add(&mut self, before: &Cpu, after: &Cpu) {
        self.server_ticks += after.server_ticks.saturating_sub(before.server_ticks);
        self.bao_ticks += after.bao_ticks.saturating_sub(before.bao_ticks);
    }
}

fn print_cpu(rows: &[Row], cpu: &HashMap<&str, Cpu>) {
    println!("CPU per get, token server | OpenBao (utime+stime around the socket runs, warm-up gets included):");
    for s in [Scenario::S1, Scenario::S2] {
        let Some(cpu) = cpu.get(s.key()) else { continue };
        let gets: u64 = rows.iter().filter(|r| r.scenario == s).map(|r| r.ok + r.warmup).sum::<u64>();
        let per = |ticks: u64| ticks as f64 * 10_000.0 / gets.max(1) as f64;
        println!("  {:<38} {:>6.0} us | {:>6.0} us", s.label(), per(cpu.server_ticks), per(cpu.bao_ticks));
    }
}

/// utime + stime of a process (all its threads), in clock ticks (100 per second on Linux/x86_64).
fn stat_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else { return 0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ")": field 3 is index 0, so utime (14) is 11 and stime (15) is 12.
    fields.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

// ---- set-up ---------------------------------------------------------------------------------------

/// The uid each service's load runs as: the config refuses two services that only the executable
/// tells apart (a process of one could exec the other's), so `fresh` runs as another uid.
fn uid_of(service: &str) -> u32 {
    if service == "fresh" {
        FRESH_UID
    } else {
        nix::unistd::geteuid().as_raw()
    }
}

/// The device's `edgeseal.yaml` plus the token server's part: unix selectors (the service's uid and
/// its copy of the load generator), `reuse` for `shared`, no Docker, no rate limit.
fn write_server_config(
    device: &Device,
    setup: &secretstore_setup::setup::Setup,
    socket: &Path,
    exe: &dyn Fn(&str) -> PathBuf,
) -> PathBuf {
    let mut config = device.config(setup);
    for (name, reuse) in [("shared", true), ("fresh", false)] {
        let uid = uid_of(name);
        let service = config.services.get_mut(&ServiceName(name.into()));
        let service = service.unwrap_or_else(|| panic!("the base config has no service {name}"));
        let unix = UnixSelector { uid: Some(uid), path: Some(exe(name)), ..Default::default() };
        service.selectors = Selectors { unix: Some(unix), docker: None };
        service.reuse = reuse;
    }
    config.token_server = ServerConfig {
        socket: socket.to_path_buf(),
        docker_socket: None,
        rate_per_second: 1_000_000,
        rate_burst: 1_000_000,
        ..ServerConfig::default()
    };
    device.write_yaml(&config)
}

// ---- small helpers --------------------------------------------------------------------------------

fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

fn ms_signed(us: f64) -> String {
    format!("{:+.2} ms", us / 1000.0)
}
