//! Small helpers shared by the benchmark programs in `benches/`.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use openbao_client::{Client, SecretString, Token};
use secretstore_setup::keystore::{derive_file_kek, open};
use secretstore_setup::KeystoreDir;

use crate::device::{Device, DEVICE_IKM};
use crate::process::ChildGuard;
use crate::token_server::raw_request;

/// The file `make bench` collects [`Figure`]s in (one JSON object per line), named by this variable;
/// unset (a bench run by hand), figures are only printed.
pub const SUMMARY_ENV: &str = "EDGESEAL_BENCH_SUMMARY";

/// One row of the table `make bench` ends with: a figure, the anchor it is held against (the
/// alternative or floor measured in the same run), their ratio, the target, and whether it is met.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Figure {
    /// The benchmark (`tokens`, `boot`, …).
    pub bench: String,
    /// What is measured.
    pub figure: String,
    /// Its value, with unit.
    pub value: String,
    /// The anchor measured in the same run, with its value ("" when the target is absolute).
    pub anchor: String,
    /// value / anchor, as the target states it ("" when there is no anchor).
    pub ratio: String,
    /// The target.
    pub target: String,
    /// Met or not.
    pub met: bool,
}

impl Figure {
    /// A figure of `bench`.
    pub fn new(bench: &str, figure: &str, value: impl Into<String>, target: &str, met: bool) -> Self {
        let (bench, figure, target) = (bench.into(), figure.into(), target.into());
        Self { bench, figure, value: value.into(), anchor: String::new(), ratio: String::new(), target, met }
    }

    /// Held against `anchor` (described with its value), at `ratio` (e.g. "0.34x").
    pub fn against(mut self, anchor: impl Into<String>, ratio: impl Into<String>) -> Self {
        self.anchor = anchor.into();
        self.ratio = ratio.into();
        self
    }

    /// Appends this figure to the summary file, when `make bench` names one.
    pub fn record(&self) {
        let Some(path) = std::env::var_os(SUMMARY_ENV) else { return };
        let line = serde_json::to_string(self).expect("a figure serialises");
        let written = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut file| std::io::Write::write_all(&mut file, format!("{line}\n").as_bytes()));
        if let Err(e) = written {
            eprintln!("cannot append to the bench summary {}: {e}", Path::new(&path).display());
        }
    }
}

/// "MET" or "MISSED", for a target line of a benchmark report.
pub fn verdict(ok: bool) -> &'static str {
    if ok {
        "MET"
    } else {
        "MISSED"
    }
}

/// CPUs available to this process, printed beside the figures.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// The 1, 5 and 15 minute load averages: a noisy machine explains noisy figures.
pub fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg").map(|l| l.split(' ').take(3).collect::<Vec<_>>().join(" ")).unwrap_or_default()
}

/// What `bao version` prints, to name the OpenBao a benchmark ran against.
pub fn bao_version(bao: &Path) -> String {
    Command::new(bao)
        .arg("version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The nearest-rank percentile `p` (0..=1) of `samples` (not empty).
pub fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// `d` in whole milliseconds.
pub fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

/// A count from the environment variable `name` (default `default`, at least `min`).
pub fn env_count(name: &str, default: usize, min: usize) -> usize {
    let n = std::env::var(name).ok().map_or(default, |v| v.parse().unwrap_or_else(|e| panic!("{name}={v}: {e}")));
    assert!(n >= min, "{name}={n}: at least {min}");
    n
}

/// A number from the environment variable `name` (default `default`).
pub fn env_number(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name}={v} is not a number")))
        .unwrap_or(default)
}

/// The filesystem type of the mount holding `dir` (from /proc/self/mounts, longest prefix).
pub fn fs_type(dir: &Path) -> String {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let (_, point, kind) = (f.next()?, f.next()?, f.next()?);
            dir.starts_with(point).then(|| (point.len(), kind.to_string()))
        })
        .max()
        .map(|(_, kind)| kind)
        .unwrap_or_else(|| "unknown".into())
}

/// The nearest-rank percentile `p` (0..=100) of sorted microsecond samples (0 when there are none).
pub fn nearest_rank_us(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The unseal shares from a bench device's keystore (to generate a root token for the set-up of
/// the alternative a benchmark compares with).
pub fn keystore_shares(device: &Device) -> Vec<Vec<u8>> {
    let store = KeystoreDir::new(device.keystore_dir());
    let file = store.read().unwrap().unwrap();
    let ikm = kdf_plugins::Ikm::new(hex::decode(DEVICE_IKM).unwrap());
    let kek = derive_file_kek(&file, &ikm).unwrap();
    open(&file, &kek).unwrap().shares().iter().map(|s| s.expose().to_vec()).collect()
}

/// The AppRole a user would give a service instead of edgeseal: at `mount`, role `role` with the
/// policy edgeseal gives that service (`edgeseal-svc-<role>`) and the same TTL; its role_id and a
/// secret_id.
pub async fn approle(client: &Client, root: &Token, mount: &str, role: &str, ttl_secs: u64) -> (String, SecretString) {
    client.enable_auth(root, mount, "approle").await.unwrap();
    let body = serde_json::json!({
        "token_policies": [format!("edgeseal-svc-{role}")],
        "token_ttl": ttl_secs,
        "token_max_ttl": ttl_secs,
        "token_type": "service",
        "secret_id_ttl": 0,
        "secret_id_num_uses": 0,
        "bind_secret_id": true,
    });
    client.write_approle(root, mount, role, &body).await.unwrap();
    let role_id = client.approle_role_id(root, mount, role).await.unwrap();
    let secret_id = client.create_secret_id(root, mount, role).await.unwrap().secret_id;
    (role_id, secret_id)
}

/// Starts `security-bootstrap token-server --config config` (release build, log to `log`) and waits
/// until `GET /v1/health` answers 200 on `socket`.
pub fn start_token_server(bootstrap: &Path, config: &Path, socket: &Path, log: &Path) -> ChildGuard {
    let out = fs::File::create(log).unwrap();
    let mut command = Command::new(bootstrap);
    command.args(["token-server", "--config"]).arg(config).env_clear().env("PATH", "/usr/bin:/bin");
    // Tokio's worker count, to measure the server with fewer or more workers than CPUs.
    if let Some(workers) = std::env::var_os("TOKIO_WORKER_THREADS") {
        command.env("TOKIO_WORKER_THREADS", workers);
    }
    if let Some(filter) = std::env::var_os("EDGESEAL_LOG") {
        command.env("EDGESEAL_LOG", filter);
    }
    let child = command
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", bootstrap.display()));
    let mut guard = ChildGuard::new("token-server", child);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = guard.exited() {
            panic!("the token server exited ({status}):\n{}", fs::read_to_string(log).unwrap_or_default());
        }
        if socket.exists() {
            let (status, body) =
                raw_request(socket, b"GET /v1/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
            if status == 200 {
                return guard;
            }
            assert!(Instant::now() < deadline, "token server health: {status} {body}");
        }
        assert!(Instant::now() < deadline, "the token server did not listen on {} within 30 s", socket.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Spawns `command`, times spawn → `ready()` (polled every 2 ms), then stops it with SIGTERM and
/// waits for it: a bare server's start, as a floor.
pub fn time_until(mut command: Command, ready: impl Fn() -> bool) -> Duration {
    let limit = crate::release::LIMIT;
    let started = Instant::now();
    let child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let mut guard = ChildGuard::new(format!("{command:?}"), child);
    while !ready() {
        assert!(guard.exited().is_none(), "{command:?} exited before it was ready");
        assert!(started.elapsed() < limit, "{command:?} not ready in {limit:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
    let took = started.elapsed();
    guard.stop(nix::sys::signal::Signal::SIGTERM, limit);
    took
}

/// utime + stime of a process (all its threads, exited ones included), in clock ticks (100 per
/// second on Linux/x86_64); 0 if it is gone.
pub fn cpu_ticks(pid: u32) -> u64 {
    stat_ticks(&format!("/proc/{pid}/stat"))
}

/// [`cpu_ticks`] as a duration (10 ms a tick).
pub fn cpu_time(pid: u32) -> Duration {
    Duration::from_millis(cpu_ticks(pid) * 10)
}

/// utime + stime from a `/proc/…/stat` file, in clock ticks.
pub fn stat_ticks(path: &str) -> u64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else { return 0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ")": field 3 is index 0, so utime (14) is 11 and stime (15) is 12.
    fields.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

/// utime + stime of this process's children that have been waited for (and of their waited-for
/// children), microsecond resolution.
pub fn children_cpu() -> Duration {
    use nix::sys::resource::{getrusage, UsageWho};
    let Ok(usage) = getrusage(UsageWho::RUSAGE_CHILDREN) else { return Duration::ZERO };
    let time = |t: nix::sys::time::TimeVal| Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000);
    time(usage.user_time()) + time(usage.system_time())
}
