//! A device booted by `security-bootstrap run` (the real binary) with a supervised OpenBao on a free
//! loopback port: start it, kill it, fetch tokens over its socket with the client binary, read the
//! service's secret, read OpenBao's audit log. OpenBao children left behind by a run killed with
//! SIGKILL are stopped when the harness is dropped.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use pki_init::CaKeys;
use secretstore_setup::config::TokenSettings;
use security_bootstrap::config::{Config, ServiceEntry, ServiceName};
use token_server::config::{Selectors, UnixSelector};

use crate::device::Device;
use crate::ports::free_port_pair;
use crate::process::ChildGuard;
use crate::{poll_until, workspace_binary};

/// The supervised OpenBao's data directory, below the device directory.
pub const DATA_DIR: &str = "openbao";

/// A device that boots with `security-bootstrap run`, serving one service, `demo` (uid 0, the client
/// binary), with one generated secret, `greeting`.
#[derive(Debug)]
pub struct Boot {
    /// The device (plug-in, keystore, config).
    pub device: Device,
    /// World-readable: the client binary and the socket directory.
    public: tempfile::TempDir,
    /// OpenBao's port (the cluster port is the next one).
    pub port: u16,
    shamir: bool,
    admin_group: Option<u32>,
    metrics_listen: Option<std::net::SocketAddr>,
    seed_file: Option<PathBuf>,
    token: TokenSettings,
    reuse: bool,
    others: Vec<(String, ServiceEntry)>,
    kdf: Option<kdf_plugins::KdfConfig>,
    docker_socket: Option<PathBuf>,
    logs: Option<secretstore_setup::supervise::LogRotation>,
    openbao_audit_log: Option<PathBuf>,
    demo_executable: Option<PathBuf>,
    cluster: Option<secretstore_setup::cluster::ClusterConfig>,
    fleet: Option<edgeseal_fleet::config::FleetConfig>,
    runs: usize,
}

impl Boot {
    /// A new device whose OpenBao uses the static seal.
    pub fn new() -> Self {
        let public = tempfile::tempdir().unwrap();
        fs::set_permissions(public.path(), fs::Permissions::from_mode(0o755)).unwrap();
        crate::install_executable(&workspace_binary("security-bootstrap"), &public.path().join("security-bootstrap"));
        Self {
            device: Device::new(),
            public,
            port: free_port_pair(),
            shamir: false,
            admin_group: None,
            metrics_listen: None,
            seed_file: None,
            token: TokenSettings::default(),
            reuse: false,
            others: Vec::new(),
            kdf: None,
            docker_socket: None,
            logs: None,
            openbao_audit_log: None,
            demo_executable: None,
            cluster: None,
            fleet: None,
            runs: 0,
        }
    }

    /// A new device whose supervised OpenBao is sealed with Shamir shares (`seal: shamir`).
    pub fn shamir() -> Self {
        let mut boot = Self::new();
        boot.shamir = true;
        boot
    }

    /// Gives this group access to the admin socket (mode 0660).
    pub fn set_admin_group(&mut self, gid: Option<u32>) {
        self.admin_group = gid;
    }

    /// Serves `GET /metrics` on this address too (`metrics.listen`).
    pub fn set_metrics_listen(&mut self, listen: Option<std::net::SocketAddr>) {
        self.metrics_listen = listen;
    }

    /// Gives `demo` an EdgeX seed file (`services.demo.seed_file`).
    pub fn set_seed_file(&mut self, path: Option<PathBuf>) {
        self.seed_file = path;
    }

    /// `demo`'s token settings (`services.demo.token`) and `reuse`.
    pub fn set_token(&mut self, token: TokenSettings, reuse: bool) {
        self.token = token;
        self.reuse = reuse;
    }

    /// Configures one more service beside `demo`.
    pub fn add_service(&mut self, name: &str, entry: ServiceEntry) {
        self.others.push((name.to_string(), entry));
    }

    /// The `kdf:` section the configuration names (`None`: the device's plug-in, [`Device::plugin`]).
    pub fn set_kdf(&mut self, kdf: Option<kdf_plugins::KdfConfig>) {
        self.kdf = kdf;
    }

    /// Attests containers through this Docker daemon (`token_server.docker_socket`; none by default).
    pub fn set_docker_socket(&mut self, socket: Option<PathBuf>) {
        self.docker_socket = socket;
    }

    /// Rotates OpenBao's logs as `logs` says (`secret_store.supervise.logs`; the default otherwise).
    pub fn set_logs(&mut self, logs: Option<secretstore_setup::supervise::LogRotation>) {
        self.logs = logs;
    }

    /// Puts OpenBao's audit log at `path` (`audit.openbao_log`; in its data dir otherwise).
    pub fn set_openbao_audit_log(&mut self, path: Option<PathBuf>) {
        self.openbao_audit_log = path;
    }

    /// Attests `demo` by this executable instead of the client binary (a test process that is the
    /// service itself; [`Boot::fetch`] and the helpers built on it are then denied).
    pub fn set_demo_executable(&mut self, path: Option<PathBuf>) {
        self.demo_executable = path;
    }

    /// Makes this device a member of a raft cluster (`secret_store.cluster`).
    pub fn set_cluster(&mut self, cluster: Option<secretstore_setup::cluster::ClusterConfig>) {
        self.cluster = cluster;
    }

    /// The `fleet:` section (a node of a fleet), or none.
    pub fn set_fleet(&mut self, fleet: Option<edgeseal_fleet::config::FleetConfig>) {
        self.fleet = fleet;
    }

    /// This device's OpenBao API address.
    pub fn address(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Switches the seal the configuration asks for (`seal: shamir` or the default, static).
    pub fn set_shamir(&mut self, shamir: bool) {
        self.shamir = shamir;
    }

    /// Runs `security-bootstrap <args> --config edgeseal.yaml` to completion, crashing at the named
    /// crash point if one is given; returns its output (stderr is also appended to [`Boot::log`]).
    pub fn command(&self, args: &[&str], crash_at: Option<&str>) -> Output {
        let path = self.device.write_yaml(&self.config());
        let mut command = Command::new(workspace_binary("security-bootstrap"));
        command.args(args).arg("--config").arg(path);
        if let Some(point) = crash_at {
            command.env(secretstore_setup::crash::CRASH_ENV, point);
        }
        let out = command.output().unwrap();
        let mut log = fs::OpenOptions::new().create(true).append(true).open(self.log_path()).unwrap();
        std::io::Write::write_all(&mut log, &out.stderr).unwrap();
        out
    }

    /// Starts `run` crashing at the named crash point; returns once it has died.
    pub fn run_until_crash(&mut self, point: &str) -> std::process::ExitStatus {
        let mut guard = self.spawn_with(Some(point));
        guard
            .exited_within(Duration::from_secs(120))
            .unwrap_or_else(|| panic!("run did not reach {point}:\n{}", self.log()))
    }

    /// The client binary (the `demo` service's executable).
    pub fn client(&self) -> PathBuf {
        self.public.path().join("security-bootstrap")
    }

    /// The token socket.
    pub fn socket(&self) -> PathBuf {
        self.public.path().join("run/token.sock")
    }

    /// The admin socket.
    pub fn admin_socket(&self) -> PathBuf {
        self.public.path().join("run/admin.sock")
    }

    /// `security-bootstrap secrets <args> --admin-socket …` with `stdin`, as root; its output.
    pub fn secrets(&self, args: &[&str], stdin: &[u8]) -> Output {
        self.secrets_as(None, args, stdin)
    }

    /// The same as another uid/gid (through `setpriv`), or as root when `None`.
    pub fn secrets_as(&self, user: Option<(u32, u32)>, args: &[&str], stdin: &[u8]) -> Output {
        self.admin_command_as(user, "secrets", args, stdin)
    }

    /// `security-bootstrap <command> <args> --admin-socket …` with `stdin`, as another uid/gid
    /// (through `setpriv`) or as root when `None`; its output.
    pub fn admin_command_as(&self, user: Option<(u32, u32)>, command: &str, args: &[&str], stdin: &[u8]) -> Output {
        let subcommand = command;
        let mut command = match user {
            Some((uid, gid)) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={uid}")).arg(format!("--regid={gid}")).arg("--clear-groups").arg(self.client());
                c
            }
            None => Command::new(self.client()),
        };
        command.arg(subcommand).args(args).arg("--admin-socket").arg(self.admin_socket());
        crate::output_with_stdin(&mut command, stdin)
    }

    /// `security-bootstrap audit <args> --admin-socket …`, as root; its output.
    pub fn audit(&self, args: &[&str]) -> Output {
        Command::new(self.client())
            .arg("audit")
            .args(args)
            .arg("--admin-socket")
            .arg(self.admin_socket())
            .output()
            .unwrap()
    }

    /// Fetches a `demo` token with the client binary: the fetching process's pid and the token.
    pub fn fetch_with_pid(&self) -> (u32, String) {
        let child = Command::new(self.client())
            .arg("token")
            .arg("--socket")
            .arg(self.socket())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (pid, json["auth"]["client_token"].as_str().unwrap().to_string())
    }

    /// `method /v1/<path>` against the device's OpenBao with `token`, over HTTPS: the HTTP status and
    /// the body.
    pub fn bao(&self, method: &str, path: &str, token: &str) -> (u16, String) {
        let out = Command::new("curl")
            .args(["-sS", "-w", "\n%{http_code}", "-X", method, "--cacert"])
            .arg(self.device.path().join("pki/ca/ca.pem"))
            .arg("-H")
            .arg(format!("X-Vault-Token: {token}"))
            .arg(format!("https://127.0.0.1:{}/v1/{path}", self.port))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) =
            text.rsplit_once('\n').unwrap_or_else(|| panic!("curl: {}", String::from_utf8_lossy(&out.stderr)));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    /// `demo`'s secret `name` read with `token` over HTTPS: `None` on 404.
    pub fn read(&self, token: &str, name: &str) -> Option<serde_json::Value> {
        match self.bao("GET", &format!("secret/data/edgeseal/demo/{name}"), token) {
            (200, body) => Some(serde_json::from_str::<serde_json::Value>(&body).unwrap()["data"]["data"].clone()),
            (404, _) => None,
            (other, body) => panic!("reading demo/{name}: HTTP {other}: {body}"),
        }
    }

    /// The configuration `run` is started with.
    pub fn config(&self) -> Config {
        let mut config = self.device.supervised_config(self.port, DATA_DIR);
        if self.shamir {
            config = Device::shamir(config);
        }
        config.pki.ca_keys = CaKeys::Keystore;
        config.token_server.socket = self.socket();
        if let Some(socket) = &self.docker_socket {
            config.token_server.docker_socket = Some(socket.clone());
        }
        config.admin.socket = self.admin_socket();
        config.admin.group = self.admin_group;
        config.metrics.listen = self.metrics_listen;
        if let (Some(logs), Some(supervise)) = (&self.logs, config.secret_store.supervise.as_mut()) {
            supervise.logs = logs.clone();
        }
        config.audit.openbao_log.clone_from(&self.openbao_audit_log);
        config.secret_store.cluster.clone_from(&self.cluster);
        config.fleet.clone_from(&self.fleet);
        if let Some(kdf) = &self.kdf {
            config.kdf = kdf.clone();
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
            seed_file: self.seed_file.clone(),
            token: self.token.clone(),
            reuse: self.reuse,
            ..Default::default()
        };
        config.services.insert(ServiceName("demo".into()), demo);
        for (name, entry) in &self.others {
            config.services.insert(ServiceName(name.clone()), entry.clone());
        }
        config
    }

    /// OpenBao's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.device.path().join(DATA_DIR)
    }

    /// OpenBao's file audit log.
    pub fn audit_log(&self) -> PathBuf {
        self.openbao_audit_log.clone().unwrap_or_else(|| self.data_dir().join("audit.log"))
    }

    /// Every request path in OpenBao's audit log.
    pub fn audited_paths(&self) -> Vec<String> {
        let text = fs::read_to_string(self.audit_log()).unwrap_or_default();
        text.lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|entry| entry["type"] == "request")
            .filter_map(|entry| entry["request"]["path"].as_str().map(str::to_string))
            .collect()
    }

    /// Starts `run` without waiting for it (its stderr goes to [`Boot::log`]).
    pub fn spawn(&mut self) -> ChildGuard {
        self.spawn_with(None)
    }

    fn spawn_with(&mut self, crash_at: Option<&str>) -> ChildGuard {
        let _ = fs::remove_file(self.ready_file());
        let path = self.device.write_yaml(&self.config());
        self.runs += 1;
        let log = fs::OpenOptions::new().create(true).append(true).open(self.log_path()).unwrap();
        let mut command = Command::new(workspace_binary("security-bootstrap"));
        command.args(["--log-format", "json", "run", "--config"]).arg(path).arg("--ready-file").arg(self.ready_file());
        if let Some(point) = crash_at {
            command.env(secretstore_setup::crash::CRASH_ENV, point);
        }
        let child = command.stdout(Stdio::null()).stderr(log).spawn().unwrap();
        ChildGuard::new("security-bootstrap run", child)
    }

    /// Starts `run` and waits (up to 120 s) until it is ready.
    pub fn start(&mut self) -> ChildGuard {
        let mut guard = self.spawn();
        let became_ready = poll_until(Duration::from_secs(120), || {
            assert!(
                guard.exited().is_none(),
                "run exited early:\n{}\nopenbao.log:\n{}",
                self.log(),
                self.openbao_log()
            );
            self.ready_file().exists().then_some(())
        });
        assert!(became_ready.is_some(), "not ready after 120 s:\n{}", self.log());
        guard
    }

    /// The ready file `run` writes.
    pub fn ready_file(&self) -> PathBuf {
        self.device.path().join("ready")
    }

    fn log_path(&self) -> PathBuf {
        self.device.path().join("run.log")
    }

    /// The supervised OpenBao's own log (the last 60 lines).
    pub fn openbao_log(&self) -> String {
        let text = fs::read_to_string(self.data_dir().join("openbao.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// Everything every `run` of this device logged.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Fetches the `demo` token with the client binary.
    pub fn fetch(&self) -> Output {
        Command::new(self.client()).arg("token").arg("--socket").arg(self.socket()).output().unwrap()
    }

    /// The `demo` service's `greeting`, read with `token` over HTTPS.
    pub fn secret(&self, token: &str) -> String {
        let out = Command::new("curl")
            .args(["-sS", "--fail", "--cacert"])
            .arg(self.device.path().join("pki/ca/ca.pem"))
            .arg("-H")
            .arg(format!("X-Vault-Token: {token}"))
            .arg(format!("https://127.0.0.1:{}/v1/secret/data/edgeseal/demo/greeting", self.port))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        json["data"]["data"]["value"].as_str().unwrap().to_string()
    }

    /// A `demo` token, retrying for up to `within`.
    pub fn token_until_ok(&self, within: Duration) -> String {
        let mut last = None;
        let token = poll_until(within, || {
            let out = self.fetch();
            if out.status.success() {
                let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                return Some(json["auth"]["client_token"].as_str().unwrap().to_string());
            }
            last = Some(out);
            None
        });
        token.unwrap_or_else(|| {
            let stderr = last.map(|out| String::from_utf8_lossy(&out.stderr).into_owned()).unwrap_or_default();
            panic!("no token within {within:?}: {stderr}\n{}", self.log())
        })
    }

    /// The pid of the OpenBao `run` last started, if that process still runs this device's config.
    pub fn openbao_pid(&self) -> Option<u32> {
        let pid: u32 = fs::read_to_string(self.data_dir().join("openbao.pid")).ok()?.trim().parse().ok()?;
        openbao_of(pid, &self.data_dir())
    }

    /// Kills this device's OpenBao with SIGKILL, if one runs, and waits until it is gone.
    pub fn kill_openbao(&self) {
        if let Some(pid) = self.openbao_pid() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
            let gone =
                poll_until(Duration::from_secs(10), || openbao_of(pid, &self.data_dir()).is_none().then_some(()));
            assert!(gone.is_some(), "OpenBao {pid} did not die");
        }
    }
}

impl Default for Boot {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Boot {
    fn drop(&mut self) {
        // A run killed with SIGKILL leaves its OpenBao behind (a service manager would kill the group).
        self.kill_openbao();
    }
}

/// `pid` if it is a live (not zombie) OpenBao started with the config in `data_dir`.
fn openbao_of(pid: u32, data_dir: &Path) -> Option<u32> {
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let ours = format!("-config={}", data_dir.join("openbao.hcl").display());
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let zombie = stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z'));
    (!zombie && cmdline.split(|&b| b == 0).any(|arg| arg == ours.as_bytes())).then_some(pid)
}
