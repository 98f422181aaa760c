//! Running one child process within bounds: the one runner behind KDF plug-ins ([`crate::run`]) and
//! tpm2-tools (`tpm2::tool`).
//!
//! Every child gets:
//! - a cleared environment holding only `PATH` (the caller's fixed value) and the variables the caller
//!   names (tpm2-tools get `TPM2TOOLS_TCTI`);
//! - a fixed working directory (`/` for plug-ins, the private work directory for tpm2-tools);
//! - stdin from `/dev/null`, unless the caller hands it bytes (the TPM HMAC's public label);
//! - its own process group, killed as a whole at the deadline or when stdout overflows, so nothing it
//!   spawned outlives the run;
//! - stdout read into a buffer allocated once at its full size ([`Stdout`]): it is never reallocated, so
//!   the IKM a plug-in or `tpm2_hmac` prints leaves no copy in freed heap memory, and it is wiped when
//!   dropped. More than the cap is refused, not truncated;
//! - stderr drained to its end (the child never blocks on it) and kept up to [`STDERR_KEEP`] bytes,
//!   quoted only sanitized ([`Stderr::quote`]).
//!
//! The run ends when the child has exited *and* closed both pipes, or at the deadline. A grandchild
//! that keeps a pipe open therefore cannot hang the caller: at the deadline the group is killed, and
//! one that left the group (`setsid`) is waited for no longer than [`DRAIN_GRACE`].

use std::ffi::OsStr;
use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use zeroize::Zeroizing;

/// How much of a child's stderr is kept in memory.
pub(crate) const STDERR_KEEP: usize = 64 * 1024;
/// How much of it [`Stderr::quote`] shows.
const STDERR_QUOTE: usize = 400;
/// How often the runner checks on the child.
const POLL: Duration = Duration::from_millis(5);
/// How long to wait for the pipes to close after the child was killed.
const DRAIN_GRACE: Duration = Duration::from_millis(200);

/// What to run and within which bounds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Job<'a> {
    /// The executable (an absolute path).
    pub(crate) program: &'a Path,
    /// Its arguments.
    pub(crate) args: &'a [&'a OsStr],
    /// The only `PATH` it sees.
    pub(crate) path_env: &'a OsStr,
    /// Further environment variables, on top of the cleared environment.
    pub(crate) env: &'a [(&'a str, &'a str)],
    /// Its working directory.
    pub(crate) cwd: &'a Path,
    /// Bytes for its stdin; `None` means `/dev/null`.
    pub(crate) stdin: Option<&'a [u8]>,
    /// The most it may print on stdout; one byte more and it is killed.
    pub(crate) stdout_cap: usize,
    /// How long it may run, pipes closed included.
    pub(crate) limit: Duration,
}

/// How a run ended. Every variant has reaped the child and killed its process group if needed.
#[derive(Debug)]
pub(crate) enum Ended {
    /// It exited (or died from a signal not sent by us) and closed both pipes.
    Exited {
        /// Its exit status.
        status: ExitStatus,
        /// What it printed on stdout (wiped on drop).
        stdout: Stdout,
        /// What it printed on stderr.
        stderr: Stderr,
    },
    /// It printed more than [`Job::stdout_cap`] bytes on stdout and was killed.
    StdoutOverflow {
        /// What it printed on stderr up to then.
        stderr: Stderr,
    },
    /// It did not finish within [`Job::limit`] and was killed.
    TimedOut {
        /// What it printed on stderr up to then.
        stderr: Stderr,
    },
}

/// Why a child could not be run at all.
#[derive(Debug)]
pub(crate) enum RunError {
    /// The process could not be started.
    Spawn(io::Error),
    /// Waiting on it or reading a pipe failed.
    Io(io::Error),
}

secret_types::secret_bytes! {
    /// A child's stdout (the IKM travels here), read into a buffer allocated once at the run's stdout
    /// cap ([`fill_capped`]) and moved in without a copy; the whole allocation is wiped on drop. Never
    /// printed.
    pub(crate) struct Stdout;
}

/// A child's stderr, kept up to [`STDERR_KEEP`] bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Stderr {
    bytes: Vec<u8>,
    /// More was written than was kept.
    truncated: bool,
}

impl Stderr {
    /// The text, invalid UTF-8 replaced; for parsers that read it line by line (tpm2-tools).
    pub(crate) fn lossy(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// A bounded, single-line, sanitized quote of its end, for error messages.
    pub(crate) fn quote(&self) -> StderrQuote {
        StderrQuote::new(&self.bytes, self.truncated)
    }
}

/// A bounded, sanitized quote of a child's stderr, displayed as `; stderr: "…"` (or nothing).
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

    /// The sanitized text, empty when the child wrote nothing.
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

/// `exit status 3`, or `killed by signal 9 (SIGKILL)`.
pub(crate) fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => {
            let name = Signal::try_from(signal).map(|s| s.as_str()).unwrap_or("unknown signal");
            format!("killed by signal {signal} ({name})")
        }
        (None, None) => status.to_string(),
    }
}

/// Runs `job` to its end or its deadline.
pub(crate) fn run(job: &Job<'_>) -> Result<Ended, RunError> {
    let mut command = Command::new(job.program);
    command
        .args(job.args)
        .env_clear()
        .env("PATH", job.path_env)
        .envs(job.env.iter().copied())
        .current_dir(job.cwd)
        .stdin(if job.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let child = spawn_retrying(&mut command).map_err(RunError::Spawn)?;
    Running::start(child, job).finish()
}

/// Spawns, retrying briefly on ETXTBSY: the executable was just written (an upgrade in progress, or
/// another thread's fork still holding the writer's descriptor until its exec).
fn spawn_retrying(command: &mut Command) -> io::Result<Child> {
    let mut pause = Duration::from_millis(5);
    for _ in 0..6 {
        match command.spawn() {
            Err(e) if e.kind() == io::ErrorKind::ExecutableFileBusy => thread::sleep(pause),
            other => return other,
        }
        pause *= 2;
    }
    command.spawn()
}

enum Event {
    Stdout(io::Result<(Stdout, bool)>),
    Stderr(io::Result<Stderr>),
}

/// A spawned child and the threads draining its pipes.
struct Running {
    child: Child,
    deadline: Instant,
    events: mpsc::Receiver<Event>,
    stdout: Option<Stdout>,
    stdout_overflowed: bool,
    stderr: Option<Stderr>,
    status: Option<ExitStatus>,
}

impl Running {
    fn start(mut child: Child, job: &Job<'_>) -> Self {
        let (tx, events) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            let tx = tx.clone();
            let cap = job.stdout_cap;
            thread::spawn(move || tx.send(Event::Stdout(read_stdout(out, cap))));
        }
        if let Some(err) = child.stderr.take() {
            thread::spawn(move || tx.send(Event::Stderr(read_stderr(err))));
        }
        if let (Some(mut pipe), Some(bytes)) = (child.stdin.take(), job.stdin) {
            let bytes = Zeroizing::new(bytes.to_vec());
            // A child that exits without reading makes this fail harmlessly; dropping the pipe is EOF.
            thread::spawn(move || pipe.write_all(&bytes));
        }
        Self {
            child,
            deadline: Instant::now() + job.limit,
            events,
            stdout: None,
            stdout_overflowed: false,
            stderr: None,
            status: None,
        }
    }

    fn finish(mut self) -> Result<Ended, RunError> {
        loop {
            if self.status.is_none() {
                self.status = self.child.try_wait().map_err(RunError::Io)?;
            }
            if self.stdout_overflowed {
                self.kill();
                return Ok(Ended::StdoutOverflow { stderr: self.drain_stderr() });
            }
            if let (Some(status), Some(_), Some(_)) = (self.status, &self.stdout, &self.stderr) {
                let stdout = self.stdout.take().unwrap_or_else(|| Stdout::new(Vec::new()));
                let stderr = self.stderr.take().unwrap_or_default();
                return Ok(Ended::Exited { status, stdout, stderr });
            }
            let now = Instant::now();
            if now >= self.deadline {
                self.kill();
                return Ok(Ended::TimedOut { stderr: self.drain_stderr() });
            }
            match self.events.recv_timeout(POLL.min(self.deadline - now)) {
                Ok(Event::Stdout(read)) => {
                    let (stdout, overflowed) = read.map_err(RunError::Io)?;
                    self.stdout = Some(stdout);
                    self.stdout_overflowed = overflowed;
                }
                Ok(Event::Stderr(read)) => self.stderr = Some(read.map_err(RunError::Io)?),
                Err(mpsc::RecvTimeoutError::Timeout | mpsc::RecvTimeoutError::Disconnected) => {}
            }
        }
    }

    /// Kills the child's whole process group and reaps the child.
    fn kill(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // The group id is the child's pid (process_group(0)). While the child is unreaped, or any
            // member of its group lives, the kernel does not hand that id to another process.
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        if self.status.is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }

    /// After a kill: waits briefly for stderr to close, then returns what was captured.
    fn drain_stderr(&mut self) -> Stderr {
        let until = Instant::now() + DRAIN_GRACE;
        while self.stderr.is_none() {
            let left = until.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(Event::Stderr(read)) => self.stderr = Some(read.unwrap_or_default()),
                Ok(Event::Stdout(_)) => {}
                Err(_) => break,
            }
        }
        self.stderr.take().unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.status.is_none() {
            self.kill();
        }
    }
}

/// Reads stdout into a buffer of exactly `cap` bytes until EOF; `true` as soon as one more byte comes.
fn read_stdout(mut pipe: ChildStdout, cap: usize) -> io::Result<(Stdout, bool)> {
    let (buf, overflowed) = fill_capped(&mut pipe, cap)?;
    Ok((Stdout::from_zeroizing(buf), overflowed))
}

/// Reads `pipe` until EOF into a wiped buffer allocated once at exactly `cap` bytes and never
/// reallocated (so no copy of what was read is left in freed memory), then shortened to what was
/// read (the capacity, and its wiping on drop, stay). `true` as soon as one byte more than `cap` comes.
fn fill_capped(pipe: &mut impl Read, cap: usize) -> io::Result<(Zeroizing<Vec<u8>>, bool)> {
    let mut buf = Zeroizing::new(vec![0u8; cap]);
    let mut len = 0;
    let overflowed = loop {
        let Some(room) = buf.get_mut(len..).filter(|room| !room.is_empty()) else {
            // Full: anything more is an overflow. One byte is enough to tell; it is wiped.
            let mut probe = Zeroizing::new([0u8; 1]);
            break read_retrying(pipe, &mut probe[..])? != 0;
        };
        match read_retrying(pipe, room)? {
            0 => break false,
            n => len += n,
        }
    };
    buf.truncate(len);
    Ok((buf, overflowed))
}

/// Reads stderr to EOF so the child never blocks on it, keeping the first [`STDERR_KEEP`] bytes.
fn read_stderr(mut pipe: ChildStderr) -> io::Result<Stderr> {
    let mut kept = Stderr::default();
    let mut buf = [0u8; 4096];
    loop {
        let n = read_retrying(&mut pipe, &mut buf)?;
        if n == 0 {
            return Ok(kept);
        }
        let room = STDERR_KEEP.saturating_sub(kept.bytes.len());
        kept.bytes.extend_from_slice(&buf[..n.min(room)]);
        kept.truncated |= n > room;
    }
}

fn read_retrying(pipe: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match pipe.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    use super::*;

    /// A shell script in a fresh directory.
    fn script(dir: &tempfile::TempDir, body: &str) -> PathBuf {
        let path = dir.path().join("child.sh");
        fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn job<'a>(program: &'a Path, stdin: Option<&'a [u8]>, cap: usize, limit: Duration) -> Job<'a> {
        Job {
            program,
            args: &[],
            path_env: OsStr::new("/usr/bin:/bin"),
            env: &[("EXTRA", "yes")],
            cwd: Path::new("/"),
            stdin,
            stdout_cap: cap,
            limit,
        }
    }

    #[test]
    fn a_child_sees_only_its_path_extra_variables_root_cwd_and_its_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let exe = script(&dir, "env | sort; pwd; cat");
        match run(&job(&exe, Some(b"label"), 4096, Duration::from_secs(10))).unwrap() {
            Ended::Exited { status, stdout, stderr } => {
                assert!(status.success());
                assert_eq!(stderr, Stderr::default());
                let text = String::from_utf8(stdout.expose().to_vec()).unwrap();
                let names: Vec<&str> = text.lines().filter_map(|l| l.split_once('=').map(|(k, _)| k)).collect();
                assert!(names.iter().all(|k| ["PATH", "EXTRA", "PWD", "SHLVL", "_"].contains(k)), "{text}");
                assert!(text.contains("PATH=/usr/bin:/bin\n") && text.contains("EXTRA=yes\n"), "{text}");
                assert!(text.ends_with("\n/\nlabel"), "cwd / and stdin: {text}");
            }
            other => panic!("{other:?}"),
        }
        let exe = script(&dir, "cat; echo done");
        match run(&job(&exe, None, 4096, Duration::from_secs(10))).unwrap() {
            Ended::Exited { stdout, .. } => assert_eq!(stdout.expose(), b"done\n", "stdin is /dev/null"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fill_capped_allocates_once_at_the_cap_and_detects_one_byte_more() {
        // (input, cap, what is kept, overflowed)
        let cases: &[(&[u8], usize, &[u8], bool)] = &[
            (b"", 10, b"", false),
            (b"0123", 10, b"0123", false),
            (b"0123456789", 10, b"0123456789", false),
            (b"0123456789A", 10, b"0123456789", true),
            (b"x", 0, b"", true),
        ];
        for &(input, cap, kept, overflow) in cases {
            let (buf, overflowed) = fill_capped(&mut &input[..], cap).unwrap();
            assert_eq!((&buf[..], overflowed), (kept, overflow), "{input:?} cap {cap}");
            assert_eq!(buf.capacity(), cap, "allocated once at the cap: {input:?}");
        }
    }

    #[test]
    fn stdout_fills_a_buffer_of_exactly_the_cap_and_one_byte_more_kills_the_group() {
        let dir = tempfile::tempdir().unwrap();
        let exe = script(&dir, "printf 0123456789");
        match run(&job(&exe, None, 10, Duration::from_secs(10))).unwrap() {
            Ended::Exited { stdout, .. } => {
                assert_eq!(stdout.expose(), b"0123456789");
                assert_eq!(format!("{stdout:?}"), "Stdout([REDACTED; 10 bytes])");
            }
            other => panic!("{other:?}"),
        }
        let exe = script(&dir, "echo 'too much' >&2; printf 0123456789A; exec sleep 600");
        match run(&job(&exe, None, 10, Duration::from_secs(600))).unwrap() {
            Ended::StdoutOverflow { stderr } => assert_eq!(stderr.lossy(), "too much\n"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_grandchild_holding_stdout_cannot_keep_the_caller_past_the_deadline() {
        // The child exits at once but leaves `sleep` in its group holding stdout. Waiting for EOF
        // (what the tpm2-tools runner did before) blocks until the grandchild ends, then reports
        // success; the deadline has to win instead, and the group is killed.
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("grandchild.pid");
        let exe = script(&dir, &format!("sleep 600 & echo $! > '{}'; echo partial; exit 0", pid_file.display()));
        match run(&job(&exe, None, 4096, Duration::from_millis(300))).unwrap() {
            Ended::TimedOut { .. } => {}
            other => panic!("{other:?}"),
        }
        let pid: i32 = fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
        // Killed with its group: it is gone (or a zombie of init's) once reaped by its parent, init.
        let gone = || {
            fs::read_to_string(format!("/proc/{pid}/stat"))
                .map_or(true, |stat| stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')))
        };
        let started = Instant::now();
        while !gone() && started.elapsed() < Duration::from_secs(30) {
            thread::sleep(Duration::from_millis(10));
        }
        assert!(gone(), "grandchild {pid} outlived the run");
    }

    #[test]
    fn a_hanging_child_is_killed_at_the_deadline_and_its_stderr_kept() {
        let dir = tempfile::tempdir().unwrap();
        let exe = script(&dir, "echo 'waiting for the TPM' >&2; exec sleep 600");
        match run(&job(&exe, None, 4096, Duration::from_millis(200))).unwrap() {
            Ended::TimedOut { stderr } => assert_eq!(stderr.quote().as_str(), "waiting for the TPM"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn stderr_is_kept_bounded_and_quoted_sanitized_from_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let exe =
            script(&dir, "head -c 100000 /dev/zero | tr '\\0' x >&2; printf '\\033[31mfinal reason\\n' >&2; exit 3");
        match run(&job(&exe, None, 4096, Duration::from_secs(10))).unwrap() {
            Ended::Exited { status, stderr, .. } => {
                assert_eq!(describe_status(status), "exit status 3");
                assert_eq!(stderr.bytes.len(), STDERR_KEEP);
                assert!(stderr.truncated);
                assert!(stderr.quote().as_str().starts_with('…'));
            }
            other => panic!("{other:?}"),
        }
        let raw = format!("{}\x1b[31mfinal reason\n", "x".repeat(1000));
        let q = StderrQuote::new(raw.as_bytes(), false);
        assert!(q.as_str().starts_with('…'));
        assert!(q.as_str().ends_with("final reason"));
        assert!(!q.as_str().contains('\x1b'));
        assert!(q.as_str().chars().count() <= STDERR_QUOTE + 8);
        assert_eq!(StderrQuote::new(b"  \n", false).to_string(), "");
        assert_eq!(StderrQuote::new(b"no tpm\n", false).to_string(), "; stderr: \"no tpm\"");
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        let missing = Path::new("/nonexistent/edgeseal-child");
        assert!(matches!(run(&job(missing, None, 16, Duration::from_secs(1))), Err(RunError::Spawn(_))));
    }
}
