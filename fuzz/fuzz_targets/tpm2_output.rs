//! The parser of tpm2-tools output behind `edgeseal-kdf-tpm2 provision` (the only part that still runs
//! tpm2-tools; derivation reads TPM responses itself, fuzzed by `tpm2_response`), on arbitrary text:
//! `diagnose` (a failed tool's stderr → its cause).
//!
//! Properties besides "no panic":
//! - every text `diagnose` extracts is one bounded line without control characters (it goes into a
//!   one-line error message);
//! - a `Code` diagnosis names a code that appears in the input as `(0x…)`.

#![no_main]

use kdf_plugins::tpm2::diagnose::{diagnose, Diagnosis};
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
});
