//! The rules that span `secret_store:` and `pki:`: which server is OpenBao. Unseal shares and the
//! issuing token go only to a server that proves to be OpenBao, so no other leaf of the device CA may
//! cover the store's address, and the store's certificate is pinned (pure).

use std::path::PathBuf;

use openbao_client::Pin;
use pki_init::layout::{self, OPENBAO};
use thiserror::Error;

use super::Config;

/// A configuration that would let something other than OpenBao pass for it. A config error (exit 64).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StoreIdentityError {
    /// Leaves other than OpenBao's cover the host of `secret_store.address`.
    #[error("{}: SANs cover {host}, the host of secret_store.address ({address}); whoever holds such a leaf could pose as OpenBao. Remove {host} from their sans: only pki.certs.{OPENBAO} may cover the store's address", leaves.iter().map(|l| format!("pki.certs.{l}")).collect::<Vec<_>>().join(", "))]
    LeafCoversStoreAddress {
        /// The leaves, by name.
        leaves: Vec<String>,
        /// The host they cover.
        host: String,
        /// `secret_store.address`.
        address: String,
    },
    /// `secret_store.supervise` without `pki.certs.openbao` for its TLS listener.
    #[error("secret_store.supervise: a supervised OpenBao needs a TLS certificate: add pki.certs.{OPENBAO} with sans [{host}]")]
    SupervisedWithoutLeaf {
        /// The host of `secret_store.address`.
        host: String,
    },
    /// A supervised OpenBao pinned to something other than the leaf it serves.
    #[error("secret_store.server_cert: a supervised OpenBao serves pki.certs.{OPENBAO}, and is pinned to it; remove server_cert")]
    SupervisedPinnedElsewhere,
    /// Neither `secret_store.server_cert` nor `pki.certs.openbao`.
    #[error("secret_store.server_cert is required when pki.certs.{OPENBAO} does not exist: give the path of OpenBao's certificate (PEM) so that only OpenBao receives unseal shares, or `ca-only` if {} is a CA that issues no certificate but OpenBao's", ca_cert.display())]
    PinRequired {
        /// The CA OpenBao is verified against.
        ca_cert: PathBuf,
    },
}

impl StoreIdentityError {
    /// The key the error is about, e.g. `pki.certs.rogue.sans`.
    pub fn key(&self) -> String {
        match self {
            Self::LeafCoversStoreAddress { leaves, .. } => {
                leaves.first().map_or_else(|| "pki.certs".to_string(), |leaf| format!("pki.certs.{leaf}.sans"))
            }
            Self::SupervisedWithoutLeaf { .. } => "secret_store.supervise".into(),
            Self::SupervisedPinnedElsewhere | Self::PinRequired { .. } => "secret_store.server_cert".into(),
        }
    }
}

/// All the rules; the pin only when the file writes a `secret_store:` section.
pub(super) fn check(config: &Config, store_written: bool) -> Result<(), StoreIdentityError> {
    store_address_leaves(config)?;
    supervised_leaf(config)?;
    if store_written {
        server_pin(config)?;
    }
    Ok(())
}

/// Only OpenBao's own leaf may cover the host of `secret_store.address`: any other leaf the device
/// CA issues for it would let its holder answer in OpenBao's place while OpenBao is down.
fn store_address_leaves(config: &Config) -> Result<(), StoreIdentityError> {
    let address = &config.secret_store.address;
    // An unusable address is `secret_store.address`'s own error, reported before this rule runs.
    let Ok(host) = openbao_client::address_host(address) else { return Ok(()) };
    let pinned_leaf = |name: &str| match &config.secret_store.server_cert {
        Some(Pin::ServerCert(path)) => *path == layout::leaf_cert(&config.pki.dir, name),
        _ => false,
    };
    let leaves: Vec<String> = pki_init::leaves_covering(&config.pki, &host)
        .into_iter()
        .map(|name| name.as_str())
        .filter(|name| *name != OPENBAO && !pinned_leaf(name))
        .map(str::to_string)
        .collect();
    if leaves.is_empty() {
        return Ok(());
    }
    Err(StoreIdentityError::LeafCoversStoreAddress { leaves, host, address: address.clone() })
}

/// A supervised OpenBao serves `pki.certs.openbao`.
fn supervised_leaf(config: &Config) -> Result<(), StoreIdentityError> {
    if config.secret_store.supervise.is_none() || config.pki.certs.contains_key(OPENBAO) {
        return Ok(());
    }
    let host = openbao_client::address_host(&config.secret_store.address).unwrap_or_default();
    Err(StoreIdentityError::SupervisedWithoutLeaf { host })
}

/// See [`Config::server_pin`] (which also warns about `ca-only`).
pub(super) fn server_pin(config: &Config) -> Result<Pin, StoreIdentityError> {
    let store = &config.secret_store;
    let leaf =
        config.pki.certs.contains_key(OPENBAO).then(|| Pin::ServerCert(layout::leaf_cert(&config.pki.dir, OPENBAO)));
    match (&store.server_cert, leaf, &store.supervise) {
        (Some(pin), Some(leaf), Some(_)) if *pin != leaf => Err(StoreIdentityError::SupervisedPinnedElsewhere),
        (Some(pin), _, _) => Ok(pin.clone()),
        (None, Some(leaf), _) => Ok(leaf),
        (None, None, _) => Err(StoreIdentityError::PinRequired { ca_cert: config.ca_cert() }),
    }
}
