//! Writing the PKI directory: atomic and durable, with exact modes and owners.
//!
//! Each file goes through [`durable_file`]: a temp file beside its target (`.pki-init-<name>.*.tmp`),
//! given its owner and exact mode, fsynced and renamed into place; each directory touched is fsynced
//! once afterwards. A crash leaves every file either old or new, and the next run converges from there.

use std::fs::{self, DirBuilder, Permissions};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use durable_file::{Dir, Options};

use crate::config::{CertName, PkiConfig};
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
/// Threads writing leaves at once.
const WRITERS: usize = 8;

/// Writes what was issued: the CA first, then the leaves, then removals.
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
    if root.is_some() || intermediate.is_some() {
        ensure_public_dir(&ca_dir)?;
        for (file, der) in [(ROOT_FILE, root), (INTERMEDIATE_FILE, intermediate)] {
            if let Some(der) = der {
                write_file(&ca_dir, file, pem::encode_certs(&[&der]).as_bytes(), CERT_MODE, None)?;
            }
        }
        sync_dir(&ca_dir)?;
    }
    let int_der: &[u8] = match (&fresh.intermediate, &disk.intermediate) {
        (Some(new), _) => &new.der,
        (None, Some(old)) => &old.facts.der,
        (None, None) => &[],
    };
    // Leaves are independent: write them from a few threads, so that on a disk their fsyncs share
    // journal commits instead of waiting for one each.
    let write_leaf = |(name, leaf): (&CertName, &Issued)| -> Result<(), PkiError> {
        let owner = config.certs.get(name).and_then(|c| c.owner).map(|o| (o.uid, o.gid));
        let leaf_dir = dir.join(name.as_str());
        ensure_leaf_dir(&leaf_dir, owner)?;
        let key = pem::encode_key(leaf.key.pair().serialized_der());
        write_file(&leaf_dir, KEY_FILE, key.expose().as_bytes(), KEY_MODE, owner)?;
        let chain = pem::encode_certs(&[&leaf.der, int_der]);
        write_file(&leaf_dir, CERT_FILE, chain.as_bytes(), CERT_MODE, owner)?;
        sync_dir(&leaf_dir)
    };
    let leaves: Vec<(&CertName, &Issued)> = fresh.leaves.iter().collect();
    let per_writer = leaves.len().div_ceil(WRITERS).max(1);
    std::thread::scope(|scope| {
        let writers: Vec<_> = leaves
            .chunks(per_writer)
            .map(|part| scope.spawn(move || part.iter().copied().try_for_each(write_leaf)))
            .collect();
        writers.into_iter().try_for_each(|w| w.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    })?;
    for stale in disk.stale.iter().filter(|s| plan.removed.contains(&s.name)) {
        for file in &stale.files {
            remove_file(file)?;
        }
        remove_dir(&stale.path)?;
    }
    sync_dir(dir)?;
    Ok(())
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

/// Replaces `dir/name` with `bytes` atomically: temp file with `mode` and `owner`, fsync, rename.
/// The caller fsyncs `dir` once all its files are written.
pub(crate) fn write_file(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> Result<(), PkiError> {
    let options = Options::with_mode(mode).maybe_owner(owner).temp_prefix(&format!("{TEMP_PREFIX}{name}."));
    let handle = Dir::open(dir).map_err(durable_error)?;
    durable_file::write_in(&handle, name, bytes, &options).map_err(durable_error)?;
    Ok(())
}

/// fsyncs a directory so that renames and removals in it survive a power cut.
pub(crate) fn sync_dir(path: &Path) -> Result<(), PkiError> {
    durable_file::sync_dir(path).map_err(durable_error)
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
