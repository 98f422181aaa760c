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
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use edgeseal_tests::bench::{bao_version, cpus, loadavg};
use edgeseal_tests::boot::DATA_DIR;
use edgeseal_tests::device::Device;
use edgeseal_tests::openbao::bao_binary;
use edgeseal_tests::ports::free_port_pair;
use edgeseal_tests::process::ChildGuard;
use edgeseal_tests::{install_executable, newest_mtime, poll_until};
use nix::sys::signal::Signal;
use security_bootstrap::config::{Config, ServiceEntry, ServiceName};
use token_server::config::{DockerSelector, Selectors, UnixSelector};

const BUILD_HINT: &str = "cargo build --release --workspace --locked --bins";
/// A bound against hanging, never a measurement.
const LIMIT: Duration = Duration::from_secs(120);

/// The directory of the release binaries: `$CARGO_TARGET_DIR/release`, else the workspace's
/// `target/release`.
fn release_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // `join` of an absolute path is that path; a relative one is cargo's, from the workspace root.
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), |dir| root.join(dir));
    target.join("release")
}

fn release_binary(name: &str) -> PathBuf {
    let path = release_dir().join(name);
    assert!(path.is_file(), "{} is missing: run `{BUILD_HINT}` (make bench does)", path.display());
    // A stale binary would measure old code: compare with the sources it is built from.
    let built = fs::metadata(&path).and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let newest =
        ["token-server/src", "openbao-client/src", "secretstore-setup/src", "security-bootstrap/src", "pki-init/src"]
            .iter()
            .filter_map(|dir| newest_mtime(&root.join(dir)))
            .max();
    if newest.is_some_and(|n| n > built) {
        eprintln!("warning: {} is older than its sources; rebuild with `{BUILD_HINT}`", path.display());
    }
    path
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seal {
    Static,
    Shamir,
}

const SEALS: [Seal; 2] = [Seal::Static, Seal::Shamir];

/// A device booted by the release `security-bootstrap run`, with its own supervised OpenBao.
struct Node {
    device: Device,
    /// World-readable: the client binary (the `demo` service's executable) and the socket directory.
    public: tempfile::TempDir,
    port: u16,
    bootstrap: PathBuf,
    config: PathBuf,
}

impl Node {
    /// A fresh device (nothing booted yet) whose OpenBao is sealed with `seal`.
    fn new(seal: Seal, bootstrap: &Path) -> Self {
        let device = Device::new();
        let public = tempfile::tempdir().unwrap();
        fs::set_permissions(public.path(), fs::Permissions::from_mode(0o755)).unwrap();
        install_executable(bootstrap, &public.path().join("security-bootstrap"));
        let port = free_port_pair();
        let mut node = Self { device, public, port, bootstrap: bootstrap.to_path_buf(), config: PathBuf::new() };
        node.config = node.device.write_yaml(&node.yaml(seal));
        node
    }

    fn yaml(&self, seal: Seal) -> Config {
        let mut yaml = self.device.supervised_config(self.port, DATA_DIR);
        if seal == Seal::Shamir {
            yaml = Device::shamir(yaml);
        }
        yaml.pki.ca_keys = pki_init::CaKeys::Keystore;
        yaml.pki.certs.values_mut().for_each(|cert| cert.sans.retain(|san| san.to_string() == "127.0.0.1"));
        let defaults = secretstore_setup::config::SecretStoreConfig::default();
        yaml.secret_store.watchdog_interval = defaults.watchdog_interval;
        yaml.secret_store.wait_timeout = defaults.wait_timeout;
        yaml.token_server.socket = self.socket();
        for i in 0..20 {
            let name = format!("svc{i:02}");
            let docker = DockerSelector { compose_service: Some(name.clone()), ..Default::default() };
            let entry = ServiceEntry {
                selectors: Selectors { unix: None, docker: Some(docker) },
                secrets: vec!["password".into()],
                ..Default::default()
            };
            yaml.services.insert(ServiceName(name), entry);
        }
        let demo = ServiceEntry {
            selectors: Selectors {
                unix: Some(UnixSelector { uid: Some(0), path: Some(self.client()), ..Default::default() }),
                docker: None,
            },
            secrets: vec!["greeting".into()],
            ..Default::default()
        };
        yaml.services.insert(ServiceName("demo".into()), demo);
        yaml
    }

    fn client(&self) -> PathBuf {
        self.public.path().join("security-bootstrap")
    }

    fn socket(&self) -> PathBuf {
        self.public.path().join("run/token.sock")
    }

    fn ready_file(&self) -> PathBuf {
        self.device.path().join("ready")
    }

    fn log(&self) -> PathBuf {
        self.device.path().join("run.log")
    }

    fn data_dir(&self) -> PathBuf {
        self.device.path().join(DATA_DIR)
    }

    /// Starts `run` and returns it with the time from its start to the ready file.
    fn boot(&self) -> (ChildGuard, Duration) {
        let _ = fs::remove_file(self.ready_file());
        let log = fs::OpenOptions::new().create(true).append(true).open(self.log()).unwrap();
        let started = Instant::now();
        let child = Command::new(&self.bootstrap)
            .args(["--log-format", "json", "run", "--config"])
            .arg(&self.config)
            .arg("--ready-file")
            .arg(self.ready_file())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut run = ChildGuard::new("security-bootstrap run", child);
        let ready = poll_until(LIMIT, || {
            if let Some(status) = run.exited() {
                panic!("run exited ({status}) before it was ready:\n{}", self.log_tail());
            }
            self.ready_file().exists().then(|| started.elapsed())
        });
        let took = ready.unwrap_or_else(|| panic!("run not ready in {LIMIT:?}:\n{}", self.log_tail()));
        (run, took)
    }

    /// Stops `run` as a service manager would (SIGTERM); it stops its OpenBao.
    fn stop(&self, mut run: ChildGuard) {
        run.stop(Signal::SIGTERM, LIMIT);
        let stopped = poll_until(LIMIT, || self.openbao_pid().is_none().then_some(()));
        assert!(stopped.is_some(), "OpenBao still runs after run stopped:\n{}", self.log_tail());
    }

    /// One token request of the `demo` service; whether it got a token (exit 0 on a 200).
    fn fetch(&self) -> bool {
        let out = Command::new(self.client()).arg("token").arg("--socket").arg(self.socket()).output().unwrap();
        out.status.success() && out.stdout.windows(b"client_token".len()).any(|w| w == b"client_token")
    }

    /// The live OpenBao `run` last started for this device, if any.
    fn openbao_pid(&self) -> Option<i32> {
        let pid: i32 = fs::read_to_string(self.data_dir().join("openbao.pid")).ok()?.trim().parse().ok()?;
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let ours = format!("-config={}", self.data_dir().join("openbao.hcl").display());
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let zombie = stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z'));
        (!zombie && cmdline.split(|&b| b == 0).any(|arg| arg == ours.as_bytes())).then_some(pid)
    }

    /// Under the running `run`: SIGKILLs its OpenBao and times the kill → the first token.
    fn crash_to_token(&self, run: &mut ChildGuard) -> Duration {
        assert!(self.fetch(), "no token before OpenBao was killed:\n{}", self.log_tail());
        let pid = self.openbao_pid().unwrap_or_else(|| panic!("no OpenBao under run:\n{}", self.log_tail()));
        let killed = Instant::now();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL).unwrap();
        // Gone (a zombie until the supervisor reaps it) before the first request, so that the first
        // token cannot come from the OpenBao just killed.
        let gone = poll_until(LIMIT, || {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            (stat.is_empty() || stat.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('Z'))).then_some(())
        });
        assert!(gone.is_some(), "OpenBao {pid} did not die");
        loop {
            if self.fetch() {
                let took = killed.elapsed();
                assert_ne!(self.openbao_pid(), Some(pid), "the token came from a new OpenBao");
                return took;
            }
            assert!(run.exited().is_none(), "run exited after OpenBao was killed:\n{}", self.log_tail());
            assert!(killed.elapsed() < LIMIT, "no token {LIMIT:?} after OpenBao was killed:\n{}", self.log_tail());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.log()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

/// Spawns `command`, times spawn → `ready()`, then stops it with SIGTERM and waits for it.
fn time_until(mut command: Command, ready: impl Fn() -> bool) -> Duration {
    let started = Instant::now();
    let child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let mut guard = ChildGuard::new(format!("{command:?}"), child);
    while !ready() {
        assert!(guard.exited().is_none(), "{command:?} exited before it was ready");
        assert!(started.elapsed() < LIMIT, "{command:?} not ready in {LIMIT:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
    let took = started.elapsed();
    guard.stop(Signal::SIGTERM, LIMIT);
    took
}

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

/// The nearest-rank percentile `p` (0..=1) of `samples`.
fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
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

fn env_count(name: &str, default: usize, min: usize) -> usize {
    let n = std::env::var(name).ok().map_or(default, |v| v.parse().unwrap_or_else(|e| panic!("{name}={v}: {e}")));
    assert!(n >= min, "{name}={n}: at least {min}");
    n
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
        println!(
            "edgeseal's own share of a warm boot ({seal}): {:.0} ms ({:.1}x the bare OpenBao start)",
            p50.saturating_sub(bao_p50).as_secs_f64() * 1e3,
            p50.as_secs_f64() / bao_p50.as_secs_f64()
        );
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
