//! The keystore directory on disk: `<dir>/keystore.json`, mode 0600 in a 0700 directory.
//!
//! Writes are atomic and durable ([`durable_file`]: a temp file beside the target, fsync, rename — or a
//! no-clobber move for a first write — fsync the directory), so a crash at any instant leaves the old
//! file or the new one, never a mix. A keystore is never replaced by one with different unseal shares.
//!
//! Every write is a read-modify-write under an exclusive `flock` on the directory itself, so two
//! writers (setup and `pki`, two setups) take turns instead of losing one's update: a second writer
//! waits up to [`LOCK_WAIT`] (off the async runtime's workers, see `without_stalling_the_runtime`), then
//! fails with [`KeystoreError::Locked`]. Readers take no lock: they
//! always see a whole file, the old one or the new one.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use durable_file::{Dir, Options, Outcome};
use kdf_plugins::{Ikm, Kek};
use thiserror::Error;

use super::format::{FormatError, KeystoreFile, MAX_FILE_LEN};
use super::{derive_file_kek, open, BuildError, Keystore, OpenError};

/// The keystore's file name inside its directory.
pub const FILE_NAME: &str = "keystore.json";
const TEMP_PREFIX: &str = ".keystore.json.";
/// How long a writer waits for another writer's lock on the keystore directory.
pub const LOCK_WAIT: Duration = Duration::from_secs(30);
/// How often a waiting writer tries the lock again.
const LOCK_POLL: Duration = Duration::from_millis(10);

/// A failure reading or writing the keystore, naming the path and what to do.
#[derive(Debug, Error)]
pub enum KeystoreError {
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
    /// No keystore where one is needed.
    #[error("no keystore at {0}: run `security-bootstrap setup` first, or restore the keystore from a backup")]
    Missing(PathBuf),
    /// Another writer held the directory's lock for longer than [`LOCK_WAIT`].
    #[error("keystore directory {path} stayed locked by another edgeseal process for {}; check for a hung `security-bootstrap` holding it (`fuser -v {}`) and retry", humantime::format_duration(*.waited), .path.display())]
    Locked {
        /// The directory.
        path: PathBuf,
        /// How long this writer waited.
        waited: Duration,
    },
    /// The directory is not private to edgeseal.
    #[error("keystore directory {path} is not private (owner uid {uid}, mode {mode:04o}); it must be owned by uid {euid} with mode 0700")]
    UnsafeDir {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        uid: u32,
        /// Its mode.
        mode: u32,
        /// edgeseal's uid.
        euid: u32,
    },
    /// The file is damaged or was edited.
    #[error("keystore {path} is corrupted or was tampered with: {reason}; restore it from a backup")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: FormatError,
    },
    /// A version this build cannot read.
    #[error("keystore {path} has format version {version}, which this edgeseal cannot read; use the edgeseal release that wrote it or a newer one")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// Its version.
        version: u64,
    },
    /// The KEK does not open the file.
    #[error("the KEK does not open keystore {path}: the hardware or the KDF plug-in changed since it was written (compare `security-bootstrap kdf check` with the plug-in that created it; after a `keystore rewrap` the kdf: section must name the plug-in it moved to)")]
    WrongKek {
        /// The file.
        path: PathBuf,
    },
    /// Refusing to overwrite a different keystore.
    #[error("keystore {path} already exists and holds different keys; refusing to overwrite it (move it away only if you are sure it is not needed to unseal)")]
    AlreadyExists {
        /// The file.
        path: PathBuf,
    },
    /// The keystore changed on disk between read and write.
    #[error("keystore {path} changed on disk while edgeseal was updating it; retry")]
    Concurrent {
        /// The file.
        path: PathBuf,
    },
    /// Invalid content to write.
    #[error("cannot build keystore {path}: {source}")]
    Build {
        /// The file.
        path: PathBuf,
        /// Why.
        source: BuildError,
    },
}

/// Whether [`KeystoreDir::create`] wrote a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// A new keystore was written.
    Written,
    /// The same bytes were already there (a rerun after a crash).
    AlreadyPresent,
}

/// The directory holding `keystore.json`.
#[derive(Debug, Clone)]
pub struct KeystoreDir {
    dir: PathBuf,
    file: PathBuf,
}

impl KeystoreDir {
    /// Refers to a keystore directory; touches nothing.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        let file = dir.join(FILE_NAME);
        Self { dir, file }
    }

    /// The keystore file's path.
    pub fn path(&self) -> &Path {
        &self.file
    }

    /// Reads and checks the keystore file; `None` when there is none.
    pub fn read(&self) -> Result<Option<KeystoreFile>, KeystoreError> {
        let Some(bytes) = self.read_bytes()? else {
            return Ok(None);
        };
        KeystoreFile::parse(&bytes).map(Some).map_err(|reason| self.format_error(reason))
    }

    /// Reads, checks and decrypts the keystore with `kek`.
    pub fn open(&self, kek: &Kek) -> Result<Keystore, KeystoreError> {
        let file = self.read()?.ok_or_else(|| KeystoreError::Missing(self.file.clone()))?;
        open(&file, kek).map_err(|e| self.open_error(e))
    }

    /// The one way to open the keystore from the KDF plug-in's IKM: reads and checks the file, derives
    /// its KEK with the file's own salt and info, and decrypts it. Returns the keystore and the KEK
    /// (for later [`KeystoreDir::update`]s). Errors say what the operator should do: no keystore
    /// ([`KeystoreError::Missing`]), a different plug-in or hardware ([`KeystoreError::WrongKek`]), a
    /// damaged file ([`KeystoreError::Corrupt`]).
    pub fn open_with_ikm(&self, ikm: &Ikm) -> Result<(Keystore, Kek), KeystoreError> {
        let file = self.read()?.ok_or_else(|| KeystoreError::Missing(self.file.clone()))?;
        let kek = derive_file_kek(&file, ikm).map_err(|reason| self.format_error(reason))?;
        let keystore = open(&file, &kek).map_err(|e| self.open_error(e))?;
        Ok((keystore, kek))
    }

    /// Writes a first keystore. Never replaces an existing file: if one exists with the very same bytes
    /// (the same sealed file written twice) that is success; with other bytes — including the same keys
    /// sealed again, since nonces are fresh — it is [`KeystoreError::AlreadyExists`].
    pub fn create(&self, file: &KeystoreFile) -> Result<Created, KeystoreError> {
        let dir = self.lock()?;
        let bytes = file.to_bytes();
        match durable_file::write_in(&dir, FILE_NAME, &bytes, &self.write_options().no_clobber()) {
            Ok(Outcome::Written) => {
                dir.sync().map_err(durable_error)?;
                Ok(Created::Written)
            }
            Ok(Outcome::Exists) => match self.read_bytes()? {
                Some(existing) if existing == bytes => Ok(Created::AlreadyPresent),
                _ => Err(KeystoreError::AlreadyExists { path: self.file.clone() }),
            },
            Err(e) => Err(durable_error(e)),
        }
    }

    /// Changes the secret items of the existing keystore: decrypts it with `kek`, lets `change` edit
    /// the items (the shares cannot be edited), re-encrypts with fresh nonces and replaces the file
    /// atomically. The whole read-modify-write holds the directory's lock, so a concurrent writer's
    /// change is never lost: it waits (up to [`LOCK_WAIT`]) and then applies its change to this one's
    /// result. Fails if the file changed on disk in between anyway (a writer that takes no lock).
    pub fn update(
        &self,
        kek: &Kek,
        change: impl FnOnce(&mut Keystore) -> Result<(), BuildError>,
    ) -> Result<Keystore, KeystoreError> {
        self.rewrite(kek, false, change)
    }

    /// Makes the keystore's pending generation of unseal shares (a Shamir rekey's, see
    /// [`super::pending`]) its current shares, durably: the one way shares ever change. Only once
    /// OpenBao opens with them.
    pub fn promote_pending_shares(&self, kek: &Kek) -> Result<Keystore, KeystoreError> {
        self.rewrite(kek, true, Keystore::promote_pending_shares)
    }

    fn rewrite(
        &self,
        kek: &Kek,
        promote: bool,
        change: impl FnOnce(&mut Keystore) -> Result<(), BuildError>,
    ) -> Result<Keystore, KeystoreError> {
        let dir = self.lock()?;
        let before = self.read_bytes()?.ok_or_else(|| KeystoreError::Missing(self.file.clone()))?;
        let current = KeystoreFile::parse(&before).map_err(|reason| self.format_error(reason))?;
        let mut keystore = open(&current, kek).map_err(|e| self.open_error(e))?;
        let (shares, threshold, salt) = (keystore.shares.clone(), keystore.threshold, keystore.salt);
        change(&mut keystore).map_err(|source| KeystoreError::Build { path: self.file.clone(), source })?;
        // Shares may be filled in once (a keystore made before init); never changed afterwards.
        let shares_kept = keystore.shares == shares && keystore.threshold == threshold;
        if (!shares.is_empty() && !shares_kept && !promote) || keystore.salt != salt {
            return Err(KeystoreError::AlreadyExists { path: self.file.clone() });
        }
        let sealed = keystore.seal(kek).map_err(|source| KeystoreError::Build { path: self.file.clone(), source })?;
        if self.read_bytes()?.as_deref() != Some(before.as_slice()) {
            return Err(KeystoreError::Concurrent { path: self.file.clone() });
        }
        durable_file::write_in(&dir, FILE_NAME, &sealed.to_bytes(), &self.write_options()).map_err(durable_error)?;
        dir.sync().map_err(durable_error)?;
        Ok(keystore)
    }

    /// Moves the keystore to another KEK (`keystore rewrap`): under the directory's lock, decrypts the
    /// file with `old` — it must still hold exactly `moved`'s shares and items, else
    /// [`KeystoreError::Concurrent`] (another writer changed it since `moved` was read: retry) — and
    /// replaces it atomically and durably with `moved` sealed under `new`, fresh nonces. `moved` is a
    /// [`Keystore::resalted`] copy and `new` its KEK ([`Keystore::derive_kek`]). A crash leaves the
    /// old file (opened by `old`) or the new one (opened by `new`), never a mix.
    pub fn rewrap(&self, old: &Kek, moved: &Keystore, new: &Kek) -> Result<(), KeystoreError> {
        let dir = self.lock()?;
        let before = self.read_bytes()?.ok_or_else(|| KeystoreError::Missing(self.file.clone()))?;
        let current = KeystoreFile::parse(&before).map_err(|reason| self.format_error(reason))?;
        let keystore = open(&current, old).map_err(|e| self.open_error(e))?;
        if !keystore.same_contents(moved) {
            return Err(KeystoreError::Concurrent { path: self.file.clone() });
        }
        let sealed = moved.seal(new).map_err(|source| KeystoreError::Build { path: self.file.clone(), source })?;
        durable_file::write_in(&dir, FILE_NAME, &sealed.to_bytes(), &self.write_options()).map_err(durable_error)?;
        dir.sync().map_err(durable_error)?;
        Ok(())
    }

    /// Makes the directory private if needed, then takes its exclusive lock (released when the
    /// returned handle is dropped, or by the kernel when the process dies: a crash leaves no stale
    /// lock). Temp files are swept only under the lock, never from under another writer.
    fn lock(&self) -> Result<Dir, KeystoreError> {
        self.ensure_private_dir()?;
        let dir = Dir::open(&self.dir).map_err(durable_error)?;
        let try_lock = || rustix::fs::flock(&dir, rustix::fs::FlockOperation::NonBlockingLockExclusive);
        match try_lock() {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK | rustix::io::Errno::INTR) => {
                without_stalling_the_runtime(|| self.wait_for_lock(try_lock))?;
            }
            Err(e) => return Err(self.io("locking", &self.dir, e.into())),
        }
        self.remove_stale_temps();
        Ok(dir)
    }

    /// Polls `try_lock` for up to [`LOCK_WAIT`]: another writer holds the lock.
    fn wait_for_lock(&self, try_lock: impl Fn() -> rustix::io::Result<()>) -> Result<(), KeystoreError> {
        let started = Instant::now();
        loop {
            match try_lock() {
                Ok(()) => return Ok(()),
                Err(rustix::io::Errno::WOULDBLOCK | rustix::io::Errno::INTR) if started.elapsed() < LOCK_WAIT => {
                    std::thread::sleep(LOCK_POLL);
                }
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    return Err(KeystoreError::Locked { path: self.dir.clone(), waited: started.elapsed() })
                }
                Err(e) => return Err(self.io("locking", &self.dir, e.into())),
            }
        }
    }

    fn write_options(&self) -> Options {
        Options::private().temp_prefix(TEMP_PREFIX)
    }

    fn read_bytes(&self) -> Result<Option<Vec<u8>>, KeystoreError> {
        let file = match File::open(&self.file) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io("opening", &self.file, e)),
        };
        let mut bytes = Vec::new();
        // Read one byte past the limit so that an oversized file is reported as such.
        let limit = u64::try_from(MAX_FILE_LEN + 1).unwrap_or(u64::MAX);
        file.take(limit).read_to_end(&mut bytes).map_err(|e| self.io("reading", &self.file, e))?;
        Ok(Some(bytes))
    }

    /// Creates the directory 0700 if needed; refuses one that others can read or write.
    pub fn prepare(&self) -> Result<(), KeystoreError> {
        self.ensure_private_dir()
    }

    /// The keystore directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn ensure_private_dir(&self) -> Result<(), KeystoreError> {
        match fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.dir) {
            Ok(()) => {}
            Err(e) => return Err(self.io("creating directory", &self.dir, e)),
        }
        let meta = fs::metadata(&self.dir).map_err(|e| self.io("inspecting", &self.dir, e))?;
        let euid = nix::unistd::geteuid().as_raw();
        let mode = meta.permissions().mode() & 0o7777;
        if meta.uid() != euid || mode & 0o077 != 0 {
            return Err(KeystoreError::UnsafeDir { path: self.dir.clone(), uid: meta.uid(), mode, euid });
        }
        Ok(())
    }

    /// Temp files left by a crash hold only ciphertext; remove them so they do not pile up. Called
    /// with the directory's lock held, so no other writer's temp file is in flight.
    fn remove_stale_temps(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else { return };
        for entry in entries.flatten() {
            if durable_file::is_temp_name(&entry.file_name().to_string_lossy(), TEMP_PREFIX) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    fn io(&self, op: &'static str, path: &Path, source: io::Error) -> KeystoreError {
        KeystoreError::Io { op, path: path.to_path_buf(), source }
    }

    fn format_error(&self, reason: FormatError) -> KeystoreError {
        match reason {
            FormatError::UnsupportedVersion(version) => {
                KeystoreError::UnsupportedVersion { path: self.file.clone(), version }
            }
            reason => KeystoreError::Corrupt { path: self.file.clone(), reason },
        }
    }

    /// Maps a decryption failure to the error the operator needs.
    pub fn open_error(&self, error: OpenError) -> KeystoreError {
        match error {
            OpenError::WrongKek => KeystoreError::WrongKek { path: self.file.clone() },
            OpenError::ItemTampered { purpose, index } => KeystoreError::Corrupt {
                path: self.file.clone(),
                reason: FormatError::Invalid(format!("item {purpose}/{index} failed authentication")),
            },
            OpenError::Format(reason) => self.format_error(reason),
        }
    }
}

fn durable_error(e: durable_file::Error) -> KeystoreError {
    KeystoreError::Io { op: e.op, path: e.path, source: e.source }
}

/// Runs a blocking wait (for another writer's lock, up to [`LOCK_WAIT`]) without stalling the async
/// runtime setup runs on: on a multi-thread tokio worker the other tasks (the token server, the
/// watchdog, the signal handler) move to other workers meanwhile (`block_in_place`). Outside tokio, on
/// a blocking-pool thread, or on a current-thread runtime (the one-shot `setup` command, where setup
/// is the only task) it simply blocks this thread.
fn without_stalling_the_runtime<T>(wait: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(wait)
        }
        _ => wait(),
    }
}

#[cfg(test)]
mod lock_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::keystore::Keystore;
    use crate::secret::{SecretBytes, UnsealShare};

    /// While another writer holds the lock, a keystore update waiting on a runtime worker leaves the
    /// runtime free: here the task that releases the lock needs that runtime (one worker) to run.
    #[test]
    fn waiting_for_the_lock_does_not_stall_the_runtime() {
        let tmp = tempfile::tempdir().unwrap();
        let store = KeystoreDir::new(tmp.path().join("ks"));
        let kek = Kek::from_bytes([7; 32]);
        let shares = (1..=3u8).map(|i| UnsealShare::new(vec![i; 33])).collect();
        store.create(&Keystore::new(shares, 2).unwrap().seal(&kek).unwrap()).unwrap();
        let held = File::open(store.path().parent().unwrap()).unwrap();
        rustix::fs::flock(&held, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();

        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let updated = runtime.block_on(async move {
            let (waiting_tx, waiting_rx) = tokio::sync::oneshot::channel::<()>();
            let release = tokio::spawn(async move {
                let _ = waiting_rx.await;
                drop(held);
            });
            let update = tokio::spawn(async move {
                let _ = waiting_tx.send(());
                store.update(&kek, |k| k.set_item("probe", SecretBytes::new(b"x".to_vec())))
            });
            let updated = update.await.unwrap();
            release.await.unwrap();
            updated
        });
        assert!(updated.is_ok(), "the lock holder could run and release it: {updated:?}");
    }
}
