//! Helpers shared by the fuzz targets in `fuzz_targets/` and the seed maker in `examples/`.
//!
//! - [`resign`]: recomputes a keystore's checksum, so that mutated keystores get past the checksum
//!   check and the fuzzer reaches the version, structure and decryption code behind it.
//! - [`EDGEX_IKM`] / [`EDGEX_SALT`]: the hook IKM and salt the `edgex_resp_init` target decrypts with;
//!   the seed maker encrypts one seed under them so that the successful-decryption path is covered.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// IKM byte (repeated 32 times) handed to `RespInit::shares`.
pub const EDGEX_IKM: u8 = 1;
/// Salt handed to `RespInit::shares` (EdgeX's `kdf-salt.dat` is 32 raw bytes).
pub const EDGEX_SALT: [u8; 32] = [2; 32];

/// If `bytes` is a JSON object, the same object with its `checksum` field replaced by the correct
/// checksum, in canonical form plus a newline (what `KeystoreFile::to_bytes` writes); otherwise `None`.
///
/// This re-implements `secretstore_setup::keystore::canonical` (crate-private) from the format's
/// description: keys sorted by bytes, no whitespace, scalars as serde_json writes them, then
/// `sha256:<hex>` over that. `examples/make_seeds.rs` checks that a re-signed keystore is byte for byte
/// the file the library wrote, so a divergence shows up there rather than as lost coverage.
pub fn resign(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut value: Value = serde_json::from_slice(bytes).ok()?;
    let map = value.as_object_mut()?;
    map.remove("checksum");
    let mut body = Vec::with_capacity(bytes.len());
    canonical(&value, &mut body);
    let sum = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
    value.as_object_mut()?.insert("checksum".into(), Value::String(sum));
    let mut out = Vec::with_capacity(body.len() + 80);
    canonical(&value, &mut out);
    out.push(b'\n');
    Some(out)
}

fn canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                scalar(&Value::String(key.clone()), out);
                out.push(b':');
                canonical(value, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(item, out);
            }
            out.push(b']');
        }
        other => scalar(other, out),
    }
}

fn scalar(value: &Value, out: &mut Vec<u8>) {
    // Writing a scalar into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}
