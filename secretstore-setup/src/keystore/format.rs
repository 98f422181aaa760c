//! The on-disk format of `keystore.json`, version 1, and its pure parser.
//!
//! ```json
//! {"aead":"aes-256-gcm","checksum":"sha256:…","format":"edgeseal-keystore",
//!  "items":[{"ciphertext":"…","index":0,"nonce":"…","purpose":"unseal-share"},…],
//!  "kdf":{"algorithm":"hkdf-sha256","info":"edgeseal keystore kek v1","salt":"…"},
//!  "key_check":{"ciphertext":"…","nonce":"…"},"secret_shares":5,"secret_threshold":3,"version":1}
//! ```
//! Binary fields are standard base64. Each item is AES-256-GCM under the KEK with a fresh 96-bit nonce
//! and the associated data `edgeseal-keystore/v1/<purpose>/<index>`. The checksum (see
//! [`super::canonical`]) covers every other field.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use super::canonical::{checksum, to_canonical, CHECKSUM_PREFIX};

/// The `format` field of every edgeseal keystore.
pub const FORMAT_NAME: &str = "edgeseal-keystore";
/// The version this build writes and reads.
pub const VERSION: u64 = 1;
/// The only AEAD of version 1.
pub const AEAD: &str = "aes-256-gcm";
/// The only KDF of version 1.
pub const KDF_ALGORITHM: &str = "hkdf-sha256";
/// Largest keystore file accepted, in bytes.
pub const MAX_FILE_LEN: usize = 1024 * 1024;
/// Nonce length of AES-256-GCM.
pub const NONCE_LEN: usize = 12;
/// Purpose of the items holding unseal shares.
pub const PURPOSE_UNSEAL_SHARE: &str = "unseal-share";
/// Purpose of the key-check item.
pub const PURPOSE_KEY_CHECK: &str = "key-check";
/// Most items a keystore may hold.
pub const MAX_ITEMS: usize = 256;
/// Most unseal shares (OpenBao's own limit).
pub const MAX_SHARES: u64 = 255;

/// Why bytes are not a valid keystore. Never quotes a ciphertext or a nonce.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FormatError {
    /// Larger than [`MAX_FILE_LEN`].
    #[error("file is {0} bytes, larger than any keystore ({MAX_FILE_LEN})")]
    TooLarge(usize),
    /// Not JSON at all.
    #[error("not valid JSON ({0})")]
    NotJson(String),
    /// JSON, but not an object with a checksum.
    #[error("no checksum field: this is not an edgeseal keystore")]
    NoChecksum,
    /// The checksum does not match the content.
    #[error("checksum mismatch: the content was changed after edgeseal wrote it")]
    ChecksumMismatch,
    /// Checksum fine, but a version this build cannot read.
    #[error("format version {0} is not supported (this edgeseal reads version {VERSION})")]
    UnsupportedVersion(u64),
    /// Checksum fine, version fine, structure wrong.
    #[error("invalid structure: {0}")]
    Invalid(String),
}

/// One encrypted value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sealed {
    /// Base64 of the 12-byte nonce.
    pub nonce: String,
    /// Base64 of ciphertext ‖ 16-byte tag.
    pub ciphertext: String,
}

/// One encrypted item with its purpose and index (both bound as associated data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    /// What the item is (`unseal-share`, `pki-ca-key`, …).
    pub purpose: String,
    /// Its index among items of the same purpose.
    pub index: u32,
    /// Base64 of the nonce.
    pub nonce: String,
    /// Base64 of ciphertext ‖ tag.
    pub ciphertext: String,
}

/// KDF parameters: how to turn the plug-in's IKM into this keystore's KEK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdfParams {
    /// Always `hkdf-sha256` in version 1.
    pub algorithm: String,
    /// Base64 of the 32-byte random salt.
    pub salt: String,
    /// The HKDF info string.
    pub info: String,
}

/// The whole file minus its checksum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeystoreFile {
    /// Always [`FORMAT_NAME`].
    pub format: String,
    /// Always [`VERSION`].
    pub version: u64,
    /// Always [`AEAD`].
    pub aead: String,
    /// KDF parameters.
    pub kdf: KdfParams,
    /// Number of unseal shares.
    pub secret_shares: u64,
    /// Shares needed to unseal.
    pub secret_threshold: u64,
    /// A known plaintext encrypted under the KEK, to recognise a wrong KEK.
    pub key_check: Sealed,
    /// The encrypted items.
    pub items: Vec<Item>,
}

impl KeystoreFile {
    /// Parses and checks a keystore file. Pure; the order of checks decides which error a damaged
    /// file gets: size, JSON, checksum, version, then structure.
    pub fn parse(bytes: &[u8]) -> Result<Self, FormatError> {
        if bytes.len() > MAX_FILE_LEN {
            return Err(FormatError::TooLarge(bytes.len()));
        }
        let mut value: Value = serde_json::from_slice(bytes).map_err(|e| FormatError::NotJson(e.to_string()))?;
        let Some(object) = value.as_object_mut() else {
            return Err(FormatError::NoChecksum);
        };
        let Some(Value::String(stored)) = object.remove("checksum") else {
            return Err(FormatError::NoChecksum);
        };
        if !stored.starts_with(CHECKSUM_PREFIX) || checksum(&value) != stored {
            return Err(FormatError::ChecksumMismatch);
        }
        match value.get("version").and_then(Value::as_u64) {
            Some(VERSION) => {}
            Some(other) => return Err(FormatError::UnsupportedVersion(other)),
            None => return Err(FormatError::Invalid("missing or non-integer version".into())),
        }
        let file: KeystoreFile = serde_json::from_value(value).map_err(|e| FormatError::Invalid(e.to_string()))?;
        file.validate()?;
        Ok(file)
    }

    /// Serializes to canonical JSON with the checksum, plus a final newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        let sum = checksum(&value);
        if let Value::Object(map) = &mut value {
            map.insert("checksum".into(), Value::String(sum));
        }
        let mut out = Vec::with_capacity(1024);
        to_canonical(&value, &mut out);
        out.push(b'\n');
        out
    }

    fn validate(&self) -> Result<(), FormatError> {
        let invalid = |msg: String| Err(FormatError::Invalid(msg));
        if self.format != FORMAT_NAME {
            return invalid(format!("format is {:?}, expected {FORMAT_NAME:?}", self.format));
        }
        if self.aead != AEAD {
            return invalid(format!("aead is {:?}, expected {AEAD:?}", self.aead));
        }
        if self.kdf.algorithm != KDF_ALGORITHM {
            return invalid(format!("kdf.algorithm is {:?}, expected {KDF_ALGORITHM:?}", self.kdf.algorithm));
        }
        if decode_b64("kdf.salt", &self.kdf.salt)?.len() != kdf_plugins::kek::SALT_LEN {
            return invalid(format!("kdf.salt must be {} bytes", kdf_plugins::kek::SALT_LEN));
        }
        if self.kdf.info.is_empty() || self.kdf.info.len() > 256 {
            return invalid("kdf.info must be 1 to 256 bytes".into());
        }
        if self.secret_shares > MAX_SHARES {
            return invalid(format!("secret_shares is {}, expected 0 to {MAX_SHARES}", self.secret_shares));
        }
        // 0 shares: a keystore made before OpenBao was initialized (e.g. holding PKI keys only).
        if self.secret_shares == 0 && self.secret_threshold != 0 {
            return invalid(format!("secret_threshold is {} but there are no shares", self.secret_threshold));
        }
        if self.secret_shares > 0 && !(1..=self.secret_shares).contains(&self.secret_threshold) {
            return invalid(format!(
                "secret_threshold is {}, expected 1 to secret_shares ({})",
                self.secret_threshold, self.secret_shares
            ));
        }
        check_sealed("key_check", &self.key_check.nonce, &self.key_check.ciphertext)?;
        if self.items.len() > MAX_ITEMS {
            return invalid(format!("{} items, at most {MAX_ITEMS} are allowed", self.items.len()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for item in &self.items {
            if !valid_purpose(&item.purpose) || item.purpose == PURPOSE_KEY_CHECK {
                return invalid(format!("item purpose {:?} is not a valid purpose name", item.purpose));
            }
            if item.purpose != PURPOSE_UNSEAL_SHARE && item.index != 0 {
                return invalid(format!("item {}/{}: named items have index 0", item.purpose, item.index));
            }
            if !seen.insert((item.purpose.as_str(), item.index)) {
                return invalid(format!("item {}/{} appears twice", item.purpose, item.index));
            }
            check_sealed(&format!("item {}/{}", item.purpose, item.index), &item.nonce, &item.ciphertext)?;
        }
        let shares: Vec<u32> =
            self.items.iter().filter(|i| i.purpose == PURPOSE_UNSEAL_SHARE).map(|i| i.index).collect();
        let expected: Vec<u32> = (0..u32::try_from(self.secret_shares).unwrap_or(u32::MAX)).collect();
        if shares != expected {
            return invalid(format!(
                "expected unseal-share items 0..{} in order, found indexes {shares:?}",
                self.secret_shares
            ));
        }
        Ok(())
    }
}

/// A purpose name: 1–64 of `[a-z0-9-]`.
pub fn valid_purpose(purpose: &str) -> bool {
    (1..=64).contains(&purpose.len()) && purpose.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
}

/// The associated data that binds an item to its place in the keystore.
pub fn associated_data(purpose: &str, index: u32) -> Vec<u8> {
    format!("edgeseal-keystore/v{VERSION}/{purpose}/{index}").into_bytes()
}

/// Decodes a base64 field, naming it on failure.
pub fn decode_b64(field: &str, text: &str) -> Result<Vec<u8>, FormatError> {
    B64.decode(text).map_err(|_| FormatError::Invalid(format!("{field} is not valid base64")))
}

/// Encodes bytes as standard base64.
pub fn encode_b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

fn check_sealed(what: &str, nonce: &str, ciphertext: &str) -> Result<(), FormatError> {
    if decode_b64(&format!("{what} nonce"), nonce)?.len() != NONCE_LEN {
        return Err(FormatError::Invalid(format!("{what} nonce must be {NONCE_LEN} bytes")));
    }
    if decode_b64(&format!("{what} ciphertext"), ciphertext)?.len() < 16 {
        return Err(FormatError::Invalid(format!("{what} ciphertext is shorter than the GCM tag")));
    }
    Ok(())
}
