//! The admin API on the admin socket. JSON in and out; values only ever in request and response
//! bodies, never in a log line or an error message.
//!
//! | request | answer |
//! |---|---|
//! | `PUT /v1/secrets/<service>/<name>` `{"data": {k: v}, "cas": N?}` | `{"version": N}`; 409 when `cas` does not match |
//! | `POST /v1/secrets/<service>/<name>/rotate` `{"data": {…}}` or `{}` (generated secrets) | `{"version": N}` |
//! | `GET /v1/secrets/<service>/<name>[?version=N]` | `{"data": {…}, "version": N}`; 404 when none |
//! | `DELETE /v1/secrets/<service>/<name>[?destroy=true]` | `{}` |
//! | `GET /v1/secrets/<service>/<name>/history` | `{"versions": [{version, created_time, deletion_time, destroyed, source}]}` |
//! | `GET /v1/secrets[?service=S]` | `{"secrets": [{service, name, version, updated, source}]}` |
//! | `GET /v1/audit[?service=S][&since=SECONDS][&limit=N]` | [`super::audit::Report`] plus `{"sources": {edgeseal, openbao}}` |
//! | `GET /metrics`, `GET /v1/status` | see [`super::observe`] |
//! | `GET /v1/node`, `POST /v1/export`, `/v1/import`, `/v1/backup` | see [`super::transfer`] |
//! | `GET /v1/cluster` | see [`super::cluster`] |
//! | `POST /v1/fleet/sync` | see [`super::fleet`] |

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Response, StatusCode};
use openbao_client::api::kv::{VersionMetadata, Written};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::audit::{self, KvLayout, Query};
use super::AdminState;
use crate::audit_log::Record;

/// Largest request body: a secret's data (1 MiB) plus its JSON framing.
pub const MAX_BODY: usize = 1024 * 1024 + 4096;
/// Largest secret value (all of its data, serialized).
pub const MAX_VALUE: usize = 1024 * 1024;

/// The admin on the other end of a connection (SO_PEERCRED).
#[derive(Debug, Clone, Copy)]
pub struct Admin {
    /// Peer uid (in `admin.uids`).
    pub uid: u32,
    /// Peer pid.
    pub pid: Option<i32>,
}

/// Which secret a path names, and what is asked of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `/v1/secrets`.
    All,
    /// `/v1/secrets/<service>/<name>`.
    Secret { service: String, name: String },
    /// `/v1/secrets/<service>/<name>/history`.
    History { service: String, name: String },
    /// `/v1/secrets/<service>/<name>/rotate`.
    Rotate { service: String, name: String },
}

/// A secret name: 1-128 of `[A-Za-z0-9._-]`, not `.` or `..` (it becomes one KV path segment); the
/// same rule as EdgeX seed files at setup.
pub fn valid_name(name: &str) -> bool {
    openbao_client::api::kv::valid_secret_name(name)
}

/// Parses a request path (without the query) into a [`Target`], or says why not.
pub fn parse_path(path: &str) -> Result<Target, String> {
    let rest = path
        .strip_prefix("/v1/secrets")
        .filter(|rest| rest.is_empty() || rest.starts_with('/'))
        .ok_or_else(|| format!("no such endpoint: {path}"))?;
    let parts: Vec<&str> = rest.split('/').skip(1).collect();
    let secret = |service: &str, name: &str| -> Result<(String, String), String> {
        if !valid_name(service) || !valid_name(name) {
            return Err("a secret is SERVICE/NAME, each 1-128 of [A-Za-z0-9._-] (no '/', no '..')".into());
        }
        Ok((service.to_string(), name.to_string()))
    };
    match parts.as_slice() {
        [] | [""] => Ok(Target::All),
        [service, name] => secret(service, name).map(|(service, name)| Target::Secret { service, name }),
        [service, name, "history"] => secret(service, name).map(|(service, name)| Target::History { service, name }),
        [service, name, "rotate"] => secret(service, name).map(|(service, name)| Target::Rotate { service, name }),
        _ => Err("a secret is SERVICE/NAME, each 1-128 of [A-Za-z0-9._-] (no '/', no '..')".into()),
    }
}

/// One query parameter's value.
fn query<'a>(request: &'a Request<Incoming>, key: &str) -> Option<&'a str> {
    request.uri().query()?.split('&').find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteBody {
    #[serde(default)]
    data: Option<Map<String, Value>>,
    #[serde(default)]
    cas: Option<u64>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

pub(super) fn json(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(serde_json::to_vec(body).unwrap_or_default())));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    response
}

/// The answer to a caller that is not an admin.
pub fn refused(reason: &str) -> Response<Full<Bytes>> {
    error(StatusCode::FORBIDDEN, reason)
}

pub(super) fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json(status, &serde_json::to_value(ErrorBody { error: message }).unwrap_or_default())
}

/// Handles one admin request.
pub async fn handle(state: &AdminState, admin: Admin, request: Request<Incoming>) -> Response<Full<Bytes>> {
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => return super::observe::metrics(state).await,
        (&Method::GET, "/v1/status") => return json(StatusCode::OK, &super::observe::status(state).await),
        (&Method::GET, "/v1/audit") => return audit_report(state, &request).await,
        (&Method::GET, "/v1/node") => return super::transfer::node(state).await,
        (&Method::GET, "/v1/cluster") => return super::cluster::status(state).await,
        (_, "/metrics" | "/v1/status" | "/v1/audit" | "/v1/node" | "/v1/cluster") => {
            return error(StatusCode::METHOD_NOT_ALLOWED, "only GET is allowed here")
        }
        (&Method::POST, "/v1/export" | "/v1/import" | "/v1/backup") => {
            let route = request.uri().path().to_string();
            let limit = if route == "/v1/import" { super::transfer::MAX_IMPORT_REQUEST } else { MAX_BODY };
            let bytes = match Limited::new(request.into_body(), limit).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(_) => {
                    return error(StatusCode::PAYLOAD_TOO_LARGE, &format!("the request is larger than {limit} bytes"))
                }
            };
            return match route.as_str() {
                "/v1/export" => super::transfer::export(state, admin, &bytes).await,
                "/v1/import" => super::transfer::import(state, admin, &bytes).await,
                _ => super::transfer::backup(state, admin, &bytes).await,
            };
        }
        (&Method::POST, "/v1/fleet/sync") => return super::fleet::sync(state, admin).await,
        (_, "/v1/export" | "/v1/import" | "/v1/backup" | "/v1/fleet/sync") => {
            return error(StatusCode::METHOD_NOT_ALLOWED, "only POST is allowed here")
        }
        _ => {}
    }
    let target = match parse_path(request.uri().path()) {
        Ok(target) => target,
        Err(message) => return error(StatusCode::NOT_FOUND, &message),
    };
    let method = request.method().clone();
    match (&method, target) {
        (&Method::GET, Target::All) => list(state, query(&request, "service").map(str::to_string)).await,
        (&Method::GET, Target::Secret { service, name }) => {
            let version = match query(&request, "version").map(str::parse::<u64>).transpose() {
                Ok(version) => version,
                Err(_) => return error(StatusCode::BAD_REQUEST, "version must be a number"),
            };
            read(state, admin, &service, &name, version).await
        }
        (&Method::GET, Target::History { service, name }) => history(state, &service, &name).await,
        (&Method::PUT, Target::Secret { service, name }) => {
            let body = match body(request).await {
                Ok(body) => body,
                Err(answer) => return answer,
            };
            write(state, admin, &service, &name, body, "set").await
        }
        (&Method::POST, Target::Rotate { service, name }) => {
            let body = match body(request).await {
                Ok(body) => body,
                Err(answer) => return answer,
            };
            rotate(state, admin, &service, &name, body).await
        }
        (&Method::DELETE, Target::Secret { service, name }) => {
            let destroy = query(&request, "destroy") == Some("true");
            remove(state, admin, &service, &name, destroy).await
        }
        _ => error(StatusCode::METHOD_NOT_ALLOWED, &format!("{method} is not allowed here")),
    }
}

async fn body(request: Request<Incoming>) -> Result<WriteBody, Response<Full<Bytes>>> {
    let bytes = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Err(error(StatusCode::PAYLOAD_TOO_LARGE, "the request is larger than 1 MiB")),
    };
    if bytes.is_empty() {
        return Ok(WriteBody { data: None, cas: None });
    }
    // serde_json's messages quote no input beyond a position: safe to return.
    serde_json::from_slice(&bytes)
        .map_err(|e| error(StatusCode::BAD_REQUEST, &format!("the request is not valid JSON: {e}")))
}

/// Checks the data an admin gives: a non-empty object of non-empty string values, at most 1 MiB.
pub fn check_data(data: &Map<String, Value>) -> Result<(), &'static str> {
    if data.is_empty() {
        return Err("the secret is empty");
    }
    if data.iter().any(|(key, value)| key.is_empty() || value.as_str().is_none_or(str::is_empty)) {
        return Err("every key of the secret needs a non-empty string value");
    }
    if serde_json::to_vec(data).map(|b| b.len()).unwrap_or(usize::MAX) > MAX_VALUE {
        return Err("the secret is larger than 1 MiB");
    }
    Ok(())
}

pub(super) fn path(state: &AdminState, service: &str, name: &str) -> String {
    format!("{}/{service}/{name}", state.prefix)
}

pub(super) fn unknown(state: &AdminState, service: &str) -> Option<Response<Full<Bytes>>> {
    (!state.services.contains_key(service)).then(|| {
        error(
            StatusCode::NOT_FOUND,
            &format!(
                "no service {service:?} in edgeseal.yaml (services: {})",
                state.services.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        )
    })
}

pub(super) fn store_error(e: &openbao_client::Error) -> Response<Full<Bytes>> {
    let status = if e.is_unreachable() { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::BAD_GATEWAY };
    error(status, &format!("the secret store: {e}"))
}

pub(super) fn audit(state: &AdminState, admin: Admin, action: &str, service: &str, name: &str, version: Option<u64>) {
    // The admin's process waits for this answer: its pid is still its own.
    let exe = admin
        .pid
        .and_then(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).ok())
        .map(|exe| exe.to_string_lossy().into_owned());
    tracing::info!(target: "edgeseal::audit", event = "admin", uid = admin.uid, pid = admin.pid, exe, action, service, name, version);
    if let Some(log) = &state.audit_log {
        log.record(Record::Admin {
            uid: admin.uid,
            pid: admin.pid,
            exe,
            action: action.into(),
            service: service.into(),
            name: name.into(),
            version,
        });
    }
}

/// Events `audit` returns unless it asks for another number: the newest.
pub const AUDIT_DEFAULT_LIMIT: usize = 10_000;
/// The most events one `audit` returns.
pub const AUDIT_MAX_LIMIT: usize = 1_000_000;
static AUDIT_JOBS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// `GET /v1/audit`: edgeseal's audit log joined with OpenBao's (read off the async workers).
async fn audit_report(state: &AdminState, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let service = query(request, "service").map(str::to_string);
    if let Some(service) = &service {
        if let Some(answer) = unknown(state, service) {
            return answer;
        }
    }
    let since = match query(request, "since").map(str::parse::<u64>).transpose() {
        Ok(since) => since.map(|secs| {
            std::time::SystemTime::now()
                .checked_sub(std::time::Duration::from_secs(secs))
                .unwrap_or(std::time::SystemTime::UNIX_EPOCH)
        }),
        Err(_) => return error(StatusCode::BAD_REQUEST, "since must be a number of seconds"),
    };
    let limit = match query(request, "limit").map(str::parse::<usize>).transpose() {
        Ok(limit) => limit.unwrap_or(AUDIT_DEFAULT_LIMIT).clamp(1, AUDIT_MAX_LIMIT),
        Err(_) => return error(StatusCode::BAD_REQUEST, "limit must be a number of events"),
    };
    // One join at a time: each reads both logs whole.
    let Ok(_one) = AUDIT_JOBS.try_acquire() else {
        return error(StatusCode::TOO_MANY_REQUESTS, "another audit is running; try again when it is done");
    };
    let Some(log) = state.audit_log.clone() else {
        return error(StatusCode::NOT_FOUND, "this server keeps no audit log (audit.file)");
    };
    let openbao = state.openbao_audit_log.clone();
    let layout = KvLayout { mount: state.kv_mount.clone(), prefix: state.prefix.clone() };
    let joined = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
        log.flush();
        let mut records = Vec::new();
        let unreadable = crate::audit_log::read(log.path(), |line| records.push(line))?;
        let query = Query { service, since, limit: Some(limit) };
        // OpenBao's log and its rotated generations, oldest first, as one stream of lines.
        let mut bao: Box<dyn std::io::Read + Send> = Box::new(std::io::empty());
        for path in openbao
            .as_deref()
            .map(|p| durable_file::log::generations(p, durable_file::log::MAX_KEEP))
            .unwrap_or_default()
        {
            match std::fs::File::open(&path) {
                Ok(file) => bao = Box::new(std::io::Read::chain(bao, file)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let report = audit::join(records, std::io::BufReader::with_capacity(1 << 20, bao), &layout, &query)?;
        #[derive(Serialize)]
        struct Answer<'a> {
            events: &'a [audit::Event],
            omitted: usize,
            unreadable_lines: usize,
            unattributed_requests: usize,
            sources: Value,
        }
        let answer = Answer {
            events: &report.events,
            omitted: report.omitted,
            unreadable_lines: report.unreadable_lines + unreadable,
            unattributed_requests: report.unattributed_requests,
            sources: json!({"edgeseal": log.path(), "openbao": openbao}),
        };
        serde_json::to_vec(&answer).map_err(std::io::Error::other)
    })
    .await;
    match joined {
        Ok(Ok(answer)) => {
            let mut response = Response::new(Full::new(Bytes::from(answer)));
            response.headers_mut().insert(CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
            response
        }
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, &format!("reading the audit logs: {e}")),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "reading the audit logs failed"),
    }
}

async fn write(
    state: &AdminState,
    admin: Admin,
    service: &str,
    name: &str,
    body: WriteBody,
    source: &str,
) -> Response<Full<Bytes>> {
    if let Some(answer) = unknown(state, service) {
        return answer;
    }
    let Some(data) = body.data else { return error(StatusCode::BAD_REQUEST, "the request has no data") };
    if let Err(message) = check_data(&data) {
        return error(StatusCode::BAD_REQUEST, message);
    }
    let kv_path = path(state, service, name);
    let version = match state.client.kv_write(&state.token, &state.kv_mount, &kv_path, &data, body.cas).await {
        Ok(Written::Version(version)) => version,
        Ok(Written::CasMismatch) => {
            return error(
                StatusCode::CONFLICT,
                "the current version is not the one given with --cas: nothing was written",
            )
        }
        Err(e) => return store_error(&e),
    };
    audit(state, admin, source, service, name, Some(version));
    record_provenance(state, &kv_path, version, &format!("{source} by uid {}", admin.uid)).await;
    json(StatusCode::OK, &json!({"version": version}))
}

/// Keeps "who wrote version N" in the secret's custom metadata (the last
/// [`openbao_client::api::kv::PROVENANCE_KEPT`]).
pub(super) async fn record_provenance(state: &AdminState, kv_path: &str, version: u64, what: &str) {
    if let Err(e) = state.client.kv_record_source(&state.token, &state.kv_mount, kv_path, version, what, &[]).await {
        tracing::warn!(error = %e, "recording who wrote a secret version failed");
    }
}

async fn rotate(state: &AdminState, admin: Admin, service: &str, name: &str, body: WriteBody) -> Response<Full<Bytes>> {
    let generated = state.services.get(service).is_some_and(|s| s.generated.iter().any(|g| g == name));
    match (body.data, generated) {
        (Some(data), _) => {
            write(state, admin, service, name, WriteBody { data: Some(data), cas: body.cas }, "rotate").await
        }
        (None, true) => {
            let mut raw = zeroize::Zeroizing::new([0u8; 32]);
            if getrandom::getrandom(raw.as_mut_slice()).is_err() {
                return error(StatusCode::INTERNAL_SERVER_ERROR, "the random generator failed");
            }
            let value = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw.as_slice());
            let data = Map::from_iter([("value".to_string(), Value::String(value))]);
            write(state, admin, service, name, WriteBody { data: Some(data), cas: body.cas }, "rotate").await
        }
        (None, false) => error(
            StatusCode::BAD_REQUEST,
            "this secret is not one edgeseal generates: give the new value (on stdin) to rotate it",
        ),
    }
}

async fn read(
    state: &AdminState,
    admin: Admin,
    service: &str,
    name: &str,
    version: Option<u64>,
) -> Response<Full<Bytes>> {
    if let Some(answer) = unknown(state, service) {
        return answer;
    }
    match state.client.kv_read_version(&state.token, &state.kv_mount, &path(state, service, name), version).await {
        Ok(Some(secret)) => {
            audit(state, admin, "get", service, name, Some(secret.version));
            json(StatusCode::OK, &json!({"data": secret.data, "version": secret.version}))
        }
        Ok(None) => error(StatusCode::NOT_FOUND, &format!("no secret {service}/{name} (at that version)")),
        Err(e) => store_error(&e),
    }
}

async fn remove(state: &AdminState, admin: Admin, service: &str, name: &str, destroy: bool) -> Response<Full<Bytes>> {
    if let Some(answer) = unknown(state, service) {
        return answer;
    }
    let kv_path = path(state, service, name);
    let done = match destroy {
        true => state.client.kv_destroy_all(&state.token, &state.kv_mount, &kv_path).await,
        false => state.client.kv_delete_latest(&state.token, &state.kv_mount, &kv_path).await,
    };
    match done {
        Ok(()) => {
            audit(state, admin, if destroy { "destroy" } else { "rm" }, service, name, None);
            json(StatusCode::OK, &json!({}))
        }
        Err(e) => store_error(&e),
    }
}

fn source_of(custom: Option<&Map<String, Value>>, version: u64, generated: bool) -> String {
    match custom.and_then(|c| c.get(&openbao_client::api::kv::provenance_key(version))).and_then(Value::as_str) {
        Some(what) => what.to_string(),
        None if generated && version == 1 => "generated by setup".into(),
        None => "unknown".into(),
    }
}

async fn history(state: &AdminState, service: &str, name: &str) -> Response<Full<Bytes>> {
    if let Some(answer) = unknown(state, service) {
        return answer;
    }
    let generated = state.services.get(service).is_some_and(|s| s.generated.iter().any(|g| g == name));
    match state.client.kv_metadata(&state.token, &state.kv_mount, &path(state, service, name)).await {
        Ok(Some(metadata)) => {
            // KV v2 keys the versions by number; the entries do not repeat it.
            let mut versions: Vec<_> = metadata
                .versions
                .iter()
                .filter_map(|(number, v)| {
                    number.parse::<u64>().ok().map(|version| VersionMetadata { version, ..v.clone() })
                })
                .collect();
            versions.sort_by_key(|v| v.version);
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| {
                    json!({
                        "version": v.version,
                        "created_time": v.created_time,
                        "deletion_time": v.deletion_time,
                        "destroyed": v.destroyed,
                        "source": source_of(metadata.custom_metadata.as_ref(), v.version, generated),
                    })
                })
                .collect();
            json(StatusCode::OK, &json!({"versions": versions}))
        }
        Ok(None) => error(StatusCode::NOT_FOUND, &format!("no secret {service}/{name}")),
        Err(e) => store_error(&e),
    }
}

async fn list(state: &AdminState, service: Option<String>) -> Response<Full<Bytes>> {
    let services: Vec<String> = match service {
        Some(service) => match unknown(state, &service) {
            Some(answer) => return answer,
            None => vec![service],
        },
        None => state.services.keys().cloned().collect(),
    };
    let mut secrets = Vec::new();
    for service in services {
        let names =
            match state.client.kv_list(&state.token, &state.kv_mount, &format!("{}/{service}", state.prefix)).await {
                Ok(names) => names,
                Err(e) => return store_error(&e),
            };
        let generated = state.services.get(&service).map(|s| s.generated.clone()).unwrap_or_default();
        for name in names.into_iter().filter(|n| !n.ends_with('/')) {
            let metadata =
                match state.client.kv_metadata(&state.token, &state.kv_mount, &path(state, &service, &name)).await {
                    Ok(metadata) => metadata.unwrap_or_default(),
                    Err(e) => return store_error(&e),
                };
            let source =
                source_of(metadata.custom_metadata.as_ref(), metadata.current_version, generated.contains(&name));
            secrets.push(json!({
                "service": service,
                "name": name,
                "version": metadata.current_version,
                "updated": metadata.updated_time,
                "source": source,
            }));
        }
    }
    json(StatusCode::OK, &json!({"secrets": secrets}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_one_secret_of_one_service_and_nothing_else() {
        let secret = |s: &str, n: &str| Target::Secret { service: s.into(), name: n.into() };
        let cases: &[(&str, Result<Target, ()>)] = &[
            ("/v1/secrets", Ok(Target::All)),
            ("/v1/secrets/", Ok(Target::All)),
            ("/v1/secrets/demo/mqtt-password", Ok(secret("demo", "mqtt-password"))),
            ("/v1/secrets/demo/db.url/history", Ok(Target::History { service: "demo".into(), name: "db.url".into() })),
            ("/v1/secrets/demo/key/rotate", Ok(Target::Rotate { service: "demo".into(), name: "key".into() })),
            ("/v1/secrets/demo/..", Err(())),
            ("/v1/secrets/../x", Err(())),
            ("/v1/secrets/demo/a/b/c", Err(())),
            ("/v1/secrets/demo/", Err(())),
            ("/v1/secrets/demo/na%2Fme", Err(())),
            ("/v1/token", Err(())),
            ("/v1/secretsx/demo/a", Err(())),
        ];
        for (path, want) in cases {
            assert_eq!(parse_path(path).map_err(|_| ()), *want, "{path}");
        }
    }

    #[test]
    fn secret_data_is_a_non_empty_object_of_non_empty_strings_up_to_1_mib() {
        let obj = |v: Value| v.as_object().cloned().unwrap_or_default();
        assert!(check_data(&obj(json!({"value": "x"}))).is_ok());
        assert!(check_data(&obj(json!({"username": "u", "password": "p"}))).is_ok());
        for bad in
            [json!({}), json!({"value": ""}), json!({"value": 1}), json!({"": "x"}), json!({"value": {"a": "b"}})]
        {
            assert!(check_data(&obj(bad.clone())).is_err(), "{bad}");
        }
        let big = "x".repeat(MAX_VALUE + 1);
        assert_eq!(check_data(&obj(json!({"value": big}))), Err("the secret is larger than 1 MiB"));
    }
}
