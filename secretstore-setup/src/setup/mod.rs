//! `security-bootstrap setup`: bring OpenBao to the configured state, on every boot, idempotently.
//!
//! 1. Wait (bounded) for OpenBao ([`unseal::wait_for_openbao`]).
//! 2. First boot: initialize; the keystore is written durably before anything else ([`init`]).
//! 3. Unseal with the shares from the keystore ([`unseal`]).
//! 4. Get a root token for this run only: the init token on first boot, later one generated from the
//!    shares with the bootstrap AppRole (or the unauthenticated endpoint as a fallback) ([`root`]).
//! 5. Converge the configuration: KV mount, AppRole, per-service policies and roles, EdgeX seed files
//!    ([`seed_files`]; before generation, so a seeded name is never generated), generated secrets,
//!    the token-issuing token, file tokens; remove what was dropped from the config ([`configure`],
//!    [`file_tokens`]).
//! 6. Revoke the root token.
//!
//! Every step can be interrupted by a crash; the next run picks up from what is on disk and in OpenBao.
//!
//! Every call goes to OpenBao only: over HTTPS pinned to OpenBao's own key ([`Setup::server_pin`]), or,
//! for an OpenBao edgeseal supervises, over its private Unix socket ([`Setup::client`]). Steps that
//! another local client can disturb through OpenBao's unauthenticated endpoints (an unseal attempt, a
//! root generation) are started over with backoff until `wait_timeout`, then reported; see
//! [`unseal`] for what stays exposed with an external store.

pub mod configure;
pub mod file_tokens;
pub mod init;
pub mod policy;
pub mod root;
pub mod seed_files;
pub mod unseal;

use std::path::PathBuf;
use std::time::Duration;

use kdf_plugins::{run_plugin, Ikm, KdfConfig, Kek, PluginError};
use openbao_client::{Client, Pin, Token};
use thiserror::Error;

use self::configure::Bootstrap;
use crate::config::{FileTokensConfig, KeystoreConfig, SecretStoreConfig, ServiceSetup};
use crate::crash;
use crate::keystore::{derive_file_kek, KeystoreDir, KeystoreError, KeystoreFile};
use crate::seal::SealMode;
use crate::Keystore;

/// Keystore item holding the bootstrap AppRole credential (`{"role_id", "secret_id"}`).
pub const ITEM_APPROLE: &str = "bootstrap-approle";
/// Keystore item holding the token-issuing token.
pub const ITEM_ISSUER: &str = "token-issuer";

/// A setup run that failed. Each message says what was seen and, where possible, what to do.
#[derive(Debug, Error)]
pub enum SetupError {
    /// OpenBao did not answer within `wait_timeout`.
    #[error("OpenBao at {address} did not answer within {}: {last}", humantime::format_duration(*.waited))]
    Unreachable {
        /// The address.
        address: String,
        /// How long we waited.
        waited: Duration,
        /// The last error seen.
        last: String,
    },
    /// OpenBao is initialized but there is no keystore with its shares.
    #[error("OpenBao at {address} is already initialized but keystore {path} does not hold its unseal shares; edgeseal cannot unseal a store it did not initialize. Restore the keystore from a backup, or import EdgeX's keys with `security-bootstrap keystore import-edgex`")]
    KeystoreMissing {
        /// OpenBao's address.
        address: String,
        /// The keystore file.
        path: PathBuf,
    },
    /// A previous run initialized OpenBao and died before the shares were saved.
    #[error("a previous run initialized OpenBao at {address} (marker {marker}) and was killed before the unseal shares reached the keystore; those shares are lost. The store holds no data yet: reset OpenBao's storage, delete the marker, and run setup again")]
    InitLost {
        /// OpenBao's address.
        address: String,
        /// The marker file.
        marker: PathBuf,
    },
    /// The keystore holds shares but OpenBao is not initialized.
    #[error("keystore {path} already holds unseal shares, but OpenBao at {address} is not initialized (its storage was reset, or this is another OpenBao); refusing to initialize over it. Point edgeseal at the OpenBao this keystore belongs to, or move the keystore away if it is truly no longer needed")]
    KeystoreForAnotherStore {
        /// The keystore file.
        path: PathBuf,
        /// OpenBao's address.
        address: String,
    },
    /// Another client kept resetting or feeding the unseal attempt until `wait_timeout` ran out.
    #[error("unsealing OpenBao at {address}: another client kept disturbing the unseal attempt for {} (last: {seen}); sys/unseal needs no token, so any local process reaching OpenBao's listener can reset it. No share was disclosed. Find the process calling sys/unseal; edgeseal retries on its next run and the watchdog keeps trying", humantime::format_duration(*.waited))]
    UnsealDisturbed {
        /// OpenBao's address.
        address: String,
        /// How long we kept trying.
        waited: Duration,
        /// What the last attempt saw.
        seen: String,
    },
    /// Clean unseal attempts with the keystore's shares did not open the store.
    #[error("the keystore's shares do not unseal OpenBao at {address} ({seen}): the keystore belongs to another store. Point edgeseal at the OpenBao this keystore was made for")]
    ForeignShares {
        /// OpenBao's address.
        address: String,
        /// What the last attempt saw.
        seen: String,
    },
    /// OpenBao states another unseal threshold than the keystore's: no share was sent.
    #[error("OpenBao at {address} asks for {store} shares to unseal but the keystore's threshold is {keystore} ({shares} shares held): no share was sent. The keystore belongs to another store, or the server is not the OpenBao it was made for (check secret_store.address and pin its certificate with server_cert)")]
    ThresholdMismatch {
        /// OpenBao's address.
        address: String,
        /// The threshold OpenBao states.
        store: u64,
        /// The keystore's threshold.
        keystore: u64,
        /// Shares in the keystore.
        shares: usize,
    },
    /// Neither the bootstrap credential nor the unauthenticated endpoint gives a root token.
    #[error("cannot obtain a root token from the unseal shares: {0}")]
    NoRoot(String),
    /// The KDF plug-in failed.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// The keystore could not be read, opened or written.
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
    /// An OpenBao call failed.
    #[error("{doing}: {source}")]
    OpenBao {
        /// What setup was doing.
        doing: String,
        /// The client error (carries OpenBao's message).
        source: openbao_client::Error,
    },
    /// A local file (marker, token file) could not be written.
    #[error("{doing} {path}: {source}")]
    Io {
        /// What setup was doing.
        doing: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Invalid configuration.
    #[error("{0}")]
    Config(String),
    /// A Shamir rekey that did not complete (the store still opens; see [`crate::rekey`]).
    #[error("rekey: {0}")]
    Rekey(String),
    /// A supervised, static-sealed OpenBao did not accept edgeseal's client certificate in time.
    #[error("OpenBao at {address} did not let edgeseal log in with its client certificate within {} (last: {last}). Its log is openbao.log in secret_store.supervise.data_dir", humantime::format_duration(*.waited))]
    NoLogin {
        /// OpenBao's address.
        address: String,
        /// How long we waited.
        waited: Duration,
        /// What the last look saw.
        last: String,
    },
    /// The keystore holds Shamir shares of a store made by an earlier edgeseal; the static seal is the default now.
    #[error("keystore {keystore} holds the unseal shares of a Shamir-sealed OpenBao (made by an earlier edgeseal, or imported from EdgeX); nothing was changed. Move it to the static seal with `security-bootstrap migrate-seal`, or keep it as it is with secret_store.supervise.seal: shamir")]
    ShamirStore {
        /// The keystore file.
        keystore: PathBuf,
    },
    /// OpenBao's storage holds a store but the keystore has no seal key for it.
    #[error("OpenBao's storage {storage} holds a store, but keystore {keystore} has no seal key for it (the keystore was replaced or reset); nothing was changed. Restore the keystore that belongs to this store, or move {storage} away to start a new, empty store")]
    StorageWithoutKey {
        /// The keystore file.
        keystore: PathBuf,
        /// The raft directory.
        storage: PathBuf,
    },
    /// The keystore's store was created, but its storage is gone.
    #[error("keystore {keystore} belongs to an OpenBao store that was created, but its storage {storage} is empty (deleted, or another data_dir is configured); refusing to start OpenBao at {address}, which would create a new, empty store. Restore {storage} from a backup or point secret_store.supervise.data_dir at it")]
    StorageMissing {
        /// The keystore file.
        keystore: PathBuf,
        /// The raft directory.
        storage: PathBuf,
        /// OpenBao's address.
        address: String,
    },
    /// A static-sealed OpenBao is sealed: it did not open with the key it was started with.
    #[error("OpenBao at {address} is sealed although it is started with the static seal key from the keystore: the key does not open this storage (see openbao.log: \"message authentication failed\"). edgeseal never sends unseal shares to a static-sealed store")]
    StaticSealed {
        /// OpenBao's address.
        address: String,
    },
}

/// Requests to OpenBao in flight at once during a run: enough to overlap round trips and let raft
/// batch writes (a device's file tokens are made and revoked in one round each), few enough to reuse
/// a handful of TLS connections instead of opening one per request.
const CONCURRENCY: usize = 8;

/// Runs `futures` with at most [`CONCURRENCY`] in flight, keeping their order; the first error wins.
pub(crate) async fn concurrently<T, F>(futures: impl IntoIterator<Item = F>) -> Result<Vec<T>, SetupError>
where
    F: std::future::Future<Output = Result<T, SetupError>>,
{
    use futures_util::stream::{self, StreamExt, TryStreamExt};
    stream::iter(futures).buffered(CONCURRENCY).try_collect().await
}

impl SetupError {
    /// Whether another client disturbed the unseal: a denial of service while it lasts, never a
    /// verdict on the keystore. Long-running callers (`run`, the watchdog) retry instead of giving up.
    pub fn is_unseal_disturbed(&self) -> bool {
        matches!(self, Self::UnsealDisturbed { .. })
    }

    /// Whether OpenBao did not answer (down, or restarting): a supervised OpenBao comes back by itself.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::OpenBao { source, .. } if source.is_unreachable())
    }
}

/// Adds "what we were doing" to OpenBao client errors.
pub(crate) trait Doing<T> {
    fn doing(self, what: impl FnOnce() -> String) -> Result<T, SetupError>;
}

impl<T> Doing<T> for Result<T, openbao_client::Error> {
    fn doing(self, what: impl FnOnce() -> String) -> Result<T, SetupError> {
        self.map_err(|source| SetupError::OpenBao { doing: what(), source })
    }
}

/// Everything a setup run needs.
#[derive(Debug, Clone)]
pub struct Setup {
    /// `secret_store:`.
    pub store: SecretStoreConfig,
    /// The CA file OpenBao's certificate must chain to.
    pub ca_cert: PathBuf,
    /// Which certificate under that CA is OpenBao's (`secret_store.server_cert`, resolved): only a
    /// server with its key gets shares, `sys/init` or anything else.
    pub server_pin: Pin,
    /// `keystore:`.
    pub keystore: KeystoreConfig,
    /// `kdf:`.
    pub kdf: KdfConfig,
    /// The configured services.
    pub services: Vec<ServiceSetup>,
    /// `file_tokens:`.
    pub file_tokens: FileTokensConfig,
}

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// OpenBao was initialized by this run.
    pub initialized: bool,
    /// OpenBao was sealed and this run unsealed it.
    pub unsealed: bool,
    /// Configuration changes made (empty on a converged store).
    pub changes: Vec<String>,
    /// Tokens refreshed (file tokens, the issuing token), which happens on every boot by design.
    pub refreshed: Vec<String>,
    /// Problems confined to one service that did not stop the run (e.g. its token file could not be
    /// written), each naming the service and what to do.
    pub problems: Vec<String>,
}

impl Report {
    /// Adds what `other` (a part of the same run) did and found.
    pub fn merge(&mut self, other: Report) {
        self.initialized |= other.initialized;
        self.unsealed |= other.unsealed;
        self.changes.extend(other.changes);
        self.refreshed.extend(other.refreshed);
        self.problems.extend(other.problems);
    }
}

impl Setup {
    /// The OpenBao client setup and the watchdog use. For a supervised OpenBao: its private Unix
    /// socket (a directory only edgeseal's user may enter), so `sys/init`, `sys/unseal` and root
    /// generation never travel over the TCP listener other local users reach. Otherwise: HTTPS to
    /// `secret_store.address`, pinned to OpenBao's certificate.
    pub fn client(&self) -> Result<Client, SetupError> {
        match &self.store.supervise {
            Some(supervise) if supervise.seal == SealMode::Shamir => {
                Ok(Client::unix(&supervise.api_socket(), self.store.request_timeout))
            }
            _ => self.tcp_client(),
        }
    }

    /// Whether OpenBao is supervised with the static seal: it opens itself; edgeseal never sends it
    /// `sys/init`, `sys/unseal` or root-generation requests.
    pub fn static_seal(&self) -> bool {
        self.store.supervise.as_ref().is_some_and(|s| s.seal == SealMode::Static)
    }

    /// HTTPS to `secret_store.address`, pinned to OpenBao's certificate (what services, the token
    /// server and, for a static-sealed store, setup and the watchdog use).
    pub fn tcp_client(&self) -> Result<Client, SetupError> {
        self.tcp_client_as(None)
    }

    /// [`Setup::tcp_client`] presenting `identity` as its TLS client certificate (edgeseal's own, for
    /// the `cert` login of a static-sealed store).
    pub fn tcp_client_as(&self, identity: Option<&openbao_client::ClientIdentity>) -> Result<Client, SetupError> {
        Client::with_identity(
            &self.store.address,
            &self.ca_cert,
            &self.server_pin,
            identity,
            self.store.request_timeout,
        )
        .doing(|| format!("connecting to OpenBao at {}", self.store.address))
    }

    /// Unseals OpenBao from the keystore (the plug-in runs again; the shares live only for this
    /// call), and waits until it is active. What the watchdog does on "sealed", and `run` after it
    /// restarted a supervised OpenBao. Returns whether it was sealed. With the pending shares of an
    /// interrupted rekey in the keystore, those are tried when OpenBao refuses the current ones (and
    /// promoted if they open it): see [`crate::rekey::unseal_generations`].
    pub async fn unseal_from_keystore(&self, client: &Client) -> Result<bool, SetupError> {
        if self.static_seal() {
            return Err(SetupError::StaticSealed { address: self.store.address.clone() });
        }
        unseal::wait_for_openbao(client, self.store.wait_timeout).await?;
        let ikm = self.ikm().await?;
        let store = self.keystore_dir();
        let file = store.read()?.ok_or_else(|| SetupError::KeystoreMissing {
            address: self.store.address.clone(),
            path: store.path().to_path_buf(),
        })?;
        let kek = file_kek(&store, &file, &ikm)?;
        drop(ikm);
        let keystore = store.open(&kek)?;
        crate::rekey::unseal_generations(client, &store, &kek, keystore, self.store.wait_timeout)
            .await
            .map(|(sealed, _)| sealed)
    }

    /// Runs the KDF plug-in (on a blocking thread) and returns the IKM.
    pub async fn ikm(&self) -> Result<Ikm, SetupError> {
        let kdf = self.kdf.clone();
        tokio::task::spawn_blocking(move || run_plugin(&kdf))
            .await
            .map_err(|e| SetupError::Config(format!("KDF plug-in thread failed: {e}")))?
            .map_err(SetupError::from)
    }

    /// The keystore directory.
    pub fn keystore_dir(&self) -> KeystoreDir {
        KeystoreDir::new(&self.keystore.dir)
    }

    /// Converges OpenBao to the configuration (the Shamir path: a store edgeseal does not start, or
    /// one supervised with `seal: shamir`; a static-sealed store boots with [`crate::seal::boot::open`]).
    pub async fn run(&self) -> Result<Report, SetupError> {
        self.converge(false).await.map(|(report, _)| report)
    }

    /// [`Setup::run`], also making this run's admin credential (with the run's root token, before it
    /// is revoked) for the admin socket of `run`.
    pub async fn run_for_server(&self) -> Result<(Report, Token), SetupError> {
        let (report, admin) = self.converge(true).await?;
        let admin = admin.ok_or_else(|| SetupError::Config("no admin credential was made".into()))?;
        Ok((report, admin))
    }

    /// An admin credential for a store that `setup` (or `run`) has set up, without converging it:
    /// `token-server` serves the admin socket with it. Made as `run` makes its own — with this run's
    /// privileged token (a login with edgeseal's client certificate for a static-sealed store, a root
    /// token generated from the keystore's shares otherwise), which is revoked before this returns.
    pub async fn admin_credential(&self) -> Result<Token, SetupError> {
        self.validate()?;
        let ikm = self.ikm().await?;
        let store = self.keystore_dir();
        let (keystore, kek) = store.open_with_ikm(&ikm)?;
        drop(ikm);
        if self.static_seal() {
            let material = crate::seal::material::SealMaterial::from_keystore(&keystore)
                .map_err(|e| SetupError::Config(e.to_string()))?
                .ok_or_else(|| {
                    SetupError::Config(format!(
                        "keystore {} holds no static seal material: `security-bootstrap run` sets this store up",
                        store.path().display()
                    ))
                })?;
            let identity = material.identity.client_identity().doing(|| "loading edgeseal's client identity".into())?;
            let client = self.tcp_client_as(Some(&identity))?;
            let token = crate::seal::boot::login(&client, self.store.wait_timeout, || false).await?;
            let admin = configure::admin_token(&client, &token).await;
            let revoked = client.revoke_self(&token).await.doing(|| "revoking the login token".into());
            return keep_if_revoked(&client, admin, revoked).await;
        }
        let client = self.client()?;
        unseal::wait_for_openbao(&client, self.store.wait_timeout).await?;
        let (root, _, _) = crate::rekey::obtain_root(self, &client, &store, &kek, keystore).await?;
        let admin = configure::admin_token(&client, &root.token).await;
        let revoked = client.revoke_self(&root.token).await.doing(|| "revoking this run's root token".into());
        if revoked.is_ok() {
            root::forget_pending(&store);
        }
        keep_if_revoked(&client, admin, revoked).await
    }

    async fn converge(&self, admin: bool) -> Result<(Report, Option<Token>), SetupError> {
        self.validate()?;
        if self.static_seal() {
            return Err(SetupError::Config(
                "a static-sealed OpenBao is opened by `security-bootstrap run`, which starts it; `setup` alone is for a store edgeseal does not start".into(),
            ));
        }
        let migrating = crate::seal::migrate::pending_marker(&self.keystore.dir);
        if migrating.exists() {
            return Err(SetupError::Config(format!(
                "a seal migration of this store was interrupted ({} exists): whatever this run wrote would be lost when it resumes. Finish it with `security-bootstrap migrate-seal` first",
                migrating.display()
            )));
        }
        let client = self.client()?;
        let health = unseal::wait_for_openbao(&client, self.store.wait_timeout).await?;
        crash::point("after-health");
        let ikm = self.ikm().await?;
        crash::point("after-kek");
        let store = self.keystore_dir();
        let mut report = Report::default();

        let (keystore, kek, init_root) = if health.initialized {
            let (keystore, kek) = self.open_keystore(&store, &ikm)?;
            (keystore, kek, None)
        } else {
            let (keystore, kek, root) = init::initialize(self, &client, &store, &ikm).await?;
            report.initialized = true;
            (keystore, kek, Some(root))
        };
        drop(ikm);

        let (unsealed, keystore) =
            crate::rekey::unseal_generations(&client, &store, &kek, keystore, self.store.wait_timeout).await?;
        report.unsealed = unsealed;
        crash::point("after-unseal");

        let root = match init_root {
            Some(token) => root::remember(&client, &store, root::Root { token, approle_ok: false }).await?,
            None => crate::rekey::obtain_root(self, &client, &store, &kek, keystore).await?.0,
        };
        crash::point("after-root");

        let bootstrap = Bootstrap::Approle { ok: root.approle_ok };
        let outcome = async {
            configure::converge(self, &client, &root.token, bootstrap, &store, &kek, &mut report).await?;
            match admin {
                true => configure::admin_token(&client, &root.token).await.map(Some),
                false => Ok(None),
            }
        }
        .await;
        crash::point("before-root-revoke");
        client.revoke_self(&root.token).await.doing(|| "revoking this run's root token".into())?;
        root::forget_pending(&store);
        let admin = outcome?;
        Ok((report, admin))
    }

    pub(crate) fn validate(&self) -> Result<(), SetupError> {
        self.store.validate().map_err(|e| SetupError::Config(e.to_string()))?;
        self.kdf.validate().map_err(|e| SetupError::Config(e.to_string()))
    }

    /// Opens the keystore of an initialized OpenBao; refuses, changing nothing, when it cannot.
    fn open_keystore(&self, store: &KeystoreDir, ikm: &Ikm) -> Result<(Keystore, Kek), SetupError> {
        let file = store.read()?;
        let Some(file) = file.filter(|f| f.secret_shares > 0) else {
            let marker = init::marker_path(&self.keystore.dir);
            if marker.exists() {
                return Err(SetupError::InitLost { address: self.store.address.clone(), marker });
            }
            return Err(SetupError::KeystoreMissing {
                address: self.store.address.clone(),
                path: store.path().to_path_buf(),
            });
        };
        let kek = file_kek(store, &file, ikm)?;
        let keystore = store.open(&kek)?;
        init::clear_stale_marker(&self.keystore.dir)?;
        Ok((keystore, kek))
    }
}

pub(crate) fn file_kek(store: &KeystoreDir, file: &KeystoreFile, ikm: &Ikm) -> Result<Kek, SetupError> {
    derive_file_kek(file, ikm)
        .map_err(|reason| SetupError::Keystore(KeystoreError::Corrupt { path: store.path().to_path_buf(), reason }))
}

/// The admin credential made with a privileged token, if that token was revoked; otherwise the
/// credential is revoked too and the failure returned (nothing privileged outlives an error).
async fn keep_if_revoked(
    client: &Client,
    admin: Result<Token, SetupError>,
    revoked: Result<(), SetupError>,
) -> Result<Token, SetupError> {
    match (admin, revoked) {
        (Ok(admin), Ok(())) => Ok(admin),
        (Ok(admin), Err(e)) => {
            if let Err(again) = client.revoke_self(&admin).await {
                tracing::warn!(error = %again, "revoking the admin credential failed; it expires within its period");
            }
            Err(e)
        }
        (Err(e), _) => Err(e),
    }
}
