//! The hardware-fingerprint parsers (`kdf_plugins::hwfp::parse`) on arbitrary text (invalid UTF-8 is
//! replaced with U+FFFD, as it never reaches them: the collector refuses non-UTF-8 files).
//!
//! Properties, for every parser:
//! - no panic;
//! - an accepted value is non-empty, trimmed, has no control character (a newline would forge a line
//!   of the canonical list), and is not a placeholder;
//! - normalizing is idempotent: an accepted value is accepted again unchanged;
//! - per parser: UUIDs and cpuinfo serials have no ASCII uppercase, a machine-id is 32 lowercase hex
//!   digits, a MAC is `aa:bb:cc:dd:ee:ff` with the same six bytes `parse_mac` read, and what
//!   `parse_cpuinfo` extracts is trimmed and single-line.

#![no_main]

use std::path::Path;

use kdf_plugins::hwfp::parse::{
    is_placeholder, is_usb_device_path, normalize_cpu_model, normalize_cpu_serial, normalize_dmi_serial,
    normalize_dmi_uuid, normalize_mac, parse_cpuinfo, parse_mac, parse_machine_id,
};
use kdf_plugins::hwfp::Skip;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let text = text.as_ref();

    accepted("dmi serial", normalize_dmi_serial, text, true);
    if let Some(uuid) = accepted("dmi uuid", normalize_dmi_uuid, text, true) {
        assert!(!uuid.bytes().any(|b| b.is_ascii_uppercase()), "dmi uuid keeps uppercase: {uuid:?}");
        let serial = normalize_dmi_serial(text).expect("uuid accepted but serial refused");
        assert_eq!(uuid, serial.to_ascii_lowercase(), "uuid is not the lowercased serial");
    }
    if let Some(id) = accepted("machine-id", parse_machine_id, text, true) {
        assert!(id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')), "machine-id {id:?}");
    }

    let info = parse_cpuinfo(text);
    for (name, value) in [("model name", &info.model_name), ("Hardware", &info.hardware), ("Serial", &info.serial)] {
        if let Some(value) = value {
            assert!(!value.contains('\n'), "cpuinfo {name} spans lines: {value:?}");
            assert_eq!(value.as_str(), value.trim(), "cpuinfo {name} is not trimmed");
        }
    }
    // What the collector does with the extracted lines, and the same normalizers on the raw text.
    for candidate in [info.model_name.as_deref(), info.hardware.as_deref(), Some(text)].into_iter().flatten() {
        accepted("cpu model", normalize_cpu_model, candidate, false);
    }
    for candidate in [info.serial.as_deref(), Some(text)].into_iter().flatten() {
        if let Some(serial) = accepted("cpu serial", normalize_cpu_serial, candidate, true) {
            assert!(!serial.bytes().any(|b| b.is_ascii_uppercase()), "cpu serial keeps uppercase: {serial:?}");
        }
    }

    let mac = parse_mac(text);
    match normalize_mac(text) {
        Ok(normalized) => {
            check_value("mac", &normalized, false);
            assert_eq!(normalized.len(), 17, "mac {normalized:?}");
            assert_eq!(parse_mac(&normalized), mac, "normalized mac is a different address");
            assert_eq!(normalize_mac(&normalized).as_ref(), Ok(&normalized), "normalize_mac is not idempotent");
            assert!(!normalized.bytes().any(|b| b.is_ascii_uppercase()), "mac keeps uppercase: {normalized:?}");
        }
        Err(Skip::Malformed) => assert_eq!(mac, None, "parse_mac read a MAC that normalize_mac calls malformed"),
        Err(_) => assert!(mac.is_some(), "normalize_mac refused a MAC parse_mac could not read, not as malformed"),
    }

    let _ = is_usb_device_path(Path::new(text));
});

/// Runs `normalize` on `text`; if it accepts, checks the common properties and returns the value.
fn accepted(
    what: &str,
    normalize: fn(&str) -> Result<String, Skip>,
    text: &str,
    placeholder_checked: bool,
) -> Option<String> {
    let value = normalize(text).ok()?;
    check_value(what, &value, placeholder_checked);
    assert_eq!(normalize(&value).as_ref(), Ok(&value), "{what}: normalizing is not idempotent");
    Some(value)
}

fn check_value(what: &str, value: &str, placeholder_checked: bool) {
    assert!(!value.is_empty(), "{what}: accepted an empty value");
    assert_eq!(value, value.trim(), "{what}: accepted value is not trimmed");
    assert!(!value.chars().any(char::is_control), "{what}: accepted value has a control character: {value:?}");
    if placeholder_checked {
        assert!(!is_placeholder(value), "{what}: accepted a placeholder: {value:?}");
    }
}
