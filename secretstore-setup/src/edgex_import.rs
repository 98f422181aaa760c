//! Reading an EdgeX `resp-init.json` so an EdgeX device can move to edgeseal without re-initializing
//! its secret store. Pure: bytes and IKM in, unseal shares out; the CLI does the I/O.
//!
//! EdgeX's format (go-mod-secrets `pkg/types/messages.go`, edgex-go
//! `internal/security/secretstore/vmkencryption.go`, `internal/security/kdf/methods.go`):
//! - plain: `keys` (hex) and/or `keys_base64`, plus `root_token`;
//! - with `EDGEX_IKM_HOOK`: `encrypted_keys` and `nonces` (both hex), where share *i* is
//!   AES-256-GCM (12-byte nonce, no associated data, ciphertext ‖ tag) under
//!   `HKDF-SHA256(ikm, salt, info)` with info `vault<i>` (EdgeX ≤ 3.x) or `secretstore<i>` (4.x), and
//!   the salt is the 32 raw bytes of `kdf-salt.dat`.
//!
//! The root token in the file is never used, kept or printed: edgeseal stores no root token.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use kdf_plugins::kek::hkdf_sha256;
use kdf_plugins::Ikm;
use serde::Deserialize;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::secret::UnsealShare;

/// Length of EdgeX's `kdf-salt.dat`.
pub const EDGEX_SALT_LEN: usize = 32;
/// Largest `resp-init.json` accepted.
const MAX_FILE_LEN: usize = 1024 * 1024;
/// EdgeX's nonce length (Go's `gcm.NonceSize()`).
const NONCE_LEN: usize = 12;

/// What is wrong with the EdgeX files. Never quotes a key, a ciphertext or the root token.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum EdgexError {
    /// Larger than any init response.
    #[error("file is {0} bytes, larger than any EdgeX resp-init.json")]
    TooLarge(usize),
    /// Not JSON, or JSON of the wrong shape.
    #[error("not an EdgeX resp-init.json: {0}")]
    Json(String),
    /// No keys of any kind.
    #[error("holds no unseal keys (neither keys/keys_base64 nor encrypted_keys/nonces)")]
    NoKeys,
    /// A field is present but malformed.
    #[error("{0}")]
    Shape(String),
    /// The salt file is not 32 bytes.
    #[error("salt file is {0} bytes; EdgeX's kdf-salt.dat holds exactly {EDGEX_SALT_LEN}")]
    Salt(usize),
    /// The encrypted keys need the hook's IKM.
    #[error("the keys are encrypted (EDGEX_IKM_HOOK) and no IKM hook was run")]
    NeedsHook,
    /// No info string opens the shares.
    #[error("encrypted key {index} does not decrypt with the hook's IKM and salt under info vault<i> or secretstore<i>: the hook, the salt file or resp-init.json are not the ones this device used")]
    Decrypt {
        /// The first share that failed.
        index: usize,
    },
}

/// The HKDF info string family EdgeX used for the encrypted shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InfoFamily {
    /// `vault<i>`: EdgeX 1.3 to 3.x.
    Vault,
    /// `secretstore<i>`: EdgeX 4.x.
    Secretstore,
}

impl InfoFamily {
    fn info(self, index: usize) -> String {
        match self {
            InfoFamily::Vault => format!("vault{index}"),
            InfoFamily::Secretstore => format!("secretstore{index}"),
        }
    }
}

/// How the shares were stored in the imported file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Plain `keys`/`keys_base64`.
    Plain,
    /// `encrypted_keys` + `nonces` under the given info family.
    Encrypted(InfoFamily),
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Layout::Plain => "plaintext keys",
            Layout::Encrypted(InfoFamily::Vault) => "EDGEX_IKM_HOOK-encrypted keys (info vault<i>)",
            Layout::Encrypted(InfoFamily::Secretstore) => "EDGEX_IKM_HOOK-encrypted keys (info secretstore<i>)",
        })
    }
}

/// A parsed `resp-init.json`.
#[derive(Deserialize)]
pub struct RespInit {
    #[serde(default)]
    keys: Vec<String>,
    #[serde(default)]
    keys_base64: Vec<String>,
    #[serde(default)]
    encrypted_keys: Vec<String>,
    #[serde(default)]
    nonces: Vec<String>,
    /// Parsed so that it is wiped on drop; never used.
    #[serde(default)]
    root_token: String,
}

impl std::fmt::Debug for RespInit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RespInit")
            .field("keys", &self.keys.len())
            .field("keys_base64", &self.keys_base64.len())
            .field("encrypted_keys", &self.encrypted_keys.len())
            .field("nonces", &self.nonces.len())
            .finish_non_exhaustive()
    }
}

impl Drop for RespInit {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.keys.zeroize();
        self.keys_base64.zeroize();
        self.root_token.zeroize();
    }
}

impl RespInit {
    /// Parses the file's bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, EdgexError> {
        if bytes.len() > MAX_FILE_LEN {
            return Err(EdgexError::TooLarge(bytes.len()));
        }
        // Only the type is reported: serde's message could quote a value.
        serde_json::from_slice(bytes).map_err(|e| {
            EdgexError::Json(format!("{:?} error at line {} column {}", e.classify(), e.line(), e.column()))
        })
    }

    /// Whether the shares are encrypted and need the hook's IKM.
    pub fn is_encrypted(&self) -> bool {
        self.keys.is_empty() && self.keys_base64.is_empty() && !self.encrypted_keys.is_empty()
    }

    /// The unseal shares: read directly, or decrypted with the hook's IKM and the salt.
    pub fn shares(&self, hook: Option<(&Ikm, &[u8])>) -> Result<(Vec<UnsealShare>, Layout), EdgexError> {
        if !self.keys.is_empty() || !self.keys_base64.is_empty() {
            return Ok((self.plain_shares()?, Layout::Plain));
        }
        if self.encrypted_keys.is_empty() {
            return Err(EdgexError::NoKeys);
        }
        let (ikm, salt) = hook.ok_or(EdgexError::NeedsHook)?;
        if salt.len() != EDGEX_SALT_LEN {
            return Err(EdgexError::Salt(salt.len()));
        }
        if self.nonces.len() != self.encrypted_keys.len() {
            return Err(EdgexError::Shape(format!(
                "encrypted_keys has {} entries but nonces has {}",
                self.encrypted_keys.len(),
                self.nonces.len()
            )));
        }
        let mut first_failure = 0;
        for family in [InfoFamily::Secretstore, InfoFamily::Vault] {
            match self.decrypt_all(ikm, salt, family) {
                Ok(shares) => return Ok((shares, Layout::Encrypted(family))),
                Err(EdgexError::Decrypt { index }) => first_failure = first_failure.max(index),
                Err(other) => return Err(other),
            }
        }
        Err(EdgexError::Decrypt { index: first_failure })
    }

    fn plain_shares(&self) -> Result<Vec<UnsealShare>, EdgexError> {
        let from_hex = self
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| decode_hex(k).map_err(|()| EdgexError::Shape(format!("keys[{i}] is not hex"))))
            .collect::<Result<Vec<_>, _>>()?;
        let from_b64 = self
            .keys_base64
            .iter()
            .enumerate()
            .map(|(i, k)| {
                B64.decode(k)
                    .map(UnsealShare::new)
                    .map_err(|_| EdgexError::Shape(format!("keys_base64[{i}] is not base64")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        match (from_hex.is_empty(), from_b64.is_empty()) {
            (false, false) if from_hex != from_b64 => {
                Err(EdgexError::Shape("keys and keys_base64 hold different shares".into()))
            }
            (false, _) => Ok(from_hex),
            (true, _) => Ok(from_b64),
        }
    }

    fn decrypt_all(&self, ikm: &Ikm, salt: &[u8], family: InfoFamily) -> Result<Vec<UnsealShare>, EdgexError> {
        let mut shares = Vec::with_capacity(self.encrypted_keys.len());
        for (index, (ciphertext, nonce)) in self.encrypted_keys.iter().zip(&self.nonces).enumerate() {
            let ciphertext = hex::decode(ciphertext)
                .map_err(|_| EdgexError::Shape(format!("encrypted_keys[{index}] is not hex")))?;
            let nonce = hex::decode(nonce).map_err(|_| EdgexError::Shape(format!("nonces[{index}] is not hex")))?;
            if nonce.len() != NONCE_LEN {
                return Err(EdgexError::Shape(format!(
                    "nonces[{index}] is {} bytes, expected {NONCE_LEN}",
                    nonce.len()
                )));
            }
            let mut key = Zeroizing::new([0u8; 32]);
            hkdf_sha256(ikm.expose(), salt, family.info(index).as_bytes(), key.as_mut_slice())
                .map_err(|_| EdgexError::Decrypt { index })?;
            let cipher = Aes256Gcm::new(key.as_slice().into());
            let plain = cipher
                .decrypt(Nonce::from_slice(&nonce), ciphertext.as_slice())
                .map_err(|_| EdgexError::Decrypt { index })?;
            shares.push(UnsealShare::new(plain));
        }
        Ok(shares)
    }
}

fn decode_hex(text: &str) -> Result<UnsealShare, ()> {
    hex::decode(text).map(UnsealShare::new).map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_are_checked_and_errors_quote_nothing_secret() {
        let secret = "deadbeefcafe";
        let cases: &[(&str, &str)] = &[
            (r#"{"root_token":"s.x"}"#, "holds no unseal keys"),
            (&format!(r#"{{"keys":["{secret}zz"]}}"#), "keys[0] is not hex"),
            (r#"{"keys_base64":["***"]}"#, "keys_base64[0] is not base64"),
            (r#"{"keys":["00ff"],"keys_base64":["AP4="]}"#, "different shares"),
            (r#"{"encrypted_keys":["00"],"nonces":[]}"#, "nonces has 0"),
            (r#"{"encrypted_keys":["00"],"nonces":["0001"]}"#, "nonces[0] is 2 bytes"),
            (r#"{"encrypted_keys":"00"}"#, "not an EdgeX resp-init.json"),
            (&format!(r#"{{"keys":["{secret}"]"#), "not an EdgeX resp-init.json"),
        ];
        let ikm = Ikm::new(vec![1; 32]);
        let salt = [2u8; 32];
        for (json, want) in cases {
            let err = RespInit::parse(json.as_bytes()).and_then(|r| r.shares(Some((&ikm, &salt))).map(|_| ()));
            let message = err.unwrap_err().to_string();
            assert!(message.contains(want), "{json}: {message}");
            assert!(!message.contains(secret), "{message}");
        }
    }

    #[test]
    fn encrypted_keys_need_the_hook_and_a_32_byte_salt() {
        let r = RespInit::parse(br#"{"encrypted_keys":["00"],"nonces":["000000000000000000000000"]}"#).unwrap();
        assert!(r.is_encrypted());
        assert_eq!(r.shares(None).unwrap_err(), EdgexError::NeedsHook);
        let ikm = Ikm::new(vec![1; 32]);
        assert_eq!(r.shares(Some((&ikm, &[0u8; 31]))).unwrap_err(), EdgexError::Salt(31));
    }
}
