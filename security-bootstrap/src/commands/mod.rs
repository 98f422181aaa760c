//! One module per command. Each writes a human report to `out` and never prints a secret.

pub mod audit;
pub mod bundles;
pub mod cluster;
pub mod device;
pub mod fleet;
pub mod fleet_node;
pub mod gate;
pub mod import_edgex;
pub mod inspect;
pub mod kdf_check;
pub mod pki;
pub mod rekey;
pub mod restore;
pub mod rewrap;
pub mod run;
pub mod seal;
pub mod secrets;
pub mod setup;
pub mod status;
pub mod token;
pub mod token_server;

use std::path::{Path, PathBuf};
use std::time::Duration;

use kdf_plugins::{KdfConfig, Protocol};
use secretstore_setup::KeystoreConfig;

use crate::cli::ProtocolArg;
use crate::config::Config;

/// The plug-in and keystore settings a command works with, from flags or from `--config`.
pub(crate) struct Settings {
    pub(crate) kdf: Option<KdfConfig>,
    pub(crate) keystore: KeystoreConfig,
}

impl Settings {
    /// From `--config FILE`.
    pub(crate) fn from_config(path: &Path) -> anyhow::Result<Self> {
        let config = Config::load(path)?;
        Ok(Self { kdf: Some(config.kdf), keystore: config.keystore })
    }

    /// From `--dir` and `--kdf-plugin`/`--kdf-protocol`.
    pub(crate) fn from_flags(
        dir: Option<&PathBuf>,
        plugin: Option<&PathBuf>,
        protocol: Option<ProtocolArg>,
    ) -> anyhow::Result<Self> {
        let kdf = plugin.map(|p| plugin_config(p, protocol, None, Vec::new())).transpose()?;
        let keystore = KeystoreConfig { dir: dir.cloned().unwrap_or_else(|| KeystoreConfig::default().dir) };
        Ok(Self { kdf, keystore })
    }
}

/// A validated plug-in configuration from command-line flags.
pub(crate) fn plugin_config(
    plugin: &Path,
    protocol: Option<ProtocolArg>,
    timeout: Option<Duration>,
    args: Vec<String>,
) -> anyhow::Result<KdfConfig> {
    let defaults = KdfConfig::default();
    let config = KdfConfig {
        plugin: plugin.to_path_buf(),
        args,
        protocol: protocol.map(Protocol::from).unwrap_or(defaults.protocol),
        timeout: timeout.unwrap_or(defaults.timeout),
    };
    config.validate()?;
    Ok(config)
}
