//! Writing the PKI directory: atomic and durable, with exact modes and owners, for the price of three
//! filesystem syncs however many files there are.
//!
//! A run that writes goes through four phases, in this order (the names are the [`crate::crash`]
//! points between them):
//!
//! 1. **Stage.** Every file — `ca/*.pem`, each leaf's `key.pem` and `cert.pem` — is written to a temp
//!    file beside its target (`.pki-init-<name>.<random>.tmp`, created 0600 and exclusively, then given
//!    its owner and exact mode) through [`durable_file::stage_in`]. Nothing is fsynced and nothing is
//!    in place yet.
//! 2. **Sync the data** ([`durable_file::sync_filesystems`]: one `syncfs(2)` on the filesystem of
//!    `pki.dir`): every temp file's bytes and inode are on the disk. → `pki-after-sync`
//! 3. **The CA certificates and the leaf keys** are renamed into place, then synced again.
//!    → `pki-after-keys`
//! 4. **The leaf certificates** are renamed into place (→ `pki-after-certs`), leaves no longer
//!    configured are removed, and everything is synced a third time.
//!
//! Why a crash (or a power cut) at any instant loses nothing:
//! - *No name points at data that is not on the disk.* A rename happens only after the sync of phase
//!   2, so even if a power cut keeps a rename and drops everything written after it, the name points
//!   at the complete new file. Every file is therefore either its old version or its new one.
//! - *A certificate is never in place without its key and its CA.* A leaf's `cert.pem` is renamed only
//!   after the sync that ended phase 3, so when a new certificate is visible — after a process kill or
//!   after a power cut, whatever the filesystem keeps of unsynced renames — the key it certifies and the
//!   CA that issued it are too. (A new key beside the old certificate is possible, as it was when
//!   each file was written on its own: [`crate::scan`] sees that the key does not match and the next
//!   run reissues.) The CA keys are in the keystore before phase 1 ([`crate::ca_keys`]).
//! - *The next run converges from any of these states*: it removes the temp files a crash left
//!   (they may hold a private key; they are 0600 in a 0700 directory meanwhile), reissues leaves whose
//!   key and certificate disagree or whose chain does not lead to `ca/`, and replaces a CA it has no
//!   key for. `tests/crash.rs` kills a real process at each point and checks exactly that.
//!
//! Per file, this is what [`durable_file::write_in`] does with an fsync of its own; batched, the
//! fsyncs (each a journal commit on ext4) become one sync per phase. `syncfs` also writes whatever
//! else is waiting on that filesystem, which at boot is little; on tmpfs (the default `pki.dir`) it
//! is free. It reports writeback errors on Linux ≥ 5.8.

use std::fs::{self, DirBuilder, Permissions};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use durable_file::{Dir, Options, Staged};

use crate::config::PkiConfig;
use crate::crash;
use crate::error::PkiError;
use crate::issue::{Fresh, Issued};
use crate::pem;
use crate::plan::{Plan, Step};
use crate::report::Action;
use crate::scan::{io_err, CaCert, Disk, CA_DIR, CERT_FILE, INTERMEDIATE_FILE, KEY_FILE, ROOT_FILE, TEMP_PREFIX};

/// Mode of `pki.dir` and `ca/` when pki-init creates them: they hold only public certificates, and
/// services running as other users must reach `ca/ca.pem` and their own `<name>/`.
pub(crate) const PUBLIC_DIR_MODE: u32 = 0o755;
/// Mode of `<name>/`.
pub(crate) const LEAF_DIR_MODE: u32 = 0o700;
/// Mode of certificate files.
pub(crate) const CERT_MODE: u32 = 0o644;
/// Mode of `key.pem`.
pub(crate) const KEY_MODE: u32 = 0o600;

/// Writes what was issued — the CA first, then the leaves' keys, then their certificates, then
/// removals — in the phases described in the module documentation.
pub(crate) fn apply(config: &PkiConfig, disk: &Disk, plan: &Plan, fresh: &Fresh) -> Result<(), PkiError> {
    let dir = &config.dir;
    ensure_public_dir(dir)?;
    for temp in &disk.temps {
        remove_file(temp)?;
    }
    let ca_dir = dir.join(CA_DIR);
    // New CA certificates, or ones restored from the keystore.
    let pick = |new: &Option<Issued>, step: &Step, old: &Option<CaCert>| -> Option<Vec<u8>> {
        match (new, step.action, old) {
            (Some(new), _, _) => Some(new.der.clone()),
            (None, Action::Restored, Some(old)) => Some(old.facts.der.clone()),
            _ => None,
        }
    };
    let root = pick(&fresh.root, &plan.root, &disk.root);
    let intermediate = pick(&fresh.intermediate, &plan.intermediate, &disk.intermediate);
    let int_der: &[u8] = match (&fresh.intermediate, &disk.intermediate) {
        (Some(new), _) => &new.der,
        (None, Some(old)) => &old.facts.der,
        (None, None) => &[],
    };

    // Every directory written into, opened once.
    let top = open_dir(dir)?;
    let ca = if root.is_some() || intermediate.is_some() {
        ensure_public_dir(&ca_dir)?;
        Some(open_dir(&ca_dir)?)
    } else {
        None
    };
    let mut leaves = Vec::with_capacity(fresh.leaves.len());
    for (name, leaf) in &fresh.leaves {
        let owner = config.certs.get(name).and_then(|c| c.owner).map(|o| (o.uid, o.gid));
        let leaf_dir = dir.join(name.as_str());
        ensure_leaf_dir(&leaf_dir, owner)?;
        leaves.push((open_dir(&leaf_dir)?, leaf, owner));
    }
    let dirs = || std::iter::once(&top).chain(&ca).chain(leaves.iter().map(|(handle, _, _)| handle));

    // 1. Stage: every file to its temp name. `first` is renamed before `second` can be.
    let mut first = Vec::new();
    let mut second = Vec::with_capacity(leaves.len());
    if let Some(ca) = &ca {
        for (file, der) in [(ROOT_FILE, root), (INTERMEDIATE_FILE, intermediate)] {
            if let Some(der) = der {
                first.push(stage(ca, file, pem::encode_certs(&[&der]).as_bytes(), CERT_MODE, None)?);
            }
        }
    }
    for (handle, leaf, owner) in &leaves {
        let key = pem::encode_key(leaf.key.pair().serialized_der());
        first.push(stage(handle, KEY_FILE, key.expose().as_bytes(), KEY_MODE, *owner)?);
        let chain = pem::encode_certs(&[&leaf.der, int_der]);
        second.push(stage(handle, CERT_FILE, chain.as_bytes(), CERT_MODE, *owner)?);
    }

    // 2. The data of every temp file reaches the disk before any name points at it.
    sync(dirs())?;
    crash::point(crash::AFTER_SYNC);

    // 3. The CA and the keys in place, durably, before any certificate that needs them.
    commit(first)?;
    sync(dirs())?;
    crash::point(crash::AFTER_KEYS);

    // 4. The certificates; then what is no longer configured goes; then the renames and removals
    //    reach the disk.
    commit(second)?;
    crash::point(crash::AFTER_CERTS);
    for stale in disk.stale.iter().filter(|s| plan.removed.contains(&s.name)) {
        for file in &stale.files {
            remove_file(file)?;
        }
        remove_dir(&stale.path)?;
    }
    sync(dirs())
}

/// Creates `path` (and missing parents) with `mode` if it does not exist. An existing directory keeps
/// its mode: [`crate::scan`] has already checked that nobody else can write to it.
pub(crate) fn ensure_public_dir(path: &Path) -> Result<(), PkiError> {
    if path.is_dir() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(PUBLIC_DIR_MODE)
        .create(path)
        .map_err(|e| io_err("creating directory", path, e))?;
    fs::set_permissions(path, Permissions::from_mode(PUBLIC_DIR_MODE))
        .map_err(|e| io_err("setting the mode of", path, e))
}

/// Creates or fixes a leaf directory: mode 0700, owned by `owner` if given.
pub(crate) fn ensure_leaf_dir(path: &Path, owner: Option<(u32, u32)>) -> Result<(), PkiError> {
    match DirBuilder::new().mode(LEAF_DIR_MODE).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => {}
        Err(e) => return Err(io_err("creating directory", path, e)),
    }
    fs::set_permissions(path, Permissions::from_mode(LEAF_DIR_MODE))
        .map_err(|e| io_err("setting the mode of", path, e))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|e| io_err("changing the owner of", path, e))?;
    }
    Ok(())
}

fn open_dir(path: &Path) -> Result<Dir, PkiError> {
    Dir::open(path).map_err(durable_error)
}

/// Writes `bytes` to a temp file beside `dir/name` with `mode` and `owner`; not synced, not in place.
fn stage<'a>(
    dir: &'a Dir,
    name: &str,
    bytes: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> Result<Staged<'a>, PkiError> {
    let options = Options::with_mode(mode).maybe_owner(owner).temp_prefix(&format!("{TEMP_PREFIX}{name}."));
    durable_file::stage_in(dir, name, bytes, &options).map_err(durable_error)
}

/// Renames staged files into place, in order.
fn commit(staged: Vec<Staged<'_>>) -> Result<(), PkiError> {
    for file in staged {
        file.commit().map_err(durable_error)?;
    }
    Ok(())
}

/// Makes everything written into `dirs` so far durable: one `syncfs` per filesystem among them.
fn sync<'a>(dirs: impl Iterator<Item = &'a Dir>) -> Result<(), PkiError> {
    durable_file::sync_filesystems(dirs).map_err(durable_error)
}

fn durable_error(e: durable_file::Error) -> PkiError {
    io_err(e.op, &e.path, e.source)
}

/// Removes a file pki-init wrote (a stale leaf's file or a crash's temp file).
pub(crate) fn remove_file(path: &Path) -> Result<(), PkiError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("removing", path, e)),
    }
}

/// Removes an empty leaf directory.
pub(crate) fn remove_dir(path: &Path) -> Result<(), PkiError> {
    fs::remove_dir(path).map_err(|e| io_err("removing directory", path, e))
}
