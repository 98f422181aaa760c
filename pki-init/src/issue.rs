//! Issuing certificates with rcgen, in memory. Nothing here touches the disk.
//!
//! Profile (RFC 5280):
//! - root: `O=edgeseal, CN=edgeseal root CA`, basicConstraints critical CA:true pathlen 1, keyUsage
//!   critical keyCertSign + cRLSign, subject key identifier.
//! - intermediate: `O=edgeseal, CN=edgeseal intermediate CA`, basicConstraints critical CA:true
//!   pathlen 0, keyUsage critical keyCertSign + cRLSign, subject and authority key identifiers; never
//!   valid beyond the root.
//! - leaf: `O=edgeseal, CN=<name>`, basicConstraints critical CA:false, keyUsage critical
//!   digitalSignature, extendedKeyUsage serverAuth and/or clientAuth, the configured SANs, subject and
//!   authority key identifiers; never valid beyond the intermediate.
//!
//! Every certificate has a random positive 159-bit serial number, starts at the run's `now` and uses
//! the configured key algorithm.

use std::collections::BTreeMap;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyUsagePurpose, SanType, SerialNumber,
};
use time::OffsetDateTime;

use crate::ca_keys::{Loaded, Signer};
use crate::config::{CertConfig, CertName, KeyAlgorithm, PkiConfig, San, Usage};
use crate::error::PkiError;
use crate::plan::{later, Plan};
use crate::scan::Disk;
use crate::secret::PrivateKey;

/// Organization of every subject.
pub(crate) const ORGANIZATION: &str = "edgeseal";
/// Common name of the root.
pub(crate) const ROOT_CN: &str = "edgeseal root CA";
/// Common name of the intermediate.
pub(crate) const INTERMEDIATE_CN: &str = "edgeseal intermediate CA";
/// Bytes of a serial number (RFC 5280 allows at most 20).
const SERIAL_LEN: usize = 20;

/// A freshly issued certificate and its private key.
#[derive(Debug)]
pub(crate) struct Issued {
    pub(crate) der: Vec<u8>,
    pub(crate) key: PrivateKey,
    pub(crate) not_after: OffsetDateTime,
}

impl Issued {
    /// This certificate as the CA that signs the next one (or that the keystore keeps).
    pub(crate) fn signer(&self) -> Signer<'_> {
        Signer { der: &self.der, key: &self.key, not_after: self.not_after }
    }
}

/// A new self-signed root, valid from `now` for `validity`.
pub(crate) fn root(alg: KeyAlgorithm, now: OffsetDateTime, validity: std::time::Duration) -> Result<Issued, PkiError> {
    let what = "the root CA";
    let key = new_key(alg, what)?;
    let not_after = check_end(what, now, later(now, validity))?;
    let mut params = base_params(ROOT_CN, now, not_after)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(key.pair()).map_err(|source| generate(what, source))?;
    Ok(Issued { der: cert.der().to_vec(), key, not_after })
}

/// A new intermediate signed by `root`, valid from `now` for `validity` but never beyond the root.
pub(crate) fn intermediate(
    alg: KeyAlgorithm,
    root: &Signer<'_>,
    now: OffsetDateTime,
    validity: std::time::Duration,
) -> Result<Issued, PkiError> {
    let what = "the intermediate CA";
    let key = new_key(alg, what)?;
    let not_after = check_end(what, now, later(now, validity).min(root.not_after))?;
    let mut params = base_params(INTERMEDIATE_CN, now, not_after)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.use_authority_key_identifier_extension = true;
    let issuer =
        Issuer::from_ca_cert_der(&root.der.into(), root.key.pair()).map_err(|source| generate(what, source))?;
    let cert = params.signed_by(key.pair(), &issuer).map_err(|source| generate(what, source))?;
    Ok(Issued { der: cert.der().to_vec(), key, not_after })
}

/// A new leaf for `name` signed by `issuer`. Refuses to outlive the issuer.
pub(crate) fn leaf(
    alg: KeyAlgorithm,
    name: &CertName,
    cert: &CertConfig,
    issuer: &Signer<'_>,
    now: OffsetDateTime,
    validity: std::time::Duration,
) -> Result<Issued, PkiError> {
    let what = format!("certificate {name}");
    let not_after = check_end(&what, now, later(now, validity))?;
    if not_after > issuer.not_after {
        return Err(PkiError::Validity {
            what,
            reason: "it would outlive ca/intermediate.pem (this is a bug: the CA should have been renewed)".into(),
        });
    }
    let key = new_key(alg, &what)?;
    let mut params = base_params(name.as_str(), now, not_after)?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = cert
        .usages
        .iter()
        .map(|u| match u {
            Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
        })
        .collect();
    params.subject_alt_names = cert
        .sans
        .iter()
        .map(|san| match san {
            San::Dns(dns) => dns.clone().try_into().map(SanType::DnsName),
            San::Ip(ip) => Ok(SanType::IpAddress(*ip)),
        })
        .collect::<Result<_, _>>()
        .map_err(|source| generate(&what, source))?;
    params.use_authority_key_identifier_extension = true;
    let signer =
        Issuer::from_ca_cert_der(&issuer.der.into(), issuer.key.pair()).map_err(|source| generate(&what, source))?;
    let issued = params.signed_by(key.pair(), &signer).map_err(|source| generate(&what, source))?;
    Ok(Issued { der: issued.der().to_vec(), key, not_after })
}

/// Everything a run issues, in memory.
pub(crate) struct Fresh {
    pub(crate) root: Option<Issued>,
    pub(crate) intermediate: Option<Issued>,
    pub(crate) leaves: BTreeMap<CertName, Issued>,
}

pub(crate) fn issue_all(
    config: &PkiConfig,
    disk: &Disk,
    plan: &Plan,
    loaded: &Loaded,
    now: OffsetDateTime,
) -> Result<Fresh, PkiError> {
    let alg = config.key_algorithm;
    let missing_key = |what: &str| PkiError::Validity {
        what: what.to_string(),
        reason: "its issuer's private key is not at hand (this is a bug in pki-init's plan)".into(),
    };
    let root = if plan.root.issues() { Some(root(alg, now, config.ca_validity)?) } else { None };
    let root_signer = match (&root, &disk.root, &loaded.root) {
        (Some(new), _, _) => Some(new.signer()),
        (None, Some(old), Some(key)) => Some(Signer { der: &old.facts.der, key, not_after: old.facts.not_after }),
        _ => None,
    };
    let intermediate = if plan.intermediate.issues() {
        let signer = root_signer.as_ref().ok_or_else(|| missing_key("the intermediate CA"))?;
        Some(intermediate(alg, signer, now, config.ca_validity)?)
    } else {
        None
    };
    let int_signer = match (&intermediate, &disk.intermediate, &loaded.intermediate) {
        (Some(new), _, _) => Some(new.signer()),
        (None, Some(old), Some(key)) => Some(Signer { der: &old.facts.der, key, not_after: old.facts.not_after }),
        _ => None,
    };
    let mut leaves = BTreeMap::new();
    for (name, step) in &plan.leaves {
        if !step.issues() {
            continue;
        }
        let Some(cert) = config.certs.get(name) else { continue };
        let signer = int_signer.as_ref().ok_or_else(|| missing_key(name.as_str()))?;
        leaves.insert(name.clone(), leaf(alg, name, cert, signer, now, config.leaf_validity)?);
    }
    Ok(Fresh { root, intermediate, leaves })
}

fn base_params(cn: &str, now: OffsetDateTime, not_after: OffsetDateTime) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, ORGANIZATION);
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.not_before = now;
    params.not_after = not_after;
    params.serial_number = Some(SerialNumber::from_slice(&serial()?));
    Ok(params)
}

/// Refuses an end of validity that X.509 cannot express or that is not after `now`.
fn check_end(what: &str, now: OffsetDateTime, not_after: OffsetDateTime) -> Result<OffsetDateTime, PkiError> {
    if not_after.year() > 9999 || not_after <= now {
        return Err(PkiError::Validity {
            what: what.to_string(),
            reason: format!("its validity would end {not_after}, which X.509 cannot express or is not after now"),
        });
    }
    Ok(not_after)
}

fn new_key(alg: KeyAlgorithm, what: &str) -> Result<PrivateKey, PkiError> {
    rcgen::KeyPair::generate_for(alg.rcgen())
        .map(PrivateKey::new)
        .map_err(|source| generate(&format!("a key for {what}"), source))
}

/// 20 random bytes whose first byte is 0b01xx_xxxx: positive, exactly 20 octets in DER, 158 random bits.
fn serial() -> Result<[u8; SERIAL_LEN], PkiError> {
    let mut serial = [0u8; SERIAL_LEN];
    getrandom::getrandom(&mut serial).map_err(|e| PkiError::Random(e.to_string()))?;
    serial[0] = (serial[0] & 0x3f) | 0x40;
    Ok(serial)
}

fn generate(what: &str, source: rcgen::Error) -> PkiError {
    PkiError::Generate { what: what.to_string(), source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_positive_20_octets_and_distinct() {
        let a = serial().unwrap();
        let b = serial().unwrap();
        assert_ne!(a, b);
        for s in [a, b] {
            assert_eq!(s[0] & 0xc0, 0x40, "{s:02x?}");
        }
    }

    #[test]
    fn a_leaf_never_outlives_its_issuer() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let day = std::time::Duration::from_secs(86_400);
        let root = root(KeyAlgorithm::P256, now, 10 * day).unwrap();
        let signer = root.signer();
        let inter = intermediate(KeyAlgorithm::P256, &signer, now, 20 * day).unwrap();
        assert_eq!(inter.not_after, root.not_after, "clamped to the root");
        let signer = inter.signer();
        let name: CertName = "svc".parse().unwrap();
        let cert = CertConfig::new(vec![San::parse("svc").unwrap()]);
        assert!(leaf(KeyAlgorithm::P256, &name, &cert, &signer, now, 9 * day).is_ok());
        let err = leaf(KeyAlgorithm::P256, &name, &cert, &signer, now, 11 * day).unwrap_err();
        assert!(err.to_string().contains("outlive ca/intermediate.pem"), "{err}");
    }
}
