//! The node identity (SPEC §13): an age X25519 identity (others encrypt bundles to its recipient), an
//! Ed25519 signing key (it signs the bundles this node makes) and a P-256 TLS client key with a
//! self-signed certificate (how the node authenticates to a fleet's central store). Made once, at the
//! first boot or the first `node show --config`, and kept only as two keystore items under the KEK.
//! The identity belongs to the device: a backup does not carry it, and a restored device keeps its
//! own.

use base64::Engine as _;
use edgeseal_bundle::{NodeKeys, NodePublic};
use kdf_plugins::{Ikm, Kek};
use sha2::{Digest, Sha256};

use crate::keystore::BuildError;
use crate::seal::material::{IdentityPem, MalformedItem};
use crate::{Keystore, KeystoreDir, KeystoreError, SecretBytes};

/// Keystore item: the age identity and the signing key ([`NodeKeys`]).
pub const ITEM_NODE_KEYS: &str = "node-keys";
/// Keystore item: the node's TLS client certificate and key (`{"cert", "key"}`, PEM).
pub const ITEM_NODE_TLS: &str = "node-tls";

/// A node's identity: its keys and its TLS client identity. `Debug` shows public values only.
#[derive(Debug)]
pub struct NodeIdentity {
    /// The age identity and the signing key.
    pub keys: NodeKeys,
    /// The TLS client certificate (common name = the node id) and its key.
    pub tls: IdentityPem,
}

/// Why the identity could not be read or made.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The keystore could not be read or written.
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
    /// An item is not what edgeseal writes.
    #[error(transparent)]
    Malformed(#[from] MalformedItem),
    /// Making the keys failed.
    #[error("making the node identity: {0}")]
    Generate(String),
}

impl NodeIdentity {
    /// A new identity.
    pub fn generate() -> Result<Self, IdentityError> {
        let keys = NodeKeys::generate().map_err(|e| IdentityError::Generate(e.to_string()))?;
        let tls = IdentityPem::generate_named(&keys.node_id()).map_err(|e| IdentityError::Generate(e.to_string()))?;
        Ok(Self { keys, tls })
    }

    /// The identity in `keystore`, if it holds one.
    pub fn from_keystore(keystore: &Keystore) -> Result<Option<Self>, MalformedItem> {
        let Some(keys) = keystore.item(ITEM_NODE_KEYS) else { return Ok(None) };
        let keys = NodeKeys::from_item(keys.expose())
            .map_err(|e| MalformedItem { item: ITEM_NODE_KEYS, reason: e.to_string() })?;
        let tls = keystore
            .item(ITEM_NODE_TLS)
            .ok_or_else(|| MalformedItem { item: ITEM_NODE_TLS, reason: "missing beside the node keys".into() })?;
        let tls = IdentityPem::from_item(ITEM_NODE_TLS, tls.expose())?;
        Ok(Some(Self { keys, tls }))
    }

    /// Records the identity in `keystore` (the caller writes the keystore durably).
    pub fn store(&self, keystore: &mut Keystore) -> Result<(), BuildError> {
        keystore.set_item(ITEM_NODE_TLS, self.tls.to_item())?;
        keystore.set_item(ITEM_NODE_KEYS, SecretBytes::new(self.keys.to_item().to_vec()))
    }

    /// The public values.
    pub fn public(&self) -> NodePublic {
        NodePublic {
            node_id: self.keys.node_id(),
            recipient: self.keys.recipient().to_string(),
            signing_key: self.keys.signer().to_string(),
            tls_cert_sha256: pem_sha256(&self.tls.cert),
            tls_cert: self.tls.cert.clone(),
        }
    }
}

/// SHA-256 of the DER inside a PEM certificate, hex (empty input gives the hash of nothing).
fn pem_sha256(pem: &str) -> String {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(body.trim()).unwrap_or_default();
    hex::encode(Sha256::digest(der))
}

/// The identity of the keystore in `store`, made and stored durably first if it has none. Returns
/// it and whether it was made now.
pub fn ensure(store: &KeystoreDir, kek: &Kek) -> Result<(NodeIdentity, bool), IdentityError> {
    if let Some(identity) = NodeIdentity::from_keystore(&store.open(kek)?)? {
        return Ok((identity, false));
    }
    let made = NodeIdentity::generate()?;
    // Under the keystore lock: a concurrent first `node show` and boot keep one identity, not two.
    let updated = store.update(kek, |keystore| match keystore.item(ITEM_NODE_KEYS) {
        Some(_) => Ok(()),
        None => made.store(keystore),
    })?;
    let identity = NodeIdentity::from_keystore(&updated)?
        .ok_or_else(|| MalformedItem { item: ITEM_NODE_KEYS, reason: "missing after it was stored".into() })?;
    let created = identity.public() == made.public();
    Ok((identity, created))
}

/// [`ensure`] from the plug-in's IKM, creating the keystore itself (without shares) if there is none
/// yet: a gateway shows its identity before its first boot. Returns the KEK too.
pub fn ensure_with_ikm(store: &KeystoreDir, ikm: &Ikm) -> Result<(Kek, NodeIdentity), IdentityError> {
    if store.read()?.is_none() {
        let build = |source| KeystoreError::Build { path: store.path().to_path_buf(), source };
        let mut keystore = Keystore::without_shares().map_err(build)?;
        let kek = keystore.derive_kek(ikm);
        let made = NodeIdentity::generate()?;
        made.store(&mut keystore).map_err(build)?;
        match store.create(&keystore.seal(&kek).map_err(build)?) {
            Ok(_) => return Ok((kek, made)),
            // Another process (a boot) created it meanwhile: use what it holds.
            Err(KeystoreError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let (_, kek) = store.open_with_ikm(ikm)?;
    let (identity, _) = ensure(store, &kek)?;
    Ok((kek, identity))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_identity_round_trips_through_the_keystore_and_shows_only_public_values() {
        let identity = NodeIdentity::generate().unwrap();
        let mut keystore = Keystore::without_shares().unwrap();
        identity.store(&mut keystore).unwrap();
        let back = NodeIdentity::from_keystore(&keystore).unwrap().unwrap();
        assert_eq!(back.public(), identity.public());
        let public = identity.public();
        // The certificate's common name is the node id (a UTF8String in the DER).
        let body: String = public.tls_cert.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD.decode(body).unwrap();
        assert!(der.windows(public.node_id.len()).any(|w| w == public.node_id.as_bytes()), "CN is the node id");
        assert_eq!(public.tls_cert_sha256, hex::encode(Sha256::digest(&der)));
        let shown = format!("{identity:?} {}", serde_json::to_string(&public).unwrap());
        assert!(!shown.contains("AGE-SECRET-KEY") && !shown.contains("PRIVATE KEY"), "{shown}");
        keystore.remove_item(ITEM_NODE_TLS);
        assert!(NodeIdentity::from_keystore(&keystore).unwrap_err().to_string().contains("missing beside"));
    }
}
