//! TPM 2.0 responses as the `edgeseal-kdf-tpm2` plug-in reads them from the TPM (in-process): the
//! framing (`wire::response_size` on the header, `wire::Response::parse`) and every response parser of
//! `commands` (CreatePrimary, HMAC, ReadPublic, StartAuthSession, PCR_Read, GetCapability), on
//! arbitrary bytes.
//!
//! Each input is parsed twice: as is, and with its header repaired (tag kept if valid, size set to
//! the input's length, response code 0), so that the fuzzer gets past the header checks into the
//! parameter parsers without having to guess a matching size field.
//!
//! Properties besides "no panic":
//! - a header size that `response_size` accepts is 10 to 4096; a parsed response's size is its length;
//! - a CreatePrimary handle is transient (0x80xxxxxx), a StartAuthSession handle a policy session
//!   (0x03xxxxxx);
//! - an HMAC is exactly 32 bytes, and those bytes appear in the input;
//! - a ReadPublic answer that `is_hmac_sha256_key` is a keyedhash object with scheme HMAC/SHA-256 and
//!   `sign`; `describe` never panics;
//! - PCR_Read returns exactly one 32-byte value per selected PCR;
//! - GetCapability returns no more handles than fit in the input.

#![no_main]

use kdf_plugins::tpm2::commands::{
    parse_create_primary, parse_get_handles, parse_hmac, parse_pcr_read, parse_read_public, parse_start_auth_session,
    ALG_HMAC, ALG_KEYEDHASH,
};
use kdf_plugins::tpm2::public::{describe, is_hmac_sha256_key};
use kdf_plugins::tpm2::wire::{response_size, Response, HEADER_LEN, MAX_RESPONSE};
use kdf_plugins::tpm2::PcrSelection;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = <&[u8; HEADER_LEN]>::try_from(data.get(..HEADER_LEN).unwrap_or_default()) {
        if let Ok(size) = response_size(header) {
            assert!((HEADER_LEN..=MAX_RESPONSE).contains(&size));
        }
    }
    check(data);
    if (HEADER_LEN..=MAX_RESPONSE).contains(&data.len()) {
        let mut repaired = data.to_vec();
        if !matches!(&repaired[..2], [0x80, 0x01] | [0x80, 0x02]) {
            repaired[..2].copy_from_slice(&[0x80, 0x02]);
        }
        let len = u32::try_from(repaired.len()).unwrap_or(u32::MAX);
        repaired[2..6].copy_from_slice(&len.to_be_bytes());
        repaired[6..10].copy_from_slice(&[0; 4]);
        check(&repaired);
    }
});

/// The selection a PCR_Read answer is checked against: from the input's last bytes when they make a
/// valid one, else sha256:7.
fn selection(data: &[u8]) -> PcrSelection {
    let tail = data.len().saturating_sub(3);
    let mask = data[tail..].iter().enumerate().fold(0u32, |m, (i, b)| m | u32::from(*b) << (8 * i));
    PcrSelection::from_mask(mask).or_else(|| PcrSelection::from_mask(1 << 7)).expect("sha256:7 is valid")
}

fn check(data: &[u8]) {
    let Ok(response) = Response::parse(data) else { return };
    assert_eq!(response.body.len() + HEADER_LEN, data.len());
    assert!(data.len() <= MAX_RESPONSE);

    if let Ok(handle) = parse_create_primary(&response) {
        assert_eq!(handle >> 24, 0x80, "CreatePrimary handle {handle:#x}");
    }
    if let Ok(mac) = parse_hmac(&response) {
        assert_eq!(mac.len(), 32);
        assert!(data.windows(32).any(|w| w == &mac[..]), "the HMAC is not from the input");
    }
    if let Ok(public) = parse_read_public(&response) {
        let _ = describe(&public);
        if is_hmac_sha256_key(&public) {
            assert_eq!(public.object_type, ALG_KEYEDHASH);
            assert_eq!(public.keyedhash_scheme, Some((ALG_HMAC, 0x000B)));
            assert_ne!(public.attributes & 0x0004_0000, 0, "no sign attribute");
        }
    }
    if let Ok(session) = parse_start_auth_session(&response) {
        assert_eq!(session >> 24, 0x03, "session handle {session:#x}");
    }
    let pcrs = selection(data);
    if let Ok(values) = parse_pcr_read(&response, pcrs) {
        assert_eq!(values.len(), pcrs.len());
    }
    if let Ok((handles, _)) = parse_get_handles(&response) {
        assert!(handles.len() * 4 <= data.len());
    }
}
