//! `security-bootstrap gate`: the entrypoint of a service container. Waits (bounded) for the token
//! socket, fetches the caller's own token, hands it to the service in a file or an environment
//! variable, and execs the service.

use std::ffi::OsString;
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

/// Writes a fresh 0600 file atomically ([`durable_file`]): a new temp file is renamed over whatever
/// was at `path` (a stale token, a symlink — replaced, never followed), so no other file is ever
/// opened or truncated, and the service never sees a half-written token.
fn write_token(path: &Path, token: &str) -> anyhow::Result<()> {
    durable_file::write(path, token.as_bytes(), &durable_file::Options::private())
        .with_context(|| format!("writing the token to {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::write_token;

    #[test]
    fn the_token_file_is_fresh_0600_and_a_symlink_there_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        write_token(&path, "s.token").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_file());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        write_token(&path, "s.newer").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "s.newer");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "no temp file left");
    }
}
