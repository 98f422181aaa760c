//! Prometheus/OpenMetrics metrics (SPEC §12): one [`Telemetry`] owns the registry and every family.
//!
//! Counted as things happen: tokens issued (by service and how the caller was attested) and denied
//! (by service and a closed set of reasons), token request latency, unseals by the watchdog. Set at
//! scrape time by the admin server (see `admin::observe`): the store's state, certificate expiry times
//! and each secret's current KV version.
//!
//! Labels only ever carry names from `edgeseal.yaml` (services, certificates, secrets) or one of the
//! closed sets below — never a value, a token or an accessor. `metrics:` in `edgeseal.yaml` is
//! [`MetricsConfig`].

use std::fmt::Write as _;
use std::net::SocketAddr;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use serde::{Deserialize, Serialize};

/// The content type of [`Telemetry::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Most `edgeseal_secret_version` series one scrape reports (the rest are left out, and logged).
pub const MAX_SECRET_SERIES: usize = 1000;

/// `metrics:` — an optional loopback HTTP listener for Prometheus (`GET /metrics` is always served on
/// the admin socket too).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `IP:PORT` to serve `GET /metrics` on over plain HTTP; off when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// Allow a `listen` address that is not loopback (anyone who reaches it sees service, secret and
    /// certificate names, and token counts).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub allow_remote: bool,
}

impl MetricsConfig {
    /// A `listen` address that is not loopback needs `allow_remote: true`.
    pub fn validate(&self) -> Result<(), String> {
        match self.listen {
            Some(addr) if !addr.ip().is_loopback() && !self.allow_remote => Err(format!(
                "listen {addr} is not a loopback address: anyone who reaches it reads the device's service and \
                 secret names; use 127.0.0.1:PORT, or set metrics.allow_remote: true"
            )),
            _ => Ok(()),
        }
    }
}

/// How the caller of an issued token was identified.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Attestation {
    /// A host process (kernel facts).
    unix,
    /// A process in a container (kernel and Docker facts).
    docker,
}

/// Why a token request was denied.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum DenyReason {
    /// The caller's peer is over its request rate.
    rate_limited,
    /// The request body was malformed or too large.
    bad_request,
    /// The caller could not be pinned (no credentials, no pidfd).
    no_credentials,
    /// Its facts could not be read (its executable, Docker).
    attestation_failed,
    /// No service's selectors match it (or more than one do).
    no_match,
    /// It asserted another service than the one it is attested as.
    asserted_mismatch,
    /// The store could not issue a token (sealed, down, too slow).
    store_unavailable,
}

impl DenyReason {
    /// Every reason, for reports that list them.
    pub const ALL: [DenyReason; 7] = [
        DenyReason::rate_limited,
        DenyReason::bad_request,
        DenyReason::no_credentials,
        DenyReason::attestation_failed,
        DenyReason::no_match,
        DenyReason::asserted_mismatch,
        DenyReason::store_unavailable,
    ];
}

/// The store's state as `edgeseal_store_state{state}` reports it.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue, Serialize)]
#[allow(non_camel_case_types)]
#[serde(rename_all = "snake_case")]
pub enum StoreState {
    /// Unsealed, and the active node.
    active,
    /// Unsealed standby of a cluster.
    standby,
    /// Sealed.
    sealed,
    /// Not initialized.
    uninitialized,
    /// Not answering.
    unreachable,
}

impl StoreState {
    /// Every state (each gets a series: 1 for the current one, 0 for the others).
    pub const ALL: [StoreState; 5] = [
        StoreState::active,
        StoreState::standby,
        StoreState::sealed,
        StoreState::uninitialized,
        StoreState::unreachable,
    ];
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IssuedLabels {
    service: String,
    attestation: Attestation,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeniedLabels {
    service: String,
    reason: DenyReason,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: StoreState,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    service: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertLabels {
    cert: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SecretLabels {
    service: String,
    name: String,
}

/// The registry and every metric family edgeseal reports.
#[derive(Debug)]
pub struct Telemetry {
    registry: Registry,
    issued: Family<IssuedLabels, Counter>,
    secret_reads: Family<IssuedLabels, Counter>,
    denied: Family<DeniedLabels, Counter>,
    duration: Histogram,
    store_state: Family<StateLabels, Gauge>,
    unseals: Counter,
    openbao_restarts: Counter,
    openbao_crash_loop: Gauge,
    cert_expiry: Family<CertLabels, Gauge>,
    secret_version: Family<SecretLabels, Gauge>,
    batch_expiry: Family<ServiceLabels, Gauge>,
    fleet_syncs: Family<ResultLabels, Counter>,
    fleet_last_success: Gauge,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    /// A registry with every family, all empty.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let issued = Family::<IssuedLabels, Counter>::default();
        registry.register("edgeseal_tokens_issued", "Tokens issued, by service and attestation", issued.clone());
        let secret_reads = Family::<IssuedLabels, Counter>::default();
        registry.register(
            "edgeseal_secret_reads",
            "Secrets read for their own service's callers on the service socket, by service and attestation",
            secret_reads.clone(),
        );
        let denied = Family::<DeniedLabels, Counter>::default();
        registry.register(
            "edgeseal_tokens_denied",
            "Token requests denied, by service (empty when none matched) and reason",
            denied.clone(),
        );
        // 0.5 ms .. ~4 s.
        let duration = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        registry.register_with_unit(
            "edgeseal_token_request_duration",
            "Time to answer a token request",
            Unit::Seconds,
            duration.clone(),
        );
        let store_state = Family::<StateLabels, Gauge>::default();
        registry.register("edgeseal_store_state", "1 for the secret store's current state", store_state.clone());
        let unseals = Counter::default();
        registry.register("edgeseal_watchdog_unseals", "Unseals done by the watchdog", unseals.clone());
        let openbao_restarts = Counter::default();
        registry.register(
            "edgeseal_openbao_restarts",
            "Times the supervised OpenBao was started again after it died",
            openbao_restarts.clone(),
        );
        let openbao_crash_loop = Gauge::default();
        registry.register(
            "edgeseal_openbao_crash_loop",
            "1 while the supervised OpenBao keeps dying before it becomes healthy",
            openbao_crash_loop.clone(),
        );
        let cert_expiry = Family::<CertLabels, Gauge>::default();
        registry.register_with_unit(
            "edgeseal_certificate_expiry_timestamp",
            "End of validity of each certificate of the device PKI (Unix time)",
            Unit::Seconds,
            cert_expiry.clone(),
        );
        let secret_version = Family::<SecretLabels, Gauge>::default();
        registry.register(
            "edgeseal_secret_version",
            "Current KV version of each service secret",
            secret_version.clone(),
        );
        let batch_expiry = Family::<ServiceLabels, Gauge>::default();
        registry.register_with_unit(
            "edgeseal_batch_token_expiry_timestamp",
            "End of the longest-lived batch token issued to each service since boot (Unix time): batch \
             tokens cannot be revoked, so a service's tokens stay valid until then",
            Unit::Seconds,
            batch_expiry.clone(),
        );
        let fleet_syncs = Family::<ResultLabels, Counter>::default();
        registry.register(
            "edgeseal_fleet_syncs",
            "Fleet syncs of this node, by result (ok, refused, offline, failed)",
            fleet_syncs.clone(),
        );
        let fleet_last_success = Gauge::default();
        registry.register_with_unit(
            "edgeseal_fleet_last_success_timestamp",
            "When this node last synced with the central store without a failure (Unix time; 0: never)",
            Unit::Seconds,
            fleet_last_success.clone(),
        );
        Self {
            registry,
            issued,
            secret_reads,
            denied,
            duration,
            store_state,
            unseals,
            openbao_restarts,
            openbao_crash_loop,
            cert_expiry,
            secret_version,
            batch_expiry,
            fleet_syncs,
            fleet_last_success,
        }
    }

    /// One fleet sync ended with `result` at `time` (Unix time); `ok` and `refused` count as
    /// reaching the central store.
    pub fn fleet_synced(&self, result: &'static str, time: i64) {
        self.fleet_syncs.get_or_create(&ResultLabels { result: result.into() }).inc();
        if matches!(result, "ok" | "refused") {
            self.fleet_last_success.set(time);
        }
    }

    /// One token issued to `service`.
    pub fn issued(&self, service: &str, attestation: Attestation) {
        self.issued.get_or_create(&IssuedLabels { service: service.to_string(), attestation }).inc();
    }

    /// One secret read for a caller attested as `service` (the name is not a label: it is the
    /// service's business, and the audit log has it).
    pub fn secret_read(&self, service: &str, attestation: Attestation) {
        self.secret_reads.get_or_create(&IssuedLabels { service: service.to_string(), attestation }).inc();
    }

    /// Secrets read for `service`'s callers since boot.
    pub fn secret_read_count(&self, service: &str) -> u64 {
        [Attestation::unix, Attestation::docker]
            .into_iter()
            .filter_map(|attestation| {
                self.secret_reads.get(&IssuedLabels { service: service.to_string(), attestation }).map(|c| c.get())
            })
            .sum()
    }

    /// One batch token issued to `service`, valid until `expires` (Unix time): kept if it outlives
    /// every earlier one.
    pub fn batch_issued(&self, service: &str, expires: i64) {
        self.batch_expiry
            .get_or_create(&ServiceLabels { service: service.to_string() })
            .inner()
            .fetch_max(expires, std::sync::atomic::Ordering::Relaxed);
    }

    /// When the longest-lived batch token issued to `service` since boot expires (Unix time), if any
    /// was issued.
    pub fn batch_expiry(&self, service: &str) -> Option<i64> {
        self.batch_expiry.get(&ServiceLabels { service: service.to_string() }).map(|g| g.get())
    }

    /// One token request denied; `service` is `None` when no service was matched.
    pub fn denied(&self, service: Option<&str>, reason: DenyReason) {
        self.denied.get_or_create(&DeniedLabels { service: service.unwrap_or_default().to_string(), reason }).inc();
    }

    /// How long one token request took.
    pub fn observe_request(&self, seconds: f64) {
        self.duration.observe(seconds);
    }

    /// One unseal by the watchdog.
    pub fn unsealed(&self) {
        self.unseals.inc();
    }

    /// A handle the watchdog counts its unseals with (no metrics type crosses into its crate).
    pub fn unseal_counter(&self) -> impl Fn() + Send + Sync + 'static {
        let unseals = self.unseals.clone();
        move || {
            unseals.inc();
        }
    }

    /// Tokens issued to `service` since boot (all attestations).
    pub fn issued_count(&self, service: &str) -> u64 {
        [Attestation::unix, Attestation::docker]
            .into_iter()
            .filter_map(|attestation| {
                self.issued.get(&IssuedLabels { service: service.to_string(), attestation }).map(|c| c.get())
            })
            .sum()
    }

    /// Requests denied since boot that were attributed to `service` (`""`: to none).
    pub fn denied_count(&self, service: &str) -> u64 {
        DenyReason::ALL
            .into_iter()
            .filter_map(|reason| {
                self.denied.get(&DeniedLabels { service: service.to_string(), reason }).map(|c| c.get())
            })
            .sum()
    }

    /// Unseals by the watchdog since boot.
    pub fn unseal_count(&self) -> u64 {
        self.unseals.get()
    }

    /// The supervised OpenBao's restarts so far (the counter only ever grows) and whether it is
    /// crash-looping.
    pub fn set_supervision(&self, restarts: u64, crash_loop: bool) {
        let counted = self.openbao_restarts.get();
        self.openbao_restarts.inc_by(restarts.saturating_sub(counted));
        self.openbao_crash_loop.set(i64::from(crash_loop));
    }

    /// The store's state now.
    pub fn set_store_state(&self, now: StoreState) {
        for state in StoreState::ALL {
            self.store_state.get_or_create(&StateLabels { state }).set(i64::from(state == now));
        }
    }

    /// Each certificate's end of validity (replaces what was there).
    pub fn set_certificates(&self, certs: &[(String, i64)]) {
        self.cert_expiry.clear();
        for (cert, not_after) in certs {
            self.cert_expiry.get_or_create(&CertLabels { cert: cert.clone() }).set(*not_after);
        }
    }

    /// Each secret's current version (replaces what was there; at most [`MAX_SECRET_SERIES`]).
    pub fn set_secret_versions(&self, versions: &[(String, String, u64)]) {
        self.secret_version.clear();
        for (service, name, version) in versions.iter().take(MAX_SECRET_SERIES) {
            let labels = SecretLabels { service: service.clone(), name: name.clone() };
            self.secret_version.get_or_create(&labels).set(i64::try_from(*version).unwrap_or(i64::MAX));
        }
    }

    /// The OpenMetrics text of every family (ends with `# EOF`).
    pub fn render(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
            let _ = writeln!(text, "# EOF");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_lines(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    #[test]
    fn the_batch_expiry_is_the_latest_one_issued_whatever_the_order() {
        let t = Telemetry::new();
        assert_eq!(t.batch_expiry("core-data"), None);
        t.batch_issued("core-data", 2_000);
        t.batch_issued("core-data", 1_000);
        assert_eq!(t.batch_expiry("core-data"), Some(2_000));
        t.batch_issued("core-data", 3_000);
        assert_eq!(t.batch_expiry("core-data"), Some(3_000));
        assert_eq!(t.batch_expiry("mqtt"), None);
        let text = t.render();
        let want = r#"edgeseal_batch_token_expiry_timestamp_seconds{service="core-data"} 3000"#;
        assert!(sample_lines(&text).contains(&want), "{text}");
    }

    #[test]
    fn counts_render_as_openmetrics_with_the_names_and_labels_operators_query() {
        let t = Telemetry::new();
        t.issued("core-data", Attestation::docker);
        t.issued("core-data", Attestation::docker);
        t.issued("mqtt", Attestation::unix);
        t.denied(None, DenyReason::no_match);
        t.denied(Some("core-data"), DenyReason::asserted_mismatch);
        t.observe_request(0.002);
        t.set_store_state(StoreState::sealed);
        (t.unseal_counter())();
        t.set_supervision(2, true);
        t.set_supervision(1, true);
        t.set_certificates(&[("openbao".into(), 1_900_000_000)]);
        t.set_secret_versions(&[("core-data".into(), "db".into(), 3)]);
        let text = t.render();
        let lines = sample_lines(&text);
        let cases = [
            r#"edgeseal_tokens_issued_total{service="core-data",attestation="docker"} 2"#,
            r#"edgeseal_tokens_issued_total{service="mqtt",attestation="unix"} 1"#,
            r#"edgeseal_tokens_denied_total{service="",reason="no_match"} 1"#,
            r#"edgeseal_tokens_denied_total{service="core-data",reason="asserted_mismatch"} 1"#,
            "edgeseal_token_request_duration_seconds_count 1",
            r#"edgeseal_store_state{state="sealed"} 1"#,
            r#"edgeseal_store_state{state="active"} 0"#,
            "edgeseal_watchdog_unseals_total 1",
            "edgeseal_openbao_restarts_total 2",
            "edgeseal_openbao_crash_loop 1",
            r#"edgeseal_certificate_expiry_timestamp_seconds{cert="openbao"} 1900000000"#,
            r#"edgeseal_secret_version{service="core-data",name="db"} 3"#,
        ];
        for want in cases {
            assert!(lines.contains(&want), "missing {want:?} in\n{text}");
        }
        assert!(text.contains("# TYPE edgeseal_token_request_duration_seconds histogram"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(t.issued_count("core-data"), 2);
        assert_eq!(t.denied_count(""), 1);
        assert_eq!(t.denied_count("core-data"), 1);
    }

    /// Every label of every series: its key and value.
    fn labels(text: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for line in sample_lines(text) {
            let Some((_, rest)) = line.split_once('{') else { continue };
            let Some((inside, _)) = rest.rsplit_once('}') else { continue };
            for pair in inside.split("\",") {
                if let Some((k, v)) = pair.split_once("=\"") {
                    out.push((k.to_string(), v.trim_end_matches('"').to_string()));
                }
            }
        }
        out
    }

    #[test]
    fn labels_carry_names_and_closed_sets_never_a_value_token_or_accessor() {
        // The API takes names and closed sets only (no token, accessor or value can be handed to it);
        // what it renders is checked against those sets.
        let t = Telemetry::new();
        t.issued("demo", Attestation::unix);
        t.denied(None, DenyReason::rate_limited);
        t.denied(Some("demo"), DenyReason::store_unavailable);
        t.set_store_state(StoreState::active);
        t.set_certificates(&[("root CA".into(), 1), ("openbao".into(), 2)]);
        t.set_secret_versions(&[("demo".into(), "greeting".into(), 1)]);
        let text = t.render();
        let allowed_keys = ["service", "attestation", "reason", "state", "cert", "name", "le"];
        let reasons = DenyReason::ALL.map(|r| format!("{r:?}"));
        let states = StoreState::ALL.map(|s| format!("{s:?}"));
        let found = labels(&text);
        assert!(found.len() >= 10, "{found:?}");
        for (key, v) in found {
            assert!(allowed_keys.contains(&key.as_str()), "unexpected label {key}");
            let ok = match key.as_str() {
                "attestation" => v == "unix" || v == "docker",
                "reason" => reasons.contains(&v),
                "state" => states.contains(&v),
                "le" => v == "+Inf" || v.parse::<f64>().is_ok(),
                "service" => v.is_empty() || v == "demo",
                "cert" => v == "root CA" || v == "openbao",
                "name" => v == "greeting",
                _ => false,
            };
            assert!(ok, "label {key}={v:?} is not a configured name or one of its closed set");
        }
    }

    #[test]
    fn secret_series_are_bounded() {
        let t = Telemetry::new();
        let many: Vec<_> = (0..MAX_SECRET_SERIES + 5).map(|i| ("s".to_string(), format!("n{i}"), 1)).collect();
        t.set_secret_versions(&many);
        let series = t.render().lines().filter(|l| l.starts_with("edgeseal_secret_version{")).count();
        assert_eq!(series, MAX_SECRET_SERIES);
    }

    #[test]
    fn a_remote_listen_address_needs_to_be_allowed() {
        let config = |listen: &str, allow_remote| MetricsConfig { listen: Some(listen.parse().unwrap()), allow_remote };
        assert!(MetricsConfig::default().validate().is_ok());
        assert!(config("127.0.0.1:9464", false).validate().is_ok());
        assert!(config("[::1]:9464", false).validate().is_ok());
        assert!(config("0.0.0.0:9464", false).validate().unwrap_err().contains("allow_remote"));
        assert!(config("10.0.0.5:9464", true).validate().is_ok());
    }
}
