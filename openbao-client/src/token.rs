//! OpenBao tokens and other credentials, as [`secret_types`] types: wiped on drop, never printed,
//! (de)serialized as the plain strings or bytes OpenBao's API carries.

secret_types::secret_string! {
    /// An OpenBao token (`s.…`/`hvs.…`), for the `X-Vault-Token` header or a token file.
    pub struct Token;
}

secret_types::secret_string! {
    /// Any other secret string from or for OpenBao (an AppRole secret-id, a KV value).
    pub struct SecretString;
}

secret_types::secret_bytes! {
    /// One unseal key as `sys/init` returns it (`keys_base64`, decoded), before the caller stores it.
    pub struct UnsealKey;
}

secret_types::secret_bytes! {
    /// The DER private key of edgeseal's TLS client certificate ([`crate::ClientIdentity`]).
    pub struct ClientKey;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let shown = format!("{:?} {:?}", Token::new("s.supersecret"), SecretString::new("hunter2"));
        assert!(!shown.contains("supersecret") && !shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn every_secret_type_prints_redacted() {
        let shown = format!(
            "{:?} {:?} {:?}",
            Token::new("s.supersecret"),
            SecretString::new("hunter2"),
            UnsealKey::new(b"share".to_vec())
        );
        assert_eq!(shown, "Token([REDACTED]) SecretString([REDACTED]) UnsealKey([REDACTED; 5 bytes])");
    }
}
