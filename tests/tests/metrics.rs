//! Metrics and `status` (SPEC §12), against the real `security-bootstrap run` and a real OpenBao: the
//! service fetches tokens and is denied once, then `/metrics` is scraped through the admin socket and
//! through `metrics.listen`, and read with the reference OpenMetrics parser (Python's
//! `prometheus_client`): the counts are the requests made, and no token, accessor or secret value
//! appears. `status --json` reports the store active, the service, its secrets and its counts; a
//! non-admin uid is refused (77).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use edgeseal_tests::boot::Boot;
use edgeseal_tests::ports::free_port;
use serde_json::Value;

const INSTALL_HINT: &str = "run `make test`, or `scripts/ensure-deps.sh python` (installs prometheus_client \
     from PyPI into .state/venv), or set EDGESEAL_PYTHON to a python that has prometheus_client";

/// A python with `prometheus_client`: `$EDGESEAL_PYTHON`, else the venv `make test` makes under `.state/`.
fn python() -> PathBuf {
    let python = std::env::var("EDGESEAL_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.state/venv/bin/python"));
    let probe = Command::new(&python).args(["-c", "import prometheus_client.openmetrics.parser"]).output();
    match probe {
        Ok(out) if out.status.success() => python,
        Ok(out) => panic!(
            "{} has no prometheus_client ({}): {INSTALL_HINT}",
            python.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!("cannot run {}: {e}: {INSTALL_HINT}", python.display()),
    }
}

/// Parses OpenMetrics text with the reference parser; every sample as `(name, labels, value)`.
/// The parser refuses anything that is not valid OpenMetrics (the test fails then).
fn parse(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    const SCRIPT: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append([s.name, s.labels, s.value])
print(json.dumps(out))
"#;
    let out = edgeseal_tests::output_with_stdin(Command::new(python()).args(["-c", SCRIPT]), text.as_bytes());
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused the text:\n{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<(String, BTreeMap<String, String>, f64)>>(&out.stdout).unwrap()
}

/// The value of the sample `name` whose labels include `labels` (0 when there is none).
fn value(samples: &[(String, BTreeMap<String, String>, f64)], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
        .map(|(_, _, v)| *v)
        .sum()
}

/// `curl` with `args`; its body, asserting HTTP 200 and the OpenMetrics content type.
fn scrape(args: &[&str]) -> String {
    let out = Command::new("curl").args(["-sS", "--fail", "-D", "/dev/stderr"]).args(args).output().unwrap();
    let headers = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(out.status.success(), "{headers}");
    assert!(headers.contains("content-type: application/openmetrics-text"), "{headers}");
    String::from_utf8(out.stdout).unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "{:?}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Fetches one `demo` token; its client token and accessor.
fn fetch(boot: &Boot) -> (String, String) {
    let json: Value = serde_json::from_str(&stdout(&boot.fetch())).unwrap();
    (json["auth"]["client_token"].as_str().unwrap().into(), json["auth"]["accessor"].as_str().unwrap().into())
}

#[test]
fn metrics_count_the_tokens_issued_and_denied_and_carry_no_token_accessor_or_value() {
    let mut boot = Boot::new();
    let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    boot.set_metrics_listen(Some(listen));
    let _run = boot.start();
    boot.token_until_ok(Duration::from_secs(10));
    let value_text = "operator-VALUE-3f9a1c";
    stdout(&boot.secrets(&["set", "demo/api-key"], value_text.as_bytes()));
    stdout(&boot.secrets(&["set", "demo/api-key"], b"operator-VALUE-second"));

    let admin = boot.admin_socket();
    let admin = admin.to_str().unwrap();
    let before = parse(&scrape(&["--unix-socket", admin, "http://admin/metrics"]));
    let issued_before = value(&before, "edgeseal_tokens_issued_total", &[("service", "demo"), ("attestation", "unix")]);
    // Whatever token_until_ok met before the first token (a 503 while the store settled) stays counted.
    let denied_before = value(&before, "edgeseal_tokens_denied_total", &[]);

    const N: usize = 4;
    let mut credentials = Vec::new();
    for _ in 0..N {
        credentials.push(fetch(&boot));
    }
    // Denied: the service asserts another name; another uid matches no service.
    let mismatch = Command::new(boot.client())
        .args(["token", "--service", "other", "--socket"])
        .arg(boot.socket())
        .output()
        .unwrap();
    assert_eq!(mismatch.status.code(), Some(77), "{}", String::from_utf8_lossy(&mismatch.stderr));
    let stranger = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(boot.client())
        .args(["token", "--socket"])
        .arg(boot.socket())
        .output()
        .unwrap();
    assert_eq!(stranger.status.code(), Some(77), "{}", String::from_utf8_lossy(&stranger.stderr));

    let via_socket = scrape(&["--unix-socket", admin, "http://admin/metrics"]);
    let via_tcp = scrape(&[&format!("http://{listen}/metrics")]);
    for text in [&via_socket, &via_tcp] {
        let samples = parse(text);
        let issued = value(&samples, "edgeseal_tokens_issued_total", &[("service", "demo"), ("attestation", "unix")]);
        assert_eq!(issued, issued_before + N as f64, "{text}");
        assert_eq!(value(&samples, "edgeseal_tokens_issued_total", &[]), issued, "only demo was issued tokens");
        assert_eq!(
            value(&samples, "edgeseal_tokens_denied_total", &[("service", "demo"), ("reason", "asserted_mismatch")]),
            1.0
        );
        assert_eq!(value(&samples, "edgeseal_tokens_denied_total", &[("service", ""), ("reason", "no_match")]), 1.0);
        let denied = value(&samples, "edgeseal_tokens_denied_total", &[]);
        assert_eq!(denied, denied_before + 2.0, "{text}");
        // Every token request is timed once, whatever its answer.
        assert_eq!(value(&samples, "edgeseal_token_request_duration_seconds_count", &[]), issued + denied);
        assert_eq!(value(&samples, "edgeseal_store_state", &[("state", "active")]), 1.0);
        assert_eq!(value(&samples, "edgeseal_store_state", &[("state", "sealed")]), 0.0);
        assert_eq!(value(&samples, "edgeseal_secret_version", &[("service", "demo"), ("name", "greeting")]), 1.0);
        assert_eq!(value(&samples, "edgeseal_secret_version", &[("service", "demo"), ("name", "api-key")]), 2.0);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        for cert in ["root CA", "intermediate CA", "openbao"] {
            let expiry = value(&samples, "edgeseal_certificate_expiry_timestamp_seconds", &[("cert", cert)]);
            assert!(expiry > now, "{cert} expires at {expiry}:\n{text}");
        }
        assert!(text.contains("edgeseal_watchdog_unseals_total 0"), "{text}");
        // Never a value, a token or an accessor.
        assert!(!text.contains(value_text) && !text.contains("operator-VALUE-second"), "{text}");
        for (token, accessor) in &credentials {
            assert!(!text.contains(token.as_str()) && !text.contains(accessor.as_str()), "{text}");
        }
        let greeting = boot.secret(&credentials[0].0);
        assert!(!text.contains(&greeting), "the generated secret's value is in the metrics");
    }

    // metrics.listen serves nothing else: no status, no audit, no secret.
    for path in ["/v1/status", "/v1/audit", "/v1/secrets/demo/greeting", "/v1/secrets"] {
        let other = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &format!("http://{listen}{path}")])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&other.stdout), "404", "{path}");
    }
}

#[test]
fn status_reports_the_store_the_services_and_their_counts_to_admins_only() {
    let mut boot = Boot::new();
    boot.set_admin_group(Some(65534));
    let _run = boot.start();
    boot.token_until_ok(Duration::from_secs(10));
    fetch(&boot);
    fetch(&boot);
    let denied = Command::new(boot.client())
        .args(["token", "--service", "other", "--socket"])
        .arg(boot.socket())
        .output()
        .unwrap();
    assert_eq!(denied.status.code(), Some(77));

    let status: Value =
        serde_json::from_str(&stdout(&boot.admin_command_as(None, "status", &["--json"], b""))).unwrap();
    assert_eq!(status["store"]["state"], "active", "{status}");
    assert_eq!(status["store"]["sealed"], false, "{status}");
    assert_eq!(status["store"]["seal_type"], "static", "{status}");
    assert_eq!(status["cluster"], "not configured");
    let services = status["services"].as_array().unwrap();
    assert_eq!(services.len(), 1, "{status}");
    let demo = &services[0];
    assert_eq!(demo["name"], "demo");
    assert_eq!(demo["secrets"], serde_json::json!(["greeting"]), "{status}");
    assert!(demo["selectors"].as_str().unwrap().contains("uid=0"), "{status}");
    // The counts are the ones /metrics reports (token_until_ok may have needed more than one try).
    let admin = boot.admin_socket();
    let samples = parse(&scrape(&["--unix-socket", admin.to_str().unwrap(), "http://admin/metrics"]));
    let issued = value(&samples, "edgeseal_tokens_issued_total", &[("service", "demo")]);
    assert!(issued >= 3.0);
    assert_eq!(demo["tokens_issued"].as_f64().unwrap(), issued, "{status}");
    let mismatch =
        value(&samples, "edgeseal_tokens_denied_total", &[("service", "demo"), ("reason", "asserted_mismatch")]);
    assert_eq!(mismatch, 1.0);
    let denied = value(&samples, "edgeseal_tokens_denied_total", &[("service", "demo")]);
    assert_eq!(demo["tokens_denied"].as_f64().unwrap(), denied, "{status}");
    let certs: Vec<&str> =
        status["certificates"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert!(certs.contains(&"openbao") && certs.contains(&"root CA"), "{status}");

    let table = stdout(&boot.admin_command_as(None, "status", &[], b""));
    assert!(table.contains("store      active") && table.lines().any(|l| l.starts_with("demo")), "{table}");

    let refused = boot.admin_command_as(Some((65534, 65534)), "status", &[], b"");
    assert_eq!(refused.status.code(), Some(77), "{}", String::from_utf8_lossy(&refused.stderr));
    // /metrics on the admin socket is for admins too.
    let scraped = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .args(["--unix-socket", admin.to_str().unwrap(), "http://admin/metrics"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&scraped.stdout), "403");
}

#[test]
fn the_watchdogs_unseal_of_a_restarted_shamir_sealed_openbao_is_counted() {
    let mut boot = Boot::shamir();
    let _run = boot.start();
    boot.token_until_ok(Duration::from_secs(10));
    let admin = boot.admin_socket();
    let admin = admin.to_str().unwrap();
    let before = parse(&scrape(&["--unix-socket", admin, "http://admin/metrics"]));
    assert_eq!(value(&before, "edgeseal_watchdog_unseals_total", &[]), 0.0);

    // OpenBao dies; the supervisor starts it again, sealed; the watchdog unseals it from the keystore.
    let killed = boot.openbao_pid().expect("a supervised OpenBao");
    boot.kill_openbao();
    edgeseal_tests::poll_until(Duration::from_secs(60), || boot.openbao_pid().filter(|&p| p != killed))
        .unwrap_or_else(|| panic!("no new OpenBao child:\n{}", boot.log()));
    boot.token_until_ok(Duration::from_secs(60));

    // The watchdog counts its unseal once `unseal_from_keystore` returns, which may be a moment after
    // OpenBao already serves the token that proved it open.
    let after = edgeseal_tests::poll_until(Duration::from_secs(30), || {
        let after = parse(&scrape(&["--unix-socket", admin, "http://admin/metrics"]));
        (value(&after, "edgeseal_watchdog_unseals_total", &[]) >= 1.0).then_some(after)
    })
    .unwrap_or_else(|| panic!("the watchdog's unseal was never counted:\n{}", boot.log()));
    assert_eq!(value(&after, "edgeseal_watchdog_unseals_total", &[]), 1.0, "{}", boot.log());
    assert_eq!(value(&after, "edgeseal_store_state", &[("state", "active")]), 1.0);
    let status: Value =
        serde_json::from_str(&stdout(&boot.admin_command_as(None, "status", &["--json"], b""))).unwrap();
    assert_eq!(status["watchdog_unseals"], 1, "{status}");
    assert_eq!(status["store"]["seal_type"], "shamir", "{status}");
}
