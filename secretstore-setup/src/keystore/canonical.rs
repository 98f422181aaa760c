//! The keystore checksum over canonical JSON (sorted keys, no whitespace). Public so that tools and
//! fuzzers can re-sign an edited file the way the format defines.
//!
//! The checksum is not a MAC — anyone can recompute it — but it tells a damaged file ("corrupted or
//! tampered") apart from a KEK that no longer matches, and it covers the format version, so it is
//! checked before anything else is trusted.

pub use edgeseal_bundle::canonical::to_canonical;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Prefix of the checksum value.
pub const CHECKSUM_PREFIX: &str = "sha256:";

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
    fn checksum_changes_with_any_value() {
        let a = checksum(&json!({"version": 1, "x": "abc"}));
        assert_eq!(a, checksum(&json!({"x": "abc", "version": 1})));
        assert_ne!(a, checksum(&json!({"version": 2, "x": "abc"})));
        assert_ne!(a, checksum(&json!({"version": 1, "x": "abd"})));
        assert!(a.starts_with("sha256:") && a.len() == 7 + 64);
    }
}
