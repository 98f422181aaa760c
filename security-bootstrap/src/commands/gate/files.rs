//! The files `gate --secret-file` writes: only on a memory-backed filesystem (a tmpfs, unless
//! `--allow-disk`), 0600 and owned by the app's user, replaced atomically on a rotation, removed when
//! the app has exited.

use std::path::Path;

use anyhow::{bail, Context};
use nix::sys::statfs::{statfs, FsType, TMPFS_MAGIC};

/// ramfs (linux/magic.h; nix has no constant for it).
const RAMFS_MAGIC: FsType = FsType(0x8584_58f6);

/// Whether a filesystem keeps nothing once the machine is off.
pub fn memory_backed(kind: FsType) -> bool {
    kind == TMPFS_MAGIC || kind == RAMFS_MAGIC
}

/// Refuses a file whose directory is missing, or (unless `allow_disk`) on a persistent filesystem:
/// a secret written there outlives the app, the container and a power cut.
pub fn check_place(path: &Path, allow_disk: bool) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let fs = statfs(dir).with_context(|| {
        format!("--secret-file {}: its directory {} cannot be examined (does it exist?)", path.display(), dir.display())
    })?;
    if !allow_disk && !memory_backed(fs.filesystem_type()) {
        bail!(crate::UsageError(format!(
            "--secret-file {}: {} is on a persistent filesystem, so the secret would stay on disk; mount a tmpfs \
             there (compose: `tmpfs: [{}]`, or `mount -t tmpfs -o mode=0700 tmpfs {}`) or pass --allow-disk",
            path.display(),
            dir.display(),
            dir.display(),
            dir.display(),
        )));
    }
    Ok(())
}

/// Writes `text` to `path` atomically: a new 0600 file owned by `owner` (default: this process's
/// user) renamed over whatever was there (a symlink is replaced, never followed), so the app never
/// reads half a value.
pub fn write(path: &Path, text: &str, owner: Option<(u32, u32)>) -> anyhow::Result<()> {
    let mut options = durable_file::Options::private();
    if let Some((uid, gid)) = owner {
        options = options.owner(uid, gid);
    }
    durable_file::write(path, text.as_bytes(), &options).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Removes the files (those already gone are fine); says which could not be removed.
pub fn remove_all<'a>(paths: impl IntoIterator<Item = &'a Path>) {
    for path in paths {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "removing a secret file failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn only_tmpfs_and_ramfs_count_as_memory() {
        use nix::sys::statfs::{BTRFS_SUPER_MAGIC, EXT4_SUPER_MAGIC, NFS_SUPER_MAGIC, OVERLAYFS_SUPER_MAGIC};
        assert!(memory_backed(TMPFS_MAGIC));
        assert!(memory_backed(RAMFS_MAGIC));
        for disk in [EXT4_SUPER_MAGIC, BTRFS_SUPER_MAGIC, OVERLAYFS_SUPER_MAGIC, NFS_SUPER_MAGIC] {
            assert!(!memory_backed(disk), "{disk:?}");
        }
    }

    #[test]
    fn a_file_on_shared_memory_is_allowed_on_a_disk_only_when_asked_and_a_missing_dir_never() {
        // /dev/shm is a tmpfs on every Linux this runs on; the build directory is not.
        check_place(Path::new("/dev/shm/edgeseal-gate-test"), false).unwrap();
        let disk = Path::new(env!("CARGO_MANIFEST_DIR")).join("x");
        let refused = check_place(&disk, false).unwrap_err().to_string();
        assert!(refused.contains("persistent filesystem") && refused.contains("--allow-disk"), "{refused}");
        check_place(&disk, true).unwrap();
        let missing = check_place(Path::new("/nonexistent-dir/x"), true).unwrap_err().to_string();
        assert!(missing.contains("does it exist"), "{missing}");
    }

    #[test]
    fn files_are_fresh_0600_symlinks_replaced_and_removal_tolerates_missing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        write(&path, "v1", None).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_file());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        write(&path, "v2", None).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "v2");
        remove_all([path.as_path(), dir.path().join("never-written").as_path()]);
        assert!(!path.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "only the victim is left");
    }
}
