#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The CA private keys are nowhere on disk in plaintext, in either `ca_keys` mode.

mod common;

use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::*;
use pki_init::{CaKeys, MemoryKeyStore, INTERMEDIATE_CA_ITEM, ROOT_CA_ITEM};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};

/// The byte strings that would betray a private key: its PKCS#8 DER, its raw private scalar, its PEM
/// text, and every line of the PEM body.
fn needles(pem: &str) -> Vec<Vec<u8>> {
    let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).unwrap().secret_pkcs8_der().to_vec();
    let mut out = vec![der.clone(), scalar(&der), pem.as_bytes().to_vec(), STANDARD.encode(&der).into_bytes()];
    out.extend(pem.lines().filter(|l| !l.starts_with("-----")).map(|l| l.as_bytes().to_vec()));
    out
}

/// The private scalar inside an ECDSA PKCS#8 key: the OCTET STRING after `ECPrivateKey.version = 1`.
fn scalar(pkcs8: &[u8]) -> Vec<u8> {
    let at = pkcs8.windows(4).position(|w| w == [0x02, 0x01, 0x01, 0x04]).expect("an ECPrivateKey");
    let len = usize::from(pkcs8[at + 4]);
    assert!(len == 32 || len == 48, "scalar of {len} bytes");
    pkcs8[at + 5..at + 5 + len].to_vec()
}

fn found_in(dir: &Path, needle: &[u8]) -> Vec<String> {
    snapshot(dir)
        .files()
        .filter(|(_, bytes)| bytes.windows(needle.len()).any(|w| w == needle))
        .map(|(p, _)| p.display().to_string())
        .collect()
}

/// Every private key anywhere under `dir`, as (file, SubjectPublicKeyInfo of the key).
fn private_keys_on_disk(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut keys = Vec::new();
    for (path, bytes) in snapshot(dir).files() {
        for key in PrivatePkcs8KeyDer::pem_slice_iter(bytes) {
            let key = key.unwrap();
            let pair = rcgen::KeyPair::try_from(key.secret_pkcs8_der()).unwrap();
            keys.push((path.display().to_string(), rcgen::PublicKeyData::subject_public_key_info(&pair)));
        }
        let text = String::from_utf8_lossy(bytes);
        assert_eq!(text.matches("PRIVATE KEY-----").count(), 2 * text.matches("BEGIN PRIVATE KEY").count(), "{path:?}");
        assert!(!text.contains("EC PRIVATE KEY") && !text.contains("ENCRYPTED"), "{path:?}");
    }
    keys
}

fn spki(cert: &CertificateDer<'_>) -> Vec<u8> {
    let (_, c) = x509_parser::parse_x509_certificate(cert).unwrap();
    c.public_key().raw.to_vec()
}

#[test]
fn keystore_mode_keeps_ca_keys_only_in_the_keystore() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let mut store = MemoryKeyStore::new();
    let now = t0();
    let config = config(&dir, CaKeys::Keystore);
    pki_init::run(&config, Some(&mut store), now).unwrap();
    // A later run that renews, so that keys are loaded and used again.
    pki_init::run(&config, Some(&mut store), days(now, 61)).unwrap();
    assert_eq!(store.saves(), 1, "the CA keys were saved once, with the new CA");

    for item in [ROOT_CA_ITEM, INTERMEDIATE_CA_ITEM] {
        // The item is the key, then the CA certificate (public, and on disk as it should be).
        let text = store.get(item).unwrap().expose().to_string();
        let end = text.find("-----END PRIVATE KEY-----\n").unwrap() + "-----END PRIVATE KEY-----\n".len();
        let pem = &text[..end];
        assert!(text[end..].starts_with("-----BEGIN CERTIFICATE-----"));
        for needle in needles(pem) {
            assert!(found_in(&dir, &needle).is_empty(), "{item} found on disk: {:?}", found_in(&dir, &needle));
        }
    }
    // The scanner does find a key that is on disk: a leaf's own key, in its key.pem only (as PEM), and
    // every needle when the bytes are planted in a file.
    let leaf_pem = std::fs::read_to_string(dir.join("openbao/key.pem")).unwrap();
    assert_eq!(found_in(&dir, leaf_pem.as_bytes()), ["openbao/key.pem"]);
    let scratch = tempfile::tempdir().unwrap();
    for (i, needle) in needles(&leaf_pem).iter().enumerate() {
        let mut planted = b"junk before ".to_vec();
        planted.extend_from_slice(needle);
        std::fs::write(scratch.path().join(format!("f{i}")), planted).unwrap();
        assert!(found_in(scratch.path(), needle).contains(&format!("f{i}")), "needle {i}");
    }
    assert_no_ca_key_on_disk(&dir);
}

#[test]
fn destroy_mode_leaves_no_ca_key_anywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let mut store = MemoryKeyStore::new();
    let now = t0();
    let config = config(&dir, CaKeys::Destroy);
    pki_init::run(&config, Some(&mut store), now).unwrap();
    pki_init::run(&config, Some(&mut store), days(now, 61)).unwrap();
    assert_eq!(store.saves(), 0, "destroy mode never hands a key to the keystore");
    assert!(store.get(ROOT_CA_ITEM).is_none() && store.get(INTERMEDIATE_CA_ITEM).is_none());
    assert_no_ca_key_on_disk(&dir);
}

/// The only private keys on disk are the leaves' own, each in its `key.pem`, each matching its
/// `cert.pem`; none belongs to the root or the intermediate.
fn assert_no_ca_key_on_disk(dir: &Path) {
    let root = spki(&CertificateDer::from_pem_file(dir.join("ca/ca.pem")).unwrap());
    let int = spki(&CertificateDer::from_pem_file(dir.join("ca/intermediate.pem")).unwrap());
    let keys = private_keys_on_disk(dir);
    let files: Vec<&str> = keys.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(files, ["core-data/key.pem", "openbao/key.pem"]);
    for (file, key) in &keys {
        assert_ne!(key, &root, "{file} holds the root CA key");
        assert_ne!(key, &int, "{file} holds the intermediate CA key");
        let name = file.trim_end_matches("/key.pem");
        assert_eq!(key, &spki(&certs(&dir.join(name).join("cert.pem"))[0]), "{file} matches its certificate");
    }
}
