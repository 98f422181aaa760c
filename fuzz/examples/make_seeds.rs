//! Writes the seed corpus under `fuzz/seeds/<target>/`: `cargo run --example make_seeds` in `fuzz/`.
//!
//! Keystores are made with the library itself (fresh salt and nonces each run, so files differ between
//! runs); the EdgeX seeds are the test fixtures plus one file encrypted under the hook IKM and salt the
//! `edgex_resp_init` target uses. Every seed is checked to parse (or, for deliberately bad ones, to
//! fail) the way the target expects, so a seed that stops exercising the deep path is noticed here.

use std::fs;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use edgeseal_fuzz::{resign, EDGEX_IKM, EDGEX_SALT};
use kdf_plugins::kek::hkdf_sha256;
use kdf_plugins::Kek;
use secretstore_setup::edgex_import::{Layout, RespInit};
use secretstore_setup::keystore::{self, Keystore, KeystoreFile};
use secretstore_setup::{SecretBytes, UnsealShare};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR"));
    keystore_seeds(&fuzz.join("seeds/keystore_parse"))?;
    plugin_output_seeds(fuzz, &fuzz.join("seeds/plugin_output"))?;
    edgex_seeds(fuzz, &fuzz.join("seeds/edgex_resp_init"))?;
    hwfp_seeds(&fuzz.join("seeds/hwfp_parse"))?;
    fleet_seeds(&fuzz.join("seeds/fleet_records"))?;
    Ok(())
}

fn fresh_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir)?;
    }
    fs::create_dir_all(dir)?;
    Ok(())
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    fs::write(dir.join(name), bytes)?;
    Ok(())
}

fn keystore_seeds(dir: &Path) -> Result<()> {
    fresh_dir(dir)?;
    let zero = Kek::from_bytes([0; 32]);
    let other = Kek::from_bytes([7; 32]);
    let shares = |n: u8, len: usize| (1..=n).map(|i| UnsealShare::new(vec![i; len])).collect::<Vec<_>>();

    // 5 shares (OpenBao's default), threshold 3, one named item; sealed under the all-zero KEK the
    // target opens with, so that the decryption path is reached.
    let mut full = Keystore::new(shares(5, 33), 3)?;
    full.set_item("pki-ca-key", SecretBytes::new(b"-----BEGIN PRIVATE KEY----- seed".to_vec()))?;
    full.set_item("admin-token", SecretBytes::new(b"s.seedtoken".to_vec()))?;
    // No shares yet: a keystore made before OpenBao is initialized, holding a PKI key only.
    let mut empty = Keystore::without_shares()?;
    empty.set_item("pki-ca-key", SecretBytes::new(b"-----BEGIN PRIVATE KEY----- early".to_vec()))?;
    let seeds = [
        ("zero-kek-5of3-items.json", full.seal(&zero)?, true),
        ("zero-kek-no-shares.json", empty.seal(&zero)?, true),
        ("zero-kek-1of1.json", Keystore::new(shares(1, 33), 1)?.seal(&zero)?, true),
        ("other-kek-3of2.json", Keystore::new(shares(3, 16), 2)?.seal(&other)?, false),
    ];
    for (name, file, opens) in seeds {
        let bytes = file.to_bytes();
        assert_eq!(KeystoreFile::parse(&bytes)?, file, "{name}: does not round-trip");
        assert_eq!(keystore::open(&file, &zero).is_ok(), opens, "{name}: opens with the zero KEK");
        // The fuzz target's re-signing must reproduce the library's bytes exactly.
        assert_eq!(resign(&bytes).as_deref(), Some(bytes.as_slice()), "{name}: resign differs from to_bytes");
        write(dir, name, &bytes)?;
    }
    // An edited threshold with the old checksum: `parse` refuses it, the re-signed copy opens.
    let text = String::from_utf8(full.seal(&zero)?.to_bytes())?;
    let edited = text.replace("\"secret_threshold\":3", "\"secret_threshold\":2");
    assert_ne!(edited, text, "no secret_threshold field");
    assert!(KeystoreFile::parse(edited.as_bytes()).is_err(), "edited keystore still parses");
    let resigned = resign(edited.as_bytes()).ok_or("edited keystore is not an object")?;
    assert_eq!(keystore::open(&KeystoreFile::parse(&resigned)?, &zero)?.threshold(), 2, "re-signed keystore");
    write(dir, "edited-threshold-stale-checksum.json", edited.as_bytes())?;
    write(dir, "not-an-object.json", b"[1,2,3]\n")?;
    Ok(())
}

fn plugin_output_seeds(fuzz: &Path, dir: &Path) -> Result<()> {
    fresh_dir(dir)?;
    let fixtures = fixtures(fuzz);
    write(dir, "ikm.hex", &fs::read(fixtures.join("ikm.hex"))?)?;
    let cases: serde_json::Value = serde_json::from_slice(&fs::read(fixtures.join("hook-output-cases.json"))?)?;
    let cases = cases["cases"].as_array().ok_or("hook-output-cases.json has no cases")?;
    for (i, case) in cases.iter().enumerate() {
        let stdout = case["stdout"].as_str().ok_or("case without stdout")?;
        write(dir, &format!("hook-case-{i:02}"), stdout.as_bytes())?;
    }
    write(dir, "max-len", format!("{}\n", "ab".repeat(1024)).as_bytes())?;
    write(dir, "min-len", format!("{}\n", "0f".repeat(16)).as_bytes())?;
    Ok(())
}

fn edgex_seeds(fuzz: &Path, dir: &Path) -> Result<()> {
    fresh_dir(dir)?;
    for entry in fs::read_dir(fixtures(fuzz))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        if name.starts_with("resp-init-") && name.ends_with(".json") {
            write(dir, &name, &fs::read(&path)?)?;
        }
    }
    // Encrypted under the IKM and salt the target passes, so `shares(Some(..))` decrypts it: one file
    // per HKDF info family.
    let ikm = vec![EDGEX_IKM; 32];
    for info in ["secretstore", "vault"] {
        let mut keys = Vec::new();
        let mut nonces = Vec::new();
        for i in 0..3u8 {
            let mut key = [0u8; 32];
            hkdf_sha256(&ikm, &EDGEX_SALT, format!("{info}{i}").as_bytes(), &mut key).map_err(|e| e.to_string())?;
            let nonce = [i; 12];
            let share = vec![0x40 + i; 33];
            let sealed = Aes256Gcm::new(&key.into())
                .encrypt(Nonce::from_slice(&nonce), share.as_slice())
                .map_err(|e| e.to_string())?;
            keys.push(hex::encode(sealed));
            nonces.push(hex::encode(nonce));
        }
        let json = serde_json::json!({ "encrypted_keys": keys, "nonces": nonces });
        let bytes = format!("{json}\n").into_bytes();
        let resp = RespInit::parse(&bytes)?;
        let ikm = kdf_plugins::Ikm::new(ikm.clone());
        let (shares, layout) = resp.shares(Some((&ikm, &EDGEX_SALT)))?;
        assert_eq!(shares.len(), 3);
        assert!(matches!(layout, Layout::Encrypted(_)), "{info}: not decrypted");
        write(dir, &format!("fuzz-key-encrypted-{info}.json"), &bytes)?;
    }
    Ok(())
}

fn hwfp_seeds(dir: &Path) -> Result<()> {
    fresh_dir(dir)?;
    let seeds: &[(&str, &str)] = &[
        (
            "cpuinfo-x86",
            "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu vme\n\n\
             processor\t: 1\nmodel name\t: AMD EPYC 7B13\n",
        ),
        (
            "cpuinfo-pi",
            "processor\t: 0\nBogoMIPS\t: 108.00\nCPU part\t: 0xd08\n\nHardware\t: BCM2835\n\
             Revision\t: c03114\nSerial\t\t: 10000000abcdef01\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n",
        ),
        ("dmi-uuid", "4C4C4544-0042-3510-8052-B4C04F4E3732\n"),
        ("dmi-uuid-ami-default", "03000200-0400-0500-0006-000700080009\n"),
        ("dmi-serial", "CN7016351S0123\n"),
        ("dmi-serial-oem", "To be filled by O.E.M.\n"),
        ("machine-id", "5f1c0a9e2b7d4c3e8a6f0b1d2c3e4f5a\n"),
        ("mac", "3c:ec:ef:12:34:56\n"),
        ("mac-local", "02:42:ac:11:00:02\n"),
        ("usb-path", "sys/devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1:1.0"),
    ];
    for (name, text) in seeds {
        write(dir, name, text.as_bytes())?;
    }
    Ok(())
}

fn fixtures(fuzz: &Path) -> PathBuf {
    fuzz.join("../secretstore-setup/tests/fixtures/edgex")
}

/// Records signed with the `fleet_records` target's org key, for its node: each verifies, so the
/// fuzzer starts past the signature checks (mutations then exercise the refusals).
fn fleet_seeds(dir: &Path) -> Result<()> {
    use edgeseal_bundle::NodeKeys;
    use edgeseal_fleet::node::{plan, Fetched, Installed, FETCHED_FORMAT};
    use edgeseal_fleet::record::{seal_org_key, seal_secret, SecretMeta, SecretValue, StatusRecord};
    use edgeseal_fleet::{OrgKey, SecretRef};
    use edgeseal_fuzz::{FLEET_NODE_KEYS, FLEET_ORG_KEY_FILE};

    fresh_dir(dir)?;
    let org = OrgKey::from_bytes(FLEET_ORG_KEY_FILE.as_bytes())?;
    let keys = NodeKeys::from_item(FLEET_NODE_KEYS.as_bytes())?;
    let node = keys.node_id();
    let g = org.current();
    let meta = SecretMeta {
        node: node.clone(),
        secret: SecretRef::parse("db/password")?,
        secret_id: "00ff".into(),
        version: 1,
        not_before: None,
        expires: Some(2_000),
    };
    let value = SecretValue::new(br#"{"value":"seed"}"#.to_vec());
    let record = seal_secret(&org, g.number, &g.key, &meta, &value)?.to_map();
    let entry = seal_org_key(&org, g.number, &g.key, &node, &keys.recipient())?.to_map();
    let status = StatusRecord::signed(&keys, 1_000, 1, Default::default(), vec!["db/x: rollback".into()]).to_map();
    let fetched = Fetched {
        format: FETCHED_FORMAT.into(),
        node,
        fetched: 1_000,
        org_key: Some(entry.clone()),
        secrets: [("db/password".to_string(), record.clone())].into_iter().collect(),
    };
    let p = plan(&fetched, &org.public(), &keys, &Installed::default(), 1_000)?;
    assert_eq!(p.install.len(), 1, "the fetched seed installs its one secret");
    write(dir, "secret_record.json", &serde_json::to_vec(&record)?)?;
    write(dir, "org_key_entry.json", &serde_json::to_vec(&entry)?)?;
    write(dir, "status.json", &serde_json::to_vec(&status)?)?;
    write(dir, "fetched.json", &serde_json::to_vec(&fetched)?)?;
    write(dir, "org_key_file.json", FLEET_ORG_KEY_FILE.as_bytes())?;
    Ok(())
}
