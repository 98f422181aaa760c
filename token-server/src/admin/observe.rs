//! What an operator can see of a running device (SPEC §12): `GET /metrics` (OpenMetrics text) and
//! `GET /v1/status` (JSON) on the admin socket, and the same `/metrics` on `metrics.listen`.
//!
//! Both read the token server's counters ([`Telemetry`]) and, at request time, the store's health,
//! the device certificates' expiry and each service secret's current version (with the admin
//! credential). Neither ever carries a value, a token or an accessor.
//!
//! | request | answer |
//! |---|---|
//! | `GET /metrics` | OpenMetrics text |
//! | `GET /v1/status` | `{store, cluster, fleet, certificates, services, watchdog_unseals}` |

use std::fmt;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use super::AdminState;
use crate::config::Selectors;
use crate::metrics::{StoreState, Telemetry, CONTENT_TYPE as OPENMETRICS, MAX_SECRET_SERIES};

/// One certificate of the device PKI and when it stops being valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertExpiry {
    /// `root CA`, `intermediate CA`, or the leaf's name under `pki.certs`.
    pub name: String,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// End of validity, RFC 3339.
    pub not_after_text: String,
}

/// Reads the device certificates' expiry (the binary composes it from pki-init).
pub type CertProbe = Arc<dyn Fn() -> Vec<CertExpiry> + Send + Sync>;

/// What the admin server observes besides the store: the token server's counters, the services'
/// selectors, the certificates.
#[derive(Clone)]
pub struct Observed {
    /// The token server's registry.
    pub telemetry: Arc<Telemetry>,
    /// Each configured service's selectors.
    pub selectors: Vec<(String, Selectors)>,
    /// The device certificates.
    pub certificates: CertProbe,
    /// How the store is sealed, as configured (`static`, `shamir`, `external`).
    pub seal: String,
    /// When the store, the certificates and the secret versions were last sampled; held while a
    /// scrape samples them.
    pub scraping: Arc<tokio::sync::Mutex<Option<Instant>>>,
}

impl fmt::Debug for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observed").field("selectors", &self.selectors).field("seal", &self.seal).finish_non_exhaustive()
    }
}

impl Default for Observed {
    fn default() -> Self {
        Self {
            telemetry: Arc::default(),
            selectors: Vec::new(),
            certificates: Arc::new(Vec::new),
            seal: "unknown".into(),
            scraping: Arc::default(),
        }
    }
}

/// Longest a store query of one scrape may take.
const STORE_TIMEOUT: Duration = Duration::from_secs(5);

/// The store as seen now.
#[derive(Debug, Clone, Serialize)]
pub struct StoreStatus {
    /// The store's address.
    pub address: String,
    /// `active`, `standby`, `sealed`, `uninitialized` or `unreachable`.
    pub state: StoreState,
    /// The barrier is sealed (`None`: not answering).
    pub sealed: Option<bool>,
    /// OpenBao's version.
    pub version: Option<String>,
    /// The seal: OpenBao's own word for it (`shamir`, `static`, …) when it answers, else the configured one.
    pub seal_type: String,
    /// Why it is unreachable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Asks the store for its health and seal type.
pub async fn store_status(state: &AdminState) -> StoreStatus {
    let client = &state.client;
    let health = tokio::time::timeout(STORE_TIMEOUT, client.health()).await;
    let seal_type = match tokio::time::timeout(STORE_TIMEOUT, client.seal_status()).await {
        Ok(Ok(status)) if !status.seal_type.is_empty() => status.seal_type,
        _ => state.observed.seal.clone(),
    };
    let address = client.address().to_string();
    match health {
        Ok(Ok(h)) => {
            let now = match (h.initialized, h.sealed, h.standby) {
                (false, _, _) => StoreState::uninitialized,
                (_, true, _) => StoreState::sealed,
                (_, false, true) => StoreState::standby,
                (_, false, false) => StoreState::active,
            };
            StoreStatus {
                address,
                state: now,
                sealed: Some(h.sealed),
                version: Some(h.version),
                seal_type,
                error: None,
            }
        }
        Ok(Err(e)) => StoreStatus {
            address,
            state: StoreState::unreachable,
            sealed: None,
            version: None,
            seal_type,
            error: Some(e.to_string()),
        },
        Err(_) => StoreStatus {
            address,
            state: StoreState::unreachable,
            sealed: None,
            version: None,
            seal_type,
            error: Some("OpenBao did not answer in time".into()),
        },
    }
}

/// Each service's secrets and their current versions, at most [`MAX_SECRET_SERIES`] in all; a
/// service whose list fails is left out (and logged).
pub async fn secret_versions(state: &AdminState) -> Vec<(String, String, u64)> {
    let mut out = Vec::new();
    for service in state.services.keys() {
        let listed = tokio::time::timeout(
            STORE_TIMEOUT,
            state.client.kv_list(&state.token, &state.kv_mount, &format!("{}/{service}", state.prefix)),
        )
        .await;
        let names = match listed {
            Ok(Ok(names)) => names,
            Ok(Err(e)) => {
                tracing::debug!(service, error = %e, "listing a service's secrets for metrics failed");
                continue;
            }
            Err(_) => continue,
        };
        for name in names.into_iter().filter(|n| !n.ends_with('/')) {
            if out.len() >= MAX_SECRET_SERIES {
                tracing::warn!(max = MAX_SECRET_SERIES, "more secrets than metrics report; the rest are left out");
                return out;
            }
            let path = format!("{}/{service}/{name}", state.prefix);
            let version = match tokio::time::timeout(
                STORE_TIMEOUT,
                state.client.kv_metadata(&state.token, &state.kv_mount, &path),
            )
            .await
            {
                Ok(Ok(Some(metadata))) => metadata.current_version,
                _ => continue,
            };
            out.push((service.clone(), name, version));
        }
    }
    out
}

async fn certificates(state: &AdminState) -> Vec<CertExpiry> {
    let probe = state.observed.certificates.clone();
    tokio::task::spawn_blocking(move || probe()).await.unwrap_or_default()
}

/// Least time between two samples of the store, the certificates and the secret versions: scrapes
/// in between render the registry as it is (its counters are always current). A scraper polling
/// `metrics.listen` in a loop thus costs OpenBao one sample (a list per service, a metadata read
/// per secret) per interval, not one per request.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// Samples the store, the certificates and the secret versions into the registry (at most once per
/// [`SAMPLE_EVERY`]), and renders it.
pub async fn scrape(state: &AdminState) -> String {
    let telemetry = &state.observed.telemetry;
    // One scrape at a time: each replaces the scrape-time families whole.
    let mut sampled = state.observed.scraping.lock().await;
    if sampled.is_some_and(|at| at.elapsed() < SAMPLE_EVERY) {
        return telemetry.render();
    }
    *sampled = Some(Instant::now());
    let store = store_status(state).await;
    telemetry.set_store_state(store.state);
    let certs: Vec<(String, i64)> = certificates(state).await.into_iter().map(|c| (c.name, c.not_after)).collect();
    telemetry.set_certificates(&certs);
    let versions = if matches!(store.state, StoreState::active | StoreState::standby) {
        secret_versions(state).await
    } else {
        Vec::new()
    };
    telemetry.set_secret_versions(&versions);
    telemetry.render()
}

/// `GET /metrics`.
pub async fn metrics(state: &AdminState) -> Response<Full<Bytes>> {
    let text = scrape(state).await;
    let mut response = Response::new(Full::new(Bytes::from(text)));
    response.headers_mut().insert(CONTENT_TYPE, hyper::header::HeaderValue::from_static(OPENMETRICS));
    response
}

/// A selector in words, keys in alphabetical order: `unix path=/usr/bin/x uid=0; docker image=…`.
pub fn describe_selectors(selectors: &Selectors) -> String {
    let mut parts = Vec::new();
    for (kind, value) in [
        ("unix", selectors.unix.as_ref().and_then(|s| serde_json::to_value(s).ok())),
        ("docker", selectors.docker.as_ref().and_then(|s| serde_json::to_value(s).ok())),
    ] {
        let Some(Value::Object(fields)) = value else { continue };
        let words: Vec<String> = fields
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect();
        parts.push(if words.is_empty() { kind.to_string() } else { format!("{kind} {}", words.join(" ")) });
    }
    if parts.is_empty() {
        "none (file token only)".into()
    } else {
        parts.join("; ")
    }
}

/// `GET /v1/status`.
pub async fn status(state: &AdminState) -> Value {
    let store = store_status(state).await;
    let telemetry = &state.observed.telemetry;
    let certificates = certificates(state).await;
    let answering = matches!(store.state, StoreState::active | StoreState::standby);
    let mut services = Vec::new();
    for service in state.services.keys() {
        let names: Option<Vec<String>> = if answering {
            let listed = tokio::time::timeout(
                STORE_TIMEOUT,
                state.client.kv_list(&state.token, &state.kv_mount, &format!("{}/{service}", state.prefix)),
            )
            .await;
            match listed {
                Ok(Ok(names)) => Some(names.into_iter().filter(|n| !n.ends_with('/')).collect()),
                _ => None,
            }
        } else {
            None
        };
        let selectors = state
            .observed
            .selectors
            .iter()
            .find(|(name, _)| name == service)
            .map(|(_, s)| describe_selectors(s))
            .unwrap_or_else(|| "none (file token only)".into());
        // Batch tokens cannot be revoked: the longest-lived one still valid says until when removing
        // the service or rotating its policy leaves tokens behind.
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let batch_until =
            telemetry.batch_expiry(service).and_then(|at| u64::try_from(at).ok()).filter(|&at| at > now.as_secs()).map(
                |at| {
                    let at = std::time::UNIX_EPOCH + Duration::from_secs(at);
                    humantime::format_rfc3339_seconds(at).to_string()
                },
            );
        services.push(json!({
            "name": service,
            "batch_tokens_valid_until": batch_until,
            "selectors": selectors,
            "secrets": names,
            "tokens_issued": telemetry.issued_count(service),
            "tokens_denied": telemetry.denied_count(service),
        }));
    }
    let cluster = cluster_summary(state).await;
    json!({
        "store": store,
        "cluster": cluster,
        "fleet": super::fleet::status(state),
        "certificates": certificates,
        "services": services,
        "tokens_denied_unmatched": telemetry.denied_count(""),
        "watchdog_unseals": telemetry.unseal_count(),
    })
}

/// The raft cluster in a few words: `"not configured"` for a single node (one raft server), else the
/// members, the voters and the leader (`cluster status` has the details).
async fn cluster_summary(state: &AdminState) -> Value {
    match tokio::time::timeout(STORE_TIMEOUT, state.client.raft_configuration(&state.token)).await {
        Ok(Ok(servers)) if servers.len() > 1 => json!({
            "members": servers.len(),
            "voters": servers.iter().filter(|s| s.voter).count(),
            "leader": servers.iter().find(|s| s.leader).map(|s| s.node_id.clone()),
        }),
        Ok(Ok(_)) => json!("not configured"),
        Ok(Err(e)) => json!({"error": e.to_string()}),
        Err(_) => json!({"error": "the store did not answer in time"}),
    }
}

/// Serves `GET /metrics` (nothing else) over plain HTTP on `listener` (`metrics.listen`) until
/// `shutdown`.
pub async fn serve_metrics(
    listener: TcpListener,
    state: Arc<AdminState>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    tokio::pin!(shutdown);
    let slots = Arc::new(tokio::sync::Semaphore::new(16));
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a metrics connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // A few scrapers at a time; others are closed at once.
        let Ok(slot) = slots.clone().try_acquire_owned() else { continue };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let state = state.clone();
                async move {
                    let answer = match (request.method(), request.uri().path()) {
                        (&Method::GET, "/metrics") => metrics(&state).await,
                        (_, "/metrics") => plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
                        _ => plain(StatusCode::NOT_FOUND, "only GET /metrics is served here\n"),
                    };
                    Ok::<_, std::convert::Infallible>(answer)
                }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(Duration::from_secs(30), connection).await;
            drop(slot);
        });
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DockerSelector, UnixSelector};

    #[test]
    fn selectors_are_described_in_words() {
        let unix = Selectors {
            unix: Some(UnixSelector { uid: Some(0), path: Some("/usr/bin/demo".into()), ..Default::default() }),
            docker: None,
        };
        // Keys in alphabetical order.
        assert_eq!(describe_selectors(&unix), "unix path=/usr/bin/demo uid=0");
        assert_eq!(describe_selectors(&Selectors::default()), "none (file token only)");
        let docker = Selectors { unix: None, docker: Some(DockerSelector::default()) };
        assert!(describe_selectors(&docker).starts_with("docker"), "{}", describe_selectors(&docker));
    }
}
