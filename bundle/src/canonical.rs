//! Canonical JSON: object keys in byte order, no whitespace, independent of serde_json features.
//! What a bundle's signature and the keystore's checksum are computed over, so that the same value
//! always gives the same bytes.

use serde_json::Value;

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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_sorted_and_output_is_compact() {
        let mut out = Vec::new();
        to_canonical(&json!({"b": [1, {"z": null, "a": "x\"y"}], "a": true}), &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), r#"{"a":true,"b":[1,{"a":"x\"y","z":null}]}"#);
    }
}
