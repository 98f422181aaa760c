//! Backup and restore (SPEC §13), against the real `security-bootstrap run` and real OpenBao stores
//! of two devices with different hardware: device A's store, backed up to an offline recovery key,
//! restored onto device B, serves A's values to B's services; tokens issued before the backup are
//! refused; B's OpenBao opens itself after a restart; A's keystore opens nothing on B; a restore
//! killed at every step finishes when run again; a store B already holds is not replaced without
//! `--force`; the backup decrypts with the reference `age` CLI and holds nothing in clear.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::process::{Command, Output};
use std::time::Duration;

use base64::Engine as _;
use edgeseal_tests::boot::Boot;
use edgeseal_tests::device::{DEVICE_IKM, OTHER_IKM};
use edgeseal_tests::{age_keygen, age_tool, regular_files_below};
use kdf_plugins::Ikm;
use nix::sys::signal::Signal;
use secretstore_setup::seal::material::SealMaterial;
use secretstore_setup::KeystoreDir;
use serde_json::{json, Value};

const MQTT: &str = "mqtt-BACKED-UP-6a4f";
const DB_PASS: &str = "db-BACKED-UP-93c1";

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "{:?}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Device A with a set, a multi-key and a generated secret, backed up to a new recovery key: the
/// backup file, the recovery key file, the greeting, a token issued before the backup, and A's seal
/// key (hex) for the plaintext scans. A is stopped.
struct Backedup {
    a: Boot,
    dir: tempfile::TempDir,
    file: std::path::PathBuf,
    key: std::path::PathBuf,
    greeting: Value,
    old_token: String,
    seal_key: String,
    /// A's signing key (`node show`), what a restore pins with --from.
    signer: String,
}

fn back_up_device_a() -> Backedup {
    let mut a = Boot::new();
    let mut run = a.start();
    ok(&a.secrets(&["set", "demo/mqtt-password"], MQTT.as_bytes()));
    ok(&a.secrets(
        &["set", "demo/db", "--json"],
        format!(r#"{{"username": "edgex", "password": "{DB_PASS}"}}"#).as_bytes(),
    ));
    let old_token = a.token_until_ok(Duration::from_secs(10));
    let greeting = a.read(&old_token, "greeting").expect("the generated secret");
    let dir = tempfile::tempdir().unwrap();
    let (key, recipient) = age_keygen(dir.path(), "recovery.key");
    let file = dir.path().join("a.backup");
    let node: Value = serde_json::from_str(&ok(&a.admin_command_as(None, "node", &["show", "--json"], b""))).unwrap();
    let signer = node["signing_key"].as_str().unwrap().to_string();
    // Only root makes backups (they carry the seal key), whatever admin.uids allows.
    let made = ok(&a.admin_command_as(None, "backup", &["--to", &recipient, "-o", file.to_str().unwrap()], b""));
    assert!(made.contains("written to"), "{made}");
    run.stop(Signal::SIGTERM, Duration::from_secs(30));
    let ikm = Ikm::new(hex::decode(DEVICE_IKM).unwrap());
    let (keystore, _) = KeystoreDir::new(a.device.keystore_dir()).open_with_ikm(&ikm).unwrap();
    let seal_key = SealMaterial::from_keystore(&keystore).unwrap().unwrap().current.hex().expose().to_string();
    Backedup { a, dir, file, key, greeting, old_token, seal_key, signer }
}

fn restore(b: &Boot, backed: &Backedup, extra: &[&str], crash_at: Option<&str>) -> Output {
    let mut args = vec!["restore", "--identity", backed.key.to_str().unwrap(), backed.file.to_str().unwrap()];
    args.extend(["--from", backed.signer.as_str()]);
    args.extend(extra);
    b.command(&args, crash_at)
}

/// B serves A's values (after a restart of its OpenBao too) and refuses A's old token.
fn assert_serves_a(b: &mut Boot, backed: &Backedup) {
    let mut run = b.start();
    let token = b.token_until_ok(Duration::from_secs(20));
    assert_eq!(b.read(&token, "mqtt-password"), Some(json!({"value": MQTT})));
    assert_eq!(b.read(&token, "db"), Some(json!({"username": "edgex", "password": DB_PASS})));
    assert_eq!(b.read(&token, "greeting"), Some(backed.greeting.clone()));
    let (status, _) = b.bao("GET", "secret/data/edgeseal/demo/greeting", &backed.old_token);
    assert_eq!(status, 403, "a token issued on A before the backup is refused");
    b.kill_openbao();
    let token = b.token_until_ok(Duration::from_secs(60));
    assert_eq!(b.read(&token, "mqtt-password"), Some(json!({"value": MQTT})), "B's OpenBao opened itself again");
    run.stop(Signal::SIGTERM, Duration::from_secs(30));
}

fn assert_nothing_in_clear(boot: &Boot, backed: &Backedup) {
    let b64 = base64::engine::general_purpose::STANDARD;
    let key_b64 = b64.encode(hex::decode(&backed.seal_key).unwrap());
    for path in regular_files_below(boot.device.path()).into_iter().filter(|p| !p.to_string_lossy().contains("/raft/"))
    {
        let text = String::from_utf8_lossy(&fs::read(&path).unwrap_or_default()).into_owned();
        for secret in [MQTT, DB_PASS, backed.seal_key.as_str(), key_b64.as_str(), backed.old_token.as_str()] {
            assert!(!text.contains(secret), "{} holds a secret in clear", path.display());
        }
    }
    assert!(!boot.log().contains(MQTT) && !boot.log().contains(&backed.seal_key));
}

#[test]
fn a_backup_restores_onto_other_hardware_which_serves_its_values_and_refuses_its_old_tokens() {
    let backed = back_up_device_a();
    // The backup: armored age, readable by the reference CLI with the recovery key, nothing in clear.
    let armored = fs::read_to_string(&backed.file).unwrap();
    assert!(armored.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
    for secret in [MQTT, DB_PASS, backed.seal_key.as_str()] {
        assert!(!armored.contains(secret));
    }
    let opened = Command::new(age_tool("age")).arg("-d").arg("-i").arg(&backed.key).arg(&backed.file).output().unwrap();
    let envelope: Value = serde_json::from_slice(&opened.stdout).unwrap();
    assert_eq!((envelope["format"].as_str(), envelope["kind"].as_str()), (Some("edgeseal-bundle-v1"), Some("backup")));
    assert_eq!(envelope["payload"]["format"], "edgeseal-backup-v1");
    assert!(
        envelope["payload"]["items"]["seal-key"].is_string() && envelope["payload"]["items"].get("node-keys").is_none()
    );

    // A rekeys after the backup (a new static seal key, completed by its next boot): the backup keeps
    // the key it was made with, and still restores below.
    let mut a = backed.a;
    ok(&a.command(&["rotate-seal-key"], None));
    let mut run = a.start();
    run.stop(Signal::SIGTERM, Duration::from_secs(30));
    let ikm = Ikm::new(hex::decode(DEVICE_IKM).unwrap());
    let (keystore, _) = KeystoreDir::new(a.device.keystore_dir()).open_with_ikm(&ikm).unwrap();
    let rekeyed = SealMaterial::from_keystore(&keystore).unwrap().unwrap();
    assert!(rekeyed.next.is_none() && rekeyed.current.hex().expose() != backed.seal_key, "A's rekey completed");
    let backed = Backedup { a, ..backed };

    // Wrong identity, tampered file: refused, nothing changed on B (its keystore does not even exist).
    let mut b = Boot::new();
    b.device.set_hardware(OTHER_IKM);
    let (other_key, _) = age_keygen(backed.dir.path(), "other.key");
    let wrong = b.command(
        &["restore", "--identity", other_key.to_str().unwrap(), backed.file.to_str().unwrap(), "--allow-any-signer"],
        None,
    );
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("not encrypted to"), "{wrong:?}");
    // The signer must be named (or any signer accepted explicitly).
    let unnamed =
        b.command(&["restore", "--identity", backed.key.to_str().unwrap(), backed.file.to_str().unwrap()], None);
    assert_eq!(unnamed.status.code(), Some(64), "{unnamed:?}");
    let other_node = format!("ed25519:{}", base64::engine::general_purpose::STANDARD.encode([7u8; 32]));
    let pinned_wrong = b.command(
        &["restore", "--identity", backed.key.to_str().unwrap(), backed.file.to_str().unwrap(), "--from", &other_node],
        None,
    );
    let said = String::from_utf8_lossy(&pinned_wrong.stderr);
    assert!(said.contains("not a sender you accept") || said.contains("not a signing key"), "{said}");
    let tampered = backed.dir.path().join("tampered.backup");
    let mut bytes = armored.clone().into_bytes();
    let at = bytes.len() / 2;
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    fs::write(&tampered, bytes).unwrap();
    let bad = b.command(
        &["restore", "--identity", backed.key.to_str().unwrap(), tampered.to_str().unwrap(), "--from", &backed.signer],
        None,
    );
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("nothing was changed"), "{bad:?}");
    assert!(!b.device.keystore_dir().join("keystore.json").exists(), "a refused restore wrote nothing");

    let restored = restore(&b, &backed, &[], None);
    assert!(
        restored.status.success(),
        "{}\nopenbao.log:\n{}",
        String::from_utf8_lossy(&restored.stderr),
        b.openbao_log()
    );
    let restored = String::from_utf8_lossy(&restored.stdout);
    assert!(restored.contains("revoked"), "{restored}");
    assert_serves_a(&mut b, &backed);

    // A's keystore opens nothing on B's hardware.
    let on_b = Ikm::new(hex::decode(OTHER_IKM).unwrap());
    assert!(KeystoreDir::new(backed.a.device.keystore_dir()).open_with_ikm(&on_b).is_err());
    // B now holds a store: a second restore is refused without --force, and changes nothing.
    let keystore = fs::read(b.device.keystore_dir().join("keystore.json")).unwrap();
    let again = restore(&b, &backed, &[], None);
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"), "{again:?}");
    assert_eq!(fs::read(b.device.keystore_dir().join("keystore.json")).unwrap(), keystore);
    assert_nothing_in_clear(&b, &backed);
    assert_nothing_in_clear(&backed.a, &backed);
}

#[test]
fn a_restore_killed_at_any_step_finishes_when_run_again_and_a_replaced_store_is_kept() {
    let backed = back_up_device_a();
    let mut b = Boot::new();
    b.device.set_hardware(OTHER_IKM);
    // B holds a store of its own, which `--force` replaces: it is kept aside, keys and storage.
    let mut run = b.start();
    ok(&b.secrets(&["set", "demo/mqtt-password"], b"B-OWN-VALUE-5150"));
    run.stop(Signal::SIGTERM, Duration::from_secs(30));
    let on_b = Ikm::new(hex::decode(OTHER_IKM).unwrap());
    let store_b = KeystoreDir::new(b.device.keystore_dir());
    let own_key = store_b.open_with_ikm(&on_b).unwrap().0.item("seal-key").unwrap().clone();
    let points = secretstore_setup::crash::RESTORE_POINTS;
    for (i, point) in points.iter().enumerate() {
        let killed = restore(&b, &backed, &["--force"], Some(point));
        assert_eq!(
            killed.status.code(),
            None,
            "{point}: restore was killed: {}",
            String::from_utf8_lossy(&killed.stderr)
        );
        if *point == "restore-after-set-aside" {
            let (keystore, _) = store_b.open_with_ikm(&on_b).unwrap();
            assert_eq!(keystore.item("replaced-seal-key"), Some(&own_key), "B's own seal key is kept");
            let aside: Vec<_> = fs::read_dir(b.data_dir())
                .unwrap()
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("raft.replaced-"))
                .collect();
            assert_eq!(aside.len(), 1, "B's own storage is kept aside");
            assert!(fs::read_dir(aside[0].path()).unwrap().next().is_some());
        }
        if i == 0 {
            // An interrupted restore: `run` refuses to start, pointing at restore.
            let mut run = b.spawn();
            let exited = run.exited_within(Duration::from_secs(60)).expect("run refuses");
            assert!(!exited.success() && b.log().contains("restore into this store was interrupted"), "{}", b.log());
        }
    }
    // The last point is after the restore proper: `run` converges and serves. The others: a rerun of
    // restore (without --force: it finishes its own restore) completes.
    assert_serves_a(&mut b, &backed);
    for point in &points[..points.len() - 1] {
        let killed = restore(&b, &backed, &["--force"], Some(point));
        assert_eq!(killed.status.code(), None, "{point}");
        ok(&restore(&b, &backed, &[], None));
        assert_serves_a(&mut b, &backed);
    }
    assert_nothing_in_clear(&b, &backed);
}
