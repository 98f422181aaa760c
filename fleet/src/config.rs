//! `fleet:` in edgeseal.yaml (SPEC §14): where the central store is, which org key signs, how often
//! the node syncs. The fleet crate owns this section; `security-bootstrap` composes it into the file
//! and reports a broken rule with its line and column.

use std::path::PathBuf;
use std::time::Duration;

use edgeseal_bundle::SignerKey;
use serde::{Deserialize, Serialize};

use crate::layout::{valid_segment, Layout, DEFAULT_CERT_MOUNT, DEFAULT_MOUNT};

/// The default interval between two syncs.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(300);
/// The shortest interval accepted (a node that syncs faster only loads the central store).
pub const MIN_SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// `fleet:` — the node side of a fleet.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    /// The central OpenBao, `https://HOST:PORT`.
    pub address: String,
    /// The CA certificate(s) the central store's TLS certificate chains to (absolute path).
    pub ca_cert: PathBuf,
    /// The org signing public key (`ed25519:…`, as `fleet org-key new` prints it): the only signer
    /// whose records the node accepts.
    pub org_public_key: String,
    /// How often the node syncs (humantime: `5m`, `30s`).
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub sync_interval: Duration,
    /// The fleet's KV v2 mount in the central store.
    #[serde(default = "default_mount")]
    pub mount: String,
    /// The `cert` auth mount the node logs in with.
    #[serde(default = "default_cert_mount")]
    pub cert_mount: String,
}

fn default_interval() -> Duration {
    DEFAULT_SYNC_INTERVAL
}

fn default_mount() -> String {
    DEFAULT_MOUNT.into()
}

fn default_cert_mount() -> String {
    DEFAULT_CERT_MOUNT.into()
}

/// A `fleet:` rule broken; [`FleetConfigError::key`] names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FleetConfigError {
    /// `address` is not `https://HOST:PORT`.
    #[error("fleet.address {0:?} is not https://HOST:PORT (the central OpenBao)")]
    Address(String),
    /// `ca_cert` is not an absolute path.
    #[error("fleet.ca_cert {0} must be an absolute path (the central store's CA certificate)")]
    CaCert(PathBuf),
    /// `org_public_key` is not an org signing key.
    #[error("fleet.org_public_key is not an org signing key (`ed25519:…`, as `security-bootstrap fleet org-key new` prints it): {0}")]
    OrgKey(String),
    /// `sync_interval` is too short.
    #[error("fleet.sync_interval must be at least {}s", MIN_SYNC_INTERVAL.as_secs())]
    Interval,
    /// `mount` or `cert_mount` is not one path segment.
    #[error("fleet.{key} {value:?} is not valid: 1-128 of [A-Za-z0-9._-], not '.' or '..'")]
    Mount {
        /// `mount` or `cert_mount`.
        key: &'static str,
        /// The refused value.
        value: String,
    },
}

impl FleetConfigError {
    /// The key path at fault (`fleet.address`, …).
    pub fn key(&self) -> String {
        match self {
            Self::Address(_) => "fleet.address".into(),
            Self::CaCert(_) => "fleet.ca_cert".into(),
            Self::OrgKey(_) => "fleet.org_public_key".into(),
            Self::Interval => "fleet.sync_interval".into(),
            Self::Mount { key, .. } => format!("fleet.{key}"),
        }
    }
}

impl FleetConfig {
    /// The rules beyond the types.
    pub fn validate(&self) -> Result<(), FleetConfigError> {
        openbao_client::address_host(&self.address).map_err(|_| FleetConfigError::Address(self.address.clone()))?;
        if !self.ca_cert.is_absolute() {
            return Err(FleetConfigError::CaCert(self.ca_cert.clone()));
        }
        self.org_key()?;
        if self.sync_interval < MIN_SYNC_INTERVAL {
            return Err(FleetConfigError::Interval);
        }
        for (key, value) in [("mount", &self.mount), ("cert_mount", &self.cert_mount)] {
            if !valid_segment(value) {
                return Err(FleetConfigError::Mount { key, value: value.clone() });
            }
        }
        Ok(())
    }

    /// The org signing public key.
    pub fn org_key(&self) -> Result<SignerKey, FleetConfigError> {
        self.org_public_key.trim().parse::<SignerKey>().map_err(|e| FleetConfigError::OrgKey(e.to_string()))
    }

    /// The central layout these mounts name.
    pub fn layout(&self) -> Layout {
        Layout { mount: self.mount.clone(), cert_mount: self.cert_mount.clone() }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn config(org: &str) -> FleetConfig {
        FleetConfig {
            address: "https://10.0.0.1:8200".into(),
            ca_cert: "/etc/edgeseal/fleet-ca.pem".into(),
            org_public_key: org.into(),
            sync_interval: DEFAULT_SYNC_INTERVAL,
            mount: DEFAULT_MOUNT.into(),
            cert_mount: DEFAULT_CERT_MOUNT.into(),
        }
    }

    #[test]
    fn each_rule_names_its_key() {
        let org = crate::OrgKey::generate().unwrap().public().to_string();
        assert_eq!(config(&org).validate(), Ok(()));
        type Break = fn(&mut FleetConfig);
        let cases: [(Break, &str); 6] = [
            (|c| c.address = "http://10.0.0.1:8200".into(), "fleet.address"),
            (|c| c.ca_cert = "ca.pem".into(), "fleet.ca_cert"),
            (|c| c.org_public_key = "age1xyz".into(), "fleet.org_public_key"),
            (|c| c.sync_interval = Duration::from_millis(10), "fleet.sync_interval"),
            (|c| c.mount = "a/b".into(), "fleet.mount"),
            (|c| c.cert_mount = "..".into(), "fleet.cert_mount"),
        ];
        for (break_it, key) in cases {
            let mut c = config(&org);
            break_it(&mut c);
            assert_eq!(c.validate().unwrap_err().key(), key);
        }
    }
}
