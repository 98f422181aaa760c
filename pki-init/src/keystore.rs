//! Where the CA private keys live between runs when `pki.ca_keys` is `keystore`.
//!
//! pki-init never writes a CA key to disk itself: it hands each CA's key, together with the CA's
//! certificate, to a [`CaKeyStore`] — in edgeseal the KEK-encrypted keystore of `secretstore-setup` —
//! and asks for them back on the next run. Keeping the certificate there too lets a run restore
//! `ca/ca.pem` and `ca/intermediate.pem` byte for byte when `pki.dir` is a tmpfs that a reboot emptied.

use std::collections::BTreeMap;
use std::error::Error;

use rcgen::PublicKeyData;

use crate::error::PkiError;
use crate::issue::Issued;
use crate::pem;
use crate::plan::KeyAccess;
use crate::scan::{self, CaCert, Disk};
use crate::secret::{PrivateKey, SecretPem};
use crate::x509::{self, CertFacts};

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

/// The CA keys this run can sign with, and which CA certificates came back from the keystore.
pub(crate) struct Loaded {
    pub(crate) root: Option<PrivateKey>,
    pub(crate) intermediate: Option<PrivateKey>,
    pub(crate) access: KeyAccess,
    pub(crate) restored_root: bool,
    pub(crate) restored_intermediate: bool,
}

impl Loaded {
    pub(crate) fn destroyed() -> Self {
        Self {
            root: None,
            intermediate: None,
            access: KeyAccess::destroyed(),
            restored_root: false,
            restored_intermediate: false,
        }
    }
}

/// Loads both CAs from the keystore. A CA certificate missing on disk is taken from the keystore (and
/// written back by the run); a key is used only for the very certificate it was stored with.
pub(crate) fn load_cas(store: &mut dyn CaKeyStore, disk: &mut Disk) -> Result<Loaded, PkiError> {
    let root = load_item(store, ROOT_CA_ITEM)?;
    let intermediate = load_item(store, INTERMEDIATE_CA_ITEM)?;
    let restore = |slot: &mut Option<CaCert>, item: &Option<(PrivateKey, CertFacts)>| match (&slot, item) {
        (None, Some((_, cert))) => {
            *slot = Some(CaCert { facts: cert.clone(), signed_by_parent: false });
            true
        }
        _ => false,
    };
    let restored_root = restore(&mut disk.root, &root);
    let restored_intermediate = restore(&mut disk.intermediate, &intermediate);
    if restored_root || restored_intermediate {
        scan::link(disk);
    }
    let (root, root_access) = usable(root, ROOT_CA_ITEM, disk.root.as_ref(), "ca/ca.pem");
    let (intermediate, int_access) =
        usable(intermediate, INTERMEDIATE_CA_ITEM, disk.intermediate.as_ref(), "ca/intermediate.pem");
    Ok(Loaded {
        root,
        intermediate,
        access: KeyAccess { root: root_access, intermediate: int_access },
        restored_root,
        restored_intermediate,
    })
}

/// The key of a loaded item, if it was stored with the very certificate on disk; else why not.
fn usable(
    item: Option<(PrivateKey, CertFacts)>,
    name: &str,
    on_disk: Option<&CaCert>,
    file: &str,
) -> (Option<PrivateKey>, Result<(), String>) {
    match (item, on_disk) {
        (None, _) => (None, Err(format!("is not in the keystore (item {name})"))),
        (Some((key, cert)), Some(ca)) if ca.facts.der == cert.der => (Some(key), Ok(())),
        (Some(_), _) => (None, Err(format!("in the keystore (item {name}) belongs to another {file}"))),
    }
}

/// One keystore item: a CA's PKCS#8 key followed by its certificate, the key matching the certificate.
fn load_item(store: &mut dyn CaKeyStore, item: &str) -> Result<Option<(PrivateKey, CertFacts)>, PkiError> {
    let bad = |reason: String| PkiError::KeystoreItem { item: item.to_string(), reason };
    let Some(text) =
        store.load(item).map_err(|source| PkiError::Keystore { op: "loading", item: item.to_string(), source })?
    else {
        return Ok(None);
    };
    let blocks = pem::decode(text.expose().as_bytes()).map_err(|e| bad(e.to_string()))?;
    let [key, cert] = blocks.as_slice() else {
        return Err(bad(format!("expected a private key and a certificate, found {} PEM blocks", blocks.len())));
    };
    if key.label != pem::PRIVATE_KEY || cert.label != pem::CERTIFICATE {
        return Err(bad(format!("expected a PRIVATE KEY then a CERTIFICATE, found {} then {}", key.label, cert.label)));
    }
    let key = scan::key_from_der(&key.der).map_err(bad)?;
    let cert = x509::parse(&cert.der).map_err(bad)?;
    if cert.spki != key.pair().subject_public_key_info() || !cert.is_ca {
        return Err(bad("the key does not belong to the CA certificate stored with it".into()));
    }
    Ok(Some((key, cert)))
}

/// Hands each new CA (key and certificate) to the keystore before anything is written to disk.
pub(crate) fn save_cas(
    store: &mut dyn CaKeyStore,
    root: Option<&Issued>,
    intermediate: Option<&Issued>,
) -> Result<(), PkiError> {
    let item = |ca: &Issued| pem::encode_key_and_certs(ca.key.pair().serialized_der(), &[&ca.der]);
    let root = root.map(item);
    let intermediate = intermediate.map(item);
    let mut items: Vec<(&str, &SecretPem)> = Vec::new();
    if let Some(k) = &root {
        items.push((ROOT_CA_ITEM, k));
    }
    if let Some(k) = &intermediate {
        items.push((INTERMEDIATE_CA_ITEM, k));
    }
    if items.is_empty() {
        return Ok(());
    }
    let names = items.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ");
    store.save(&items).map_err(|source| PkiError::Keystore { op: "saving", item: names, source })
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
        let key = SecretPem::new("k".into());
        store.save(&[(ROOT_CA_ITEM, &key)]).unwrap();
        assert_eq!(store.load(ROOT_CA_ITEM).unwrap().unwrap().expose(), "k");
        assert_eq!(store.saves(), 1);
        assert!(!format!("{store:?}").contains("\"k\""));
    }
}
