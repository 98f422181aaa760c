use serde_json::Value;

use super::canonical::checksum;
use super::*;

fn shares() -> Vec<UnsealShare> {
    (1..=5u8).map(|i| UnsealShare::new(vec![i; 33])).collect()
}

fn kek(byte: u8) -> Kek {
    Kek::from_bytes([byte; 32])
}

fn sealed() -> (Keystore, KeystoreFile) {
    let mut keystore = Keystore::new(shares(), 3).unwrap();
    keystore.set_item("pki-ca-key", SecretBytes::new(b"-----BEGIN PRIVATE KEY----- ca".to_vec())).unwrap();
    let file = keystore.seal(&kek(7)).unwrap();
    (keystore, file)
}

/// Re-signs an edited file the way an attacker who knows the format could.
fn reseal_checksum(mut value: Value) -> Vec<u8> {
    let map = value.as_object_mut().unwrap();
    map.remove("checksum");
    let sum = checksum(&value);
    value.as_object_mut().unwrap().insert("checksum".into(), Value::String(sum));
    serde_json::to_vec(&value).unwrap()
}

#[test]
fn round_trip_returns_the_same_shares_threshold_and_items() {
    let (keystore, file) = sealed();
    let bytes = file.to_bytes();
    let parsed = KeystoreFile::parse(&bytes).unwrap();
    assert_eq!(parsed, file);
    let opened = open(&parsed, &kek(7)).unwrap();
    assert_eq!(opened, keystore);
    assert_eq!(opened.threshold(), 3);
    assert_eq!(opened.shares().len(), 5);
    assert_eq!(opened.item("pki-ca-key").unwrap().expose(), b"-----BEGIN PRIVATE KEY----- ca");
}

#[test]
fn sealing_twice_uses_fresh_nonces() {
    let (keystore, first) = sealed();
    let second = keystore.seal(&kek(7)).unwrap();
    assert_ne!(first.key_check, second.key_check);
    for (a, b) in first.items.iter().zip(&second.items) {
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
    }
}

#[test]
fn the_file_never_contains_a_share_or_item_in_plaintext() {
    let (keystore, file) = sealed();
    let bytes = file.to_bytes();
    let text = String::from_utf8_lossy(&bytes).to_string();
    for share in keystore.shares() {
        let raw = share.expose();
        assert!(!bytes.windows(raw.len()).any(|w| w == raw), "raw share bytes in file");
        assert!(!text.contains(&hex::encode(raw)), "hex share in file");
        assert!(!text.contains(&format::encode_b64(raw)), "base64 share in file");
        assert!(!text.contains(&format::encode_b64(&raw[..30])), "base64 prefix of a share in file");
    }
    assert!(!text.contains("BEGIN PRIVATE KEY"));
    assert!(!text.contains(&format::encode_b64(b"-----BEGIN PRIVATE KEY----- ca")));
}

#[test]
fn a_flipped_byte_anywhere_is_reported_as_corruption() {
    let (_, file) = sealed();
    let bytes = file.to_bytes();
    for position in 0..bytes.len() {
        for mask in [0x01u8, 0x20, 0x80, 0xff] {
            let mut damaged = bytes.clone();
            damaged[position] ^= mask;
            match KeystoreFile::parse(&damaged) {
                Err(FormatError::NotJson(_) | FormatError::NoChecksum | FormatError::ChecksumMismatch) => {}
                other => panic!("byte {position} ^ {mask:#04x}: expected a corruption error, got {other:?}"),
            }
        }
    }
}

#[test]
fn a_truncated_file_is_reported_as_corruption() {
    let (_, file) = sealed();
    let bytes = file.to_bytes();
    for len in [0, 1, bytes.len() / 2, bytes.len() - 2] {
        assert!(KeystoreFile::parse(&bytes[..len]).is_err(), "truncated to {len}");
    }
}

#[test]
fn a_different_kek_is_a_wrong_kek_not_corruption() {
    let (_, file) = sealed();
    assert!(kek_matches(&file, &kek(7)));
    assert!(!kek_matches(&file, &kek(8)));
    assert_eq!(open(&file, &kek(8)).unwrap_err(), OpenError::WrongKek);
}

#[test]
fn an_edited_item_with_a_recomputed_checksum_fails_authentication() {
    let (_, file) = sealed();
    let mut value: Value = serde_json::from_slice(&file.to_bytes()).unwrap();
    let ct = value["items"][1]["ciphertext"].as_str().unwrap().to_string();
    let mut raw = format::decode_b64("", &ct).unwrap();
    raw[0] ^= 1;
    value["items"][1]["ciphertext"] = Value::String(format::encode_b64(&raw));
    let edited = KeystoreFile::parse(&reseal_checksum(value)).unwrap();
    assert_eq!(
        open(&edited, &kek(7)).unwrap_err(),
        OpenError::ItemTampered { purpose: "unseal-share".into(), index: 1 }
    );
}

#[test]
fn swapping_two_shares_is_detected_because_the_index_is_bound() {
    let (_, file) = sealed();
    let mut value: Value = serde_json::from_slice(&file.to_bytes()).unwrap();
    let items = value["items"].as_array_mut().unwrap();
    let (a, b) = (items[0]["ciphertext"].clone(), items[1]["ciphertext"].clone());
    let (na, nb) = (items[0]["nonce"].clone(), items[1]["nonce"].clone());
    items[0]["ciphertext"] = b;
    items[0]["nonce"] = nb;
    items[1]["ciphertext"] = a;
    items[1]["nonce"] = na;
    let edited = KeystoreFile::parse(&reseal_checksum(value)).unwrap();
    assert!(matches!(open(&edited, &kek(7)), Err(OpenError::ItemTampered { index: 0, .. })));
}

#[test]
fn a_future_version_is_unsupported_not_corrupt() {
    let (_, file) = sealed();
    let mut value: Value = serde_json::from_slice(&file.to_bytes()).unwrap();
    value["version"] = Value::from(2);
    value["new_field"] = Value::from("from the future");
    assert_eq!(KeystoreFile::parse(&reseal_checksum(value)).unwrap_err(), FormatError::UnsupportedVersion(2));
}

#[test]
fn structural_problems_are_named() {
    let (_, file) = sealed();
    let base: Value = serde_json::from_slice(&file.to_bytes()).unwrap();
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("unknown field", Box::new(|v| v["extra"] = Value::from(1))),
        ("threshold", Box::new(|v| v["secret_threshold"] = Value::from(6))),
        ("no shares", Box::new(|v| v["secret_shares"] = Value::from(0))),
        ("secret_shares", Box::new(|v| v["secret_shares"] = Value::from(300))),
        ("unseal-share items", Box::new(|v| v["secret_shares"] = Value::from(4))),
        ("salt", Box::new(|v| v["kdf"]["salt"] = Value::from("AAAA"))),
        ("base64", Box::new(|v| v["key_check"]["nonce"] = Value::from("***"))),
        (
            "appears twice",
            Box::new(|v| {
                let dup = v["items"][0].clone();
                v["items"].as_array_mut().unwrap().push(dup);
            }),
        ),
        ("aead", Box::new(|v| v["aead"] = Value::from("chacha20"))),
        (
            "named items have index 0",
            Box::new(|v| {
                let last = v["items"].as_array().unwrap().len() - 1;
                v["items"][last]["index"] = Value::from(1);
            }),
        ),
    ];
    for (want, edit) in cases {
        let mut value = base.clone();
        edit(&mut value);
        let err = KeystoreFile::parse(&reseal_checksum(value)).unwrap_err();
        assert!(matches!(err, FormatError::Invalid(_)), "{want}: {err:?}");
        assert!(err.to_string().contains(want), "{want}: {err}");
    }
}

#[test]
fn items_and_shares_are_validated_when_built() {
    assert!(matches!(Keystore::new(vec![], 1), Err(BuildError::Shares { .. })));
    assert!(matches!(Keystore::new(shares(), 0), Err(BuildError::Shares { .. })));
    assert!(matches!(Keystore::new(shares(), 6), Err(BuildError::Shares { .. })));
    assert!(matches!(Keystore::new(vec![UnsealShare::new(vec![])], 1), Err(BuildError::ShareLength { .. })));
    let dup = vec![UnsealShare::new(vec![1; 33]), UnsealShare::new(vec![1; 33])];
    assert_eq!(Keystore::new(dup, 1).unwrap_err(), BuildError::DuplicateShare(0, 1));
    let mut keystore = Keystore::new(shares(), 3).unwrap();
    for bad in ["", "Upper", "unseal-share", "key-check", "with space", &"x".repeat(65)] {
        assert!(keystore.set_item(bad, SecretBytes::new(vec![1])).is_err(), "{bad:?}");
    }
}

#[test]
fn new_keystores_get_distinct_random_salts() {
    let a = Keystore::new(shares(), 3).unwrap();
    let b = Keystore::new(shares(), 3).unwrap();
    assert_ne!(a.salt(), b.salt());
}

#[test]
fn a_keystore_without_shares_gets_them_once_and_never_again() {
    let mut keystore = Keystore::without_shares().unwrap();
    keystore.set_item("pki-root-ca-key", SecretBytes::new(b"ca".to_vec())).unwrap();
    let file = keystore.seal(&kek(7)).unwrap();
    let parsed = KeystoreFile::parse(&file.to_bytes()).unwrap();
    assert_eq!(parsed.secret_shares, 0);
    let mut opened = open(&parsed, &kek(7)).unwrap();
    assert!(!opened.has_shares());
    opened.set_shares(shares(), 3).unwrap();
    assert_eq!(opened.set_shares(shares(), 3).unwrap_err(), BuildError::SharesAlreadySet);
    let reopened = open(&KeystoreFile::parse(&opened.seal(&kek(7)).unwrap().to_bytes()).unwrap(), &kek(7)).unwrap();
    assert_eq!(reopened.shares(), shares().as_slice());
    assert_eq!(reopened.item("pki-root-ca-key").unwrap().expose(), b"ca");
}

#[test]
fn an_authenticated_but_empty_or_duplicate_share_is_refused_on_open() {
    // Regression (found by fuzzing): open() accepted what Keystore::new refuses.
    let (_, file) = sealed();
    let cipher = Aes256Gcm::new(kek(7).expose().into());
    for plain in [Vec::new(), vec![1u8; 33]] {
        let mut value: Value = serde_json::from_slice(&file.to_bytes()).unwrap();
        let (nonce, ciphertext) = encrypt(&cipher, PURPOSE_UNSEAL_SHARE, 1, &plain).unwrap();
        value["items"][1]["nonce"] = Value::String(nonce);
        value["items"][1]["ciphertext"] = Value::String(ciphertext);
        let edited = KeystoreFile::parse(&reseal_checksum(value)).unwrap();
        let err = open(&edited, &kek(7)).unwrap_err();
        assert!(
            matches!(err, OpenError::Format(FormatError::Invalid(ref m)) if m.contains("unseal shares")),
            "{err:?}"
        );
    }
}

#[test]
fn only_a_pending_generation_ever_replaces_the_shares_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = KeystoreDir::new(dir.path().join("keystore"));
    let (keystore, file) = sealed();
    store.create(&file).unwrap();
    let new: Vec<UnsealShare> = (20..23u8).map(|i| UnsealShare::new(vec![i; 33])).collect();

    // A plain update cannot swap the shares, and promoting with nothing pending changes nothing.
    let before = std::fs::read(store.path()).unwrap();
    let swapped = store.update(&kek(7), |k| {
        *k = Keystore { shares: new.clone(), threshold: 2, ..k.clone() };
        Ok(())
    });
    assert!(swapped.is_err());
    assert!(store.promote_pending_shares(&kek(7)).is_err());
    assert_eq!(std::fs::read(store.path()).unwrap(), before, "bad requests wrote nothing");

    let pending = PendingShares::new(new.clone(), 2, "verification-7754".into()).unwrap();
    store.update(&kek(7), |k| k.set_pending_shares(&pending)).unwrap();
    let reopened = store.open(&kek(7)).unwrap();
    assert_eq!(reopened.shares(), keystore.shares(), "pending is not current");
    assert_eq!(reopened.pending_shares().unwrap(), Some(pending));
    assert!(!std::fs::read_to_string(store.path()).unwrap().contains("verification-7754"), "the item is encrypted");

    store.promote_pending_shares(&kek(7)).unwrap();
    let promoted = store.open(&kek(7)).unwrap();
    assert_eq!((promoted.shares(), promoted.threshold()), (new.as_slice(), 2));
    assert_eq!(promoted.pending_shares().unwrap(), None);
    assert_eq!(promoted.item("pki-ca-key"), keystore.item("pki-ca-key"), "other items are kept");
    assert_eq!(KeystoreFile::parse(&std::fs::read(store.path()).unwrap()).unwrap().secret_shares, 3);
}
