//! Provisioning's tpm2-tools session: located tools, a private working directory, a deadline, and the
//! always-run cleanup — `tpm2_flushcontext -t` when the session ends, however it ends (success, error,
//! or early return), because a TCTI without a resource manager keeps every object a tool loaded.

use std::ffi::OsStr;
use std::time::{Duration, Instant};

use super::error::Tpm2Error;
use super::explain::{explain, Subject};
use super::params::Tcti;
use super::tool::{Tool, ToolOutput, Toolbox, WorkDir};
use super::Options;

/// The longest any single tool may run; a healthy TPM answers each step in milliseconds.
const STEP_LIMIT: Duration = Duration::from_secs(10);
/// The longest the final flush may take (it must not push the plug-in past edgeseal's timeout).
const CLEANUP_LIMIT: Duration = Duration::from_secs(2);

/// An open session. Dropping it flushes transient objects (if the TPM was reached) and removes the
/// working directory.
#[derive(Debug)]
pub(crate) struct Session {
    tools: Toolbox,
    dir: WorkDir,
    /// Steps must end by then.
    deadline: Instant,
    /// The cleanup must end by then (the caller's whole budget).
    end: Instant,
    /// Whether a tool reached the TPM, so there may be something to flush.
    reached: bool,
}

impl Session {
    /// Locates the tools and creates the working directory; everything must be over by `end`.
    pub(crate) fn open(options: &Options, end: Instant) -> Result<Self, Tpm2Error> {
        let tools = Toolbox::locate(options.path.as_deref(), options.tcti.clone())?;
        let dir = WorkDir::create()?;
        let reserve = CLEANUP_LIMIT.min(options.timeout / 4);
        Ok(Self { tools, dir, deadline: end.checked_sub(reserve).unwrap_or(end), end, reached: false })
    }

    /// The TCTI in use.
    pub(crate) fn tcti(&self) -> &Tcti {
        self.tools.tcti()
    }

    /// The working directory's file `name`, as a tool argument.
    pub(crate) fn file(&self, name: &str) -> std::path::PathBuf {
        self.dir.file(name)
    }

    /// Time left for steps.
    pub(crate) fn time_left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Runs one step; its failure is turned into the error an operator can act on.
    pub(crate) fn step(
        &mut self,
        tool: Tool,
        subject: Subject<'_>,
        args: &[&OsStr],
        stdin: Option<&[u8]>,
    ) -> Result<ToolOutput, Tpm2Error> {
        let limit = self.time_left().min(STEP_LIMIT);
        if limit.is_zero() {
            return Err(Tpm2Error::Timeout { tool: tool.name(), tcti: self.tcti().clone(), limit });
        }
        let result = self.tools.run(tool, args, stdin, self.dir.path(), limit);
        match result {
            Ok(output) => {
                self.reached = true;
                Ok(output)
            }
            Err(failure) => {
                let (error, reached) = explain(tool, subject, self.tcti(), failure);
                // A tool that got an answer, or hung, may have loaded something: the cleanup flushes.
                self.reached |= reached;
                Err(error)
            }
        }
    }

    /// Flushes transient objects, and with `sessions` also loaded and saved sessions.
    pub(crate) fn flush(&mut self, sessions: bool) -> Result<(), Tpm2Error> {
        let args: &[&OsStr] =
            if sessions { &[OsStr::new("-t"), OsStr::new("-l"), OsStr::new("-s")] } else { &[OsStr::new("-t")] };
        self.step(Tool::FlushContext, Subject::None, args, None).map(drop)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if !self.reached {
            return;
        }
        let limit = self.end.saturating_duration_since(Instant::now()).min(CLEANUP_LIMIT);
        if !limit.is_zero() {
            let _ = self.tools.run(Tool::FlushContext, &[OsStr::new("-t")], None, self.dir.path(), limit);
        }
    }
}
