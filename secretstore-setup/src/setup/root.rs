//! A root token for one run, never stored: generated from the unseal shares.
//!
//! The keystore holds a bootstrap AppRole credential whose policy allows nothing but
//! `sys/generate-root-token/*` — which additionally needs the shares. Its secret-id never expires, so
//! this works however long the device was off. If the credential is missing (a crash on first boot
//! before it was stored) or broken, the classic unauthenticated `sys/generate-root/*` is tried, which
//! OpenBao allows only when its listener sets `disable_unauthed_generate_root_endpoints = false` (the
//! configs edgeseal writes do).
//!
//! The accessor of each root token is written to `root-accessor.pending` before the token is used;
//! a run that finds one left by a crashed run revokes it.

use std::fs;
use std::path::PathBuf;

use openbao_client::api::sys::GenerateRoot;
use openbao_client::{Client, SecretString, Token};
use serde::{Deserialize, Serialize};

use super::policy::APPROLE_MOUNT;
use super::{init::sync_parent, Doing, SetupError, ITEM_APPROLE};
use crate::keystore::KeystoreDir;
use crate::Keystore;

/// The bootstrap AppRole credential as stored in the keystore item.
#[derive(Serialize, Deserialize)]
pub struct ApproleCredential {
    /// The role's id.
    pub role_id: String,
    /// The secret-id.
    pub secret_id: SecretString,
}

impl std::fmt::Debug for ApproleCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApproleCredential").field("role_id", &self.role_id).finish_non_exhaustive()
    }
}

/// A root token for this run, and whether the stored bootstrap credential worked.
#[derive(Debug)]
pub struct Root {
    /// The token.
    pub token: Token,
    /// The bootstrap AppRole login succeeded (so it need not be re-issued).
    pub approle_ok: bool,
}

fn pending_path(store: &KeystoreDir) -> PathBuf {
    store.dir().join("root-accessor.pending")
}

/// Generates a root token from the shares.
pub async fn obtain(client: &Client, store: &KeystoreDir, keystore: &Keystore) -> Result<Root, SetupError> {
    let shares = || keystore.shares().iter().map(|s| s.expose());
    let mut tried = Vec::new();
    match keystore.item(ITEM_APPROLE).map(|item| serde_json::from_slice::<ApproleCredential>(item.expose())) {
        Some(Ok(credential)) => {
            match client.approle_login(APPROLE_MOUNT, &credential.role_id, &credential.secret_id).await {
                Ok(auth) => {
                    // A batch token: nothing to revoke, it expires within minutes.
                    let generated =
                        client.generate_root(GenerateRoot::Authenticated(&auth.client_token), shares()).await;
                    match generated {
                        Ok(token) => return remember(client, store, Root { token, approle_ok: true }).await,
                        Err(e) => tried.push(format!("with the bootstrap credential: {e}")),
                    }
                }
                Err(e) => tried.push(format!("bootstrap credential login: {e}")),
            }
        }
        Some(Err(_)) => tried.push("the bootstrap credential in the keystore is unreadable".into()),
        None => tried.push("the keystore holds no bootstrap credential yet".into()),
    }
    match client.generate_root(GenerateRoot::Unauthenticated, shares()).await {
        Ok(token) => {
            tracing::warn!(
                "bootstrap credential unusable ({}); recovered a root token through the unauthenticated endpoint",
                tried.join("; ")
            );
            remember(client, store, Root { token, approle_ok: false }).await
        }
        Err(e) => {
            tried.push(format!("unauthenticated sys/generate-root: {e} (enable it with the listener option disable_unauthed_generate_root_endpoints = false)"));
            Err(SetupError::NoRoot(tried.join("; ")))
        }
    }
}

/// Records the root token's accessor before it is used, revoking one left behind by a crashed run.
pub async fn remember(client: &Client, store: &KeystoreDir, root: Root) -> Result<Root, SetupError> {
    let path = pending_path(store);
    if let Ok(stale) = fs::read_to_string(&path) {
        let stale = stale.trim();
        if !stale.is_empty() {
            client
                .revoke_accessor(&root.token, stale)
                .await
                .doing(|| "revoking a root token left by a crashed run".into())?;
            tracing::info!("revoked a root token left behind by an interrupted run");
        }
    }
    let info = client.lookup_self(&root.token).await.doing(|| "looking up this run's root token".into())?;
    let io = |source| SetupError::Io { doing: "recording the root token's accessor", path: path.clone(), source };
    fs::write(&path, format!("{}\n", info.accessor)).map_err(io)?;
    fs::File::open(&path).and_then(|f| f.sync_all()).map_err(io)?;
    sync_parent(&path)?;
    Ok(root)
}

/// Forgets the pending accessor once the token is revoked.
pub fn forget_pending(store: &KeystoreDir) {
    let path = pending_path(store);
    if fs::remove_file(&path).is_ok() {
        let _ = sync_parent(&path);
    }
}
