//! The parsers of tpm2-tools output behind the `edgeseal-kdf-tpm2` plug-in, on arbitrary text:
//! `diagnose` (a failed tool's stderr → its cause), `parse_readpublic` (`tpm2_readpublic` stdout)
//! and `parse_hmac_hex` (`tpm2_hmac --hex` stdout, the IKM).
//!
//! Properties besides "no panic":
//! - every text `diagnose` extracts is one bounded line without control characters (it goes into a
//!   one-line error message);
//! - a `Code` diagnosis names a code that appears in the input as `(0x…)`;
//! - a parsed public area describes itself, and `is_hmac_sha256_key` implies a keyedhash HMAC-SHA256
//!   object that may sign;
//! - `parse_hmac_hex` accepts exactly 64 hex digits (surrounding ASCII whitespace allowed) and returns
//!   those 32 bytes; its error never quotes the input.

#![no_main]

use kdf_plugins::tpm2::diagnose::{diagnose, Diagnosis};
use kdf_plugins::tpm2::parse_hmac_hex;
use kdf_plugins::tpm2::public::parse_readpublic;
use libfuzzer_sys::fuzz_target;

/// The longest quote plus the fixed words around it (`the connection to the TPM failed (…)`).
const MAX_TEXT: usize = 240 + 64;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);

    let diagnosis = diagnose(&text);
    let extracted = match &diagnosis {
        Diagnosis::Unreachable(reason) => Some(reason),
        Diagnosis::TctiConfig(detail) => Some(detail),
        Diagnosis::Code { code, line } => {
            let hex = format!("{code:x}");
            let lower = text.to_ascii_lowercase();
            assert!(lower.contains(&hex), "code {code:#x} is not in the input");
            Some(line)
        }
        Diagnosis::Other(line) => Some(line),
        Diagnosis::TctiNotFound => None,
    };
    if let Some(t) = extracted {
        assert!(!t.chars().any(char::is_control), "control character in {diagnosis:?}");
        assert!(t.chars().count() <= MAX_TEXT, "unbounded text in {diagnosis:?}");
    }

    if let Some(public) = parse_readpublic(&text) {
        let _ = public.describe();
        if public.is_hmac_sha256_key() {
            assert_eq!(public.object_type, "keyedhash");
            assert_eq!(public.scheme.as_deref(), Some("hmac"));
            assert_eq!(public.scheme_hash.as_deref(), Some("sha256"));
        }
    }

    match parse_hmac_hex(data) {
        Ok(ikm) => {
            let digits = data.trim_ascii();
            assert_eq!(digits.len(), 64, "accepted {} digits", digits.len());
            assert_eq!(hex::decode(digits).expect("accepted non-hex"), ikm.expose(), "not the printed bytes");
        }
        Err(e) => {
            let message = e.to_string();
            let digits = String::from_utf8_lossy(data.trim_ascii());
            assert!(digits.len() < 8 || !message.contains(digits.as_ref()), "error quotes stdout: {message}");
        }
    }
});
