#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Reruns converge: nothing changes without need, and what is due is (re)issued under the right CA.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::*;
use pki_init::{
    Action, CaKeyStore, CaKeys, CertConfig, ChainStatus, KeyStoreError, MemoryKeyStore, PkiError, Report, SecretPem,
    INTERMEDIATE_CA_ITEM, ROOT_CA_ITEM,
};

fn actions(report: &Report) -> Vec<(&str, Action)> {
    report.certs.iter().map(|c| (c.name.as_str(), c.action)).collect()
}

fn all(report: &Report, action: Action) -> bool {
    report.certs.iter().all(|c| c.action == action)
}

fn verify_all(dir: &std::path::Path, report: &Report, at: time::OffsetDateTime) {
    assert!(report.all_valid(), "{report}");
    for c in report.certs.iter().filter(|c| c.kind == pki_init::CertKind::Leaf && c.action != Action::Removed) {
        webpki_verify(dir, &c.name, webpki::KeyUsage::client_auth(), None, at).unwrap();
        openssl_verify(dir, &c.name, &[], at).unwrap();
    }
}

#[test]
fn a_rerun_changes_nothing() {
    for mode in [CaKeys::Destroy, CaKeys::Keystore] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pki");
        let config = config(&dir, mode);
        let mut store = MemoryKeyStore::new();
        let now = t0();
        pki_init::run(&config, Some(&mut store), now).unwrap();
        let before = snapshot(&dir);
        for later in [now, days(now, 1), days(now, 59)] {
            let report = pki_init::run(&config, Some(&mut store), later).unwrap();
            assert!(all(&report, Action::Unchanged), "{mode}: {report}");
            assert!(!report.changed());
            // Same bytes, modes, owners, inodes and mtimes: nothing was rewritten.
            assert_eq!(snapshot(&dir), before, "{mode}");
        }
        assert_eq!(store.saves(), usize::from(mode == CaKeys::Keystore));
    }
}

#[test]
fn renewal_with_a_fake_clock_keeps_the_ca_in_keystore_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let mut config = config(&dir, CaKeys::Keystore);
    let mut store = MemoryKeyStore::new();
    let t0 = t0();
    pki_init::run(&config, Some(&mut store), t0).unwrap();
    // Ten days later a new name arrives; it is issued under the same CA.
    config.certs.insert("late".parse().unwrap(), CertConfig::new(sans(&["late"])));
    let report = pki_init::run(&config, Some(&mut store), days(t0, 10)).unwrap();
    assert_eq!(
        actions(&report),
        [
            ("root CA", Action::Unchanged),
            ("intermediate CA", Action::Unchanged),
            ("core-data", Action::Unchanged),
            ("late", Action::Created),
            ("openbao", Action::Unchanged)
        ]
    );
    let ca = snapshot(&dir);

    // One second before not_after - renew_before: nothing. At it: the first two leaves are renewed.
    let due = days(t0, 60);
    let report = pki_init::run(&config, Some(&mut store), due - time::Duration::seconds(1)).unwrap();
    assert!(all(&report, Action::Unchanged), "{report}");
    let report = pki_init::run(&config, Some(&mut store), due).unwrap();
    assert_eq!(
        actions(&report),
        [
            ("root CA", Action::Unchanged),
            ("intermediate CA", Action::Unchanged),
            ("core-data", Action::Renewed),
            ("late", Action::Unchanged),
            ("openbao", Action::Renewed)
        ]
    );
    assert!(report.get("openbao").unwrap().reason.contains("within renew_before (30d)"), "{report}");
    let after = snapshot(&dir);
    for same in ["ca/ca.pem", "ca/intermediate.pem", "late/cert.pem", "late/key.pem"] {
        assert_eq!(after.entry(same), ca.entry(same), "{same} untouched");
    }
    for renewed in ["openbao/cert.pem", "openbao/key.pem"] {
        assert_ne!(after.bytes(renewed), ca.bytes(renewed), "{renewed} renewed with a new key");
    }
    let bao = report.get("openbao").unwrap().cert.as_ref().unwrap();
    assert_eq!((bao.not_before, bao.not_after), (due, days(due, 90)));
    verify_all(&dir, &report, due + time::Duration::minutes(1));
    assert_eq!(store.saves(), 1, "the CA keys were not replaced");
}

#[test]
fn a_san_change_reissues_that_leaf_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let mut config = config(&dir, CaKeys::Keystore);
    let mut store = MemoryKeyStore::new();
    let now = t0();
    pki_init::run(&config, Some(&mut store), now).unwrap();
    let before = snapshot(&dir);
    config.certs.get_mut("openbao").unwrap().sans = sans(&["localhost", "127.0.0.1", "bao.edge.local"]);
    let report = pki_init::run(&config, Some(&mut store), days(now, 2)).unwrap();
    let bao = report.get("openbao").unwrap();
    assert_eq!(bao.action, Action::Reissued);
    assert_eq!(
        bao.reason,
        "SANs changed from [localhost, openbao, 127.0.0.1] to [localhost, 127.0.0.1, bao.edge.local]"
    );
    assert_eq!(bao.cert.as_ref().unwrap().sans, ["bao.edge.local", "localhost", "127.0.0.1"]);
    let after = snapshot(&dir);
    for same in ["ca/ca.pem", "ca/intermediate.pem", "core-data/cert.pem", "core-data/key.pem"] {
        assert_eq!(after.entry(same), before.entry(same), "{same}");
    }
    webpki_verify(&dir, "openbao", webpki::KeyUsage::server_auth(), Some("bao.edge.local"), days(now, 3)).unwrap();
    assert!(webpki_verify(&dir, "openbao", webpki::KeyUsage::server_auth(), Some("openbao"), days(now, 3)).is_err());
}

#[test]
fn destroy_mode_reissues_the_whole_pki_for_a_new_name_or_a_renewal() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let mut config = config(&dir, CaKeys::Destroy);
    let now = t0();
    pki_init::run(&config, None, now).unwrap();
    let first = snapshot(&dir);

    config.certs.insert("new-svc".parse().unwrap(), CertConfig::new(sans(&["new-svc"])));
    let report = pki_init::run(&config, None, days(now, 1)).unwrap();
    assert_eq!(
        actions(&report),
        [
            ("root CA", Action::Reissued),
            ("intermediate CA", Action::Reissued),
            ("core-data", Action::Reissued),
            ("new-svc", Action::Created),
            ("openbao", Action::Reissued)
        ]
    );
    let root = report.get("root CA").unwrap();
    assert!(root.reason.contains("new-svc must be issued") && root.reason.contains("ca_keys: destroy"), "{report}");
    let second = snapshot(&dir);
    for changed in ["ca/ca.pem", "ca/intermediate.pem", "openbao/cert.pem", "openbao/key.pem", "core-data/key.pem"] {
        assert_ne!(second.bytes(changed), first.bytes(changed), "{changed}");
    }
    verify_all(&dir, &report, days(now, 1) + time::Duration::minutes(1));

    // A renewal is a new CA too (in destroy mode every leaf has the same age, so all are due together).
    let report = pki_init::run(&config, None, days(now, 61)).unwrap();
    assert_eq!(report.get("root CA").unwrap().action, Action::Reissued);
    assert_eq!(report.get("intermediate CA").unwrap().action, Action::Reissued);
    for leaf in ["core-data", "new-svc", "openbao"] {
        assert_eq!(report.get(leaf).unwrap().action, Action::Renewed, "{report}");
    }
    assert_ne!(snapshot(&dir).bytes("ca/ca.pem"), second.bytes("ca/ca.pem"));
    verify_all(&dir, &report, days(now, 61) + time::Duration::minutes(1));
}

#[test]
fn an_expiring_ca_is_regenerated_with_everything_under_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let config = config(&dir, CaKeys::Keystore);
    let mut store = MemoryKeyStore::new();
    let now = t0();
    pki_init::run(&config, Some(&mut store), now).unwrap();
    let old_root = store.get(ROOT_CA_ITEM).unwrap().clone();
    // Keep the leaves fresh along the way, as a device rebooting now and then would.
    let mut t = now;
    while t < days(now, 3400) {
        t = days(t, 60);
        pki_init::run(&config, Some(&mut store), t).unwrap();
    }
    assert_eq!(store.saves(), 1, "same CA for years");
    let at = days(now, 3650 - 120);
    let report = pki_init::run(&config, Some(&mut store), at).unwrap();
    assert_eq!(report.get("root CA").unwrap().action, Action::Renewed, "{report}");
    assert!(report.certs.iter().all(|c| c.action != Action::Unchanged), "{report}");
    assert_eq!(store.saves(), 2);
    assert_ne!(store.get(ROOT_CA_ITEM).unwrap(), &old_root);
    verify_all(&dir, &report, at + time::Duration::minutes(1));
}

#[test]
fn a_lost_intermediate_key_means_a_new_intermediate_under_the_same_root() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let mut config = config(&dir, CaKeys::Keystore);
    let mut store = MemoryKeyStore::new();
    let now = t0();
    pki_init::run(&config, Some(&mut store), now).unwrap();
    let before = snapshot(&dir);
    store.remove(INTERMEDIATE_CA_ITEM);
    config.certs.insert("extra".parse().unwrap(), CertConfig::new(sans(&["extra"])));
    let report = pki_init::run(&config, Some(&mut store), days(now, 1)).unwrap();
    assert_eq!(report.get("root CA").unwrap().action, Action::Unchanged);
    let int = report.get("intermediate CA").unwrap();
    assert_eq!(int.action, Action::Reissued);
    assert!(int.reason.contains("is not in the keystore"), "{}", int.reason);
    assert_eq!(snapshot(&dir).entry("ca/ca.pem"), before.entry("ca/ca.pem"), "clients keep trusting the same root");
    assert!(store.get(INTERMEDIATE_CA_ITEM).is_some());
    verify_all(&dir, &report, days(now, 1) + time::Duration::minutes(1));
}

#[test]
fn a_name_no_longer_configured_is_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let mut config = config(&dir, CaKeys::Destroy);
    let now = t0();
    pki_init::run(&config, None, now).unwrap();
    config.certs.remove("core-data");
    let report = pki_init::run(&config, None, now).unwrap();
    assert_eq!(report.get("core-data").unwrap().action, Action::Removed);
    assert_eq!(report.get("openbao").unwrap().action, Action::Unchanged);
    assert!(!dir.join("core-data").exists());
    assert!(!pki_init::run(&config, None, now).unwrap().changed());
}

#[test]
fn a_key_others_could_read_is_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let config = config(&dir, CaKeys::Keystore);
    let mut store = MemoryKeyStore::new();
    let now = t0();
    pki_init::run(&config, Some(&mut store), now).unwrap();
    let key = dir.join("openbao/key.pem");
    let old = fs::read(&key).unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let report = pki_init::run(&config, Some(&mut store), now).unwrap();
    let bao = report.get("openbao").unwrap();
    assert_eq!(
        (bao.action, bao.reason.as_str()),
        (Action::Reissued, "key.pem has mode 0644 and may have been read by others")
    );
    assert_ne!(fs::read(&key).unwrap(), old);
    assert_eq!(fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn crash_leftovers_converge() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let config = config(&dir, CaKeys::Keystore);
    let mut store = MemoryKeyStore::new();
    let now = t0();
    pki_init::run(&config, Some(&mut store), now).unwrap();
    // As if killed between writing a new key.pem and its cert.pem, with a temp file left behind.
    fs::copy(dir.join("core-data/key.pem"), dir.join("openbao/key.pem")).unwrap();
    fs::write(dir.join("openbao/.pki-init-cert.pem.abc123.tmp"), b"half").unwrap();
    fs::write(dir.join("ca/.pki-init-ca.pem.xyz.tmp"), b"").unwrap();
    let report = pki_init::run(&config, Some(&mut store), now).unwrap();
    let bao = report.get("openbao").unwrap();
    assert_eq!((bao.action, bao.reason.as_str()), (Action::Reissued, "key.pem does not match cert.pem"));
    assert_eq!(report.get("root CA").unwrap().action, Action::Unchanged);
    let paths = snapshot(&dir).paths();
    assert!(!paths.iter().any(|p| p.contains(".tmp")), "{paths:?}");
    verify_all(&dir, &report, now + time::Duration::minutes(1));
    assert!(!pki_init::run(&config, Some(&mut store), now).unwrap().changed());

    // Keys saved but the CA never written (killed right after the keystore write): a new CA.
    let other = tempfile::tempdir().unwrap();
    let mut stale = MemoryKeyStore::new();
    pki_init::run(&pki_init::PkiConfig { dir: other.path().join("pki"), ..config.clone() }, Some(&mut stale), now)
        .unwrap();
    for item in [ROOT_CA_ITEM, INTERMEDIATE_CA_ITEM] {
        store.insert(item, stale.get(item).unwrap().clone());
    }
    let report = pki_init::run(&config, Some(&mut store), days(now, 61)).unwrap();
    assert_eq!(report.get("root CA").unwrap().action, Action::Reissued, "{report}");
    assert!(report.get("root CA").unwrap().reason.contains("belongs to another ca/ca.pem"), "{report}");
    verify_all(&dir, &report, days(now, 61) + time::Duration::minutes(1));
}

#[test]
fn check_reports_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let config = config(&dir, CaKeys::Keystore);
    let now = t0();

    let report = pki_init::check(&config, now).unwrap();
    assert!(!report.applied);
    assert!(report.certs.iter().all(|c| c.action == Action::Created && c.cert.is_none()), "{report}");
    assert!(report.to_string().contains("openbao: would create"), "{report}");
    assert!(!dir.exists(), "check created nothing");

    let mut store = MemoryKeyStore::new();
    pki_init::run(&config, Some(&mut store), now).unwrap();
    let report = pki_init::check(&config, days(now, 1)).unwrap();
    assert!(all(&report, Action::Unchanged), "{report}");
    let bao = report.get("openbao").unwrap().cert.clone().unwrap();
    assert_eq!(bao.subject, "O=edgeseal, CN=openbao");
    assert_eq!(bao.sans, ["localhost", "openbao", "127.0.0.1"]);
    assert_eq!(bao.not_after, days(now, 90));
    assert_eq!(bao.chain, ChainStatus::Valid);

    let report = pki_init::check(&config, days(now, 95)).unwrap();
    assert_eq!(report.get("openbao").unwrap().action, Action::Renewed);
    assert_eq!(report.get("openbao").unwrap().cert.as_ref().unwrap().chain, ChainStatus::Expired);
    assert!(report.to_string().contains("openbao: would renew (expired"), "{report}");

    // A leaf from someone else's CA shows as broken.
    let foreign = tempfile::tempdir().unwrap();
    let foreign_config = pki_init::PkiConfig { dir: foreign.path().to_path_buf(), ..config.clone() };
    pki_init::run(&foreign_config, Some(&mut MemoryKeyStore::new()), now).unwrap();
    fs::copy(foreign.path().join("openbao/cert.pem"), dir.join("openbao/cert.pem")).unwrap();
    fs::copy(foreign.path().join("openbao/key.pem"), dir.join("openbao/key.pem")).unwrap();
    let before = snapshot(&dir);
    let report = pki_init::check(&config, days(now, 1)).unwrap();
    let bao = report.get("openbao").unwrap();
    assert_eq!(bao.action, Action::Reissued);
    assert_eq!(bao.cert.as_ref().unwrap().chain, ChainStatus::Broken("not issued by ca/intermediate.pem".into()));
    assert_eq!(snapshot(&dir), before, "check wrote nothing");
}

/// A keystore whose writes fail.
struct BrokenStore;

impl CaKeyStore for BrokenStore {
    fn load(&mut self, _: &str) -> Result<Option<SecretPem>, KeyStoreError> {
        Ok(None)
    }

    fn save(&mut self, _: &[(&str, &SecretPem)]) -> Result<(), KeyStoreError> {
        Err("disk full".into())
    }
}

#[test]
fn keystore_failures_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let config = config(&dir, CaKeys::Keystore);
    let err = pki_init::run(&config, Some(&mut BrokenStore), t0()).unwrap_err();
    assert_eq!(err.to_string(), "saving keystore item pki-root-ca, pki-intermediate-ca: disk full");
    assert!(!dir.exists());
    let err = pki_init::run(&config, None, t0()).unwrap_err();
    assert!(matches!(err, PkiError::KeystoreMissing), "{err}");
    assert!(!dir.exists());
}

#[test]
fn keystore_mode_restores_the_ca_into_an_emptied_directory() {
    // pki.dir on a tmpfs: a reboot empties it, the keystore (on disk, encrypted) keeps the CA.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let config = config(&dir, CaKeys::Keystore);
    let mut store = MemoryKeyStore::new();
    let now = t0();
    pki_init::run(&config, Some(&mut store), now).unwrap();
    let before = snapshot(&dir);
    fs::remove_dir_all(&dir).unwrap();

    let check = pki_init::check(&config, days(now, 1)).unwrap();
    assert_eq!(check.get("root CA").unwrap().action, Action::Created, "check does not open the keystore");

    let report = pki_init::run(&config, Some(&mut store), days(now, 1)).unwrap();
    assert_eq!(
        actions(&report),
        [
            ("root CA", Action::Restored),
            ("intermediate CA", Action::Restored),
            ("core-data", Action::Created),
            ("openbao", Action::Created)
        ]
    );
    assert_eq!(report.get("root CA").unwrap().reason, "ca/ca.pem was missing; restored from keystore item pki-root-ca");
    let after = snapshot(&dir);
    for same in ["ca/ca.pem", "ca/intermediate.pem"] {
        assert_eq!(after.bytes(same), before.bytes(same), "{same} restored byte for byte");
        assert_eq!(after.entry(same).mode & 0o7777, 0o644);
    }
    assert_eq!(store.saves(), 1);
    verify_all(&dir, &report, days(now, 1) + time::Duration::minutes(1));
    assert!(report.to_string().contains("root CA: restored (ca/ca.pem was missing"), "{report}");
    assert!(!pki_init::run(&config, Some(&mut store), days(now, 1)).unwrap().changed());

    // Only the intermediate lost: restored, and the leaves (issued by it) are kept.
    let before = snapshot(&dir);
    fs::remove_file(dir.join("ca/intermediate.pem")).unwrap();
    let report = pki_init::run(&config, Some(&mut store), days(now, 2)).unwrap();
    assert_eq!(report.get("intermediate CA").unwrap().action, Action::Restored);
    assert_eq!(report.get("openbao").unwrap().action, Action::Unchanged);
    assert_eq!(snapshot(&dir).bytes("ca/intermediate.pem"), before.bytes("ca/intermediate.pem"));
    assert_eq!(snapshot(&dir).entry("openbao/cert.pem"), before.entry("openbao/cert.pem"));
}
