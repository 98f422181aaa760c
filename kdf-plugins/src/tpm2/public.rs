//! What kind of object sits at a persistent handle (pure): the TPM2_ReadPublic answer
//! ([`commands::Public`]) judged and described in tpm2-tools' words, for errors an operator can match
//! against `tpm2_readpublic`.

use super::commands::{self, Public, ALG_HMAC};
use super::policy::ALG_SHA256;

/// `sign`: the key may sign (an HMAC key must).
pub(crate) const ATTR_SIGN: u32 = 0x0004_0000;
/// `decrypt`.
const ATTR_DECRYPT: u32 = 0x0002_0000;
/// `restricted`.
const ATTR_RESTRICTED: u32 = 0x0001_0000;

/// TPMA_OBJECT bits as tpm2-tools names them.
const ATTRIBUTE_NAMES: &[(u32, &str)] = &[
    (0x0000_0002, "fixedtpm"),
    (0x0000_0004, "stclear"),
    (0x0000_0010, "fixedparent"),
    (0x0000_0020, "sensitivedataorigin"),
    (0x0000_0040, "userwithauth"),
    (0x0000_0080, "adminwithpolicy"),
    (0x0000_0400, "noda"),
    (0x0000_0800, "encryptedduplication"),
    (ATTR_RESTRICTED, "restricted"),
    (ATTR_DECRYPT, "decrypt"),
    (ATTR_SIGN, "sign"),
];

/// Whether TPM2_HMAC with SHA-256 can use it: a keyedhash HMAC-SHA256 key that may sign, neither
/// restricted nor a decryption key.
pub fn is_hmac_sha256_key(public: &Public) -> bool {
    public.object_type == commands::ALG_KEYEDHASH
        && public.keyedhash_scheme == Some((ALG_HMAC, ALG_SHA256))
        && public.attributes & ATTR_SIGN != 0
        && public.attributes & (ATTR_DECRYPT | ATTR_RESTRICTED) == 0
}

/// A short description for error messages (the public area holds no key material).
pub fn describe(public: &Public) -> String {
    let attributes = attribute_names(public.attributes);
    match (object_type_name(public.object_type), public.keyedhash_scheme) {
        ("keyedhash", Some((scheme, hash))) => format!(
            "a keyedhash object (scheme {}, hash {}, attributes {attributes})",
            alg_name(scheme),
            alg_name(hash)
        ),
        (kind, _) => {
            let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
            format!("{article} {kind} object (attributes {attributes})")
        }
    }
}

fn object_type_name(t: u16) -> &'static str {
    match t {
        0x0001 => "rsa",
        0x0008 => "keyedhash",
        0x0023 => "ecc",
        0x0025 => "symcipher",
        _ => "unknown",
    }
}

fn alg_name(alg: u16) -> String {
    match alg {
        0x0004 => "sha1".to_owned(),
        0x0005 => "hmac".to_owned(),
        0x000A => "xor".to_owned(),
        0x000B => "sha256".to_owned(),
        0x000C => "sha384".to_owned(),
        0x000D => "sha512".to_owned(),
        0x0010 => "null".to_owned(),
        other => format!("{other:#06x}"),
    }
}

/// `fixedtpm|fixedparent|…|sign`, plus unnamed bits in hex.
fn attribute_names(bits: u32) -> String {
    let mut names: Vec<String> =
        ATTRIBUTE_NAMES.iter().filter(|(bit, _)| bits & bit != 0).map(|(_, name)| (*name).to_owned()).collect();
    let known = ATTRIBUTE_NAMES.iter().fold(0, |all, (bit, _)| all | bit);
    if bits & !known != 0 {
        names.push(format!("{:#x}", bits & !known));
    }
    names.join("|")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HMAC_KEY: Public =
        Public { object_type: 0x0008, attributes: 0x0004_0472, keyedhash_scheme: Some((ALG_HMAC, ALG_SHA256)) };

    #[test]
    fn an_hmac_sha256_signing_key_is_recognised_and_nothing_else() {
        assert!(is_hmac_sha256_key(&HMAC_KEY));
        let policy_key = Public { attributes: 0x0004_0432, ..HMAC_KEY };
        assert!(is_hmac_sha256_key(&policy_key));
        let cases = [
            Public { keyedhash_scheme: Some((ALG_HMAC, 0x0004)), ..HMAC_KEY },
            Public { keyedhash_scheme: Some((0x0010, 0x0010)), ..HMAC_KEY },
            Public { attributes: 0x0000_0472, ..HMAC_KEY },
            Public { attributes: 0x0005_0472, ..HMAC_KEY },
            Public { object_type: 0x0023, keyedhash_scheme: None, attributes: 0x0003_0472 },
        ];
        for public in cases {
            assert!(!is_hmac_sha256_key(&public), "{public:?}");
        }
    }

    #[test]
    fn objects_are_described_as_tpm2_readpublic_names_them() {
        assert_eq!(
            describe(&HMAC_KEY),
            "a keyedhash object (scheme hmac, hash sha256, attributes \
             fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|sign)"
        );
        let ecc = Public { object_type: 0x0023, attributes: 0x0003_0472, keyedhash_scheme: None };
        assert_eq!(
            describe(&ecc),
            "an ecc object (attributes fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|restricted|decrypt)"
        );
        let odd = Public { object_type: 0x0042, attributes: 0x1000_0002, keyedhash_scheme: None };
        assert_eq!(describe(&odd), "an unknown object (attributes fixedtpm|0x10000000)");
    }
}
