//! secretstore-setup against a real OpenBao 2.x (raft, TLS, file audit): first boot, reboot, the
//! watchdog, what each token may do, removed services, and no secret in plaintext anywhere.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use edgeseal_tests::device::{service, Device};
use edgeseal_tests::openbao::OpenBao;
use edgeseal_tests::pki::TestPki;
use openbao_client::Token;
use secretstore_setup::keystore::{derive_file_kek, open};
use secretstore_setup::setup::{Setup, SetupError};
use secretstore_setup::KeystoreDir;
use serde_json::Value;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn file_token(device: &Device, svc: &str) -> (Token, Value) {
    let path = device.file_tokens_dir().join(svc).join("secrets-token.json");
    let json: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    (Token::new(json["auth"]["client_token"].as_str().unwrap()), json)
}

fn shares(device: &Device) -> Vec<Vec<u8>> {
    let store = KeystoreDir::new(device.keystore_dir());
    let file = store.read().unwrap().unwrap();
    let ikm = kdf_plugins::Ikm::new(hex::decode(edgeseal_tests::device::DEVICE_IKM).unwrap());
    let kek = derive_file_kek(&file, &ikm).unwrap();
    open(&file, &kek).unwrap().shares().iter().map(|s| s.expose().to_vec()).collect()
}

fn all_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            all_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

struct Fixture {
    _pki: TestPki,
    bao: OpenBao,
    device: Device,
    setup: Setup,
}

fn fixture() -> Fixture {
    let pki = TestPki::new();
    let bao = OpenBao::start(&pki);
    let device = Device::new();
    let setup = device.setup(
        &bao,
        vec![
            service("alpha", &["db-password"], Some((2002, 2001))),
            service("beta", &["api-key"], Some((2003, 2001))),
            service("gamma", &[], None),
        ],
    );
    Fixture { _pki: pki, bao, device, setup }
}

#[test]
fn first_boot_initializes_unseals_and_configures_then_a_second_run_changes_nothing() {
    let f = fixture();
    let rt = rt();
    let report = rt.block_on(f.setup.run()).unwrap();
    assert!(report.initialized, "{report:?}");
    assert!(report.changes.iter().any(|c| c.contains("policy edgeseal-svc-alpha")), "{report:?}");
    assert!(
        report.changes.iter().any(|c| c.contains("generated secret secret/edgeseal/alpha/db-password")),
        "{report:?}"
    );

    let client = f.setup.client().unwrap();
    let health = rt.block_on(client.health()).unwrap();
    assert!(health.initialized && !health.sealed);

    // Keystore and token files: modes and owners.
    let ks = f.device.keystore_dir().join("keystore.json");
    assert_eq!(fs::metadata(&ks).unwrap().permissions().mode() & 0o777, 0o600);
    let token_file = f.device.file_tokens_dir().join("alpha/secrets-token.json");
    let meta = fs::metadata(&token_file).unwrap();
    assert_eq!((meta.permissions().mode() & 0o777, meta.uid(), meta.gid()), (0o600, 2002, 2001));
    let dir_meta = fs::metadata(token_file.parent().unwrap()).unwrap();
    assert_eq!((dir_meta.permissions().mode() & 0o777, dir_meta.uid()), (0o700, 2002));
    assert!(!f.device.file_tokens_dir().join("gamma").exists());
    let (_, json) = file_token(&f.device, "alpha");
    assert!(json["auth"]["accessor"].is_string() && json["auth"]["policies"].is_array(), "EdgeX shape: {json}");
    assert_eq!(json["auth"]["lease_duration"], 3600, "the configured TTL: {json}");

    let second = rt.block_on(f.setup.run()).unwrap();
    assert!(!second.initialized && !second.unsealed);
    assert!(second.changes.is_empty(), "a converged store is left alone: {:?}", second.changes);
    assert!(second.refreshed.iter().any(|r| r.contains("file token of alpha")), "{second:?}");
}

#[test]
fn a_file_token_reads_its_own_secret_and_nothing_else() {
    let f = fixture();
    let rt = rt();
    rt.block_on(f.setup.run()).unwrap();
    let client = f.setup.client().unwrap();
    let (alpha, _) = file_token(&f.device, "alpha");
    let own = rt.block_on(client.kv_read(&alpha, "secret", "edgeseal/alpha/db-password")).unwrap().unwrap();
    let value = own["value"].as_str().unwrap();
    assert!(value.len() >= 40, "a generated secret is long and random");
    let denied = rt.block_on(client.kv_read(&alpha, "secret", "edgeseal/beta/api-key")).unwrap_err();
    assert_eq!(denied.status(), Some(403), "{denied}");
    let denied = rt.block_on(client.list_policies(&alpha)).unwrap_err();
    assert_eq!(denied.status(), Some(403));

    // Secrets are generated once: a reboot keeps them, and the superseded file token is revoked.
    rt.block_on(f.setup.run()).unwrap();
    let (alpha2, _) = file_token(&f.device, "alpha");
    let again = rt.block_on(client.kv_read(&alpha2, "secret", "edgeseal/alpha/db-password")).unwrap().unwrap();
    assert_eq!(again["value"].as_str().unwrap(), value);
    let revoked = rt.block_on(client.lookup_self(&alpha)).unwrap_err();
    assert_eq!(revoked.status(), Some(403), "the previous file token is revoked: {revoked}");
}

#[test]
fn the_issuing_token_can_only_create_service_tokens() {
    let f = fixture();
    let rt = rt();
    rt.block_on(f.setup.run()).unwrap();
    let client = f.setup.client().unwrap();
    let store = KeystoreDir::new(f.device.keystore_dir());
    let file = store.read().unwrap().unwrap();
    let ikm = kdf_plugins::Ikm::new(hex::decode(edgeseal_tests::device::DEVICE_IKM).unwrap());
    let keystore = store.open(&derive_file_kek(&file, &ikm).unwrap()).unwrap();
    let issuer = Token::new(std::str::from_utf8(keystore.item("token-issuer").unwrap().expose()).unwrap());

    let meta = serde_json::Map::new();
    let made = rt.block_on(client.create_token(&issuer, "edgeseal-svc-beta", &meta, Some(600))).unwrap();
    assert_eq!(made.other["token_policies"], serde_json::json!(["default", "edgeseal-svc-beta"]));
    for role in ["edgeseal-token-issuer", "default"] {
        let err = rt.block_on(client.create_token(&issuer, role, &meta, None)).unwrap_err();
        assert!(matches!(err.status(), Some(403 | 400)), "{role}: {err}");
    }
    let err = rt.block_on(client.kv_read(&issuer, "secret", "edgeseal/alpha/db-password")).unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    let err = rt.block_on(client.list_policies(&issuer)).unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    // It can revoke by accessor (the token server needs that).
    rt.block_on(client.revoke_accessor(&issuer, &made.accessor)).unwrap();
}

#[test]
fn after_an_openbao_restart_the_watchdog_unseals_it_again() {
    let mut f = fixture();
    let rt = rt();
    rt.block_on(f.setup.run()).unwrap();
    f.bao.restart();
    let client = f.setup.client().unwrap();
    assert!(rt.block_on(client.health()).unwrap().sealed, "a restarted OpenBao comes back sealed");

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let setup = f.setup.clone();
    let watch_client = client.clone();
    let unsealed = rt.block_on(async move {
        let watchdog = tokio::spawn(async move {
            secretstore_setup::watchdog::run(&setup, &watch_client, async {
                let _ = stopped.await;
            })
            .await;
        });
        let unsealed = edgeseal_tests::poll_until_async(std::time::Duration::from_secs(20), || async {
            client.health().await.is_ok_and(|h| !h.sealed).then_some(())
        })
        .await
        .is_some();
        let _ = stop.send(());
        let _ = watchdog.await;
        unsealed
    });
    assert!(unsealed, "the watchdog re-unseals a restarted OpenBao without an operator");
    // And a reboot run after that still converges, using the stored bootstrap credential.
    let report = rt.block_on(f.setup.run()).unwrap();
    assert!(report.changes.is_empty(), "{report:?}");
}

#[test]
fn a_service_removed_from_the_config_loses_its_policy_role_and_file_token() {
    let f = fixture();
    let rt = rt();
    rt.block_on(f.setup.run()).unwrap();
    let client = f.setup.client().unwrap();
    let (beta, _) = file_token(&f.device, "beta");

    let mut reduced = f.setup.clone();
    reduced.services.retain(|s| s.name != "beta");
    let report = rt.block_on(reduced.run()).unwrap();
    for expected in
        ["token role edgeseal-svc-beta removed", "policy edgeseal-svc-beta removed", "file token of beta revoked"]
    {
        assert!(report.changes.iter().any(|c| c.contains(expected)), "{expected}: {report:?}");
    }
    assert!(!f.device.file_tokens_dir().join("beta").exists());
    assert_eq!(rt.block_on(client.lookup_self(&beta)).unwrap_err().status(), Some(403));
}

#[test]
fn no_share_root_token_or_secret_value_in_plaintext_on_disk_or_in_logs() {
    let f = fixture();
    let rt = rt();
    rt.block_on(f.setup.run()).unwrap();
    rt.block_on(f.setup.run()).unwrap();
    let client = f.setup.client().unwrap();
    let (alpha, _) = file_token(&f.device, "alpha");
    let secret = rt.block_on(client.kv_read(&alpha, "secret", "edgeseal/alpha/db-password")).unwrap().unwrap();
    let secret = secret["value"].as_str().unwrap().to_string();

    use base64::Engine as _;
    let mut needles: Vec<(String, Vec<u8>)> = vec![("kv secret".into(), secret.into_bytes())];
    for (i, share) in shares(&f.device).iter().enumerate() {
        needles.push((format!("share {i} raw"), share.clone()));
        needles.push((format!("share {i} hex"), hex::encode(share).into_bytes()));
        needles
            .push((format!("share {i} base64"), base64::engine::general_purpose::STANDARD.encode(share).into_bytes()));
    }
    let mut files = Vec::new();
    all_files(f.device.path(), &mut files);
    all_files(f.bao.dir(), &mut files);
    files.retain(|p| !p.starts_with(f.bao.dir().join("data")));
    assert!(files.iter().any(|p| p.ends_with("audit.log")), "the audit log is checked too");
    for file in &files {
        let bytes = fs::read(file).unwrap();
        for (what, needle) in &needles {
            assert!(!bytes.windows(needle.len()).any(|w| w == needle.as_slice()), "{what} found in {}", file.display());
        }
        // Root tokens look like s.<24 chars>; only token files may hold tokens, and those are service tokens.
        if !file.ends_with("secrets-token.json") {
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains("\"s.") && !text.contains("hvs."), "a token in {}", file.display());
        }
    }
}

#[test]
fn openbao_unreachable_is_a_bounded_wait_and_a_clear_error() {
    let pki = TestPki::new();
    let mut bao = OpenBao::start(&pki);
    bao.stop();
    let device = Device::new();
    let mut setup = device.setup(&bao, vec![]);
    setup.store.wait_timeout = std::time::Duration::from_secs(1);
    let err = rt().block_on(setup.run()).unwrap_err();
    assert!(matches!(err, SetupError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("did not answer within 1s"), "{err}");
    assert!(!device.keystore_dir().exists(), "nothing written");
}

#[test]
fn an_initialized_openbao_without_our_keystore_is_refused_and_nothing_is_touched() {
    let f = fixture();
    let rt = rt();
    rt.block_on(f.setup.run()).unwrap();
    let stranger = Device::new();
    let setup = stranger.setup(&f.bao, vec![]);
    let err = rt.block_on(setup.run()).unwrap_err();
    assert!(matches!(err, SetupError::KeystoreMissing { .. }), "{err:?}");
    assert!(err.to_string().contains("already initialized"), "{err}");
    assert!(!stranger.keystore_dir().exists());
}

#[test]
fn different_hardware_is_refused_with_the_hardware_changed_error_and_nothing_is_touched() {
    let mut f = fixture();
    let rt = rt();
    rt.block_on(f.setup.run()).unwrap();
    f.bao.restart();
    f.device.set_hardware(edgeseal_tests::device::OTHER_IKM);
    let before = fs::read(f.device.keystore_dir().join("keystore.json")).unwrap();
    let err = rt.block_on(f.setup.run()).unwrap_err();
    assert!(err.to_string().contains("hardware or the KDF plug-in changed"), "{err}");
    assert_eq!(fs::read(f.device.keystore_dir().join("keystore.json")).unwrap(), before);
    assert!(rt.block_on(f.setup.client().unwrap().health()).unwrap().sealed, "still sealed, nothing done");
}

#[test]
fn a_bogus_share_sent_by_someone_else_does_not_stop_the_unseal() {
    let mut f = fixture();
    let rt = rt();
    rt.block_on(f.setup.run()).unwrap();
    f.bao.restart();
    let client = f.setup.client().unwrap();
    // sys/unseal needs no token: any local process can start an attempt with garbage.
    let status = rt.block_on(client.unseal(&[0x42; 33])).unwrap();
    assert!(status.sealed && status.progress == 1, "{status:?}");
    let report = rt.block_on(f.setup.run()).unwrap();
    assert!(report.unsealed, "{report:?}");
}

#[test]
fn a_service_cannot_get_another_services_file_token_revoked_with_a_symlink() {
    let f = fixture();
    let rt = rt();
    rt.block_on(f.setup.run()).unwrap();
    // beta owns its directory; it replaces its token file with a link to alpha's.
    let beta_file = f.device.file_tokens_dir().join("beta/secrets-token.json");
    fs::remove_file(&beta_file).unwrap();
    std::os::unix::fs::symlink(f.device.file_tokens_dir().join("alpha/secrets-token.json"), &beta_file).unwrap();
    rt.block_on(f.setup.run()).unwrap();
    let (alpha, _) = file_token(&f.device, "alpha");
    let client = f.setup.client().unwrap();
    rt.block_on(client.lookup_self(&alpha)).expect("alpha's fresh file token is still valid");
    assert!(!fs::symlink_metadata(&beta_file).unwrap().file_type().is_symlink(), "beta's file is a real file again");
}
