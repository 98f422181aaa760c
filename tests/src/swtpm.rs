//! A TPM 2.0 simulator (swtpm) on loopback, for tests.
//!
//! [`Swtpm::start`] runs `swtpm socket --tpm2` in the foreground as our child (so the guard owns the PID)
//! on a free port pair (`port` for commands, `port + 1` for control), with `--flags
//! not-need-init,startup-clear` so no `tpm2_startup` is needed, and returns once `tpm2_getrandom` answers
//! through [`Swtpm::tcti`]. Each new state directory is a different TPM (fresh seeds); the same directory
//! is the same TPM, so [`Swtpm::start_in`] and [`Swtpm::restart`] simulate reboots. A restart keeps the
//! port (and so the TCTI string) unless another process took it meanwhile: read [`Swtpm::tcti`] again.
//!
//! Stopping is orderly, as on a device that shuts down cleanly: `tpm2_shutdown -c`, then `swtpm_ioctl -s`
//! on the control port, then waiting for the process to exit (it takes 1–2 s; the state directory is locked
//! until then). [`Swtpm::kill`] is the power cut: SIGKILL, no `TPM2_Shutdown`, which counts as an unorderly
//! shutdown for the TPM's dictionary-attack logic. Drop stops it orderly.
//!
//! The swtpm TCTI has no resource manager: tests that load objects with [`Swtpm::tool`] flush them.

// A harness that cannot start its component fails the test loudly, with what to install.
#![allow(clippy::panic)]

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::poll_until;
use crate::ports::free_port_pair;
use crate::process::{wait_within, ChildGuard};

/// The message when swtpm or its tools are missing.
pub const INSTALL_HINT: &str = "swtpm not found: run `make test` (it installs swtpm, swtpm-tools and tpm2-tools) or apt-get install swtpm swtpm-tools tpm2-tools";

/// The search path for swtpm and tpm2-tools (what edgeseal gives plug-ins).
const TOOL_PATH: &str = "/usr/bin:/bin:/usr/local/bin";
/// How long a start may take (a new state dir costs ~0.4 s once).
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the process may take to exit after an orderly shutdown (observed 1.2–2 s).
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a helper tool may run.
const TOOL_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the TPM state lives.
#[derive(Debug)]
enum State {
    /// A temp dir owned by this simulator, removed on drop.
    Temp(tempfile::TempDir),
    /// A directory owned by the caller (kept, to start the same TPM again).
    Given(PathBuf),
}

impl State {
    fn path(&self) -> &Path {
        match self {
            State::Temp(dir) => dir.path(),
            State::Given(path) => path,
        }
    }
}

/// A running (or stopped) swtpm with its own state directory.
#[derive(Debug)]
pub struct Swtpm {
    state: State,
    port: u16,
    child: Option<ChildGuard>,
}

impl Swtpm {
    /// Starts a brand-new TPM in a temp dir.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("creating a temp dir for swtpm: {e}"));
        Self::launch(State::Temp(dir))
    }

    /// Starts the TPM whose state is in `dir` (created if missing): the same dir is the same TPM.
    pub fn start_in(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating swtpm state dir {}: {e}", dir.display()));
        Self::launch(State::Given(dir))
    }

    fn launch(state: State) -> Self {
        for tool in ["swtpm", "swtpm_ioctl", "tpm2_getrandom", "tpm2_shutdown"] {
            if find_tool(tool).is_none() {
                panic!("{INSTALL_HINT} ({tool} is not in {TOOL_PATH})");
            }
        }
        let mut tpm = Self { state, port: 0, child: None };
        for _ in 0..5 {
            tpm.port = free_port_pair();
            match tpm.spawn() {
                Ok(()) => return tpm,
                Err(Busy) => continue,
            }
        }
        panic!("swtpm could not bind a free loopback port pair in 5 attempts");
    }

    /// The TCTI string for tpm2-tools and the plug-in: `swtpm:host=127.0.0.1,port=N`.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// The command port (the control port is the next one).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The state directory (`tpm2-00.permall` holds the seeds).
    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    /// The simulator's PID (0 when stopped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, ChildGuard::pid)
    }

    /// Orderly stop, then start again on the same state and ports: a clean reboot.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn_same_port();
    }

    /// SIGKILL without `TPM2_Shutdown`, then start again on the same state and ports: a power cut.
    pub fn kill_and_restart(&mut self) {
        self.kill();
        self.spawn_same_port();
    }

    /// Orderly stop: `tpm2_shutdown -c`, `swtpm_ioctl -s`, and wait for the PID to exit.
    pub fn stop(&mut self) {
        let Some(mut guard) = self.child.take() else { return };
        if guard.exited().is_some() {
            return;
        }
        // No panicking helpers here: this runs from Drop, possibly while a test is already failing.
        let shutdown = run_within(
            Command::new("tpm2_shutdown")
                .arg("-c")
                .env_clear()
                .env("PATH", TOOL_PATH)
                .env("TPM2TOOLS_TCTI", self.tcti()),
            TOOL_TIMEOUT,
        );
        let ctrl = format!("127.0.0.1:{}", self.port + 1);
        let ioctl = run_within(
            Command::new("swtpm_ioctl").args(["--tcp", &ctrl, "-s"]).env_clear().env("PATH", TOOL_PATH),
            TOOL_TIMEOUT,
        );
        if guard.exited_within(EXIT_TIMEOUT).is_some() {
            return;
        }
        // Not gone: fall back to SIGTERM/SIGKILL so the state dir is released, and say why.
        guard.stop(Signal::SIGTERM, Duration::from_secs(5));
        if !std::thread::panicking() {
            panic!(
                "swtpm (pid {}) did not exit within {EXIT_TIMEOUT:?} of an orderly shutdown (tpm2_shutdown: {}, swtpm_ioctl: {}); log: {}",
                guard.pid(),
                describe(&shutdown),
                describe(&ioctl),
                self.log_tail()
            );
        }
    }

    /// SIGKILL, no `TPM2_Shutdown`: the TPM sees an unorderly shutdown on its next start.
    pub fn kill(&mut self) {
        if let Some(mut guard) = self.child.take() {
            guard.stop(Signal::SIGKILL, Duration::from_secs(5));
        }
    }

    /// Runs a tpm2-tools command against this TPM (cleared environment: `PATH` and `TPM2TOOLS_TCTI`).
    pub fn tool(&self, tool: &str, args: &[&str]) -> Output {
        let mut command = Command::new(tool);
        command.args(args).env_clear().env("PATH", TOOL_PATH).env("TPM2TOOLS_TCTI", self.tcti());
        run_within(&mut command, TOOL_TIMEOUT).unwrap_or_else(|e| panic!("running {tool}: {e} ({INSTALL_HINT})"))
    }

    /// Like [`Swtpm::tool`], but panics with its stderr unless it succeeds; returns stdout.
    pub fn tool_ok(&self, tool: &str, args: &[&str]) -> String {
        let output = self.tool(tool, args);
        if !output.status.success() {
            panic!(
                "{tool} {} failed ({}): {}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Starts the process again on the current port, so [`Swtpm::tcti`] stays the same. If another
    /// process took the port while the simulator was down (rare), moves to a new free port pair.
    fn spawn_same_port(&mut self) {
        // The port is busy until the old process's socket is fully closed: try again until it is free.
        if poll_until(Duration::from_secs(3), || self.spawn().ok()).is_some() {
            return;
        }
        for _ in 0..5 {
            self.port = free_port_pair();
            if self.spawn().is_ok() {
                return;
            }
        }
        panic!("swtpm could not bind a free loopback port pair in 5 attempts");
    }

    /// Starts swtpm on `self.port` and waits until it answers; `Busy` if the port was taken.
    fn spawn(&mut self) -> Result<(), Busy> {
        let dir = self.state.path().to_path_buf();
        let out = log_file(&dir.join("swtpm.out"));
        let err = out.try_clone().unwrap_or_else(|e| panic!("swtpm.out: {e}"));
        let child = Command::new("swtpm")
            .arg("socket")
            .arg("--tpm2")
            .arg("--tpmstate")
            .arg(format!("dir={}", dir.display()))
            .arg("--server")
            .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", self.port))
            .arg("--ctrl")
            .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", self.port + 1))
            .arg("--flags")
            .arg("not-need-init,startup-clear")
            .arg("--log")
            .arg(format!("file={},level=1", dir.join("swtpm.log").display()))
            .env_clear()
            .env("PATH", TOOL_PATH)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("{INSTALL_HINT} (starting swtpm: {e})"));
        let mut guard = ChildGuard::new(format!("swtpm:{}", self.port), child);
        let started = poll_until(START_TIMEOUT, || {
            if let Some(status) = guard.exited() {
                let log = self.log_tail();
                if log.contains("Address already in use") {
                    return Some(Err(Busy));
                }
                panic!("swtpm exited at start ({status}); output: {log}");
            }
            self.probe().then_some(Ok(()))
        });
        match started {
            Some(Ok(())) => {
                self.child = Some(guard);
                Ok(())
            }
            Some(Err(Busy)) => Err(Busy),
            None => {
                drop(guard);
                panic!(
                    "swtpm did not answer tpm2_getrandom on port {} within {START_TIMEOUT:?}; output: {}",
                    self.port,
                    self.log_tail()
                );
            }
        }
    }

    /// Whether the TPM answers a command.
    fn probe(&self) -> bool {
        let mut command = Command::new("tpm2_getrandom");
        command.args(["--hex", "4"]).env_clear().env("PATH", TOOL_PATH).env("TPM2TOOLS_TCTI", self.tcti());
        run_within(&mut command, Duration::from_secs(5)).is_ok_and(|o| o.status.success())
    }

    /// The end of swtpm's output and log, for failure messages.
    fn log_tail(&self) -> String {
        let mut text = String::new();
        for name in ["swtpm.out", "swtpm.log"] {
            if let Ok(content) = fs::read_to_string(self.state.path().join(name)) {
                text.push_str(&content);
            }
        }
        let start = text.len().saturating_sub(2000);
        let start = (start..text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len());
        text[start..].trim().to_owned()
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The port pair was taken by someone else between choosing and binding it.
#[derive(Debug)]
struct Busy;

fn log_file(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()))
}

fn find_tool(name: &str) -> Option<PathBuf> {
    std::env::split_paths(TOOL_PATH).map(|dir| dir.join(name)).find(|p| p.is_file())
}

/// Runs a command with stdin from /dev/null, killing it after `limit`.
fn run_within(command: &mut Command, limit: Duration) -> io::Result<Output> {
    let mut child = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    if wait_within(&mut child, limit).is_none() {
        let _ = child.kill();
        let _ = child.wait();
        return Err(io::Error::new(io::ErrorKind::TimedOut, format!("no answer within {limit:?}")));
    }
    child.wait_with_output()
}

fn describe(result: &io::Result<Output>) -> String {
    match result {
        Ok(output) if output.status.success() => "ok".to_owned(),
        Ok(output) => format!("{}: {}", output.status, String::from_utf8_lossy(&output.stderr).trim()),
        Err(e) => e.to_string(),
    }
}
