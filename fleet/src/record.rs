//! The signed records of the central store (SPEC §14), pure: made, verified and opened here, stored
//! and fetched elsewhere.
//!
//! - [`SecretRecord`]: `AES-256-GCM(V, K)` with a random nonce and an AAD binding the org (its public
//!   key), the generation of K, the node-independent secret id, service, name, version, not_before
//!   and expires; the whole record signed by the org key.
//! - [`OrgKeyEntry`]: K age-encrypted to one node's recipient, with the generation and the node id,
//!   signed by the org key.
//! - [`StatusRecord`]: what a node reports, signed by the node's own Ed25519 key.
//!
//! Each signature covers a context string of its own followed by the canonical JSON
//! ([`edgeseal_bundle::canonical`]) of every field but `signature`. Records are verified before
//! anything is decrypted; every refusal is a [`VerifyError`] naming what was wrong, never a value.

use std::collections::BTreeMap;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use edgeseal_bundle::canonical::to_canonical;
use edgeseal_bundle::{NodeKeys, Recipient, SignerKey};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use zeroize::Zeroizing;

use crate::layout::SecretRef;
use crate::org::{FleetKey, OrgKey};

/// `format` of a secret record.
pub const SECRET_FORMAT: &str = "edgeseal-fleet-secret-v1";
/// `format` of an org-key entry.
pub const ORG_KEY_FORMAT: &str = "edgeseal-fleet-org-key-entry-v1";
/// `format` of a node's status.
pub const STATUS_FORMAT: &str = "edgeseal-fleet-status-v1";

const SECRET_CONTEXT: &[u8] = b"edgeseal-fleet-v1 secret record\0";
const ORG_KEY_CONTEXT: &[u8] = b"edgeseal-fleet-v1 org-key entry\0";
const STATUS_CONTEXT: &[u8] = b"edgeseal-fleet-v1 status record\0";
const AAD_CONTEXT: &[u8] = b"edgeseal-fleet-v1 secret aad\0";

/// Largest plaintext V accepted (the local store's limit).
pub const MAX_VALUE: usize = 1024 * 1024;

secret_types::secret_bytes! {
    /// V: a secret's value as the local store holds it, the JSON object of its string keys and values
    /// (`{"value": "…"}` for a single string).
    pub struct SecretValue;
}

/// Why a record was refused. Never carries a value or a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Not a record edgeseal writes (missing or mistyped fields, another format).
    #[error("the record is malformed: {0}")]
    Malformed(String),
    /// Signed by a key that is not the org key this node trusts.
    #[error("the record is signed by {signer}, not by the org key {expected} (forged, or another org's)")]
    WrongSigner {
        /// The key the record names.
        signer: String,
        /// The trusted key.
        expected: String,
    },
    /// The signature does not verify: the record was altered after it was signed.
    #[error("the record's signature does not verify: it was altered after it was signed")]
    BadSignature,
    /// A correctly signed record in the wrong place: another node's, service's or name's entry.
    #[error("the record is for {field} {got:?}, but was read as {field} {expected:?} (moved or swapped)")]
    Mismatch {
        /// Which binding (`node`, `service`, `name`, `org`).
        field: &'static str,
        /// What the place it was read from says.
        expected: String,
        /// What the record says.
        got: String,
    },
    /// Encrypted under another generation of K than the one this node holds.
    #[error("the record is of key generation {got}, the node's org key is generation {expected} (an unfinished `fleet org-key rotate`, or a replay)")]
    WrongGeneration {
        /// The generation the node holds.
        expected: u64,
        /// The record's generation.
        got: u64,
    },
    /// An older version than the one installed: a replay.
    #[error("the record is version {got}, older than the installed version {installed} (a replayed record)")]
    Rollback {
        /// The installed version.
        installed: u64,
        /// The record's version.
        got: u64,
    },
    /// Signed correctly, yet the ciphertext does not open with K and its AAD.
    #[error("the ciphertext does not decrypt with the org key of its generation (altered, or a wrong K)")]
    Decrypt,
    /// The org-key entry does not open with this node's age identity.
    #[error("the org-key entry does not open with this node's identity: {0}")]
    OrgKey(String),
}

impl VerifyError {
    /// A short, stable name for status reports and metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::WrongSigner { .. } => "wrong_signer",
            Self::BadSignature => "bad_signature",
            Self::Mismatch { .. } => "mismatch",
            Self::WrongGeneration { .. } => "wrong_generation",
            Self::Rollback { .. } => "rollback",
            Self::Decrypt => "decrypt",
            Self::OrgKey(_) => "org_key",
        }
    }
}

/// Why a record could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The OS random generator failed.
    #[error("the random generator failed: {0}")]
    Random(String),
    /// Encryption failed.
    #[error("encrypting failed: {0}")]
    Encrypt(String),
    /// V is empty or too large.
    #[error("the value must be 1 byte to {MAX_VALUE} bytes")]
    Size,
}

/// Whether a verified secret applies now. Not an error: an expired item is one the node removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// Within its window.
    Valid,
    /// Before `not_before` (unix seconds): not installed yet.
    NotYet(i64),
    /// At or after `expires` (unix seconds): removed.
    Expired(i64),
}

/// Where `now` (unix seconds) falls in the window `[not_before, expires)`.
pub fn validity(not_before: Option<i64>, expires: Option<i64>, now: i64) -> Validity {
    match (not_before, expires) {
        (_, Some(expires)) if now >= expires => Validity::Expired(expires),
        (Some(not_before), _) if now < not_before => Validity::NotYet(not_before),
        _ => Validity::Valid,
    }
}

/// A secret record as stored at `nodes/<node>/secrets/<service>/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRecord {
    /// [`SECRET_FORMAT`].
    pub format: String,
    /// The org public key (`ed25519:…`) that signed it.
    pub org: String,
    /// The node it is for.
    pub node: String,
    /// The service.
    pub service: String,
    /// The secret's name.
    pub name: String,
    /// Names one value set by one `fleet secret set`: the same on every node it went to (hex).
    pub secret_id: String,
    /// The version (1, then +1 per set on this node).
    pub version: u64,
    /// The generation of K it is encrypted under.
    pub generation: u64,
    /// Not installed before this time (unix seconds).
    pub not_before: Option<i64>,
    /// Removed at this time (unix seconds).
    pub expires: Option<i64>,
    /// The AES-GCM nonce (base64, 12 bytes).
    pub nonce: String,
    /// AES-256-GCM(V, K) with its tag (base64).
    pub ciphertext: String,
    /// The org key's Ed25519 signature (base64).
    pub signature: String,
}

/// What a secret record says besides its ciphertext: the fields the AAD and the signature bind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretMeta {
    /// The node it is for.
    pub node: String,
    /// Service and name.
    pub secret: SecretRef,
    /// See [`SecretRecord::secret_id`].
    pub secret_id: String,
    /// The version.
    pub version: u64,
    /// Not before (unix seconds).
    pub not_before: Option<i64>,
    /// Expires (unix seconds).
    pub expires: Option<i64>,
}

impl SecretRecord {
    /// The service and name it claims.
    pub fn secret(&self) -> SecretRef {
        SecretRef { service: self.service.clone(), name: self.name.clone() }
    }

    /// As the KV data map stored centrally.
    pub fn to_map(&self) -> Map<String, Value> {
        to_map(self)
    }

    /// From a KV data map, without verifying anything yet (see [`verify_secret`]).
    pub fn from_map(map: &Map<String, Value>) -> Result<Self, VerifyError> {
        let record: Self = from_map(map)?;
        if record.format != SECRET_FORMAT {
            return Err(VerifyError::Malformed(format!("format {:?} is not {SECRET_FORMAT:?}", record.format)));
        }
        Ok(record)
    }

    fn aad(&self) -> Vec<u8> {
        let mut out = AAD_CONTEXT.to_vec();
        to_canonical(
            &json!({
                "org": self.org, "generation": self.generation, "secret_id": self.secret_id,
                "service": self.service, "name": self.name, "version": self.version,
                "not_before": self.not_before, "expires": self.expires,
            }),
            &mut out,
        );
        out
    }
}

/// Encrypts `value` under `key` (generation `generation`) for `meta.node` and signs the record.
pub fn seal_secret(
    org: &OrgKey,
    generation: u64,
    key: &FleetKey,
    meta: &SecretMeta,
    value: &SecretValue,
) -> Result<SecretRecord, SealError> {
    if value.is_empty() || value.len() > MAX_VALUE {
        return Err(SealError::Size);
    }
    let mut nonce = [0u8; 12];
    getrandom::getrandom(&mut nonce).map_err(|e| SealError::Random(e.to_string()))?;
    let mut record = SecretRecord {
        format: SECRET_FORMAT.into(),
        org: org.public().to_string(),
        node: meta.node.clone(),
        service: meta.secret.service.clone(),
        name: meta.secret.name.clone(),
        secret_id: meta.secret_id.clone(),
        version: meta.version,
        generation,
        not_before: meta.not_before,
        expires: meta.expires,
        nonce: B64.encode(nonce),
        ciphertext: String::new(),
        signature: String::new(),
    };
    let cipher = Aes256Gcm::new(key.expose().into());
    let aad = record.aad();
    let ciphertext = cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: value.expose(), aad: &aad })
        .map_err(|e| SealError::Encrypt(e.to_string()))?;
    record.ciphertext = B64.encode(ciphertext);
    record.signature = B64.encode(org.sign(&signed_bytes(SECRET_CONTEXT, &record)));
    Ok(record)
}

/// What a node expects of every record it reads.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// The org public key the node trusts.
    pub org: &'a SignerKey,
    /// The node's own id.
    pub node: &'a str,
}

/// Verifies a secret record read from `at`: the org's signature, that it is this node's record for
/// `at`, of `generation`, and not older than `installed`. Decrypts nothing (see [`open_secret`]).
pub fn verify_secret(
    map: &Map<String, Value>,
    at: &SecretRef,
    expect: Expect<'_>,
    generation: u64,
    installed: Option<u64>,
) -> Result<SecretRecord, VerifyError> {
    let record = SecretRecord::from_map(map)?;
    check_signed_by(SECRET_CONTEXT, &record, &record.org, &record.signature, expect.org)?;
    bound("node", expect.node, &record.node)?;
    bound("service", &at.service, &record.service)?;
    bound("name", &at.name, &record.name)?;
    if record.generation != generation {
        return Err(VerifyError::WrongGeneration { expected: generation, got: record.generation });
    }
    match installed {
        Some(installed) if record.version < installed => Err(VerifyError::Rollback { installed, got: record.version }),
        _ => Ok(record),
    }
}

/// Decrypts a record [`verify_secret`] accepted (or the admin re-encrypting under a new K).
pub fn open_secret(record: &SecretRecord, key: &FleetKey) -> Result<SecretValue, VerifyError> {
    let nonce = B64.decode(&record.nonce).map_err(|_| VerifyError::Malformed("nonce is not base64".into()))?;
    if nonce.len() != 12 {
        return Err(VerifyError::Malformed("nonce is not 12 bytes".into()));
    }
    let ciphertext =
        B64.decode(&record.ciphertext).map_err(|_| VerifyError::Malformed("ciphertext is not base64".into()))?;
    let cipher = Aes256Gcm::new(key.expose().into());
    let plain = cipher
        .decrypt(Nonce::from_slice(&nonce), Payload { msg: &ciphertext, aad: &record.aad() })
        .map_err(|_| VerifyError::Decrypt)?;
    Ok(SecretValue::from_zeroizing(Zeroizing::new(plain)))
}

/// The org-key entry stored at `nodes/<node>/org-key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgKeyEntry {
    /// [`ORG_KEY_FORMAT`].
    pub format: String,
    /// The org public key that signed it.
    pub org: String,
    /// The node it is for.
    pub node: String,
    /// The node's recipient K is encrypted to.
    pub recipient: String,
    /// The generation of K.
    pub generation: u64,
    /// K, age-encrypted to `recipient` (armored).
    pub k: String,
    /// The org key's signature (base64).
    pub signature: String,
}

impl OrgKeyEntry {
    /// As the KV data map stored centrally.
    pub fn to_map(&self) -> Map<String, Value> {
        to_map(self)
    }
}

/// K of `generation` for `node`: age-encrypted to its recipient, signed by the org key.
pub fn seal_org_key(
    org: &OrgKey,
    generation: u64,
    key: &FleetKey,
    node: &str,
    recipient: &Recipient,
) -> Result<OrgKeyEntry, SealError> {
    let k = edgeseal_bundle::envelope::encrypt(key.expose(), std::slice::from_ref(recipient))
        .map_err(|e| SealError::Encrypt(e.to_string()))?;
    let mut entry = OrgKeyEntry {
        format: ORG_KEY_FORMAT.into(),
        org: org.public().to_string(),
        node: node.into(),
        recipient: recipient.to_string(),
        generation,
        k,
        signature: String::new(),
    };
    entry.signature = B64.encode(org.sign(&signed_bytes(ORG_KEY_CONTEXT, &entry)));
    Ok(entry)
}

/// Verifies this node's org-key entry (the org's signature, that it is this node's, of a
/// generation no older than `min_generation`, the highest this node has seen) and only then opens
/// K with the node's age identity. Returns the generation and K.
pub fn open_org_key(
    map: &Map<String, Value>,
    expect: Expect<'_>,
    keys: &NodeKeys,
    min_generation: u64,
) -> Result<(u64, FleetKey), VerifyError> {
    let entry: OrgKeyEntry = from_map(map)?;
    if entry.format != ORG_KEY_FORMAT {
        return Err(VerifyError::Malformed(format!("format {:?} is not {ORG_KEY_FORMAT:?}", entry.format)));
    }
    check_signed_by(ORG_KEY_CONTEXT, &entry, &entry.org, &entry.signature, expect.org)?;
    bound("node", expect.node, &entry.node)?;
    if entry.generation < min_generation {
        return Err(VerifyError::WrongGeneration { expected: min_generation, got: entry.generation });
    }
    let k = edgeseal_bundle::envelope::decrypt(entry.k.as_bytes(), &keys.identities(), expect.node)
        .map_err(|e| VerifyError::OrgKey(e.to_string()))?;
    let key: [u8; 32] = k.as_slice().try_into().map_err(|_| VerifyError::OrgKey("K inside is not 32 bytes".into()))?;
    Ok((entry.generation, FleetKey::from_bytes(key)))
}

/// A node's report at `status/<node>`, signed by the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusRecord {
    /// [`STATUS_FORMAT`].
    pub format: String,
    /// The node.
    pub node: String,
    /// The node's signing key (`ed25519:…`).
    pub signer: String,
    /// When the sync ended (unix seconds).
    pub time: i64,
    /// The generation of K the node holds (0: none).
    pub generation: u64,
    /// Installed versions by `service/name`.
    pub installed: BTreeMap<String, u64>,
    /// What was refused or failed, one line each (never a value).
    pub errors: Vec<String>,
    /// The node's signature (base64).
    pub signature: String,
}

impl StatusRecord {
    /// A status signed by `keys`.
    pub fn signed(
        keys: &NodeKeys,
        time: i64,
        generation: u64,
        installed: BTreeMap<String, u64>,
        errors: Vec<String>,
    ) -> Self {
        let mut status = Self {
            format: STATUS_FORMAT.into(),
            node: keys.node_id(),
            signer: keys.signer().to_string(),
            time,
            generation,
            installed,
            errors,
            signature: String::new(),
        };
        status.signature = B64.encode(keys.sign(&signed_bytes(STATUS_CONTEXT, &status)));
        status
    }

    /// As the KV data map stored centrally.
    pub fn to_map(&self) -> Map<String, Value> {
        to_map(self)
    }
}

/// Verifies a status read from `status/<node>` against the node's enrolled signing key.
pub fn verify_status(map: &Map<String, Value>, node: &str, signer: &SignerKey) -> Result<StatusRecord, VerifyError> {
    let status: StatusRecord = from_map(map)?;
    if status.format != STATUS_FORMAT {
        return Err(VerifyError::Malformed(format!("format {:?} is not {STATUS_FORMAT:?}", status.format)));
    }
    check_signed_by(STATUS_CONTEXT, &status, &status.signer, &status.signature, signer)?;
    bound("node", node, &status.node)?;
    Ok(status)
}

fn to_map<T: Serialize>(record: &T) -> Map<String, Value> {
    match serde_json::to_value(record) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

fn from_map<T: DeserializeOwned>(map: &Map<String, Value>) -> Result<T, VerifyError> {
    serde_json::from_value(Value::Object(map.clone())).map_err(|e| VerifyError::Malformed(e.to_string()))
}

/// The context, then the canonical JSON of every field of `record` but `signature`.
fn signed_bytes<T: Serialize>(context: &[u8], record: &T) -> Vec<u8> {
    let mut fields = to_map(record);
    fields.remove("signature");
    let mut out = context.to_vec();
    to_canonical(&Value::Object(fields), &mut out);
    out
}

/// Checks that `named` (the signer the record names) is `trusted`, then the signature.
fn check_signed_by<T: Serialize>(
    context: &[u8],
    record: &T,
    named: &str,
    signature: &str,
    trusted: &SignerKey,
) -> Result<(), VerifyError> {
    if named != trusted.to_string() {
        return Err(VerifyError::WrongSigner { signer: named.into(), expected: trusted.to_string() });
    }
    let signature = B64.decode(signature).map_err(|_| VerifyError::BadSignature)?;
    match trusted.verify(&signed_bytes(context, record), &signature) {
        true => Ok(()),
        false => Err(VerifyError::BadSignature),
    }
}

fn bound(field: &'static str, expected: &str, got: &str) -> Result<(), VerifyError> {
    match expected == got {
        true => Ok(()),
        false => Err(VerifyError::Mismatch { field, expected: expected.into(), got: got.into() }),
    }
}

#[cfg(test)]
mod tests;
