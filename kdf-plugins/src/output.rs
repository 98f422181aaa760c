//! Validation of what a plug-in printed on stdout. Pure: bytes in, [`Ikm`] or a reason out.
//!
//! The `ikm-v1` rule (SPEC §4): exactly one line, the IKM as lowercase hex, at least [`Ikm::MIN_LEN`]
//! bytes once decoded. A single trailing `\n` ends the line.
//!
//! The `edgex` rule is what EdgeX's `pipedhexreader` accepts, so that an existing `EDGEX_IKM_HOOK` gives
//! the same IKM it gave EdgeX: the first line only, hex of either case. edgeseal is stricter in one
//! way: an empty or short IKM (which EdgeX silently accepted) is refused.
//!
//! No error ever quotes the output itself: it might be the IKM with one wrong character.

use thiserror::Error;
use zeroize::Zeroizing;

use crate::config::Protocol;
use crate::secret::Ikm;

/// Why a plug-in's stdout is not a valid IKM line. Messages describe the shape, never the content.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum OutputError {
    /// Nothing at all was printed.
    #[error("printed nothing on stdout")]
    Empty,
    /// More than one line (or text after the newline).
    #[error("printed {lines} lines on stdout, expected exactly one")]
    ExtraLines {
        /// How many lines were seen.
        lines: usize,
    },
    /// The line is not lowercase hex.
    #[error("stdout is not a hex line: byte {position} of the line is not a hex digit (ikm-v1 wants lowercase)")]
    NotHex {
        /// Zero-based position of the first offending byte.
        position: usize,
    },
    /// An odd number of hex digits.
    #[error("stdout has an odd number of hex digits ({digits})")]
    OddLength {
        /// Number of hex digits printed.
        digits: usize,
    },
    /// Fewer than [`Ikm::MIN_LEN`] bytes.
    #[error("IKM is {len} bytes, at least {min} are required", min = Ikm::MIN_LEN)]
    TooShort {
        /// Decoded length in bytes.
        len: usize,
    },
    /// More than [`Ikm::MAX_LEN`] bytes.
    #[error("IKM is {len} bytes, at most {max} are accepted", max = Ikm::MAX_LEN)]
    TooLong {
        /// Decoded length in bytes.
        len: usize,
    },
}

/// The most stdout a well-behaved plug-in can print: the longest IKM in hex plus a newline.
pub const MAX_OUTPUT_LEN: usize = Ikm::MAX_LEN * 2 + 1;

/// Parses stdout by the rule of `protocol`.
pub fn parse_output(protocol: Protocol, stdout: &[u8]) -> Result<Ikm, OutputError> {
    match protocol {
        Protocol::IkmV1 => parse_ikm_line(stdout),
        Protocol::Edgex => parse_edgex_output(stdout),
    }
}

/// Parses an EdgeX hook's stdout: the first line (anything after it is ignored, as EdgeX does), hex
/// digits of either case.
pub fn parse_edgex_output(stdout: &[u8]) -> Result<Ikm, OutputError> {
    let line = stdout.split(|&b| b == b'\n').next().unwrap_or_default();
    if line.is_empty() {
        return Err(OutputError::Empty);
    }
    if let Some(position) = line.iter().position(|b| !b.is_ascii_hexdigit()) {
        return Err(OutputError::NotHex { position });
    }
    decode_checked(line)
}

/// Parses a plug-in's complete stdout into the IKM by the `ikm-v1` rule.
pub fn parse_ikm_line(stdout: &[u8]) -> Result<Ikm, OutputError> {
    if stdout.is_empty() {
        return Err(OutputError::Empty);
    }
    let line = stdout.strip_suffix(b"\n").unwrap_or(stdout);
    let newlines = line.iter().filter(|&&b| b == b'\n').count();
    if newlines > 0 {
        return Err(OutputError::ExtraLines { lines: newlines + 1 });
    }
    if line.is_empty() {
        return Err(OutputError::Empty);
    }
    if let Some(position) = line.iter().position(|b| !matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(OutputError::NotHex { position });
    }
    decode_checked(line)
}

/// Decodes hex digits that were already checked, enforcing the length limits.
fn decode_checked(line: &[u8]) -> Result<Ikm, OutputError> {
    if line.len() % 2 != 0 {
        return Err(OutputError::OddLength { digits: line.len() });
    }
    let len = line.len() / 2;
    if len < Ikm::MIN_LEN {
        return Err(OutputError::TooShort { len });
    }
    if len > Ikm::MAX_LEN {
        return Err(OutputError::TooLong { len });
    }
    let mut bytes = Zeroizing::new(vec![0u8; len]);
    // Cannot fail: the digits and the length were checked above.
    hex::decode_to_slice(line, &mut bytes).map_err(|_| OutputError::NotHex { position: 0 })?;
    Ok(Ikm::from_zeroizing(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00112233445566778899aabbccddeeff";

    #[test]
    fn accepts_one_lowercase_hex_line() {
        for input in [format!("{GOOD}\n"), GOOD.to_string(), format!("{GOOD}{GOOD}\n")] {
            let ikm = parse_ikm_line(input.as_bytes()).unwrap();
            assert_eq!(hex::encode(ikm.expose()), input.trim_end());
        }
    }

    #[test]
    fn rejects_every_malformed_shape_with_its_own_error() {
        let long = "ab".repeat(Ikm::MAX_LEN + 1);
        let cases: &[(&str, OutputError)] = &[
            ("", OutputError::Empty),
            ("\n", OutputError::Empty),
            ("\n\n", OutputError::ExtraLines { lines: 2 }),
            (&format!("{GOOD}\n{GOOD}\n"), OutputError::ExtraLines { lines: 2 }),
            (&format!("{GOOD}\nextra"), OutputError::ExtraLines { lines: 2 }),
            (&format!("{GOOD}\n\n"), OutputError::ExtraLines { lines: 2 }),
            (&format!("{}\n", GOOD.to_uppercase()), OutputError::NotHex { position: 20 }),
            (&format!("{GOOD} \n"), OutputError::NotHex { position: 32 }),
            (&format!("{GOOD}\r\n"), OutputError::NotHex { position: 32 }),
            (&format!("0x{GOOD}\n"), OutputError::NotHex { position: 1 }),
            ("zz\n", OutputError::NotHex { position: 0 }),
            (&format!("{GOOD}0\n"), OutputError::OddLength { digits: 33 }),
            ("00112233445566778899aabbccddee\n", OutputError::TooShort { len: 15 }),
            (&long, OutputError::TooLong { len: Ikm::MAX_LEN + 1 }),
        ];
        for (input, want) in cases {
            let got = parse_ikm_line(input.as_bytes()).unwrap_err();
            assert_eq!(&got, want, "input {input:?}");
        }
    }

    #[test]
    fn edgex_hooks_are_read_like_edgex_reads_them() {
        let upper = GOOD.to_uppercase();
        let wrapped = format!("{}\n{}\n", &GOOD[..30], &GOOD[30..]); // `xxd -p` wraps long output
        let ok: &[(&str, &str)] = &[
            (&format!("{GOOD}\n"), GOOD),
            (GOOD, GOOD),
            (&format!("{upper}\n"), GOOD),
            (&format!("{GOOD}\nanything else\n"), GOOD),
            (&format!("{GOOD}{GOOD}\n"), &format!("{GOOD}{GOOD}")),
        ];
        for (input, want) in ok {
            assert_eq!(hex::encode(parse_edgex_output(input.as_bytes()).unwrap().expose()), *want, "{input:?}");
        }
        let bad: &[(&str, OutputError)] = &[
            ("", OutputError::Empty),
            ("\n", OutputError::Empty),
            ("\n{GOOD}", OutputError::Empty),
            (&format!("{GOOD}\r\n"), OutputError::NotHex { position: 32 }),
            (&format!(" {GOOD}\n"), OutputError::NotHex { position: 0 }),
            (&format!("0x{GOOD}\n"), OutputError::NotHex { position: 1 }),
            ("abc\n", OutputError::OddLength { digits: 3 }),
            (&wrapped, OutputError::TooShort { len: 15 }),
        ];
        for (input, want) in bad {
            assert_eq!(&parse_edgex_output(input.as_bytes()).unwrap_err(), want, "{input:?}");
        }
    }

    #[test]
    fn errors_never_quote_the_output() {
        let nearly_ikm = format!("{GOOD}G\n");
        let err = parse_ikm_line(nearly_ikm.as_bytes()).unwrap_err().to_string();
        assert!(!err.contains("0011"), "{err}");
    }
}
