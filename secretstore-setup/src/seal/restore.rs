//! `security-bootstrap restore` (SPEC §13): a backup restored into this device's supervised,
//! static-sealed OpenBao.
//!
//! 1. `restore-pending` is written durably beside the keystore. From here until the last step a
//!    boot refuses to start (only a rerun of `restore` continues), and the storage holds nothing
//!    that is not in the backup file.
//! 2. The backup's keystore items (its seal key(s), edgeseal's client identity, the recovery key)
//!    replace this keystore's, re-encrypted under this device's KEK. The node identity and the PKI
//!    (CA keys) stay this device's own.
//! 3. OpenBao starts on wiped storage with the backup's seal key and initializes itself (registering
//!    the backup's client certificate); edgeseal logs in and hands it the snapshot
//!    (`snapshot-force`). OpenBao seals itself.
//! 4. OpenBao starts again without the `initialize` block (and with this node as the raft store's
//!    only voter) and opens the restored store with the backup's key; edgeseal logs in with the
//!    backup's certificate, revokes every token in the store — all of them were issued before the
//!    backup — and converges the store to this device's edgeseal.yaml, as a boot does.
//! 5. OpenBao stops; the markers go.
//!
//! A crash anywhere before step 5 leaves `restore-pending`: a rerun starts again at step 1 with the
//! same file. After it, the device boots normally.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use openbao_client::{Client, Token};

use super::boot::{self, open_or_create, remove_durably, Launcher};
use super::material::{SealMaterial, ITEM_SEAL_KEY};
use super::{self_init, storage, SealMode};
use crate::backup::{restored, Backup};
use crate::crash;
use crate::server_config::ServerConfig;
use crate::setup::configure::{self, Bootstrap};
use crate::setup::{Doing, Report, Setup, SetupError};
use crate::supervise::{self, DataDirLock};

/// Prefix of the keystore items that keep a replaced store's keys (`restore --force`).
pub const REPLACED_PREFIX: &str = "replaced-";

/// The marker: a restore into this keystore's store is under way.
pub fn restore_marker(keystore_dir: &Path) -> PathBuf {
    keystore_dir.join("restore-pending")
}

/// What a restore did.
#[derive(Debug)]
pub struct Restored {
    /// What converging the restored store changed.
    pub report: Report,
    /// Tokens of the backed-up store revoked (every one issued before the backup).
    pub revoked: usize,
    /// Whether an earlier, interrupted restore was finished.
    pub resumed: bool,
}

/// A restore makes this member's OpenBao the only voter of the restored store: on a cluster member
/// it would leave two active stores (this one, and the other members'). Refused.
pub fn refuse_cluster_member(setup: &Setup) -> Result<(), SetupError> {
    let joined = crate::cluster::Membership::path(setup.keystore_dir().dir()).exists();
    if setup.store.cluster.is_some() || joined {
        return Err(SetupError::Config(
            "this gateway is a cluster member (secret_store.cluster): a restore would make its OpenBao a store of its own beside the cluster's; nothing was changed. Restore onto a gateway that stands alone (no secret_store.cluster, no cluster.json beside its keystore), then grow the cluster from it (`cluster invite`)".into(),
        ));
    }
    Ok(())
}

/// Restores `backup` into the supervised OpenBao of `setup` (described by `server`, as `run` starts
/// it). Refuses a device that already holds a store unless `force`.
pub async fn restore(
    setup: &Setup,
    server: ServerConfig,
    backup: &Backup,
    force: bool,
) -> Result<Restored, SetupError> {
    let supervise = match &setup.store.supervise {
        Some(s) if s.seal == SealMode::Static => s.clone(),
        _ => {
            return Err(SetupError::Config(
                "restore needs a supervised OpenBao with the static seal (secret_store.supervise, seal: static)".into(),
            ))
        }
    };
    refuse_cluster_member(setup)?;
    if !backup.items.contains_key(ITEM_SEAL_KEY) {
        return Err(SetupError::Config(
            "this backup is of a Shamir-sealed store (it holds unseal shares, no seal key): edgeseal restores static-sealed backups only. Move the store to the static seal first (`security-bootstrap migrate-seal` on the device), or restore it by hand: `bao operator raft snapshot restore -force` with the snapshot in the backup, then unseal with the backup's shares".into(),
        ));
    }
    setup.validate()?;
    let lock = DataDirLock::acquire(&supervise.data_dir).map_err(|source| SetupError::Io {
        doing: "locking (is edgeseal running? stop it before a restore)",
        path: supervise.data_dir.clone(),
        source,
    })?;
    let ikm = setup.ikm().await?;
    let store = setup.keystore_dir();
    let (keystore, kek) = open_or_create(&store, &ikm)?;
    drop(ikm);
    let marker = restore_marker(store.dir());
    // The marker names the backup it restores (its snapshot's digest): a rerun with the same file
    // continues; another file needs --force.
    let digest = crate::backup::digest(&backup.snapshot);
    let pending = std::fs::read_to_string(&marker).ok();
    let resumed = pending.as_deref().is_some_and(|text| text.contains(&digest));
    let raft = server.data_dir.clone();
    let io = |doing: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| SetupError::Io { doing, path, source }
    };
    if super::migrate::pending_marker(store.dir()).exists() {
        return Err(SetupError::Config(
            "a seal migration of this store was interrupted: finish it with `security-bootstrap migrate-seal` first"
                .into(),
        ));
    }
    if keystore.has_shares() && keystore.item(ITEM_SEAL_KEY).is_none() {
        return Err(SetupError::Config(format!(
            "keystore {} belongs to a Shamir-sealed store; a restore replaces a static-sealed one. Move the keystore and {} away first (or `migrate-seal` the store)",
            store.path().display(),
            raft.display()
        )));
    }
    let holds_store =
        keystore.item(ITEM_SEAL_KEY).is_some() || storage::has_data(&raft).map_err(io("inspecting", &raft))?;
    if pending.is_some() && !resumed && !force {
        return Err(SetupError::Config(format!(
            "a restore of another backup into this store was interrupted ({}); finish it with that file, or run this one with --force",
            marker.display()
        )));
    }
    if holds_store && !resumed && !force {
        return Err(SetupError::Config(format!(
            "this device already holds a store (keystore {} has a seal key, or {} holds data); a restore would replace it and everything in it. Run restore again with --force to replace it (the replaced store is kept aside)",
            store.path().display(),
            raft.display()
        )));
    }

    let note = format!(
        "edgeseal is restoring a backup into this keystore's store; rerun `security-bootstrap restore` with it\nsnapshot sha256: {digest}\n"
    );
    durable_file::write(&marker, note.as_bytes(), &durable_file::Options::private()).map_err(|e| SetupError::Io {
        doing: "marking the restore",
        path: e.path,
        source: e.source,
    })?;
    crash::point("restore-after-marker");
    // Nothing of a store being replaced is lost: its storage moves aside and its keys stay in the
    // keystore as `replaced-*` items, before anything is overwritten (each step is repeatable).
    supervise::reap_orphan(&supervise.config_file()).await;
    storage::wait_unheld(&raft, boot::HELD_PATIENCE).await.map_err(io("checking", &raft))?;
    let replacing =
        store.open(&kek)?.item(ITEM_SEAL_KEY).is_some_and(|key| Some(key) != backup.items.get(ITEM_SEAL_KEY));
    if replacing {
        if storage::has_data(&raft).map_err(io("inspecting", &raft))? {
            let aside = raft.with_file_name(format!(
                "raft.replaced-{}",
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
            ));
            std::fs::rename(&raft, &aside).map_err(io("moving the replaced store aside", &raft))?;
            crate::setup::init::sync_parent(&aside)?;
            tracing::warn!(kept = %aside.display(), "the store this restore replaces is kept aside, with its keys in the keystore as replaced-* items");
        }
        store.update(&kek, |k| {
            let kept: Vec<(String, crate::SecretBytes)> = k
                .item_names()
                .filter(|n| restored(n))
                .filter_map(|n| k.item(n).map(|v| (format!("{REPLACED_PREFIX}{n}"), v.clone())))
                .collect();
            for (name, value) in kept {
                k.set_item(&name, value)?;
            }
            Ok(())
        })?;
    }
    crash::point("restore-after-set-aside");
    store.update(&kek, |k| {
        let old: Vec<String> = k.item_names().filter(|n| restored(n)).map(str::to_string).collect();
        for name in old {
            k.remove_item(&name);
        }
        for (name, value) in backup.items.iter().filter(|(name, _)| restored(name)) {
            k.set_item(name, value.clone())?;
        }
        Ok(())
    })?;
    crash::point("restore-after-keys");
    let material = SealMaterial::from_keystore(&store.open(&kek)?)
        .map_err(|e| SetupError::Config(e.to_string()))?
        .ok_or_else(|| SetupError::Config("the backup's seal key did not reach the keystore".into()))?;
    tracing::info!(key_id = %material.current.id, next = material.next.is_some(), "the backup's seal key is in this device's keystore, under its KEK");

    let identity = material.identity.client_identity().doing(|| "loading the backup's client identity".into())?;
    let client = setup.tcp_client_as(Some(&identity))?;
    let fresh = Launcher {
        supervise: &supervise,
        server: ServerConfig {
            api_socket: None,
            tcp_client_ca: None,
            unauthed_generate_root: false,
            self_init: Some(self_init(&material.identity.cert, &setup.store.kv_mount, &setup.store.service_prefix)),
            ..server.clone()
        },
    };
    storage::wipe(&raft).map_err(io("wiping the storage for the restore", &raft))?;
    let supervisor = fresh.start(material.keys())?;
    let restored = async {
        let token = boot::login(&client, setup.store.wait_timeout, || false).await?;
        crash::point("restore-after-self-init");
        client
            .raft_restore_force(&token, Bytes::from(backup.snapshot.clone()))
            .await
            .doing(|| "restoring the backup's raft snapshot (sys/storage/raft/snapshot-force)".into())
    }
    .await;
    supervisor.stop().await;
    restored?;
    crash::point("restore-after-snapshot");

    // The snapshot's raft membership names the backed-up device's node and cluster address: make this
    // node the store's only voter (OpenBao's `peers.json` recovery, read at start).
    let peers = raft.join("raft").join("peers.json");
    durable_file::write(&peers, fresh.server.peers_json().as_bytes(), &durable_file::Options::private())
        .map_err(|e| SetupError::Io { doing: "writing raft's peers.json", path: e.path, source: e.source })?;
    // Without the audit device: the restored store's audit table declares the backed-up device's
    // own (its log path), which OpenBao refuses to see changed by configuration. Started without
    // one, OpenBao drops it; the converging boot below declares this device's.
    let backed_up =
        Launcher { server: ServerConfig { self_init: None, audit_log: None, ..fresh.server.clone() }, ..fresh };
    let supervisor = backed_up.start(material.keys())?;
    let converged = async {
        let token = boot::login(&client, setup.store.wait_timeout, || false).await?;
        let revoked = revoke_all_but(&client, &token).await?;
        crash::point("restore-after-revoke");
        let mut report = Report::default();
        configure::converge(setup, &client, &token, Bootstrap::Cert, &store, &kek, &mut report).await?;
        client.revoke_self(&token).await.doing(|| "revoking the restore's setup token".into())?;
        Ok::<_, SetupError>((revoked, report))
    }
    .await;
    supervisor.stop().await;
    let (revoked, report) = converged?;
    tracing::info!(
        revoked,
        "the backup's store opens on this device and is converged; every token issued before the backup is revoked"
    );
    remove_durably(&storage::pending_marker(store.dir()))?;
    remove_durably(&marker)?;
    crash::point("restore-after-marker-removed");
    drop(lock);
    Ok(Restored { report, revoked, resumed })
}

/// Revokes every token of the store but `token` (by accessor). Returns how many.
async fn revoke_all_but(client: &Client, token: &Token) -> Result<usize, SetupError> {
    let own = client.lookup_self(token).await.doing(|| "looking up the restore's own token".into())?.accessor;
    let accessors = client.list_token_accessors(token).await.doing(|| "listing the restored store's tokens".into())?;
    let mut revoked = 0;
    for accessor in accessors.iter().filter(|a| **a != own) {
        match client.revoke_accessor(token, accessor).await {
            Ok(()) => revoked += 1,
            Err(e) => {
                return Err(SetupError::OpenBao { doing: "revoking the backed-up store's tokens".into(), source: e })
            }
        }
    }
    Ok(revoked)
}
