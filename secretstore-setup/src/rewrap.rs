//! `keystore rewrap` (SPEC §13): moves the keystore to another KDF plug-in's KEK — a hardware
//! fingerprint to a TPM, or ahead of a planned board swap — while the old plug-in still answers.
//!
//! Converging, whatever a crash interrupted: the keystore already opens with the new plug-in →
//! nothing to do ([`Rewrapped::Already`]); it opens with the old one → every share and item is
//! re-encrypted under the new KEK with a fresh salt, in one atomic, durable replace under the
//! keystore's lock ([`KeystoreDir::rewrap`]); neither → [`RewrapError::NeitherOpens`], naming both,
//! with nothing written. The new plug-in must give the same answer twice before anything is written
//! (a plug-in whose answer drifts would lock the keystore for good). Neither IKM nor KEK touches a
//! disk; both are wiped from memory when dropped.

use std::path::PathBuf;

use kdf_plugins::kek::fingerprint;
use kdf_plugins::{run_plugin, KdfConfig, PluginError};
use thiserror::Error;

use crate::crash;
use crate::keystore::{derive_file_kek, kek_matches, BuildError, KeystoreDir, KeystoreError};

/// What a rewrap found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrapped {
    /// Re-encrypted under the new plug-in's KEK now.
    Now {
        /// How many unseal shares moved.
        shares: usize,
        /// How many other items moved.
        items: usize,
        /// The new KEK's fingerprint (not a secret; `keystore inspect` shows the same).
        fingerprint: String,
    },
    /// The keystore was already under the new plug-in's KEK (a rerun, or a rerun after a crash).
    Already {
        /// The KEK's fingerprint.
        fingerprint: String,
    },
}

/// Why a rewrap stopped; nothing was written.
#[derive(Debug, Error)]
pub enum RewrapError {
    /// Reading, checking or writing the keystore failed.
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
    /// The new plug-in does not answer.
    #[error("the new kdf plug-in {plugin} failed; the keystore was not changed: {source}")]
    NewPlugin {
        /// The new plug-in.
        plugin: PathBuf,
        /// Why.
        source: Box<PluginError>,
    },
    /// The keystore is not under the new KEK yet and the old plug-in does not answer.
    #[error("keystore {path} does not open with the new kdf plug-in {new}, and the old one ({old}, the kdf: section of the config) failed: {source}; a rewrap needs the old plug-in to still answer")]
    OldPlugin {
        /// The keystore file.
        path: PathBuf,
        /// The config's plug-in.
        old: PathBuf,
        /// The new plug-in.
        new: PathBuf,
        /// Why the old one failed.
        source: Box<PluginError>,
    },
    /// Neither plug-in's KEK opens the keystore.
    #[error("keystore {path} opens neither with the old kdf plug-in {old} (the kdf: section of the config) nor with the new one {new}; nothing was changed. Check that the config names the plug-in (and args) that wrote it, with `security-bootstrap keystore inspect --config …` and `kdf check`")]
    NeitherOpens {
        /// The keystore file.
        path: PathBuf,
        /// The config's plug-in.
        old: PathBuf,
        /// The new plug-in.
        new: PathBuf,
    },
    /// The new plug-in answered differently on two runs in a row.
    #[error("the new kdf plug-in {plugin} gave two different answers in a row; a keystore under its KEK could not be opened again, so nothing was changed")]
    Unstable {
        /// The new plug-in.
        plugin: PathBuf,
    },
    /// The keystore could not be rebuilt (the system random generator failed).
    #[error("cannot re-encrypt keystore {path}: {source}")]
    Build {
        /// The keystore file.
        path: PathBuf,
        /// Why.
        source: BuildError,
    },
}

/// Moves the keystore in `store` from the KEK of `old` (the config's `kdf:`) to the KEK of `new`.
pub fn rewrap(store: &KeystoreDir, old: &KdfConfig, new: &KdfConfig) -> Result<Rewrapped, RewrapError> {
    let path = store.path().to_path_buf();
    let file = store.read()?.ok_or_else(|| KeystoreError::Missing(path.clone()))?;
    let corrupt = |reason| KeystoreError::Corrupt { path: path.clone(), reason };
    let new_failed = |source| RewrapError::NewPlugin { plugin: new.plugin.clone(), source: Box::new(source) };

    let new_ikm = run_plugin(new).map_err(new_failed)?;
    let already = derive_file_kek(&file, &new_ikm).map_err(corrupt)?;
    if kek_matches(&file, &already) {
        return Ok(Rewrapped::Already { fingerprint: fingerprint(&already) });
    }
    drop(already);

    let old_ikm = run_plugin(old).map_err(|source| RewrapError::OldPlugin {
        path: path.clone(),
        old: old.plugin.clone(),
        new: new.plugin.clone(),
        source: Box::new(source),
    })?;
    let old_kek = derive_file_kek(&file, &old_ikm).map_err(corrupt)?;
    drop(old_ikm);
    if !kek_matches(&file, &old_kek) {
        return Err(RewrapError::NeitherOpens { path, old: old.plugin.clone(), new: new.plugin.clone() });
    }
    let keystore = store.open(&old_kek)?;
    crash::point("rewrap-after-old-kek");

    if run_plugin(new).map_err(new_failed)?.expose() != new_ikm.expose() {
        return Err(RewrapError::Unstable { plugin: new.plugin.clone() });
    }
    let moved = keystore.resalted().map_err(|source| RewrapError::Build { path: path.clone(), source })?;
    let new_kek = moved.derive_kek(&new_ikm);
    crash::point("rewrap-after-new-kek");

    store.rewrap(&old_kek, &moved, &new_kek)?;
    crash::point("rewrap-after-write");
    // What the next boot does: the new plug-in's answer opens the file as written.
    let (reopened, _) = store.open_with_ikm(&new_ikm)?;
    Ok(Rewrapped::Now {
        shares: reopened.shares().len(),
        items: reopened.item_names().count(),
        fingerprint: fingerprint(&new_kek),
    })
}
