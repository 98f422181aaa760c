//! Secret byte strings held by the keystore. They wipe themselves and never print their bytes.

use std::fmt;

use zeroize::Zeroizing;

/// One OpenBao unseal key share (Shamir). Never logged, never written in plaintext.
#[derive(Clone, PartialEq, Eq)]
pub struct UnsealShare(Zeroizing<Vec<u8>>);

impl UnsealShare {
    /// Wraps the raw share bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The raw bytes, to send to `sys/unseal` or to encrypt.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for UnsealShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UnsealShare([REDACTED; {} bytes])", self.0.len())
    }
}

/// Any other secret the keystore keeps (a CA key, a privileged credential).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Wraps the raw bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The raw bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes([REDACTED; {} bytes])", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_bytes() {
        let shown = format!("{:?} {:?}", UnsealShare::new(b"sharesecret".to_vec()), SecretBytes::new(vec![0x41; 8]));
        assert!(!shown.contains("sharesecret") && !shown.contains("AAAA") && !shown.contains("65"), "{shown}");
        assert!(shown.contains("REDACTED"));
    }
}
