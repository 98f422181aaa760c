//! Strict PEM: exactly what pki-init writes (64-column base64, `\n` line ends), nothing around it.
//!
//! Every file in the PKI directory was written by pki-init, so anything else in it — a comment, a
//! truncated block, a stray line — means the file is not what pki-init left and is reported as corrupted.
//!
//! Public so that the fuzz target `pem_decode` can reach [`decode`]; pki-init's own callers are the
//! directory scan and the keystore items.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::secret::SecretPem;

/// PEM label of a certificate.
pub const CERTIFICATE: &str = "CERTIFICATE";
/// PEM label of a PKCS#8 private key.
pub const PRIVATE_KEY: &str = "PRIVATE KEY";

/// One decoded PEM block. The bytes are wiped on drop (they may be a private key) and never printed.
pub struct Block {
    /// The label between `-----BEGIN ` and `-----`.
    pub label: String,
    /// The decoded bytes.
    pub der: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Block {{ label: {:?}, der: [REDACTED; {} bytes] }}", self.label, self.der.len())
    }
}

/// Why text is not strict PEM.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PemError {
    /// No PEM block at all.
    #[error("no PEM block")]
    Empty,
    /// Something other than a PEM block.
    #[error("line {0} is outside any PEM block")]
    Stray(usize),
    /// A block without its END line.
    #[error("PEM block starting at line {0} has no END line")]
    Unterminated(usize),
    /// BEGIN and END labels differ.
    #[error("PEM block at line {0} ends with a different label")]
    LabelMismatch(usize),
    /// Base64 that does not decode.
    #[error("PEM block at line {0} is not valid base64")]
    Base64(usize),
    /// Not text.
    #[error("not ASCII text")]
    NotText,
}

/// Appends one PEM block to `out`.
fn encode_into(label: &str, der: &[u8], out: &mut String) {
    let b64 = Zeroizing::new(STANDARD.encode(der));
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.extend(line.iter().map(|&b| char::from(b)));
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
}

fn encoded_len(label: &str, der_len: usize) -> usize {
    let b64 = der_len.div_ceil(3) * 4;
    b64 + b64.div_ceil(64) + 2 * label.len() + 32
}

/// PEM text of certificates, in order.
pub fn encode_certs(ders: &[&[u8]]) -> String {
    let mut out = String::with_capacity(ders.iter().map(|d| encoded_len(CERTIFICATE, d.len())).sum());
    for der in ders {
        encode_into(CERTIFICATE, der, &mut out);
    }
    out
}

/// PEM text of a PKCS#8 private key, built in a buffer sized up front so that no copy is left behind.
pub fn encode_key(pkcs8: &[u8]) -> SecretPem {
    encode_key_and_certs(pkcs8, &[])
}

/// A private key followed by certificates, in one buffer sized up front.
pub fn encode_key_and_certs(pkcs8: &[u8], certs: &[&[u8]]) -> SecretPem {
    let len =
        encoded_len(PRIVATE_KEY, pkcs8.len()) + certs.iter().map(|c| encoded_len(CERTIFICATE, c.len())).sum::<usize>();
    let mut out = String::with_capacity(len);
    encode_into(PRIVATE_KEY, pkcs8, &mut out);
    for cert in certs {
        encode_into(CERTIFICATE, cert, &mut out);
    }
    SecretPem::new(out)
}

/// Decodes text that must consist of PEM blocks and nothing else.
pub fn decode(text: &[u8]) -> Result<Vec<Block>, PemError> {
    let text = std::str::from_utf8(text).map_err(|_| PemError::NotText)?;
    if !text.is_ascii() {
        return Err(PemError::NotText);
    }
    let mut blocks = Vec::new();
    let mut lines = text.split_terminator('\n').enumerate().map(|(i, l)| (i + 1, l));
    while let Some((start, line)) = lines.next() {
        let label = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
            .filter(|l| !l.is_empty())
            .ok_or(PemError::Stray(start))?;
        let mut b64 = Zeroizing::new(String::new());
        loop {
            let (_, line) = lines.next().ok_or(PemError::Unterminated(start))?;
            if let Some(end) = line.strip_prefix("-----END ") {
                if end.strip_suffix("-----") != Some(label) {
                    return Err(PemError::LabelMismatch(start));
                }
                break;
            }
            if line.is_empty() || line.len() > 76 || line.starts_with('-') {
                return Err(PemError::Base64(start));
            }
            b64.push_str(line);
        }
        let mut der = Zeroizing::new(Vec::with_capacity(b64.len() / 4 * 3 + 3));
        STANDARD.decode_vec(b64.as_bytes(), &mut der).map_err(|_| PemError::Base64(start))?;
        blocks.push(Block { label: label.to_string(), der });
    }
    if blocks.is_empty() {
        return Err(PemError::Empty);
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let der: Vec<u8> = (0..=255).collect();
        let text = encode_certs(&[&der, &der[..10]]);
        assert!(text.lines().all(|l| l.len() <= 64));
        let blocks = decode(text.as_bytes()).unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].label, CERTIFICATE);
        assert_eq!(&blocks[0].der[..], &der[..]);
        assert_eq!(&blocks[1].der[..], &der[..10]);
        let key = encode_key(&der);
        assert!(key.expose().starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert_eq!(&decode(key.expose().as_bytes()).unwrap()[0].der[..], &der[..]);
    }

    #[test]
    fn capacity_is_enough_for_every_length() {
        for len in 0..300 {
            let der = vec![7u8; len];
            let mut out = String::with_capacity(encoded_len(PRIVATE_KEY, len));
            let cap = out.capacity();
            encode_into(PRIVATE_KEY, &der, &mut out);
            assert_eq!(out.capacity(), cap, "len {len} reallocated");
        }
    }

    #[test]
    fn rejects_anything_but_blocks() {
        let good = encode_certs(&[b"abc"]);
        let cases: Vec<(String, PemError)> = vec![
            (String::new(), PemError::Empty),
            ("hello\n".into(), PemError::Stray(1)),
            (format!("# comment\n{good}"), PemError::Stray(1)),
            (format!("{good}trailing\n"), PemError::Stray(4)),
            (good.replace("-----END CERTIFICATE-----\n", ""), PemError::Unterminated(1)),
            (good.replace("END CERTIFICATE", "END PRIVATE KEY"), PemError::LabelMismatch(1)),
            (good.replace("YWJj", "YW!j"), PemError::Base64(1)),
            (good.replace("YWJj", "YWJ"), PemError::Base64(1)),
            (good.replace("YWJj\n", "YWJj\n\n"), PemError::Base64(1)),
            ("-----BEGIN -----\n".into(), PemError::Stray(1)),
            ("\u{e9}\n".into(), PemError::NotText),
        ];
        for (text, want) in cases {
            assert_eq!(decode(text.as_bytes()).err(), Some(want), "{text:?}");
        }
        assert!(decode(&[0xff, 0x00]).is_err());
    }
}
