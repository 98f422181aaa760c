//! `GET /v1/secrets` and `GET /v1/secrets/<name>[?version=N]` on the service socket (SPEC §7): the
//! attested caller's own secrets, for software that cannot speak OpenBao.
//!
//! - The caller is attested exactly as for `POST /v1/token` ([`crate::routes::attest`]); the service
//!   comes from that, never from the request. `?service=S` is only an assertion, like the token
//!   request's body: another service than the attested one is a 403 of the same shape.
//! - edgeseal then reads with a token of the caller's own service ([`crate::issue::Issuer::issue`]):
//!   OpenBao's policy for that service decides, as it would for the service itself. With `reuse`, the
//!   service's shared token is used (no token is created per read). Otherwise the token was created
//!   only for this read and is revoked (by accessor, with the issuing token) before the answer is
//!   sent: a revoked token cannot be replayed from anywhere, where a short TTL still leaves a window,
//!   and the role's TTL stays the one the operator configured. A batch token (no accessor) cannot be
//!   revoked; it lives to its role's TTL, like every batch token (`status` reports how long).
//! - One audit line per read of a secret, the issuance kind plus the secret's name and the version
//!   read (none when there was none), never the value. A list is not audited (names only).
//!
//! | request | answer |
//! |---|---|
//! | `GET /v1/secrets` | `{"secrets": [{"name", "version"}]}` |
//! | `GET /v1/secrets/<name>[?version=N]` | `{"name", "version", "data": {k: v}}`; 404 naming the secret when there is none |
//! | a name not 1-128 of `[A-Za-z0-9._-]` (a `/`, `..`), a bad `version`, an unknown query key | 400 |

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use hyper::{Request, Response, StatusCode};
use openbao_client::api::kv::valid_secret_name;
use openbao_client::{Error as StoreError, Token};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::api::MAX_BODY;
use crate::attest::facts::Facts;
use crate::config::ServiceRule;
use crate::metrics::{Attestation, DenyReason};
use crate::routes::{attest, error, json, over_rate, record_issued, unavailable, Caller};
use crate::server::State;

/// Where the services' secrets live: `<kv_mount>/data/<prefix>/<service>/<name>` (KV v2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretsLayout {
    /// `secret_store.kv_mount`.
    pub kv_mount: String,
    /// `secret_store.service_prefix`.
    pub prefix: String,
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    /// `None`: the list.
    pub name: Option<String>,
    /// `?version=N` (N ≥ 1).
    pub version: Option<u64>,
    /// `?service=S`: an assertion that must equal the attested service.
    pub service: Option<String>,
}

const NAME_RULE: &str = "a secret name is 1-128 of [A-Za-z0-9._-], not '.' or '..', and has no '/'";

/// Parses `/v1/secrets[/<name>]` and its query, or says why it is a bad request.
pub fn parse(path: &str, query: Option<&str>) -> Result<Ask, String> {
    let rest = path.strip_prefix("/v1/secrets").ok_or_else(|| format!("no such endpoint: {path}"))?;
    let name = match rest {
        "" | "/" => None,
        rest => match rest.strip_prefix('/') {
            Some(name) if valid_secret_name(name) => Some(name.to_string()),
            _ => return Err(NAME_RULE.into()),
        },
    };
    let mut ask = Ask { name, version: None, service: None };
    for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "version" if ask.name.is_some() && ask.version.is_none() => match value.parse::<u64>() {
                Ok(version) if version >= 1 => ask.version = Some(version),
                _ => return Err("version must be a number (1 or more)".into()),
            },
            "service" if ask.service.is_none() => ask.service = Some(value.to_string()),
            "version" | "service" => return Err(format!("{key} given twice, or where it means nothing")),
            _ => return Err("unknown query parameter (the only ones are version and service)".into()),
        }
    }
    Ok(ask)
}

#[derive(Serialize)]
struct Listed {
    secrets: Vec<Entry>,
}

#[derive(Serialize)]
struct Entry {
    name: String,
    version: u64,
}

#[derive(Serialize)]
struct Secret<'a> {
    name: &'a str,
    version: u64,
    data: Map<String, Value>,
}

/// What a read found.
enum Found {
    List(Listed),
    One { version: u64, data: Map<String, Value> },
}

/// Why a read could not be answered with the data.
enum Failed {
    NotFound,
    Store(StoreError),
    Timeout,
}

/// Handles `GET /v1/secrets…` (the method is checked by the router).
pub async fn handle(state: &State, caller: &Caller, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    if let Some(limited) = over_rate(state, caller) {
        state.telemetry.denied(None, DenyReason::rate_limited);
        return limited;
    }
    let headers = request.headers();
    let declared = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY as u64) {
        state.telemetry.denied(None, DenyReason::bad_request);
        return error(StatusCode::PAYLOAD_TOO_LARGE, "request body larger than 4 KiB");
    }
    if declared.is_some_and(|len| len > 0) || headers.contains_key(TRANSFER_ENCODING) {
        state.telemetry.denied(None, DenyReason::bad_request);
        return error(StatusCode::BAD_REQUEST, "GET /v1/secrets takes no request body");
    }
    let ask = match parse(request.uri().path(), request.uri().query()) {
        Ok(ask) => ask,
        Err(why) => {
            state.telemetry.denied(None, DenyReason::bad_request);
            return error(StatusCode::BAD_REQUEST, &why);
        }
    };
    let Some(layout) = &state.secrets else {
        return error(StatusCode::NOT_FOUND, "this token server serves no secrets (only POST /v1/token)");
    };
    let (facts, rule) = match attest(state, caller, ask.service.as_deref()).await {
        Ok(attested) => attested,
        Err(denied) => return denied,
    };
    let service = rule.name.as_str();
    let timeout = state.config.store_timeout;
    let auth = match tokio::time::timeout(timeout, state.issuer.issue(rule, &facts)).await {
        Ok(Ok(auth)) => auth,
        Ok(Err(e)) => {
            state.telemetry.denied(Some(service), DenyReason::store_unavailable);
            return unavailable(state, &e.to_string());
        }
        Err(_) => {
            state.telemetry.denied(Some(service), DenyReason::store_unavailable);
            return unavailable(state, "the secret store did not answer in time");
        }
    };
    if rule.batch {
        // Batch tokens cannot be revoked: `status` tells how long the service's stay valid.
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let expires = now.as_secs().saturating_add(auth.lease_duration);
        state.telemetry.batch_issued(service, i64::try_from(expires).unwrap_or(i64::MAX));
    }
    let folder = format!("{}/{service}", layout.prefix);
    let read = tokio::time::timeout(timeout, read(state, layout, &auth.client_token, &folder, &ask)).await;
    if !rule.reuse && !auth.accessor.is_empty() {
        // Created for this read only: gone before the caller has the value.
        match tokio::time::timeout(timeout, state.issuer.revoke(&auth.accessor)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(service, error = %e, "revoking a read-only token failed: it expires at its TTL")
            }
            Err(_) => tracing::warn!(service, "revoking a read-only token timed out: it expires at its TTL"),
        }
    }
    let read = match read {
        Ok(read) => read,
        Err(_) => Err(Failed::Timeout),
    };
    answer(state, &facts, rule, &auth.accessor, &ask, read)
}

/// The list, or one secret, read with the caller's service token.
async fn read(state: &State, layout: &SecretsLayout, token: &Token, folder: &str, ask: &Ask) -> Result<Found, Failed> {
    let client = state.issuer.client();
    let mount = layout.kv_mount.as_str();
    match &ask.name {
        None => {
            let names = client.kv_list(token, mount, folder).await.map_err(Failed::Store)?;
            let mut secrets = Vec::new();
            for name in names.into_iter().filter(|n| valid_secret_name(n)) {
                let metadata =
                    client.kv_metadata(token, mount, &format!("{folder}/{name}")).await.map_err(Failed::Store)?;
                if let Some(metadata) = metadata {
                    secrets.push(Entry { name, version: metadata.current_version });
                }
            }
            Ok(Found::List(Listed { secrets }))
        }
        Some(name) => {
            let path = format!("{folder}/{name}");
            match client.kv_read_version(token, mount, &path, ask.version).await.map_err(Failed::Store)? {
                Some(secret) => Ok(Found::One { version: secret.version, data: secret.data }),
                None => Err(Failed::NotFound),
            }
        }
    }
}

fn answer(
    state: &State,
    facts: &Facts,
    rule: &ServiceRule,
    accessor: &str,
    ask: &Ask,
    read: Result<Found, Failed>,
) -> Response<Full<Bytes>> {
    let service = rule.name.as_str();
    match read {
        Ok(Found::List(listed)) => json(StatusCode::OK, &listed),
        Ok(Found::One { version, data }) => {
            let name = ask.name.as_deref().unwrap_or_default();
            let attestation = if facts.container_id.is_some() { Attestation::docker } else { Attestation::unix };
            state.telemetry.secret_read(service, attestation);
            record_issued(state, facts, service, accessor, Some(name), Some(version));
            json(StatusCode::OK, &Secret { name, version, data })
        }
        Err(Failed::NotFound) => {
            let name = ask.name.as_deref().unwrap_or_default();
            // The token did read (and OpenBao's audit log has that): `audit` can attribute the request.
            record_issued(state, facts, service, accessor, Some(name), None);
            let at = ask.version.map(|v| format!(" at version {v}")).unwrap_or_default();
            error(
                StatusCode::NOT_FOUND,
                &format!("no secret {name:?} of service {service:?}{at} (an admin sets it with `secrets set {service}/{name}`)"),
            )
        }
        Err(Failed::Timeout) => {
            state.telemetry.denied(Some(service), DenyReason::store_unavailable);
            unavailable(state, "the secret store did not answer in time")
        }
        Err(Failed::Store(e)) if e.is_unreachable() || e.status() == Some(503) => {
            state.telemetry.denied(Some(service), DenyReason::store_unavailable);
            unavailable(state, &format!("the secret store cannot be read right now: {e}"))
        }
        Err(Failed::Store(e)) if e.status() == Some(403) => {
            tracing::warn!(target: "edgeseal::audit", event = "denied", service, reason = "store policy", error = %e);
            error(
                StatusCode::FORBIDDEN,
                &format!("denied: the secret store's policy for service {service:?} refuses this read ({e})"),
            )
        }
        Err(Failed::Store(e)) => error(StatusCode::BAD_GATEWAY, &format!("the secret store: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_names_the_list_or_one_secret_of_the_callers_own_and_nothing_else() {
        let one = |name: &str, version: Option<u64>| Ask { name: Some(name.into()), version, service: None };
        let list = Ask { name: None, version: None, service: None };
        let cases: &[(&str, Option<&str>, Result<Ask, ()>)] = &[
            ("/v1/secrets", None, Ok(list.clone())),
            ("/v1/secrets/", None, Ok(list.clone())),
            ("/v1/secrets/db-password", None, Ok(one("db-password", None))),
            ("/v1/secrets/db.url", Some("version=3"), Ok(one("db.url", Some(3)))),
            (
                "/v1/secrets/k",
                Some("service=svc-a"),
                Ok(Ask { name: Some("k".into()), version: None, service: Some("svc-a".into()) }),
            ),
            ("/v1/secrets/..", None, Err(())),
            ("/v1/secrets/.", None, Err(())),
            ("/v1/secrets/a/b", None, Err(())),
            ("/v1/secrets/other/name", None, Err(())),
            ("/v1/secrets/../x", None, Err(())),
            ("/v1/secrets/na%2Fme", None, Err(())),
            ("/v1/secrets//", None, Err(())),
            ("/v1/secrets/k", Some("version=x"), Err(())),
            ("/v1/secrets/k", Some("version=0"), Err(())),
            ("/v1/secrets/k", Some("version=-1"), Err(())),
            ("/v1/secrets/k", Some("version=1&version=2"), Err(())),
            ("/v1/secrets", Some("version=1"), Err(())),
            ("/v1/secrets/k", Some("destroy=true"), Err(())),
        ];
        for (path, query, want) in cases {
            assert_eq!(parse(path, *query).map_err(|_| ()), *want, "{path}?{query:?}");
        }
        assert!(parse(&format!("/v1/secrets/{}", "a".repeat(128)), None).is_ok());
        assert!(parse(&format!("/v1/secrets/{}", "a".repeat(129)), None).is_err());
    }
}
