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
        config.check_store_address_leaves().map_err(|message| (None, message))?;
        Ok(config)
    }

    /// Only OpenBao's own leaf may cover the host of `secret_store.address`: any other leaf the device
    /// CA issues for it would let its holder answer in OpenBao's place while OpenBao is down.
    fn check_store_address_leaves(&self) -> Result<(), String> {
        let address = &self.secret_store.address;
        let host = openbao_client::address_host(address).map_err(|e| format!("secret_store.address: {e}"))?;
        let pinned_leaf = |name: &str| match &self.secret_store.server_cert {
            Some(openbao_client::Pin::ServerCert(path)) => *path == self.pki.dir.join(name).join("cert.pem"),
            _ => false,
        };
        let others: Vec<String> = pki_init::leaves_covering(&self.pki, &host)
            .into_iter()
            .map(|name| name.as_str())
            .filter(|name| *name != crate::commands::run::OPENBAO_CERT && !pinned_leaf(name))
            .map(|name| format!("pki.certs.{name}"))
            .collect();
        if others.is_empty() {
            return Ok(());
        }
        Err(format!(
            "{}: SANs cover {host}, the host of secret_store.address ({address}); whoever holds such a leaf could pose as OpenBao. Remove {host} from their sans: only pki.certs.{} may cover the store's address",
            others.join(", "),
            crate::commands::run::OPENBAO_CERT
        ))
    }

    /// Which OpenBao certificate is pinned: `secret_store.server_cert`, else OpenBao's leaf from
    /// pki-init (`pki.dir/openbao/cert.pem`). A store without either is refused: the device CA alone
    /// does not tell OpenBao from any other holder of one of its leaves (`ca-only` says it does).
    pub fn server_pin(&self) -> Result<openbao_client::Pin, crate::UsageError> {
        use openbao_client::Pin;
        let name = crate::commands::run::OPENBAO_CERT;
        let leaf = self.pki.certs.contains_key(name).then(|| Pin::ServerCert(self.pki.dir.join(name).join("cert.pem")));
        match (&self.secret_store.server_cert, leaf, &self.secret_store.supervise) {
            (Some(pin), Some(leaf), Some(_)) if *pin != leaf => Err(crate::UsageError(format!(
                "secret_store.server_cert: a supervised OpenBao serves pki.certs.{name}, and is pinned to it; remove server_cert"
            ))),
            (Some(pin), _, _) => {
                if *pin == Pin::CaOnly {
                    tracing::warn!(
                        "secret_store.server_cert is ca-only: any certificate {} issues for {} is taken for OpenBao",
                        self.ca_cert().display(),
                        self.secret_store.address
                    );
                }
                Ok(pin.clone())
            }
            (None, Some(leaf), _) => Ok(leaf),
            (None, None, _) => Err(crate::UsageError(format!(
                "secret_store.server_cert is required when pki.certs.{name} does not exist: give the path of OpenBao's certificate (PEM) so that only OpenBao receives unseal shares, or `ca-only` if {} is a CA that issues no certificate but OpenBao's",
                self.ca_cert().display()
            ))),
        }
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
    fn a_leaf_covering_the_store_address_other_than_openbaos_is_refused() {
        let yaml = |address: &str, certs: &str| {
            format!("secret_store:\n  address: {address}\npki:\n  certs:\n    openbao: {{ sans: [127.0.0.1, localhost] }}\n{certs}")
        };
        let cases = [
            (
                "https://127.0.0.1:8200",
                "    rogue: { sans: [127.0.0.1] }\n",
                Some("pki.certs.rogue: SANs cover 127.0.0.1"),
            ),
            ("https://localhost:8200", "    web: { sans: [LOCALHOST] }\n", Some("pki.certs.web: SANs cover localhost")),
            ("https://bao.edge.local:8200", "    any: { sans: [\"*.edge.local\"] }\n", Some("pki.certs.any")),
            ("https://127.0.0.1:8200", "    client: { sans: [127.0.0.1], usages: [client] }\n", None),
            ("https://127.0.0.1:8200", "    svc: { sans: [svc, 10.0.0.5] }\n", None),
            (
                "https://10.0.0.5:8200",
                "    svc: { sans: [svc, 10.0.0.5] }\n",
                Some("host of secret_store.address (https://10.0.0.5:8200)"),
            ),
        ];
        for (address, certs, want) in cases {
            let parsed = Config::parse(&yaml(address, certs));
            match want {
                Some(want) => {
                    let (_, message) = parsed.unwrap_err();
                    assert!(
                        message.contains(want) && message.contains("pose as OpenBao"),
                        "{address} {certs}: {message}"
                    );
                }
                None => {
                    parsed.unwrap();
                }
            }
        }
    }

    #[test]
    fn the_pin_is_openbaos_leaf_or_explicit() {
        use openbao_client::Pin;
        let with_leaf = Config::parse("pki:\n  dir: /p\n  certs:\n    openbao: { sans: [127.0.0.1] }\n").unwrap();
        assert_eq!(with_leaf.server_pin().unwrap(), Pin::ServerCert("/p/openbao/cert.pem".into()));
        let external = Config::parse("secret_store:\n  address: https://bao.example:8200\n").unwrap();
        let err = external.server_pin().unwrap_err().to_string();
        assert!(err.contains("secret_store.server_cert is required") && err.contains("ca-only"), "{err}");
        let ca_only = Config::parse("secret_store:\n  server_cert: ca-only\n").unwrap();
        assert_eq!(ca_only.server_pin().unwrap(), Pin::CaOnly);
        let explicit = Config::parse("secret_store:\n  server_cert: /etc/bao/cert.pem\n").unwrap();
        assert_eq!(explicit.server_pin().unwrap(), Pin::ServerCert("/etc/bao/cert.pem".into()));
        let supervised_elsewhere = Config::parse(
            "pki:\n  certs:\n    openbao: { sans: [127.0.0.1] }\nsecret_store:\n  server_cert: ca-only\n  supervise: { binary: /b, data_dir: /d }\n",
        )
        .unwrap();
        let err = supervised_elsewhere.server_pin().unwrap_err().to_string();
        assert!(err.contains("a supervised OpenBao serves pki.certs.openbao"), "{err}");
        let (_, err) = Config::parse("secret_store:\n  server_cert: relative/cert.pem\n").unwrap_err();
        assert!(err.contains("neither an absolute path"), "{err}");
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
