//! The admin server's access to this device's keystore ([`token_server::admin::device::Device`]):
//! the node identity and backups. Each call runs the KDF plug-in and opens the keystore afresh, so
//! nothing private stays in the server's memory between requests.

use edgeseal_bundle::{kind, NodeKeys, NodePublic, Recipient};
use kdf_plugins::{KdfConfig, Kek};
use secretstore_setup::backup::Backup;
use secretstore_setup::identity::{self, NodeIdentity};
use secretstore_setup::KeystoreDir;
use token_server::admin::device::Device;

/// The keystore of this device, opened on demand.
#[derive(Debug, Clone)]
pub struct KeystoreDevice {
    /// The KDF plug-in.
    pub kdf: KdfConfig,
    /// The keystore.
    pub store: KeystoreDir,
    /// The effective configuration (its SHA-256 goes into backups).
    pub config: Vec<u8>,
}

impl KeystoreDevice {
    /// The KEK (the plug-in runs), and the node identity: made and stored first if the keystore has
    /// none (and the keystore itself, if there is none yet).
    pub fn identity(&self) -> anyhow::Result<(Kek, NodeIdentity)> {
        let ikm = kdf_plugins::run_plugin(&self.kdf)?;
        Ok(identity::ensure_with_ikm(&self.store, &ikm)?)
    }
}

impl Device for KeystoreDevice {
    fn node(&self) -> Result<(NodeKeys, NodePublic), String> {
        let (_, identity) = self.identity().map_err(|e| format!("{e:#}"))?;
        let public = identity.public();
        Ok((identity.keys, public))
    }

    fn backup(&self, snapshot: Vec<u8>, recipients: &[Recipient]) -> Result<(String, String), String> {
        let (kek, identity) = self.identity().map_err(|e| format!("{e:#}"))?;
        let keystore = self.store.open(&kek).map_err(|e| e.to_string())?;
        let payload = Backup::new(&keystore, snapshot, &self.config).to_payload();
        drop(keystore);
        let bundle = edgeseal_bundle::seal(kind::BACKUP, payload, recipients, Some(&identity.keys))
            .map_err(|e| e.to_string())?;
        Ok((bundle, identity.keys.node_id()))
    }
}
