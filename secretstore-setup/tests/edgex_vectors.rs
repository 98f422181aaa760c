//! EdgeX `resp-init.json` import against vectors made by an independent implementation (Python
//! `cryptography`, see tests/fixtures/edgex/README.md), not by the code under test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use kdf_plugins::Ikm;
use secretstore_setup::edgex_import::{EdgexError, InfoFamily, Layout, RespInit};

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/edgex").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn expected_shares() -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(&fixture("expected-shares.json")).unwrap();
    v["shares_hex"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

fn hook_ikm() -> Ikm {
    let line = String::from_utf8(fixture("ikm.hex")).unwrap();
    Ikm::new(hex::decode(line.trim_end()).unwrap())
}

fn import(name: &str, ikm: &Ikm) -> Result<(Vec<String>, Layout), EdgexError> {
    let salt = fixture("kdf-salt.dat");
    let resp = RespInit::parse(&fixture(name))?;
    let (shares, layout) = resp.shares(Some((ikm, &salt)))?;
    Ok((shares.iter().map(|s| hex::encode(s.expose())).collect(), layout))
}

#[test]
fn plaintext_resp_init_gives_the_shares() {
    assert_eq!(import("resp-init-plain.json", &hook_ikm()).unwrap(), (expected_shares(), Layout::Plain));
    // Plain files need no hook at all.
    let resp = RespInit::parse(&fixture("resp-init-plain.json")).unwrap();
    assert!(!resp.is_encrypted());
    assert_eq!(resp.shares(None).unwrap().0.len(), 5);
}

#[test]
fn encrypted_resp_init_with_info_vault_i_decrypts() {
    for name in ["resp-init-encrypted-vault.json", "resp-init-encrypted-vault-noroot.json"] {
        let got = import(name, &hook_ikm()).unwrap();
        assert_eq!(got, (expected_shares(), Layout::Encrypted(InfoFamily::Vault)), "{name}");
    }
}

#[test]
fn encrypted_resp_init_with_info_secretstore_i_decrypts() {
    let got = import("resp-init-encrypted-secretstore.json", &hook_ikm()).unwrap();
    assert_eq!(got, (expected_shares(), Layout::Encrypted(InfoFamily::Secretstore)));
}

#[test]
fn a_different_hook_or_salt_is_refused() {
    let other = Ikm::new(vec![0x11; 32]);
    assert_eq!(import("resp-init-encrypted-vault.json", &other).unwrap_err(), EdgexError::Decrypt { index: 0 });

    let resp = RespInit::parse(&fixture("resp-init-encrypted-secretstore.json")).unwrap();
    let mut salt = fixture("kdf-salt.dat");
    salt[0] ^= 1;
    assert!(matches!(resp.shares(Some((&hook_ikm(), &salt))), Err(EdgexError::Decrypt { .. })));
}

#[test]
fn a_tampered_encrypted_key_is_refused() {
    let text = String::from_utf8(fixture("resp-init-encrypted-vault.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let first = v["encrypted_keys"][2].as_str().unwrap();
    let flipped = format!("{}{}", if &first[..1] == "0" { "1" } else { "0" }, &first[1..]);
    let tampered = text.replace(first, &flipped);
    let resp = RespInit::parse(tampered.as_bytes()).unwrap();
    let salt = fixture("kdf-salt.dat");
    assert_eq!(resp.shares(Some((&hook_ikm(), &salt))).unwrap_err(), EdgexError::Decrypt { index: 2 });
}
