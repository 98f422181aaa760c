//! Batch tokens (`services.<svc>.token.type: batch`), end to end under `security-bootstrap run` with
//! a supervised OpenBao sealed with Shamir shares: a service switched from service tokens to batch
//! tokens gets batch tokens after the next setup (its role converged); its token reads its own secret and not another
//! service's, is not renewable (the response says so, and OpenBao refuses renew-self), survives an
//! OpenBao crash that the watchdog unseals, and is refused once its TTL has passed. A combination
//! OpenBao would refuse or edgeseal cannot honour is refused at load (exit 64, naming the key).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use edgeseal_tests::boot::Boot;
use edgeseal_tests::{poll_until, wait_until};
use nix::sys::signal::Signal;
use secretstore_setup::config::{TokenSettings, TokenType};
use security_bootstrap::config::ServiceEntry;
use serde_json::Value;

/// `method path` against the device's OpenBao with `token`: the HTTP status and the body.
fn bao(boot: &Boot, method: &str, path: &str, token: &str) -> (u16, String) {
    boot.bao(method, path, token)
}

/// The token server's whole answer for `demo` (the client binary prints it).
fn fetch_auth(boot: &Boot) -> Value {
    let out = boot.fetch();
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stderr), boot.log());
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    json["auth"].clone()
}

fn batch(ttl: Duration) -> TokenSettings {
    TokenSettings { kind: TokenType::Batch, ttl, period: None }
}

const OWN: &str = "secret/data/edgeseal/demo/greeting";
const OTHERS: &str = "secret/data/edgeseal/other/greeting";

#[test]
fn a_batch_token_reads_its_secret_only_cannot_be_renewed_survives_an_openbao_restart_and_expires() {
    let mut boot = Boot::shamir();
    boot.add_service("other", ServiceEntry { secrets: vec!["greeting".into()], ..Default::default() });

    // First boot: service tokens (the default).
    let mut run = boot.start();
    let auth = fetch_auth(&boot);
    assert!(auth["client_token"].as_str().unwrap().starts_with("s."), "{auth}");
    assert_eq!(auth["renewable"], true, "{auth}");
    run.stop(Signal::SIGTERM, Duration::from_secs(30));

    // The service switches to batch tokens: setup converges its role.
    boot.set_token(batch(Duration::from_secs(600)), false);
    let mut run = boot.start();
    let auth = fetch_auth(&boot);
    let token = auth["client_token"].as_str().unwrap().to_string();
    assert!(token.starts_with("b."), "a batch token: {auth}");
    assert_eq!(auth["renewable"], false, "the response tells the client not to renew: {auth}");
    assert_eq!(auth["lease_duration"], 600, "the TTL comes from the service's token.ttl: {auth}");

    let (code, body) = bao(&boot, "GET", OWN, &token);
    assert_eq!(code, 200, "{body}");
    let value: Value = serde_json::from_str(&body).unwrap();
    let greeting = value["data"]["data"]["value"].as_str().unwrap().to_string();
    let (code, body) = bao(&boot, "GET", OTHERS, &token);
    assert_eq!(code, 403, "another service's secret: {body}");
    let (code, body) = bao(&boot, "POST", "auth/token/renew-self", &token);
    assert_ne!(code, 200, "{body}");
    assert!(body.contains("batch tokens cannot be renewed"), "{code} {body}");

    // `status` says until when the service's batch tokens stay valid (they cannot be revoked).
    let out = boot.admin_command_as(None, "status", &["--json"], b"");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    let services = status["services"].as_array().unwrap();
    let demo = services.iter().find(|s| s["name"] == "demo").unwrap();
    let other = services.iter().find(|s| s["name"] == "other").unwrap();
    let until = demo["batch_tokens_valid_until"].as_str().unwrap_or_else(|| panic!("{status}"));
    let until = humantime::parse_rfc3339(until).unwrap();
    assert!(until > std::time::SystemTime::now(), "{status}");
    assert!(other["batch_tokens_valid_until"].is_null(), "{status}");

    // OpenBao dies; the supervisor restarts it sealed and the watchdog unseals it: the unexpired
    // batch token still works (it is an encrypted blob, not a stored entry).
    let killed = boot.openbao_pid().expect("a supervised OpenBao");
    boot.kill_openbao();
    wait_until("a new OpenBao child", Duration::from_secs(60), || boot.openbao_pid().filter(|&p| p != killed));
    boot.token_until_ok(Duration::from_secs(60));
    let unsealed = poll_until(Duration::from_secs(30), || {
        let out = boot.admin_command_as(None, "status", &["--json"], b"");
        let status: Value = serde_json::from_slice(&out.stdout).ok()?;
        (status["watchdog_unseals"].as_u64()? >= 1).then_some(())
    });
    assert!(unsealed.is_some(), "the watchdog never unsealed the restarted OpenBao:\n{}", boot.log());
    let (code, body) = bao(&boot, "GET", OWN, &token);
    assert_eq!(code, 200, "the batch token survives the restart: {body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["data"]["data"]["value"], greeting.as_str());
    run.stop(Signal::SIGTERM, Duration::from_secs(30));

    // A short TTL: the token works, then is refused once its TTL has passed.
    boot.set_token(batch(Duration::from_secs(8)), false);
    let _run = boot.start();
    let auth = fetch_auth(&boot);
    assert_eq!(auth["lease_duration"], 8, "{auth}");
    let short = auth["client_token"].as_str().unwrap().to_string();
    let (code, body) = bao(&boot, "GET", "auth/token/lookup-self", &short);
    assert_eq!(code, 200, "{body}");
    let expired = poll_until(Duration::from_secs(120), || {
        let (code, _) = bao(&boot, "GET", OWN, &short);
        (code == 403).then_some(())
    });
    assert!(expired.is_some(), "the batch token was never refused after its TTL");
    // A fresh token from the socket works again: clients come back instead of renewing.
    let fresh = fetch_auth(&boot)["client_token"].as_str().unwrap().to_string();
    assert_eq!(bao(&boot, "GET", OWN, &fresh).0, 200);
}

#[test]
fn combinations_batch_tokens_cannot_honour_are_refused_at_load_with_the_key() {
    let cases: [(TokenSettings, bool, &str, &str); 3] = [
        (
            TokenSettings {
                kind: TokenType::Batch,
                ttl: Duration::from_secs(60),
                period: Some(Duration::from_secs(60)),
            },
            false,
            "services.demo.token.type",
            "cannot have a period",
        ),
        (batch(Duration::from_secs(60)), true, "services.demo.token.type", "cannot be combined with reuse: true"),
        (batch(Duration::from_secs(7200)), false, "services.demo.token.ttl", "above token_server.max_batch_ttl (1h)"),
    ];
    for (token, reuse, key, want) in cases {
        let mut boot = Boot::new();
        boot.set_token(token, reuse);
        let out = boot.command(&["setup"], None);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{stderr}");
        assert!(stderr.contains(key) && stderr.contains(want), "{key} / {want}: {stderr}");
        assert!(stderr.contains("cannot be renewed") || stderr.contains("cannot be revoked"), "{stderr}");
    }
}
