//! What edgeseal keeps so that a supervised OpenBao opens itself: the static seal key(s) and
//! edgeseal's own TLS client identity, both keystore items under the KEK (SPEC §5, §6). They are
//! made and stored durably before OpenBao ever starts, so nothing that matters exists only in a
//! process.

use openbao_client::{ClientIdentity, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::keystore::BuildError;
use crate::{Keystore, SecretBytes};

/// Keystore item: the static seal key OpenBao is sealed with (`{"id", "key"}`, the key in hex).
pub const ITEM_SEAL_KEY: &str = "seal-key";
/// Keystore item: the key a rotation is moving to; present only while a rotation is under way.
pub const ITEM_SEAL_KEY_NEXT: &str = "seal-key-next";
/// Keystore item: edgeseal's TLS client certificate and key (`{"cert", "key"}`, PEM).
pub const ITEM_CLIENT_IDENTITY: &str = "client-identity";
/// Keystore item: the recovery key of the static-sealed store (OpenBao needs one to rewrap its root
/// key when the seal key rotates).
pub const ITEM_RECOVERY_KEY: &str = "recovery-key";

/// Bytes of a static seal key (AES-256-GCM).
pub const SEAL_KEY_LEN: usize = 32;

secret_types::secret_array! {
    /// The raw bytes of a static seal key.
    pub struct SealKeyBytes([u8; SEAL_KEY_LEN]);
}

/// A static seal key and the id OpenBao records with what it encrypts (`current_key_id`).
#[derive(Debug, PartialEq, Eq)]
pub struct SealKey {
    /// Not secret: names the key in OpenBao's config and storage.
    pub id: String,
    key: SealKeyBytes,
}

/// A malformed seal item: the keystore opened (the KEK is right) but the item is not what edgeseal
/// writes.
#[derive(Debug, thiserror::Error)]
#[error("keystore item {item} is malformed ({reason}); restore the keystore from a backup")]
pub struct MalformedItem {
    /// The item.
    pub item: &'static str,
    /// What is wrong.
    pub reason: String,
}

#[derive(Serialize, Deserialize)]
struct StoredKey {
    id: String,
    key: SecretString,
}

#[derive(Serialize, Deserialize)]
struct StoredIdentity {
    cert: String,
    key: SecretString,
}

impl SealKey {
    /// A new random key with a random id.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut raw = [0u8; SEAL_KEY_LEN];
        getrandom::getrandom(&mut raw)?;
        let key = SealKeyBytes::from_bytes(raw);
        let mut id = [0u8; 8];
        getrandom::getrandom(&mut id)?;
        Ok(Self { id: format!("edgeseal-{}", hex::encode(id)), key })
    }

    /// The key as OpenBao reads it from `env://`: 64 hex digits.
    pub fn hex(&self) -> SecretString {
        SecretString::new(hex::encode(self.key.expose()))
    }

    pub(crate) fn to_item(&self) -> SecretBytes {
        let stored = StoredKey { id: self.id.clone(), key: self.hex() };
        SecretBytes::new(serde_json::to_vec(&stored).unwrap_or_default())
    }

    pub(crate) fn from_item(item: &'static str, bytes: &[u8]) -> Result<Self, MalformedItem> {
        let bad = |reason: String| MalformedItem { item, reason };
        let stored: StoredKey = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        let raw = Zeroizing::new(hex::decode(stored.key.expose()).map_err(|_| bad("the key is not hex".into()))?);
        let raw: [u8; SEAL_KEY_LEN] =
            raw.as_slice().try_into().map_err(|_| bad(format!("the key is not {SEAL_KEY_LEN} bytes")))?;
        if !valid_id(&stored.id) {
            return Err(bad(format!("key id {:?} is not [A-Za-z0-9_-]{{1,64}}", stored.id)));
        }
        Ok(Self { id: stored.id, key: SealKeyBytes::from_bytes(raw) })
    }
}

/// Key ids go into OpenBao's HCL unquoted-safe: letters, digits, `-` and `_`.
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// edgeseal's TLS client identity for OpenBao's `cert` auth method: a self-signed certificate (only
/// its public part goes into OpenBao's configuration) and its private key.
#[derive(Clone)]
pub struct IdentityPem {
    /// The certificate, PEM (public).
    pub cert: String,
    key: SecretString,
}

impl std::fmt::Debug for IdentityPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityPem").field("cert", &self.cert).finish_non_exhaustive()
    }
}

/// Common name of edgeseal's client certificate.
pub const CLIENT_CN: &str = "edgeseal setup";

impl IdentityPem {
    /// A new P-256 key and a self-signed client-auth certificate for it.
    pub fn generate() -> Result<Self, rcgen::Error> {
        Self::generate_named(CLIENT_CN)
    }

    /// A new P-256 key and a self-signed client-auth certificate for it, with common name `cn`.
    pub fn generate_named(cn: &str) -> Result<Self, rcgen::Error> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "edgeseal");
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key)?;
        let key_der = Zeroizing::new(key.serialize_der());
        Ok(Self { cert: pem("CERTIFICATE", cert.der()), key: SecretString::new(pem("PRIVATE KEY", &key_der)) })
    }

    /// The private key, PEM (for a backup or a test's plaintext scan; never printed).
    pub fn private_key(&self) -> &SecretString {
        &self.key
    }

    /// The identity the OpenBao client presents.
    pub fn client_identity(&self) -> Result<ClientIdentity, openbao_client::Error> {
        ClientIdentity::from_pem(&self.cert, self.key.expose().as_bytes())
    }

    pub(crate) fn to_item(&self) -> SecretBytes {
        let stored = StoredIdentity { cert: self.cert.clone(), key: self.key.clone() };
        SecretBytes::new(serde_json::to_vec(&stored).unwrap_or_default())
    }

    pub(crate) fn from_item(item: &'static str, bytes: &[u8]) -> Result<Self, MalformedItem> {
        let bad = |reason: String| MalformedItem { item, reason };
        let stored: StoredIdentity = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        let identity = Self { cert: stored.cert, key: stored.key };
        identity.client_identity().map_err(|e| bad(e.to_string()))?;
        Ok(identity)
    }
}

/// PEM armour (RFC 7468) around DER; the base64 lives in a wiped buffer too.
fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let body = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(der));
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Everything a supervised, static-sealed OpenBao needs from the keystore.
#[derive(Debug)]
pub struct SealMaterial {
    /// The key OpenBao is sealed with.
    pub current: SealKey,
    /// During a rotation: the key OpenBao is moving to (then `current` is its `previous_key`).
    pub next: Option<SealKey>,
    /// edgeseal's client certificate and key.
    pub identity: IdentityPem,
}

/// Why seal material could not be made.
#[derive(Debug, thiserror::Error)]
pub enum MaterialError {
    /// The OS random generator failed.
    #[error("the random generator failed: {0}")]
    Random(String),
    /// rcgen could not make the client certificate.
    #[error("making edgeseal's client certificate: {0}")]
    Certificate(#[from] rcgen::Error),
}

impl SealMaterial {
    /// A new seal key and client identity.
    pub fn generate() -> Result<Self, MaterialError> {
        let random = |e: getrandom::Error| MaterialError::Random(e.to_string());
        Ok(Self { current: SealKey::generate().map_err(random)?, next: None, identity: IdentityPem::generate()? })
    }

    /// The material in `keystore`: `None` when it holds no seal key (a store that is not
    /// static-sealed yet).
    pub fn from_keystore(keystore: &Keystore) -> Result<Option<Self>, MalformedItem> {
        let Some(current) = keystore.item(ITEM_SEAL_KEY) else { return Ok(None) };
        let current = SealKey::from_item(ITEM_SEAL_KEY, current.expose())?;
        let next = keystore
            .item(ITEM_SEAL_KEY_NEXT)
            .map(|n| SealKey::from_item(ITEM_SEAL_KEY_NEXT, n.expose()))
            .transpose()?;
        let identity = keystore.item(ITEM_CLIENT_IDENTITY).ok_or_else(|| MalformedItem {
            item: ITEM_CLIENT_IDENTITY,
            reason: "missing beside the seal key".into(),
        })?;
        let identity = IdentityPem::from_item(ITEM_CLIENT_IDENTITY, identity.expose())?;
        Ok(Some(Self { current, next, identity }))
    }

    /// Records this material in `keystore` (the caller writes the keystore durably).
    pub fn store(&self, keystore: &mut Keystore) -> Result<(), BuildError> {
        keystore.set_item(ITEM_SEAL_KEY, self.current.to_item())?;
        keystore.set_item(ITEM_CLIENT_IDENTITY, self.identity.to_item())?;
        match &self.next {
            Some(next) => keystore.set_item(ITEM_SEAL_KEY_NEXT, next.to_item()),
            None => {
                keystore.remove_item(ITEM_SEAL_KEY_NEXT);
                Ok(())
            }
        }
    }

    /// Completes a rotation in `keystore`: the next key becomes the current one. Returns whether there
    /// was a next key.
    pub fn promote_next(keystore: &mut Keystore) -> Result<bool, BuildError> {
        let Some(next) = keystore.item(ITEM_SEAL_KEY_NEXT).cloned() else { return Ok(false) };
        keystore.set_item(ITEM_SEAL_KEY, next)?;
        keystore.remove_item(ITEM_SEAL_KEY_NEXT);
        Ok(true)
    }

    /// Starts a rotation in `keystore`: a new random key is recorded as the next one. Refused (with
    /// `Ok(false)`) while one is pending. The rotation completes at the next boot.
    pub fn begin_rotation(keystore: &mut Keystore) -> Result<Option<String>, BuildError> {
        if keystore.item(ITEM_SEAL_KEY_NEXT).is_some() || keystore.item(ITEM_SEAL_KEY).is_none() {
            return Ok(None);
        }
        let next = SealKey::generate().map_err(|e| BuildError::Random(e.to_string()))?;
        keystore.set_item(ITEM_SEAL_KEY_NEXT, next.to_item())?;
        Ok(Some(next.id))
    }

    /// The keys OpenBao starts with: `(current, previous)`. During a rotation the next key is current
    /// and the stored one previous, so OpenBao opens with either and rewraps to the next.
    pub fn keys(&self) -> (&SealKey, Option<&SealKey>) {
        match &self.next {
            Some(next) => (next, Some(&self.current)),
            None => (&self.current, None),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn material_round_trips_through_the_keystore_and_never_prints_a_key() {
        let mut material = SealMaterial::generate().unwrap();
        material.next = Some(SealKey::generate().unwrap());
        let mut keystore = Keystore::without_shares().unwrap();
        material.store(&mut keystore).unwrap();
        let back = SealMaterial::from_keystore(&keystore).unwrap().unwrap();
        assert_eq!(back.current, material.current);
        assert_eq!(back.next, material.next);
        assert_eq!(back.identity.cert, material.identity.cert);
        let shown = format!("{material:?}");
        assert!(!shown.contains(material.current.hex().expose()), "{shown}");
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
        let (current, previous) = back.keys();
        assert_eq!((current, previous), (material.next.as_ref().unwrap(), Some(&material.current)));
    }

    #[test]
    fn a_keystore_without_a_seal_key_has_no_material_and_a_broken_item_is_named() {
        let mut keystore = Keystore::without_shares().unwrap();
        assert!(SealMaterial::from_keystore(&keystore).unwrap().is_none());
        // (item, stored bytes, error mentions)
        let cases: [(&str, &[u8], &str); 4] = [
            (ITEM_SEAL_KEY, b"not json", ITEM_SEAL_KEY),
            (ITEM_SEAL_KEY, br#"{"id":"k1","key":"00"}"#, "32 bytes"),
            (
                ITEM_SEAL_KEY,
                br#"{"id":"k 1\"","key":"0000000000000000000000000000000000000000000000000000000000000000"}"#,
                "key id",
            ),
            (ITEM_CLIENT_IDENTITY, br#"{"cert":"x","key":"y"}"#, ITEM_CLIENT_IDENTITY),
        ];
        for (item, bytes, says) in cases {
            let mut broken = keystore.clone();
            SealMaterial::generate().unwrap().store(&mut broken).unwrap();
            broken.set_item(item, SecretBytes::new(bytes.to_vec())).unwrap();
            let e = SealMaterial::from_keystore(&broken).unwrap_err();
            assert!(e.to_string().contains(says), "{item}: {e}");
        }
        keystore.set_item(ITEM_SEAL_KEY, SealKey::generate().unwrap().to_item()).unwrap();
        assert!(SealMaterial::from_keystore(&keystore).unwrap_err().to_string().contains("missing beside"));
    }
}
