//! Where the CA private keys live between runs when `pki.ca_keys` is `keystore`.
//!
//! pki-init never writes a CA key to disk itself: it hands each CA's key, together with the CA's
//! certificate, to a [`CaKeyStore`] — in edgeseal the KEK-encrypted keystore of `secretstore-setup` —
//! and asks for them back on the next run. Keeping the certificate there too lets a run restore
//! `ca/ca.pem` and `ca/intermediate.pem` byte for byte when `pki.dir` is a tmpfs that a reboot emptied.
//!
//! This module is the interface only (it depends on nothing but [`SecretPem`]); loading the CAs from a
//! store and saving new ones is `ca_keys`.

use std::collections::BTreeMap;
use std::error::Error;

use crate::secret::SecretPem;

/// Keystore item of the root CA: its PKCS#8 private key, then its certificate, in PEM.
pub const ROOT_CA_ITEM: &str = "pki-root-ca";
/// Keystore item of the intermediate CA: its PKCS#8 private key, then its certificate, in PEM.
pub const INTERMEDIATE_CA_ITEM: &str = "pki-intermediate-ca";

/// The error a [`CaKeyStore`] returns; pki-init reports it with the item name.
pub type KeyStoreError = Box<dyn Error + Send + Sync>;

/// Encrypted storage for the CA private keys, keyed by item name (`[a-z0-9-]{1,64}`: the two
/// names above). Items are opaque PEM text to the store; at most a few KiB each.
pub trait CaKeyStore {
    /// The item stored under `item`, or `None` if there is none.
    fn load(&mut self, item: &str) -> Result<Option<SecretPem>, KeyStoreError>;

    /// Stores all `items` at once (one atomic keystore write), replacing any with the same name.
    /// pki-init calls this before it writes the certificates of a new CA, so a crash in between
    /// leaves a CA in the keystore that the next run restores or, if something else is on disk by
    /// then, replaces.
    fn save(&mut self, items: &[(&str, &SecretPem)]) -> Result<(), KeyStoreError>;
}

/// A [`CaKeyStore`] in memory, for tests and tools. Keys are wiped when it is dropped.
#[derive(Debug, Default, Clone)]
pub struct MemoryKeyStore {
    items: BTreeMap<String, SecretPem>,
    saves: usize,
}

impl MemoryKeyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The key stored under `item`.
    pub fn get(&self, item: &str) -> Option<&SecretPem> {
        self.items.get(item)
    }

    /// Removes `item`, as if it had been lost.
    pub fn remove(&mut self, item: &str) -> Option<SecretPem> {
        self.items.remove(item)
    }

    /// Stores `key` under `item` directly.
    pub fn insert(&mut self, item: &str, key: SecretPem) {
        self.items.insert(item.to_string(), key);
    }

    /// How many times [`CaKeyStore::save`] was called.
    pub fn saves(&self) -> usize {
        self.saves
    }
}

impl CaKeyStore for MemoryKeyStore {
    fn load(&mut self, item: &str) -> Result<Option<SecretPem>, KeyStoreError> {
        Ok(self.items.get(item).cloned())
    }

    fn save(&mut self, items: &[(&str, &SecretPem)]) -> Result<(), KeyStoreError> {
        for (item, key) in items {
            self.items.insert((*item).to_string(), (*key).clone());
        }
        self.saves += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_names_fit_the_keystore() {
        for item in [ROOT_CA_ITEM, INTERMEDIATE_CA_ITEM] {
            assert!((1..=64).contains(&item.len()));
            assert!(item.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
        }
    }

    #[test]
    fn memory_store_saves_and_loads() {
        let mut store = MemoryKeyStore::new();
        assert!(store.load(ROOT_CA_ITEM).unwrap().is_none());
        let key = SecretPem::new("k");
        store.save(&[(ROOT_CA_ITEM, &key)]).unwrap();
        assert_eq!(store.load(ROOT_CA_ITEM).unwrap().unwrap().expose(), "k");
        assert_eq!(store.saves(), 1);
        assert!(!format!("{store:?}").contains("\"k\""));
    }
}
