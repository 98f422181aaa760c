//! Pure parsing and the rules for what counts as a usable identifier. No I/O here: each function takes
//! the text of one file and returns the normalized value or the [`Skip`] reason, so the rules are
//! table-tested and can be fuzzed.
//!
//! Returned values are identifiers (the IKM's input); callers wrap them in `Zeroizing` and never log them.

use std::fmt;
use std::path::{Component, Path};

use super::Skip;

/// Values that firmware vendors ship instead of a real serial or UUID, compared case-insensitively after
/// trimming. Values made of one repeated character (`0`, `00000000-0000-…`, `FFFFFFFF-…`, `xxxx`) are
/// caught separately by [`is_placeholder`].
const PLACEHOLDERS: &[&str] = &[
    "none",
    "null",
    "n/a",
    "na",
    "unknown",
    "invalid",
    "default",
    "default string",
    "not specified",
    "not available",
    "not applicable",
    "not present",
    "not settable",
    "oem",
    "o.e.m.",
    "to be filled by o.e.m.",
    "to be filled by o.e.m",
    "system serial number",
    "chassis serial number",
    "base board serial number",
    "serial number",
    "123456789",
    "0123456789",
    "1234567890",
    // The UUID many AMI BIOSes ship unchanged on every board.
    "03000200-0400-0500-0006-000700080009",
];

/// Characters ignored when deciding whether a value is one repeated character.
fn is_separator(c: char) -> bool {
    matches!(c, '-' | ':' | '.' | '_' | ' ')
}

/// Whether `value` is a firmware placeholder rather than a device-specific identifier: empty, a known
/// vendor default (case-insensitive), or one character repeated (separators ignored), which covers
/// `0`, all-zero and all-F UUIDs and serials like `XXXXXXXX`.
pub fn is_placeholder(value: &str) -> bool {
    let trimmed = value.trim();
    let mut significant = trimmed.chars().filter(|c| !is_separator(*c));
    let Some(first) = significant.next() else {
        return true;
    };
    let first = first.to_ascii_lowercase();
    if significant.all(|c| c.to_ascii_lowercase() == first) {
        return true;
    }
    let lower = trimmed.to_lowercase();
    PLACEHOLDERS.contains(&lower.as_str())
}

/// Trims `text` and rejects what cannot go into one `label=value` line of the canonical list: control
/// characters (a newline would let one value forge another entry) or an empty value.
fn printable(text: &str) -> Result<&str, Skip> {
    let value = text.trim();
    if value.is_empty() {
        return Err(Skip::Placeholder);
    }
    if value.chars().any(char::is_control) {
        return Err(Skip::Malformed);
    }
    Ok(value)
}

/// Normalizes a DMI serial (`product_serial`, `board_serial`, `chassis_serial`): trimmed, case kept.
pub fn normalize_dmi_serial(text: &str) -> Result<String, Skip> {
    let value = printable(text)?;
    if is_placeholder(value) {
        return Err(Skip::Placeholder);
    }
    Ok(value.to_owned())
}

/// Normalizes a DMI `product_uuid`: trimmed and lowercased (UUIDs are case-insensitive).
pub fn normalize_dmi_uuid(text: &str) -> Result<String, Skip> {
    normalize_dmi_serial(text).map(|v| v.to_ascii_lowercase())
}

/// Parses a systemd/D-Bus machine-id: exactly 32 lowercase hex digits (surrounding whitespace
/// ignored). `uninitialized`, uppercase or short values are malformed; an empty file or one repeated
/// digit (all zero) is a placeholder.
pub fn parse_machine_id(text: &str) -> Result<String, Skip> {
    let value = text.trim();
    if is_placeholder(value) {
        return Err(Skip::Placeholder);
    }
    let well_formed = value.len() == 32 && value.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !well_formed {
        return Err(Skip::Malformed);
    }
    Ok(value.to_owned())
}

/// The lines of `/proc/cpuinfo` the fingerprint uses, each the first occurrence, trimmed. Values are
/// identifiers, so `Debug` shows only which lines were found.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CpuInfo {
    /// `model name` (x86, and 32-bit arm).
    pub model_name: Option<String>,
    /// `Hardware` (arm: the SoC, e.g. `BCM2835`).
    pub hardware: Option<String>,
    /// `Serial` (arm; unique per board on a Raspberry Pi).
    pub serial: Option<String>,
}

impl fmt::Debug for CpuInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |v: &Option<String>| if v.is_some() { "[REDACTED]" } else { "None" };
        f.debug_struct("CpuInfo")
            .field("model_name", &shown(&self.model_name))
            .field("hardware", &shown(&self.hardware))
            .field("serial", &shown(&self.serial))
            .finish()
    }
}

/// Extracts the first `model name`, `Hardware` and `Serial` lines of `/proc/cpuinfo`. Keys match
/// exactly (the kernel's spelling); lines without `:` are ignored.
pub fn parse_cpuinfo(text: &str) -> CpuInfo {
    let mut info = CpuInfo::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let slot = match key.trim() {
            "model name" => &mut info.model_name,
            "Hardware" => &mut info.hardware,
            "Serial" => &mut info.serial,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(value.trim().to_owned());
        }
    }
    info
}

/// Normalizes a CPU model or SoC name (`model name`, `Hardware`): trimmed, case kept. Shared by every
/// device of that model, so never a stable identifier on its own.
pub fn normalize_cpu_model(text: &str) -> Result<String, Skip> {
    printable(text).map(str::to_owned)
}

/// Normalizes a cpuinfo `Serial` (Raspberry Pi and other arm boards): trimmed, lowercased; an all-zero
/// serial (boards without one) is a placeholder.
pub fn normalize_cpu_serial(text: &str) -> Result<String, Skip> {
    let value = printable(text)?;
    if is_placeholder(value) {
        return Err(Skip::Placeholder);
    }
    Ok(value.to_ascii_lowercase())
}

/// Parses a MAC address as sysfs prints it: six colon-separated pairs of hex digits, either case,
/// surrounding whitespace ignored.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut groups = text.trim().split(':');
    for byte in &mut mac {
        let group = groups.next()?;
        if group.len() != 2 || !group.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        *byte = u8::from_str_radix(group, 16).ok()?;
    }
    if groups.next().is_some() {
        return None;
    }
    Some(mac)
}

/// Normalizes a NIC's `address` to lowercase `aa:bb:cc:dd:ee:ff`, rejecting what is not a stable
/// burned-in address: all-zero, multicast or broadcast, and locally administered (bit 0x02 of the first
/// octet: set by software, e.g. randomized Wi-Fi or VM addresses).
pub fn normalize_mac(text: &str) -> Result<String, Skip> {
    let mac = parse_mac(text).ok_or(Skip::Malformed)?;
    if mac == [0; 6] {
        return Err(Skip::Placeholder);
    }
    if mac[0] & 0x01 != 0 {
        return Err(Skip::Multicast);
    }
    if mac[0] & 0x02 != 0 {
        return Err(Skip::LocallyAdministered);
    }
    let [a, b, c, d, e, f] = mac;
    Ok(format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}"))
}

/// Whether a NIC's resolved `device` path (relative to the root) sits on a USB bus: a removable dongle
/// whose address leaves with it. True when any path component starts with `usb` (`…/usb1/1-1/…`).
pub fn is_usb_device_path(device: &Path) -> bool {
    device.components().any(|c| match c {
        Component::Normal(name) => name.as_encoded_bytes().starts_with(b"usb"),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_recognized_case_insensitively() {
        let cases: &[(&str, bool)] = &[
            ("", true),
            ("   \n", true),
            ("None", true),
            ("NONE", true),
            ("Not Specified", true),
            ("not specified", true),
            ("To be filled by O.E.M.", true),
            ("TO BE FILLED BY O.E.M.", true),
            ("Default string", true),
            ("System Serial Number", true),
            ("Chassis Serial Number", true),
            ("0", true),
            ("  0\n", true),
            ("00000000", true),
            ("00000000-0000-0000-0000-000000000000", true),
            ("FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF", true),
            ("ffffffff-ffff-ffff-ffff-ffffffffffff", true),
            ("FfFfFfFf-ffff-FFFF-ffff-FFFFFFFFFFFF", true),
            ("03000200-0400-0500-0006-000700080009", true),
            ("03000200-0400-0500-0006-000700080009\n", true),
            ("XXXXXXXXXX", true),
            ("xxxXXX", true),
            ("........", true),
            ("a", true),
            ("0123456789", true),
            // Real identifiers.
            ("4c4c4544-0042-3510-8052-b4c04f4e3732", false),
            ("4C4C4544-0042-3510-8052-B4C04F4E3732", false),
            ("CN7016351S0123", false),
            ("PF2ABCDE", false),
            ("00000000-0000-0000-0000-000000000001", false),
            ("10", false),
            ("Nonexistent Corp 42", false),
        ];
        for (value, expected) in cases {
            assert_eq!(is_placeholder(value), *expected, "is_placeholder({value:?})");
        }
    }

    #[test]
    fn dmi_values_are_trimmed_and_uuids_lowercased() {
        let serials: &[(&str, Result<&str, Skip>)] = &[
            ("  CN7016351S0123 \n", Ok("CN7016351S0123")),
            ("abcDEF123\n", Ok("abcDEF123")),
            ("To be filled by O.E.M.\n", Err(Skip::Placeholder)),
            ("\n", Err(Skip::Placeholder)),
            ("SN1\nmachine-id=forged", Err(Skip::Malformed)),
            ("SN\u{7f}1", Err(Skip::Malformed)),
        ];
        for (text, expected) in serials {
            let got = normalize_dmi_serial(text);
            assert_eq!(got.as_deref().map_err(|e| *e), *expected, "serial {text:?}");
        }
        let uuids: &[(&str, Result<&str, Skip>)] = &[
            ("4C4C4544-0042-3510-8052-B4C04F4E3732\n", Ok("4c4c4544-0042-3510-8052-b4c04f4e3732")),
            ("00000000-0000-0000-0000-000000000000\n", Err(Skip::Placeholder)),
            ("03000200-0400-0500-0006-000700080009", Err(Skip::Placeholder)),
        ];
        for (text, expected) in uuids {
            let got = normalize_dmi_uuid(text);
            assert_eq!(got.as_deref().map_err(|e| *e), *expected, "uuid {text:?}");
        }
    }

    #[test]
    fn machine_id_must_be_32_lowercase_hex_digits() {
        let id = "5f1c0a9e2b7d4c3e8a6f0b1d2c3e4f5a";
        let cases: &[(&str, Result<&str, Skip>)] = &[
            ("5f1c0a9e2b7d4c3e8a6f0b1d2c3e4f5a\n", Ok(id)),
            ("5f1c0a9e2b7d4c3e8a6f0b1d2c3e4f5a", Ok(id)),
            ("", Err(Skip::Placeholder)),
            ("\n", Err(Skip::Placeholder)),
            ("00000000000000000000000000000000\n", Err(Skip::Placeholder)),
            ("uninitialized\n", Err(Skip::Malformed)),
            ("5F1C0A9E2B7D4C3E8A6F0B1D2C3E4F5A\n", Err(Skip::Malformed)),
            ("5f1c0a9e2b7d4c3e8a6f0b1d2c3e4f5\n", Err(Skip::Malformed)),
            ("5f1c0a9e2b7d4c3e8a6f0b1d2c3e4f5a0\n", Err(Skip::Malformed)),
            ("5f1c0a9e-2b7d-4c3e-8a6f-0b1d2c3e4f5a\n", Err(Skip::Malformed)),
            ("5f1c0a9e2b7d4c3e8a6f0b1d2c3e4f5g\n", Err(Skip::Malformed)),
        ];
        for (text, expected) in cases {
            let got = parse_machine_id(text);
            assert_eq!(got.as_deref().map_err(|e| *e), *expected, "machine-id {text:?}");
        }
    }

    #[test]
    fn cpuinfo_takes_the_first_model_name_hardware_and_serial() {
        let x86 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu\n\n\
                   processor\t: 1\nmodel name\t: Other CPU\n";
        let pi = "processor\t: 0\nBogoMIPS\t: 108.00\nCPU part\t: 0xd08\n\n\
                  Hardware\t: BCM2835\nRevision\t: c03114\nSerial\t\t: 10000000ABCDEF01\nModel\t\t: Raspberry Pi 4\n";
        /// cpuinfo text, then the expected `model name`, `Hardware` and `Serial`.
        type Case<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Option<&'a str>);
        let cases: &[Case<'_>] = &[
            (x86, Some("AMD EPYC 7B13"), None, None),
            (pi, None, Some("BCM2835"), Some("10000000ABCDEF01")),
            ("model name\t:\n", Some(""), None, None),
            ("model name: a: b\n", Some("a: b"), None, None),
            ("modelname: x\nmodel  name: y\nSerialNo: z\n", None, None, None),
            ("no colon here\n", None, None, None),
            ("", None, None, None),
        ];
        for (text, model, hardware, serial) in cases {
            let info = parse_cpuinfo(text);
            assert_eq!(info.model_name.as_deref(), *model, "model name in {text:?}");
            assert_eq!(info.hardware.as_deref(), *hardware, "Hardware in {text:?}");
            assert_eq!(info.serial.as_deref(), *serial, "Serial in {text:?}");
        }
    }

    #[test]
    fn cpu_serial_rejects_all_zero_and_lowercases() {
        let cases: &[(&str, Result<&str, Skip>)] = &[
            ("10000000ABCDEF01", Ok("10000000abcdef01")),
            ("0000000000000000", Err(Skip::Placeholder)),
            ("", Err(Skip::Placeholder)),
        ];
        for (text, expected) in cases {
            let got = normalize_cpu_serial(text);
            assert_eq!(got.as_deref().map_err(|e| *e), *expected, "serial {text:?}");
        }
        assert_eq!(normalize_cpu_model("  AMD EPYC 7B13 ").as_deref(), Ok("AMD EPYC 7B13"));
        assert_eq!(normalize_cpu_model(" "), Err(Skip::Placeholder));
    }

    #[test]
    fn mac_parsing_and_stability_rules() {
        let cases: &[(&str, Result<&str, Skip>)] = &[
            ("3c:ec:ef:12:34:56\n", Ok("3c:ec:ef:12:34:56")),
            ("3C:EC:EF:12:34:5A", Ok("3c:ec:ef:12:34:5a")),
            ("00:00:00:00:00:00\n", Err(Skip::Placeholder)),
            ("ff:ff:ff:ff:ff:ff\n", Err(Skip::Multicast)),
            ("01:00:5e:00:00:01", Err(Skip::Multicast)),
            ("02:fc:00:00:00:01\n", Err(Skip::LocallyAdministered)),
            ("3e:ec:ef:12:34:56", Err(Skip::LocallyAdministered)),
            ("", Err(Skip::Malformed)),
            ("3c:ec:ef:12:34", Err(Skip::Malformed)),
            ("3c:ec:ef:12:34:56:78", Err(Skip::Malformed)),
            ("3c-ec-ef-12-34-56", Err(Skip::Malformed)),
            ("3c:ec:ef:12:34:5", Err(Skip::Malformed)),
            ("3c:ec:ef:12:34:+5", Err(Skip::Malformed)),
            ("3c:ec:ef:12:34:zz", Err(Skip::Malformed)),
            // InfiniBand: 20 bytes, not an Ethernet address.
            ("80:00:02:08:fe:80:00:00:00:00:00:00:00:02:c9:03:00:0a:1b:2c", Err(Skip::Malformed)),
        ];
        for (text, expected) in cases {
            let got = normalize_mac(text);
            assert_eq!(got.as_deref().map_err(|e| *e), *expected, "mac {text:?}");
        }
    }

    #[test]
    fn usb_devices_are_recognized_by_their_bus_path() {
        let cases: &[(&str, bool)] = &[
            ("sys/devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1:1.0", true),
            ("/sys/devices/platform/soc/3f980000.usb/usb1/1-1/1-1.1/1-1.1:1.0", true),
            ("sys/devices/pci0000:00/0000:00:03.0/virtio2", false),
            ("sys/devices/pci0000:00/0000:00:1f.6", false),
            ("sys/devices/platform/soc/fe300000.mmcnr/mmc_host/mmc1/mmc1:0001/mmc1:0001:1", false),
            ("sys/devices/platform/notusb/eth", false),
        ];
        for (path, expected) in cases {
            assert_eq!(is_usb_device_path(Path::new(path)), *expected, "{path}");
        }
    }
}
