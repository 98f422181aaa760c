//! A small, typed OpenBao client for edgeseal: HTTP/1.1 over hyper + rustls, TLS verified against the
//! device CA only, bounded retries for idempotent calls, errors that carry OpenBao's own message.
//!
//! Layout:
//! - [`Client`] (this file): transport, retries, error mapping.
//! - [`tls`]: the rustls configuration that trusts exactly one CA file.
//! - [`token`]: [`Token`] and [`SecretString`], which never print themselves.
//! - [`api`]: typed requests and responses, one module per area (`sys`, `auth`, `kv`).

#![forbid(unsafe_code)]

pub mod api;
pub mod tls;
pub mod token;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use token::{SecretString, Token};

/// Largest response body accepted from OpenBao.
const MAX_RESPONSE: usize = 4 * 1024 * 1024;
/// Attempts for an idempotent call that fails to connect.
const ATTEMPTS: u32 = 4;
/// First backoff between attempts; doubles each time.
const BACKOFF: Duration = Duration::from_millis(50);

/// A failed OpenBao call.
#[derive(Debug, Error)]
pub enum Error {
    /// The configured address is not `https://host:port` (or `http://` in dev mode).
    #[error("invalid OpenBao address {0:?}: expected https://HOST:PORT")]
    Address(String),
    /// The CA file could not be used.
    #[error("cannot use CA certificate {path} for OpenBao TLS: {reason}")]
    Tls {
        /// The CA file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// No connection (refused, reset, TLS handshake failed).
    #[error("OpenBao at {addr} is unreachable ({method} {path}): {reason}")]
    Unreachable {
        /// The base address.
        addr: String,
        /// HTTP method.
        method: String,
        /// API path.
        path: String,
        /// The transport error.
        reason: String,
    },
    /// No answer in time.
    #[error("OpenBao {method} {path} did not answer within {}s", .timeout.as_secs_f32())]
    Timeout {
        /// HTTP method.
        method: String,
        /// API path.
        path: String,
        /// The limit.
        timeout: Duration,
    },
    /// OpenBao answered with an error status.
    #[error("OpenBao {method} {path}: HTTP {status}: {message}")]
    Api {
        /// HTTP method.
        method: String,
        /// API path.
        path: String,
        /// HTTP status code.
        status: u16,
        /// OpenBao's `errors`, joined.
        message: String,
    },
    /// The answer is not what the API documents.
    #[error("OpenBao {method} {path}: unexpected response: {reason}")]
    Decode {
        /// HTTP method.
        method: String,
        /// API path.
        path: String,
        /// Why it could not be decoded (never the body itself: it may hold secrets).
        reason: String,
    },
}

impl Error {
    /// The HTTP status, when OpenBao answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether OpenBao could not be reached at all (as opposed to answering with an error).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Error::Unreachable { .. } | Error::Timeout { .. })
    }
}

/// How a call may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Safe to repeat: retried on connection failures with backoff.
    Idempotent,
    /// Must not be repeated blindly (e.g. `sys/init`): one attempt.
    Once,
}

type HttpsClient = hyper_util::client::legacy::Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A connection pool to one OpenBao server.
#[derive(Clone)]
pub struct Client {
    http: HttpsClient,
    base: String,
    timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("base", &self.base).field("timeout", &self.timeout).finish()
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<String>,
}

impl Client {
    /// A client for `address` (`https://host:port`) trusting only the CA certificates in `ca_pem`.
    pub fn new(address: &str, ca_pem: &Path, timeout: Duration) -> Result<Self, Error> {
        let base = address.trim_end_matches('/').to_string();
        let uri: hyper::Uri = base.parse().map_err(|_| Error::Address(address.to_string()))?;
        if uri.scheme_str() != Some("https") || uri.host().is_none() || uri.path() != "/" {
            return Err(Error::Address(address.to_string()));
        }
        let tls = tls::client_config(ca_pem)?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_only()
            .enable_http1()
            .build();
        let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Self { http, base, timeout })
    }

    /// The base address.
    pub fn address(&self) -> &str {
        &self.base
    }

    /// Calls `method /v1/{path}` and decodes a JSON answer.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        token: Option<&Token>,
        body: Option<&(impl Serialize + ?Sized)>,
        retry: Retry,
    ) -> Result<T, Error> {
        let (status, bytes) = self.send(&method, path, token, body, retry).await?;
        if !status.is_success() {
            return Err(api_error(&method, path, status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| Error::Decode {
            method: method.to_string(),
            path: path.to_string(),
            reason: format!("{:?} at line {} column {}", e.classify(), e.line(), e.column()),
        })
    }

    /// Like [`Client::call`], but a 404 is `Ok(None)`.
    pub async fn call_opt<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        token: Option<&Token>,
        body: Option<&(impl Serialize + ?Sized)>,
        retry: Retry,
    ) -> Result<Option<T>, Error> {
        match self.call(method, path, token, body, retry).await {
            Ok(value) => Ok(Some(value)),
            Err(Error::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Calls an endpoint whose success has no body we need (204 or any 2xx).
    pub async fn call_empty(
        &self,
        method: Method,
        path: &str,
        token: Option<&Token>,
        body: Option<&(impl Serialize + ?Sized)>,
        retry: Retry,
    ) -> Result<(), Error> {
        let (status, bytes) = self.send(&method, path, token, body, retry).await?;
        if !status.is_success() {
            return Err(api_error(&method, path, status, &bytes));
        }
        Ok(())
    }

    /// Sends one request (retrying idempotent ones on connection failures) and returns status and body.
    pub async fn send(
        &self,
        method: &Method,
        path: &str,
        token: Option<&Token>,
        body: Option<&(impl Serialize + ?Sized)>,
        retry: Retry,
    ) -> Result<(StatusCode, Bytes), Error> {
        let payload = match body {
            Some(body) => Bytes::from(serde_json::to_vec(body).map_err(|e| Error::Decode {
                method: method.to_string(),
                path: path.to_string(),
                reason: format!("cannot encode the request: {e}"),
            })?),
            None => Bytes::new(),
        };
        let attempts = if retry == Retry::Idempotent { ATTEMPTS } else { 1 };
        let mut backoff = BACKOFF;
        let mut last = None;
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            match self.send_once(method, path, token, payload.clone()).await {
                Ok(answer) => return Ok(answer),
                Err(e) if e.is_unreachable() => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::Address(self.base.clone())))
    }

    async fn send_once(
        &self,
        method: &Method,
        path: &str,
        token: Option<&Token>,
        payload: Bytes,
    ) -> Result<(StatusCode, Bytes), Error> {
        let uri = format!("{}/v1/{}", self.base, path.trim_start_matches('/'));
        let mut request = Request::builder().method(method.clone()).uri(&uri);
        if let Some(token) = token {
            request = request.header("X-Vault-Token", token.expose());
        }
        if !payload.is_empty() {
            request = request.header("Content-Type", "application/json");
        }
        let request = request.body(Full::new(payload)).map_err(|e| Error::Decode {
            method: method.to_string(),
            path: path.to_string(),
            reason: format!("cannot build the request: {e}"),
        })?;
        let exchange = async {
            let response = self.http.request(request).await.map_err(|e| Error::Unreachable {
                addr: self.base.clone(),
                method: method.to_string(),
                path: path.to_string(),
                reason: error_chain(&e),
            })?;
            let status = response.status();
            let body =
                Limited::new(response.into_body(), MAX_RESPONSE).collect().await.map_err(|e| Error::Unreachable {
                    addr: self.base.clone(),
                    method: method.to_string(),
                    path: path.to_string(),
                    reason: format!("reading the response: {e}"),
                })?;
            Ok((status, body.to_bytes()))
        };
        tokio::time::timeout(self.timeout, exchange).await.unwrap_or_else(|_| {
            Err(Error::Timeout { method: method.to_string(), path: path.to_string(), timeout: self.timeout })
        })
    }
}

fn api_error(method: &Method, path: &str, status: StatusCode, body: &[u8]) -> Error {
    let message = serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .filter(|b| !b.errors.is_empty())
        .map(|b| b.errors.join("; "))
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string());
    Error::Api { method: method.to_string(), path: path.to_string(), status: status.as_u16(), message }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}
