//! The key-encryption key: HKDF-SHA256 over the plug-in's IKM (RFC 5869).

use hkdf::Hkdf;
use sha2::{Digest, Sha256};

use crate::secret::{Ikm, Kek};

/// HKDF `info` for the KEK that encrypts `keystore.json`: names the purpose and the format version.
pub const KEYSTORE_KEK_INFO: &str = "edgeseal keystore kek v1";

/// Length of the random salt stored beside the keystore.
pub const SALT_LEN: usize = 32;

/// HKDF-SHA256 extract-and-expand into `okm`.
///
/// Fails only when `okm` is longer than 255 × 32 bytes, the RFC 5869 limit.
pub fn hkdf_sha256(ikm: &[u8], salt: &[u8], info: &[u8], okm: &mut [u8]) -> Result<(), hkdf::InvalidLength> {
    Hkdf::<Sha256>::new(Some(salt), ikm).expand(info, okm)
}

/// Derives a 32-byte key from the IKM with HKDF-SHA256.
pub fn derive_kek(ikm: &Ikm, salt: &[u8], info: &[u8]) -> Kek {
    let mut okm = [0u8; Kek::LEN];
    // 32 bytes is far below the 8160-byte HKDF-SHA256 limit, so expand cannot fail.
    if hkdf_sha256(ikm.expose(), salt, info, &mut okm).is_err() {
        unreachable!("HKDF-SHA256 can always expand 32 bytes");
    }
    Kek::from_bytes(okm)
}

/// A short, non-reversible fingerprint of a KEK, safe to print: it tells two KEKs apart and nothing more.
///
/// `sha256("edgeseal kek fingerprint v1\0" ‖ kek)`, first 8 bytes in hex.
pub fn fingerprint(kek: &Kek) -> String {
    let digest = Sha256::new().chain_update(b"edgeseal kek fingerprint v1\0").chain_update(kek.expose()).finalize();
    hex::encode(&digest[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// RFC 5869 appendix A, test cases 1–3 (SHA-256).
    #[test]
    fn rfc5869_sha256_vectors() {
        let cases = [
            (
                "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
                "000102030405060708090a0b0c",
                "f0f1f2f3f4f5f6f7f8f9",
                "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
            ),
            (
                "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\
                 202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f\
                 404142434445464748494a4b4c4d4e4f",
                "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f\
                 808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f\
                 a0a1a2a3a4a5a6a7a8a9aaabacadaeaf",
                "b0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecf\
                 d0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeef\
                 f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
                "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c\
                 59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71\
                 cc30c58179ec3e87c14c01d5c1f3434f1d87",
            ),
            (
                "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
                "",
                "",
                "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
            ),
        ];
        for (ikm, salt, info, okm) in cases {
            let (ikm, salt, info) =
                (unhex(&ikm.replace(' ', "")), unhex(&salt.replace(' ', "")), unhex(&info.replace(' ', "")));
            let want = unhex(&okm.replace(' ', ""));
            let mut got = vec![0u8; want.len()];
            hkdf_sha256(&ikm, &salt, &info, &mut got).unwrap();
            assert_eq!(hex::encode(got), hex::encode(want));
        }
    }

    #[test]
    fn kek_is_the_first_32_bytes_of_hkdf_and_depends_on_every_input() {
        let ikm = Ikm::new(unhex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b"));
        let kek = derive_kek(&ikm, &unhex("000102030405060708090a0b0c"), &unhex("f0f1f2f3f4f5f6f7f8f9"));
        assert_eq!(hex::encode(kek.expose()), "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf");

        let base = fingerprint(&derive_kek(&ikm, b"salt", b"info"));
        assert_ne!(base, fingerprint(&derive_kek(&ikm, b"salt2", b"info")));
        assert_ne!(base, fingerprint(&derive_kek(&ikm, b"salt", b"info2")));
        assert_ne!(base, fingerprint(&derive_kek(&Ikm::new(vec![1; 16]), b"salt", b"info")));
        assert_eq!(base, fingerprint(&derive_kek(&ikm, b"salt", b"info")));
    }

    #[test]
    fn fingerprint_is_short_and_does_not_contain_the_key() {
        let kek = derive_kek(&Ikm::new(vec![7; 32]), b"s", KEYSTORE_KEK_INFO.as_bytes());
        let fp = fingerprint(&kek);
        assert_eq!(fp.len(), 16);
        assert!(!hex::encode(kek.expose()).contains(&fp));
    }
}
