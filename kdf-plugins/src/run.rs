//! Running a KDF plug-in executable, the way age runs its plug-ins.
//!
//! The plug-in gets a versioned entry argument (`ikm-v1`, or none for EdgeX hooks), an environment
//! holding only `PATH=/usr/bin:/bin`, `/` as working directory, stdin from `/dev/null`, and its own
//! process group so that a timeout kills it and anything it spawned. Stdout is capped at the longest
//! valid answer; stderr is kept (bounded) to quote in errors. The IKM is never part of an error.

use std::fmt;
use std::io::{self, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::config::{KdfConfig, Protocol};
use crate::output::{parse_output, OutputError, MAX_OUTPUT_LEN};
use crate::secret::Ikm;
use crate::trust::{check_plugin, TrustError};

/// The only environment variable a plug-in sees.
pub const PLUGIN_PATH_ENV: &str = "/usr/bin:/bin";

/// How much of the plug-in's stderr is kept in memory.
const STDERR_KEEP: usize = 64 * 1024;
/// How much of it is quoted in an error message.
const STDERR_QUOTE: usize = 400;
/// How often the runner checks on the plug-in.
const POLL: Duration = Duration::from_millis(5);
/// How long to wait for the pipes to close after the plug-in was killed.
const DRAIN_GRACE: Duration = Duration::from_millis(200);

/// A failed plug-in run. Every variant names the plug-in; none carries the IKM.
#[derive(Debug, Error)]
pub enum PluginError {
    /// The executable or a directory above it fails the trust rules.
    #[error("kdf plug-in {path} is not trusted: {source}")]
    Untrusted {
        /// The configured path.
        path: PathBuf,
        /// Which rule failed.
        source: TrustError,
    },
    /// The process could not be started.
    #[error("kdf plug-in {path} could not be started: {source}")]
    Spawn {
        /// The executed path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Waiting on or reading from the process failed.
    #[error("kdf plug-in {path}: i/o error while running it: {source}")]
    Io {
        /// The executed path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// It did not finish in time and was killed.
    #[error("kdf plug-in {path} did not finish within {} and was killed{stderr}", humantime::format_duration(*.timeout))]
    Timeout {
        /// The executed path.
        path: PathBuf,
        /// The configured limit.
        timeout: Duration,
        /// What it wrote on stderr.
        stderr: StderrQuote,
    },
    /// It printed more than any valid answer and was killed.
    #[error("kdf plug-in {path} printed more than {MAX_OUTPUT_LEN} bytes on stdout and was killed{stderr}")]
    OutputTooLarge {
        /// The executed path.
        path: PathBuf,
        /// What it wrote on stderr.
        stderr: StderrQuote,
    },
    /// It exited non-zero or died from a signal.
    #[error("kdf plug-in {path} failed: {}{stderr}", describe_status(*.status))]
    Failed {
        /// The executed path.
        path: PathBuf,
        /// How it ended.
        status: ExitStatus,
        /// What it wrote on stderr.
        stderr: StderrQuote,
    },
    /// It exited 0 but its stdout is not one valid IKM line.
    #[error("kdf plug-in {path} gave an invalid answer: {reason}{stderr}")]
    BadOutput {
        /// The executed path.
        path: PathBuf,
        /// What is wrong with stdout (never its content).
        reason: OutputError,
        /// What it wrote on stderr.
        stderr: StderrQuote,
    },
}

/// A bounded, sanitized quote of a plug-in's stderr, displayed as `; stderr: "…"` (or nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StderrQuote(String);

impl StderrQuote {
    fn new(raw: &[u8], truncated: bool) -> Self {
        let text = String::from_utf8_lossy(raw);
        let text = text.trim();
        if text.is_empty() {
            return Self::default();
        }
        // Keep the end: that is where programs put the reason they failed.
        let mut start = text.len().saturating_sub(STDERR_QUOTE);
        while !text.is_char_boundary(start) {
            start += 1;
        }
        let mut quoted = String::new();
        if truncated || start > 0 {
            quoted.push('…');
        }
        quoted.extend(text[start..].chars().flat_map(|c| match c {
            '\n' => vec!['\\', 'n'],
            c if c.is_control() => c.escape_default().collect(),
            c => vec![c],
        }));
        Self(quoted)
    }

    /// The sanitized text, empty when the plug-in wrote nothing.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StderrQuote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            Ok(())
        } else {
            write!(f, "; stderr: \"{}\"", self.0)
        }
    }
}

fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => {
            let name = Signal::try_from(signal).map(|s| s.as_str()).unwrap_or("unknown signal");
            format!("killed by signal {signal} ({name})")
        }
        (None, None) => status.to_string(),
    }
}

/// Runs the configured plug-in and returns the IKM it printed.
pub fn run_plugin(config: &KdfConfig) -> Result<Ikm, PluginError> {
    let exe = check_plugin(&config.plugin)
        .map_err(|source| PluginError::Untrusted { path: config.plugin.clone(), source })?;
    let mut command = Command::new(&exe);
    if let Some(word) = config.protocol.entry_word() {
        command.arg(word).args(&config.args);
    }
    command
        .env_clear()
        .env("PATH", PLUGIN_PATH_ENV)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let child = spawn_retrying(&mut command).map_err(|source| PluginError::Spawn { path: exe.clone(), source })?;
    Running::start(child, exe, config.protocol, config.timeout).finish()
}

/// Spawns, retrying briefly on ETXTBSY: the executable was just written (an upgrade in progress, or
/// another thread's fork still holding the writer's descriptor until its exec).
fn spawn_retrying(command: &mut Command) -> io::Result<Child> {
    let mut pause = Duration::from_millis(5);
    for _ in 0..6 {
        match command.spawn() {
            Err(e) if e.kind() == io::ErrorKind::ExecutableFileBusy => std::thread::sleep(pause),
            other => return other,
        }
        pause *= 2;
    }
    command.spawn()
}

enum Event {
    Stdout(io::Result<Captured>),
    Stderr(io::Result<Captured>),
}

#[derive(Default)]
struct Captured {
    bytes: Zeroizing<Vec<u8>>,
    /// More was written than the cap allowed.
    overflowed: bool,
}

/// A spawned plug-in and the threads draining its pipes.
struct Running {
    child: Child,
    exe: PathBuf,
    protocol: Protocol,
    timeout: Duration,
    deadline: Instant,
    events: mpsc::Receiver<Event>,
    stdout: Option<Captured>,
    stderr: Option<Captured>,
    status: Option<ExitStatus>,
}

impl Running {
    fn start(mut child: Child, exe: PathBuf, protocol: Protocol, timeout: Duration) -> Self {
        let (tx, events) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            let tx = tx.clone();
            thread::spawn(move || tx.send(Event::Stdout(read_stdout(out))));
        }
        if let Some(err) = child.stderr.take() {
            thread::spawn(move || tx.send(Event::Stderr(read_stderr(err))));
        }
        Self {
            child,
            exe,
            protocol,
            timeout,
            deadline: Instant::now() + timeout,
            events,
            stdout: None,
            stderr: None,
            status: None,
        }
    }

    fn finish(mut self) -> Result<Ikm, PluginError> {
        loop {
            if self.status.is_none() {
                self.status = self.child.try_wait().map_err(|source| self.io(source))?;
            }
            if self.stdout.as_ref().is_some_and(|c| c.overflowed) {
                self.kill();
                return Err(PluginError::OutputTooLarge { path: self.exe.clone(), stderr: self.drain_stderr() });
            }
            if let (Some(status), Some(_), Some(_)) = (self.status, &self.stdout, &self.stderr) {
                return self.judge(status);
            }
            let now = Instant::now();
            if now >= self.deadline {
                self.kill();
                return Err(PluginError::Timeout {
                    path: self.exe.clone(),
                    timeout: self.timeout,
                    stderr: self.drain_stderr(),
                });
            }
            match self.events.recv_timeout(POLL.min(self.deadline - now)) {
                Ok(event) => self.record(event)?,
                Err(mpsc::RecvTimeoutError::Timeout | mpsc::RecvTimeoutError::Disconnected) => {}
            }
        }
    }

    fn record(&mut self, event: Event) -> Result<(), PluginError> {
        match event {
            Event::Stdout(captured) => self.stdout = Some(captured.map_err(|source| self.io(source))?),
            Event::Stderr(captured) => self.stderr = Some(captured.map_err(|source| self.io(source))?),
        }
        Ok(())
    }

    fn judge(&mut self, status: ExitStatus) -> Result<Ikm, PluginError> {
        let stderr = self.stderr_quote();
        if !status.success() {
            return Err(PluginError::Failed { path: self.exe.clone(), status, stderr });
        }
        let stdout = self.stdout.take().unwrap_or_default();
        parse_output(self.protocol, &stdout.bytes).map_err(|reason| PluginError::BadOutput {
            path: self.exe.clone(),
            reason,
            stderr,
        })
    }

    /// Kills the plug-in's whole process group and reaps it.
    fn kill(&mut self) {
        if self.status.is_none() {
            if let Ok(pid) = i32::try_from(self.child.id()) {
                // The group id is the child's pid (process_group(0)); it exists until we reap the child.
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }

    /// After a kill: waits briefly for stderr to close, then quotes what was captured.
    fn drain_stderr(&mut self) -> StderrQuote {
        let until = Instant::now() + DRAIN_GRACE;
        while self.stderr.is_none() {
            let left = until.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(Event::Stderr(captured)) => self.stderr = Some(captured.unwrap_or_default()),
                Ok(Event::Stdout(_)) => {}
                Err(_) => break,
            }
        }
        self.stderr_quote()
    }

    fn stderr_quote(&self) -> StderrQuote {
        self.stderr.as_ref().map(|c| StderrQuote::new(&c.bytes, c.overflowed)).unwrap_or_default()
    }

    fn io(&self, source: io::Error) -> PluginError {
        PluginError::Io { path: self.exe.clone(), source }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads stdout until EOF, or stops as soon as it exceeds the longest valid answer.
fn read_stdout(pipe: ChildStdout) -> io::Result<Captured> {
    let mut captured = Captured::default();
    let limit = u64::try_from(MAX_OUTPUT_LEN + 1).unwrap_or(u64::MAX);
    pipe.take(limit).read_to_end(&mut captured.bytes)?;
    captured.overflowed = captured.bytes.len() > MAX_OUTPUT_LEN;
    Ok(captured)
}

/// Reads stderr to EOF so the plug-in never blocks on it, keeping the first [`STDERR_KEEP`] bytes.
fn read_stderr(mut pipe: ChildStderr) -> io::Result<Captured> {
    let mut captured = Captured::default();
    let mut buf = [0u8; 4096];
    loop {
        let n = match pipe.read(&mut buf) {
            Ok(0) => return Ok(captured),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let room = STDERR_KEEP - captured.bytes.len();
        captured.bytes.extend_from_slice(&buf[..n.min(room)]);
        captured.overflowed |= n > room;
    }
}

/// Runs the plug-in at `path` with the given protocol, for callers that have no full [`KdfConfig`].
pub fn run_plugin_at(path: &Path, protocol: Protocol, timeout: Duration) -> Result<Ikm, PluginError> {
    run_plugin(&KdfConfig { plugin: path.to_path_buf(), args: Vec::new(), protocol, timeout })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_quote_is_bounded_sanitized_and_keeps_the_end() {
        let raw = format!("{}\x1b[31mfinal reason\n", "x".repeat(1000));
        let q = StderrQuote::new(raw.as_bytes(), false);
        assert!(q.as_str().starts_with('…'));
        assert!(q.as_str().ends_with("final reason"));
        assert!(!q.as_str().contains('\x1b'));
        assert!(q.as_str().chars().count() <= STDERR_QUOTE + 8);
        assert_eq!(StderrQuote::new(b"  \n", false).to_string(), "");
        assert_eq!(StderrQuote::new(b"no tpm\n", false).to_string(), "; stderr: \"no tpm\"");
    }
}
