//! Secret types for keying material. They zeroize on drop and never print their bytes.

use std::fmt;

use zeroize::{Zeroize, Zeroizing};

/// Initial keying material returned by a KDF plug-in. Bound to the device; never printed, never stored.
pub struct Ikm(Zeroizing<Vec<u8>>);

impl Ikm {
    /// The smallest IKM a plug-in may return, in bytes.
    pub const MIN_LEN: usize = 16;
    /// The largest IKM a plug-in may return, in bytes.
    pub const MAX_LEN: usize = 1024;

    /// Wraps raw keying material. The caller's buffer is moved in and wiped when `Ikm` is dropped.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The raw bytes, for key derivation only.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes; safe to log.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the IKM is empty (a plug-in never returns an empty one).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Ikm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ikm([REDACTED; {} bytes])", self.0.len())
    }
}

/// A 256-bit key-encryption key derived with HKDF-SHA256. Wiped on drop, redacted in `Debug`.
pub struct Kek(Box<[u8; 32]>);

impl Kek {
    /// Length of a KEK in bytes.
    pub const LEN: usize = 32;

    /// Wraps raw key bytes; the source array is wiped.
    pub fn from_bytes(mut bytes: [u8; 32]) -> Self {
        let kek = Self(Box::new(bytes));
        bytes.zeroize();
        kek
    }

    /// The raw key bytes, for AEAD only.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl Drop for Kek {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Kek([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_redacts_key_material() {
        let ikm = Ikm::new(vec![0xAB; 32]);
        let kek = Kek::from_bytes([0xCD; 32]);
        let shown = format!("{ikm:?} {kek:?}");
        assert!(!shown.to_lowercase().contains("ab"), "{shown}");
        assert!(!shown.to_lowercase().contains("cd"), "{shown}");
        assert!(!shown.contains("171") && !shown.contains("205"), "{shown}");
        assert!(shown.contains("REDACTED"));
    }
}
