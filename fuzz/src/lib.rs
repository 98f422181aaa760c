//! Helpers shared by the fuzz targets in `fuzz_targets/` and the seed maker in `examples/`.
//!
//! - [`resign`]: recomputes a keystore's checksum, so that mutated keystores get past the checksum
//!   check and the fuzzer reaches the version, structure and decryption code behind it.
//! - [`EDGEX_IKM`] / [`EDGEX_SALT`]: the hook IKM and salt the `edgex_resp_init` target decrypts with;
//!   the seed maker encrypts one seed under them so that the successful-decryption path is covered.

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
