//! `security-bootstrap pki-init`: the device PKI, with CA keys kept in the encrypted keystore when
//! `pki.ca_keys: keystore`.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use kdf_plugins::{Ikm, KdfConfig};
use pki_init::{CaKeyStore, KeyStoreError, PkiConfig, Report, SecretPem};
use secretstore_setup::{Keystore, KeystoreDir, KeystoreError, SecretBytes};

use crate::config::Config;

/// The encrypted keystore as pki-init's CA key store. A keystore that does not exist yet (first boot,
/// before OpenBao is initialized) is created without shares; `setup` adds them later.
pub struct KeystoreCaStore {
    store: KeystoreDir,
    ikm: Ikm,
}

impl std::fmt::Debug for KeystoreCaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeystoreCaStore").field("store", &self.store).finish_non_exhaustive()
    }
}

impl KeystoreCaStore {
    /// A store over `dir`, whose KEK comes from `ikm`.
    pub fn new(dir: &Path, ikm: Ikm) -> Self {
        Self { store: KeystoreDir::new(dir), ikm }
    }

    fn open(&self) -> Result<Option<(Keystore, kdf_plugins::Kek)>, KeystoreError> {
        match self.store.open_with_ikm(&self.ikm) {
            Ok(opened) => Ok(Some(opened)),
            Err(KeystoreError::Missing(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl CaKeyStore for KeystoreCaStore {
    fn load(&mut self, item: &str) -> Result<Option<SecretPem>, KeyStoreError> {
        let Some((keystore, _)) = self.open()? else { return Ok(None) };
        Ok(keystore.item(item).and_then(|bytes| SecretPem::from_utf8(bytes.expose().to_vec())))
    }

    fn save(&mut self, items: &[(&str, &SecretPem)]) -> Result<(), KeyStoreError> {
        let set = |keystore: &mut Keystore| {
            for (name, pem) in items {
                keystore.set_item(name, SecretBytes::new(pem.expose().as_bytes().to_vec()))?;
            }
            Ok(())
        };
        if let Some((_, kek)) = self.open()? {
            self.store.update(&kek, set)?;
        } else {
            let mut keystore = Keystore::without_shares()?;
            set(&mut keystore)?;
            let kek = keystore.derive_kek(&self.ikm);
            self.store.create(&keystore.seal(&kek)?)?;
        }
        Ok(())
    }
}

/// Runs pki-init for `pki` (with the keystore when `ca_keys: keystore`).
pub fn converge(pki: &PkiConfig, kdf: &KdfConfig, keystore_dir: &Path) -> anyhow::Result<Report> {
    let now = time::OffsetDateTime::now_utc();
    let report = match pki.ca_keys {
        pki_init::CaKeys::Destroy => pki_init::run(pki, None, now)?,
        pki_init::CaKeys::Keystore => {
            let ikm = kdf_plugins::run_plugin(kdf)?;
            let mut store = KeystoreCaStore::new(keystore_dir, ikm);
            pki_init::run(pki, Some(&mut store), now)?
        }
    };
    Ok(report)
}

/// Runs the command.
pub fn run(config_path: &Path, check: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let report = if check {
        pki_init::check(&config.pki, time::OffsetDateTime::now_utc())?
    } else {
        converge(&config.pki, &config.kdf, &config.keystore.dir)?
    };
    write!(out, "{report}").context("writing the report")?;
    if check && !report.all_valid() {
        anyhow::bail!(
            "not every certificate in {} is present, valid and chained to the root",
            config.pki.dir.display()
        );
    }
    Ok(())
}
