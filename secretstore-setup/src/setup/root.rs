//! A root token for one run, never stored: generated from the unseal shares.
//!
//! The keystore holds a bootstrap AppRole credential whose policy allows nothing but
//! `sys/generate-root-token/*` — which additionally needs the shares. Its secret-id never expires, so
//! this works however long the device was off. If the credential is missing (a crash on first boot
//! before it was stored) or broken, the classic unauthenticated `sys/generate-root/*` is tried, which
//! OpenBao allows only when its listener sets `disable_unauthed_generate_root_endpoints = false`.
//! edgeseal keeps it disabled unless the operator sets `secret_store.supervise.unauthed_generate_root`
//! (and then only on the supervised OpenBao's private Unix listener): on a listener other users reach,
//! anyone can cancel or feed a generation, since its nonce is public.
//!
//! At most the threshold of shares goes into one generation. A generation cancelled or fed by
//! someone else is started over (with backoff) until `wait_timeout`, then reported.
//!
//! The accessor of each root token is written to `root-accessor.pending` before the token is used;
//! a run that finds one left by a crashed run revokes it.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use openbao_client::api::sys::GenerateRoot;
use openbao_client::retry::{retry, Attempt, Backoff};
use openbao_client::{Client, SecretString, Token};
use serde::{Deserialize, Serialize};

use super::policy::APPROLE_MOUNT;
use super::{init::sync_parent, Doing, Setup, SetupError, ITEM_APPROLE};
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
pub async fn obtain(
    setup: &Setup,
    client: &Client,
    store: &KeystoreDir,
    keystore: &Keystore,
) -> Result<Root, SetupError> {
    let backoff = Backoff::within(setup.store.wait_timeout, Duration::from_millis(20), Duration::from_millis(500));
    let root = retry(backoff, || async {
        let (outcome, disturbed) = generate(setup, client, keystore).await;
        match outcome {
            Ok(root) => Attempt::Done(root),
            Err(tried) if disturbed => {
                tracing::warn!(
                    tried = tried.as_str(),
                    "root generation was disturbed by another client; starting over"
                );
                Attempt::Retry(tried)
            }
            Err(tried) => Attempt::Fail(tried),
        }
    })
    .await
    .map_err(SetupError::NoRoot)?;
    remember(client, store, root).await
}

/// One root generation with `keystore`'s shares, not retried: `Err` says what was tried. (A rekey
/// interrupted before its verification finished asks this of each generation of shares.) The token
/// is not yet recorded: pass it to [`remember`] before using it.
pub(crate) async fn generate_once(setup: &Setup, client: &Client, keystore: &Keystore) -> Result<Root, String> {
    generate(setup, client, keystore).await.0
}

/// One try: the bootstrap credential, then the unauthenticated endpoint. `true` when a failure looks
/// like someone else's hand (an attempt in progress, a wrong nonce, a generation that did not complete).
async fn generate(setup: &Setup, client: &Client, keystore: &Keystore) -> (Result<Root, String>, bool) {
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
                        Ok(token) => return (Ok(Root { token, approle_ok: true }), false),
                        // Someone cancelled or fed our generation: start over with the credential
                        // (falling back would re-issue a credential that works).
                        Err(e) if is_disturbance(&e) => {
                            return (Err(format!("with the bootstrap credential: {e}")), true)
                        }
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
            (Ok(Root { token, approle_ok: false }), false)
        }
        Err(e) => {
            let how = if setup.store.supervise.is_some() {
                "it is disabled: set secret_store.supervise.unauthed_generate_root: true (edgeseal then enables it on the supervised OpenBao's private Unix listener only) and run again"
            } else {
                "enable it on the OpenBao listener edgeseal uses with disable_unauthed_generate_root_endpoints = false, ideally on a listener no other local user reaches"
            };
            let disturbed = e.status() != Some(405) && is_disturbance(&e);
            tried.push(format!("unauthenticated sys/generate-root: {e} ({how})"));
            (Err(tried.join("; ")), disturbed)
        }
    }
}

/// Failures another client causes: an attempt already in progress (400), a nonce that changed (500),
/// a generation that did not complete with our shares, OpenBao briefly unreachable.
fn is_disturbance(e: &openbao_client::Error) -> bool {
    matches!(e.status(), Some(400 | 500)) || matches!(e, openbao_client::Error::Decode { .. }) || e.is_unreachable()
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
