//! `edgeseal.yaml`: one file composed of the sections each library owns.
//!
//! Unknown keys are errors; every error names the file, the line and column, and the key.

use std::path::{Path, PathBuf};

use kdf_plugins::KdfConfig;
use secretstore_setup::KeystoreConfig;
use serde::Deserialize;
use thiserror::Error;

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
        serde_yaml_ng::from_str(text).map_err(|e| {
            let location = e.location().map(|l| (l.line(), l.column()));
            (location, e.to_string())
        })
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
