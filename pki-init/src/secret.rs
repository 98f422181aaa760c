//! Private keys in memory: they wipe themselves and never print their bytes.
//!
//! [`SecretPem`] is a [`secret_types`] type like every other secret edgeseal holds. [`PrivateKey`]
//! is the one hand-written wrapper left: it wraps a foreign type (`rcgen::KeyPair`, which rcgen only
//! lets us wipe through its `Zeroize`), so it cannot be one of the byte or string secrets.

use std::fmt;

use zeroize::Zeroize;

secret_types::secret_string! {
    /// PEM text that holds a private key: a keystore item (a CA's PKCS#8 key followed by its
    /// certificate) or a leaf's `key.pem`. Wiped on drop, redacted in `Debug`.
    pub struct SecretPem;
}

impl SecretPem {
    /// Wraps PEM bytes (e.g. a decrypted keystore item). `None` if they are not UTF-8; the buffer is
    /// wiped either way (on success it becomes the string without a copy).
    pub fn from_utf8(bytes: Vec<u8>) -> Option<Self> {
        match String::from_utf8(bytes) {
            Ok(pem) => Some(Self::new(pem)),
            Err(e) => {
                e.into_bytes().zeroize();
                None
            }
        }
    }
}

/// Not a [`secret_types`] type because it wraps a foreign one: an rcgen key pair whose PKCS#8 bytes
/// are wiped when it is dropped (rcgen only offers `Zeroize`), redacted in `Debug`.
pub(crate) struct PrivateKey(rcgen::KeyPair);

impl PrivateKey {
    pub(crate) fn new(pair: rcgen::KeyPair) -> Self {
        Self(pair)
    }

    pub(crate) fn pair(&self) -> &rcgen::KeyPair {
        &self.0
    }
}

impl Drop for PrivateKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_key() {
        let pem = SecretPem::new("-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n");
        let pair = PrivateKey::new(rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap());
        let shown = format!("{pem:?} {pair:?}");
        assert!(!shown.contains("c2VjcmV0") && !shown.contains("BEGIN"), "{shown}");
        assert_eq!(shown, "SecretPem([REDACTED]) PrivateKey([REDACTED])");
    }

    #[test]
    fn every_secret_type_prints_redacted() {
        let from_bytes = SecretPem::from_utf8(b"-----BEGIN PRIVATE KEY-----\n".to_vec()).unwrap();
        assert_eq!(format!("{from_bytes:?}"), "SecretPem([REDACTED])");
    }

    #[test]
    fn from_utf8_refuses_binary() {
        assert!(SecretPem::from_utf8(vec![0xff, 0xfe]).is_none());
        assert_eq!(SecretPem::from_utf8(b"x".to_vec()).unwrap().expose(), "x");
    }
}
