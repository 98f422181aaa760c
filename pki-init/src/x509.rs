//! What pki-init needs to know about a certificate it finds on disk (pure: DER in, facts out).

use std::collections::BTreeSet;
use std::net::IpAddr;

use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384};
use x509_parser::prelude::FromDer;

use crate::config::{KeyAlgorithm, San, Usage};

/// The parts of a certificate that decide whether it is still what the configuration asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertFacts {
    /// The whole certificate.
    pub(crate) der: Vec<u8>,
    /// Subject as `CN=…, O=…`.
    pub(crate) subject: String,
    /// Serial number in lowercase hex.
    pub(crate) serial: String,
    pub(crate) not_before: OffsetDateTime,
    pub(crate) not_after: OffsetDateTime,
    /// DNS and IP SANs, DNS names lower-cased.
    pub(crate) sans: BTreeSet<San>,
    /// SANs of any other kind (e-mail, URI…): pki-init never writes them.
    pub(crate) other_sans: bool,
    /// serverAuth / clientAuth extended key usages.
    pub(crate) usages: BTreeSet<Usage>,
    /// Extended key usages other than those two.
    pub(crate) other_usages: bool,
    /// basicConstraints cA, and its path length.
    pub(crate) is_ca: bool,
    pub(crate) path_len: Option<u32>,
    /// P-256 or P-384 EC key; `None` for anything else.
    pub(crate) algorithm: Option<KeyAlgorithm>,
    /// SubjectPublicKeyInfo, DER.
    pub(crate) spki: Vec<u8>,
}

/// Parses one DER certificate; the message says what is wrong.
pub(crate) fn parse(der: &[u8]) -> Result<CertFacts, String> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
    if !rest.is_empty() {
        return Err(format!("{} bytes after the certificate", rest.len()));
    }
    let mut facts = CertFacts {
        der: der.to_vec(),
        subject: cert.subject().to_string(),
        serial: hex::encode(cert.raw_serial()),
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        sans: BTreeSet::new(),
        other_sans: false,
        usages: BTreeSet::new(),
        other_usages: false,
        is_ca: false,
        path_len: None,
        algorithm: algorithm(&cert),
        spki: cert.public_key().raw.to_vec(),
    };
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    match name {
                        GeneralName::DNSName(dns) => {
                            facts.sans.insert(San::Dns(dns.to_ascii_lowercase()));
                        }
                        GeneralName::IPAddress(bytes) => match ip(bytes) {
                            Some(ip) => {
                                facts.sans.insert(San::Ip(ip));
                            }
                            None => facts.other_sans = true,
                        },
                        _ => facts.other_sans = true,
                    }
                }
            }
            ParsedExtension::ExtendedKeyUsage(eku) => {
                if eku.server_auth {
                    facts.usages.insert(Usage::Server);
                }
                if eku.client_auth {
                    facts.usages.insert(Usage::Client);
                }
                facts.other_usages = eku.any
                    || eku.code_signing
                    || eku.email_protection
                    || eku.time_stamping
                    || eku.ocsp_signing
                    || !eku.other.is_empty();
            }
            ParsedExtension::BasicConstraints(bc) => {
                facts.is_ca = bc.ca;
                facts.path_len = bc.path_len_constraint;
            }
            ParsedExtension::ParseError { error } => {
                return Err(format!("extension {} does not parse: {error}", ext.oid));
            }
            _ => {}
        }
    }
    Ok(facts)
}

fn ip(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

fn algorithm(cert: &X509Certificate<'_>) -> Option<KeyAlgorithm> {
    let spki = cert.public_key();
    if spki.algorithm.algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY {
        return None;
    }
    let curve = spki.algorithm.parameters.as_ref()?.as_oid().ok()?;
    if curve == OID_EC_P256 {
        Some(KeyAlgorithm::P256)
    } else if curve == OID_NIST_EC_P384 {
        Some(KeyAlgorithm::P384)
    } else {
        None
    }
}

/// Whether `child` carries `issuer`'s subject as its issuer and a valid signature by `issuer`'s key.
pub(crate) fn signed_by(child: &[u8], issuer: &[u8]) -> bool {
    let (Ok((_, child)), Ok((_, issuer))) = (X509Certificate::from_der(child), X509Certificate::from_der(issuer))
    else {
        return false;
    };
    child.issuer().as_raw() == issuer.subject().as_raw() && child.verify_signature(Some(issuer.public_key())).is_ok()
}

/// `2036-03-01T12:00:00Z`.
pub(crate) fn show_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(parse(b"").unwrap_err().contains("not an X.509 certificate"));
        assert!(parse(&[0x30, 0x03, 1, 2, 3]).is_err());
        assert!(!signed_by(b"x", b"y"));
    }

    #[test]
    fn times_print_in_utc() {
        let t = OffsetDateTime::from_unix_timestamp(2_000_000_000).unwrap();
        assert_eq!(show_time(t), "2033-05-18T03:33:20Z");
        let t = t.to_offset(time::UtcOffset::from_hms(2, 0, 0).unwrap());
        assert_eq!(show_time(t), "2033-05-18T03:33:20Z");
    }
}
