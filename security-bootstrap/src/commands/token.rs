//! `security-bootstrap token` and `health`, and what every client of the token socket shares (`gate`
//! too): one request on the socket, and the one mapping from the server's answer to an exit code.
//!
//! | answer | exit code |
//! |---|---|
//! | 2xx | 0 |
//! | 403 denied | 77 (EX_NOPERM) |
//! | 429 rate-limited, 408 request timeout | 75 (EX_TEMPFAIL): try again later |
//! | 503 (store sealed or down), 502, 504, no server on the socket, connection failed or dropped | 69 (EX_UNAVAILABLE) |
//! | 400, 404, 405, 413 and other 4xx | 76 (EX_PROTOCOL): the server did not understand the request |
//! | 500 and anything else | 1 |
//!
//! No argument of these commands can make the real server answer 400/404/405/413: those mean that
//! client and server disagree on the protocol (different edgeseal versions, or `--socket` naming
//! another HTTP server), so they are not 64 (bad usage), which would send the operator to their
//! arguments.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

use crate::cli::{EXIT_FAILURE, EXIT_NOPERM, EXIT_OK, EXIT_PROTOCOL, EXIT_TEMPFAIL, EXIT_UNAVAILABLE};

/// What a client of the token socket got back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The server answered with this status.
    Status(StatusCode),
    /// No answer: nothing listens on the socket, or the connection failed or was dropped.
    Unreachable,
}

/// The exit code of `token`, `health` and `gate` for an answer (the table in this module's docs).
pub fn exit_code_for(answer: Answer) -> u8 {
    match answer {
        Answer::Status(status) if status.is_success() => EXIT_OK,
        Answer::Status(StatusCode::FORBIDDEN) => EXIT_NOPERM,
        Answer::Status(StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT) => EXIT_TEMPFAIL,
        Answer::Unreachable
        | Answer::Status(StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT) => {
            EXIT_UNAVAILABLE
        }
        Answer::Status(status) if status.is_client_error() => EXIT_PROTOCOL,
        Answer::Status(_) => EXIT_FAILURE,
    }
}

/// Whether asking again later may succeed (what `gate --wait` retries on).
pub fn may_succeed_later(code: u8) -> bool {
    code == EXIT_UNAVAILABLE || code == EXIT_TEMPFAIL
}

/// A token-socket client's failure, carrying its exit code ([`exit_code_for`]).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct TokenFailure {
    /// What went wrong, and what the server said.
    pub message: String,
    /// The exit code.
    pub code: u8,
}

impl TokenFailure {
    /// No answer on the socket.
    fn unreachable(socket: &Path, what: &str, error: impl std::fmt::Display) -> Self {
        Self {
            message: format!("{what} the token server at {}: {error}", socket.display()),
            code: exit_code_for(Answer::Unreachable),
        }
    }

    /// A non-success answer: `{prefix} ({status}): {the server's error}`, plus what to check.
    pub fn answered(prefix: &str, status: StatusCode, body: &[u8]) -> Self {
        let said = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
        let said: String = said.chars().map(|c| if c.is_control() { ' ' } else { c }).take(500).collect();
        let code = exit_code_for(Answer::Status(status));
        let hint = match code {
            EXIT_PROTOCOL => {
                "; the server did not understand the request: is --socket edgeseal's token server, of the same version?"
            }
            EXIT_TEMPFAIL => "; try again later",
            _ => "",
        };
        Self { message: format!("{prefix} ({status}): {said}{hint}"), code }
    }
}

/// One request to the token socket; returns status and body. Every failure to get an answer is a
/// [`TokenFailure`] with [`Answer::Unreachable`]'s exit code.
pub async fn request(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<String>,
) -> Result<(StatusCode, Bytes), TokenFailure> {
    let stream =
        UnixStream::connect(socket).await.map_err(|e| TokenFailure::unreachable(socket, "cannot connect to", e))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| TokenFailure::unreachable(socket, "HTTP handshake failed with", e))?;
    tokio::spawn(connection);
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| TokenFailure { message: format!("building the request for {path}: {e}"), code: EXIT_FAILURE })?;
    let response =
        sender.send_request(request).await.map_err(|e| TokenFailure::unreachable(socket, "no answer from", e))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| TokenFailure::unreachable(socket, "the answer was cut off by", e))?
        .to_bytes();
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
    Err(TokenFailure::answered("token server answered", status, &body).into())
}

/// `security-bootstrap token --secret NAME [--version N] [--json]`: `GET /v1/secrets/NAME`; prints the
/// value as `secrets get` does (a single `value` as is, else the JSON object). Exit codes as `token`.
pub fn secret(
    socket: &Path,
    service: Option<&str>,
    name: &str,
    version: Option<u64>,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    if !openbao_client::api::kv::valid_secret_name(name) {
        return Err(TokenFailure {
            message: format!("{name:?} is not a secret name: give 1-128 of [A-Za-z0-9._-], not '.' or '..'"),
            code: crate::cli::EXIT_USAGE,
        }
        .into());
    }
    let mut query: Vec<String> = Vec::new();
    if let Some(version) = version {
        query.push(format!("version={version}"));
    }
    if let Some(service) = service {
        query.push(format!("service={service}"));
    }
    let mut path = format!("/v1/secrets/{name}");
    if !query.is_empty() {
        path = format!("{path}?{}", query.join("&"));
    }
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")?;
    let (status, body) = runtime.block_on(request(socket, Method::GET, &path, None))?;
    if !status.is_success() {
        return Err(TokenFailure::answered("token server answered", status, &body).into());
    }
    let answer: serde_json::Value = serde_json::from_slice(&body).map_err(|e| TokenFailure {
        message: format!("the token server's answer is not JSON: {e}"),
        code: EXIT_PROTOCOL,
    })?;
    let data = answer["data"].as_object().cloned().unwrap_or_default();
    match (data.get("value").and_then(serde_json::Value::as_str), data.len(), json) {
        (Some(value), 1, false) => {
            out.write_all(value.as_bytes())?;
            if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                writeln!(out)?;
            }
        }
        _ => writeln!(out, "{}", serde_json::Value::Object(data))?,
    }
    Ok(())
}

/// `security-bootstrap health`: `GET /v1/health`; exit 0 when the server can issue tokens, else the
/// code of [`exit_code_for`] (69 when the store is sealed or down).
pub fn health(socket: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")?;
    let (status, body) = runtime.block_on(request(socket, Method::GET, "/v1/health", None))?;
    if status.is_success() {
        writeln!(out, "healthy")?;
        return Ok(());
    }
    Err(TokenFailure::answered("token server is not healthy", status, &body).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_answer_has_one_exit_code() {
        let status = |code: u16| Answer::Status(StatusCode::from_u16(code).unwrap());
        let cases: &[(Answer, u8)] = &[
            (status(200), 0),
            (status(204), 0),
            (status(403), 77),
            (status(429), 75),
            (status(408), 75),
            (status(503), 69),
            (status(502), 69),
            (status(504), 69),
            (Answer::Unreachable, 69),
            (status(400), 76),
            (status(404), 76),
            (status(405), 76),
            (status(413), 76),
            (status(401), 76),
            (status(500), 1),
            (status(501), 1),
            (status(302), 1),
            (status(101), 1),
        ];
        for (answer, want) in cases {
            assert_eq!(exit_code_for(*answer), *want, "{answer:?}");
        }
    }

    #[test]
    fn only_unavailable_and_rate_limited_are_worth_waiting_for() {
        for (code, retry) in [(69, true), (75, true), (0, false), (1, false), (64, false), (76, false), (77, false)] {
            assert_eq!(may_succeed_later(code), retry, "{code}");
        }
    }

    #[test]
    fn failures_quote_the_server_on_one_line_and_say_what_to_check() {
        let f =
            TokenFailure::answered("token server answered", StatusCode::NOT_FOUND, br#"{"error":"no such\nendpoint"}"#);
        assert_eq!(f.code, 76);
        assert!(f.message.starts_with("token server answered (404 Not Found): no such endpoint; "), "{}", f.message);
        assert!(f.message.contains("--socket"), "{}", f.message);
        assert!(!f.message.contains('\n'));
        let f = TokenFailure::answered("token server answered", StatusCode::TOO_MANY_REQUESTS, b"slow down");
        assert_eq!(
            (f.code, f.message.as_str()),
            (75, "token server answered (429 Too Many Requests): slow down; try again later")
        );
        let f = TokenFailure::unreachable(Path::new("/run/edgeseal/token.sock"), "cannot connect to", "No such file");
        assert_eq!(f.code, 69);
        assert_eq!(f.message, "cannot connect to the token server at /run/edgeseal/token.sock: No such file");
    }
}
