//! The CA keys a run signs with (`pki.ca_keys: keystore`): loaded from the [`CaKeyStore`] and accepted
//! only for the very certificate they were stored with, and new CAs handed back to it before anything is
//! written to disk. With `ca_keys: destroy` nothing here is used.
//!
//! It says what the loaded keys permit in `plan`'s terms ([`KeyAccess`]) and gives `issue` the
//! [`Signer`] it signs with; it imports neither `issue` nor `report`, so dependencies point one way.

use rcgen::PublicKeyData;
use time::OffsetDateTime;

use crate::error::PkiError;
use crate::keystore::{CaKeyStore, INTERMEDIATE_CA_ITEM, ROOT_CA_ITEM};
use crate::pem;
use crate::plan::KeyAccess;
use crate::scan::{self, CaCert, Disk};
use crate::secret::{PrivateKey, SecretPem};
use crate::x509::{self, CertFacts};

/// A CA that can sign: its certificate and key.
pub(crate) struct Signer<'a> {
    pub(crate) der: &'a [u8],
    pub(crate) key: &'a PrivateKey,
    pub(crate) not_after: OffsetDateTime,
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
    root: Option<Signer<'_>>,
    intermediate: Option<Signer<'_>>,
) -> Result<(), PkiError> {
    let item = |ca: Signer<'_>| pem::encode_key_and_certs(ca.key.pair().serialized_der(), &[ca.der]);
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
