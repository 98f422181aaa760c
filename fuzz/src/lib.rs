//! Helpers shared by the fuzz targets in `fuzz_targets/` and the seed maker in `examples/`.
//!
//! - [`resign`]: recomputes a keystore's checksum, so that mutated keystores get past the checksum
//!   check and the fuzzer reaches the version, structure and decryption code behind it.
//! - [`EDGEX_IKM`] / [`EDGEX_SALT`]: the hook IKM and salt the `edgex_resp_init` target decrypts with;
//!   the seed maker encrypts one seed under them so that the successful-decryption path is covered.
//! - [`FLEET_ORG_KEY_FILE`] / [`FLEET_NODE_KEYS`]: the org key and node keys the `fleet_records` target
//!   verifies with; the seed maker signs its seeds with them so that verification succeeds.

use secretstore_setup::keystore::canonical::{checksum, to_canonical};
use serde_json::Value;

/// IKM byte (repeated 32 times) handed to `RespInit::shares`.
pub const EDGEX_IKM: u8 = 1;
/// Salt handed to `RespInit::shares` (EdgeX's `kdf-salt.dat` is 32 raw bytes).
pub const EDGEX_SALT: [u8; 32] = [2; 32];

/// If `bytes` is a JSON object, the same object with its `checksum` field replaced by the correct
/// checksum, in canonical form plus a newline (what `KeystoreFile::to_bytes` writes); otherwise `None`.
pub fn resign(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut value: Value = serde_json::from_slice(bytes).ok()?;
    value.as_object_mut()?.remove("checksum");
    let sum = checksum(&value);
    value.as_object_mut()?.insert("checksum".into(), Value::String(sum));
    let mut out = Vec::with_capacity(bytes.len() + 80);
    to_canonical(&value, &mut out);
    out.push(b'\n');
    Some(out)
}

/// The org key file the `fleet_records` target trusts (test values: a seed and a K of repeated bytes).
pub const FLEET_ORG_KEY_FILE: &str = r#"{"format": "edgeseal-fleet-org-key-v1",
 "signing_key": "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
 "generation": 1, "k": "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=", "pending": null}"#;

/// The node keys of the `fleet_records` target (a throwaway test key made by age-keygen for it).
pub const FLEET_NODE_KEYS: &str = r#"{"age": "AGE-SECRET-KEY-13FKVD64QNP0XGE3J9PH799GPQN7Q4JQCJP2L9WAR258267F0TW3SKCDF30",
 "ed25519": "AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM="}"#;
