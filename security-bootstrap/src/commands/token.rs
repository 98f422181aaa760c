//! `security-bootstrap token`: the client a script or entrypoint uses to fetch its token.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

/// Exit code when the server denied the caller (EX_NOPERM).
pub const EXIT_DENIED: u8 = 77;
/// Exit code when the store or the server is unavailable (EX_UNAVAILABLE).
pub const EXIT_UNAVAILABLE: u8 = 69;

/// The server refused or could not serve; carries the exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct TokenFailure {
    /// What the server said.
    pub message: String,
    /// The exit code.
    pub code: u8,
}

/// One request to the token socket; returns status and body.
pub async fn request(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<String>,
) -> anyhow::Result<(StatusCode, Bytes)> {
    let stream = UnixStream::connect(socket).await.map_err(|e| TokenFailure {
        message: format!("cannot connect to the token server at {}: {e}", socket.display()),
        code: EXIT_UNAVAILABLE,
    })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake on the token socket")?;
    tokio::spawn(connection);
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .context("building the request")?;
    let response = sender.send_request(request).await.context("talking to the token server")?;
    let status = response.status();
    let body = response.into_body().collect().await.context("reading the token server's answer")?.to_bytes();
    Ok((status, body))
}

/// Runs the command: prints the token response (JSON) on success.
pub fn run(socket: &Path, service: Option<&str>, whoami: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")?;
    let (method, path, body) = if whoami {
        (Method::GET, "/v1/whoami", None)
    } else {
        (Method::POST, "/v1/token", service.map(|s| serde_json::json!({ "service": s }).to_string()))
    };
    let (status, body) = runtime.block_on(request(socket, method, path, body))?;
    if status.is_success() {
        out.write_all(&body)?;
        writeln!(out)?;
        return Ok(());
    }
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
    let code = match status {
        StatusCode::FORBIDDEN => EXIT_DENIED,
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => EXIT_UNAVAILABLE,
        _ => crate::cli::EXIT_FAILURE,
    };
    Err(TokenFailure { message: format!("token server answered {status}: {message}"), code }.into())
}

/// `security-bootstrap health`: `GET /v1/health`; exit 0 when the server can issue tokens, 69 if not.
pub fn health(socket: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")?;
    let (status, body) = runtime.block_on(request(socket, Method::GET, "/v1/health", None))?;
    if status.is_success() {
        writeln!(out, "healthy")?;
        return Ok(());
    }
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
    Err(TokenFailure { message: format!("token server is not healthy ({status}): {message}"), code: EXIT_UNAVAILABLE }
        .into())
}
