//! The HTTP/1.1 server on the Unix socket: routing, limits, attestation, issuance, audit lines.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::UnixListener;
use tokio::sync::Semaphore;

use crate::api::{ErrorBody, Health, TokenRequest, TokenResponse, WhoAmI, MAX_BODY};
use crate::attest::facts::short;
use crate::attest::{AttestError, Attestor, Peer};
use crate::config::{ServerConfig, ServiceRule};
use crate::issue::Issuer;
use crate::limits::RateLimiter;
use crate::selector::{match_services, Outcome};

/// Longest a connection may live; clients are short-lived.
const MAX_CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// How long graceful shutdown waits for in-flight requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Counters, for tests and metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Tokens issued.
    pub issued: AtomicU64,
    /// Requests denied (403).
    pub denied: AtomicU64,
    /// Requests answered 503.
    pub unavailable: AtomicU64,
    /// Requests rejected by the rate limiter.
    pub limited: AtomicU64,
}

/// Everything the server shares between connections.
#[derive(Debug)]
pub struct State {
    /// Listener settings and limits.
    pub config: ServerConfig,
    /// The services and their selectors.
    pub rules: Vec<ServiceRule>,
    /// Who is calling.
    pub attestor: Attestor,
    /// Token issuance.
    pub issuer: Issuer,
    /// Per-peer rate limit.
    pub limiter: RateLimiter,
    /// Counters.
    pub metrics: Metrics,
}

impl State {
    /// A state with a rate limiter built from the config.
    pub fn new(config: ServerConfig, rules: Vec<ServiceRule>, attestor: Attestor, issuer: Issuer) -> Self {
        let limiter = RateLimiter::new(config.rate_per_second, config.rate_burst);
        Self { config, rules, attestor, issuer, limiter, metrics: Metrics::default() }
    }
}

/// Serves `listener` until `shutdown` completes, then finishes in-flight requests (bounded).
pub async fn serve(listener: UnixListener, state: Arc<State>, shutdown: impl Future<Output = ()>) -> io::Result<()> {
    tokio::pin!(shutdown);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(state.config.max_connections.max(1)));
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "token server: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Pin the caller as soon as the connection is accepted, before waiting for a slot, so a flood
        // of connections cannot stretch the time between connect and pin.
        let peer = Arc::new(state.attestor.pin(&stream));
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let state = state.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let header_timeout = state.config.header_timeout;
            let service = hyper::service::service_fn(move |request| {
                let (state, peer) = (state.clone(), peer.clone());
                async move { Ok::<_, Infallible>(handle(&state, &peer, request).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(MAX_CONNECTION_LIFETIME, watcher.watch(connection)).await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
    Ok(())
}

async fn handle(state: &State, peer: &Result<Peer, AttestError>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let route = (request.method().clone(), request.uri().path().to_string());
    match (route.0, route.1.as_str()) {
        (Method::POST, "/v1/token") => token(state, peer, request).await,
        (Method::GET, "/v1/whoami") => whoami(state, peer).await,
        (Method::GET, "/v1/health") => health(state).await,
        (_, "/v1/token" | "/v1/whoami" | "/v1/health") => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        _ => error(StatusCode::NOT_FOUND, "no such endpoint (try POST /v1/token, GET /v1/whoami, GET /v1/health)"),
    }
}

async fn token(state: &State, peer: &Result<Peer, AttestError>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let body = match read_body(state, request).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let asserted: TokenRequest = if body.iter().all(u8::is_ascii_whitespace) {
        TokenRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(request) => request,
            Err(e) => return error(StatusCode::BAD_REQUEST, &format!("malformed request body: {e}")),
        }
    };
    let peer = match peer {
        Ok(peer) => peer,
        Err(e) => return deny(state, None, None, &e.to_string()),
    };
    if !state.limiter.allow(&peer.rate_key()) {
        state.metrics.limited.fetch_add(1, Ordering::Relaxed);
        return error(StatusCode::TOO_MANY_REQUESTS, "too many requests from this peer; slow down");
    }
    let facts = match state.attestor.attest(peer).await {
        Ok(facts) => facts,
        Err(e) => return deny(state, Some(peer), None, &e.to_string()),
    };
    let service = match match_services(&facts, &state.rules) {
        Outcome::Matched(service) => service,
        other => return deny(state, Some(peer), Some(&facts.describe()), &other.explain()),
    };
    if let Some(claimed) = asserted.service.as_deref().filter(|c| *c != service) {
        let why = format!("the request asserts service {claimed:?} but the caller is attested as {service:?}");
        return deny(state, Some(peer), Some(&facts.describe()), &why);
    }
    let Some(rule) = state.rules.iter().find(|r| r.name == service) else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "matched service has no rule");
    };
    match tokio::time::timeout(state.config.store_timeout, state.issuer.issue(rule, &facts)).await {
        Ok(Ok(auth)) => {
            state.metrics.issued.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                target: "edgeseal::audit",
                event = "issued",
                pid = facts.pid,
                uid = facts.uid,
                container = facts.container_id.as_deref().map(short).unwrap_or("none"),
                service = %service,
                accessor = %auth.accessor,
            );
            json(StatusCode::OK, &TokenResponse { service, auth })
        }
        Ok(Err(e)) => unavailable(state, &e.to_string()),
        Err(_) => unavailable(state, "the secret store did not answer in time"),
    }
}

async fn whoami(state: &State, peer: &Result<Peer, AttestError>) -> Response<Full<Bytes>> {
    let peer = match peer {
        Ok(peer) => peer,
        Err(e) => return error(StatusCode::FORBIDDEN, &e.to_string()),
    };
    if !state.limiter.allow(&peer.rate_key()) {
        state.metrics.limited.fetch_add(1, Ordering::Relaxed);
        return error(StatusCode::TOO_MANY_REQUESTS, "too many requests from this peer; slow down");
    }
    match state.attestor.attest(peer).await {
        Ok(facts) => {
            let (service, reason) = match match_services(&facts, &state.rules) {
                Outcome::Matched(service) => (Some(service), None),
                other => (None, Some(other.explain())),
            };
            json(StatusCode::OK, &WhoAmI { facts, service, reason })
        }
        Err(e) => error(StatusCode::FORBIDDEN, &e.to_string()),
    }
}

async fn health(state: &State) -> Response<Full<Bytes>> {
    match tokio::time::timeout(state.config.store_timeout, state.issuer.health()).await {
        Ok(Ok(())) => json(StatusCode::OK, &Health { status: "ok".into() }),
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "the secret store did not answer in time"),
    }
}

/// Reads a body of at most [`MAX_BODY`] bytes within the header timeout.
async fn read_body(state: &State, request: Request<Incoming>) -> Result<Bytes, Response<Full<Bytes>>> {
    let declared =
        request.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY as u64) {
        return Err(error(StatusCode::PAYLOAD_TOO_LARGE, "request body larger than 4 KiB"));
    }
    let collect = Limited::new(request.into_body(), MAX_BODY).collect();
    match tokio::time::timeout(state.config.header_timeout, collect).await {
        Ok(Ok(body)) => Ok(body.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            Err(error(StatusCode::PAYLOAD_TOO_LARGE, "request body larger than 4 KiB"))
        }
        Ok(Err(_)) => Err(error(StatusCode::BAD_REQUEST, "could not read the request body")),
        Err(_) => Err(error(StatusCode::REQUEST_TIMEOUT, "request body not received in time")),
    }
}

fn deny(state: &State, peer: Option<&Peer>, seen: Option<&str>, why: &str) -> Response<Full<Bytes>> {
    state.metrics.denied.fetch_add(1, Ordering::Relaxed);
    let seen = seen.map(str::to_string).unwrap_or_else(|| peer.map(|p| format!("pid={}", p.pid())).unwrap_or_default());
    tracing::warn!(target: "edgeseal::audit", event = "denied", seen = %seen, reason = %why);
    let message = if seen.is_empty() { format!("denied: {why}") } else { format!("denied: saw {seen}; {why}") };
    error(StatusCode::FORBIDDEN, &message)
}

fn unavailable(state: &State, why: &str) -> Response<Full<Bytes>> {
    state.metrics.unavailable.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(target: "edgeseal::audit", event = "unavailable", reason = %why);
    error(StatusCode::SERVICE_UNAVAILABLE, why)
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json(status, &ErrorBody { error: message.to_string() })
}

fn json(status: StatusCode, body: &impl Serialize) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{\"error\":\"internal error\"}".to_vec());
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    response
}
