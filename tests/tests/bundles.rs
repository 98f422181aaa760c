//! Node identity and bundles (SPEC §13), against the real `security-bootstrap run` and real OpenBao
//! stores of two devices with different hardware: `node show` through the socket and offline;
//! secrets exported by one device and imported by another (all or nothing, signed, pinned); every
//! kind of bad bundle refused with the store unchanged; interoperability with the reference `age`
//! CLI both ways; no value in any file or log in clear.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::process::{Command, Output};
use std::time::Duration;

use edgeseal_tests::boot::Boot;
use edgeseal_tests::device::{DEVICE_IKM, OTHER_IKM};
use edgeseal_tests::{age_keygen, age_tool, output_with_stdin, regular_files_below};
use nix::sys::signal::Signal;
use serde_json::{json, Value};

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "{:?}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn node(boot: &Boot) -> Value {
    serde_json::from_str(&stdout(&boot.admin_command_as(None, "node", &["show", "--json"], b""))).unwrap()
}

/// Every secret of `demo` with its data, read through the admin socket.
fn store_of(boot: &Boot) -> Vec<(String, u64, Value)> {
    let list: Value = serde_json::from_str(&stdout(&boot.secrets(&["list", "demo", "--json"], b""))).unwrap();
    let mut all: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let name = s["name"].as_str().unwrap().to_string();
            let data = stdout(&boot.secrets(&["get", &format!("demo/{name}"), "--json"], b""));
            (name, s["version"].as_u64().unwrap(), serde_json::from_str(&data).unwrap())
        })
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

#[test]
fn node_show_gives_the_same_public_identity_offline_before_the_first_boot_and_through_the_socket() {
    let mut boot = Boot::new();
    // Before any boot: made offline (the keystore does not exist yet).
    let offline: Value = serde_json::from_str(&stdout(&boot.command(&["node", "show", "--json"], None))).unwrap();
    let id = offline["node_id"].as_str().unwrap().to_string();
    assert!(id.starts_with("node-") && offline["recipient"].as_str().unwrap().starts_with("age1"), "{offline}");
    assert!(offline["signing_key"].as_str().unwrap().starts_with("ed25519:"));
    assert_eq!(offline["tls_cert_sha256"].as_str().unwrap().len(), 64);
    let text = stdout(&boot.command(&["node", "show"], None));
    assert!(text.contains(&id) && !text.contains("BEGIN CERTIFICATE"), "{text}");

    let mut run = boot.start();
    assert_eq!(node(&boot), offline, "the boot kept the identity made offline");
    run.stop(Signal::SIGTERM, Duration::from_secs(30));
    let again: Value = serde_json::from_str(&stdout(&boot.command(&["node", "show", "--json"], None))).unwrap();
    assert_eq!(again, offline);

    // No private half anywhere in clear (the device PKI's TLS keys live under pki/ by design): not
    // the age identity, not the signing seed, not the TLS key.
    let ikm = kdf_plugins::Ikm::new(hex::decode(DEVICE_IKM).unwrap());
    let (keystore, _) = secretstore_setup::KeystoreDir::new(boot.device.keystore_dir()).open_with_ikm(&ikm).unwrap();
    let keys: Value = serde_json::from_slice(keystore.item("node-keys").unwrap().expose()).unwrap();
    let seed = keys["ed25519"].as_str().unwrap().to_string();
    let age_key = keys["age"].as_str().unwrap().to_string();
    for path in regular_files_below(boot.device.path()) {
        let text = String::from_utf8_lossy(&fs::read(&path).unwrap_or_default()).into_owned();
        let pki = path.starts_with(boot.device.path().join("pki"));
        assert!(
            !text.contains("AGE-SECRET-KEY") && !text.contains(&seed) && !text.contains(&age_key[16..]),
            "{} holds a node key",
            path.display()
        );
        assert!(pki || !text.contains("PRIVATE KEY"), "{} holds a private key", path.display());
    }
    assert!(!boot.log().contains(&seed) && !boot.log().contains("AGE-SECRET-KEY"));
}

#[test]
fn secrets_move_between_devices_and_a_bad_bundle_changes_nothing() {
    let (mut a, mut b) = (Boot::new(), Boot::new());
    b.device.set_hardware(OTHER_IKM);
    let (_run_a, _run_b) = (a.start(), b.start());
    stdout(&a.secrets(&["set", "demo/mqtt-password"], b"mqtt-VALUE-from-A-51c3"));
    stdout(&a.secrets(&["set", "demo/db", "--json"], br#"{"username": "edgex", "password": "db-VALUE-from-A-77aa"}"#));
    stdout(&b.secrets(&["set", "demo/mqtt-password"], b"mqtt-VALUE-of-B-0913"));
    let (node_a, node_b) = (node(&a), node(&b));
    let recipient_b = node_b["recipient"].as_str().unwrap();
    let key_a = node_a["signing_key"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("demo.age");
    let exported = stdout(&a.secrets(&["export", "--to", recipient_b, "demo/*", "-o", bundle.to_str().unwrap()], b""));
    assert!(exported.contains("demo/mqtt-password") && exported.contains("demo/db"), "{exported}");
    let armored = fs::read_to_string(&bundle).unwrap();
    assert!(armored.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
    assert!(!armored.contains("VALUE"), "the bundle is encrypted");

    // Bad bundles: each refused with its own message; B's store unchanged.
    let before = store_of(&b);
    let lines: Vec<&str> = armored.lines().collect();
    let truncated = format!("{}\n{}\n", lines[..lines.len() / 2].join("\n"), lines[lines.len() - 1]);
    let mut tampered = armored.clone().into_bytes();
    let at = tampered.len() / 2;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let for_a = dir.path().join("for-a.age");
    stdout(&b.secrets(
        &["export", "--to", node_a["recipient"].as_str().unwrap(), "demo/*", "-o", for_a.to_str().unwrap()],
        b"",
    ));
    let key_b = node_b["signing_key"].as_str().unwrap();
    let cases: Vec<(&str, Vec<u8>, Vec<&str>, &str)> = vec![
        ("truncated", truncated.into_bytes(), vec!["--from", key_a], "damaged"),
        ("tampered", tampered, vec!["--from", key_a], "bundle"),
        ("wrong recipient", fs::read(&for_a).unwrap(), vec!["--from", key_b], "not encrypted to"),
        ("wrong signer", armored.clone().into_bytes(), vec!["--from", key_b], "not a sender you accept"),
        ("signer not named", armored.clone().into_bytes(), vec![], "a key you did not name"),
        ("unsigned not allowed", Vec::new(), vec![], "not signed"),
    ];
    for (what, bytes, flags, says) in cases {
        let file = dir.path().join("bad.age");
        let bytes = if what == "unsigned not allowed" {
            let plain = br#"{"demo/mqtt-password": "EVIL"}"#;
            output_with_stdin(Command::new(age_tool("age")).args(["--armor", "-r", recipient_b]), plain).stdout
        } else {
            bytes
        };
        fs::write(&file, bytes).unwrap();
        let mut args = vec!["import", file.to_str().unwrap()];
        args.extend(flags);
        let out = b.secrets(&args, b"");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        assert!(err.contains(says) && err.contains("nothing was imported"), "{what}: {err}");
        assert!(!err.contains("VALUE") && !err.contains("EVIL"), "{what} leaks a value: {err}");
        assert_eq!(store_of(&b), before, "{what} changed B's store");
    }

    // Dry run: reports, changes nothing.
    let dry = stdout(&b.secrets(&["import", bundle.to_str().unwrap(), "--from", key_a, "--dry-run"], b""));
    assert!(dry.contains("update") && dry.contains("create") && dry.contains("dry run"), "{dry}");
    assert_eq!(store_of(&b), before);
    // The real import: B's service reads A's values; the history says where they came from.
    let done = stdout(&b.secrets(&["import", bundle.to_str().unwrap(), "--from", key_a], b""));
    assert!(done.contains(node_a["node_id"].as_str().unwrap()), "{done}");
    let token = b.token_until_ok(Duration::from_secs(10));
    assert_eq!(b.read(&token, "mqtt-password"), Some(json!({"value": "mqtt-VALUE-from-A-51c3"})));
    assert_eq!(b.read(&token, "db"), Some(json!({"username": "edgex", "password": "db-VALUE-from-A-77aa"})));
    let history = stdout(&b.secrets(&["history", "demo/mqtt-password"], b""));
    assert!(history.contains(&format!("imported from {}", node_a["node_id"].as_str().unwrap())), "{history}");
    // Importing it again changes nothing.
    let again = stdout(&b.secrets(&["import", bundle.to_str().unwrap(), "--from", key_a], b""));
    assert!(again.lines().skip(1).all(|l| l.contains("unchanged")), "{again}");
    // A secret removed with `secrets rm` (its newest version deleted) is written over, not refused.
    stdout(&b.secrets(&["rm", "demo/db"], b""));
    assert_eq!(b.read(&token, "db"), None);
    let over = stdout(&b.secrets(&["import", bundle.to_str().unwrap(), "--from", key_a], b""));
    assert!(over.contains("create    demo/db -> version 2"), "{over}");
    assert_eq!(b.read(&token, "db"), Some(json!({"username": "edgex", "password": "db-VALUE-from-A-77aa"})));
    // Any signer, when the receiver says so: the signer is reported.
    let any = stdout(&b.secrets(&["import", bundle.to_str().unwrap(), "--allow-any-signer", "--dry-run"], b""));
    assert!(any.contains(key_a), "{any}");

    for boot in [&a, &b] {
        for path in
            regular_files_below(boot.device.path()).into_iter().filter(|p| !p.to_string_lossy().contains("/raft/"))
        {
            let text = String::from_utf8_lossy(&fs::read(&path).unwrap_or_default()).into_owned();
            assert!(!text.contains("VALUE-from-A") && !text.contains("VALUE-of-B"), "{} holds a value", path.display());
        }
        assert!(!boot.log().contains("VALUE"));
    }
}

#[test]
fn bundles_interoperate_with_the_age_cli_both_ways() {
    let mut boot = Boot::new();
    let _run = boot.start();
    let recipient = node(&boot)["recipient"].as_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();

    // age → edgeseal: plain JSON encrypted with `age -r`; unsigned, so only with --allow-unsigned.
    let plain =
        br#"{"demo/from-age": "age-CLI-VALUE-3141", "demo/multi": {"user": "u1", "pass": "age-CLI-PASS-2718"}}"#;
    let made = output_with_stdin(Command::new(age_tool("age")).args(["-r", &recipient]), plain);
    assert!(made.status.success());
    let file = dir.path().join("from-age.age");
    fs::write(&file, &made.stdout).unwrap(); // binary (not armored) age output
    let refused = boot.secrets(&["import", file.to_str().unwrap()], b"");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--allow-unsigned"), "{refused:?}");
    stdout(&boot.secrets(&["import", file.to_str().unwrap(), "--allow-unsigned"], b""));
    let token = boot.token_until_ok(Duration::from_secs(10));
    assert_eq!(boot.read(&token, "from-age"), Some(json!({"value": "age-CLI-VALUE-3141"})));
    assert_eq!(boot.read(&token, "multi"), Some(json!({"user": "u1", "pass": "age-CLI-PASS-2718"})));

    // edgeseal → age: `secrets seal` (no device) and `secrets export` both decrypt with `age -d -i`.
    let (key, key_recipient) = age_keygen(dir.path(), "person.key");
    let sealed = output_with_stdin(
        Command::new(boot.client()).args(["secrets", "seal", "--to", &key_recipient]),
        br#"{"demo/sealed": "SEALED-VALUE-1618"}"#,
    );
    assert!(sealed.status.success(), "{}", String::from_utf8_lossy(&sealed.stderr));
    let opened = output_with_stdin(Command::new(age_tool("age")).arg("-d").arg("-i").arg(&key), &sealed.stdout);
    let envelope: Value = serde_json::from_slice(&opened.stdout).unwrap();
    assert_eq!(envelope["format"], "edgeseal-bundle-v1");
    assert_eq!(envelope["payload"], json!({"demo/sealed": "SEALED-VALUE-1618"}));
    assert!(envelope.get("signature").is_none(), "seal makes unsigned bundles");
    let exported = dir.path().join("export.age");
    stdout(&boot.secrets(&["export", "--to", &key_recipient, "demo/from-age", "-o", exported.to_str().unwrap()], b""));
    let opened = Command::new(age_tool("age")).arg("-d").arg("-i").arg(&key).arg(&exported).output().unwrap();
    let envelope: Value = serde_json::from_slice(&opened.stdout).unwrap();
    assert_eq!(envelope["payload"]["demo/from-age"], "age-CLI-VALUE-3141");
    assert!(envelope["signature"].is_string() && envelope["from"].as_str().unwrap().starts_with("node-"));
    // Bad input to seal: a clear usage error, no output.
    let bad = output_with_stdin(
        Command::new(boot.client()).args(["secrets", "seal", "--to", &key_recipient]),
        b"{\"nope\": \"x\"}",
    );
    assert_eq!(bad.status.code(), Some(64), "{}", String::from_utf8_lossy(&bad.stderr));
    assert!(bad.stdout.is_empty());
}
