//! durable-file: the one way edgeseal writes a file that must survive a crash or a power cut.
//!
//! A write goes to a temp file created exclusively beside its target (`O_EXCL | O_NOFOLLOW`, never
//! readable by anyone else while it is being filled), gets its owner and exact mode (regardless of the
//! umask), is written and fsynced, and is then renamed over the target — or, for a no-clobber write,
//! moved into place only if the name is free. Finally the directory is fsynced so that the rename
//! itself survives a power cut. A crash at any instant leaves the old file or the new one, never a mix;
//! at worst a temp file (`<prefix><random>.tmp`) is left behind, which callers may sweep.
//!
//! A caller writing many files at once can split that write in two and pay for one sync instead of
//! one per file: [`stage_in`] each file (temp file filled, not synced, not in place), make them all
//! durable together with [`sync_filesystems`] (`syncfs(2)`: one journal commit for the lot), and only
//! then [`Staged::commit`] each (the rename), followed by one more [`sync_filesystems`] for the
//! renames. The rule that makes it crash-safe is the same as for one file: the data a name will point
//! to is durable before the rename that points the name at it.
//!
//! Everything happens relative to an open directory handle ([`Dir`]), so a directory that someone
//! else may change (a service's own token directory) can be held once and written into without a path
//! being resolved again; the target name is never followed if it is a symlink — it is replaced.
//!
//! Layout: [`Dir`] (an open directory), [`Options`] (mode, owner, replace or no-clobber, temp prefix),
//! [`write_in`] / [`write`] (the write), [`stage_in`] / [`Staged`] / [`sync_filesystems`] (the same
//! write in batches), [`sync_dir`] / [`sync_parent`] (directory fsync), [`Error`].
//! [`log`]: size-bounded, rotated line logs (append-only, no fsync: they are logs, not state).

#![forbid(unsafe_code)]

use std::fs::File;
use std::io::{self, Write as _};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags};
use thiserror::Error;

/// Every temp file name ends with this.
pub const TEMP_SUFFIX: &str = ".tmp";
/// How many random temp names are tried before giving up (someone keeps taking them).
const TEMP_ATTEMPTS: usize = 16;

/// A filesystem operation that failed, with the file or directory it was done to.
#[derive(Debug, Error)]
#[error("{op} {path}: {source}")]
pub struct Error {
    /// What was being done ("creating a temp file in", "renaming into place", …).
    pub op: &'static str,
    /// The file or directory.
    pub path: PathBuf,
    /// The OS error; its kind tells callers e.g. a directory in the way (`IsADirectory`).
    pub source: io::Error,
}

impl Error {
    fn new(op: &'static str, path: impl Into<PathBuf>, source: impl Into<io::Error>) -> Self {
        Self { op, path: path.into(), source: source.into() }
    }

    /// The OS error's kind.
    pub fn kind(&self) -> io::ErrorKind {
        self.source.kind()
    }

    /// The raw OS error number, if there is one.
    pub fn raw_os_error(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

/// An open directory: the base every write is made relative to.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

impl Dir {
    /// Opens the directory at `path` (following symlinks: the path is the operator's to choose).
    pub fn open(path: &Path) -> Result<Self, Error> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let fd = rustix::fs::open(path, flags, Mode::empty()).map_err(|e| Error::new("opening directory", path, e))?;
        Ok(Self { fd, path: path.to_path_buf() })
    }

    /// Opens the directory `name` inside this one without following a symlink: fails (`ELOOP` or
    /// `ENOTDIR`) when `name` is a symlink or not a directory. Use it for a directory someone else
    /// owns, then write through the handle: no path is resolved again.
    pub fn open_child_nofollow(&self, name: &str) -> Result<Self, Error> {
        let path = self.path.join(name);
        check_name(name, &path)?;
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&self.fd, name, flags, Mode::empty())
            .map_err(|e| Error::new("opening directory", &path, e))?;
        Ok(Self { fd, path })
    }

    /// The path this handle was opened at (for messages; not used to reach the directory).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// fsyncs the directory, so that renames and removals in it survive a power cut.
    pub fn sync(&self) -> Result<(), Error> {
        rustix::fs::fsync(&self.fd).map_err(|e| Error::new("syncing directory", &self.path, e))
    }

    /// `syncfs(2)` on the filesystem holding this directory: everything written to that filesystem
    /// so far — file data, inodes, directory entries, renames — reaches the disk, by anyone. On
    /// Linux ≥ 5.8 it reports writeback errors like `fsync` does. A no-op on tmpfs.
    pub fn sync_filesystem(&self) -> Result<(), Error> {
        rustix::fs::syncfs(&self.fd).map_err(|e| Error::new("syncing the filesystem of", &self.path, e))
    }

    /// The device number of the filesystem holding this directory.
    fn device(&self) -> Result<u64, Error> {
        let stat = rustix::fs::fstat(&self.fd).map_err(|e| Error::new("inspecting directory", &self.path, e))?;
        Ok(stat.st_dev)
    }
}

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Whether a write may replace an existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    /// Rename over whatever non-directory entry is at the name (a file, a symlink — which is replaced,
    /// never followed — a fifo). A directory at the name fails with `IsADirectory`.
    Overwrite,
    /// Move into place only if the name is free; otherwise leave it alone ([`Outcome::Exists`]).
    NoClobber,
}

/// How to write: mode, owner, replace or not, temp file prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    mode: u32,
    owner: Option<(u32, u32)>,
    replace: Replace,
    temp_prefix: Option<String>,
}

impl Options {
    /// A private file (mode 0600) owned by the writer, replacing what is there.
    pub fn private() -> Self {
        Self::with_mode(0o600)
    }

    /// A file with exactly `mode` (permission bits only; the umask does not apply).
    pub fn with_mode(mode: u32) -> Self {
        Self { mode: mode & 0o777, owner: None, replace: Replace::Overwrite, temp_prefix: None }
    }

    /// Gives the file to `uid`/`gid` before it is moved into place.
    pub fn owner(mut self, uid: u32, gid: u32) -> Self {
        self.owner = Some((uid, gid));
        self
    }

    /// Sets the owner if `owner` is `Some`.
    pub fn maybe_owner(self, owner: Option<(u32, u32)>) -> Self {
        match owner {
            Some((uid, gid)) => self.owner(uid, gid),
            None => self,
        }
    }

    /// Never replaces an existing entry at the name.
    pub fn no_clobber(mut self) -> Self {
        self.replace = Replace::NoClobber;
        self
    }

    /// Temp files are named `<prefix><random>.tmp` (default: `.<name>.<random>.tmp`), so that a
    /// caller can recognise and sweep those a crash left behind.
    pub fn temp_prefix(mut self, prefix: &str) -> Self {
        self.temp_prefix = Some(prefix.to_string());
        self
    }

    /// The mode files are given.
    pub fn mode(&self) -> u32 {
        self.mode
    }
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The new file is in place.
    Written,
    /// [`Replace::NoClobber`] and an entry was already at the name: nothing changed.
    Exists,
}

/// Writes `bytes` to `name` inside `dir` atomically (see the crate documentation), **without**
/// fsyncing `dir`: call [`Dir::sync`] once after the last file written into it.
pub fn write_in(dir: &Dir, name: &str, bytes: &[u8], options: &Options) -> Result<Outcome, Error> {
    fill_temp(dir, name, bytes, options, FileSync::Now)?.commit()
}

/// A file written to its temp name beside its target but neither durable nor in place: the first half
/// of [`write_in`], made by [`stage_in`]. Dropped without [`Staged::commit`], its temp file is removed.
#[derive(Debug)]
pub struct Staged<'a> {
    temp: TempGuard<'a>,
    name: String,
    replace: Replace,
}

/// Writes `bytes` to a temp file beside `name` in `dir`, with the owner and mode of `options`, and
/// closes it **without** syncing it or moving it into place. The temp file is never readable by
/// anyone but the writer and the owner it is given. Before [`Staged::commit`], make it durable —
/// [`sync_filesystems`] for many files at once — or a power cut may leave the name pointing at an
/// empty or partly written file.
pub fn stage_in<'a>(dir: &'a Dir, name: &str, bytes: &[u8], options: &Options) -> Result<Staged<'a>, Error> {
    fill_temp(dir, name, bytes, options, FileSync::Later)
}

impl Staged<'_> {
    /// The path the file will have once committed.
    pub fn target(&self) -> PathBuf {
        self.temp.dir.path.join(&self.name)
    }

    /// Moves the temp file into place (rename, or no-clobber move per [`Options::no_clobber`]),
    /// **without** fsyncing the directory. Durable only once the directory is synced ([`Dir::sync`],
    /// [`sync_filesystems`]); the file's data must already be durable (see [`stage_in`]).
    pub fn commit(mut self) -> Result<Outcome, Error> {
        let dir = self.temp.dir;
        let target = dir.path.join(&self.name);
        match self.replace {
            Replace::Overwrite => {
                rustix::fs::renameat(&dir.fd, self.temp.name.as_str(), &dir.fd, self.name.as_str())
                    .map_err(|e| Error::new("renaming a temp file to", &target, e))?;
                self.temp.armed = false;
                Ok(Outcome::Written)
            }
            Replace::NoClobber => {
                let (outcome, moved) =
                    move_noclobber(dir, &self.temp.name, &self.name).map_err(|e| Error::new("creating", &target, e))?;
                self.temp.armed = !moved;
                Ok(outcome)
            }
        }
    }
}

/// `syncfs(2)` once per filesystem among `dirs` (see [`Dir::sync_filesystem`]): one journal commit
/// makes every file [`stage_in`] wrote into them durable, or every rename [`Staged::commit`] made.
/// Whatever else is waiting to be written to those filesystems is written too, so on a filesystem
/// busy with other writers this takes as long as their backlog.
pub fn sync_filesystems<'a>(dirs: impl IntoIterator<Item = &'a Dir>) -> Result<(), Error> {
    let mut synced = Vec::new();
    for dir in dirs {
        let device = dir.device()?;
        if !synced.contains(&device) {
            dir.sync_filesystem()?;
            synced.push(device);
        }
    }
    Ok(())
}

/// Whether a temp file is fsynced as soon as it is filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileSync {
    Now,
    Later,
}

fn fill_temp<'a>(
    dir: &'a Dir,
    name: &str,
    bytes: &[u8],
    options: &Options,
    sync: FileSync,
) -> Result<Staged<'a>, Error> {
    check_name(name, &dir.path.join(name))?;
    let prefix = options.temp_prefix.clone().unwrap_or_else(|| format!(".{name}."));
    let (temp_name, file) = create_temp(dir, &prefix)?;
    let temp = TempGuard { dir, name: temp_name, armed: true };
    let temp_path = dir.path.join(&temp.name);
    fill(file, bytes, options, sync).map_err(|(op, e)| Error::new(op, &temp_path, e))?;
    Ok(Staged { temp, name: name.to_string(), replace: options.replace })
}

/// Writes `bytes` to `path` atomically and durably: [`write_in`] its parent directory, then fsyncs it.
pub fn write(path: &Path, bytes: &[u8], options: &Options) -> Result<Outcome, Error> {
    let (parent, name) = split(path)?;
    let dir = Dir::open(parent)?;
    let outcome = write_in(&dir, name, bytes, options)?;
    dir.sync()?;
    Ok(outcome)
}

/// fsyncs the directory at `path`.
pub fn sync_dir(path: &Path) -> Result<(), Error> {
    Dir::open(path)?.sync()
}

/// fsyncs the directory holding `path` (after creating, renaming or removing it).
pub fn sync_parent(path: &Path) -> Result<(), Error> {
    sync_dir(split(path)?.0)
}

/// Whether `name` is a temp file name this crate makes with `prefix`.
pub fn is_temp_name(name: &str, prefix: &str) -> bool {
    name.len() > prefix.len() + TEMP_SUFFIX.len() && name.starts_with(prefix) && name.ends_with(TEMP_SUFFIX)
}

/// `path`'s parent directory and file name.
fn split(path: &Path) -> Result<(&Path, &str), Error> {
    let invalid = || Error::new("writing", path, io::Error::new(io::ErrorKind::InvalidInput, "not a file path"));
    let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(invalid)?;
    let parent = match path.parent() {
        Some(p) if p.as_os_str().is_empty() => Path::new("."),
        Some(p) => p,
        None => return Err(invalid()),
    };
    Ok((parent, name))
}

/// A name must be one path component: no `/`, not `.` or `..`, not empty, no NUL.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

fn check_name(name: &str, path: &Path) -> Result<(), Error> {
    if valid_name(name) {
        return Ok(());
    }
    let reason = format!("{name:?} is not a single file name");
    Err(Error::new("writing", path, io::Error::new(io::ErrorKind::InvalidInput, reason)))
}

fn create_temp(dir: &Dir, prefix: &str) -> Result<(String, File), Error> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut last = io::Error::from(io::ErrorKind::AlreadyExists);
    for _ in 0..TEMP_ATTEMPTS {
        let mut random = [0u8; 8];
        getrandom::getrandom(&mut random)
            .map_err(|e| Error::new("creating a temp file in", &dir.path, io::Error::other(e.to_string())))?;
        let name = format!("{prefix}{}{TEMP_SUFFIX}", hex::encode(random));
        match rustix::fs::openat(&dir.fd, name.as_str(), flags, Mode::from_raw_mode(0o600)) {
            Ok(fd) => return Ok((name, File::from(fd))),
            Err(e) if e == rustix::io::Errno::EXIST => last = e.into(),
            Err(e) => return Err(Error::new("creating a temp file in", &dir.path, e)),
        }
    }
    Err(Error::new("creating a temp file in", &dir.path, last))
}

/// Owner first (a chown may clear mode bits), then the exact mode, then the bytes and, unless the
/// caller syncs later, an fsync.
fn fill(mut file: File, bytes: &[u8], options: &Options, sync: FileSync) -> Result<(), (&'static str, io::Error)> {
    if let Some((uid, gid)) = options.owner {
        let (uid, gid) = (rustix::fs::Uid::from_raw_unchecked(uid), rustix::fs::Gid::from_raw_unchecked(gid));
        rustix::fs::fchown(&file, Some(uid), Some(gid)).map_err(|e| ("changing the owner of", e.into()))?;
    }
    rustix::fs::fchmod(&file, Mode::from_raw_mode(options.mode)).map_err(|e| ("setting the mode of", e.into()))?;
    file.write_all(bytes).map_err(|e| ("writing", e))?;
    match sync {
        FileSync::Now => file.sync_all().map_err(|e| ("syncing", e)),
        FileSync::Later => Ok(()),
    }
}

/// Moves `temp` to `name` only if `name` is free: `renameat2(RENAME_NOREPLACE)`, or a hard link where
/// the filesystem does not support that. Returns the outcome and whether `temp` is gone (renamed).
fn move_noclobber(dir: &Dir, temp: &str, name: &str) -> Result<(Outcome, bool), io::Error> {
    use rustix::io::Errno;
    match rustix::fs::renameat_with(&dir.fd, temp, &dir.fd, name, RenameFlags::NOREPLACE) {
        Ok(()) => return Ok((Outcome::Written, true)),
        Err(Errno::EXIST) => return Ok((Outcome::Exists, false)),
        Err(Errno::INVAL | Errno::NOSYS | Errno::NOTSUP) => {}
        Err(e) => return Err(e.into()),
    }
    match rustix::fs::linkat(&dir.fd, temp, &dir.fd, name, AtFlags::empty()) {
        Ok(()) => Ok((Outcome::Written, false)),
        Err(Errno::EXIST) => Ok((Outcome::Exists, false)),
        Err(e) => Err(e.into()),
    }
}

/// Removes the temp file unless it was renamed into place (after a link it remains and is removed).
#[derive(Debug)]
struct TempGuard<'a> {
    dir: &'a Dir,
    name: String,
    armed: bool,
}

impl Drop for TempGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = rustix::fs::unlinkat(&self.dir.fd, self.name.as_str(), AtFlags::empty());
        }
    }
}

pub mod log;

#[cfg(test)]
mod tests;
