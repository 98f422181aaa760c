//! `security-bootstrap migrate-seal`: moves a supervised Shamir-sealed store (made by an earlier
//! edgeseal, or imported from EdgeX) to the static seal with OpenBao's own seal migration.
//!
//! OpenBao's migration is not crash-safe by itself: killed while it rewrites the barrier keys, the
//! storage opens neither with the shares nor with the new key (verified on 2.7.2). So edgeseal first
//! copies the raft storage aside (`raft.pre-migration`, ciphertext under the Shamir-protected
//! keyring), and every attempt starts from that copy:
//!
//! 1. OpenBao stopped; copy the storage aside (durably); write `migrate-pending` beside the keystore;
//!    store the seal key and client identity in the keystore (only ever under the marker, so seal
//!    material without a marker means a migrated store). The shares are never removed: after the
//!    migration they are the store's recovery keys.
//! 2. Restore the storage from the copy; start OpenBao with `seal "static"` and its private Unix
//!    listener; give it the threshold of shares with `migrate: true` (over the socket, never TCP).
//! 3. With a root token generated from the shares (now recovery keys) and the bootstrap AppRole — the
//!    Shamir path's credential, used this one last time — register edgeseal's client certificate and
//!    setup policy (what self-initialization does for a new store); revoke the root token.
//! 4. Restart OpenBao as `run` will (static seal only) and log in with the certificate.
//! 5. Remove `migrate-pending`, then the copy.
//!
//! Killed anywhere before 5, a rerun starts again at 2 from the untouched copy: the store is always
//! either still Shamir-sealed with its shares (in the copy) or migrated.

use std::fs;
use std::path::{Path, PathBuf};

use openbao_client::Client;

use super::material::SealMaterial;
use super::{setup_policy, CERT_MOUNT, CERT_NAME, SETUP_POLICY, SETUP_TOKEN_TTL_SECS};
use crate::crash;
use crate::server_config::{ServerConfig, StaticSeal, SEAL_KEY_ENV};
use crate::setup::{root, Doing, Setup, SetupError};
use crate::supervise::{self, DataDirLock, Supervisor};

/// How long a killed OpenBao may take to let go of the storage.
const HELD_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// What a migration did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Migrated {
    /// The store was moved to the static seal now.
    Now {
        /// The new seal key's id.
        key_id: String,
    },
    /// It already was (nothing to do).
    Already,
}

/// The marker of a migration under way, beside the keystore.
pub fn pending_marker(keystore_dir: &Path) -> PathBuf {
    keystore_dir.join("migrate-pending")
}

/// The copy of the raft storage taken before the migration.
pub fn backup_dir(raft_dir: &Path) -> PathBuf {
    let mut name = raft_dir.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".pre-migration");
    raft_dir.with_file_name(name)
}

/// Runs (or resumes) the migration. `server` is the supervised OpenBao's configuration as the
/// Shamir path writes it (with the private Unix listener); OpenBao must not be running.
pub async fn migrate(setup: &Setup, server: ServerConfig) -> Result<Migrated, SetupError> {
    let supervise = setup.store.supervise.clone().ok_or_else(|| {
        SetupError::Config("migrate-seal works on a supervised OpenBao (secret_store.supervise)".into())
    })?;
    let socket = supervise.api_socket();
    let server = ServerConfig { api_socket: Some(socket.clone()), tcp_client_ca: None, self_init: None, ..server };
    let raft = server.data_dir.clone();
    let backup = backup_dir(&raft);
    let io = |doing: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| SetupError::Io { doing, path, source }
    };
    let _lock = DataDirLock::acquire(&supervise.data_dir).map_err(|source| SetupError::Io {
        doing: "locking",
        path: supervise.data_dir.clone(),
        source,
    })?;
    supervise::reap_orphan(&supervise.config_file()).await;

    let ikm = setup.ikm().await?;
    let store = setup.keystore_dir();
    let (keystore, kek) = store.open_with_ikm(&ikm)?;
    drop(ikm);
    let marker = pending_marker(store.dir());
    let material = SealMaterial::from_keystore(&keystore).map_err(|e| SetupError::Config(e.to_string()))?;
    if !marker.exists() {
        if material.is_some() {
            let _ = fs::remove_dir_all(&backup);
            return Ok(Migrated::Already);
        }
        if !keystore.has_shares() {
            return Err(SetupError::Config(format!(
                "keystore {} holds no unseal shares: there is no Shamir-sealed store to migrate",
                store.path().display()
            )));
        }
        // Which generation opens the store is settled by `run` or `rekey` (both try each), not here.
        if keystore.item(crate::keystore::ITEM_PENDING_SHARES).is_some() {
            return Err(SetupError::Config(format!(
                "keystore {} holds the new shares of an interrupted rekey; nothing was changed. Start `security-bootstrap run` with seal: shamir and run `security-bootstrap rekey` to finish it, then migrate",
                store.path().display()
            )));
        }
        if !super::storage::has_data(&raft).map_err(io("inspecting", &raft))? {
            return Err(SetupError::Config(format!("{} holds no store to migrate", raft.display())));
        }
        super::storage::wait_unheld(&raft, HELD_PATIENCE).await.map_err(io("checking", &raft))?;
        let _ = fs::remove_dir_all(&backup);
        copy_tree(&raft, &backup).map_err(io("copying the storage aside before the migration", &backup))?;
        crash::point("after-migrate-backup");
        durable_file::write(
            &marker,
            b"edgeseal is moving this store to the static seal\n",
            &durable_file::Options::private(),
        )
        .map_err(|e| SetupError::Io { doing: "marking the migration", path: e.path, source: e.source })?;
        crash::point("after-migrate-marker");
    }
    // Made only under the marker: a keystore with seal material and no marker is a migrated store.
    if SealMaterial::from_keystore(&store.open(&kek)?).map_err(|e| SetupError::Config(e.to_string()))?.is_none() {
        let fresh = SealMaterial::generate().map_err(|e| SetupError::Config(e.to_string()))?;
        store.update(&kek, |k| fresh.store(k))?;
        crash::point("after-migrate-material");
    }
    let keystore = store.open(&kek)?;
    let material = SealMaterial::from_keystore(&keystore)
        .map_err(|e| SetupError::Config(e.to_string()))?
        .ok_or_else(|| SetupError::Config("the seal key vanished from the keystore during the migration".into()))?;
    if !backup.is_dir() {
        return Err(SetupError::Config(format!(
            "a seal migration is marked under way ({}) but the copy of the storage {} is missing; restore {} from a backup",
            marker.display(),
            backup.display(),
            raft.display()
        )));
    }

    // Every attempt starts from the untouched copy.
    super::storage::wait_unheld(&raft, HELD_PATIENCE).await.map_err(io("checking", &raft))?;
    let _ = fs::remove_dir_all(&raft);
    copy_tree(&backup, &raft).map_err(io("restoring the storage from its copy", &raft))?;
    let migrating = ServerConfig {
        static_seal: Some(StaticSeal { current_id: material.current.id.clone(), previous_id: None }),
        ..server.clone()
    };
    let file = supervise::prepare(&supervise, &migrating).map_err(io("preparing", &supervise.data_dir))?;
    let env = vec![(SEAL_KEY_ENV, material.current.hex())];
    let supervisor = Supervisor::start(&supervise, &file, env.clone());
    let outcome = migrate_running(setup, &socket, &keystore, &material, &store).await;
    supervisor.stop().await;
    outcome?;
    crash::point("after-migrate-cert");

    // As `run` will start it: the static seal alone, no Unix listener.
    let plain = ServerConfig { api_socket: None, ..migrating };
    let file = supervise::prepare(&supervise, &plain).map_err(io("preparing", &supervise.data_dir))?;
    let supervisor = Supervisor::start(&supervise, &file, env);
    let verified = verify_login(setup, &material).await;
    supervisor.stop().await;
    verified?;
    crash::point("after-migrate-verify");
    match fs::remove_file(&marker) {
        Ok(()) => crate::setup::init::sync_parent(&marker)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(SetupError::Io { doing: "removing", path: marker, source }),
    }
    let _ = fs::remove_dir_all(&backup);
    tracing::info!(key_id = %material.current.id, "the store is sealed with the static seal now");
    Ok(Migrated::Now { key_id: material.current.id.clone() })
}

/// Steps 2–3 on a running OpenBao: the migration unseal, then edgeseal's cert entry.
async fn migrate_running(
    setup: &Setup,
    socket: &Path,
    keystore: &crate::Keystore,
    material: &SealMaterial,
    store: &crate::KeystoreDir,
) -> Result<(), SetupError> {
    let client = Client::unix(socket, setup.store.request_timeout);
    crate::setup::unseal::wait_for_openbao(&client, setup.store.wait_timeout).await?;
    let status = client.seal_status().await.doing(|| "reading the seal status".into())?;
    if status.sealed {
        let threshold = usize::try_from(status.threshold).unwrap_or(usize::MAX);
        if threshold == 0 || threshold > keystore.shares().len() || status.threshold != keystore.threshold() {
            return Err(SetupError::ThresholdMismatch {
                address: client.address().to_string(),
                store: status.threshold,
                keystore: keystore.threshold(),
                shares: keystore.shares().len(),
            });
        }
        for (n, share) in keystore.shares().iter().take(threshold).enumerate() {
            let answer = client.unseal_migrate(share.expose()).await.doing(|| "migrating the seal".into())?;
            if n == 0 {
                crash::point("mid-migrate-unseal");
            }
            if !answer.sealed {
                break;
            }
        }
    }
    crate::setup::unseal::wait_active(&client, setup.store.wait_timeout).await?;
    crash::point("after-migrate-unseal");
    let root = root::obtain(setup, &client, store, keystore).await?;
    let token = &root.token;
    let registered = async {
        let policy = setup_policy(&setup.store.kv_mount, &setup.store.service_prefix);
        client.write_policy(token, SETUP_POLICY, &policy).await.doing(|| format!("writing policy {SETUP_POLICY}"))?;
        let auths = client.auth_mounts(token).await.doing(|| "listing auth methods".into())?;
        if !auths.contains_key(&format!("{CERT_MOUNT}/")) {
            client
                .enable_auth(token, CERT_MOUNT, "cert")
                .await
                .doing(|| format!("enabling cert auth at {CERT_MOUNT}/"))?;
        }
        let cert = &material.identity.cert;
        client
            .write_cert_entry(token, CERT_MOUNT, CERT_NAME, cert, &[SETUP_POLICY], SETUP_TOKEN_TTL_SECS)
            .await
            .doing(|| "registering edgeseal's client certificate".into())
    }
    .await;
    let revoked = client.revoke_self(token).await.doing(|| "revoking the migration's root token".into());
    root::forget_pending(store);
    registered.and(revoked)
}

/// Step 4: OpenBao opens itself with the seal key, and edgeseal's certificate logs in.
async fn verify_login(setup: &Setup, material: &SealMaterial) -> Result<(), SetupError> {
    let identity = material.identity.client_identity().doing(|| "loading edgeseal's client identity".into())?;
    let client = setup.tcp_client_as(Some(&identity))?;
    let token = super::boot::login(&client, setup.store.wait_timeout, || false).await?;
    client.revoke_self(&token).await.doing(|| "revoking the check's setup token".into())
}

/// Copies a directory tree (regular files and directories), syncing every file and directory, so
/// that the copy is complete on disk before anything relies on it.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new().mode(0o700).create(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&source, &target)?;
        } else if kind.is_file() {
            fs::copy(&source, &target)?;
            fs::File::open(&target)?.sync_all()?;
        }
    }
    fs::File::open(to)?.sync_all()?;
    durable_file::sync_parent(to).map_err(|e| e.source)
}
