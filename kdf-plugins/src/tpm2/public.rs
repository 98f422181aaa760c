//! Reading `tpm2_readpublic`'s YAML-like output (pure): what kind of object sits at a persistent handle.

use std::collections::HashMap;

/// `sign`: the key may sign (an HMAC key must).
pub(crate) const ATTR_SIGN: u32 = 0x0004_0000;
/// `decrypt`.
const ATTR_DECRYPT: u32 = 0x0002_0000;
/// `restricted`.
const ATTR_RESTRICTED: u32 = 0x0001_0000;

/// The parts of a public area the plug-in looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicArea {
    /// `keyedhash`, `rsa`, `ecc`, `symcipher`.
    pub object_type: String,
    /// The TPMA_OBJECT bits.
    pub attributes: u32,
    /// The attributes as tpm2-tools names them (`fixedtpm|…|sign`).
    pub attribute_names: String,
    /// For a keyedhash object: its scheme (`hmac`, `xor`, `null`).
    pub scheme: Option<String>,
    /// For a keyedhash object: the scheme's hash.
    pub scheme_hash: Option<String>,
}

impl PublicArea {
    /// Whether `tpm2_hmac -g sha256` can use it: a keyedhash HMAC-SHA256 key that may sign.
    pub fn is_hmac_sha256_key(&self) -> bool {
        self.object_type == "keyedhash"
            && self.scheme.as_deref() == Some("hmac")
            && self.scheme_hash.as_deref() == Some("sha256")
            && self.attributes & ATTR_SIGN != 0
            && self.attributes & ATTR_DECRYPT == 0
            && self.attributes & ATTR_RESTRICTED == 0
    }

    /// A short description for error messages (never key material: the public area holds none).
    pub fn describe(&self) -> String {
        let article = if self.object_type.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
        match (self.object_type.as_str(), &self.scheme, &self.scheme_hash) {
            ("keyedhash", Some(scheme), Some(hash)) => {
                format!("a keyedhash object (scheme {scheme}, hash {hash}, attributes {})", self.attribute_names)
            }
            (kind, _, _) => format!("{article} {kind} object (attributes {})", self.attribute_names),
        }
    }
}

/// Parses `tpm2_readpublic -c HANDLE` output; `None` when the type or attributes are missing.
pub fn parse_readpublic(text: &str) -> Option<PublicArea> {
    // Top-level keys start at column 0 ("type:"); their fields are indented ("  value: keyedhash").
    let mut fields: HashMap<&str, (Option<&str>, Option<&str>)> = HashMap::new();
    let mut section: Option<&str> = None;
    for line in text.lines() {
        if !line.starts_with(' ') {
            section = line.trim_end().strip_suffix(':').map(str::trim);
            continue;
        }
        let Some(key) = section else { continue };
        let entry = fields.entry(key).or_default();
        if let Some(value) = line.trim().strip_prefix("value:") {
            entry.0 = Some(value.trim());
        } else if let Some(raw) = line.trim().strip_prefix("raw:") {
            entry.1 = Some(raw.trim());
        }
    }
    let value = |key: &str| fields.get(key).and_then(|(value, _)| *value).map(str::to_owned);
    let object_type = value("type")?;
    let (names, raw) = fields.get("attributes").copied()?;
    let attributes = u32::from_str_radix(raw?.strip_prefix("0x")?, 16).ok()?;
    let keyedhash = object_type == "keyedhash";
    Some(PublicArea {
        attribute_names: names.unwrap_or_default().to_owned(),
        attributes,
        scheme: value("algorithm").filter(|_| keyedhash),
        scheme_hash: value("hash-alg").filter(|_| keyedhash),
        object_type,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HMAC_KEY: &str = "\
name: 000baf05266069b93f25e5d2e161aa9d4b633ba7da60167001c80e112fff37901dcf
qualified name: 000bea7a9fe5d685499f4f4d474592702931f0b9fa9963a88cfa30b4a997a63b9563
name-alg:
  value: sha256
  raw: 0xb
attributes:
  value: fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|sign
  raw: 0x40472
type:
  value: keyedhash
  raw: 0x8
algorithm: 
  value: hmac
  raw: 0x5
hash-alg:
  value: sha256
  raw: 0xb
keyedhash: 1aec17ba53cdffce247211cb5ecc692b95d7ed64f21a616cbd31f2faff92b192
";

    const ECC_KEY: &str = "\
name: 000b2d6b
name-alg:
  value: sha256
  raw: 0xb
attributes:
  value: fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|restricted|decrypt
  raw: 0x30472
type:
  value: ecc
  raw: 0x23
curve-id:
  value: NIST p256
  raw: 0x3
scheme:
  value: null
  raw: 0x10
sym-keybits: 128
x: 425fd857a8806c9dd85703c95019f62d995ec7419df04e5d6952a69a2232cd66
";

    #[test]
    fn an_hmac_key_is_recognised() {
        let public = parse_readpublic(HMAC_KEY).unwrap();
        assert_eq!(public.object_type, "keyedhash");
        assert_eq!(public.attributes, 0x40472);
        assert_eq!(public.scheme.as_deref(), Some("hmac"));
        assert_eq!(public.scheme_hash.as_deref(), Some("sha256"));
        assert!(public.is_hmac_sha256_key());
    }

    #[test]
    fn other_objects_are_described_not_used() {
        let ecc = parse_readpublic(ECC_KEY).unwrap();
        assert!(!ecc.is_hmac_sha256_key());
        assert_eq!(ecc.scheme, None, "an ecc key's scheme is not a keyedhash scheme");
        assert_eq!(
            ecc.describe(),
            "an ecc object (attributes fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|restricted|decrypt)"
        );
        let sha1 = parse_readpublic(
            &HMAC_KEY.replace("value: sha256\n  raw: 0xb\nkeyedhash", "value: sha1\n  raw: 0x4\nkeyedhash"),
        )
        .unwrap();
        assert!(!sha1.is_hmac_sha256_key());
        assert!(sha1.describe().starts_with("a keyedhash object (scheme hmac, hash sha1"), "{}", sha1.describe());
        let no_sign = parse_readpublic(&HMAC_KEY.replace("raw: 0x40472", "raw: 0x472")).unwrap();
        assert!(!no_sign.is_hmac_sha256_key());
        assert_eq!(parse_readpublic("name: 00\n"), None);
        assert_eq!(parse_readpublic(""), None);
    }
}
