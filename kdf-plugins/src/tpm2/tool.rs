//! Running one tpm2-tools executable (provisioning only; derivation talks to the TPM in-process):
//! found in `PATH` up front, then run by the crate's bounded child runner (`crate::child`) with a
//! cleared environment (only `PATH` and `TPM2TOOLS_TCTI`), the private working directory as cwd, stdin
//! from `/dev/null` (or given bytes), its own process group, and a hard time limit after which the
//! group is killed. Stdout is read into a pre-sized buffer that is wiped on drop; stderr is kept for
//! [`super::diagnose::diagnose`].

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::unistd::geteuid;

use super::error::Tpm2Error;
use super::params::Tcti;
use crate::child::{self, Ended, Job, RunError, Stdout};

/// The search path when the plug-in runs without `PATH` (edgeseal always passes this one).
pub(crate) const DEFAULT_PATH: &str = "/usr/bin:/bin";

/// The most a tool may print on stdout; more and it is killed and the step fails.
const OUTPUT_CAP: usize = 64 * 1024;

/// The tpm2-tools `provision` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tool {
    CreatePrimary,
    Create,
    Load,
    EvictControl,
    FlushContext,
}

impl Tool {
    const ALL: [Tool; 5] = [Tool::CreatePrimary, Tool::Create, Tool::Load, Tool::EvictControl, Tool::FlushContext];

    /// The executable's name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Tool::CreatePrimary => "tpm2_createprimary",
            Tool::Create => "tpm2_create",
            Tool::Load => "tpm2_load",
            Tool::EvictControl => "tpm2_evictcontrol",
            Tool::FlushContext => "tpm2_flushcontext",
        }
    }

    fn index(self) -> usize {
        Tool::ALL.iter().position(|&t| t == self).unwrap_or(0)
    }
}

/// What a tool printed on stdout, in a buffer wiped when this is dropped. Never printed. Provisioning
/// needs nothing a tool prints (its checks read the TPM in-process); the tests read it.
#[derive(Debug)]
pub(crate) struct ToolOutput {
    #[cfg_attr(not(test), allow(dead_code))]
    stdout: Stdout,
}

impl ToolOutput {
    /// The bytes printed.
    #[cfg(test)]
    pub(crate) fn stdout(&self) -> &[u8] {
        self.stdout.expose()
    }
}

/// How a tool run failed.
#[derive(Debug)]
pub(crate) enum ToolFailure {
    /// It could not be started.
    Spawn(io::Error),
    /// It ran past its limit and was killed.
    TimedOut(Duration),
    /// It exited non-zero, printed more than [`OUTPUT_CAP`] (`status` is `None`), or its pipes failed.
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
        let job = Job {
            program: exe,
            args,
            path_env: &self.path_env,
            env: &[("TPM2TOOLS_TCTI", self.tcti.as_str())],
            cwd,
            stdin,
            stdout_cap: OUTPUT_CAP,
            limit,
        };
        match child::run(&job) {
            Err(RunError::Spawn(source)) => Err(ToolFailure::Spawn(source)),
            Err(RunError::Io(source)) => Err(ToolFailure::Failed { status: None, stderr: source.to_string() }),
            Ok(Ended::TimedOut { .. }) => Err(ToolFailure::TimedOut(limit)),
            Ok(Ended::StdoutOverflow { stderr }) => Err(ToolFailure::Failed { status: None, stderr: stderr.lossy() }),
            Ok(Ended::Exited { status, stdout, .. }) if status.success() => Ok(ToolOutput { stdout }),
            Ok(Ended::Exited { status, stderr, .. }) => {
                Err(ToolFailure::Failed { status: Some(status), stderr: stderr.lossy() })
            }
        }
    }
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
        // Absolute, so that tool arguments naming files in it do not depend on the tools' cwd.
        let parent = Some(std::env::temp_dir()).filter(|dir| dir.is_absolute()).unwrap_or_else(|| "/tmp".into());
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
    use std::time::Instant;

    use super::*;

    #[test]
    fn tools_are_found_only_in_absolute_path_entries() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("tpm2_load");
        fs::write(&exe, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&exe, fs::Permissions::from_mode(0o644)).unwrap();
        let path = OsString::from(format!("relative:{}", dir.path().display()));
        assert_eq!(find_in_path("tpm2_load", &path), None, "not executable");
        fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(find_in_path("tpm2_load", &path), Some(exe));
        assert_eq!(find_in_path("tpm2_load", OsStr::new("relative")), None);
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
                Tool::Load => "#!/bin/sh\nenv | sort\n",
                Tool::EvictControl => "#!/bin/sh\necho 'ERROR: it broke' >&2\nexit 1\n",
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

        let env = tools.run(Tool::Load, &[], None, work.path(), limit).unwrap();
        let env = String::from_utf8(env.stdout().to_vec()).unwrap();
        let names: Vec<&str> = env.lines().filter_map(|l| l.split_once('=').map(|(k, _)| k)).collect();
        assert!(names.iter().all(|k| ["PATH", "TPM2TOOLS_TCTI", "PWD", "SHLVL", "_"].contains(k)), "{env}");
        assert!(env.contains("TPM2TOOLS_TCTI=swtpm:port=1\n"), "{env}");

        let echoed = tools.run(Tool::Create, &[], Some(b"label"), work.path(), limit).unwrap();
        assert_eq!(echoed.stdout(), b"label");

        match tools.run(Tool::EvictControl, &[], None, work.path(), limit) {
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
    fn a_tool_that_leaves_a_child_holding_stdout_is_killed_at_its_limit() {
        // tpm2_load exits 0 at once but its grandchild keeps stdout open: the step must end at its
        // limit (group killed), not wait for the grandchild and then report success.
        let dir = tempfile::tempdir().unwrap();
        for tool in Tool::ALL {
            let body = match tool {
                Tool::Load => "#!/bin/sh\nsleep 5 &\necho partial\nexit 0\n",
                _ => "#!/bin/sh\nexit 0\n",
            };
            let exe = dir.path().join(tool.name());
            fs::write(&exe, body).unwrap();
            fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
        }
        let path = OsString::from(format!("{}:/usr/bin:/bin", dir.path().display()));
        let tools = Toolbox::locate(Some(&path), Tcti::default()).unwrap();
        let work = WorkDir::create().unwrap();
        let limit = Duration::from_millis(300);
        match tools.run(Tool::Load, &[], None, work.path(), limit) {
            Err(ToolFailure::TimedOut(l)) => assert_eq!(l, limit),
            other => panic!("{other:?}"),
        }
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
