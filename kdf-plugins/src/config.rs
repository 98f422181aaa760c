//! The `kdf:` section of `edgeseal.yaml`.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Where the shipped hardware-fingerprint plug-in is installed.
pub const DEFAULT_PLUGIN: &str = "/usr/libexec/edgeseal/edgeseal-kdf-hwfp";

/// The longest timeout a configuration may ask for.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);

/// How edgeseal talks to a KDF plug-in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum Protocol {
    /// `PLUGIN ikm-v1 [ARGS…]`: edgeseal's versioned protocol.
    #[default]
    #[serde(rename = "ikm-v1")]
    IkmV1,
    /// `PLUGIN` with no arguments, exactly like EdgeX's `EDGEX_IKM_HOOK`.
    #[serde(rename = "edgex")]
    Edgex,
}

impl Protocol {
    /// The word passed as the first argument, if the protocol has one.
    pub fn entry_word(self) -> Option<&'static str> {
        match self {
            Protocol::IkmV1 => Some("ikm-v1"),
            Protocol::Edgex => None,
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::IkmV1 => "ikm-v1",
            Protocol::Edgex => "edgex",
        })
    }
}

/// Which plug-in to run and how. Deserializing validates it (see [`KdfConfig::validate`]); it
/// serializes to the same keys.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "KdfFields")]
pub struct KdfConfig {
    /// Absolute path of the plug-in executable; never looked up in `$PATH`.
    pub plugin: PathBuf,
    /// Arguments appended after the protocol word (`ikm-v1` only).
    pub args: Vec<String>,
    /// `ikm-v1` (default) or `edgex`.
    pub protocol: Protocol,
    /// Hard limit on the plug-in's run time; it is killed after that.
    #[serde(serialize_with = "humantime_serde::serialize")]
    pub timeout: Duration,
}

/// The `kdf:` keys as written, before validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KdfFields {
    /// Absolute path of the plug-in executable; never looked up in `$PATH`.
    #[serde(default = "default_plugin", deserialize_with = "absolute_path")]
    plugin: PathBuf,
    /// Arguments appended after the protocol word (`ikm-v1` only).
    #[serde(default)]
    args: Vec<String>,
    /// `ikm-v1` (default) or `edgex`.
    #[serde(default)]
    protocol: Protocol,
    /// Hard limit on the plug-in's run time; it is killed after that.
    #[serde(default = "default_timeout", deserialize_with = "bounded_timeout")]
    timeout: Duration,
}

/// Field-level checks, so that a YAML error points at the offending value.
fn absolute_path<'de, D: serde::Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    let path = PathBuf::deserialize(d)?;
    if !path.is_absolute() {
        return Err(serde::de::Error::custom(KdfConfigError::RelativePlugin(path)));
    }
    Ok(path)
}

fn bounded_timeout<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let timeout: Duration = humantime_serde::deserialize(d)?;
    if timeout.is_zero() || timeout > MAX_TIMEOUT {
        return Err(serde::de::Error::custom(KdfConfigError::Timeout(timeout)));
    }
    Ok(timeout)
}

fn default_plugin() -> PathBuf {
    PathBuf::from(DEFAULT_PLUGIN)
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

impl TryFrom<KdfFields> for KdfConfig {
    type Error = KdfConfigError;

    fn try_from(f: KdfFields) -> Result<Self, Self::Error> {
        let config = KdfConfig { plugin: f.plugin, args: f.args, protocol: f.protocol, timeout: f.timeout };
        config.validate()?;
        Ok(config)
    }
}

impl Default for KdfConfig {
    fn default() -> Self {
        Self { plugin: default_plugin(), args: Vec::new(), protocol: Protocol::default(), timeout: default_timeout() }
    }
}

/// A `kdf:` section that parsed but cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum KdfConfigError {
    /// `kdf.plugin` is relative.
    #[error("kdf.plugin must be an absolute path, got {0:?} (plug-ins are never looked up in $PATH)")]
    RelativePlugin(PathBuf),
    /// `kdf.timeout` is zero or too long.
    #[error("kdf.timeout must be between 1ms and {}, got {}", humantime::format_duration(MAX_TIMEOUT), humantime::format_duration(*.0))]
    Timeout(Duration),
    /// `kdf.args` with `protocol: edgex`, which passes no arguments.
    #[error("kdf.args cannot be used with protocol edgex: EdgeX hooks are run with no arguments")]
    ArgsWithEdgex,
}

impl KdfConfig {
    /// Checks what serde cannot: an absolute path, a sane timeout, no args for EdgeX hooks.
    pub fn validate(&self) -> Result<(), KdfConfigError> {
        if !self.plugin.is_absolute() {
            return Err(KdfConfigError::RelativePlugin(self.plugin.clone()));
        }
        if self.timeout.is_zero() || self.timeout > MAX_TIMEOUT {
            return Err(KdfConfigError::Timeout(self.timeout));
        }
        if self.protocol == Protocol::Edgex && !self.args.is_empty() {
            return Err(KdfConfigError::ArgsWithEdgex);
        }
        Ok(())
    }
}
