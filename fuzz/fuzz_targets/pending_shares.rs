//! `PendingShares::decode` (the plaintext of a rekey's pending generation in the keystore) on
//! arbitrary bytes.
//!
//! Properties:
//! - no input panics `decode`;
//! - what decodes is a generation a keystore would hold (1 ≤ threshold ≤ shares, distinct shares),
//!   and it round-trips: `decode(encode(p)) == p` and `encode(p)` is the input.

#![no_main]

use libfuzzer_sys::fuzz_target;
use secretstore_setup::keystore::PendingShares;

/// The encoding's fixed prefix, so that mutations explore what follows it.
const MAGIC: &[u8] = b"edgeseal-pending-shares/v1";

fuzz_target!(|data: &[u8]| {
    check(data);
    check(&[MAGIC, data].concat());
});

fn check(data: &[u8]) {
    let Some(pending) = PendingShares::decode(data) else {
        return;
    };
    assert!(pending.threshold >= 1 && pending.threshold <= pending.shares.len() as u64);
    let encoded = pending.encode();
    assert_eq!(encoded.as_slice(), data, "decode accepted a non-canonical encoding");
    assert_eq!(PendingShares::decode(&encoded), Some(pending));
}
