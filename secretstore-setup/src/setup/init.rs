//! First initialization: `sys/init`, then the shares go to the keystore before anything else.
//!
//! The one window in which a crash loses the shares is between OpenBao's answer to `sys/init` and
//! the keystore's fsync. edgeseal makes it as small as it can (everything that can fail is checked
//! before `sys/init`: the plug-in answered, the KEK is derived, the keystore directory is private and
//! writable) and marks it on disk, so that a run after such a crash says exactly what happened instead
//! of "keystore missing".

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use kdf_plugins::{Ikm, Kek};
use openbao_client::retry::{retry, Attempt, Backoff};
use openbao_client::{Client, Token};

use super::{file_kek, Doing, Setup, SetupError};
use crate::crash;
use crate::keystore::KeystoreDir;
use crate::{Keystore, UnsealShare};

/// The marker written just before `sys/init` and removed once the shares are durable.
pub fn marker_path(keystore_dir: &Path) -> PathBuf {
    keystore_dir.join("init-pending")
}

/// Initializes OpenBao and stores its shares; returns the keystore, its KEK and the init root token.
pub async fn initialize(
    setup: &Setup,
    client: &Client,
    store: &KeystoreDir,
    ikm: &Ikm,
) -> Result<(Keystore, Kek, Token), SetupError> {
    let existing = store.read()?;
    let (keystore, kek) = match &existing {
        Some(file) if file.secret_shares > 0 => {
            return Err(SetupError::KeystoreForAnotherStore {
                path: store.path().to_path_buf(),
                address: setup.store.address.clone(),
            });
        }
        // A keystore made before init (e.g. holding the PKI's CA keys): the shares join it.
        Some(file) => {
            let kek = file_kek(store, file, ikm)?;
            (store.open(&kek)?, kek)
        }
        None => {
            let keystore = Keystore::without_shares().map_err(|e| SetupError::Config(e.to_string()))?;
            let kek = keystore.derive_kek(ikm);
            (keystore, kek)
        }
    };
    store.prepare()?;
    let marker = marker_path(store.dir());
    write_marker(&marker, &setup.store.address)?;

    crash::point("before-init");
    let init = client
        .init(setup.store.shares, setup.store.threshold)
        .await
        .doing(|| format!("initializing OpenBao at {}", setup.store.address))?;
    crash::point("after-init");

    let shares: Vec<UnsealShare> = init.shares.iter().map(|s| UnsealShare::new(s.expose().to_vec())).collect();
    // From here on the shares exist only in this process: a failed write is retried (the disk may be
    // full for a moment, another writer may have raced us), never given up quickly.
    let backoff =
        Backoff::within(SHARE_WRITE_PATIENCE, std::time::Duration::from_secs(1), std::time::Duration::from_secs(1));
    let (keystore, kek) = retry(backoff, || {
        let fresh = keystore.clone();
        let kek = &kek;
        let shares = &shares;
        async move {
            match store_shares(setup, store, ikm, fresh, kek, shares) {
                Ok(stored) => Attempt::Done(stored),
                Err(e) => {
                    tracing::error!(error = %e, "cannot store the unseal shares yet; retrying (do not stop edgeseal now)");
                    Attempt::Retry(e)
                }
            }
        }
    })
    .await?;
    crash::point("after-keystore");
    remove_durably(&marker)?;
    tracing::info!(keystore = %store.path().display(), shares = setup.store.shares, "initialized OpenBao; unseal shares stored encrypted");
    Ok((keystore, kek, init.root_token))
}

/// How long a run keeps retrying to store freshly initialized shares before giving up.
const SHARE_WRITE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(300);

/// Stores the shares: into the keystore that exists now (made before init, without shares) or a new
/// one. Re-reads the directory each time, so it also works after a concurrent writer.
fn store_shares(
    setup: &Setup,
    store: &KeystoreDir,
    ikm: &Ikm,
    fresh: Keystore,
    fresh_kek: &Kek,
    shares: &[UnsealShare],
) -> Result<(Keystore, Kek), SetupError> {
    let threshold = setup.store.threshold;
    match store.read()? {
        Some(file) if file.secret_shares > 0 => Err(SetupError::KeystoreForAnotherStore {
            path: store.path().to_path_buf(),
            address: setup.store.address.clone(),
        }),
        Some(file) => {
            let kek = file_kek(store, &file, ikm)?;
            let keystore = store.update(&kek, |k| k.set_shares(shares.to_vec(), threshold))?;
            Ok((keystore, kek))
        }
        None => {
            let mut keystore = fresh;
            keystore.set_shares(shares.to_vec(), threshold).map_err(|e| SetupError::Config(e.to_string()))?;
            let sealed = keystore.seal(fresh_kek).map_err(|e| SetupError::Config(e.to_string()))?;
            store.create(&sealed)?;
            Ok((keystore, Kek::from_bytes(*fresh_kek.expose())))
        }
    }
}

fn write_marker(path: &Path, address: &str) -> Result<(), SetupError> {
    let io = |source| SetupError::Io { doing: "writing the init marker", path: path.to_path_buf(), source };
    let mut file = OpenOptions::new().write(true).create(true).truncate(true).open(path).map_err(io)?;
    writeln!(file, "edgeseal is initializing OpenBao at {address}; if this file survives, the run was interrupted")
        .map_err(io)?;
    file.sync_all().map_err(io)?;
    sync_parent(path)
}

/// Removes a marker left by a run killed after the shares were stored (they are safe: nothing lost).
pub fn clear_stale_marker(keystore_dir: &Path) -> Result<(), SetupError> {
    remove_durably(&marker_path(keystore_dir))
}

fn remove_durably(path: &Path) -> Result<(), SetupError> {
    match fs::remove_file(path) {
        Ok(()) => sync_parent(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(SetupError::Io { doing: "removing the init marker", path: path.to_path_buf(), source }),
    }
}

pub(crate) fn sync_parent(path: &Path) -> Result<(), SetupError> {
    durable_file::sync_parent(path).map_err(|e| SetupError::Io {
        doing: "syncing directory",
        path: e.path,
        source: e.source,
    })
}
