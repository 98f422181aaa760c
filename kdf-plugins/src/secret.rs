//! The keying material a plug-in produces and the key derived from it, as [`secret_types`] types:
//! wiped on drop, never printed, reached only through `expose()`.

secret_types::secret_bytes! {
    /// Initial keying material returned by a KDF plug-in. Bound to the device; never printed, never
    /// stored. Build it with `Ikm::from_zeroizing` from the wiped buffer it was decoded into, so no
    /// unwiped copy is left behind.
    pub struct Ikm;
}

impl Ikm {
    /// The smallest IKM a plug-in may return, in bytes.
    pub const MIN_LEN: usize = 16;
    /// The largest IKM a plug-in may return, in bytes.
    pub const MAX_LEN: usize = 1024;
}

secret_types::secret_array! {
    /// A 256-bit key-encryption key derived with HKDF-SHA256. Wiped on drop, redacted in `Debug`.
    pub struct Kek([u8; 32]);
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

    #[test]
    fn every_secret_type_prints_redacted() {
        let shown = format!("{:?} {:?}", Ikm::new(vec![0xAB; 32]), Kek::from_bytes([0xCD; 32]));
        assert_eq!(shown, "Ikm([REDACTED; 32 bytes]) Kek([REDACTED])");
    }
}
