//! A device booted by the release `security-bootstrap run` with its own supervised OpenBao, for the
//! benchmark programs (`benches/boot.rs`, `benches/admin.rs`): release binaries only, configured as a
//! user would (default watchdog and wait timeouts, 20 Docker-selected services plus `demo`).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;
use security_bootstrap::config::{Config, ServiceEntry, ServiceName};
use token_server::config::{DockerSelector, Selectors, UnixSelector};

use crate::boot::DATA_DIR;
use crate::device::Device;
use crate::ports::free_port_pair;
use crate::process::ChildGuard;
use crate::{install_executable, newest_mtime, poll_until};

/// How to build what the benchmarks run.
pub const BUILD_HINT: &str = "cargo build --release --workspace --locked --bins";
/// A bound against hanging, never a measurement.
pub const LIMIT: Duration = Duration::from_secs(120);

/// The directory of the release binaries: `$CARGO_TARGET_DIR/release`, else the workspace's
/// `target/release`.
pub fn release_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // `join` of an absolute path is that path; a relative one is cargo's, from the workspace root.
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), |dir| root.join(dir));
    target.join("release")
}

/// The release binary `name` (`security-bootstrap` may be given by `$EDGESEAL_BOOTSTRAP`), warning
/// when it is older than its sources: a stale binary would measure old code.
pub fn release_binary(name: &str) -> PathBuf {
    let given = (name == "security-bootstrap").then(|| std::env::var_os("EDGESEAL_BOOTSTRAP")).flatten();
    let path = given.map_or_else(|| release_dir().join(name), PathBuf::from);
    assert!(path.is_file(), "{} is missing: run `{BUILD_HINT}` (make bench does)", path.display());
    let built = fs::metadata(&path).and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let newest = [
        "token-server/src",
        "openbao-client/src",
        "secretstore-setup/src",
        "security-bootstrap/src",
        "kdf-plugins/src",
        "pki-init/src",
    ]
    .iter()
    .filter_map(|dir| newest_mtime(&root.join(dir)))
    .max();
    if newest.is_some_and(|n| n > built) {
        eprintln!("warning: {} is older than its sources; rebuild with `{BUILD_HINT}`", path.display());
    }
    path
}

/// The uid service `load` runs as ([`Node::set_load_executable`]): not 0, which `demo` has (two
/// services of one uid that only the executable tells apart are refused).
pub const LOAD_UID: u32 = 4243;

/// How the node's OpenBao is sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seal {
    /// `seal: static` (the default).
    Static,
    /// `seal: shamir`.
    Shamir,
}

/// Both seals, in the order the benchmarks interleave them.
pub const SEALS: [Seal; 2] = [Seal::Static, Seal::Shamir];

/// A device booted by the release `security-bootstrap run`, with its own supervised OpenBao.
#[allow(missing_debug_implementations)]
pub struct Node {
    /// The device (plug-in, keystore, config).
    pub device: Device,
    /// World-readable: the client binary (the `demo` service's executable) and the socket directory.
    public: tempfile::TempDir,
    /// OpenBao's port on 127.0.0.1.
    pub port: u16,
    bootstrap: PathBuf,
    config: PathBuf,
    seal: Seal,
    demo_executable: Option<PathBuf>,
    cluster: Option<secretstore_setup::cluster::ClusterConfig>,
    load: Option<PathBuf>,
}

impl Node {
    /// A fresh device (nothing booted yet) whose OpenBao is sealed with `seal`.
    pub fn new(seal: Seal, bootstrap: &Path) -> Self {
        let device = Device::new();
        let public = tempfile::tempdir().unwrap();
        fs::set_permissions(public.path(), fs::Permissions::from_mode(0o755)).unwrap();
        install_executable(bootstrap, &public.path().join("security-bootstrap"));
        let port = free_port_pair();
        let mut node = Self {
            device,
            public,
            port,
            bootstrap: bootstrap.to_path_buf(),
            config: PathBuf::new(),
            seal,
            demo_executable: None,
            cluster: None,
            load: None,
        };
        node.config = node.device.write_yaml(&node.yaml(seal));
        node
    }

    /// Attests `demo` by `exe` instead of the client binary (a benchmark process that is the service
    /// itself; [`Node::fetch`] is then denied). Rewrites the configuration.
    pub fn set_demo_executable(&mut self, exe: PathBuf) {
        self.demo_executable = Some(exe);
        self.config = self.device.write_yaml(&self.yaml(self.seal));
    }

    /// Makes the node a member of a raft cluster (`secret_store.cluster`). Rewrites the configuration.
    pub fn set_cluster(&mut self, cluster: secretstore_setup::cluster::ClusterConfig) {
        self.cluster = Some(cluster);
        self.config = self.device.write_yaml(&self.yaml(self.seal));
    }

    /// Adds service `load`, attested as uid [`LOAD_UID`] running `exe` (a load generator started with
    /// `setpriv`), and lifts the per-peer rate limit so that the load measures the store. Rewrites the
    /// configuration.
    pub fn set_load_executable(&mut self, exe: PathBuf) {
        self.load = Some(exe);
        self.config = self.device.write_yaml(&self.yaml(self.seal));
    }

    /// The node's OpenBao API address.
    pub fn address(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn yaml(&self, seal: Seal) -> Config {
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
        yaml.admin.socket = self.admin_socket();
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
                unix: Some(UnixSelector {
                    uid: Some(0),
                    path: Some(self.demo_executable.clone().unwrap_or_else(|| self.client())),
                    ..Default::default()
                }),
                docker: None,
            },
            secrets: vec!["greeting".into()],
            ..Default::default()
        };
        yaml.services.insert(ServiceName("demo".into()), demo);
        if let Some(exe) = &self.load {
            let unix = UnixSelector { uid: Some(LOAD_UID), path: Some(exe.clone()), ..Default::default() };
            let entry = ServiceEntry {
                selectors: Selectors { unix: Some(unix), docker: None },
                secrets: vec!["greeting".into()],
                ..Default::default()
            };
            yaml.services.insert(ServiceName("load".into()), entry);
            yaml.token_server.rate_per_second = 1_000_000;
            yaml.token_server.rate_burst = 1_000_000;
        }
        yaml.secret_store.cluster.clone_from(&self.cluster);
        yaml
    }

    pub fn client(&self) -> PathBuf {
        self.public.path().join("security-bootstrap")
    }

    /// The edgeseal.yaml `run` is started with (for commands run beside it: `restore --config`).
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    pub fn socket(&self) -> PathBuf {
        self.public.path().join("run/token.sock")
    }

    /// The admin socket.
    pub fn admin_socket(&self) -> PathBuf {
        self.public.path().join("run/admin.sock")
    }

    pub fn ready_file(&self) -> PathBuf {
        self.device.path().join("ready")
    }

    pub fn log(&self) -> PathBuf {
        self.device.path().join("run.log")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.device.path().join(DATA_DIR)
    }

    /// Starts `run` and returns it with the time from its start to the ready file.
    pub fn boot(&self) -> (ChildGuard, Duration) {
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
        // Checked every 2 ms, as `bench::time_until` checks the OpenBao floor: a growing pause (the
        // harness's `poll_until`) would add up to 100 ms to what is measured.
        while !self.ready_file().exists() {
            if let Some(status) = run.exited() {
                panic!("run exited ({status}) before it was ready:\n{}", self.log_tail());
            }
            assert!(started.elapsed() < LIMIT, "run not ready in {LIMIT:?}:\n{}", self.log_tail());
            std::thread::sleep(Duration::from_millis(2));
        }
        (run, started.elapsed())
    }

    /// Stops `run` as a service manager would (SIGTERM); it stops its OpenBao.
    pub fn stop(&self, mut run: ChildGuard) {
        run.stop(Signal::SIGTERM, LIMIT);
        let stopped = poll_until(LIMIT, || self.openbao_pid().is_none().then_some(()));
        assert!(stopped.is_some(), "OpenBao still runs after run stopped:\n{}", self.log_tail());
    }

    /// One token request of the `demo` service; whether it got a token (exit 0 on a 200).
    pub fn fetch(&self) -> bool {
        let out = Command::new(self.client()).arg("token").arg("--socket").arg(self.socket()).output().unwrap();
        out.status.success() && out.stdout.windows(b"client_token".len()).any(|w| w == b"client_token")
    }

    /// The live OpenBao `run` last started for this device, if any.
    pub fn openbao_pid(&self) -> Option<i32> {
        let pid: i32 = fs::read_to_string(self.data_dir().join("openbao.pid")).ok()?.trim().parse().ok()?;
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let ours = format!("-config={}", self.data_dir().join("openbao.hcl").display());
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let zombie = stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z'));
        (!zombie && cmdline.split(|&b| b == 0).any(|arg| arg == ours.as_bytes())).then_some(pid)
    }

    /// Under the running `run`: SIGKILLs its OpenBao and times the kill → the first token.
    pub fn crash_to_token(&self, run: &mut ChildGuard) -> Duration {
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

    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.log()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}
