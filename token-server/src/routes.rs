//! The HTTP routes of the token socket: `POST /v1/token`, `GET /v1/whoami`, `GET /v1/health`, and
//! the JSON answers (SPEC §7); `GET /v1/secrets…` is in [`crate::secrets`], attested by the same
//! [`attest`]. Every request counts against its peer's rate limit before any work.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;

use crate::api::{ErrorBody, Health, TokenRequest, TokenResponse, WhoAmI, MAX_BODY};
use crate::attest::exe::ExeStalled;
use crate::attest::facts::{short, Facts};
use crate::attest::{AttestError, Peer};
use crate::audit_log::{self, Record};
use crate::config::ServiceRule;
use crate::limits::PeerKey;
use crate::metrics::{Attestation, DenyReason};
use crate::selector::{match_services, Outcome};
use crate::server::State;

/// What the server knows about a connection from accept time on.
#[derive(Debug)]
pub struct Caller {
    /// The pinned process, or why it could not be pinned (every token request is then denied).
    pub peer: Result<Peer, AttestError>,
    /// The peer its requests and connections count against.
    pub key: PeerKey,
}

/// Routes one request.
pub async fn handle(state: &State, caller: &Caller, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let route = (request.method().clone(), request.uri().path().to_string());
    match (route.0, route.1.as_str()) {
        (Method::POST, "/v1/token") => {
            let started = std::time::Instant::now();
            let answer = token(state, caller, request).await;
            state.telemetry.observe_request(started.elapsed().as_secs_f64());
            answer
        }
        (Method::GET, "/v1/whoami") => whoami(state, caller).await,
        (Method::GET, "/v1/health") => health(state, caller).await,
        (method, path) if path == "/v1/secrets" || path.starts_with("/v1/secrets/") => match method {
            Method::GET => crate::secrets::handle(state, caller, &request).await,
            _ => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed (secrets are read with GET)"),
        },
        (_, "/v1/token" | "/v1/whoami" | "/v1/health") => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        _ => error(
            StatusCode::NOT_FOUND,
            "no such endpoint (try POST /v1/token, GET /v1/secrets, GET /v1/whoami, GET /v1/health)",
        ),
    }
}

async fn token(state: &State, caller: &Caller, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let body = match read_body(state, request).await {
        Ok(body) => body,
        Err(response) => {
            state.telemetry.denied(None, DenyReason::bad_request);
            return response;
        }
    };
    let asserted: TokenRequest = if body.iter().all(u8::is_ascii_whitespace) {
        TokenRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(request) => request,
            Err(e) => {
                state.telemetry.denied(None, DenyReason::bad_request);
                return error(StatusCode::BAD_REQUEST, &format!("malformed request body: {e}"));
            }
        }
    };
    // Rate first: a caller that cannot be pinned must not write an audit line per request either.
    if let Some(limited) = over_rate(state, caller) {
        state.telemetry.denied(None, DenyReason::rate_limited);
        return limited;
    }
    let (facts, rule) = match attest(state, caller, asserted.service.as_deref()).await {
        Ok(attested) => attested,
        Err(denied) => return denied,
    };
    let service = rule.name.clone();
    match tokio::time::timeout(state.config.store_timeout, state.issuer.issue(rule, &facts)).await {
        Ok(Ok(auth)) => {
            state.metrics.issued.fetch_add(1, Ordering::Relaxed);
            let attestation = if facts.container_id.is_some() { Attestation::docker } else { Attestation::unix };
            state.telemetry.issued(&service, attestation);
            if rule.batch {
                // Batch tokens cannot be revoked: `status` tells how long the service's stay valid.
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                let expires = now.as_secs().saturating_add(auth.lease_duration);
                state.telemetry.batch_issued(&service, i64::try_from(expires).unwrap_or(i64::MAX));
            }
            record_issued(state, &facts, &service, &auth.accessor, None, None);
            json(StatusCode::OK, &TokenResponse { service, auth })
        }
        Ok(Err(e)) => {
            state.telemetry.denied(Some(&service), DenyReason::store_unavailable);
            unavailable(state, &e.to_string())
        }
        Err(_) => {
            state.telemetry.denied(Some(&service), DenyReason::store_unavailable);
            unavailable(state, "the secret store did not answer in time")
        }
    }
}

/// Attests the caller of a request and matches it to exactly one service, the way every request that
/// acts for a service does (`POST /v1/token`, `GET /v1/secrets…`): `asserted` is a service the request
/// names, which must be the attested one. Otherwise the 403 answer (what was seen, what did not match).
pub(crate) async fn attest<'a>(
    state: &'a State,
    caller: &Caller,
    asserted: Option<&str>,
) -> Result<(Facts, &'a ServiceRule), Response<Full<Bytes>>> {
    let peer = match &caller.peer {
        Ok(peer) => peer,
        Err(e) => return Err(deny(state, (None, DenyReason::no_credentials), None, None, &e.to_string())),
    };
    let facts = match state.attestor.attest(peer).await {
        Ok(facts) => facts,
        Err(e @ AttestError::ExeStalled(ExeStalled::Busy(_))) => {
            // Not the caller's doing: it is told to try again (503; `gate` and `token` wait on it).
            state.telemetry.denied(None, DenyReason::attestation_failed);
            tracing::warn!(target: "edgeseal::audit", event = "busy", pid = peer.pid(), reason = %e);
            return Err(error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()));
        }
        Err(e) => return Err(deny(state, (None, DenyReason::attestation_failed), Some(peer), None, &e.to_string())),
    };
    let service = match match_services(&facts, &state.rules) {
        Outcome::Matched(service) => service,
        other => {
            // The caller hears about its own process only; the per-service reasons go to the log.
            tracing::warn!(target: "edgeseal::audit", event = "no_match", pid = peer.pid(), detail = %other.log_detail());
            return Err(deny(
                state,
                (None, DenyReason::no_match),
                Some(peer),
                Some(&facts.describe()),
                &other.explain(),
            ));
        }
    };
    if let Some(claimed) = asserted.filter(|c| *c != service) {
        let why = format!("the request asserts service {claimed:?} but the caller is attested as {service:?}");
        let denied = (Some(service.as_str()), DenyReason::asserted_mismatch);
        return Err(deny(state, denied, Some(peer), Some(&facts.describe()), &why));
    }
    match state.rules.iter().find(|r| r.name == service) {
        Some(rule) => Ok((facts, rule)),
        None => Err(error(StatusCode::INTERNAL_SERVER_ERROR, "matched service has no rule")),
    }
}

/// The audit line (edgeseal's log and its audit log) of a token handed to `service`'s caller; with
/// `secret`, the token was used by edgeseal to read that secret for the caller: the `version` read,
/// or none when there was none (never the value).
pub(crate) fn record_issued(
    state: &State,
    facts: &Facts,
    service: &str,
    accessor: &str,
    secret: Option<&str>,
    version: Option<u64>,
) {
    tracing::info!(
        target: "edgeseal::audit",
        event = if secret.is_some() { "secret_read" } else { "issued" },
        pid = facts.pid,
        uid = facts.uid,
        container = facts.container_id.as_deref().map(short).unwrap_or("none"),
        service = %service,
        accessor = %accessor,
        secret,
        version,
    );
    if let Some(log) = &state.audit {
        log.record(Record::Issued {
            service: service.to_string(),
            accessor: accessor.to_string(),
            caller: audit_log::Caller {
                pid: Some(facts.pid),
                uid: Some(facts.uid),
                container: facts.container_id.as_deref().map(|id| short(id).to_string()),
                container_name: facts.container.as_ref().map(|c| c.name.clone()),
            },
            secret: secret.map(str::to_string),
            version,
        });
    }
}

async fn whoami(state: &State, caller: &Caller) -> Response<Full<Bytes>> {
    if let Some(limited) = over_rate(state, caller) {
        return limited;
    }
    let peer = match &caller.peer {
        Ok(peer) => peer,
        Err(e) => return error(StatusCode::FORBIDDEN, &e.to_string()),
    };
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

/// Unattested, but rate-limited per peer and answered from [`crate::health::HealthCache`].
async fn health(state: &State, caller: &Caller) -> Response<Full<Bytes>> {
    if let Some(limited) = over_rate(state, caller) {
        return limited;
    }
    let probe = || async {
        state.metrics.health_probes.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout(state.config.store_timeout, state.issuer.health()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the secret store did not answer in time".to_string()),
        }
    };
    match state.health.get(probe).await {
        Ok(()) => json(StatusCode::OK, &Health { status: "ok".into() }),
        Err(why) => error(StatusCode::SERVICE_UNAVAILABLE, &state.store_problem.explain(&why)),
    }
}

/// A 429 answer when the caller's peer is over its request rate.
pub(crate) fn over_rate(state: &State, caller: &Caller) -> Option<Response<Full<Bytes>>> {
    if state.limiter.allow(&caller.key) {
        return None;
    }
    state.metrics.limited.fetch_add(1, Ordering::Relaxed);
    Some(error(StatusCode::TOO_MANY_REQUESTS, &format!("too many requests from {}; slow down", caller.key)))
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

/// A 403; `counted` is the service the denial is attributed to (if any) and its reason category.
pub(crate) fn deny(
    state: &State,
    counted: (Option<&str>, DenyReason),
    peer: Option<&Peer>,
    seen: Option<&str>,
    why: &str,
) -> Response<Full<Bytes>> {
    state.metrics.denied.fetch_add(1, Ordering::Relaxed);
    state.telemetry.denied(counted.0, counted.1);
    let seen = seen.map(str::to_string).unwrap_or_else(|| peer.map(|p| format!("pid={}", p.pid())).unwrap_or_default());
    tracing::warn!(target: "edgeseal::audit", event = "denied", seen = %seen, reason = %why);
    let message = if seen.is_empty() { format!("denied: {why}") } else { format!("denied: saw {seen}; {why}") };
    error(StatusCode::FORBIDDEN, &message)
}

pub(crate) fn unavailable(state: &State, why: &str) -> Response<Full<Bytes>> {
    state.metrics.unavailable.fetch_add(1, Ordering::Relaxed);
    state.health.invalidate();
    tracing::warn!(target: "edgeseal::audit", event = "unavailable", reason = %why);
    error(StatusCode::SERVICE_UNAVAILABLE, &state.store_problem.explain(why))
}

/// `{"error": message}` with `status`.
pub fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json(status, &ErrorBody { error: message.to_string() })
}

pub(crate) fn json(status: StatusCode, body: &impl Serialize) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{\"error\":\"internal error\"}".to_vec());
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    response
}
