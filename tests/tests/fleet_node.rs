//! The fleet's node side inside `run` (SPEC §14): a real central OpenBao and two devices booted by
//! the real `security-bootstrap run`, each with its own supervised OpenBao, synced with
//! `security-bootstrap fleet sync` through their admin sockets.
//!
//! - a secret for node 1 only reaches node 1's `demo` service (read with a token from its socket),
//!   node 2 has nothing; `--all` reaches both; an update is version 2 on both; `--expires` in the
//!   past removes it at the next sync; `--not-before` in the future installs it only after then; a
//!   service not configured on the node is skipped and reported;
//! - node 1 restarted with the central store down serves from its cache; the central store back,
//!   it syncs again; a node with a short `sync_interval` gets a new secret without `fleet sync`;
//! - a record tampered in the central store is refused and reported in `status`, the installed
//!   value unchanged;
//! - `run` killed between the two local writes of a sync: the next boot converges, with no new
//!   version of the item already written and the multi-key secret whole;
//! - no K and no V in any file (logs included) under either device's directory.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use base64::Engine as _;
use edgeseal_fleet::config::FleetConfig;
use edgeseal_fleet::OrgKey;
use edgeseal_tests::boot::Boot;
use edgeseal_tests::central::{fleet_cli, init_central, wait_active};
use edgeseal_tests::openbao::OpenBao;
use edgeseal_tests::pki::TestPki;
use edgeseal_tests::{poll_until, regular_files_below};
use nix::sys::signal::Signal;
use serde_json::Value;

/// The crash point `run` reaches after the first local write of a sync.
const MID_INSTALL: &str = secretstore_setup::crash::FLEET_POINTS[0];

fn text(out: &Output) -> String {
    format!(
        "{:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ok(out: Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `fleet sync --json` on `boot`: the exit code and the report.
fn sync(boot: &Boot) -> (Option<i32>, Value) {
    let out = boot.admin_command_as(None, "fleet", &["sync", "--json"], b"");
    let report =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("fleet sync: {}\n{}", text(&out), boot.log()));
    (out.status.code(), report)
}

/// `fleet sync` that must succeed; its report.
fn synced(boot: &Boot) -> Value {
    let (code, report) = sync(boot);
    assert_eq!(code, Some(0), "fleet sync: {report:#}\n{}", boot.log());
    assert_eq!(report["result"], "ok", "{report:#}");
    report
}

/// The `demo` service's secret `name` as the service reads it (a token from the device's socket).
fn read(boot: &Boot, name: &str) -> Option<Value> {
    let token = boot.token_until_ok(Duration::from_secs(30));
    boot.read(&token, name)
}

fn value(boot: &Boot, name: &str) -> Option<String> {
    read(boot, name).map(|data| data["value"].as_str().unwrap().to_string())
}

fn change<'a>(report: &'a Value, secret: &str) -> Option<&'a Value> {
    report["changes"].as_array().unwrap().iter().find(|c| c["secret"] == secret)
}

/// `demo`'s secrets on the device (`secrets list demo --json`): name → (version, source).
fn listed(boot: &Boot, name: &str) -> Option<(u64, String)> {
    let out = boot.secrets(&["list", "demo", "--json"], b"");
    let list: Value = serde_json::from_str(&ok(out, "secrets list")).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .map(|s| (s["version"].as_u64().unwrap(), s["source"].as_str().unwrap_or_default().to_string()))
}

fn status(boot: &Boot) -> Value {
    let out = boot.admin_command_as(None, "status", &["--json"], b"");
    serde_json::from_str::<Value>(&ok(out, "status")).unwrap()["fleet"].clone()
}

/// The node's id and its `node show --json` in a file, through its admin socket.
fn node_show(boot: &Boot, dir: &Path) -> (String, PathBuf) {
    let shown = ok(boot.admin_command_as(None, "node", &["show", "--json"], b""), "node show");
    let public: Value = serde_json::from_str(&shown).unwrap();
    let id = public["node_id"].as_str().unwrap().to_string();
    let file = dir.join(format!("{id}.json"));
    std::fs::write(&file, shown).unwrap();
    (id, file)
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// No needle in any file under the device directory but the plug-ins themselves.
fn scan(boot: &Boot, needles: &[String], step: &str) {
    for file in regular_files_below(boot.device.path()) {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("kdf-plugin") {
            continue;
        }
        let bytes = std::fs::read(&file).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        for needle in needles {
            assert!(!text.contains(needle.as_str()), "{step}: {} holds {needle:?} in clear", file.display());
        }
    }
}

#[test]
fn fleet_nodes_sync_inside_run() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let pki = TestPki::new();
    let mut bao = OpenBao::start(&pki);
    let (client, root, share) = rt.block_on(init_central(&bao));
    let dir = tempfile::tempdir().unwrap();
    let org_file = dir.path().join("org.key");
    let org_arg = org_file.to_str().unwrap().to_string();
    let org_pub =
        ok(fleet_cli(&bao, &root, &["org-key", "new", "-o", &org_arg], b""), "org-key new").trim().to_string();

    // Two devices whose edgeseal.yaml names the fleet; their boot-time sync fails (not enrolled yet)
    // and the boot goes on.
    let mut fleet = FleetConfig {
        address: bao.address(),
        ca_cert: bao.ca().to_path_buf(),
        org_public_key: org_pub,
        sync_interval: Duration::from_secs(3600),
        mount: "fleet".into(),
        cert_mount: "fleet-cert".into(),
    };
    let (mut b1, mut b2) = (Boot::new(), Boot::new());
    b1.set_fleet(Some(fleet.clone()));
    b2.set_fleet(Some(fleet.clone()));
    let mut run1 = b1.start();
    let mut run2 = b2.start();
    let (n1, file1) = node_show(&b1, dir.path());
    let (n2, file2) = node_show(&b2, dir.path());
    for (id, file) in [(&n1, &file1), (&n2, &file2)] {
        let args = ["enroll", id.as_str(), "--identity", file.to_str().unwrap(), "--org-key", &org_arg];
        ok(fleet_cli(&bao, &root, &args, b""), "enroll");
    }
    let set = |bao: &OpenBao, secret: &str, target: &[&str], extra: &[&str], stdin: &str| {
        let mut args = vec!["secret", "set", secret];
        args.extend_from_slice(target);
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--org-key", &org_arg]);
        ok(fleet_cli(bao, &root, &args, stdin.as_bytes()), "secret set");
    };
    let mut values = Vec::new();

    // For node 1 only: node 1's demo service reads it, node 2 has nothing.
    set(&bao, "demo/motd", &["--node", &n1], &[], "fleet-motd-one");
    values.push("fleet-motd-one".to_string());
    let r1 = synced(&b1);
    let r2 = synced(&b2);
    assert_eq!(change(&r1, "demo/motd").unwrap()["action"], "install", "{r1:#}");
    assert!(r2["changes"].as_array().unwrap().is_empty(), "{r2:#}");
    assert_eq!(value(&b1, "motd").as_deref(), Some("fleet-motd-one"));
    assert_eq!(read(&b2, "motd"), None, "node 2 has nothing");
    let (_, source) = listed(&b1, "motd").unwrap();
    assert!(source.starts_with("fleet"), "source: {source}");
    // The human report (`--config`: the device's admin socket from its edgeseal.yaml) names, never values.
    let human = b1.command(&["fleet", "sync"], None);
    assert!(human.status.success(), "fleet sync --config: {}", text(&human));
    assert!(!String::from_utf8_lossy(&human.stdout).contains("fleet-motd"));

    // --all reaches both; an update is version 2 on both.
    set(&bao, "demo/shared", &["--all"], &[], "fleet-shared-one");
    set(&bao, "demo/shared", &["--all"], &[], "fleet-shared-two");
    values.extend(["fleet-shared-one".to_string(), "fleet-shared-two".to_string()]);
    for boot in [&b1, &b2] {
        let report = synced(boot);
        assert_eq!(change(&report, "demo/shared").unwrap()["version"], 2, "{report:#}");
        assert_eq!(value(boot, "shared").as_deref(), Some("fleet-shared-two"));
        assert_eq!(report["versions"]["demo/shared"], 2);
    }

    // Expired: removed at the next sync.
    set(&bao, "demo/shared", &["--all"], &["--expires", "2001-01-01T00:00:00Z"], "fleet-shared-expired");
    values.push("fleet-shared-expired".to_string());
    for boot in [&b1, &b2] {
        let report = synced(boot);
        assert_eq!(change(&report, "demo/shared").unwrap()["action"], "expired", "{report:#}");
        assert_eq!(read(boot, "shared"), None, "an expired secret is removed");
    }

    // Not valid yet: not installed until then; a service not on this device: skipped, reported.
    let not_before = edgeseal_fleet::unix_now() + 3;
    set(&bao, "demo/later", &["--node", &n1], &["--not-before", &rfc3339(not_before)], "fleet-later");
    set(&bao, "elsewhere/x", &["--node", &n1], &[], "fleet-elsewhere");
    values.extend(["fleet-later".to_string(), "fleet-elsewhere".to_string()]);
    let report = synced(&b1);
    if edgeseal_fleet::unix_now() < not_before {
        assert!(report["waiting"].get("demo/later").is_some(), "{report:#}");
        assert_eq!(read(&b1, "later"), None, "not installed before not_before");
    }
    assert_eq!(report["skipped"], serde_json::json!(["elsewhere/x"]), "{report:#}");
    let installed = poll_until(Duration::from_secs(60), || {
        synced(&b1);
        value(&b1, "later")
    });
    assert_eq!(installed.as_deref(), Some("fleet-later"), "installed once not_before has passed");

    // Status and metrics show the last sync, never a value.
    let fleet_status = status(&b1);
    assert_eq!(fleet_status["result"], "ok", "{fleet_status:#}");
    assert_eq!(fleet_status["generation"], 1);
    assert_eq!(fleet_status["installed"]["demo/motd"], 1, "{fleet_status:#}");
    assert_eq!(fleet_status["offline"], false);
    let metrics = Command::new("curl")
        .args(["-sS", "--unix-socket"])
        .arg(b1.admin_socket())
        .arg("http://localhost/metrics")
        .output()
        .unwrap();
    let metrics = String::from_utf8_lossy(&metrics.stdout).to_string();
    assert!(metrics.contains("edgeseal_fleet_syncs_total{result=\"ok\"}"), "{metrics}");
    assert!(metrics.contains("edgeseal_fleet_last_success_timestamp_seconds"), "{metrics}");

    // Node 1 restarts with the central store down: it boots, serves from its cache, says offline.
    run1.stop(Signal::SIGTERM, Duration::from_secs(30));
    bao.stop();
    let mut run1 = b1.start();
    let (code, report) = sync(&b1);
    assert_eq!(code, Some(69), "{report:#}");
    assert_eq!((report["result"].clone(), report["offline"].clone()), ("offline".into(), true.into()), "{report:#}");
    assert_eq!(value(&b1, "motd").as_deref(), Some("fleet-motd-one"));
    assert_eq!(status(&b1)["offline"], true);
    // The central store back: node 1 syncs again.
    bao.restart();
    rt.block_on(client.unseal(&share)).unwrap();
    rt.block_on(wait_active(&client, &root, &bao));
    // (Just unsealed, the central store may answer a moment with errors: the node's next sync is
    // the one that counts, as with its interval.)
    let report = poll_until(Duration::from_secs(60), || {
        let (code, report) = sync(&b1);
        if code != Some(0) {
            eprintln!("sync right after the central store came back: {report}");
        }
        (code == Some(0)).then_some(report)
    })
    .expect("node 1 syncs once the central store is back");
    assert_eq!((report["result"].clone(), report["offline"].clone()), ("ok".into(), false.into()), "{report:#}");

    // Node 2 with a short sync_interval: a new secret arrives without `fleet sync`.
    run2.stop(Signal::SIGTERM, Duration::from_secs(30));
    fleet.sync_interval = Duration::from_secs(1);
    b2.set_fleet(Some(fleet));
    let mut run2 = b2.start();
    set(&bao, "demo/periodic", &["--node", &n2], &[], "fleet-periodic");
    values.push("fleet-periodic".to_string());
    let arrived = poll_until(Duration::from_secs(60), || value(&b2, "periodic"));
    assert_eq!(arrived.as_deref(), Some("fleet-periodic"), "synced by the interval:\n{}", b2.log());

    // A record tampered in the central store: refused, reported, the installed value unchanged.
    let path = format!("nodes/{n1}/secrets/demo/motd");
    let original = rt.block_on(client.kv_read(&root, "fleet", &path)).unwrap().unwrap();
    let mut record = original.clone();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut ciphertext = b64.decode(record["ciphertext"].as_str().unwrap()).unwrap();
    ciphertext[3] ^= 0x80;
    record["ciphertext"] = b64.encode(ciphertext).into();
    rt.block_on(client.kv_write(&root, "fleet", &path, &record, None)).unwrap();
    let (code, report) = sync(&b1);
    assert_eq!((code, report["result"].clone()), (Some(1), "refused".into()), "{report:#}");
    assert_eq!(report["refused"][0]["secret"], "demo/motd", "{report:#}");
    assert!(report["refused"][0]["reason"].as_str().unwrap().starts_with("bad_signature"), "{report:#}");
    assert_eq!(value(&b1, "motd").as_deref(), Some("fleet-motd-one"), "the installed value is unchanged");
    assert_eq!(listed(&b1, "motd").unwrap().0, 1, "no new local version");
    let fleet_status = status(&b1);
    assert_eq!(fleet_status["refused"][0]["secret"], "demo/motd", "{fleet_status:#}");
    rt.block_on(client.kv_write(&root, "fleet", &path, &original, None)).unwrap();
    assert!(synced(&b1)["refused"].as_array().unwrap().is_empty(), "the genuine record is accepted again");

    // Killed between the two local writes of a sync (a multi-key secret and a single one): the
    // next boot converges; nothing is written twice; the multi-key secret is whole.
    run1.stop(Signal::SIGTERM, Duration::from_secs(30));
    set(&bao, "demo/api", &["--node", &n1], &[], "fleet-api-key");
    set(&bao, "demo/db", &["--node", &n1], &["--json"], r#"{"username":"fleet-user","password":"fleet-db-pass"}"#);
    values.extend(["fleet-api-key".to_string(), "fleet-user".to_string(), "fleet-db-pass".to_string()]);
    let died = b1.run_until_crash(MID_INSTALL);
    assert!(!died.success(), "run died at {MID_INSTALL}");
    assert!(b1.log().contains(&format!("\"point\":\"{MID_INSTALL}\"")), "killed at {MID_INSTALL}:\n{}", b1.log());
    b1.kill_openbao();
    let mut run1 = b1.start();
    let settled = poll_until(Duration::from_secs(60), || {
        let report = synced(&b1);
        (report["versions"].get("demo/db").is_some()).then_some(report)
    })
    .expect("the next sync converges");
    assert!(change(&settled, "demo/api").is_none() || change(&settled, "demo/api").unwrap()["local_version"] == 1);
    assert_eq!(value(&b1, "api").as_deref(), Some("fleet-api-key"));
    assert_eq!(listed(&b1, "api").unwrap().0, 1, "written once, not again after the crash");
    let db = read(&b1, "db").unwrap();
    assert_eq!((db["username"].as_str(), db["password"].as_str()), (Some("fleet-user"), Some("fleet-db-pass")));

    // No K and no V in any file of either device (keystore, cache, installed file, logs, OpenBao's data).
    run1.stop(Signal::SIGTERM, Duration::from_secs(30));
    run2.stop(Signal::SIGTERM, Duration::from_secs(30));
    let org = OrgKey::load(&org_file).unwrap();
    let k = org.current().key.expose().to_vec();
    let mut needles = values;
    needles.extend([hex::encode(&k), hex::encode(&k).to_uppercase(), b64.encode(&k)]);
    let cache = b1.device.keystore_dir().join(edgeseal_fleet::cache::FILE);
    assert!(cache.exists(), "node 1 keeps a cache");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&cache).unwrap().permissions()) & 0o777,
        0o600
    );
    scan(&b1, &needles, "node 1");
    scan(&b2, &needles, "node 2");
}
