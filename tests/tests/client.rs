//! `edgeseal-client` (and the Python example) against the real `security-bootstrap run` and a real
//! OpenBao. The test binary itself is the host service `demo` (uid 0 and this executable, in place
//! of the harness's client binary); `py` is `/usr/bin/python3` as uid 4243 (through `setpriv`).
//! - `get` reads exactly what an admin set; cached gets do not reach the server (the
//!   `edgeseal_secret_reads_total` metric does not grow); after `secrets set` a `refresh()` (or a
//!   check interval of zero) gives the new value, and an unchanged value is not read again;
//! - `get_json` of a multi-key secret, `get_version`, `list`, `token()` (a working OpenBao token);
//! - a missing name is `NotFound` naming it, asserting another service is `Denied`, a bad name is
//!   refused without a request; the tokio client does the same;
//! - the Python example reads the same values; a stopped server is `Unavailable` (exit 69).
//!
//! Runs as root (the Python example as another uid through `setpriv`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use edgeseal_client::{Client, Error, SecretInfo};
use edgeseal_tests::boot::Boot;
use security_bootstrap::config::ServiceEntry;
use serde::Deserialize;
use serde_json::json;
use token_server::config::{Selectors, UnixSelector};

const SERVICE: &str = "demo";
const PYTHON: &str = "/usr/bin/python3";
const PY_UID: u32 = 4243;
const HOUR: Duration = Duration::from_secs(3600);

#[derive(Debug, PartialEq, Deserialize)]
struct Db {
    username: String,
    password: String,
}

fn ok(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{:?}: {text}{}", out.status, String::from_utf8_lossy(&out.stderr));
    text
}

/// A device serving `demo` (this test binary, uid 0; two services of one uid would not be told
/// apart) and `py` (python3, uid 4243).
fn boot() -> Boot {
    let mut boot = Boot::new();
    let host = |uid: u32, path: PathBuf| ServiceEntry {
        selectors: Selectors {
            unix: Some(UnixSelector { uid: Some(uid), path: Some(path), ..Default::default() }),
            docker: None,
        },
        ..Default::default()
    };
    boot.add_service(SERVICE, host(0, std::env::current_exe().unwrap().canonicalize().unwrap()));
    let python = Path::new(PYTHON).canonicalize().unwrap_or_else(|e| panic!("{PYTHON}: {e} (apt-get install python3)"));
    boot.add_service("py", host(PY_UID, python));
    boot
}

/// `edgeseal_secret_reads_total` of `service` (unix attestation) from the admin socket's /metrics.
fn reads(boot: &Boot, service: &str) -> u64 {
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--unix-socket"])
        .arg(boot.admin_socket())
        .arg("http://localhost/metrics")
        .output()
        .unwrap();
    let metrics = ok(&out);
    let prefix = format!("edgeseal_secret_reads_total{{service=\"{service}\",attestation=\"unix\"}} ");
    metrics.lines().find_map(|l| l.strip_prefix(&prefix)).map(|n| n.trim().parse().unwrap()).unwrap_or(0)
}

fn set(boot: &Boot, name: &str, value: &str) {
    ok(&boot.secrets(&["set", &format!("{SERVICE}/{name}")], value.as_bytes()));
}

#[test]
fn the_default_socket_is_the_servers() {
    assert_eq!(edgeseal_client::DEFAULT_SOCKET, token_server::config::DEFAULT_SOCKET);
}

#[test]
fn a_service_reads_its_secrets_through_the_cache_and_sees_rotations() {
    let boot = &mut boot();
    let run = boot.start();
    let (v1, v2, v3, user, pass) =
        ("api-ONE-7c1e90", "api-TWO-41d2aa", "api-THREE-e05b13", "db-user-93f1", "db-pass-MULTI-5ab2c8");
    set(boot, "api-key", v1);
    ok(&boot.secrets(
        &["set", &format!("{SERVICE}/db"), "--json"],
        json!({"username": user, "password": pass}).to_string().as_bytes(),
    ));

    // First get reads the value an admin set; cached gets do not reach the server.
    let client = Client::new(boot.socket()).with_check_interval(HOUR);
    let secret = client.get("api-key").unwrap();
    assert_eq!((secret.expose(), secret.version(), secret.name()), (v1, 1, "api-key"));
    assert!(!format!("{secret:?}").contains(v1), "Debug is redacted");
    assert_eq!(reads(boot, SERVICE), 1);
    let clone = client.clone();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let client = clone.clone();
            std::thread::spawn(move || (0..250).all(|_| client.get("api-key").unwrap().expose() == v1))
        })
        .collect();
    assert!(threads.into_iter().all(|t| t.join().unwrap()));
    assert_eq!(reads(boot, SERVICE), 1, "1000 cached gets read nothing");

    // A new version: the cache holds the old one until checked; refresh() checks now.
    set(boot, "api-key", v2);
    assert_eq!(client.get("api-key").unwrap().expose(), v1, "within the check interval, the cached value");
    client.refresh().unwrap();
    let secret = client.get("api-key").unwrap();
    assert_eq!((secret.expose(), secret.version()), (v2, 2));
    assert_eq!(reads(boot, SERVICE), 2);

    // Check interval zero: every get checks (one list), only a changed version is read again.
    let eager = Client::new(boot.socket()).with_check_interval(Duration::ZERO);
    assert_eq!(eager.get("api-key").unwrap().expose(), v2);
    assert_eq!(eager.get("api-key").unwrap().expose(), v2);
    assert_eq!(reads(boot, SERVICE), 3, "the unchanged value was read once");
    set(boot, "api-key", v3);
    assert_eq!(eager.get("api-key").unwrap().expose(), v3);
    assert_eq!(reads(boot, SERVICE), 4);

    // Multi-key, versions, the list, a token.
    let error = client.get("db").unwrap_err();
    assert!(matches!(&error, Error::NotSingleValue { keys, .. } if keys == &["password", "username"]), "{error:?}");
    assert!(error.to_string().contains("get_json") && !error.to_string().contains(pass), "{error}");
    assert_eq!(client.get_json::<Db>("db").unwrap(), Db { username: user.into(), password: pass.into() });
    let map: HashMap<String, String> = client.get_json("db").unwrap();
    assert_eq!(map["password"], pass);
    assert_eq!(client.get_version("api-key", 1).unwrap().expose(), v1);
    assert_eq!(client.get_version("api-key", 2).unwrap().version(), 2);
    let mut listed = client.list().unwrap();
    listed.sort_by(|a, b| a.name.cmp(&b.name));
    let info = |name: &str, version| SecretInfo { name: name.into(), version };
    assert_eq!(listed, vec![info("api-key", 3), info("db", 1)]);
    let token = client.token().unwrap();
    assert_eq!(token.service(), SERVICE);
    assert!(!token.expose().is_empty() && !token.ttl().is_zero(), "{token:?}");
    assert!(!format!("{token:?}").contains(token.expose()));
    let (status, body) = boot.bao("GET", "auth/token/lookup-self", token.expose());
    assert_eq!(status, 200, "the token works: {body}");

    // Refusals.
    let error = client.get("no-such-secret").unwrap_err();
    assert!(matches!(&error, Error::NotFound { name, .. } if name == "no-such-secret"), "{error:?}");
    assert!(error.to_string().contains("no-such-secret"), "{error}");
    assert!(matches!(client.get_version("api-key", 9), Err(Error::NotFound { .. })));
    let error = Client::new(boot.socket()).with_service("py").get("api-key").unwrap_err();
    assert!(matches!(&error, Error::Denied { message } if message.contains("asserts service \"py\"")), "{error:?}");
    assert!(!error.to_string().contains(v3));
    assert!(matches!(Client::new(boot.socket()).with_service("py").token(), Err(Error::Denied { .. })));
    assert!(Client::new(boot.socket()).with_service(SERVICE).get("api-key").is_ok(), "asserting its own service");
    let before = reads(boot, SERVICE);
    assert!(matches!(client.get("../demo/greeting"), Err(Error::InvalidName { .. })));
    assert_eq!(reads(boot, SERVICE), before);

    // The async client: the same answers.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = edgeseal_client::tokio::Client::new(boot.socket()).with_check_interval(HOUR);
        assert_eq!(client.get("api-key").await.unwrap().expose(), v3);
        let after_first = reads(boot, SERVICE);
        for _ in 0..100 {
            assert_eq!(client.get("api-key").await.unwrap().expose(), v3);
        }
        assert_eq!(reads(boot, SERVICE), after_first, "cached gets read nothing");
        assert_eq!(client.get_json::<Db>("db").await.unwrap().password, pass);
        assert_eq!(client.get_version("api-key", 1).await.unwrap().expose(), v1);
        assert_eq!(client.list().await.unwrap().len(), 2);
        assert_eq!(client.token().await.unwrap().service(), SERVICE);
        assert!(matches!(client.get("no-such-secret").await, Err(Error::NotFound { .. })));
        let other = edgeseal_client::tokio::Client::new(boot.socket()).with_service("py");
        assert!(matches!(other.get("api-key").await, Err(Error::Denied { .. })));
    });

    // The Python example, as its own service `py` (a copy of the script that uid can read).
    let public = edgeseal_tests::public_client_dir();
    let script = public.path().join("edgeseal_client.py");
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/python/edgeseal_client.py"), &script)
        .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let python = |args: &[&str], service: Option<&str>| {
        let mut command = Command::new("setpriv");
        command.arg(format!("--reuid={PY_UID}")).arg(format!("--regid={PY_UID}")).arg("--clear-groups").arg(PYTHON);
        command.arg(&script).args(args).env("EDGESEAL_SOCKET", boot.socket()).env_remove("EDGESEAL_SERVICE");
        if let Some(service) = service {
            command.env("EDGESEAL_SERVICE", service);
        }
        command.output().unwrap()
    };
    let (p1, puser, ppass) = ("py-VALUE-0d7e31", "py-user", "py-pass-c2b0f4");
    ok(&boot.secrets(&["set", "py/api-key"], p1.as_bytes()));
    ok(&boot
        .secrets(&["set", "py/db", "--json"], json!({"username": puser, "password": ppass}).to_string().as_bytes()));
    assert_eq!(ok(&python(&["get", "api-key"], None)), p1);
    assert_eq!(ok(&python(&["get", "api-key"], Some("py"))), p1);
    let db: serde_json::Value = serde_json::from_str(&ok(&python(&["json", "db"], None))).unwrap();
    assert_eq!(db, json!({"username": puser, "password": ppass}));
    let auth: serde_json::Value = serde_json::from_str(&ok(&python(&["token"], None))).unwrap();
    assert_eq!(boot.bao("GET", "auth/token/lookup-self", auth["client_token"].as_str().unwrap()).0, 200);
    let denied = python(&["get", "api-key"], Some(SERVICE));
    assert_eq!(denied.status.code(), Some(77), "{}", String::from_utf8_lossy(&denied.stderr));
    let missing = python(&["get", "nope"], None);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nope"));

    // The server stopped: cached values still serve, every request is Unavailable.
    drop(run);
    let db: Db = client.get_json("db").unwrap();
    assert_eq!(db.password, pass, "fresh in the cache (interval one hour)");
    for error in [client.refresh().unwrap_err(), eager.get("api-key").unwrap_err(), client.token().unwrap_err()] {
        assert!(matches!(error, Error::Unavailable { .. }) && error.may_succeed_later(), "{error:?}");
        assert!(error.to_string().contains("is edgeseal running"), "{error}");
    }
    let out = python(&["get", "api-key"], None);
    assert_eq!(out.status.code(), Some(69), "{}", String::from_utf8_lossy(&out.stderr));
}
