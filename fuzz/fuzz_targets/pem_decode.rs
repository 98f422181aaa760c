//! pki-init's strict PEM decoder (`pki_init::pem::decode`), which reads every file in `pki.dir` and
//! the CA items of the keystore, on arbitrary bytes.
//!
//! Properties besides "no panic":
//! - an accepted input is ASCII and has at least one block, each with a non-empty label that has no
//!   `-----` line break in it;
//! - what pki-init itself writes for the decoded blocks (`encode_certs` for CERTIFICATE blocks,
//!   `encode_key_and_certs` for a PRIVATE KEY followed by certificates) decodes to the same labels and
//!   bytes: writing and reading agree.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pki_init::pem::{decode, encode_certs, encode_key_and_certs, CERTIFICATE, PRIVATE_KEY};

fuzz_target!(|data: &[u8]| {
    let Ok(blocks) = decode(data) else { return };
    assert!(data.is_ascii(), "accepted non-ASCII input");
    assert!(!blocks.is_empty(), "accepted input without a block");
    for block in &blocks {
        assert!(!block.label.is_empty(), "accepted an empty label");
        assert!(!block.label.contains('\n'), "label spans lines: {:?}", block.label);
    }

    let ders: Vec<&[u8]> = blocks.iter().map(|b| &b.der[..]).collect();
    let labels: Vec<&str> = blocks.iter().map(|b| b.label.as_str()).collect();
    let written = if labels.iter().all(|l| *l == CERTIFICATE) {
        encode_certs(&ders)
    } else if labels[0] == PRIVATE_KEY && labels[1..].iter().all(|l| *l == CERTIFICATE) {
        encode_key_and_certs(ders[0], &ders[1..]).expose().to_string()
    } else {
        return;
    };
    let again = decode(written.as_bytes()).expect("pki-init cannot read what it writes");
    assert_eq!(again.len(), blocks.len(), "block count changed");
    for (a, b) in again.iter().zip(&blocks) {
        assert_eq!(a.label, b.label);
        assert_eq!(a.der[..], b.der[..], "bytes changed through encode/decode");
    }
});
