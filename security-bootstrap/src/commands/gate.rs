//! `security-bootstrap gate`: the entrypoint of a service container. Waits (bounded) for the token
//! socket, fetches the caller's own token, hands it to the service in a file or an environment
//! variable, and execs the service.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

/// `O_NOFOLLOW` (from nix, without a libc dependency here).
fn libc_o_nofollow() -> i32 {
    nix::fcntl::OFlag::O_NOFOLLOW.bits()
}
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hyper::Method;

use super::token::{exit_code_for, may_succeed_later, request, Answer, TokenFailure};
use crate::UsageError;

/// Where the token goes.
#[derive(Debug)]
pub enum Sink {
    /// A file (mode 0600), e.g. on a tmpfs.
    File(PathBuf),
    /// An environment variable of the exec'd service.
    Env(String),
}

/// Runs the command; only returns on failure (on success the process becomes the service).
pub fn run(socket: &Path, service: &str, wait: Duration, sink: Sink, command: &[OsString]) -> anyhow::Result<()> {
    let Some((program, args)) = command.split_first() else {
        bail!(UsageError("give the service's command after --".into()));
    };
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")?;
    let token = runtime.block_on(fetch(socket, service, wait))?;
    drop(runtime);
    let mut exec = std::process::Command::new(program);
    exec.args(args);
    match sink {
        Sink::File(path) => write_token(&path, &token)?,
        Sink::Env(name) => {
            exec.env(name, &*token);
        }
    }
    let error = exec.exec();
    bail!("cannot start {}: {error}", program.to_string_lossy())
}

/// Asks for the token until the answer is final: while the server is unavailable (69) or
/// rate-limits (75) it asks again every 250 ms, until `wait` has passed. The exit codes are
/// [`exit_code_for`]'s.
async fn fetch(socket: &Path, service: &str, wait: Duration) -> anyhow::Result<zeroize::Zeroizing<String>> {
    let deadline = Instant::now() + wait;
    let body = serde_json::json!({ "service": service }).to_string();
    loop {
        let answer = request(socket, Method::POST, "/v1/token", Some(body.clone())).await;
        let code = match &answer {
            Err(failure) => failure.code,
            Ok((status, _)) => exit_code_for(Answer::Status(*status)),
        };
        if !may_succeed_later(code) || Instant::now() >= deadline {
            let (status, bytes) = answer?;
            if !status.is_success() {
                return Err(TokenFailure::answered("token server answered", status, &bytes).into());
            }
            let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            let Some(token) = json["auth"]["client_token"].as_str().filter(|t| !t.is_empty()) else {
                bail!("the token server answered 200 without auth.client_token");
            };
            return Ok(zeroize::Zeroizing::new(token.to_string()));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Writes a fresh 0600 file: whatever was at `path` (a stale token, a symlink) is removed first, and
/// the new file is created exclusively without following symlinks.
fn write_token(path: &Path, token: &str) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("replacing {}", path.display())),
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc_o_nofollow())
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing the token to {}", path.display()))?;
    file.write_all(token.as_bytes()).with_context(|| format!("writing the token to {}", path.display()))?;
    Ok(())
}
