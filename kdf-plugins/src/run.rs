//! Running a KDF plug-in executable, the way age runs its plug-ins.
//!
//! The plug-in gets a versioned entry argument (`ikm-v1`, or none for EdgeX hooks) and is run by the
//! crate's bounded child runner (`crate::child`): an environment holding only `PATH=/usr/bin:/bin`, `/`
//! as working directory, stdin from `/dev/null`, and its own process group so that a timeout kills it
//! and anything it spawned. Stdout goes into a buffer sized once at the longest valid answer and wiped
//! on drop; one byte more and the plug-in is killed. Stderr is kept (bounded) to quote in errors. The
//! IKM is never part of an error.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use thiserror::Error;

use crate::child::{self, describe_status, Ended, Job, RunError};
use crate::config::{KdfConfig, Protocol};
use crate::output::{parse_output, OutputError, MAX_OUTPUT_LEN};
use crate::secret::Ikm;
use crate::trust::{check_plugin, TrustError};

pub use crate::child::StderrQuote;

/// The only environment variable a plug-in sees.
pub const PLUGIN_PATH_ENV: &str = "/usr/bin:/bin";

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

/// Runs the configured plug-in and returns the IKM it printed.
pub fn run_plugin(config: &KdfConfig) -> Result<Ikm, PluginError> {
    let exe = check_plugin(&config.plugin)
        .map_err(|source| PluginError::Untrusted { path: config.plugin.clone(), source })?;
    let mut args: Vec<&OsStr> = Vec::new();
    if let Some(word) = config.protocol.entry_word() {
        args.push(OsStr::new(word));
        args.extend(config.args.iter().map(OsStr::new));
    }
    let job = Job {
        program: &exe,
        args: &args,
        path_env: OsStr::new(PLUGIN_PATH_ENV),
        env: &[],
        cwd: Path::new("/"),
        stdin: None,
        stdout_cap: MAX_OUTPUT_LEN,
        limit: config.timeout,
    };
    let ended = child::run(&job).map_err(|e| match e {
        RunError::Spawn(source) => PluginError::Spawn { path: exe.clone(), source },
        RunError::Io(source) => PluginError::Io { path: exe.clone(), source },
    })?;
    match ended {
        Ended::TimedOut { stderr } => {
            Err(PluginError::Timeout { path: exe, timeout: config.timeout, stderr: stderr.quote() })
        }
        Ended::StdoutOverflow { stderr } => Err(PluginError::OutputTooLarge { path: exe, stderr: stderr.quote() }),
        Ended::Exited { status, stderr, .. } if !status.success() => {
            Err(PluginError::Failed { path: exe, status, stderr: stderr.quote() })
        }
        Ended::Exited { stdout, stderr, .. } => parse_output(config.protocol, stdout.expose())
            .map_err(|reason| PluginError::BadOutput { path: exe, reason, stderr: stderr.quote() }),
    }
}

/// Runs the plug-in at `path` with the given protocol, for callers that have no full [`KdfConfig`].
pub fn run_plugin_at(path: &Path, protocol: Protocol, timeout: Duration) -> Result<Ikm, PluginError> {
    run_plugin(&KdfConfig { plugin: path.to_path_buf(), args: Vec::new(), protocol, timeout })
}
