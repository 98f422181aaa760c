#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Bad input gets its own clear error naming the entry, and nothing is written.

mod common;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use common::*;
use pki_init::{CaKeys, MemoryKeyStore, PkiConfig, PkiError, San, SecretPem, ROOT_CA_ITEM};

type Damage = fn(&Path);
type IsVariant = fn(&PkiError) -> bool;
type Edit<'a> = &'a dyn Fn(&mut PkiConfig);

fn first_block(text: &str) -> String {
    let end = text.find("-----END CERTIFICATE-----\n").unwrap() + "-----END CERTIFICATE-----\n".len();
    text[..end].to_string()
}

#[test]
fn damaged_directories_are_refused_untouched() {
    #[rustfmt::skip]
    let cases: Vec<(&str, Damage, &str, IsVariant)> = vec![
        ("garbage ca.pem", |d| fs::write(d.join("ca/ca.pem"), "garbage\n").unwrap(),
            "ca/ca.pem is corrupted: line 1 is outside any PEM block", |e| matches!(e, PkiError::Corrupt { .. })),
        ("truncated key.pem", |d| {
            let key = fs::read_to_string(d.join("openbao/key.pem")).unwrap();
            fs::write(d.join("openbao/key.pem"), &key[..key.len() / 2]).unwrap();
        }, "openbao/key.pem is corrupted: PEM block starting at line 1 has no END line", |e| matches!(e, PkiError::Corrupt { .. })),
        ("cert.pem without its chain", |d| {
            let text = fs::read_to_string(d.join("openbao/cert.pem")).unwrap();
            fs::write(d.join("openbao/cert.pem"), first_block(&text)).unwrap();
        }, "openbao/cert.pem is corrupted: expected the leaf and the intermediate certificate, found 1 PEM blocks",
            |e| matches!(e, PkiError::Corrupt { .. })),
        ("a key inside cert.pem", |d| {
            let key = fs::read_to_string(d.join("openbao/key.pem")).unwrap();
            let cert = fs::read_to_string(d.join("openbao/cert.pem")).unwrap();
            fs::write(d.join("openbao/cert.pem"), format!("{key}{}", first_block(&cert))).unwrap();
        }, "openbao/cert.pem is corrupted: PEM block 1 is a PRIVATE KEY, not a CERTIFICATE", |e| matches!(e, PkiError::Corrupt { .. })),
        ("PEM that is not a certificate", |d| fs::write(d.join("ca/intermediate.pem"),
            "-----BEGIN CERTIFICATE-----\nYWJj\n-----END CERTIFICATE-----\n").unwrap(),
            "ca/intermediate.pem is corrupted: certificate 1: not an X.509 certificate", |e| matches!(e, PkiError::Corrupt { .. })),
        ("PEM that is not a key", |d| fs::write(d.join("core-data/key.pem"),
            "-----BEGIN PRIVATE KEY-----\nYWJj\n-----END PRIVATE KEY-----\n").unwrap(),
            "core-data/key.pem is corrupted: not an ECDSA P-256 or P-384 PKCS#8 private key", |e| matches!(e, PkiError::Corrupt { .. })),
        ("binary ca.pem", |d| fs::write(d.join("ca/ca.pem"), [0xff, 0xfe, 0x00]).unwrap(),
            "ca/ca.pem is corrupted: not ASCII text", |e| matches!(e, PkiError::Corrupt { .. })),
        ("oversized cert.pem", |d| fs::write(d.join("openbao/cert.pem"), vec![b'A'; 70_000]).unwrap(),
            "openbao/cert.pem is corrupted: larger than 65536 bytes", |e| matches!(e, PkiError::Corrupt { .. })),
        ("a stray file", |d| fs::write(d.join("notes.txt"), "hi").unwrap(),
            "unexpected file ", |e| matches!(e, PkiError::Foreign { kind: "file", .. })),
        ("a CA key someone left in ca/", |d| fs::write(d.join("ca/ca.key"), "secret").unwrap(),
            "ca/ca.key: pki-init owns", |e| matches!(e, PkiError::Foreign { kind: "file", .. })),
        ("a stray file in a leaf", |d| fs::write(d.join("openbao/backup.pem"), "x").unwrap(),
            "openbao/backup.pem: pki-init owns", |e| matches!(e, PkiError::Foreign { kind: "file", .. })),
        ("key.pem as a symlink", |d| {
            fs::remove_file(d.join("openbao/key.pem")).unwrap();
            symlink("/etc/passwd", d.join("openbao/key.pem")).unwrap();
        }, "unexpected symlink ", |e| matches!(e, PkiError::Foreign { kind: "symlink", .. })),
        ("a leaf directory as a symlink", |d| symlink("/tmp", d.join("extra")).unwrap(),
            "/extra: pki-init owns", |e| matches!(e, PkiError::Foreign { kind: "symlink", .. })),
        ("cert.pem as a directory", |d| {
            fs::remove_file(d.join("core-data/cert.pem")).unwrap();
            fs::create_dir(d.join("core-data/cert.pem")).unwrap();
        }, "core-data/cert.pem: pki-init owns", |e| matches!(e, PkiError::Foreign { kind: "directory", .. })),
        ("a FIFO", |d| nix::unistd::mkfifo(&d.join("queue"), nix::sys::stat::Mode::S_IRWXU).unwrap(),
            "unexpected special file ", |e| matches!(e, PkiError::Foreign { kind: "special file", .. })),
        ("a directory that is no certificate name", |d| fs::create_dir(d.join("Not_A_Name")).unwrap(),
            "Not_A_Name: pki-init owns", |e| matches!(e, PkiError::Foreign { kind: "directory", .. })),
        ("ca as a file", |d| {
            fs::remove_dir_all(d.join("ca")).unwrap();
            fs::write(d.join("ca"), "x").unwrap();
        }, "/ca: pki-init owns", |e| matches!(e, PkiError::Foreign { kind: "file", .. })),
        ("a world-writable PKI directory", |d| fs::set_permissions(d, fs::Permissions::from_mode(0o777)).unwrap(),
            "mode 0777): it must belong to uid 0 and not be writable by group or others", |e| matches!(e, PkiError::UnsafeDir { .. })),
        ("a group-writable ca/", |d| fs::set_permissions(d.join("ca"), fs::Permissions::from_mode(0o775)).unwrap(),
            "/ca is not safe for the PKI", |e| matches!(e, PkiError::UnsafeDir { .. })),
    ];
    for mode in [CaKeys::Destroy, CaKeys::Keystore] {
        for (what, damage, message, variant) in &cases {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("pki");
            let config = config(&dir, mode);
            let mut store = MemoryKeyStore::new();
            pki_init::run(&config, Some(&mut store), t0()).unwrap();
            damage(&dir);
            let before = snapshot(&dir);
            for later in [t0(), days(t0(), 61), days(t0(), 4000)] {
                let err = pki_init::run(&config, Some(&mut store), later).unwrap_err();
                assert!(variant(&err), "{what}: {err:?}");
                assert!(err.to_string().contains(message), "{what}: {err}");
                assert_eq!(snapshot(&dir), before, "{what}: nothing written");
                let err = pki_init::check(&config, later).unwrap_err();
                assert!(err.to_string().contains(message), "{what} (check): {err}");
            }
        }
    }
}

#[test]
fn bad_configurations_are_refused_untouched() {
    let bad_san = |c: &mut PkiConfig| {
        c.certs.get_mut("openbao").unwrap().sans.push(San::Dns("not a name".into()));
    };
    let zero_validity = |c: &mut PkiConfig| c.leaf_validity = Duration::ZERO;
    let leaf_outlives_ca = |c: &mut PkiConfig| c.leaf_validity = Duration::from_secs(4000 * 86_400);
    let relative_dir = |c: &mut PkiConfig| c.dir = "pki".into();
    let cases: Vec<(&str, Edit<'_>, &str)> = vec![
        ("bad SAN", &bad_san, "pki.certs.openbao: \"not a name\" is not a DNS name or an IP address"),
        ("zero validity", &zero_validity, "pki.leaf_validity must be between 1s and 36500d, got 0s"),
        (
            "leaf outlives CA",
            &leaf_outlives_ca,
            "pki.leaf_validity (4000d) must be shorter than pki.ca_validity (3650d): a leaf cannot outlive its CA",
        ),
        ("relative dir", &relative_dir, "pki.dir must be an absolute directory below / without `..`, got \"pki\""),
    ];
    for (what, edit, message) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pki");
        let mut config = config(&dir, CaKeys::Destroy);
        // Against an existing PKI, and against none.
        pki_init::run(&config, None, t0()).unwrap();
        let before = snapshot(&dir);
        edit(&mut config);
        let err = pki_init::run(&config, None, t0()).unwrap_err();
        assert!(matches!(err, PkiError::Config(_)), "{what}: {err:?}");
        assert_eq!(err.to_string(), format!("invalid pki configuration: {message}"), "{what}");
        assert_eq!(snapshot(&dir), before, "{what}");
        fs::remove_dir_all(&dir).unwrap();
        assert!(pki_init::run(&config, None, t0()).is_err());
        assert!(pki_init::check(&config, t0()).is_err());
        assert!(!dir.exists(), "{what}: nothing created");
    }
}

#[test]
fn an_unusable_keystore_item_is_refused_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let config = config(&dir, CaKeys::Keystore);
    let mut store = MemoryKeyStore::new();
    pki_init::run(&config, Some(&mut store), t0()).unwrap();
    let before = snapshot(&dir);
    store.insert(ROOT_CA_ITEM, SecretPem::new("not a key"));
    let err = pki_init::run(&config, Some(&mut store), t0()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "keystore item pki-root-ca is not a usable CA private key: line 1 is outside any PEM block"
    );
    assert_eq!(snapshot(&dir), before);

    // A well-formed item whose key is not the CA's.
    let leaf_key = fs::read_to_string(dir.join("openbao/key.pem")).unwrap();
    let ca = fs::read_to_string(dir.join("ca/ca.pem")).unwrap();
    store.insert(ROOT_CA_ITEM, SecretPem::new(format!("{leaf_key}{ca}")));
    let err = pki_init::run(&config, Some(&mut store), t0()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "keystore item pki-root-ca is not a usable CA private key: the key does not belong to the CA certificate stored with it"
    );
    assert_eq!(snapshot(&dir), before);
}
