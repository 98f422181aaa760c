//! The secrets the keystore holds in memory once decrypted (types from [`secret_types`]: wiped on
//! drop, never printed).

secret_types::secret_bytes! {
    /// One decrypted Shamir unseal share.
    pub struct UnsealShare;
}

secret_types::secret_bytes! {
    /// A decrypted keystore item (a credential, a CA key, a token).
    pub struct SecretBytes;
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
