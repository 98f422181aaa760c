//! A small, typed OpenBao client for edgeseal: HTTP/1.1 over hyper + rustls, TLS verified against the
//! device CA and OpenBao's pinned key, bounded retries for idempotent calls, errors that carry
//! OpenBao's own message.
//!
//! Two transports: HTTPS to `secret_store.address` ([`Client::new`]), and plain HTTP over the Unix
//! socket of an OpenBao edgeseal supervises ([`Client::unix`]), whose 0700 directory only edgeseal's
//! user can enter — the private path for `sys/init`, `sys/unseal` and root generation.
//!
//! Layout:
//! - [`Client`] (this file): transports, retries, error mapping.
//! - [`tls`]: the rustls configuration: one CA file, and the pin on OpenBao's own key ([`Pin`]).
//! - [`retry`]: the one backoff helper ([`retry::Backoff`], [`retry::retry`]) used here and by setup.
//! - [`token`]: [`Token`], [`SecretString`] and [`UnsealKey`] ([`secret_types`]), which never print
//!   themselves.
//! - [`api`]: typed requests and responses, one module per area (`sys`, `auth`, `kv`).

#![forbid(unsafe_code)]

pub mod api;
pub mod retry;
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

pub use tls::{ClientIdentity, Pin};
pub use token::{SecretString, Token, UnsealKey};

use retry::{Attempt, Backoff};

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
    /// edgeseal's own TLS client certificate or key is unusable.
    #[error("edgeseal's TLS client identity for OpenBao is unusable: {reason}")]
    ClientIdentity {
        /// Why.
        reason: String,
    },
    /// The server's certificate chains to the CA but is not OpenBao's: nothing was sent to it.
    #[error("the server at {addr} is not the OpenBao edgeseal expects: its certificate chains to the device CA but its key is not the one in {pinned} — the server's identity does not match, so nothing was sent to it. Another process may be listening on the store's address while OpenBao is down; find it (ss -ltnp). If OpenBao's certificate was reissued, restart OpenBao so that it serves the current {pinned}")]
    Identity {
        /// The base address.
        addr: String,
        /// The certificate file whose key is pinned.
        pinned: PathBuf,
    },
    /// The pinned certificate file could not be used.
    #[error("cannot read OpenBao's certificate {path} (secret_store.server_cert) to pin its key: {reason}")]
    Pin {
        /// The certificate file.
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

    /// Whether a server answered with a certificate that failed the pin (an impostor, or an OpenBao
    /// still serving a certificate pki-init has since replaced).
    pub fn is_identity_mismatch(&self) -> bool {
        matches!(self, Error::Identity { .. })
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
type UnixClient = hyper_util::client::legacy::Client<hyperlocal::UnixConnector, Full<Bytes>>;

#[derive(Clone)]
enum Transport {
    /// HTTPS, verified against the CA; `pinned` names the certificate file whose key is required.
    Tls { http: HttpsClient, pinned: Option<PathBuf> },
    /// HTTP over a Unix socket in a directory only edgeseal's user may enter.
    Unix { http: UnixClient, socket: PathBuf },
}

/// A connection pool to one OpenBao server.
#[derive(Clone)]
pub struct Client {
    transport: Transport,
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

/// The host part of an OpenBao address (`https://HOST:PORT`): a DNS name, or an IP address without
/// brackets. This is the name OpenBao's certificate is checked against.
pub fn address_host(address: &str) -> Result<String, Error> {
    let base = address.trim_end_matches('/');
    let uri: hyper::Uri = base.parse().map_err(|_| Error::Address(address.to_string()))?;
    match (uri.scheme_str(), uri.host(), uri.path()) {
        (Some("https"), Some(host), "/") => Ok(host.trim_start_matches('[').trim_end_matches(']').to_string()),
        _ => Err(Error::Address(address.to_string())),
    }
}

impl Client {
    /// A client for `address` (`https://host:port`) trusting only the CA certificates in `ca_pem`, and
    /// among the certificates they issue only the one `pin` names.
    pub fn new(address: &str, ca_pem: &Path, pin: &Pin, timeout: Duration) -> Result<Self, Error> {
        Self::with_identity(address, ca_pem, pin, None, timeout)
    }

    /// Like [`Client::new`], presenting `identity` as the TLS client certificate when OpenBao asks
    /// for one (the `cert` auth method's login reads it from the connection).
    pub fn with_identity(
        address: &str,
        ca_pem: &Path,
        pin: &Pin,
        identity: Option<&ClientIdentity>,
        timeout: Duration,
    ) -> Result<Self, Error> {
        address_host(address)?;
        let base = address.trim_end_matches('/').to_string();
        let tls = tls::client_config(ca_pem, pin, identity)?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_only()
            .enable_http1()
            .build();
        let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        let pinned = match pin {
            Pin::ServerCert(path) => Some(path.clone()),
            Pin::CaOnly => None,
        };
        Ok(Self { transport: Transport::Tls { http, pinned }, base, timeout })
    }

    /// A client for the OpenBao listening on the Unix socket `socket` (plain HTTP). The socket's
    /// directory must be one only edgeseal's user can enter: that, not TLS, makes it OpenBao.
    pub fn unix(socket: &Path, timeout: Duration) -> Self {
        let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(hyperlocal::UnixConnector);
        Self {
            transport: Transport::Unix { http, socket: socket.to_path_buf() },
            base: format!("unix:{}", socket.display()),
            timeout,
        }
    }

    /// The base address.
    pub fn address(&self) -> &str {
        &self.base
    }

    /// The same connection pool with another per-request timeout (a raft snapshot takes longer
    /// than an API call).
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        Self { timeout, ..self.clone() }
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
        self.send_bytes(method, path, token, payload, retry, MAX_RESPONSE).await
    }

    /// Sends raw bytes (JSON or not) and reads an answer of up to `limit` bytes: raft snapshots.
    pub async fn send_bytes(
        &self,
        method: &Method,
        path: &str,
        token: Option<&Token>,
        payload: Bytes,
        retry: Retry,
        limit: usize,
    ) -> Result<(StatusCode, Bytes), Error> {
        let attempts = if retry == Retry::Idempotent { ATTEMPTS } else { 1 };
        retry::retry(Backoff::attempts(attempts, BACKOFF), || async {
            match self.send_once(method, path, token, payload.clone(), limit).await {
                Ok(answer) => Attempt::Done(answer),
                Err(e) if e.is_unreachable() => Attempt::Retry(e),
                Err(e) => Attempt::Fail(e),
            }
        })
        .await
    }

    async fn send_once(
        &self,
        method: &Method,
        path: &str,
        token: Option<&Token>,
        payload: Bytes,
        limit: usize,
    ) -> Result<(StatusCode, Bytes), Error> {
        let api_path = format!("/v1/{}", path.trim_start_matches('/'));
        let uri: hyper::Uri = match &self.transport {
            Transport::Tls { .. } => {
                format!("{}{api_path}", self.base).parse().map_err(|_| Error::Address(self.base.clone()))?
            }
            Transport::Unix { socket, .. } => hyperlocal::Uri::new(socket, &api_path).into(),
        };
        let mut request = Request::builder().method(method.clone()).uri(uri);
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
            let sent = match &self.transport {
                Transport::Tls { http, .. } => http.request(request).await,
                Transport::Unix { http, .. } => http.request(request).await,
            };
            let response = sent.map_err(|e| self.transport_error(method, path, &e))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), limit).collect().await.map_err(|e| Error::Unreachable {
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

impl Client {
    /// A failed exchange: an impostor (the pin refused its certificate), or OpenBao unreachable.
    fn transport_error(&self, method: &Method, path: &str, error: &hyper_util::client::legacy::Error) -> Error {
        if let Transport::Tls { pinned: Some(pinned), .. } = &self.transport {
            if tls::is_identity_mismatch(error) {
                return Error::Identity { addr: self.base.clone(), pinned: pinned.clone() };
            }
        }
        Error::Unreachable {
            addr: self.base.clone(),
            method: method.to_string(),
            path: path.to_string(),
            reason: error_chain(error),
        }
    }
}

pub(crate) fn api_error(method: &Method, path: &str, status: StatusCode, body: &[u8]) -> Error {
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
