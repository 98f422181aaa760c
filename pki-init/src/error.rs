//! [`PkiError`]: why [`crate::run`] or [`crate::check`] stopped. Every variant names the entry.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

use crate::config::PkiConfigError;
use crate::keystore::KeyStoreError;

/// A run or check that could not complete. Apart from [`PkiError::Io`] during writing and
/// [`PkiError::Keystore`] on save, every error is found before anything is written.
#[derive(Debug, Error)]
pub enum PkiError {
    /// The configuration does not validate.
    #[error("invalid pki configuration: {0}")]
    Config(#[from] PkiConfigError),
    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// `pki.dir` or `pki.dir/ca` could be changed by someone other than pki-init.
    #[error("{path} is not safe for the PKI (owner uid {uid}, mode {mode:04o}): it must belong to uid {euid} and not be writable by group or others")]
    UnsafeDir {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        uid: u32,
        /// Its mode.
        mode: u32,
        /// pki-init's uid.
        euid: u32,
    },
    /// Something in the PKI directory that pki-init did not put there.
    #[error("unexpected {kind} {path}: pki-init owns {dir} and keeps only ca/ and one directory per configured certificate there; move it away")]
    Foreign {
        /// The entry.
        path: PathBuf,
        /// `file`, `directory`, `symlink`, …
        kind: &'static str,
        /// `pki.dir`.
        dir: PathBuf,
    },
    /// A file of the PKI that does not parse.
    #[error("{path} is corrupted: {reason}; remove it and rerun to have it issued again")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `pki.ca_keys: keystore` but the caller passed no keystore.
    #[error("pki.ca_keys is keystore but pki-init was given no keystore to keep the CA keys in")]
    KeystoreMissing,
    /// The keystore failed.
    #[error("{op} keystore item {item}: {source}")]
    Keystore {
        /// `loading` or `saving`.
        op: &'static str,
        /// The item name(s).
        item: String,
        /// The keystore's error.
        source: KeyStoreError,
    },
    /// A keystore item that is not a private key pki-init can use.
    #[error("keystore item {item} is not a usable CA private key: {reason}")]
    KeystoreItem {
        /// The item name.
        item: String,
        /// What is wrong.
        reason: String,
    },
    /// A configured owner that this process cannot give files to.
    #[error("pki.certs.{name}.owner is {uid}:{gid}, but only root can give files to another user or group (pki-init runs as uid {euid})")]
    Owner {
        /// The certificate.
        name: String,
        /// Configured uid.
        uid: u32,
        /// Configured gid.
        gid: u32,
        /// pki-init's uid.
        euid: u32,
    },
    /// rcgen refused to build a certificate or key.
    #[error("generating {what}: {source}")]
    Generate {
        /// Which certificate.
        what: String,
        /// rcgen's error.
        source: rcgen::Error,
    },
    /// The OS random generator failed.
    #[error("the system random generator failed: {0}")]
    Random(String),
    /// A validity that cannot be expressed (past year 9999) or that would outlive its issuer.
    #[error("refusing to issue {what}: {reason}")]
    Validity {
        /// Which certificate.
        what: String,
        /// Why.
        reason: String,
    },
}
