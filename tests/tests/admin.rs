//! The admin socket (SPEC §12), against the real `security-bootstrap run` and a real OpenBao: an
//! operator sets, updates, reads by version, rotates and removes a service's secret with the CLI, and
//! the service's own token reads exactly what was set; a non-admin uid is refused; bad input writes
//! nothing; no value and no admin credential reaches a file or a log; the credential is revoked on
//! SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::time::Duration;

use edgeseal_tests::boot::Boot;
use edgeseal_tests::regular_files_below;
use nix::sys::signal::Signal;
use serde_json::json;

fn stdout(out: &std::process::Output) -> String {
    assert!(out.status.success(), "{:?}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn code(out: &std::process::Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

#[test]
fn an_operator_sets_updates_reads_by_version_and_removes_a_secret_that_the_service_reads() {
    let mut boot = Boot::new();
    let mut run = boot.start();
    let token = boot.token_until_ok(Duration::from_secs(10));
    let (first, second) = ("mqtt-pass-ONE-7d1c9e", "mqtt-pass-TWO-4b2a0f");

    assert!(
        stdout(&boot.secrets(&["set", "demo/mqtt-password"], format!("{first}\n").as_bytes())).contains("version 1")
    );
    assert_eq!(
        boot.read(&token, "mqtt-password"),
        Some(json!({"value": first})),
        "the service reads exactly that value"
    );
    assert!(stdout(&boot.secrets(&["set", "demo/mqtt-password"], second.as_bytes())).contains("version 2"));
    assert_eq!(boot.read(&token, "mqtt-password"), Some(json!({"value": second})));
    assert_eq!(stdout(&boot.secrets(&["get", "demo/mqtt-password", "--version", "1"], b"")), first);
    assert_eq!(stdout(&boot.secrets(&["get", "demo/mqtt-password"], b"")), second);

    // --cas with a stale version: refused, nothing changed.
    let stale = boot.secrets(&["set", "demo/mqtt-password", "--cas", "1"], b"mqtt-pass-THREE");
    assert_eq!(code(&stale), 1, "{}", String::from_utf8_lossy(&stale.stderr));
    assert_eq!(boot.read(&token, "mqtt-password"), Some(json!({"value": second})));

    // EdgeX's multi-key shape.
    let multi = br#"{"username": "edgex", "password": "db-pass-9f8e"}"#;
    stdout(&boot.secrets(&["set", "demo/db", "--json"], multi));
    assert_eq!(boot.read(&token, "db"), Some(json!({"username": "edgex", "password": "db-pass-9f8e"})));

    let list = stdout(&boot.secrets(&["list", "demo", "--json"], b""));
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"mqtt-password") && names.contains(&"greeting") && names.contains(&"db"), "{list}");
    assert!(!list.to_string().contains(second), "list shows no value");
    let history = stdout(&boot.secrets(&["history", "demo/mqtt-password", "--json"], b""));
    assert!(history.contains("set by uid 0") && !history.contains(first), "{history}");

    stdout(&boot.secrets(&["rm", "demo/mqtt-password"], b""));
    assert_eq!(boot.read(&token, "mqtt-password"), None, "the service gets 404 after rm");
    assert_eq!(stdout(&boot.secrets(&["get", "demo/mqtt-password", "--version", "1"], b"")), first);

    // No value in any file edgeseal or OpenBao writes outside OpenBao's (encrypted) storage, nor in
    // the logs; OpenBao's audit log holds only HMACs.
    for path in regular_files_below(boot.device.path()).into_iter().filter(|p| !p.to_string_lossy().contains("/raft/"))
    {
        let text = String::from_utf8_lossy(&fs::read(&path).unwrap_or_default()).into_owned();
        for value in [first, second, "db-pass-9f8e"] {
            assert!(!text.contains(value), "{} holds a value", path.display());
        }
    }
    assert!(!boot.log().contains(first) && !boot.log().contains(second));

    // SIGTERM revokes the admin credential (seen in OpenBao's audit log: a revoke-self by a token
    // with the edgeseal-admin policy).
    run.stop(Signal::SIGTERM, Duration::from_secs(30));
    let audit = fs::read_to_string(boot.audit_log()).unwrap();
    let revoked = audit.lines().any(|line| {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
        // The response of a revoke-self that succeeded (a failed one carries an error).
        entry["type"] == "response"
            && entry["error"].as_str().is_none_or(str::is_empty)
            && entry["request"]["path"] == "auth/token/revoke-self"
            && entry["auth"]["policies"].as_array().is_some_and(|p| p.iter().any(|p| p == "edgeseal-admin"))
    });
    assert!(revoked, "the admin credential was revoked at shutdown");
    assert!(!boot.admin_socket().exists(), "the admin socket is removed");
}

#[test]
fn rotating_a_generated_secret_makes_a_new_random_value_and_the_history_shows_both() {
    let mut boot = Boot::new();
    let _run = boot.start();
    let token = boot.token_until_ok(Duration::from_secs(10));
    let before = boot.secret(&token);
    let out = boot.secrets(&["rotate", "demo/greeting"], b"");
    assert!(stdout(&out).contains("version 2"));
    let after = boot.secret(&token);
    assert!(after != before && after.len() >= 40, "a new random value");
    let history = stdout(&boot.secrets(&["history", "demo/greeting", "--json"], b""));
    let history: serde_json::Value = serde_json::from_str(&history).unwrap();
    let sources: Vec<&str> = history.as_array().unwrap().iter().map(|v| v["source"].as_str().unwrap()).collect();
    assert_eq!(sources, ["generated by setup", "rotate by uid 0"], "{history}");
    // An operator's secret needs its new value.
    stdout(&boot.secrets(&["set", "demo/api-key"], b"key-1"));
    let refused = boot.secrets(&["rotate", "demo/api-key"], b"");
    assert_eq!(code(&refused), 64, "{}", String::from_utf8_lossy(&refused.stderr));
    assert!(stdout(&boot.secrets(&["rotate", "demo/api-key"], b"key-2")).contains("version 2"));
}

#[test]
fn a_non_admin_is_refused_and_bad_input_writes_nothing() {
    let mut boot = Boot::new();
    // The socket is group-accessible (0660, group nogroup) so that another uid can connect at all:
    // the refusal is the SO_PEERCRED check, not the file mode.
    boot.set_admin_group(Some(65534));
    let _run = boot.start();
    let token = boot.token_until_ok(Duration::from_secs(10));
    let refused = boot.secrets_as(Some((65534, 65534)), &["set", "demo/x"], b"v");
    assert_eq!(code(&refused), 77, "{}", String::from_utf8_lossy(&refused.stderr));
    let refused = boot.secrets_as(Some((65534, 65534)), &["get", "demo/greeting"], b"");
    assert_eq!(code(&refused), 77, "{}", String::from_utf8_lossy(&refused.stderr));
    assert!(boot.log().contains("admin-refused"), "the refusal is audited");
    // Root in another mount namespace (as in a container) is not an admin either.
    let in_container = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private"])
        .arg(boot.client())
        .args(["secrets", "get", "demo/greeting", "--admin-socket"])
        .arg(boot.admin_socket())
        .output()
        .unwrap();
    assert_eq!(in_container.status.code(), Some(77), "{}", String::from_utf8_lossy(&in_container.stderr));
    assert!(String::from_utf8_lossy(&in_container.stderr).contains("mount namespace"));
    // The service socket never answers an admin path: the admin-only routes are unknown there, and
    // the admin form of a secret's path (`<service>/<name>`) is not a name the service socket serves.
    for (method, path, status) in [
        ("GET", "/v1/audit", "404"),
        ("GET", "/v1/node", "404"),
        ("POST", "/v1/backup", "404"),
        ("GET", "/v1/secrets/demo/greeting", "400"),
        ("PUT", "/v1/secrets/demo/x", "405"),
    ] {
        let on_service_socket = std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", method, "--unix-socket"])
            .arg(boot.socket())
            .arg(format!("http://localhost{path}"))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&on_service_socket.stdout), status, "{method} {path}");
    }

    // (args, stdin, exit code)
    let big = vec![b'x'; 2 * 1024 * 1024];
    let cases: Vec<(Vec<&str>, &[u8], i32)> = vec![
        (vec!["set", "nosuch/x"], b"v", 1),
        (vec!["set", "demo/a/b"], b"v", 64),
        (vec!["set", "demo/.."], b"v", 64),
        (vec!["set", "demo/empty"], b"", 64),
        (vec!["set", "demo/empty"], b"\n", 64),
        (vec!["set", "demo/big"], &big, 64),
        (vec!["set", "demo/j", "--json"], b"{not json", 64),
        (vec!["set", "demo/j", "--json"], b"[\"a\"]", 64),
    ];
    for (args, stdin, want) in cases {
        let out = boot.secrets(&args, stdin);
        assert_eq!(code(&out), want, "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    for name in ["x", "empty", "big", "j"] {
        assert_eq!(boot.read(&token, name), None, "nothing written for {name}");
    }
}

#[test]
fn audit_shows_which_process_read_which_secret_and_which_admin_changed_it() {
    let mut boot = Boot::new();
    let mut run = boot.start();
    let value = "audit-mqtt-pass-5e1d";
    stdout(&boot.secrets(&["set", "demo/mqtt-password"], value.as_bytes()));
    let (pid, token) = boot.fetch_with_pid();
    assert_eq!(boot.read(&token, "mqtt-password"), Some(json!({"value": value})));

    let events = |boot: &Boot| -> Vec<serde_json::Value> {
        stdout(&boot.audit(&["--service", "demo", "--json"]))
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    };
    let seen = events(&boot);
    let read = seen
        .iter()
        .find(|e| e["kind"] == "request" && e["secret"] == "demo/mqtt-password" && e["operation"] == "read")
        .unwrap_or_else(|| panic!("the service's read is in the audit: {seen:#?}"));
    assert_eq!(read["caller"]["pid"], pid, "attributed to the process the token was issued to");
    assert_eq!(read["path"], "secret/data/edgeseal/demo/mqtt-password");
    assert_eq!(read["version"], 1);
    assert_eq!(read["service"], "demo");
    let issued = seen.iter().find(|e| e["kind"] == "issued" && e["caller"]["pid"] == pid);
    assert!(issued.is_some(), "the issuance is in the audit: {seen:#?}");
    let set = seen.iter().find(|e| e["kind"] == "admin" && e["operation"] == "set");
    let set = set.unwrap_or_else(|| panic!("the admin's set is in the audit: {seen:#?}"));
    assert_eq!(
        (set["admin_uid"].as_u64(), set["secret"].as_str(), set["version"].as_u64()),
        (Some(0), Some("demo/mqtt-password"), Some(1))
    );
    let position = |e: &serde_json::Value| seen.iter().position(|x| x == e).unwrap();
    assert!(position(set) < position(read), "oldest first");

    // The human table says the same; neither shows a value, a token or an accessor.
    let table = stdout(&boot.audit(&[]));
    eprintln!("{table}");
    assert!(table.contains("read demo/mqtt-password v1") && table.contains("admin uid 0"), "{table}");
    assert!(table.contains(&format!("pid {pid}")), "{table}");
    let edgeseal_log = fs::read_to_string(boot.device.keystore_dir().join("audit.log")).unwrap();
    for text in [&table, &edgeseal_log] {
        assert!(!text.contains(value) && !text.contains(&token), "{text}");
    }
    assert!(edgeseal_log.contains(r#""event":"issued""#), "{edgeseal_log}");

    // An unknown service is an error; the history survives a reboot.
    assert_eq!(code(&boot.audit(&["--service", "nosuch"])), 1);
    run.stop(Signal::SIGTERM, Duration::from_secs(30));
    let _run = boot.start();
    assert!(events(&boot).iter().any(|e| e["kind"] == "request" && e["caller"]["pid"] == pid), "kept across a reboot");
}

#[test]
fn the_standalone_token_server_serves_the_admin_socket_of_a_store_setup_configured() {
    use edgeseal_tests::device::{service, Device};
    use edgeseal_tests::openbao::OpenBao;
    use edgeseal_tests::pki::TestPki;
    use edgeseal_tests::process::ChildGuard;
    use std::process::{Command, Stdio};

    // An external (Shamir-sealed) store, set up by `setup`: the admin credential is made from a root
    // token generated from the keystore's shares, then the root token is revoked.
    let pki = TestPki::new();
    let bao = OpenBao::start(&pki);
    let device = Device::new();
    let setup = device.setup(&bao, vec![service("alpha", &["api-key"], None)]);
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(setup.run()).unwrap();
    let mut config = device.config(&setup);
    config.token_server.socket = device.path().join("token.sock");
    config.token_server.docker_socket = None;
    config.audit.openbao_log = Some(bao.audit_log());
    let path = device.write_yaml(&config);
    let log = fs::File::create(device.path().join("token-server.log")).unwrap();
    let setup_lines = fs::read_to_string(bao.audit_log()).unwrap().lines().count();
    let child = Command::new(edgeseal_tests::workspace_binary("security-bootstrap"))
        .args(["token-server", "--config"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut server = ChildGuard::new("token-server", child);
    let server_log = || fs::read_to_string(device.path().join("token-server.log")).unwrap_or_default();
    edgeseal_tests::wait_until("the admin socket", Duration::from_secs(60), || {
        assert!(server.exited().is_none(), "token-server exited:\n{}", server_log());
        device.admin_socket().exists().then_some(())
    });
    let secrets = |args: &[&str], stdin: &[u8]| {
        let mut command = Command::new(edgeseal_tests::workspace_binary("security-bootstrap"));
        command.arg("secrets").args(args).arg("--admin-socket").arg(device.admin_socket());
        edgeseal_tests::output_with_stdin(&mut command, stdin)
    };
    assert!(stdout(&secrets(&["set", "alpha/mqtt-password"], b"standalone-pass-81f2")).contains("version 1"));
    assert_eq!(stdout(&secrets(&["get", "alpha/mqtt-password"], b"")), "standalone-pass-81f2");
    let history = stdout(&secrets(&["history", "alpha/api-key", "--json"], b""));
    assert!(history.contains("generated by setup"), "{history}");

    // The root token of this start is revoked at once (a revoke-self by a root-policy token after
    // setup's own), and SIGTERM revokes the admin credential.
    server.stop(Signal::SIGTERM, Duration::from_secs(30));
    let audit = fs::read_to_string(bao.audit_log()).unwrap();
    let revoked_by = |policy: &str| {
        audit.lines().skip(setup_lines).any(|line| {
            let entry: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
            entry["type"] == "response"
                && entry["error"].as_str().is_none_or(str::is_empty)
                && entry["request"]["path"] == "auth/token/revoke-self"
                && entry["auth"]["policies"].as_array().is_some_and(|p| p.iter().any(|p| p == policy))
        })
    };
    assert!(revoked_by("edgeseal-admin"), "the admin credential was revoked at shutdown:\n{}", server_log());
    assert!(revoked_by("root"), "the root token of this start was revoked:\n{}", server_log());
    assert!(!device.admin_socket().exists());
}
