//! `security-bootstrap gate`: the entrypoint of a service container. Waits (bounded) for the token
//! socket, fetches the caller's own token, hands it to the service in a file or an environment
//! variable, and execs the service.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hyper::{Method, StatusCode};

use super::token::{request, TokenFailure, EXIT_DENIED, EXIT_UNAVAILABLE};
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

/// Polls the socket until the server answers (bounded by `wait`), then fetches the token.
async fn fetch(socket: &Path, service: &str, wait: Duration) -> anyhow::Result<zeroize::Zeroizing<String>> {
    let deadline = Instant::now() + wait;
    let body = serde_json::json!({ "service": service }).to_string();
    loop {
        let answer = request(socket, Method::POST, "/v1/token", Some(body.clone())).await;
        let retry = match &answer {
            Err(e) => e.downcast_ref::<TokenFailure>().is_some_and(|f| f.code == EXIT_UNAVAILABLE),
            Ok((status, _)) => *status == StatusCode::SERVICE_UNAVAILABLE,
        };
        if !retry || Instant::now() >= deadline {
            let (status, bytes) = answer?;
            let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            if status.is_success() {
                let token = json["auth"]["client_token"].as_str().unwrap_or_default();
                return Ok(zeroize::Zeroizing::new(token.to_string()));
            }
            let message = json["error"].as_str().unwrap_or("no error message").to_string();
            let code = if status == StatusCode::FORBIDDEN { EXIT_DENIED } else { EXIT_UNAVAILABLE };
            return Err(TokenFailure { message: format!("token server answered {status}: {message}"), code }.into());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn write_token(path: &Path, token: &str) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing the token to {}", path.display()))?;
    file.write_all(token.as_bytes()).with_context(|| format!("writing the token to {}", path.display()))?;
    Ok(())
}
