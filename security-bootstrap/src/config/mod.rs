//! `edgeseal.yaml`: one file composed of the sections each library owns.
//!
//! Unknown keys are errors. [`Config::load`] (and [`Config::parse`]) is the one place a configuration
//! is checked: each section's keys while it is deserialized, then each section's own rules
//! (`validate()` of `secret_store:` and `token_server:`), then the rules that span sections
//! (selectors across `services:`, which server is OpenBao). Every error names the file, the line and
//! column, and the key; a command never meets a configuration error after loading.
//!
//! Layout: this module (the schema, loading), [`locate`] (key path to line:column, pure),
//! [`identity`] (the cross-section rules about which server is OpenBao).

pub mod identity;
pub mod locate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kdf_plugins::KdfConfig;
use secretstore_setup::config::{
    valid_segment, FileTokenOwner, FileTokensConfig, SecretStoreConfig, SecretStoreConfigError, ServiceSetup,
    TokenSettings, TokenSettingsError,
};
use secretstore_setup::setup::policy;
use secretstore_setup::KeystoreConfig;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;
use token_server::config::{Selectors, SelectorsError, ServerConfig, ServiceRule, TokenServerConfigError};

pub use identity::StoreIdentityError;
pub use locate::Location;

/// A supervised OpenBao's file audit log, in its `data_dir` (unless `audit.openbao_log` says otherwise).
const OPENBAO_AUDIT_LOG: &str = "audit.log";

/// Largest configuration file accepted.
const MAX_CONFIG_LEN: u64 = 1024 * 1024;

/// The whole configuration. Serializing it gives YAML that [`Config::parse`] reads back to the same
/// value (the test harness writes its configurations this way).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `keystore:` — where the encrypted keystore lives.
    #[serde(default)]
    pub keystore: KeystoreConfig,
    /// `kdf:` — the KDF plug-in.
    #[serde(default)]
    pub kdf: KdfConfig,
    /// `secret_store:` — which OpenBao and how to set it up.
    #[serde(default)]
    pub secret_store: SecretStoreConfig,
    /// `file_tokens:` — where file tokens are written.
    #[serde(default)]
    pub file_tokens: FileTokensConfig,
    /// `pki:` — the device PKI (pki-init).
    #[serde(default)]
    pub pki: pki_init::PkiConfig,
    /// `token_server:` — the Unix socket and its limits.
    #[serde(default)]
    pub token_server: ServerConfig,
    /// `services:` — one entry per service that gets its own policy, role, secrets and tokens.
    #[serde(default)]
    pub services: BTreeMap<ServiceName, ServiceEntry>,
    /// `admin:` — the admin socket `run` serves beside the service socket.
    #[serde(default)]
    pub admin: token_server::admin::AdminConfig,
    /// `audit:` — edgeseal's audit log, and where OpenBao's is.
    #[serde(default)]
    pub audit: token_server::audit_log::AuditConfig,
    /// `metrics:` — an optional loopback listener for Prometheus (off by default).
    #[serde(default, skip_serializing_if = "is_default")]
    pub metrics: token_server::metrics::MetricsConfig,
    /// `fleet:` — this node's fleet (SPEC §14): the central store it syncs with; off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<edgeseal_fleet::config::FleetConfig>,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// A service name: `[a-z0-9][a-z0-9_-]*`, at most 64 bytes (it becomes part of policy names and paths).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServiceName(pub String);

impl<'de> Deserialize<'de> for ServiceName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        if !valid_segment(&name) {
            return Err(serde::de::Error::custom(format!(
                "service name {name:?} is not valid: use 1-64 of [a-z0-9_-], starting with a letter or digit"
            )));
        }
        Ok(Self(name))
    }
}

impl Serialize for ServiceName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// One entry of `services:`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceEntry {
    /// How the token server recognises the service's processes; all selectors given must match.
    #[serde(default)]
    pub selectors: Selectors,
    /// Secrets generated once and stored in KV under the service's path.
    #[serde(default, deserialize_with = "secret_names")]
    pub secrets: Vec<String>,
    /// Token type (`service` or `batch`), TTL and period.
    #[serde(default)]
    pub token: TokenSettings,
    /// Also write the file-token fallback, owned by this uid/gid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_token: Option<FileTokenOwner>,
    /// Hand all callers of this service one shared, renewed token (token server).
    #[serde(default)]
    pub reuse: bool,
    /// An EdgeX SecretsFile (absolute path) whose entries setup imports into the service's secrets,
    /// then rewrites with `imported: true` and no values (EdgeX's scrub).
    #[serde(default, deserialize_with = "seed_file", skip_serializing_if = "Option::is_none")]
    pub seed_file: Option<PathBuf>,
}

fn seed_file<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    let path = PathBuf::deserialize(d)?;
    if !path.is_absolute() || path.file_name().is_none() {
        return Err(serde::de::Error::custom(format!(
            "seed_file {} must be an absolute path to a file (EdgeX's SecretsFile JSON)",
            path.display()
        )));
    }
    Ok(Some(path))
}

fn secret_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    for name in &names {
        if !valid_segment(name) {
            return Err(serde::de::Error::custom(format!(
                "secret name {name:?} is not valid: use 1-64 of [a-z0-9_-], starting with a letter or digit"
            )));
        }
    }
    Ok(names)
}

/// A configuration file that cannot be used. Always a usage error (exit 64).
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Larger than any sane configuration.
    #[error("config {path} is larger than {MAX_CONFIG_LEN} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// Text that is not valid YAML, does not match the schema, or breaks a rule.
    #[error("config {path}:{}: {error}", error.location)]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, where.
        error: Box<ParseError>,
    },
}

/// What is wrong with a configuration text, and where.
#[derive(Debug, Error)]
#[error("{problem}")]
pub struct ParseError {
    /// Line and column of the key (or value) at fault, inside the text.
    pub location: Location,
    /// The key path at fault, e.g. `token_server.rate_burst`, when known.
    pub key: Option<String>,
    /// What is wrong; its message names the key.
    pub problem: Problem,
}

/// Each kind of configuration error, typed by the section whose rule it breaks.
#[derive(Debug, Error)]
pub enum Problem {
    /// Not YAML, an unknown key, a value of the wrong type, or a value refused by the section that
    /// owns it while it was read (`kdf:`, `pki:`, names): the parser's message, which names the key.
    #[error("{0}")]
    Schema(String),
    /// A `secret_store:` rule.
    #[error(transparent)]
    SecretStore(SecretStoreConfigError),
    /// A `token_server:` rule.
    #[error(transparent)]
    TokenServer(TokenServerConfigError),
    /// The services' selectors, taken together.
    #[error(transparent)]
    Selectors(SelectorsError),
    /// A service's `token:` settings, with its `reuse`, `file_token` and `token_server.max_batch_ttl`.
    #[error(transparent)]
    Token(TokenSettingsError),
    /// Which server is OpenBao: `secret_store`, `pki` and `supervise` taken together.
    #[error(transparent)]
    StoreIdentity(StoreIdentityError),
    /// An `admin:` rule.
    #[error("admin: {0}")]
    Admin(String),
    /// `audit:` broke one of its rules.
    #[error("audit: {0}")]
    Audit(String),
    /// A `metrics:` rule.
    #[error("metrics: {0}")]
    Metrics(String),
    /// A `fleet:` rule.
    #[error(transparent)]
    Fleet(edgeseal_fleet::config::FleetConfigError),
}

impl Problem {
    /// The key path a rule error is about (a schema error's key comes from the parser's message).
    fn key(&self) -> Option<String> {
        match self {
            Problem::Schema(_) => None,
            Problem::SecretStore(e) => Some(e.key()),
            Problem::TokenServer(e) => Some(e.key()),
            Problem::Selectors(e) => Some(e.key()),
            Problem::Token(e) => Some(e.key()),
            Problem::StoreIdentity(e) => Some(e.key()),
            Problem::Admin(_) => Some("admin".into()),
            Problem::Audit(_) => Some("audit".into()),
            Problem::Metrics(_) => Some("metrics.listen".into()),
            Problem::Fleet(e) => Some(e.key()),
        }
    }
}

/// The parser's error as a [`ParseError`]: its location kept inside the text, its message without the
/// trailing "at line N column M" (the location is printed first), and its key path: the parser's path,
/// plus the key written at the error's location (serde names the mapping, not the field, for a value
/// a section refused); for a section-wide rule (located at the section), the key its message names.
fn schema_error(text: &str, error: &serde_yaml_ng::Error) -> ParseError {
    let mut location = error
        .location()
        .map(|l| locate::clamp(text, Location { line: l.line(), column: l.column() }))
        .unwrap_or(Location::START);
    let message = without_positions(&error.to_string());
    let is_path =
        |path: &str| !path.is_empty() && path.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-[]".contains(&b));
    // serde_yaml_ng places a value a section refused at the start of the enclosing mapping, and
    // names that mapping; the message names the key itself.
    let (parent, rest) = match message.split_once(": ") {
        Some((path, rest)) if is_path(path) => (Some(path), rest),
        _ => (None, message.as_str()),
    };
    let join = |field: &str| parent.map_or_else(|| field.to_string(), |parent| format!("{parent}.{field}"));
    let field = ["unknown field `", "missing field `"]
        .iter()
        .find_map(|prefix| rest.strip_prefix(prefix)?.split('`').next())
        .map(join);
    let named = rest
        .split(|c: char| c.is_whitespace() || matches!(c, ':' | ',' | '(' | ')'))
        .find(|word| word.contains('.') && is_path(word) && !word.ends_with('.'))
        .filter(|word| parent.is_none_or(|parent| word.starts_with(&format!("{parent}."))));
    let key = match (field, named) {
        // An unknown field is placed at the key itself.
        (Some(field), _) if rest.starts_with("unknown") => Some(field),
        (Some(key), _) => {
            location = locate::locate(text, &key).unwrap_or(location);
            Some(key)
        }
        (None, Some(key)) => {
            location = locate::locate(text, key).unwrap_or(location);
            Some(key.to_string())
        }
        (None, None) => parent.map(str::to_string),
    };
    ParseError { location, key, problem: Problem::Schema(message) }
}

/// The parser's message without its "at line N column M" parts: the (clamped) location is printed
/// first, and the parser's own can lie one line past the end of the file.
fn without_positions(message: &str) -> String {
    const AT: &str = " at line ";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find(AT) {
        out.push_str(&rest[..i]);
        let after = &rest[i + AT.len()..];
        let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
        let line = digits(after);
        let position = (line > 0)
            .then(|| after[line..].strip_prefix(" column "))
            .flatten()
            .map(|tail| (digits(tail), tail))
            .filter(|(column, _)| *column > 0);
        match position {
            Some((column, tail)) => rest = &tail[column..],
            None => {
                out.push_str(AT);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Which top-level sections the text writes (to tell a written `secret_store:` from its defaults).
#[derive(Deserialize)]
struct Written {
    #[serde(default)]
    secret_store: Option<serde::de::IgnoredAny>,
}

impl Config {
    /// The services as secretstore-setup sees them.
    pub fn service_setups(&self) -> Vec<ServiceSetup> {
        self.services
            .iter()
            .map(|(name, entry)| ServiceSetup {
                name: name.0.clone(),
                secrets: entry.secrets.clone(),
                token: entry.token.clone(),
                file_token: entry.file_token,
                seed_file: entry.seed_file.clone(),
            })
            .collect()
    }

    /// The services as the token server sees them, each with the token role secretstore-setup made
    /// for it.
    pub fn service_rules(&self) -> Vec<ServiceRule> {
        self.services
            .iter()
            .map(|(name, entry)| ServiceRule {
                name: name.0.clone(),
                role: policy::service_role_name(&name.0),
                selectors: entry.selectors.clone(),
                ttl: policy::token_ttl_of(&entry.token),
                reuse: entry.reuse,
                batch: entry.token.is_batch(),
            })
            .collect()
    }

    /// The CA file OpenBao's certificate is verified against: `secret_store.ca_cert`, else the root CA
    /// pki-init makes.
    pub fn ca_cert(&self) -> PathBuf {
        self.secret_store.ca_cert.clone().unwrap_or_else(|| pki_init::layout::ca_cert(&self.pki.dir))
    }

    /// edgeseal's audit log: `audit.file`, else `audit.log` in `keystore.dir`.
    pub fn audit_file(&self) -> PathBuf {
        self.audit.file.clone().unwrap_or_else(|| self.keystore.dir.join("audit.log"))
    }

    /// OpenBao's audit log: `audit.openbao_log`, else a supervised OpenBao's (`audit.log` in its
    /// `data_dir`); unknown for an external store that names none.
    pub fn openbao_audit_log(&self) -> Option<PathBuf> {
        self.audit
            .openbao_log
            .clone()
            .or_else(|| self.secret_store.supervise.as_ref().map(|s| s.data_dir.join(OPENBAO_AUDIT_LOG)))
    }

    /// Reads and checks a configuration file (see [`Config::parse`]).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let read_err = |source| ConfigError::Read { path: path.to_path_buf(), source };
        let meta = std::fs::metadata(path).map_err(read_err)?;
        if meta.len() > MAX_CONFIG_LEN {
            return Err(ConfigError::TooLarge { path: path.to_path_buf() });
        }
        let text = std::fs::read_to_string(path).map_err(read_err)?;
        Self::parse(&text).map_err(|error| ConfigError::Invalid { path: path.to_path_buf(), error: Box::new(error) })
    }

    /// Parses and checks YAML text; an empty document means all defaults. Checks, in order: the
    /// schema and each value (while deserializing), `secret_store:` and `token_server:` rules, the
    /// services' selectors, and which server is OpenBao ([`identity`]; the server pin only when the
    /// text writes a `secret_store:` section — a file for `kdf check` or `keystore` needs none).
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let has_content = text.lines().any(|l| {
            let l = l.trim();
            !l.is_empty() && !l.starts_with('#') && l != "---"
        });
        if !has_content {
            return Ok(Self::default());
        }
        let config: Self = serde_yaml_ng::from_str(text).map_err(|e| schema_error(text, &e))?;
        let written: Written = serde_yaml_ng::from_str(text).map_err(|e| schema_error(text, &e))?;
        config.check(written.secret_store.is_some()).map_err(|problem| {
            let key = problem.key();
            let location = key.as_deref().and_then(|key| locate::locate(text, key)).unwrap_or(Location::START);
            ParseError { location, key, problem }
        })?;
        Ok(config)
    }

    /// The rules serde cannot express, section by section, then across sections.
    fn check(&self, store_written: bool) -> Result<(), Problem> {
        self.secret_store.validate().map_err(Problem::SecretStore)?;
        self.token_server.validate().map_err(Problem::TokenServer)?;
        self.admin.validate().map_err(Problem::Admin)?;
        self.audit.validate().map_err(Problem::Audit)?;
        if self.admin.socket == self.token_server.socket {
            return Err(Problem::Admin(format!(
                "socket {} is also token_server.socket: the admin socket needs a path of its own",
                self.admin.socket.display()
            )));
        }
        self.metrics.validate().map_err(Problem::Metrics)?;
        if let Some(fleet) = &self.fleet {
            fleet.validate().map_err(Problem::Fleet)?;
        }
        for (name, entry) in &self.services {
            entry
                .token
                .validate(&name.0, entry.reuse, entry.file_token.is_some(), self.token_server.max_batch_ttl)
                .map_err(Problem::Token)?;
        }
        token_server::config::check_selectors(
            self.services.iter().map(|(name, entry)| (name.0.as_str(), &entry.selectors)),
        )
        .map_err(Problem::Selectors)?;
        identity::check(self, store_written).map_err(Problem::StoreIdentity)
    }

    /// Which OpenBao certificate is pinned: `secret_store.server_cert`, else OpenBao's leaf from
    /// pki-init (`pki.dir/openbao/cert.pem`). A store without either is refused: the device CA alone
    /// does not tell OpenBao from any other holder of one of its leaves (`ca-only` says it does).
    /// Checked when a file with a `secret_store:` section is loaded.
    pub fn server_pin(&self) -> Result<openbao_client::Pin, StoreIdentityError> {
        let pin = identity::server_pin(self)?;
        if pin == openbao_client::Pin::CaOnly {
            tracing::warn!(
                "secret_store.server_cert is ca-only: any certificate {} issues for {} is taken for OpenBao",
                self.ca_cert().display(),
                self.secret_store.address
            );
        }
        Ok(pin)
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
