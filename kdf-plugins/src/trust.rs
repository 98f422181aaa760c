//! Whether a plug-in executable may be trusted to produce the device's keying material.
//!
//! SPEC §4: the path is absolute, the file is a regular executable owned by root or by edgeseal's own
//! uid and not writable by group or others, and so is every directory above it — except that a
//! root-owned directory with the sticky bit (like `/tmp`) counts as safe. Both the configured path and
//! the path it resolves to through symlinks are checked, and the resolved path is what gets executed.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use thiserror::Error;

const GROUP_OR_OTHER_WRITE: u32 = 0o022;
const STICKY: u32 = 0o1000;
const ANY_EXECUTE: u32 = 0o111;

/// Why a plug-in path is refused. Each names the offending path and says what to fix.
#[derive(Debug, Error)]
pub enum TrustError {
    /// A relative path would be resolved against a working directory or `$PATH`.
    #[error("path {0} is not absolute; give the full path of the plug-in")]
    NotAbsolute(PathBuf),
    /// The file (or a directory on the way) cannot be inspected.
    #[error("cannot inspect {path}: {source}")]
    Inspect {
        /// The path that failed.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Not a regular file (a directory, device, socket…).
    #[error("{0} is not a regular file")]
    NotRegularFile(PathBuf),
    /// No execute bit at all.
    #[error("{0} is not executable (chmod 755 it)")]
    NotExecutable(PathBuf),
    /// Owned by someone who is neither root nor edgeseal.
    #[error("{path} is owned by uid {uid}; it must be owned by root or by edgeseal's own uid {euid}")]
    Owner {
        /// The offending file or directory.
        path: PathBuf,
        /// Its owner.
        uid: u32,
        /// edgeseal's effective uid.
        euid: u32,
    },
    /// Writable by group or others, so someone else could replace what runs.
    #[error("{path} is writable by group or others (mode {mode:04o}); run chmod go-w on it")]
    Writable {
        /// The offending file or directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// What kind of filesystem object a rule is judging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The plug-in itself.
    Executable,
    /// A directory above it.
    Directory,
}

/// Why an owner/mode pair is refused, before a path is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Safe.
    Trusted,
    /// Owner is neither root nor `euid`.
    ForeignOwner,
    /// Group- or other-writable (and not a root-owned sticky directory).
    Writable,
    /// An executable without any execute bit.
    NotExecutable,
}

/// The rule itself, pure: may an object of `kind` with this owner and mode be trusted by `euid`?
pub fn judge(kind: Kind, owner: u32, mode: u32, euid: u32) -> Verdict {
    if owner != 0 && owner != euid {
        return Verdict::ForeignOwner;
    }
    if mode & GROUP_OR_OTHER_WRITE != 0 {
        let sticky_root_dir = kind == Kind::Directory && owner == 0 && mode & STICKY != 0;
        if !sticky_root_dir {
            return Verdict::Writable;
        }
    }
    if kind == Kind::Executable && mode & ANY_EXECUTE == 0 {
        return Verdict::NotExecutable;
    }
    Verdict::Trusted
}

/// Checks `configured` and everything above it; returns the resolved path to execute.
pub fn check_plugin(configured: &Path) -> Result<PathBuf, TrustError> {
    if !configured.is_absolute() {
        return Err(TrustError::NotAbsolute(configured.to_path_buf()));
    }
    let euid = nix::unistd::geteuid().as_raw();
    let resolved = fs::canonicalize(configured).map_err(|source| inspect_err(configured, source))?;

    let meta = fs::metadata(&resolved).map_err(|source| inspect_err(&resolved, source))?;
    if !meta.is_file() {
        return Err(TrustError::NotRegularFile(resolved));
    }
    check_one(&resolved, Kind::Executable, &meta, euid)?;

    // The directories of the configured path (a symlink could be swapped there) and of the real file.
    let mut dirs: Vec<&Path> = configured.ancestors().skip(1).collect();
    dirs.extend(resolved.ancestors().skip(1));
    dirs.dedup();
    for dir in dirs {
        let meta = fs::metadata(dir).map_err(|source| inspect_err(dir, source))?;
        check_one(dir, Kind::Directory, &meta, euid)?;
    }
    Ok(resolved)
}

fn check_one(path: &Path, kind: Kind, meta: &fs::Metadata, euid: u32) -> Result<(), TrustError> {
    let mode = meta.permissions().mode() & 0o7777;
    match judge(kind, meta.uid(), mode, euid) {
        Verdict::Trusted => Ok(()),
        Verdict::ForeignOwner => Err(TrustError::Owner { path: path.to_path_buf(), uid: meta.uid(), euid }),
        Verdict::Writable => Err(TrustError::Writable { path: path.to_path_buf(), mode }),
        Verdict::NotExecutable => Err(TrustError::NotExecutable(path.to_path_buf())),
    }
}

fn inspect_err(path: &Path, source: io::Error) -> TrustError {
    TrustError::Inspect { path: path.to_path_buf(), source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Kind::{Directory as D, Executable as X};
    use Verdict::*;

    #[test]
    fn ownership_and_mode_rules() {
        let me = 1000;
        let cases = [
            (X, 0, 0o755, Trusted),
            (X, me, 0o700, Trusted),
            (X, 0, 0o500, Trusted),
            (X, 1001, 0o755, ForeignOwner),
            (X, 0, 0o775, Writable),
            (X, 0, 0o757, Writable),
            (X, 0, 0o1777, Writable), // sticky does not make an executable safe
            (X, 0, 0o644, NotExecutable),
            (D, 0, 0o755, Trusted),
            (D, me, 0o700, Trusted),
            (D, 0, 0o1777, Trusted),   // /tmp
            (D, me, 0o1777, Writable), // sticky only counts when root owns the directory
            (D, 0, 0o777, Writable),
            (D, 0, 0o775, Writable),
            (D, 1001, 0o755, ForeignOwner),
        ];
        for (kind, owner, mode, want) in cases {
            assert_eq!(judge(kind, owner, mode, me), want, "{kind:?} owner={owner} mode={mode:o}");
        }
    }

    #[test]
    fn relative_paths_are_refused_before_touching_the_filesystem() {
        assert!(matches!(check_plugin(Path::new("edgeseal-kdf-hwfp")), Err(TrustError::NotAbsolute(_))));
        assert!(matches!(check_plugin(Path::new("./bin/plugin")), Err(TrustError::NotAbsolute(_))));
    }
}
