//! The boot of a supervised, static-sealed OpenBao, converging from whatever a crash left:
//!
//! 1. Run the KDF plug-in and open the keystore (or make one). A wrong KEK stops here, before
//!    anything is written or started.
//! 2. Decide from the keystore, `store-pending` and the raft directory ([`storage::plan`]). A new
//!    store gets its seal key and client identity now, stored durably before OpenBao ever starts.
//! 3. Start OpenBao with `seal "static"` (the key in its environment only) and the `initialize`
//!    block. While the store is being created its storage is wiped first: it holds nothing yet.
//! 4. Log in with the client certificate over TLS (pinned to OpenBao's key). The first login ends the
//!    creation: `store-pending` is removed before anything is written into the store.
//! 5. Converge the configuration with that 15-minute setup token, then revoke it.

use std::time::{Duration, Instant};

use kdf_plugins::{Ikm, Kek};
use openbao_client::{Client, Token};

use super::material::{SealKey, SealMaterial, ITEM_RECOVERY_KEY};
use super::storage::{self, Plan, Refusal, Seen};
use super::{self_init, CERT_MOUNT, CERT_NAME};
use crate::cluster::{join_pending_marker, retry_joins, Membership};
use crate::crash;
use crate::keystore::KeystoreDir;
use crate::server_config::{ClusterMember, ServerConfig, StaticSeal, PREVIOUS_SEAL_KEY_ENV, SEAL_KEY_ENV};
use crate::setup::configure::{self, Bootstrap};
use crate::setup::{Doing, Report, Setup, SetupError};
use crate::supervise::{self, DataDirLock, SuperviseConfig, Supervisor};
use crate::{Keystore, SecretBytes};

/// Starts of a store being created before giving up (each wipes the storage and starts over).
const CREATE_ATTEMPTS: u32 = 3;
/// How long one start of a store being created may take to accept edgeseal's login (a
/// self-initialization takes ~2.5 s: the raft election, then the `initialize` requests).
const SELF_INIT_PATIENCE: Duration = Duration::from_secs(30);
/// How long a killed OpenBao may take to let go of the storage.
pub(super) const HELD_PATIENCE: Duration = Duration::from_secs(10);
/// Converge attempts when OpenBao goes away in the middle (it is restarted by the supervisor).
const CONVERGE_TRIES: u32 = 5;
/// Pause between two looks at a starting OpenBao.
const POLL: Duration = Duration::from_millis(10);

/// A supervised OpenBao that is open and configured.
#[derive(Debug)]
pub struct Opened {
    /// The running OpenBao.
    pub supervisor: Supervisor,
    /// What setup did.
    pub report: Report,
    /// This process's hold on the store: keep it as long as OpenBao runs.
    pub lock: DataDirLock,
    /// The admin socket's credential (memory only; the server revokes it at shutdown).
    pub admin: Token,
}

/// Boots the supervised OpenBao described by `server` (its listener, PKI, storage and audit; the seal
/// and `initialize` block are added here) and converges it. On error OpenBao is stopped.
pub async fn open(setup: &Setup, server: ServerConfig) -> Result<Opened, SetupError> {
    let supervise = setup
        .store
        .supervise
        .clone()
        .ok_or_else(|| SetupError::Config("the static seal needs secret_store.supervise".into()))?;
    setup.validate()?;
    let lock = DataDirLock::acquire(&supervise.data_dir).map_err(|source| SetupError::Io {
        doing: "locking",
        path: supervise.data_dir.clone(),
        source,
    })?;
    let ikm = setup.ikm().await?;
    crash::point("after-kek");
    let store = setup.keystore_dir();
    let (keystore, kek) = open_or_create(&store, &ikm)?;
    drop(ikm);

    let marker = storage::pending_marker(store.dir());
    let io = |doing: &'static str, path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| SetupError::Io { doing, path, source }
    };
    let material = SealMaterial::from_keystore(&keystore).map_err(|e| SetupError::Config(e.to_string()))?;
    let membership = Membership::read(store.dir()).map_err(io("reading", &Membership::path(store.dir())))?;
    let join_marker = join_pending_marker(store.dir());
    let seen = Seen {
        material: material.is_some(),
        shares: keystore.has_shares(),
        pending: marker.exists(),
        migrating: super::migrate::pending_marker(store.dir()).exists(),
        restoring: super::restore::restore_marker(store.dir()).exists(),
        storage: storage::has_data(&server.data_dir).map_err(io("inspecting", &server.data_dir))?,
        joining: join_marker.exists(),
        member: membership.is_some(),
        joiner: setup.store.cluster.as_ref().is_some_and(crate::cluster::ClusterConfig::joins),
    };
    let plan = storage::plan(seen).map_err(|refusal| refused(setup, &server, &store, refusal))?;
    let material = match (plan, material) {
        (Plan::NewMaterial, _) | (_, None) => {
            let note = b"edgeseal is creating the OpenBao store of this keystore; it holds no data yet\n";
            durable_file::write(&marker, note, &durable_file::Options::private()).map_err(|e| SetupError::Io {
                doing: "marking the store as being created",
                path: e.path,
                source: e.source,
            })?;
            crash::point("after-pending-marker");
            let material = SealMaterial::generate().map_err(|e| SetupError::Config(e.to_string()))?;
            store.update(&kek, |k| material.store(k))?;
            crash::point("after-seal-material");
            tracing::info!(key_id = %material.current.id, "made the static seal key and edgeseal's client identity; stored in the keystore");
            material
        }
        (_, Some(material)) => material,
    };
    let creating = matches!(plan, Plan::NewMaterial | Plan::Create);
    let joining = plan == Plan::Join;
    // The member that creates a cluster's store has nothing to join (its `initialize` block and a
    // `retry_join` would race: openbao/openbao#3652).
    let member = cluster_member(setup, &supervise, membership.as_ref())?.map(|member| {
        if creating {
            ClusterMember { retry_join: Vec::new(), ..member }
        } else {
            member
        }
    });
    let clustered = member.is_some();
    let login_name = membership.as_ref().map_or_else(|| CERT_NAME.to_string(), Membership::login_name);

    let identity = material.identity.client_identity().doing(|| "loading edgeseal's client identity".into())?;
    let client = setup.tcp_client_as(Some(&identity))?;
    let bao = Launcher {
        supervise: &supervise,
        server: ServerConfig {
            api_socket: None,
            tcp_client_ca: None,
            unauthed_generate_root: false,
            // Only while creating: an existing store that turns out uninitialized is refused below,
            // never silently replaced by a new, empty one.
            self_init: creating
                .then(|| self_init(&material.identity.cert, &setup.store.kv_mount, &setup.store.service_prefix)),
            member,
            ..server
        },
    };
    let login = Login { name: &login_name, standby_ok: clustered };

    // An OpenBao left running by a killed edgeseal still holds the storage: stop it before touching it.
    supervise::reap_orphan(&supervise.config_file()).await;
    let mut attempt = 0;
    let (supervisor, token) = loop {
        attempt += 1;
        if creating || joining {
            let raft = &bao.server.data_dir;
            storage::wait_unheld(raft, HELD_PATIENCE).await.map_err(io("checking", raft))?;
            storage::wipe(raft).map_err(io("wiping the storage of a store being created or joined", raft))?;
        }
        let supervisor = bao.start(material.keys())?;
        let patience =
            if creating { setup.store.wait_timeout.min(SELF_INIT_PATIENCE) } else { setup.store.wait_timeout };
        // A store being created whose OpenBao died and was restarted never completes its
        // self-initialization (raft "already has state", or no cert entry): start it over at once.
        let restarts = supervisor.restarts();
        let broken = || creating && supervisor.restarts() > restarts;
        let uninitialized = (!creating && !joining).then(|| SetupError::StorageMissing {
            keystore: store.path().to_path_buf(),
            storage: bao.server.data_dir.clone(),
            address: setup.store.address.clone(),
        });
        match login_or(&client, &login, patience, broken, uninitialized).await {
            Ok(token) => break (supervisor, token),
            Err(e) if creating && attempt < CREATE_ATTEMPTS => {
                tracing::warn!(attempt, error = %e, "OpenBao did not initialize itself; wiping its storage (it holds nothing yet) and starting again");
                supervisor.stop().await;
            }
            Err(e) => {
                supervisor.stop().await;
                return Err(e);
            }
        }
    };
    let mut report = Report { initialized: creating, ..Report::default() };
    let mut running = Some(supervisor);
    let outcome = async {
        if creating {
            remove_durably(&marker)?;
            crash::point("after-first-login");
            tracing::info!(address = %setup.store.address, "OpenBao initialized itself; edgeseal logged in with its client certificate");
        } else {
            tracing::info!(address = %setup.store.address, "OpenBao opened itself; edgeseal logged in with its client certificate");
        }
        if let (true, Some(membership)) = (joining, &membership) {
            crash::point("join-before-check");
            joined(&client, membership, &join_marker).await?;
            report.changes.push(format!("joined cluster {} as {}", membership.cluster_id, membership.node_id));
        }
        // A lost answer (OpenBao killed mid-request) only means another recovery key is made.
        // A joined member got the store's recovery key in its join bundle: making another would
        // invalidate every other member's.
        let made = if membership.is_some() {
            false
        } else {
            through_restarts(&client, running.as_ref(), &login, setup.store.wait_timeout, || {
                ensure_recovery_key(&client, &token, &store, &kek)
            })
            .await?
        };
        if made {
            report.changes.push("recovery key made and stored in the keystore".into());
        }
        if material.next.is_some() && clustered {
            let problem = "a seal-key rotation is pending, but a cluster member cannot rotate the cluster's seal key alone (every member needs both keys at once); it keeps the current key".to_string();
            tracing::error!("{problem}");
            report.problems.push(problem);
        } else if material.next.is_some() {
            if let Some(supervisor) = running.take() {
                running = Some(rotate(setup, &bao, &client, supervisor, &material, &store, &kek, &mut report).await?);
            }
        }
        // The supervisor restarts an OpenBao that dies meanwhile, and it opens itself: wait for it
        // and converge again (every step reads before it writes).
        let (converged, admin) = through_restarts(&client, running.as_ref(), &login, setup.store.wait_timeout, || async {
            let mut attempt = Report::default();
            configure::converge(setup, &client, &token, Bootstrap::Cert, &store, &kek, &mut attempt).await?;
            if clustered {
                crate::cluster::ops::ensure_autopilot(&client, &token, &mut attempt).await?;
            }
            Ok((attempt, configure::admin_token(&client, &token).await?))
        })
        .await?;
        report.changes.extend(converged.changes);
        report.refreshed.extend(converged.refreshed);
        report.problems.extend(converged.problems);
        Ok(admin)
    }
    .await;
    crash::point("before-setup-revoke");
    let revoked = through_restarts(&client, running.as_ref(), &login, setup.store.wait_timeout, || async {
        client.revoke_self(&token).await.doing(|| "revoking this run's setup token".into())
    })
    .await;
    match (outcome.and_then(|admin| revoked.map(|()| admin)), running) {
        (Ok(admin), Some(supervisor)) => Ok(Opened { supervisor, report, lock, admin }),
        (Ok(_), None) => Err(SetupError::Config("OpenBao was not restarted after the seal-key rotation".into())),
        (Err(e), running) => {
            if let Some(supervisor) = running {
                supervisor.stop().await;
            }
            Err(e)
        }
    }
}

/// Runs `step`, and again (up to [`CONVERGE_TRIES`] times in all) when it failed because OpenBao went
/// away or was restarted meanwhile — refused connections, or any answer of a restarted OpenBao that
/// is sealed or not yet active for a moment: the supervisor brings it back and it opens itself.
async fn through_restarts<T, F, Fut>(
    client: &Client,
    supervisor: Option<&Supervisor>,
    login: &Login<'_>,
    patience: Duration,
    step: F,
) -> Result<T, SetupError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, SetupError>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        let restarts = supervisor.map(Supervisor::restarts);
        let outcome = step().await;
        let restarted = supervisor.map(Supervisor::restarts) != restarts;
        match outcome {
            Err(e) if (e.is_unreachable() || restarted) && tries < CONVERGE_TRIES => {
                tracing::warn!(error = %e, "OpenBao went away during setup; waiting for it to come back");
                wait_open(client, login.standby_ok, patience).await?;
            }
            outcome => return outcome,
        }
    }
}

/// Starts the supervised OpenBao with a given pair of seal keys.
pub(super) struct Launcher<'a> {
    pub(super) supervise: &'a SuperviseConfig,
    /// Everything but the seal stanza.
    pub(super) server: ServerConfig,
}

impl Launcher<'_> {
    /// Writes the configuration naming `current` (and `previous`), and starts OpenBao with the keys
    /// in its environment.
    pub(super) fn start(&self, (current, previous): (&SealKey, Option<&SealKey>)) -> Result<Supervisor, SetupError> {
        let server = ServerConfig {
            static_seal: Some(StaticSeal {
                current_id: current.id.clone(),
                previous_id: previous.map(|p| p.id.clone()),
            }),
            ..self.server.clone()
        };
        let mut env = vec![(SEAL_KEY_ENV, current.hex())];
        if let Some(previous) = previous {
            env.push((PREVIOUS_SEAL_KEY_ENV, previous.hex()));
        }
        let file = supervise::prepare(self.supervise, &server).map_err(|source| SetupError::Io {
            doing: "preparing",
            path: self.supervise.data_dir.clone(),
            source,
        })?;
        Ok(Supervisor::start(self.supervise, &file, env))
    }
}

/// Keeps one recovery key of the store in the keystore. OpenBao rewraps its root key to a new seal
/// key only when the store has a recovery key; self-initialization makes none. Made once, at the
/// first boot (or the first after an upgrade); a crash before it is stored only means the next boot
/// makes another (the previous one stops working). Says whether it made one.
async fn ensure_recovery_key(
    client: &Client,
    token: &Token,
    store: &KeystoreDir,
    kek: &Kek,
) -> Result<bool, SetupError> {
    let keystore = store.open(kek)?;
    // A store migrated from Shamir has recovery keys already: its old unseal shares.
    if keystore.item(ITEM_RECOVERY_KEY).is_some() || keystore.has_shares() {
        return Ok(false);
    }
    let keys = client.rotate_recovery(token, 1, 1).await.doing(|| "making the store's recovery key".into())?;
    let key = keys.into_iter().next().ok_or_else(|| SetupError::Config("OpenBao returned no recovery key".into()))?;
    store.update(kek, |k| k.set_item(ITEM_RECOVERY_KEY, SecretBytes::new(key.expose().to_vec())))?;
    crash::point("after-recovery-key");
    Ok(true)
}

/// Completes a seal-key rotation (`seal-key-next` in the keystore, see `security-bootstrap
/// rotate-seal-key`). OpenBao runs with the next key as current and the old one as previous; started
/// once more that way now that the store surely has a recovery key, it rewraps its root key to the
/// next key. Then it is started with the next key alone: only if it opens is the next key promoted in
/// the keystore (durably) and the old one forgotten. A crash anywhere leaves both keys in the
/// keystore, and the next boot starts over. If the next key alone does not open the store, OpenBao is
/// started with both again, the rotation stays pending, and the report says so.
#[allow(clippy::too_many_arguments)]
async fn rotate(
    setup: &Setup,
    bao: &Launcher<'_>,
    client: &Client,
    supervisor: Supervisor,
    material: &SealMaterial,
    store: &KeystoreDir,
    kek: &Kek,
    report: &mut Report,
) -> Result<Supervisor, SetupError> {
    let Some(next) = &material.next else { return Ok(supervisor) };
    let patience = setup.store.wait_timeout.min(SELF_INIT_PATIENCE);
    supervisor.stop().await;
    let both = bao.start(material.keys())?;
    let opened = wait_open(client, false, patience).await;
    both.stop().await;
    opened?;
    crash::point("mid-rotation");
    let alone = bao.start((next, None))?;
    match wait_open(client, false, patience).await {
        Ok(()) => {}
        Err(e) => {
            alone.stop().await;
            let problem = format!("seal-key rotation to {} did not complete ({e}); OpenBao runs with both keys and the next boot tries again", next.id);
            tracing::error!("{problem}");
            report.problems.push(problem);
            return bao.start(material.keys());
        }
    }
    store.update(kek, |k| SealMaterial::promote_next(k).map(drop))?;
    crash::point("after-rotation");
    tracing::info!(from = %material.current.id, to = %next.id, "seal key rotated");
    report.changes.push(format!("seal key rotated from {} to {}", material.current.id, next.id));
    Ok(alone)
}

/// Opens the keystore with the plug-in's IKM, or makes an empty one. Nothing is written when the
/// keystore exists and the KEK does not open it.
pub(super) fn open_or_create(store: &KeystoreDir, ikm: &Ikm) -> Result<(Keystore, Kek), SetupError> {
    if store.read()?.is_some() {
        return Ok(store.open_with_ikm(ikm)?);
    }
    let keystore = Keystore::without_shares().map_err(|e| SetupError::Config(e.to_string()))?;
    let kek = keystore.derive_kek(ikm);
    let sealed = keystore.seal(&kek).map_err(|e| SetupError::Config(e.to_string()))?;
    store.create(&sealed)?;
    // Another run may have made it first: open whatever is there now.
    Ok(store.open_with_ikm(ikm)?)
}

/// Waits for OpenBao to be active, then logs in with the client certificate. Until `patience` runs
/// out, a sealed, uninitialized or not-yet-configured store is waited for (self-initialization
/// writes the cert entry only after the raft election), unless `broken` says it never will be.
pub(crate) async fn login(client: &Client, patience: Duration, broken: impl Fn() -> bool) -> Result<Token, SetupError> {
    login_or(client, &Login { name: CERT_NAME, standby_ok: false }, patience, broken, None).await
}

/// How edgeseal logs in to its OpenBao: the name of its `cert` entry, and whether a standby counts as
/// open (a cluster member: a standby forwards the login and every request to the active member).
pub(crate) struct Login<'a> {
    pub(crate) name: &'a str,
    pub(crate) standby_ok: bool,
}

/// [`login`] with `login`'s name, a standby counting as open when it says so.
pub(crate) async fn login_as(client: &Client, login: &Login<'_>, patience: Duration) -> Result<Token, SetupError> {
    login_or(client, login, patience, || false, None).await
}

/// [`login`], returning `uninitialized` at once if OpenBao says it is not initialized.
async fn login_or(
    client: &Client,
    login: &Login<'_>,
    patience: Duration,
    broken: impl Fn() -> bool,
    mut uninitialized: Option<SetupError>,
) -> Result<Token, SetupError> {
    let started = Instant::now();
    loop {
        if broken() {
            return Err(SetupError::NoLogin {
                address: client.address().to_string(),
                waited: started.elapsed(),
                last: "OpenBao died during its self-initialization".into(),
            });
        }
        let last = match client.health().await {
            Err(e) if e.is_identity_mismatch() => {
                return Err(SetupError::OpenBao { doing: "checking OpenBao's identity".into(), source: e })
            }
            Err(e) => e.to_string(),
            Ok(h) if !h.initialized => match uninitialized.take() {
                Some(refusal) => return Err(refusal),
                None => "not initialized yet".into(),
            },
            Ok(h) if h.sealed => "sealed: it has not opened with the seal key in the keystore".into(),
            Ok(h) if h.standby && !login.standby_ok => "standby".into(),
            Ok(_) => match client.cert_login(CERT_MOUNT, login.name).await {
                Ok(auth) => return Ok(auth.client_token),
                Err(e) => format!("login with edgeseal's client certificate: {e}"),
            },
        };
        if started.elapsed() >= patience {
            return Err(SetupError::NoLogin { address: client.address().to_string(), waited: started.elapsed(), last });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until OpenBao is initialized, unsealed and active.
async fn wait_open(client: &Client, standby_ok: bool, patience: Duration) -> Result<(), SetupError> {
    let started = Instant::now();
    loop {
        let last = match client.health().await {
            Ok(h) if h.initialized && !h.sealed && (standby_ok || !h.standby) => return Ok(()),
            Ok(h) if h.sealed => "sealed: it did not open with the seal key it was given".to_string(),
            Ok(_) => "not initialized or standby".to_string(),
            Err(e) if e.is_identity_mismatch() => {
                return Err(SetupError::OpenBao { doing: "checking OpenBao's identity".into(), source: e })
            }
            Err(e) => e.to_string(),
        };
        if started.elapsed() >= patience {
            return Err(SetupError::NoLogin { address: client.address().to_string(), waited: started.elapsed(), last });
        }
        tokio::time::sleep(POLL).await;
    }
}

fn refused(setup: &Setup, server: &ServerConfig, store: &KeystoreDir, refusal: Refusal) -> SetupError {
    let keystore = store.path().to_path_buf();
    let storage = server.data_dir.clone();
    match refusal {
        Refusal::ShamirStore => SetupError::ShamirStore { keystore },
        Refusal::StorageWithoutKey => SetupError::StorageWithoutKey { keystore, storage },
        Refusal::MigrationPending => SetupError::Config(format!(
            "a seal migration of this store was interrupted ({} exists); finish it with `security-bootstrap migrate-seal` before starting edgeseal",
            super::migrate::pending_marker(store.dir()).display()
        )),
        Refusal::RestorePending => SetupError::Config(format!(
            "a restore into this store was interrupted ({} exists); finish it with `security-bootstrap restore` (the same backup file) before starting edgeseal",
            super::restore::restore_marker(store.dir()).display()
        )),
        Refusal::JoinIncomplete => SetupError::Config(format!(
            "a `cluster join` was interrupted before it stored the cluster's keys ({} exists); run `security-bootstrap cluster join` again with the same bundle",
            join_pending_marker(store.dir()).display()
        )),
        Refusal::MemberStorageLost => SetupError::Config(format!(
            "this gateway is a cluster member ({}) but its OpenBao storage {} is empty: rejoining with an empty log could lose writes the cluster committed. On a live member run `security-bootstrap cluster leave --node {}`, then `cluster invite` this gateway again and `cluster join` the new bundle here",
            Membership::path(store.dir()).display(),
            storage.display(),
            setup.store.cluster.as_ref().map_or(crate::cluster::DEFAULT_NODE_ID, |c| c.node_id.as_str())
        )),
        Refusal::NotJoined => SetupError::Config(format!(
            "secret_store.cluster says this gateway joins a cluster (node_id {}, join {:?}), but it has not joined one: it will not create a store of its own. Run `security-bootstrap cluster join BUNDLE --from KEY --config …` with a bundle from a member (`cluster invite`) first",
            setup.store.cluster.as_ref().map_or("", |c| c.node_id.as_str()),
            setup.store.cluster.as_ref().map(|c| c.join.clone()).unwrap_or_default()
        )),
        Refusal::MemberWithoutKey => SetupError::Config(format!(
            "keystore {} joined a cluster ({} exists) but holds no seal key (a `cluster join` was interrupted?); edgeseal will not create a new store beside the cluster. Run `security-bootstrap cluster join` again (the same bundle works until it expires), or remove {} if this gateway is to stand alone",
            keystore.display(),
            Membership::path(store.dir()).display(),
            Membership::path(store.dir()).display()
        )),
        Refusal::StorageMissing => {
            SetupError::StorageMissing { keystore, storage, address: setup.store.address.clone() }
        }
    }
}

/// What a cluster member's OpenBao configuration adds (`None` for a single device): its node id (the
/// membership's, which must be the config's), and the members it joins through.
fn cluster_member(
    setup: &Setup,
    supervise: &SuperviseConfig,
    membership: Option<&Membership>,
) -> Result<Option<ClusterMember>, SetupError> {
    let Some(cluster) = &setup.store.cluster else {
        return match membership {
            Some(m) => Err(SetupError::Config(format!(
                "this keystore joined cluster {} as {}, but edgeseal.yaml has no secret_store.cluster: add it (node_id: {})",
                m.cluster_id, m.node_id, m.node_id
            ))),
            None => Ok(None),
        };
    };
    if let Some(m) = membership.filter(|m| m.node_id != cluster.node_id) {
        return Err(SetupError::Config(format!(
            "this keystore joined cluster {} as {}, but secret_store.cluster.node_id is {}: a member's node id never changes",
            m.cluster_id, m.node_id, cluster.node_id
        )));
    }
    let own_ca = std::fs::read_to_string(&setup.ca_cert).map_err(|source| SetupError::Io {
        doing: "reading the CA certificate other members verify this member with",
        path: setup.ca_cert.clone(),
        source,
    })?;
    Ok(Some(ClusterMember {
        node_id: cluster.node_id.clone(),
        retry_join: retry_joins(cluster, membership, &own_ca),
        working_dir: supervise.data_dir.clone(),
    }))
}

/// The end of a join: the member is open, in the cluster the bundle named (anything else means it
/// made or joined another one: stop), and `join-pending` goes.
async fn joined(client: &Client, membership: &Membership, marker: &std::path::Path) -> Result<(), SetupError> {
    let health = client.health().await.doing(|| "reading the joined member's cluster id".into())?;
    if health.cluster_id != membership.cluster_id {
        return Err(SetupError::Config(format!(
            "this member opened in cluster {:?}, not in cluster {} its join bundle names: it is not part of that cluster. Stop it, wipe its storage and join again",
            health.cluster_id, membership.cluster_id
        )));
    }
    remove_durably(marker)?;
    crash::point("after-join");
    tracing::info!(cluster_id = %membership.cluster_id, node_id = %membership.node_id, "joined the cluster");
    Ok(())
}

pub(crate) fn remove_durably(path: &std::path::Path) -> Result<(), SetupError> {
    match std::fs::remove_file(path) {
        Ok(()) => crate::setup::init::sync_parent(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(SetupError::Io { doing: "removing", path: path.to_path_buf(), source }),
    }
}
