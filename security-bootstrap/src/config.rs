//! `edgeseal.yaml`: one file composed of the sections each library owns.
//!
//! Unknown keys are errors; every error names the file, the line and column, and the key.

use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use kdf_plugins::KdfConfig;
use secretstore_setup::config::{
    valid_segment, FileTokenOwner, FileTokensConfig, SecretStoreConfig, ServiceSetup, TokenSettings,
};
use secretstore_setup::KeystoreConfig;
use serde::{Deserialize, Deserializer};
use thiserror::Error;
use token_server::config::{Selectors, ServerConfig, ServiceRule};

/// Where pki-init puts the root CA by default; OpenBao's certificate must chain to it.
#[cfg(test)]
const DEFAULT_CA_CERT: &str = "/run/edgeseal/pki/ca/ca.pem";

/// Largest configuration file accepted.
const MAX_CONFIG_LEN: u64 = 1024 * 1024;

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
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

/// One entry of `services:`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceEntry {
    /// How the token server recognises the service's processes; all selectors given must match.
    #[serde(default)]
    pub selectors: Selectors,
    /// Secrets generated once and stored in KV under the service's path.
    #[serde(default, deserialize_with = "secret_names")]
    pub secrets: Vec<String>,
    /// Token TTL and period.
    #[serde(default)]
    pub token: TokenSettings,
    /// Also write the file-token fallback, owned by this uid/gid.
    #[serde(default)]
    pub file_token: Option<FileTokenOwner>,
    /// Hand all callers of this service one shared, renewed token (token server).
    #[serde(default)]
    pub reuse: bool,
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
    /// YAML that does not match the schema.
    #[error("config {path}{}: {message}", location.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Line and column, when known.
        location: Option<(usize, usize)>,
        /// serde's message, which names the key path.
        message: String,
    },
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
            })
            .collect()
    }

    /// The services as the token server sees them.
    pub fn service_rules(&self) -> Vec<ServiceRule> {
        self.services
            .iter()
            .map(|(name, entry)| ServiceRule {
                name: name.0.clone(),
                selectors: entry.selectors.clone(),
                ttl: if entry.token.period.is_some() { None } else { Some(entry.token.ttl) },
                reuse: entry.reuse,
            })
            .collect()
    }

    /// The CA file OpenBao's certificate is verified against: `secret_store.ca_cert`, else the root CA
    /// pki-init makes.
    pub fn ca_cert(&self) -> PathBuf {
        self.secret_store.ca_cert.clone().unwrap_or_else(|| self.pki.dir.join("ca/ca.pem"))
    }

    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let read_err = |source| ConfigError::Read { path: path.to_path_buf(), source };
        let meta = std::fs::metadata(path).map_err(read_err)?;
        if meta.len() > MAX_CONFIG_LEN {
            return Err(ConfigError::TooLarge { path: path.to_path_buf() });
        }
        let text = std::fs::read_to_string(path).map_err(read_err)?;
        Self::parse(&text).map_err(|(location, message)| ConfigError::Invalid {
            path: path.to_path_buf(),
            location,
            message,
        })
    }

    /// Parses YAML text; an empty document means all defaults.
    pub fn parse(text: &str) -> Result<Self, (Option<(usize, usize)>, String)> {
        let has_content = text.lines().any(|l| {
            let l = l.trim();
            !l.is_empty() && !l.starts_with('#') && l != "---"
        });
        if !has_content {
            return Ok(Self::default());
        }
        let config: Self = serde_yaml_ng::from_str(text).map_err(|e| {
            let location = e.location().map(|l| (l.line(), l.column()));
            (location, e.to_string())
        })?;
        config.check_selectors().map_err(|message| (None, message))?;
        Ok(config)
    }

    /// The selector rules of [`token_server::config::check_selectors`]: a `unix` selector says who
    /// runs the process (uid or systemd_unit), a `docker` selector is never empty, and no two services
    /// can be matched by the same process (a process of one could exec the other's binary).
    fn check_selectors(&self) -> Result<(), String> {
        token_server::config::check_selectors(
            self.services.iter().map(|(name, entry)| (name.0.as_str(), &entry.selectors)),
        )
        .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_config_parses() {
        let text = include_str!("../../edgeseal.example.yaml");
        let config = Config::parse(text).unwrap();
        assert_eq!(config.kdf.plugin, Path::new("/usr/libexec/edgeseal/edgeseal-kdf-hwfp"));
        assert_eq!(config.keystore.dir, Path::new("/var/lib/edgeseal"));
        let services = config.service_setups();
        assert_eq!(services.len(), 2);
        let core = services.iter().find(|s| s.name == "core-data").unwrap();
        assert_eq!(core.secrets, ["redis-password"]);
        assert_eq!(core.file_token.map(|o| (o.uid, o.gid)), Some((2002, 2001)));
        assert_eq!(core.token.period, Some(std::time::Duration::from_secs(3600)));
        let defaults = SecretStoreConfig { ca_cert: Some(DEFAULT_CA_CERT.into()), ..SecretStoreConfig::default() };
        assert_eq!(config.secret_store, defaults, "the reference shows the defaults");
    }

    #[test]
    fn service_and_secret_names_are_checked() {
        let (location, message) = Config::parse(
            "services:
  Core Data: {}
",
        )
        .unwrap_err();
        assert!(message.contains("service name \"Core Data\" is not valid"), "{message}");
        assert_eq!(location.map(|l| l.0), Some(2));
        let (_, message) = Config::parse(
            "services:
  a:
    secrets: [\"../b\"]
",
        )
        .unwrap_err();
        assert!(message.contains("secret name \"../b\" is not valid"), "{message}");
        let (_, message) = Config::parse(
            "secret_store:
  kv_mount: \"sys\"
  extra: 1
",
        )
        .unwrap_err();
        assert!(message.contains("unknown field `extra`"), "{message}");
    }

    #[test]
    fn the_host_install_example_parses() {
        let config = Config::parse(include_str!("../../packaging/edgeseal.host.yaml")).unwrap();
        assert!(config.secret_store.supervise.is_some());
        assert_eq!(config.service_rules().len(), 2);
    }

    #[test]
    fn a_unix_selector_must_name_who_runs_the_process() {
        let (_, message) =
            Config::parse("services:\n  a:\n    selectors:\n      unix: { path: /usr/bin/a }\n").unwrap_err();
        assert!(message.contains("services.a.selectors.unix: give uid"), "{message}");
        Config::parse("services:\n  a:\n    selectors:\n      unix: { uid: 998, path: /usr/bin/a }\n").unwrap();
    }

    #[test]
    fn selector_rules_are_checked_when_the_config_is_loaded() {
        let cases = [
            (
                "services:\n  a:\n    selectors:\n      unix: { uid: 998, path: /usr/bin/a }\n  b:\n    selectors:\n      unix: { uid: 998, path: /usr/bin/b }\n",
                "services a and b could both match a process of uid 998",
            ),
            ("services:\n  a:\n    selectors:\n      docker: {}\n", "services.a.selectors.docker is empty"),
            ("services:\n  a:\n    selectors:\n      docker: { labels: {} }\n", "would match every container"),
        ];
        for (text, want) in cases {
            let (_, message) = Config::parse(text).unwrap_err();
            assert!(message.contains(want), "{text}: {message}");
        }
        let separated = "services:\n  a:\n    selectors:\n      unix: { uid: 998, path: /usr/bin/a, systemd_unit: a.service }\n  b:\n    selectors:\n      unix: { uid: 998, path: /usr/bin/b, systemd_unit: b.service }\n  c:\n    file_token: { uid: 2002, gid: 2002 }\n";
        Config::parse(separated).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("edgeseal.yaml");
        std::fs::write(&path, cases[0].0).unwrap();
        let error = Config::load(&path).unwrap_err();
        assert!(matches!(error, ConfigError::Invalid { .. }), "a config error, exit 64: {error}");
    }

    #[test]
    fn empty_means_defaults() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
        assert_eq!(Config::parse("# nothing\n---\n").unwrap(), Config::default());
    }

    #[test]
    fn errors_name_the_line_column_and_key() {
        let cases = [
            ("kdf:\n  plugin: /x\n  plugins: 1\n", (3, 3), "kdf: unknown field `plugins`"),
            ("keystore:\n  dir: /x\nkfd: {}\n", (3, 1), "unknown field `kfd`"),
            ("kdf:\n  plugin: relative/path\n", (2, 3), "kdf.plugin must be an absolute path"),
            ("kdf:\n  timeout: 0s\n", (2, 3), "kdf.timeout must be between"),
            ("kdf:\n  timeout: soon\n", (2, 12), "kdf.timeout"),
            ("kdf:\n  protocol: ikm-v2\n", (2, 13), "unknown variant `ikm-v2`"),
            ("kdf:\n  protocol: edgex\n  args: [x]\n", (1, 1), "kdf.args cannot be used with protocol edgex"),
        ];
        for (text, (line, column), want) in cases {
            let (location, message) = Config::parse(text).unwrap_err();
            assert!(message.contains(want), "{text:?}: {message}");
            assert_eq!(location.map(|l| l.0), Some(line), "{text:?}: {message}");
            let _ = column; // serde_yaml_ng reports the column of the enclosing mapping for validation errors
        }
    }
}
