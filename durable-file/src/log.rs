//! Size-bounded, line-oriented log files: `<file>` is appended to until it would pass `max_size`, then
//! renamed to `<file>.1` (`<file>.1` to `<file>.2`, and so on; `<file>.<keep>` is dropped) and a new
//! `<file>` is started. A log so holds at most `keep + 1` files of about `max_size` each.
//!
//! The live file is created 0600 and opened with `O_APPEND | O_NOFOLLOW` (a symlink planted at its
//! name is refused, never written through). A line torn by a crash is ended before the next write, so
//! it cannot swallow the next record. Rotation is renames only: it needs no free space, so a full disk
//! never stops it, and a process that still has the old file open (OpenBao until it is told to
//! reopen) keeps writing into `<file>.1`: nothing is lost, the lines land one generation older.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

/// Most rotated generations a log may keep (and readers look for).
pub const MAX_KEEP: u32 = 100;

/// `<path>.<n>`: the `n`-th newest rotated generation (1 is the newest).
pub fn generation(path: &Path, n: u32) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// The files of the log at `path` that exist, oldest first: `<file>.<keep>` … `<file>.1`, `<file>`.
pub fn generations(path: &Path, keep: u32) -> Vec<PathBuf> {
    (1..=keep).rev().map(|n| generation(path, n)).chain([path.to_path_buf()]).filter(|p| p.exists()).collect()
}

/// Shifts every generation one older (dropping `<file>.<keep>`) and renames `<file>` to `<file>.1`.
/// A missing generation is skipped; `keep` 0 removes `<file>`. Renames only: works on a full disk.
pub fn rotate(path: &Path, keep: u32) -> io::Result<()> {
    let oldest = generation(path, keep.max(1));
    match std::fs::remove_file(if keep == 0 { path } else { &oldest }) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ if keep == 0 => return Ok(()),
        _ => {}
    }
    for n in (1..keep).rev() {
        match std::fs::rename(generation(path, n), generation(path, n + 1)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    match std::fs::rename(path, generation(path, 1)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// An appending writer that rotates at `max_size` (0: never), keeping `keep` old generations.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    max_size: u64,
    keep: u32,
    open: Option<(File, u64)>,
}

impl LogFile {
    /// A log at `path`; nothing is opened before the first write.
    pub fn new(path: PathBuf, max_size: u64, keep: u32) -> Self {
        Self { path, max_size, keep, open: None }
    }

    /// Where it is written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `bytes` in one `write`, rotating first when they would take the file past `max_size`.
    /// After a failed write (a full disk) the next call opens the file again: the log recovers by
    /// itself once there is space. A rotation that fails (the directory's permissions changed) is
    /// reported, and the record is still written, past `max_size`: nothing is lost for it.
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let full = |size: u64| size > 0 && size.saturating_add(bytes.len() as u64) > self.max_size;
        let mut rotation = Ok(());
        if self.max_size > 0 && self.open.as_ref().is_some_and(|(_, size)| full(*size)) {
            rotation = rotate(&self.path, self.keep);
            if rotation.is_ok() {
                self.open = None;
            }
        }
        let (file, size) = match self.open.as_mut() {
            Some(open) => open,
            None => self.open.insert(open_append(&self.path)?),
        };
        if let Err(e) = file.write_all(bytes) {
            // Part of it may have landed: the reopen ends that torn line.
            self.open = None;
            return Err(e);
        }
        *size += bytes.len() as u64;
        rotation.map_err(|e| {
            io::Error::new(e.kind(), format!("cannot rotate {}: {e}; written past its size", self.path.display()))
        })
    }
}

/// Opens (creating 0600) `path` for appending, refusing a symlink; ends a torn last line.
fn open_append(path: &Path) -> io::Result<(File, u64)> {
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    let mut size = file.metadata()?.len();
    if size > 0 {
        let mut last = [0u8];
        file.read_exact_at(&mut last, size - 1)?;
        if last[0] != b'\n' {
            file.write_all(b"\n")?;
            size += 1;
        }
    }
    Ok((file, size))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_default()
    }

    #[test]
    fn rotation_keeps_the_newest_generations_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bao.log");
        // Lines of 10 bytes, rotated past 25: two lines per file.
        let mut log = LogFile::new(path.clone(), 25, 2);
        for i in 0..9 {
            log.append(format!("line {i:03}\n").as_bytes()).unwrap();
        }
        let files = generations(&path, 2);
        assert_eq!(files, [generation(&path, 2), generation(&path, 1), path.clone()]);
        let text: Vec<String> = files.iter().map(|f| read(f)).collect();
        assert_eq!(text, ["line 004\nline 005\n", "line 006\nline 007\n", "line 008\n"]);
        assert!(!generation(&path, 3).exists(), "only `keep` generations are kept");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_record_larger_than_max_size_is_written_whole_and_zero_never_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let mut log = LogFile::new(path.clone(), 4, 1);
        log.append(b"0123456789\n").unwrap();
        log.append(b"abcdefghij\n").unwrap();
        assert_eq!((read(&generation(&path, 1)), read(&path)), ("0123456789\n".into(), "abcdefghij\n".into()));
        let never = dir.path().join("b.log");
        let mut log = LogFile::new(never.clone(), 0, 3);
        for _ in 0..100 {
            log.append(b"0123456789\n").unwrap();
        }
        assert_eq!(generations(&never, 3), [never]);
    }

    #[test]
    fn a_torn_line_is_ended_and_a_symlink_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("torn.log");
        std::fs::write(&path, "half a li").unwrap();
        let mut log = LogFile::new(path.clone(), 0, 1);
        log.append(b"next\n").unwrap();
        assert_eq!(read(&path), "half a li\nnext\n");

        let target = dir.path().join("elsewhere");
        let link = dir.path().join("link.log");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(LogFile::new(link, 0, 1).append(b"x\n").is_err());
        assert!(!target.exists(), "nothing written through the symlink");
    }

    #[test]
    fn a_rotation_that_fails_still_writes_every_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kept.log");
        let mut log = LogFile::new(path.clone(), 10, 1);
        log.append(b"0123456789\n").unwrap();
        // `<file>.1` cannot be replaced: a non-empty directory is in its way.
        std::fs::create_dir_all(generation(&path, 1).join("x")).unwrap();
        for record in [&b"second\n"[..], b"third\n"] {
            let e = log.append(record).unwrap_err();
            assert!(e.to_string().contains("cannot rotate"), "{e}");
        }
        assert_eq!(read(&path), "0123456789\nsecond\nthird\n");
    }

    #[test]
    fn rotate_skips_missing_generations_and_zero_keep_drops_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        rotate(&path, 3).unwrap();
        std::fs::write(&path, "a").unwrap();
        std::fs::write(generation(&path, 3), "oldest").unwrap();
        rotate(&path, 3).unwrap();
        assert_eq!(generations(&path, 3), [generation(&path, 1)]);
        std::fs::write(&path, "b").unwrap();
        rotate(&path, 0).unwrap();
        assert!(!path.exists());
    }
}
