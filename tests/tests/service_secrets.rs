//! `GET /v1/secrets…` on the service socket (SPEC §7, issue 19), against the real `security-bootstrap
//! run` and a real OpenBao, with two host services told apart by uid and executable:
//! - `demo` (uid 0, the client binary) reads its own secrets with `security-bootstrap token --secret`:
//!   exactly the value an operator set with `secrets set` (single and multi-key, current and by
//!   version) and lists its own names; `svc-b` (uid 4242, curl) reads its own the same way over HTTP;
//! - neither reads the other's: a name of the other service is 404 in the caller's own folder, and
//!   naming the other service is a 403 of the token denials' shape; a caller that is no service is 403;
//! - bad names, versions and query keys are 400, other methods 405;
//! - each read is one audit line (name and version, never the value), its token is revoked after the
//!   read, and no value reaches edgeseal's log, its audit log, OpenBao's audit log (HMACed) or any
//!   other file outside OpenBao's encrypted storage;
//! - OpenBao not answering (stopped with SIGSTOP) is a 503 (exit 69), and reads work again after;
//! - a `reuse` service reads with its shared token (nothing created, nothing revoked);
//! - a labelled container (Docker attestation) reads its own secret and is refused the host service's.
//!
//! Runs as root (another uid through `setpriv`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::process::{Command, Output};
use std::time::Duration;

use edgeseal_tests::boot::Boot;
use edgeseal_tests::docker::RunSpec;
use edgeseal_tests::{poll_until, regular_files_below};
use security_bootstrap::config::ServiceEntry;
use serde_json::{json, Value};
use token_server::config::{DockerSelector, Selectors, UnixSelector};

const B_UID: u32 = 4242;
const CURL: &str = "/usr/bin/curl";

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "{:?}: {}", out.status, text(out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `security-bootstrap token --socket S <args>`, as root (the `demo` service).
fn demo(boot: &Boot, args: &[&str]) -> Output {
    Command::new(boot.client()).arg("token").arg("--socket").arg(boot.socket()).args(args).output().unwrap()
}

/// `curl` on the token socket as `uid` (or root): `(status, body)`.
fn curl(boot: &Boot, uid: Option<u32>, method: &str, path: &str) -> (u16, Value) {
    curl_with(boot, uid, method, path, &[])
}

/// The same with more curl arguments.
fn curl_with(boot: &Boot, uid: Option<u32>, method: &str, path: &str, extra: &[&str]) -> (u16, Value) {
    let mut command = match uid {
        Some(uid) => {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={uid}")).arg(format!("--regid={uid}")).arg("--clear-groups").arg(CURL);
            c
        }
        None => Command::new(CURL),
    };
    let out = command
        .args(["-sS", "--path-as-is", "-w", "\n%{http_code}", "-X", method])
        .args(extra)
        .arg("--unix-socket")
        .arg(boot.socket())
        .arg(format!("http://localhost{path}"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) =
        text.rsplit_once('\n').unwrap_or_else(|| panic!("curl: {}", String::from_utf8_lossy(&out.stderr)));
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}"));
    (code.trim().parse().unwrap(), body)
}

fn svc_b(boot: &Boot, path: &str) -> (u16, Value) {
    curl(boot, Some(B_UID), "GET", path)
}

fn names(list: &Value) -> Vec<(String, u64)> {
    let mut names: Vec<(String, u64)> = list["secrets"]
        .as_array()
        .unwrap_or_else(|| panic!("{list}"))
        .iter()
        .map(|s| (s["name"].as_str().unwrap().to_string(), s["version"].as_u64().unwrap()))
        .collect();
    names.sort();
    names
}

#[test]
fn each_service_reads_exactly_its_own_secrets_and_never_the_others() {
    let mut boot = Boot::new();
    let b_selector = UnixSelector { uid: Some(B_UID), path: Some(CURL.into()), ..Default::default() };
    boot.add_service(
        "svc-b",
        ServiceEntry {
            selectors: Selectors { unix: Some(b_selector), docker: None },
            secrets: vec!["b-generated".into()],
            ..Default::default()
        },
    );
    let _run = boot.start();
    let revocations = |boot: &Boot| boot.audited_paths().iter().filter(|p| *p == "auth/token/revoke-accessor").count();
    let revoked_at_boot = revocations(&boot);
    let (a1, a2, a_user, a_pass, b1) = (
        "mqtt-pass-ONE-5e8a1c",
        "mqtt-pass-TWO-93bd07",
        "edgex-user-c4f1",
        "db-pass-MULTI-2a77e0",
        "b-pass-ONLY-d1f9c3",
    );
    stdout(&boot.secrets(&["set", "demo/mqtt-password"], a1.as_bytes()));
    assert!(stdout(&boot.secrets(&["set", "demo/mqtt-password"], a2.as_bytes())).contains("version 2"));
    let multi = json!({"username": a_user, "password": a_pass});
    stdout(&boot.secrets(&["set", "demo/db", "--json"], multi.to_string().as_bytes()));
    stdout(&boot.secrets(&["set", "svc-b/b-pass"], b1.as_bytes()));

    // demo: exactly what was set, current and by version; multi-key as the object.
    assert_eq!(stdout(&demo(&boot, &["--secret", "mqtt-password"])), a2);
    assert_eq!(stdout(&demo(&boot, &["--secret", "mqtt-password", "--version", "1"])), a1);
    let db: Value = serde_json::from_str(&stdout(&demo(&boot, &["--secret", "db"]))).unwrap();
    assert_eq!(db, multi);
    let greeting = stdout(&demo(&boot, &["--secret", "greeting"]));
    assert!(!greeting.is_empty());
    assert_eq!(greeting, stdout(&boot.secrets(&["get", "demo/greeting"], b"")), "the generated secret");
    let single = stdout(&demo(&boot, &["--secret", "mqtt-password", "--json"]));
    assert_eq!(serde_json::from_str::<Value>(&single).unwrap(), json!({"value": a2}));

    // svc-b: its own, over plain HTTP.
    let (status, list) = svc_b(&boot, "/v1/secrets");
    assert_eq!(status, 200, "{list}");
    assert_eq!(names(&list), vec![("b-generated".to_string(), 1), ("b-pass".to_string(), 1)]);
    let (status, secret) = svc_b(&boot, "/v1/secrets/b-pass");
    assert_eq!((status, &secret), (200, &json!({"name": "b-pass", "version": 1, "data": {"value": b1}})));
    let (status, secret) = svc_b(&boot, "/v1/secrets/b-pass?version=1");
    assert_eq!((status, secret["data"]["value"].as_str()), (200, Some(b1)));

    // Never the other's. By name: there is no such secret in the caller's own folder.
    let (status, answer) = svc_b(&boot, "/v1/secrets/mqtt-password");
    assert_eq!(status, 404, "{answer}");
    let message = answer["error"].as_str().unwrap();
    assert!(message.contains("\"mqtt-password\"") && message.contains("\"svc-b\""), "{message}");
    let out = demo(&boot, &["--secret", "b-pass"]);
    assert_eq!(out.status.code(), Some(76), "{}", text(&out));
    assert!(text(&out).contains("b-pass") && !text(&out).contains(b1), "{}", text(&out));
    // By naming the other service: a denial of the token denials' shape.
    let (status, answer) = svc_b(&boot, "/v1/secrets/mqtt-password?service=demo");
    assert_eq!(status, 403, "{answer}");
    let message = answer["error"].as_str().unwrap();
    assert!(message.starts_with("denied: saw ") && message.contains(&format!("uid={B_UID}")), "{message}");
    assert!(message.contains("asserts service \"demo\"") && message.contains("attested as \"svc-b\""), "{message}");
    let out = demo(&boot, &["--secret", "b-pass", "--service", "svc-b"]);
    assert_eq!(out.status.code(), Some(77), "{}", text(&out));
    assert!(text(&out).contains("denied: saw ") && !text(&out).contains(b1), "{}", text(&out));
    // The token denial, for comparison: the same words.
    let out = demo(&boot, &["--service", "svc-b"]);
    assert_eq!(out.status.code(), Some(77), "{}", text(&out));
    // A caller that is no service (root's curl: uid 0 is demo's, the executable is not).
    let (status, answer) = curl(&boot, None, "GET", "/v1/secrets/mqtt-password");
    assert_eq!(status, 403, "{answer}");
    let message = answer["error"].as_str().unwrap();
    assert!(message.starts_with("denied: saw ") && message.contains("uid=0"), "{message}");
    assert!(!answer.to_string().contains(a2));

    // Bad input: 400 (nothing read), unknown 404 naming it, other methods 405.
    let long = format!("/v1/secrets/{}", "n".repeat(129));
    for bad in [
        "/v1/secrets/a/b",
        "/v1/secrets/..",
        "/v1/secrets/../token",
        "/v1/secrets/%2e%2e",
        "/v1/secrets/b%2Fpass",
        "/v1/secrets/b pass",
        long.as_str(),
        "/v1/secrets/b-pass?version=x",
        "/v1/secrets/b-pass?version=0",
        "/v1/secrets/b-pass?version=1&version=2",
        "/v1/secrets/b-pass?destroy=true",
    ] {
        let (status, answer) = svc_b(&boot, &bad.replace(' ', "%20"));
        assert_eq!(status, 400, "{bad}: {answer}");
        assert!(answer["error"].is_string() && !answer.to_string().contains(b1), "{bad}: {answer}");
    }
    let (status, answer) = svc_b(&boot, "/v1/secrets/no-such-secret");
    assert_eq!(status, 404, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("\"no-such-secret\""), "{answer}");
    let (status, answer) = svc_b(&boot, "/v1/secrets/b-pass?version=7");
    assert_eq!(status, 404, "{answer}");
    for method in ["POST", "PUT", "DELETE"] {
        let (status, answer) = curl(&boot, Some(B_UID), method, "/v1/secrets/b-pass");
        assert_eq!(status, 405, "{method}: {answer}");
    }
    // A GET with a body: too large 413, any other 400.
    let big = "x".repeat(5000);
    let (status, answer) = curl_with(&boot, Some(B_UID), "GET", "/v1/secrets/b-pass", &["--data-binary", &big]);
    assert_eq!(status, 413, "{answer}");
    let (status, answer) = curl_with(&boot, Some(B_UID), "GET", "/v1/secrets/b-pass", &["--data-binary", "{}"]);
    assert_eq!(status, 400, "{answer}");
    let out = demo(&boot, &["--secret", "../x"]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));

    // The audit lines: one per read, issuance kind, secret and version, never the value.
    // (Written by the log's own thread: wait for the 11th secret line.)
    let audit = poll_until(Duration::from_secs(10), || {
        let audit = fs::read_to_string(boot.config().audit_file()).unwrap_or_default();
        (audit.matches("\"secret\":").count() >= 11).then_some(audit)
    })
    .unwrap_or_else(|| fs::read_to_string(boot.config().audit_file()).unwrap_or_default());
    let lines: Vec<Value> = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["event"] == "issued" && l["secret"].is_string())
        .collect();
    let (reads, missing): (Vec<Value>, Vec<Value>) = lines.into_iter().partition(|l| l["version"].is_u64());
    let read = |service: &str, secret: &str, version: u64| {
        reads.iter().filter(|l| l["service"] == service && l["secret"] == secret && l["version"] == version).count()
    };
    assert_eq!(read("demo", "mqtt-password", 2), 2, "{audit}");
    assert_eq!(read("demo", "mqtt-password", 1), 1, "{audit}");
    assert_eq!(read("demo", "db", 1), 1, "{audit}");
    assert_eq!(read("svc-b", "b-pass", 1), 2, "{audit}");
    assert_eq!(read("demo", "greeting", 1), 1, "{audit}");
    assert_eq!(reads.len(), 7, "{audit}");
    // Reads that found nothing are audited too (their requests are in OpenBao's audit log).
    let missed: Vec<(&str, &str)> =
        missing.iter().map(|l| (l["service"].as_str().unwrap(), l["secret"].as_str().unwrap())).collect();
    assert_eq!(
        missed,
        [("svc-b", "mqtt-password"), ("demo", "b-pass"), ("svc-b", "no-such-secret"), ("svc-b", "b-pass")],
        "{audit}"
    );
    assert!(reads.iter().all(|l| l["accessor"].as_str().is_some_and(|a| !a.is_empty())), "{audit}");
    // Each read's token (created for it: no `reuse`) was revoked with the issuing token.
    let revoked = revocations(&boot) - revoked_at_boot;
    assert_eq!(revoked, 12, "12 reads and lists that passed attestation made 12 tokens");

    // Metrics: reads by service and attestation (not by name), denials by the token denials'
    // reasons; no value.
    let metrics = Command::new(CURL)
        .args(["-sS", "--fail", "--unix-socket"])
        .arg(boot.admin_socket())
        .arg("http://localhost/metrics")
        .output()
        .unwrap();
    let metrics = stdout(&metrics);
    assert!(metrics.contains("edgeseal_secret_reads_total{service=\"demo\",attestation=\"unix\"} 5"), "{metrics}");
    assert!(metrics.contains("edgeseal_secret_reads_total{service=\"svc-b\",attestation=\"unix\"} 2"), "{metrics}");
    assert!(
        metrics.contains("edgeseal_tokens_denied_total{service=\"svc-b\",reason=\"asserted_mismatch\"} 1"),
        "{metrics}"
    );
    for never in [a1, a2, a_pass, b1] {
        assert!(!metrics.contains(never), "{never} in the metrics");
    }

    // No value anywhere outside OpenBao's encrypted storage: edgeseal's log, its audit log,
    // OpenBao's audit log (HMACed), any other file.
    let log = boot.log();
    assert!(log.contains("secret_read"), "edgeseal's log has the reads");
    for path in regular_files_below(boot.device.path()).into_iter().filter(|p| !p.to_string_lossy().contains("/raft/"))
    {
        let text = String::from_utf8_lossy(&fs::read(&path).unwrap_or_default()).into_owned();
        for value in [a1, a2, a_user, a_pass, b1, greeting.as_str()] {
            assert!(!text.contains(value), "{} holds a value", path.display());
        }
    }
    assert!(fs::metadata(boot.audit_log()).is_ok_and(|m| m.len() > 0), "OpenBao's audit log was scanned");

    // OpenBao not answering: 503 (exit 69) after the store timeout, then served again.
    let bao = boot.openbao_pid().expect("OpenBao runs");
    let pid = nix::unistd::Pid::from_raw(bao as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let out = demo(&boot, &["--secret", "mqtt-password"]);
    let (status, answer) = svc_b(&boot, "/v1/secrets/b-pass");
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    assert_eq!(out.status.code(), Some(69), "{}", text(&out));
    assert_eq!(status, 503, "{answer}");
    assert!(!text(&out).contains(a2) && !answer.to_string().contains(b1));
    assert_eq!(stdout(&demo(&boot, &["--secret", "mqtt-password"])), a2);
}

#[test]
fn a_reuse_service_reads_with_its_shared_token_and_nothing_is_revoked() {
    let mut boot = Boot::new();
    boot.set_token(secretstore_setup::config::TokenSettings::default(), true);
    let _run = boot.start();
    let value = "shared-path-VALUE-77c2e1";
    stdout(&boot.secrets(&["set", "demo/api-key"], value.as_bytes()));
    let revocations = |boot: &Boot| boot.audited_paths().iter().filter(|p| *p == "auth/token/revoke-accessor").count();
    let revoked_at_boot = revocations(&boot);

    let shared: Value = serde_json::from_str(&stdout(&demo(&boot, &[]))).unwrap();
    let accessor = shared["auth"]["accessor"].as_str().unwrap().to_string();
    for _ in 0..3 {
        assert_eq!(stdout(&demo(&boot, &["--secret", "api-key"])), value);
    }
    assert_eq!(revocations(&boot), revoked_at_boot, "the shared token is not revoked after a read");
    let audit = poll_until(Duration::from_secs(10), || {
        let audit = fs::read_to_string(boot.config().audit_file()).unwrap_or_default();
        (audit.matches("\"secret\":\"api-key\"").count() >= 3).then_some(audit)
    })
    .unwrap_or_default();
    let reads: Vec<Value> = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["secret"] == "api-key")
        .collect();
    assert_eq!(reads.len(), 3, "{audit}");
    assert!(reads.iter().all(|l| l["accessor"] == accessor.as_str() && l["version"] == 1), "{audit}");
    // The service's own token still works (it was not revoked under it).
    assert_eq!(boot.read(shared["auth"]["client_token"].as_str().unwrap(), "api-key"), Some(json!({"value": value})));
    assert!(!boot.log().contains(value) && !audit.contains(value));
}

#[test]
fn a_labelled_container_reads_its_own_secret_and_is_refused_the_host_services() {
    let docker = edgeseal_tests::docker::Docker::ensure();
    let mut boot = Boot::new();
    boot.set_docker_socket(Some(docker.socket()));
    let selector = DockerSelector { compose_service: Some("ctr".into()), ..Default::default() };
    boot.add_service(
        "ctr",
        ServiceEntry { selectors: Selectors { unix: None, docker: Some(selector) }, ..Default::default() },
    );
    let _run = boot.start();
    let (mine, theirs) = ("container-pass-8b1e44", "host-pass-0c9d3a");
    stdout(&boot.secrets(&["set", "ctr/ctr-pass"], mine.as_bytes()));
    stdout(&boot.secrets(&["set", "demo/host-pass"], theirs.as_bytes()));

    let client = edgeseal_tests::workspace_binary("security-bootstrap");
    let image = docker.image_from_binaries("edgeseal-test/client:secrets", &[&client], &[client.to_str().unwrap()]);
    let socket_dir = boot.socket().parent().unwrap().to_path_buf();
    let read = |labels: &[(&str, &str)], args: &[&str]| {
        let mut spec = RunSpec::new(&image)
            .bind(&socket_dir, "/run/edgeseal")
            .args(["token", "--socket", "/run/edgeseal/token.sock"].into_iter().chain(args.iter().copied()));
        for (k, v) in labels {
            spec = spec.label(*k, *v);
        }
        let container = docker.run(spec);
        let code = container.wait(Duration::from_secs(60));
        (code, container.stdout(), container.stderr(), container.id().to_string())
    };
    let labelled = [("com.docker.compose.service", "ctr"), ("com.docker.compose.project", "demo")];

    let (code, out, err, _) = read(&labelled, &["--secret", "ctr-pass"]);
    assert_eq!((code, out.as_str()), (0, mine), "{err}");
    // The host service's secret: not in the container's folder (404, exit 76), and naming the host
    // service is a denial that shows what was seen (the container).
    let (code, out, err, _) = read(&labelled, &["--secret", "host-pass"]);
    assert_eq!(code, 76, "{out}{err}");
    assert!(err.contains("\"host-pass\"") && !out.contains(theirs) && !err.contains(theirs), "{err}");
    let (code, out, err, id) = read(&labelled, &["--secret", "host-pass", "--service", "demo"]);
    assert_eq!(code, 77, "{out}{err}");
    assert!(
        err.contains("denied: saw ") && err.contains(&id[..12]) && err.contains("asserts service \"demo\""),
        "{err}"
    );
    // An unlabelled container is no service.
    let (code, out, err, id) = read(&[], &["--secret", "ctr-pass"]);
    assert_eq!(code, 77, "{out}{err}");
    assert!(err.contains(&id[..12]) && !out.contains(mine) && !err.contains(mine), "{err}");

    let audit = poll_until(Duration::from_secs(10), || {
        let audit = fs::read_to_string(boot.config().audit_file()).unwrap_or_default();
        audit.contains("\"secret\":\"ctr-pass\"").then_some(audit)
    })
    .unwrap_or_default();
    let line = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["secret"] == "ctr-pass")
        .unwrap_or_else(|| panic!("no audit line: {audit}"));
    assert_eq!((&line["service"], &line["version"]), (&json!("ctr"), &json!(1)), "{line}");
    assert!(line["container"].is_string(), "the line names the container: {line}");
    assert!(!boot.log().contains(mine) && !audit.contains(mine));
}
