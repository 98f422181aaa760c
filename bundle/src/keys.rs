//! A node's keys (SPEC §13): an age X25519 identity (others encrypt to its recipient `age1…`) and an
//! Ed25519 signing key (it signs the bundles the node makes). They exist in clear only in memory;
//! on disk they are one keystore item under the KEK.

use std::fmt;
use std::str::FromStr;

use age::secrecy::ExposeSecret as _;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Prefix of a signing public key as edgeseal prints and reads it.
pub const SIGNER_PREFIX: &str = "ed25519:";

/// Why a key could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// Not an age recipient.
    #[error("{0:?} is not an age recipient (age1… as printed by `security-bootstrap node show` or `age-keygen -y`)")]
    Recipient(String),
    /// Not a signing key.
    #[error("{0:?} is not a signing key (ed25519:… as printed by `security-bootstrap node show`)")]
    Signer(String),
    /// An identity file without an age identity.
    #[error("no age identity (AGE-SECRET-KEY-1…) in the identity file")]
    NoIdentity,
    /// A line of an identity file that is not an identity.
    #[error("line {0} of the identity file is not an age identity (AGE-SECRET-KEY-1…) or a # comment")]
    IdentityLine(usize),
    /// A stored node key item that is not what edgeseal writes.
    #[error("the node keys are malformed ({0})")]
    Malformed(String),
    /// The OS random generator failed.
    #[error("the random generator failed: {0}")]
    Random(String),
}

/// An age recipient (`age1…`): whom a bundle is encrypted to.
#[derive(Clone)]
pub struct Recipient(age::x25519::Recipient);

impl FromStr for Recipient {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, KeyError> {
        s.trim().parse().map(Self).map_err(|_| KeyError::Recipient(s.to_string()))
    }
}

impl fmt::Display for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Recipient({})", self.0)
    }
}

impl Recipient {
    pub(crate) fn as_age(&self) -> &age::x25519::Recipient {
        &self.0
    }
}

/// A node's signing public key, `ed25519:<base64>`: what a receiver pins with `--from`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SignerKey(VerifyingKey);

impl FromStr for SignerKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, KeyError> {
        let bad = || KeyError::Signer(s.to_string());
        let b64 = s.trim().strip_prefix(SIGNER_PREFIX).ok_or_else(bad)?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|_| bad())?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| bad())?;
        VerifyingKey::from_bytes(&bytes).map(Self).map_err(|_| bad())
    }
}

impl fmt::Display for SignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SIGNER_PREFIX}{}", base64::engine::general_purpose::STANDARD.encode(self.0.as_bytes()))
    }
}

impl fmt::Debug for SignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignerKey({self})")
    }
}

impl From<VerifyingKey> for SignerKey {
    /// An Ed25519 public key held elsewhere (e.g. a fleet's org key).
    fn from(key: VerifyingKey) -> Self {
        Self(key)
    }
}

impl SignerKey {
    /// The node id this key names: `node-` and the first 10 bytes of its SHA-256, in hex. Stable for
    /// as long as the node keeps its keys; anyone holding the key can check it.
    pub fn node_id(&self) -> String {
        format!("node-{}", hex::encode(&Sha256::digest(self.0.as_bytes())[..10]))
    }

    /// Whether `signature` is this key's (strict Ed25519) signature of `message`. Callers put a
    /// context string of their own in front of what they sign (domain separation).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(signature) = Signature::from_slice(signature) else { return false };
        self.0.verify_strict(message, &signature).is_ok()
    }
}

/// The age identities of an identity file (`age-keygen` output: `# comments` and one or more
/// `AGE-SECRET-KEY-1…` lines), e.g. an operator's offline recovery key.
pub struct Identities(Vec<age::x25519::Identity>);

impl fmt::Debug for Identities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identities([REDACTED; {}])", self.0.len())
    }
}

impl Identities {
    /// Parses an identity file's text.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let mut identities = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            identities.push(line.parse().map_err(|_| KeyError::IdentityLine(i + 1))?);
        }
        if identities.is_empty() {
            return Err(KeyError::NoIdentity);
        }
        Ok(Self(identities))
    }

    pub(crate) fn as_age(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.0.iter().map(|i| i as &dyn age::Identity)
    }
}

/// A node's public face, as `node show` prints it: public values only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePublic {
    /// `node-…`, derived from the signing key.
    pub node_id: String,
    /// The age recipient others encrypt to (`age1…`).
    pub recipient: String,
    /// The signing public key receivers pin with `--from` (`ed25519:…`).
    pub signing_key: String,
    /// SHA-256 of the node's TLS client certificate (DER), hex.
    pub tls_cert_sha256: String,
    /// The TLS client certificate, PEM.
    pub tls_cert: String,
}

/// A node's private keys: its age identity and its Ed25519 signing key. `Debug` shows the public
/// halves only.
pub struct NodeKeys {
    age: age::x25519::Identity,
    signing: SigningKey,
}

impl fmt::Debug for NodeKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeKeys")
            .field("recipient", &self.recipient().to_string())
            .field("signer", &self.signer())
            .finish_non_exhaustive()
    }
}

/// The stored form: `{"age": "AGE-SECRET-KEY-1…", "ed25519": "<base64 seed>"}`.
#[derive(Serialize, Deserialize)]
struct Stored {
    age: String,
    ed25519: String,
}

impl Drop for Stored {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.age);
        zeroize::Zeroize::zeroize(&mut self.ed25519);
    }
}

impl NodeKeys {
    /// New random keys.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::getrandom(seed.as_mut()).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Self { age: age::x25519::Identity::generate(), signing: SigningKey::from_bytes(&seed) })
    }

    /// Whom others encrypt to.
    pub fn recipient(&self) -> Recipient {
        Recipient(self.age.to_public())
    }

    /// The public key receivers pin.
    pub fn signer(&self) -> SignerKey {
        SignerKey(self.signing.verifying_key())
    }

    /// This node's id (see [`SignerKey::node_id`]).
    pub fn node_id(&self) -> String {
        self.signer().node_id()
    }

    /// The keys as one keystore item's bytes (JSON, in a wiped buffer).
    pub fn to_item(&self) -> Zeroizing<Vec<u8>> {
        let seed = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(self.signing.to_bytes()));
        let stored = Stored { age: self.age.to_string().expose_secret().to_string(), ed25519: seed.to_string() };
        Zeroizing::new(serde_json::to_vec(&stored).unwrap_or_default())
    }

    /// Reads the item [`NodeKeys::to_item`] wrote.
    pub fn from_item(bytes: &[u8]) -> Result<Self, KeyError> {
        let bad = |reason: &str| KeyError::Malformed(reason.to_string());
        let stored: Stored = serde_json::from_slice(bytes).map_err(|e| KeyError::Malformed(e.to_string()))?;
        let age = stored.age.parse().map_err(|_| bad("the age identity is not AGE-SECRET-KEY-1…"))?;
        let seed = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(&stored.ed25519)
                .map_err(|_| bad("the signing key is not base64"))?,
        );
        let seed: &[u8; 32] = seed.as_slice().try_into().map_err(|_| bad("the signing key is not 32 bytes"))?;
        Ok(Self { age, signing: SigningKey::from_bytes(seed) })
    }

    /// Signs `message` with the node's Ed25519 key (callers put a context string of their own in
    /// front: bundles, fleet status records).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    /// This node's age identity, to open bundles made for it.
    pub fn identities(&self) -> Identities {
        Identities(vec![self.age.clone()])
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn keys_round_trip_through_their_item_and_never_print_a_private_half() {
        let keys = NodeKeys::generate().unwrap();
        let back = NodeKeys::from_item(&keys.to_item()).unwrap();
        assert_eq!(back.recipient().to_string(), keys.recipient().to_string());
        assert_eq!(back.signer(), keys.signer());
        let shown = format!("{keys:?}");
        assert!(shown.contains("age1") && !shown.contains("AGE-SECRET-KEY"), "{shown}");
        assert!(keys.node_id().starts_with("node-") && keys.node_id().len() == 25);
    }

    #[test]
    fn public_keys_parse_back_from_what_they_print_and_junk_is_named() {
        let keys = NodeKeys::generate().unwrap();
        let signer: SignerKey = keys.signer().to_string().parse().unwrap();
        assert_eq!(signer, keys.signer());
        let recipient: Recipient = keys.recipient().to_string().parse().unwrap();
        assert_eq!(recipient.to_string(), keys.recipient().to_string());
        // (input, error mentions)
        let cases = [("age1nope", "not an age recipient"), ("", "not an age recipient")];
        for (input, says) in cases {
            assert!(input.parse::<Recipient>().unwrap_err().to_string().contains(says), "{input}");
        }
        for input in ["ed25519:", "ed25519:AAAA", "x:abc", &keys.recipient().to_string()] {
            assert!(input.parse::<SignerKey>().unwrap_err().to_string().contains("not a signing key"), "{input}");
        }
    }

    #[test]
    fn identity_files_take_comments_and_name_a_bad_line() {
        let identity = age::x25519::Identity::generate();
        let text = format!(
            "# created: now\n# public key: {}\n{}\n",
            identity.to_public(),
            identity.to_string().expose_secret()
        );
        assert_eq!(Identities::parse(&text).unwrap().0.len(), 1);
        assert_eq!(Identities::parse("# only a comment\n").unwrap_err(), KeyError::NoIdentity);
        assert_eq!(Identities::parse("# c\nAGE-SECRET-KEY-1NOPE\n").unwrap_err(), KeyError::IdentityLine(2));
        // (the malformed item, error mentions)
        let short_seed = format!(r#"{{"age":"{}","ed25519":"AAAA"}}"#, identity.to_string().expose_secret());
        let cases: [(&[u8], &str); 3] = [
            (b"{}", "malformed"),
            (br#"{"age":"x","ed25519":"AAAA"}"#, "age identity"),
            (short_seed.as_bytes(), "32 bytes"),
        ];
        for (bytes, says) in cases {
            assert!(NodeKeys::from_item(bytes).unwrap_err().to_string().contains(says), "{says}");
        }
    }
}
