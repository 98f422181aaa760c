//! The caller's executable: its identity (which file, in which version) and its SHA-256.
//!
//! Hashing reads up to `exe_hash_limit` bytes, so it never runs on the async workers: it runs on
//! tokio's blocking pool, at most [`HASH_CONCURRENCY`] at a time (the permit is held by the blocking
//! thread itself, so a cancelled request does not free it while the thread still reads), and each digest is cached under the
//! file's [`ExeId`] (device, inode, size, mtime, ctime) in a bounded map. Any write to the file
//! changes its mtime and ctime (ctime cannot be set back by anyone), so a cached digest is never
//! served for changed contents.

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::fs::{Mode, OFlags};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

/// Executables hashed at once (the device has few cores; each hash is I/O and CPU bound).
pub const HASH_CONCURRENCY: usize = 2;
/// Digests remembered; the cache is emptied when it is full.
pub const HASH_CACHE_MAX: usize = 256;

/// Which file, in which version: equal ids mean the same inode with unchanged contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExeId {
    /// Device of the filesystem.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Last modification (seconds, nanoseconds).
    pub mtime: (i64, i64),
    /// Last status change (seconds, nanoseconds); unlike mtime, no one can set it back.
    pub ctime: (i64, i64),
}

impl ExeId {
    /// The id of a file from its metadata.
    pub fn of(meta: &Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// SHA-256 (lowercase hex) of an open file from its start, `None` above `limit` bytes or on a read
/// error. Blocking.
pub fn sha256_file(file: &File, limit: u64) -> Option<String> {
    if file.metadata().ok()?.len() > limit {
        return None;
    }
    let mut hasher = Sha256::new();
    let mut reader = file.take(limit.saturating_add(1));
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > limit {
            return None;
        }
        hasher.update(&buf[..n]);
    }
    Some(hex::encode(hasher.finalize()))
}

/// Hashes executables off the async workers, bounded and cached.
#[derive(Debug, Clone)]
pub struct ExeHasher {
    limit: u64,
    permits: Arc<Semaphore>,
    cache: Arc<Mutex<HashMap<ExeId, String>>>,
}

impl ExeHasher {
    /// A hasher that refuses files above `limit` bytes.
    pub fn new(limit: u64) -> Self {
        Self { limit, permits: Arc::new(Semaphore::new(HASH_CONCURRENCY)), cache: Arc::default() }
    }

    /// The SHA-256 of `file` (already opened through `/proc/<pid>/exe`); `None` when it is above the
    /// limit, cannot be read, or changed while it was read.
    pub async fn sha256(&self, file: File) -> Option<String> {
        let id = ExeId::of(&file.metadata().ok()?);
        if let Some(digest) = self.cached(&id) {
            return Some(digest);
        }
        // Owned, and moved into the blocking closure: a cancelled request (its connection closed)
        // drops this future, but the permit stays taken until the thread stops reading.
        let permit = self.permits.clone().acquire_owned().await.ok()?;
        // Another caller of the same binary may have hashed it while this one waited.
        if let Some(digest) = self.cached(&id) {
            return Some(digest);
        }
        let limit = self.limit;
        let hashed = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let digest = sha256_file(&file, limit)?;
            // Written to while it was read: the digest describes no version of the file.
            let after = ExeId::of(&file.metadata().ok()?);
            (after == id).then_some(digest)
        });
        let digest = hashed.await.ok()??;
        self.remember(id, digest.clone());
        Some(digest)
    }

    fn cached(&self, id: &ExeId) -> Option<String> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    fn remember(&self, id: ExeId, digest: String) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= HASH_CACHE_MAX {
            cache.clear();
        }
        cache.insert(id, digest);
    }

    /// Digests cached (for tests and metrics).
    pub fn cached_len(&self) -> usize {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Hashes running now (permits taken), for tests and metrics.
    pub fn busy(&self) -> usize {
        HASH_CONCURRENCY - self.permits.available_permits()
    }
}

/// Executables opened at once (see [`ExeOpener`]).
pub const EXE_OPEN_CONCURRENCY: usize = 8;
/// How long opening and fstat-ing a caller's executable may take before the caller is denied.
pub const EXE_OPEN_TIMEOUT: Duration = Duration::from_secs(2);

/// Test hook run on the blocking thread right before `/proc/<pid>/exe` is opened, with the
/// executable's path (from the link): a test can block in it to stand for a file system that never
/// answers.
#[derive(Clone)]
pub struct ExeOpenHook(pub Arc<ExeOpenHookFn>);

/// What an [`ExeOpenHook`] runs: it gets the executable's path from the link, if readable.
pub type ExeOpenHookFn = dyn Fn(Option<&Path>) + Send + Sync;

impl std::fmt::Debug for ExeOpenHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExeOpenHook")
    }
}

/// Opening the caller's executable did not finish in time.
#[derive(Debug, thiserror::Error)]
pub enum ExeStalled {
    /// The open started and did not finish: the executable's own file system does not answer (the
    /// caller's doing, e.g. its own FUSE mount): a denial.
    #[error(
        "the caller's executable did not open within {0:?} (its file system does not answer); connect again once it does"
    )]
    Stuck(Duration),
    /// Every opener was busy with other callers until the deadline (a burst of callers, or stuck
    /// opens of others): not this caller's doing, so it is told to try again (503), never denied.
    #[error("the server is busy attesting other callers (no executable opened for this one within {0:?}); try again")]
    Busy(Duration),
}

/// Opens callers' executables (through `/proc/<pid>/exe`) off the async workers, bounded and with a
/// deadline.
///
/// Opening and fstat-ing the file goes to the file system it lives on: a caller may run a binary from
/// its own FUSE mount whose daemon never answers, and the thread doing it then blocks for good. So
/// it runs on tokio's blocking pool under [`EXE_OPEN_TIMEOUT`] (the caller is denied when it passes,
/// the thread may stay stuck), and at most [`EXE_OPEN_CONCURRENCY`] run at once: the permit is moved
/// into the blocking closure, so a stuck thread keeps its permit and stuck threads cannot pile up.
#[derive(Debug, Clone)]
pub struct ExeOpener {
    permits: Arc<Semaphore>,
    /// The deadline for one open (including the wait for a permit).
    pub timeout: Duration,
    /// Test hook, see [`ExeOpenHook`].
    pub hook: Option<ExeOpenHook>,
}

impl Default for ExeOpener {
    fn default() -> Self {
        Self { permits: Arc::new(Semaphore::new(EXE_OPEN_CONCURRENCY)), timeout: EXE_OPEN_TIMEOUT, hook: None }
    }
}

impl ExeOpener {
    /// Opens `exe` under the `/proc/<pid>` directory `dir` (a duplicate of the pinned one; `path` is
    /// the link's target, for the hook) and returns the file with its (device, inode); `Ok(None)` when
    /// it cannot be opened (an unreadable executable), [`ExeStalled`] when it did not finish in time.
    pub async fn open(&self, dir: OwnedFd, path: Option<PathBuf>) -> Result<Option<(File, (u64, u64))>, ExeStalled> {
        let permits = self.permits.clone();
        let hook = self.hook.clone();
        let started = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let started_in = started.clone();
        let opened = async move {
            let permit = permits.acquire_owned().await.ok()?;
            started_in.store(true, std::sync::atomic::Ordering::Release);
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                if let Some(hook) = &hook {
                    (hook.0)(path.as_deref());
                }
                let fd = rustix::fs::openat(&dir, "exe", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).ok()?;
                let file = File::from(fd);
                let meta = file.metadata().ok()?;
                Some((file, (meta.dev(), meta.ino())))
            })
            .await
            .ok()
            .flatten()
        };
        tokio::time::timeout(self.timeout, opened).await.map_err(|_| {
            if started.load(std::sync::atomic::Ordering::Acquire) {
                ExeStalled::Stuck(self.timeout)
            } else {
                ExeStalled::Busy(self.timeout)
            }
        })
    }

    /// Opens running now (permits taken, stuck threads included), for tests and metrics.
    pub fn busy(&self) -> usize {
        EXE_OPEN_CONCURRENCY - self.permits.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, Write};

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    #[test]
    fn digests_are_cached_by_file_version_and_recomputed_after_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bin");
        std::fs::write(&path, b"version one").unwrap();
        let hasher = ExeHasher::new(1024);
        let rt = runtime();
        let first = rt.block_on(hasher.sha256(File::open(&path).unwrap())).unwrap();
        assert_eq!(first, hex::encode(Sha256::digest(b"version one")));
        assert_eq!(hasher.cached_len(), 1);
        let id = ExeId::of(&std::fs::metadata(&path).unwrap());
        assert_eq!(hasher.cached(&id).as_deref(), Some(first.as_str()), "keyed by the file's id");
        assert_eq!(rt.block_on(hasher.sha256(File::open(&path).unwrap())).unwrap(), first, "served from the cache");

        // Same size, same inode, contents rewritten in place, and even the mtime set back: the
        // ctime still moves, so the key changes and the digest is computed again.
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all(b"version two").unwrap();
        file.set_modified(mtime).unwrap();
        drop(file);
        let changed = ExeId::of(&std::fs::metadata(&path).unwrap());
        assert_eq!((changed.ino, changed.size, changed.mtime), (id.ino, id.size, id.mtime));
        assert_ne!(changed, id);
        let second = rt.block_on(hasher.sha256(File::open(&path).unwrap())).unwrap();
        assert_eq!(second, hex::encode(Sha256::digest(b"version two")));
        assert_eq!(hasher.cached_len(), 2);
    }

    #[test]
    fn files_above_the_limit_are_not_hashed_or_cached() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        std::fs::write(&path, vec![7u8; 100]).unwrap();
        let hasher = ExeHasher::new(99);
        assert_eq!(runtime().block_on(hasher.sha256(File::open(&path).unwrap())), None);
        assert_eq!(hasher.cached_len(), 0);
        let mut file = File::open(&path).unwrap();
        file.seek(std::io::SeekFrom::Start(0)).unwrap();
        assert!(sha256_file(&file, 100).is_some_and(|d| d.len() == 64));
    }

    /// Polls `done` (the blocking thread finishes on its own time; no timing threshold).
    fn eventually(done: impl Fn() -> bool) {
        for _ in 0..2000 {
            if done() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        panic!("condition never held");
    }

    #[test]
    fn a_cancelled_hash_keeps_its_permit_until_the_thread_stops_reading() {
        // Made first, so it is dropped last: its drop waits for the blocking thread, which ends once
        // the writer below is dropped.
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        // A FIFO stands for a file whose read never finishes: it blocks until its writer closes.
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(rustix::fs::CWD, &fifo, rustix::fs::FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
        let writer = std::fs::OpenOptions::new().read(true).write(true).open(&fifo).unwrap();
        let reader = File::open(&fifo).unwrap();
        let hasher = ExeHasher::new(1024);
        let cancelled =
            rt.block_on(async { tokio::time::timeout(Duration::from_millis(50), hasher.sha256(reader)).await });
        assert!(cancelled.is_err(), "the read blocks");
        assert_eq!(hasher.busy(), 1, "the request was cancelled but its thread still reads: the permit stays taken");
        drop(writer);
        eventually(|| hasher.busy() == 0);
    }

    #[test]
    fn a_stalled_open_is_denied_in_time_and_keeps_its_permit_while_stuck() {
        let dir = tempfile::tempdir().unwrap();
        let proc_dir = rustix::fs::openat(
            rustix::fs::CWD,
            format!("/proc/{}", std::process::id()),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        let (release, stalled) = std::sync::mpsc::channel::<()>();
        let stalled = Mutex::new(stalled);
        let mut opener = ExeOpener { timeout: Duration::from_millis(50), ..ExeOpener::default() };
        opener.hook = Some(ExeOpenHook(Arc::new(move |path| {
            if path.is_some_and(|p| p.ends_with("stall")) {
                let _ = stalled.lock().unwrap().recv();
            }
        })));
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let stuck = rt.block_on(opener.open(proc_dir.try_clone().unwrap(), Some(dir.path().join("stall"))));
        assert!(matches!(stuck, Err(ExeStalled::Stuck(_))), "denied at the deadline");
        assert_eq!(opener.busy(), 1, "the stuck thread holds its permit");
        let opened = rt.block_on(opener.open(proc_dir, None)).unwrap().unwrap();
        let own = std::fs::metadata("/proc/self/exe").unwrap();
        assert_eq!(opened.1, (own.dev(), own.ino()), "another caller's open is not held up");
        release.send(()).unwrap();
        eventually(|| opener.busy() == 0);
    }

    #[test]
    fn a_caller_that_found_every_opener_busy_is_told_to_come_back_not_denied() {
        let proc_dir = || {
            rustix::fs::openat(
                rustix::fs::CWD,
                format!("/proc/{}", std::process::id()),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .unwrap()
        };
        let (release, stalled) = std::sync::mpsc::channel::<()>();
        let stalled = Mutex::new(stalled);
        let mut opener = ExeOpener {
            permits: Arc::new(Semaphore::new(1)),
            timeout: Duration::from_millis(50),
            ..ExeOpener::default()
        };
        opener.hook = Some(ExeOpenHook(Arc::new(move |path| {
            if path.is_some_and(|p| p.ends_with("stall")) {
                let _ = stalled.lock().unwrap().recv();
            }
        })));
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let stuck = rt.block_on(opener.open(proc_dir(), Some("/x/stall".into())));
        assert!(matches!(stuck, Err(ExeStalled::Stuck(_))), "{stuck:?}");
        let waited = rt.block_on(opener.open(proc_dir(), None));
        assert!(matches!(waited, Err(ExeStalled::Busy(_))), "{waited:?}");
        release.send(()).unwrap();
        eventually(|| opener.permits.available_permits() == 1);
        assert!(rt.block_on(opener.open(proc_dir(), None)).unwrap().is_some());
    }

    #[test]
    fn the_cache_stays_bounded() {
        let hasher = ExeHasher::new(1);
        for ino in 0..(HASH_CACHE_MAX as u64 + 10) {
            let id = ExeId { dev: 1, ino, size: 0, mtime: (0, 0), ctime: (0, 0) };
            hasher.remember(id, String::new());
        }
        assert!(hasher.cached_len() <= HASH_CACHE_MAX);
    }
}
