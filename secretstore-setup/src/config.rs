//! The `keystore:` section of `edgeseal.yaml`.

use std::path::PathBuf;

use serde::Deserialize;

/// Default keystore directory: persistent, root-only.
pub const DEFAULT_DIR: &str = "/var/lib/edgeseal";

/// Where the keystore lives.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeystoreConfig {
    /// Directory holding `keystore.json`; created 0700. Must survive reboots.
    #[serde(default = "default_dir")]
    pub dir: PathBuf,
}

fn default_dir() -> PathBuf {
    PathBuf::from(DEFAULT_DIR)
}

impl Default for KeystoreConfig {
    fn default() -> Self {
        Self { dir: default_dir() }
    }
}
