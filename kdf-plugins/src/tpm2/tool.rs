//! Running one tpm2-tools executable: found in `PATH` up front, started with a cleared environment
//! (only `PATH` and `TPM2TOOLS_TCTI`), stdin from a pipe or `/dev/null`, its own process group, and a hard
//! time limit after which the group is killed. Stdout is captured into a buffer that is wiped on drop
//! (`tpm2_hmac` prints the IKM there); stderr is kept for [`super::error::diagnose`].

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::{geteuid, Pid};
use zeroize::Zeroizing;

use super::error::Tpm2Error;
use super::params::Tcti;

/// The search path when the plug-in runs without `PATH` (edgeseal always passes this one).
pub(crate) const DEFAULT_PATH: &str = "/usr/bin:/bin";

/// The most a tool may print on stdout or stderr; more is cut off.
const OUTPUT_CAP: usize = 64 * 1024;

/// The tpm2-tools the plug-in uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tool {
    CreatePrimary,
    Create,
    Load,
    EvictControl,
    Hmac,
    ReadPublic,
    FlushContext,
}

impl Tool {
    const ALL: [Tool; 7] = [
        Tool::CreatePrimary,
        Tool::Create,
        Tool::Load,
        Tool::EvictControl,
        Tool::Hmac,
        Tool::ReadPublic,
        Tool::FlushContext,
    ];

    /// The executable's name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Tool::CreatePrimary => "tpm2_createprimary",
            Tool::Create => "tpm2_create",
            Tool::Load => "tpm2_load",
            Tool::EvictControl => "tpm2_evictcontrol",
            Tool::Hmac => "tpm2_hmac",
            Tool::ReadPublic => "tpm2_readpublic",
            Tool::FlushContext => "tpm2_flushcontext",
        }
    }

    fn index(self) -> usize {
        Tool::ALL.iter().position(|&t| t == self).unwrap_or(0)
    }
}

/// What a tool printed. Stdout is wiped when this is dropped.
pub(crate) struct ToolOutput {
    pub(crate) stdout: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for ToolOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ToolOutput([REDACTED; {} bytes])", self.stdout.len())
    }
}

/// How a tool run failed.
#[derive(Debug)]
pub(crate) enum ToolFailure {
    /// It could not be started.
    Spawn(io::Error),
    /// It ran past its limit and was killed.
    TimedOut(Duration),
    /// It exited non-zero (or printed more than [`OUTPUT_CAP`]).
    Failed { status: Option<ExitStatus>, stderr: String },
}

/// The located tools and the environment they run in.
#[derive(Debug)]
pub(crate) struct Toolbox {
    path_env: OsString,
    tcti: Tcti,
    exes: Vec<PathBuf>,
}

impl Toolbox {
    /// Finds every tool in `path` (absolute directories only), or says which one is missing.
    pub(crate) fn locate(path: Option<&OsStr>, tcti: Tcti) -> Result<Self, Tpm2Error> {
        let path_env = path.filter(|p| !p.is_empty()).unwrap_or(OsStr::new(DEFAULT_PATH)).to_owned();
        let mut exes = Vec::with_capacity(Tool::ALL.len());
        for tool in Tool::ALL {
            let exe = find_in_path(tool.name(), &path_env).ok_or_else(|| Tpm2Error::ToolsMissing {
                tool: tool.name(),
                path: path_env.to_string_lossy().into_owned(),
            })?;
            exes.push(exe);
        }
        Ok(Self { path_env, tcti, exes })
    }

    /// The TCTI every tool is pointed at.
    pub(crate) fn tcti(&self) -> &Tcti {
        &self.tcti
    }

    /// Runs `tool` with `args` in `cwd`, feeding `stdin` if given; kills it after `limit`.
    pub(crate) fn run(
        &self,
        tool: Tool,
        args: &[&OsStr],
        stdin: Option<&[u8]>,
        cwd: &Path,
        limit: Duration,
    ) -> Result<ToolOutput, ToolFailure> {
        let exe = self.exes.get(tool.index()).ok_or_else(|| ToolFailure::Spawn(io::ErrorKind::NotFound.into()))?;
        let mut child = Command::new(exe)
            .args(args)
            .env_clear()
            .env("PATH", &self.path_env)
            .env("TPM2TOOLS_TCTI", self.tcti.as_str())
            .current_dir(cwd)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(ToolFailure::Spawn)?;
        let started = Instant::now();
        let stdout = child.stdout.take().map(|pipe| thread::spawn(move || read_capped(pipe)));
        let stderr = child.stderr.take().map(|pipe| thread::spawn(move || read_capped(pipe)));
        if let (Some(mut pipe), Some(bytes)) = (child.stdin.take(), stdin) {
            // Small (a label); a tool that exits without reading it makes this fail harmlessly.
            let _ = pipe.write_all(bytes);
        }
        let status = wait_until(&mut child, started + limit);
        let stdout = stdout.and_then(|t| t.join().ok()).unwrap_or_default();
        let stderr = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
        match status {
            None => Err(ToolFailure::TimedOut(limit)),
            Some(status) if status.success() && stdout.len() < OUTPUT_CAP => Ok(ToolOutput { stdout }),
            status => Err(ToolFailure::Failed { status: status.filter(|s| !s.success()), stderr: lossy(&stderr) }),
        }
    }
}

/// Waits for the child until `deadline`; past it, kills its process group. `None` means it was killed.
fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    let mut pause = Duration::from_micros(500);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(_) => break,
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(10));
    }
    if let Ok(pid) = i32::try_from(child.id()) {
        // The child leads its own group (process_group(0)) and is not reaped yet, so the id is still ours.
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Reads a pipe to its end, keeping at most [`OUTPUT_CAP`] bytes in a buffer that never reallocates
/// (so no unwiped copy of the IKM is left behind in freed memory).
fn read_capped(pipe: impl Read) -> Zeroizing<Vec<u8>> {
    let mut buf = Zeroizing::new(Vec::with_capacity(OUTPUT_CAP));
    let cap = u64::try_from(OUTPUT_CAP).unwrap_or(u64::MAX);
    let mut pipe = pipe;
    let _ = pipe.by_ref().take(cap).read_to_end(&mut buf);
    // Drain the rest so the tool never blocks on a full pipe.
    let _ = io::copy(&mut pipe, &mut io::sink());
    buf
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The first `dir/name` that is an executable regular file, for absolute `dir`s of `path` in order.
fn find_in_path(name: &str, path: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|candidate| fs::metadata(candidate).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// A private directory (mode 0700, owned by us) for context files; removed with its content on drop.
#[derive(Debug)]
pub(crate) struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    /// Creates a fresh directory under the system temp dir. `mkdir` fails if the name exists, so a
    /// directory planted by someone else is never used.
    pub(crate) fn create() -> Result<Self, Tpm2Error> {
        let parent = std::env::temp_dir();
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let mut last_error = io::Error::from(io::ErrorKind::AlreadyExists);
        for attempt in 0..32u32 {
            let path = parent.join(format!("edgeseal-kdf-tpm2.{}.{nanos:08x}.{attempt}", std::process::id()));
            match fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {
                    let dir = Self { path };
                    dir.check().map_err(|source| Tpm2Error::WorkDir { dir: parent.clone(), source })?;
                    return Ok(dir);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_error = e,
                Err(source) => return Err(Tpm2Error::WorkDir { dir: parent, source }),
            }
        }
        Err(Tpm2Error::WorkDir { dir: parent, source: last_error })
    }

    /// Re-reads what was created: a real directory, ours, with no group/other access.
    fn check(&self) -> io::Result<()> {
        let meta = fs::symlink_metadata(&self.path)?;
        if !meta.is_dir() || meta.uid() != geteuid().as_raw() || meta.mode() & 0o077 != 0 {
            return Err(io::Error::other(format!("{} is not a private directory", self.path.display())));
        }
        Ok(())
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// A file inside it.
    pub(crate) fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_are_found_only_in_absolute_path_entries() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("tpm2_hmac");
        fs::write(&exe, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&exe, fs::Permissions::from_mode(0o644)).unwrap();
        let path = OsString::from(format!("relative:{}", dir.path().display()));
        assert_eq!(find_in_path("tpm2_hmac", &path), None, "not executable");
        fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(find_in_path("tpm2_hmac", &path), Some(exe));
        assert_eq!(find_in_path("tpm2_hmac", OsStr::new("relative")), None);
    }

    #[test]
    fn a_missing_tool_is_named_with_the_path_searched() {
        let empty = tempfile::tempdir().unwrap();
        let path = empty.path().as_os_str();
        let err = Toolbox::locate(Some(path), Tcti::default()).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("tpm2-tools not found: tpm2_createprimary is not in PATH"), "{text}");
        assert!(text.contains(&empty.path().display().to_string()), "{text}");
    }

    #[test]
    fn tools_run_with_only_path_and_the_tcti_and_are_killed_at_their_limit() {
        let dir = tempfile::tempdir().unwrap();
        for tool in Tool::ALL {
            let body = match tool {
                Tool::Hmac => "#!/bin/sh\nenv | sort\n",
                Tool::ReadPublic => "#!/bin/sh\necho 'ERROR: it broke' >&2\nexit 1\n",
                Tool::FlushContext => "#!/bin/sh\nexec sleep 5\n",
                _ => "#!/bin/sh\ncat\n",
            };
            let exe = dir.path().join(tool.name());
            fs::write(&exe, body).unwrap();
            fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
        }
        let path = OsString::from(format!("{}:/usr/bin:/bin", dir.path().display()));
        let tcti: Tcti = "swtpm:port=1".parse().unwrap();
        let tools = Toolbox::locate(Some(&path), tcti).unwrap();
        let work = WorkDir::create().unwrap();
        let limit = Duration::from_secs(5);

        let env = tools.run(Tool::Hmac, &[], None, work.path(), limit).unwrap();
        let env = String::from_utf8(env.stdout.to_vec()).unwrap();
        let names: Vec<&str> = env.lines().filter_map(|l| l.split_once('=').map(|(k, _)| k)).collect();
        assert!(names.iter().all(|k| ["PATH", "TPM2TOOLS_TCTI", "PWD", "SHLVL", "_"].contains(k)), "{env}");
        assert!(env.contains("TPM2TOOLS_TCTI=swtpm:port=1\n"), "{env}");

        let echoed = tools.run(Tool::Create, &[], Some(b"label"), work.path(), limit).unwrap();
        assert_eq!(&echoed.stdout[..], b"label");

        match tools.run(Tool::ReadPublic, &[], None, work.path(), limit) {
            Err(ToolFailure::Failed { status: Some(s), stderr }) => {
                assert_eq!(s.code(), Some(1));
                assert_eq!(stderr, "ERROR: it broke\n");
            }
            other => panic!("{other:?}"),
        }

        let started = Instant::now();
        let limit = Duration::from_millis(200);
        assert!(matches!(
            tools.run(Tool::FlushContext, &[], None, work.path(), limit),
            Err(ToolFailure::TimedOut(l)) if l == limit
        ));
        assert!(started.elapsed() < Duration::from_secs(2), "killed, not waited for");
    }

    #[test]
    fn the_work_dir_is_private_and_removed() {
        let work = WorkDir::create().unwrap();
        let path = work.path().to_path_buf();
        let meta = fs::symlink_metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o700);
        fs::write(work.file("k.ctx"), b"context").unwrap();
        drop(work);
        assert!(!path.exists());
    }
}
