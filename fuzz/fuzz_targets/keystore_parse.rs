//! `KeystoreFile::parse` on arbitrary bytes, and on the same bytes re-signed (see
//! `edgeseal_fuzz::resign`) so that mutations get past the checksum.
//!
//! Properties:
//! - no input panics `parse`, `to_bytes` or `keystore::open`;
//! - a parsed file round-trips: `parse(to_bytes(f)) == f`;
//! - `open` with the all-zero KEK does not panic; when it succeeds (the seeds are sealed under that
//!   KEK) the keystore has `secret_shares` shares and the file's threshold, and sealing it again and
//!   opening the result gives the same keystore.

#![no_main]

use kdf_plugins::Kek;
use libfuzzer_sys::fuzz_target;
use secretstore_setup::keystore::{self, KeystoreFile};

fuzz_target!(|data: &[u8]| {
    check(data);
    if let Some(resigned) = edgeseal_fuzz::resign(data) {
        check(&resigned);
    }
});

fn check(data: &[u8]) {
    let Ok(file) = KeystoreFile::parse(data) else {
        return;
    };
    let bytes = file.to_bytes();
    match KeystoreFile::parse(&bytes) {
        Ok(again) => assert_eq!(again, file, "round trip changed the keystore file"),
        Err(e) => panic!("round trip failed to parse what to_bytes wrote: {e}"),
    }

    let kek = Kek::from_bytes([0u8; 32]);
    let Ok(opened) = keystore::open(&file, &kek) else {
        return;
    };
    assert_eq!(opened.shares().len() as u64, file.secret_shares, "opened share count");
    assert_eq!(opened.threshold(), file.secret_threshold, "opened threshold");
    let resealed = opened.seal(&kek).expect("sealing an opened keystore");
    let reopened = keystore::open(&resealed, &kek).expect("opening a freshly sealed keystore");
    assert_eq!(reopened, opened, "open -> seal -> open changed the keystore");
}
