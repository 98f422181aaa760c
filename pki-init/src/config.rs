//! The `pki:` section of `edgeseal.yaml` ([`PkiConfig`]).
//!
//! Every value is checked where it is deserialized, so that a YAML error points at the offending value;
//! checks that involve two keys (a leaf outliving its CA) run once the section is complete.
//! [`PkiConfig::validate`] repeats all of them for a configuration built in code.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};
use thiserror::Error;

/// Where the PKI is written unless `pki.dir` says otherwise (a tmpfs on most devices).
pub const DEFAULT_DIR: &str = "/run/edgeseal/pki";
/// The longest validity (and `renew_before`) accepted: 100 years of 365 days.
pub const MAX_VALIDITY: Duration = Duration::from_secs(100 * 365 * 86_400);
/// The most certificates one configuration may ask for.
pub const MAX_CERTS: usize = 1024;
/// The most SANs one certificate may carry.
pub const MAX_SANS: usize = 100;
/// The one name a certificate cannot have: `dir/ca/` holds the CA certificates.
pub const RESERVED_NAME: &str = crate::layout::CA_DIR;

const DAY: u64 = 86_400;

/// The `pki:` section: where the device PKI lives, how long its certificates last, and which leaves exist.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "PkiFields")]
pub struct PkiConfig {
    /// `dir` (default `/run/edgeseal/pki`): the PKI directory. pki-init owns it: `ca/ca.pem` (root),
    /// `ca/intermediate.pem`, and per certificate `<name>/cert.pem` (leaf + intermediate) and
    /// `<name>/key.pem` (0600). Anything else found in it is an error. Absolute path.
    pub dir: PathBuf,
    /// `ca_validity` (default `3650d`): lifetime of the root and intermediate CA certificates.
    /// The CA is regenerated (and every leaf reissued) once less than `leaf_validity + renew_before`
    /// of it remains, so that no leaf ever outlives its CA.
    #[serde(serialize_with = "humantime_serde::serialize")]
    pub ca_validity: Duration,
    /// `leaf_validity` (default `90d`): lifetime of each leaf certificate. Must be shorter than
    /// `ca_validity - renew_before`.
    #[serde(serialize_with = "humantime_serde::serialize")]
    pub leaf_validity: Duration,
    /// `renew_before` (default `30d`): a leaf is renewed on the first run less than this long before it
    /// expires. Shorter than `leaf_validity`; `0s` renews only expired leaves.
    #[serde(serialize_with = "humantime_serde::serialize")]
    pub renew_before: Duration,
    /// `key_algorithm` (default `p256`): `p256` (ECDSA P-256 with SHA-256) or `p384` (ECDSA P-384 with
    /// SHA-384), for the CAs and every leaf. Changing it regenerates the whole PKI.
    pub key_algorithm: KeyAlgorithm,
    /// `ca_keys` (default `destroy`): what happens to the CA private keys after issuing. They never
    /// touch the disk in plaintext either way.
    pub ca_keys: CaKeys,
    /// `certs`: one leaf certificate per entry, keyed by name (`[a-z0-9][a-z0-9-]{0,62}`, not `ca`).
    pub certs: BTreeMap<CertName, CertConfig>,
}

/// One entry of `pki.certs`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CertConfig {
    /// `sans` (required): subject alternative names, each a DNS name (`localhost`, `openbao`,
    /// `*.edge.local`) or an IPv4/IPv6 address (`127.0.0.1`, `::1`). At least one. DNS names are
    /// lower-cased. Changing the list reissues the leaf.
    #[serde(deserialize_with = "san_list")]
    pub sans: Vec<San>,
    /// `usages` (default `[server, client]`): extended key usages, `server` (TLS serverAuth) and/or
    /// `client` (TLS clientAuth).
    #[serde(default = "default_usages", deserialize_with = "usage_list")]
    pub usages: BTreeSet<Usage>,
    /// `owner` (optional): `{uid, gid}` given `<name>/`, `cert.pem` and `key.pem`, so that a service
    /// running as that user can read its key. Without it they belong to the user running pki-init.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
}

/// The user and group a leaf's directory and files are given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Owner {
    /// Numeric user id.
    #[serde(deserialize_with = "owner_id")]
    pub uid: u32,
    /// Numeric group id.
    #[serde(deserialize_with = "owner_id")]
    pub gid: u32,
}

/// The key type of every certificate in the PKI.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyAlgorithm {
    /// ECDSA on NIST P-256, signatures with SHA-256.
    #[default]
    P256,
    /// ECDSA on NIST P-384, signatures with SHA-384.
    P384,
}

impl KeyAlgorithm {
    /// rcgen's signature algorithm for this key type.
    pub(crate) fn rcgen(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            KeyAlgorithm::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlgorithm::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyAlgorithm::P256 => "p256",
            KeyAlgorithm::P384 => "p384",
        })
    }
}

/// What becomes of the CA private keys once the run has issued what it needed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CaKeys {
    /// Wiped from memory at the end of the run (EdgeX's choice). Issuing anything later — a new name, a
    /// changed SAN list, a renewal — needs a new CA, and then every leaf is reissued under it.
    #[default]
    Destroy,
    /// Kept only as items of the KEK-encrypted keystore (`pki-root-ca`, `pki-intermediate-ca`: each the
    /// CA's private key and its certificate), so that later runs renew and add leaves under the same CA —
    /// even when `pki.dir` is a tmpfs emptied by a reboot: the CA certificates are restored from there.
    Keystore,
}

impl fmt::Display for CaKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CaKeys::Destroy => "destroy",
            CaKeys::Keystore => "keystore",
        })
    }
}

/// An extended key usage of a leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Usage {
    /// TLS server authentication (serverAuth, 1.3.6.1.5.5.7.3.1).
    Server,
    /// TLS client authentication (clientAuth, 1.3.6.1.5.5.7.3.2).
    Client,
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Usage::Server => "server",
            Usage::Client => "client",
        })
    }
}

/// A certificate name: `[a-z0-9][a-z0-9-]{0,62}`, not `ca`. It names the directory `dir/<name>/` and
/// is the leaf's common name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CertName(String);

impl CertName {
    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for CertName {
    type Err = PkiConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        let valid_char = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-';
        let ok = !bytes.is_empty()
            && bytes.len() <= 63
            && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
            && bytes.iter().all(valid_char);
        if !ok {
            return Err(PkiConfigError::Name(s.to_string()));
        }
        if s == RESERVED_NAME {
            return Err(PkiConfigError::ReservedName);
        }
        Ok(Self(s.to_string()))
    }
}

/// Lets `config.certs.get("openbao")` look a name up by string.
impl std::borrow::Borrow<str> for CertName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CertName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for CertName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for CertName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

/// A subject alternative name: a DNS name or an IP address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum San {
    /// A DNS name in lower case: LDH labels of 1-63 characters, at most 253 in all, an optional leading
    /// `*.` wildcard label, and a last label that is not all digits.
    Dns(String),
    /// An IPv4 or IPv6 address.
    Ip(IpAddr),
}

impl San {
    /// Parses one SAN as written in the configuration.
    pub fn parse(s: &str) -> Result<Self, PkiConfigError> {
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(San::Ip(ip));
        }
        let lower = s.to_ascii_lowercase();
        if valid_dns_name(&lower) {
            Ok(San::Dns(lower))
        } else {
            Err(PkiConfigError::San(s.to_string()))
        }
    }

    /// Whether a value built in code (rather than parsed) is one [`San::parse`] would return.
    fn is_valid(&self) -> bool {
        match self {
            San::Ip(_) => true,
            San::Dns(name) => name.parse::<IpAddr>().is_err() && valid_dns_name(name),
        }
    }
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Dns(name) => f.write_str(name),
            San::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// As written in the configuration: the name, or the address.
impl Serialize for San {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for San {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        San::parse(&s).map_err(de::Error::custom)
    }
}

/// RFC 1123 host names, plus a leading `*.` wildcard label. Expects lower case.
fn valid_dns_name(name: &str) -> bool {
    let rest = name.strip_prefix("*.").unwrap_or(name);
    if rest.is_empty() || name.len() > 253 {
        return false;
    }
    let labels: Vec<&str> = rest.split('.').collect();
    let label_ok = |l: &&str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
    };
    // A last label of digits only is a mistyped IP address (`127.0.0.256`, `10.1`), not a name.
    let last_not_numeric = labels.last().is_some_and(|l| !l.bytes().all(|c| c.is_ascii_digit()));
    labels.iter().all(label_ok) && last_not_numeric
}

/// The `pki:` keys as written, before the checks that involve several keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PkiFields {
    #[serde(default = "default_dir", deserialize_with = "pki_dir")]
    dir: PathBuf,
    #[serde(default = "default_ca_validity", deserialize_with = "ca_validity")]
    ca_validity: Duration,
    #[serde(default = "default_leaf_validity", deserialize_with = "leaf_validity")]
    leaf_validity: Duration,
    #[serde(default = "default_renew_before", deserialize_with = "renew_window")]
    renew_before: Duration,
    #[serde(default)]
    key_algorithm: KeyAlgorithm,
    #[serde(default)]
    ca_keys: CaKeys,
    #[serde(default, deserialize_with = "cert_map")]
    certs: BTreeMap<CertName, CertConfig>,
}

fn default_dir() -> PathBuf {
    PathBuf::from(DEFAULT_DIR)
}

fn default_ca_validity() -> Duration {
    Duration::from_secs(3650 * DAY)
}

fn default_leaf_validity() -> Duration {
    Duration::from_secs(90 * DAY)
}

fn default_renew_before() -> Duration {
    Duration::from_secs(30 * DAY)
}

fn default_usages() -> BTreeSet<Usage> {
    BTreeSet::from([Usage::Server, Usage::Client])
}

fn pki_dir<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    let dir = PathBuf::deserialize(d)?;
    check_dir(&dir).map_err(de::Error::custom)?;
    Ok(dir)
}

fn ca_validity<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    validity(d, "ca_validity")
}

fn leaf_validity<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    validity(d, "leaf_validity")
}

fn validity<'de, D: Deserializer<'de>>(d: D, key: &'static str) -> Result<Duration, D::Error> {
    let v: Duration = humantime_serde::deserialize(d)?;
    check_validity(key, v).map_err(de::Error::custom)?;
    Ok(v)
}

fn renew_window<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let v: Duration = humantime_serde::deserialize(d)?;
    if v > MAX_VALIDITY {
        return Err(de::Error::custom(PkiConfigError::RenewBeforeTooLong(v)));
    }
    Ok(v)
}

fn cert_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<CertName, CertConfig>, D::Error> {
    struct Visitor;
    impl<'de> de::Visitor<'de> for Visitor {
        type Value = BTreeMap<CertName, CertConfig>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map of certificate names to {sans, usages, owner}")
        }
        fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut certs = BTreeMap::new();
            while let Some(name) = map.next_key::<CertName>()? {
                if certs.contains_key(&name) {
                    return Err(de::Error::custom(PkiConfigError::DuplicateName(name.0)));
                }
                if certs.len() == MAX_CERTS {
                    return Err(de::Error::custom(PkiConfigError::TooManyCerts));
                }
                let cert: CertConfig = map.next_value()?;
                certs.insert(name, cert);
            }
            Ok(certs)
        }
    }
    d.deserialize_map(Visitor)
}

fn san_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<San>, D::Error> {
    let sans = Vec::<San>::deserialize(d)?;
    check_sans(&sans).map_err(de::Error::custom)?;
    Ok(sans)
}

fn usage_list<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeSet<Usage>, D::Error> {
    let list = Vec::<Usage>::deserialize(d)?;
    let mut usages = BTreeSet::new();
    for usage in list {
        if !usages.insert(usage) {
            return Err(de::Error::custom(PkiConfigError::DuplicateUsage(usage)));
        }
    }
    if usages.is_empty() {
        return Err(de::Error::custom(PkiConfigError::NoUsage));
    }
    Ok(usages)
}

fn owner_id<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let id = u32::deserialize(d)?;
    if id == u32::MAX {
        return Err(de::Error::custom(PkiConfigError::OwnerId));
    }
    Ok(id)
}

fn check_dir(dir: &Path) -> Result<(), PkiConfigError> {
    let has_parent_ref = dir.components().any(|c| matches!(c, Component::ParentDir));
    if !dir.is_absolute() || has_parent_ref || dir.parent().is_none() {
        return Err(PkiConfigError::Dir(dir.to_path_buf()));
    }
    Ok(())
}

fn check_validity(key: &'static str, v: Duration) -> Result<(), PkiConfigError> {
    if v.as_secs() == 0 || v > MAX_VALIDITY {
        return Err(PkiConfigError::Validity { key, value: v });
    }
    Ok(())
}

fn check_sans(sans: &[San]) -> Result<(), PkiConfigError> {
    if sans.is_empty() {
        return Err(PkiConfigError::NoSans);
    }
    if sans.len() > MAX_SANS {
        return Err(PkiConfigError::TooManySans);
    }
    for (i, san) in sans.iter().enumerate() {
        if !san.is_valid() {
            return Err(PkiConfigError::San(san.to_string()));
        }
        if sans[..i].contains(san) {
            return Err(PkiConfigError::DuplicateSan(san.to_string()));
        }
    }
    Ok(())
}

impl TryFrom<PkiFields> for PkiConfig {
    type Error = PkiConfigError;

    fn try_from(f: PkiFields) -> Result<Self, Self::Error> {
        let config = PkiConfig {
            dir: f.dir,
            ca_validity: f.ca_validity,
            leaf_validity: f.leaf_validity,
            renew_before: f.renew_before,
            key_algorithm: f.key_algorithm,
            ca_keys: f.ca_keys,
            certs: f.certs,
        };
        config.validate()?;
        Ok(config)
    }
}

impl Default for PkiConfig {
    /// Every key at its default, and no certificates.
    fn default() -> Self {
        Self {
            dir: default_dir(),
            ca_validity: default_ca_validity(),
            leaf_validity: default_leaf_validity(),
            renew_before: default_renew_before(),
            key_algorithm: KeyAlgorithm::default(),
            ca_keys: CaKeys::default(),
            certs: BTreeMap::new(),
        }
    }
}

impl CertConfig {
    /// A certificate with these SANs, both usages and no owner.
    pub fn new(sans: Vec<San>) -> Self {
        Self { sans, usages: default_usages(), owner: None }
    }
}

impl PkiConfig {
    /// Checks everything deserialization checks; for a configuration built in code.
    pub fn validate(&self) -> Result<(), PkiConfigError> {
        check_dir(&self.dir)?;
        check_validity("ca_validity", self.ca_validity)?;
        check_validity("leaf_validity", self.leaf_validity)?;
        if self.renew_before > MAX_VALIDITY {
            return Err(PkiConfigError::RenewBeforeTooLong(self.renew_before));
        }
        if self.leaf_validity >= self.ca_validity {
            return Err(PkiConfigError::LeafOutlivesCa { leaf: self.leaf_validity, ca: self.ca_validity });
        }
        if self.renew_before >= self.leaf_validity {
            return Err(PkiConfigError::RenewBeforeNotShorter { renew: self.renew_before, leaf: self.leaf_validity });
        }
        if self.leaf_validity + self.renew_before >= self.ca_validity {
            return Err(PkiConfigError::CaTooShort {
                ca: self.ca_validity,
                leaf: self.leaf_validity,
                renew: self.renew_before,
            });
        }
        if self.certs.len() > MAX_CERTS {
            return Err(PkiConfigError::TooManyCerts);
        }
        for (name, cert) in &self.certs {
            let in_cert = |e: PkiConfigError| PkiConfigError::InCert { name: name.to_string(), source: Box::new(e) };
            check_sans(&cert.sans).map_err(in_cert)?;
            if cert.usages.is_empty() {
                return Err(in_cert(PkiConfigError::NoUsage));
            }
            if cert.owner.is_some_and(|o| o.uid == u32::MAX || o.gid == u32::MAX) {
                return Err(in_cert(PkiConfigError::OwnerId));
            }
        }
        Ok(())
    }
}

/// Formats a duration the way the configuration writes it: `90d`, `36h`, `90s`.
pub(crate) fn show(d: Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_nanos() != 0 || secs == 0 {
        return humantime::format_duration(d).to_string();
    }
    for (unit, len) in [("d", DAY), ("h", 3600), ("m", 60)] {
        if secs % len == 0 {
            return format!("{}{unit}", secs / len);
        }
    }
    format!("{secs}s")
}

/// A `pki:` section that cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PkiConfigError {
    /// `pki.dir` is relative, `/`, or contains `..`.
    #[error("pki.dir must be an absolute directory below / without `..`, got {0:?}")]
    Dir(PathBuf),
    /// A validity of zero, under a second, or over the maximum.
    #[error("pki.{key} must be between 1s and 36500d, got {}", show(*.value))]
    Validity {
        /// `ca_validity` or `leaf_validity`.
        key: &'static str,
        /// The value given.
        value: Duration,
    },
    /// `pki.renew_before` above the maximum.
    #[error("pki.renew_before must be at most 36500d, got {}", show(*.0))]
    RenewBeforeTooLong(Duration),
    /// `pki.leaf_validity` is not shorter than `pki.ca_validity`.
    #[error("pki.leaf_validity ({}) must be shorter than pki.ca_validity ({}): a leaf cannot outlive its CA", show(*.leaf), show(*.ca))]
    LeafOutlivesCa {
        /// `leaf_validity`.
        leaf: Duration,
        /// `ca_validity`.
        ca: Duration,
    },
    /// `pki.renew_before` is not shorter than `pki.leaf_validity`.
    #[error("pki.renew_before ({}) must be shorter than pki.leaf_validity ({}), or every run would renew every leaf", show(*.renew), show(*.leaf))]
    RenewBeforeNotShorter {
        /// `renew_before`.
        renew: Duration,
        /// `leaf_validity`.
        leaf: Duration,
    },
    /// The CA would be due for renewal as soon as it is made.
    #[error("pki.ca_validity ({}) must be longer than pki.leaf_validity + pki.renew_before ({} + {}): the CA is renewed that long before it expires so that no leaf outlives it", show(*.ca), show(*.leaf), show(*.renew))]
    CaTooShort {
        /// `ca_validity`.
        ca: Duration,
        /// `leaf_validity`.
        leaf: Duration,
        /// `renew_before`.
        renew: Duration,
    },
    /// A certificate name outside `[a-z0-9][a-z0-9-]{0,62}`.
    #[error("{0:?} is not a usable certificate name: use 1-63 of a-z, 0-9 and -, starting with a letter or digit")]
    Name(String),
    /// The name `ca`.
    #[error("`ca` cannot name a certificate: pki.dir/ca/ holds the CA certificates")]
    ReservedName,
    /// A name listed twice under `pki.certs`.
    #[error("certificate {0:?} is listed twice under pki.certs")]
    DuplicateName(String),
    /// More than [`MAX_CERTS`] certificates.
    #[error("pki.certs lists more than {MAX_CERTS} certificates")]
    TooManyCerts,
    /// A SAN that is neither a DNS name nor an IP address.
    #[error("{0:?} is not a DNS name or an IP address")]
    San(String),
    /// A SAN listed twice.
    #[error("SAN {0:?} is listed twice")]
    DuplicateSan(String),
    /// No SANs.
    #[error("sans must list at least one DNS name or IP address")]
    NoSans,
    /// More than [`MAX_SANS`] SANs.
    #[error("sans lists more than {MAX_SANS} names")]
    TooManySans,
    /// An empty `usages` list.
    #[error("usages must list server, client or both")]
    NoUsage,
    /// A usage listed twice.
    #[error("usage {0} is listed twice")]
    DuplicateUsage(Usage),
    /// uid or gid 4294967295, which chown reads as "leave unchanged".
    #[error("owner uid and gid must be below 4294967295")]
    OwnerId,
    /// A problem inside one entry of `pki.certs` (from [`PkiConfig::validate`]).
    #[error("pki.certs.{name}: {source}")]
    InCert {
        /// The certificate's name.
        name: String,
        /// What is wrong with it.
        source: Box<PkiConfigError>,
    },
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
