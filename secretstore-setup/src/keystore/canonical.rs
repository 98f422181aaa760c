//! Canonical JSON (sorted keys, no whitespace) and the keystore checksum over it. Public so that
//! tools and fuzzers can re-sign an edited file the way the format defines.
//!
//! The checksum is not a MAC — anyone can recompute it — but it tells a damaged file ("corrupted or
//! tampered") apart from a KEK that no longer matches, and it covers the format version, so it is
//! checked before anything else is trusted.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Prefix of the checksum value.
pub const CHECKSUM_PREFIX: &str = "sha256:";

/// Writes `value` as compact JSON with object keys in byte order, independent of serde_json features.
pub fn to_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_scalar(&Value::String(key.clone()), out);
                out.push(b':');
                to_canonical(value, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                to_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => write_scalar(scalar, out),
    }
}

fn write_scalar(value: &Value, out: &mut Vec<u8>) {
    // Serializing a scalar `Value` into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

/// `sha256:<hex>` over the canonical form of `body` (which must not contain the checksum itself).
pub fn checksum(body: &Value) -> String {
    let mut bytes = Vec::new();
    to_canonical(body, &mut bytes);
    format!("{CHECKSUM_PREFIX}{}", hex::encode(Sha256::digest(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_sorted_and_output_is_compact() {
        let mut out = Vec::new();
        to_canonical(&json!({"b": [1, {"z": null, "a": "x\"y"}], "a": true}), &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), r#"{"a":true,"b":[1,{"a":"x\"y","z":null}]}"#);
    }

    #[test]
    fn checksum_changes_with_any_value() {
        let a = checksum(&json!({"version": 1, "x": "abc"}));
        assert_eq!(a, checksum(&json!({"x": "abc", "version": 1})));
        assert_ne!(a, checksum(&json!({"version": 2, "x": "abc"})));
        assert_ne!(a, checksum(&json!({"version": 1, "x": "abd"})));
        assert!(a.starts_with("sha256:") && a.len() == 7 + 64);
    }
}
