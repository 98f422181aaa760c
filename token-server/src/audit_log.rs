//! edgeseal's own audit log: one JSON line per token issued (or secret read) on the service socket and per admin action
//! (SPEC §12). Refusals go to edgeseal's log only: a local user could otherwise push the history out
//! of a size-bounded file with requests that are refused anyway. `security-bootstrap audit` joins it with OpenBao's audit log (accessor →
//! the requests that token made), see [`crate::admin::audit`].
//!
//! - A line never holds a value or a token. It holds the accessor of an issued token (the key of the
//!   join; OpenBao's audit device logs accessors in clear too), who asked (pid, uid, container) and
//!   what happened.
//! - The file is created 0600, opened with `O_APPEND | O_NOFOLLOW`, and written by a thread of the
//!   log's own (the token path never waits for the disk): whole lines, several per `write` when
//!   records queue up faster than the disk takes them or within 2 ms of the last write. A line torn
//!   by a crash is ended before the next record.
//!   At `max_size` it is rotated to `<file>.1` (`<file>.1` to `<file>.2`, …, `keep` of them kept,
//!   see [`durable_file::log`]) and a new file is started: the log holds `keep` to `keep + 1`
//!   `max_size` of history.
//! - A record that cannot be written is reported in edgeseal's log (warn) and does not stop the
//!   server: a full disk must not stop services from getting their tokens.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use durable_file::log::LogFile;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

/// Default size at which the log is rotated.
pub const DEFAULT_MAX_SIZE: u64 = 64 * 1024 * 1024;
/// Rotated files kept by default.
pub const DEFAULT_KEEP: u32 = 1;
/// Most rotated files that may be kept.
pub const MAX_KEEP: u32 = durable_file::log::MAX_KEEP;

/// `audit:` — where edgeseal's audit log is written and where OpenBao's is read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// edgeseal's audit log (default: `audit.log` in `keystore.dir`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// Size (bytes) at which it is rotated to `<file>.1`.
    pub max_size: u64,
    /// Rotated files kept (`<file>.1` … `<file>.<keep>`).
    pub keep: u32,
    /// OpenBao's file audit log, for an external store (a supervised OpenBao's is known:
    /// `audit.log` in its `data_dir`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub openbao_log: Option<PathBuf>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self { file: None, max_size: DEFAULT_MAX_SIZE, keep: DEFAULT_KEEP, openbao_log: None }
    }
}

impl AuditConfig {
    /// The rules beyond the types: absolute paths, a size that holds some records.
    pub fn validate(&self) -> Result<(), String> {
        for (key, path) in [("file", &self.file), ("openbao_log", &self.openbao_log)] {
            if let Some(path) = path.as_deref().filter(|p| !p.is_absolute()) {
                return Err(format!("{key} {} must be an absolute path", path.display()));
            }
        }
        if !(64 * 1024..=1024 * 1024 * 1024).contains(&self.max_size) {
            return Err(format!(
                "max_size {} is out of range: give 65536 to 1073741824 (bytes; keep + 1 of it are kept)",
                self.max_size
            ));
        }
        if !(1..=MAX_KEEP).contains(&self.keep) {
            return Err(format!("keep {} is out of range: give 1 to {MAX_KEEP} (rotated files kept)", self.keep));
        }
        Ok(())
    }
}

/// Who called the service socket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    /// Host pid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// uid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Container id (12 hex digits), when the caller runs in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The container's name, when Docker knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Record {
    /// A service's token was issued on the service socket.
    Issued {
        /// The service the caller was attested as.
        service: String,
        /// The token's accessor (not the token).
        accessor: String,
        /// Who asked.
        #[serde(flatten)]
        caller: Caller,
        /// The secret edgeseal read with this token for the caller (`GET /v1/secrets/<name>`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret: Option<String>,
        /// The version of `secret` read (never the value).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<u64>,
    },
    /// An admin acted on a secret through the admin socket.
    Admin {
        /// The admin's uid.
        uid: u32,
        /// The admin's pid.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pid: Option<i32>,
        /// The admin's executable.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exe: Option<String>,
        /// `set`, `get`, `rotate`, `rm`, `destroy`.
        action: String,
        /// The secret's service.
        service: String,
        /// The secret's name.
        name: String,
        /// The resulting (or read) version.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<u64>,
    },
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// RFC 3339, UTC, microseconds.
    pub time: String,
    /// The record.
    #[serde(flatten)]
    pub record: Record,
}

/// The log. Records are written by a thread of its own: the token path never waits for the disk
/// (an SD card that stalls delays the log, not the services). Up to [`QUEUED`] records wait for it;
/// beyond that, records are dropped and counted (and the count logged).
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    /// The writer's queue, made (and the writer started) by the first record; `starting` serialises that.
    queue: OnceLock<SyncSender<Message>>,
    starting: Mutex<()>,
    max_size: u64,
    keep: u32,
    /// Records lost: not queued (the writer fell behind) or not written (the write failed).
    dropped: Arc<AtomicU64>,
}

/// Records that may wait for the writer thread.
pub const QUEUED: usize = 4096;
/// Most bytes of queued lines written with one `write`.
const BATCH_BYTES: usize = 64 * 1024;
/// How long the writer lets records gather after a write. A record waits at most this long beyond
/// its write (so a crash can lose that much more of the log); [`QUEUED`] records fit in it at up to
/// 2 million records per second.
const LINGER: Duration = Duration::from_millis(2);

#[derive(Debug)]
enum Message {
    Line(Vec<u8>),
    /// Answered once every record sent before it is written.
    Flush(SyncSender<()>),
}

impl AuditLog {
    /// A log at `path`, rotated at `max_size` with `keep` old files. The file is opened at the first
    /// record.
    pub fn new(path: PathBuf, max_size: u64, keep: u32) -> Self {
        Self { path, queue: OnceLock::new(), starting: Mutex::new(()), max_size, keep, dropped: Arc::default() }
    }

    /// Where it is written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues `record`, stamped now, for the writer. Failures are logged, never returned (see the
    /// module docs).
    pub fn record(&self, record: Record) {
        let line = Line { time: humantime::format_rfc3339_micros(SystemTime::now()).to_string(), record };
        let Ok(mut text) = serde_json::to_vec(&line) else { return };
        text.push(b'\n');
        if let Err(e) = self.send(Message::Line(text)) {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(file = %self.path.display(), dropped, error = %e, "edgeseal's audit log is not keeping up: records dropped");
            }
        }
    }

    /// Records lost so far: not queued because the writer fell behind, or not written.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits until every record queued so far is written (or the writer has gone).
    pub fn flush(&self) {
        let (done, wait) = sync_channel(1);
        if self.send(Message::Flush(done)).is_ok() {
            let _ = wait.recv();
        }
    }

    /// As [`AuditLog::flush`], for a graceful stop: gives up after `limit` (a disk that stalls must
    /// not hold the process). Whether everything queued was written.
    pub fn flush_within(&self, limit: Duration) -> bool {
        let Some(sender) = self.queue.get() else { return true };
        let deadline = Instant::now() + limit;
        let (done, wait) = sync_channel(1);
        let mut message = Message::Flush(done);
        loop {
            match sender.try_send(message) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(again)) if Instant::now() < deadline => {
                    message = again;
                    std::thread::sleep(LINGER);
                }
                Err(TrySendError::Full(_)) => return false,
            }
        }
        wait.recv_timeout(deadline.saturating_duration_since(Instant::now())).is_ok()
    }

    fn send(&self, message: Message) -> io::Result<()> {
        let sender = match self.queue.get() {
            Some(sender) => sender,
            None => self.start_writer()?,
        };
        match message {
            // A flush waits its turn; a record never waits.
            Message::Flush(_) => sender.send(message).map_err(|_| io::Error::other("the writer has stopped")),
            Message::Line(_) => sender.try_send(message).map_err(|e| match e {
                TrySendError::Full(_) => io::Error::other("the queue is full"),
                TrySendError::Disconnected(_) => io::Error::other("the writer has stopped"),
            }),
        }
    }
}

impl AuditLog {
    /// Starts the writer thread (once; a caller that lost the race uses the winner's).
    fn start_writer(&self) -> io::Result<&SyncSender<Message>> {
        let _starting = self.starting.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(sender) = self.queue.get() {
            return Ok(sender);
        }
        let (sender, receiver) = sync_channel(QUEUED);
        let writer =
            Writer { log: LogFile::new(self.path.clone(), self.max_size, self.keep), dropped: self.dropped.clone() };
        let max_size = self.max_size;
        std::thread::Builder::new().name("audit-log".into()).spawn(move || writer.run(receiver, max_size))?;
        Ok(self.queue.get_or_init(|| sender))
    }
}

/// The writer thread's end: the open file and its rotation.
struct Writer {
    log: LogFile,
    dropped: Arc<AtomicU64>,
}

impl Writer {
    /// Writes queued lines, several per `write` when they queue up faster than one write takes (a
    /// batch holds whole lines only, at most [`BATCH_BYTES`] and at most the rotation size, so that
    /// rotation still happens between lines); a flush is answered once everything queued before it is
    /// written.
    fn run(mut self, queue: Receiver<Message>, max_size: u64) {
        let limit = match usize::try_from(max_size) {
            Ok(size) if size > 0 => size.min(BATCH_BYTES),
            _ => BATCH_BYTES,
        };
        let mut batch = Vec::with_capacity(BATCH_BYTES);
        while let Ok(first) = queue.recv() {
            let mut next = Some(first);
            while let Some(message) = next.take() {
                match message {
                    Message::Line(text) => {
                        if !batch.is_empty() && batch.len() + text.len() > limit {
                            self.write(&mut batch);
                        }
                        batch.extend_from_slice(&text);
                        next = queue.try_recv().ok();
                    }
                    Message::Flush(done) => {
                        self.write(&mut batch);
                        let _ = done.send(());
                    }
                }
            }
            self.write(&mut batch);
            // Records that arrive meanwhile queue up and are written together: a sender wakes this
            // thread only while it waits in `recv`, so under load it wakes once per linger, not once
            // per record (a token fetch then costs no context switch for its audit line).
            std::thread::sleep(LINGER);
        }
    }

    fn write(&mut self, batch: &mut Vec<u8>) {
        if batch.is_empty() {
            return;
        }
        if let Err(e) = self.log.append(batch) {
            // The batch is lost as a whole: count its records as dropped.
            let lost = batch.iter().filter(|&&b| b == b'\n').count() as u64;
            let dropped = self.dropped.fetch_add(lost, Ordering::Relaxed) + lost;
            tracing::warn!(file = %self.log.path().display(), error = %e, lost, dropped, "edgeseal's audit log: records not written");
        }
        batch.clear();
    }
}

/// The records of the log at `path`, oldest first (`<file>.<keep>` … `<file>.1`, then `<file>`; every
/// generation there is up to [`MAX_KEEP`]); lines that are not records (a torn last line after a
/// crash) are counted, not fatal. A missing file holds no records.
pub fn read(path: &Path, mut each: impl FnMut(Line)) -> io::Result<usize> {
    let mut unreadable = 0;
    for path in durable_file::log::generations(path, MAX_KEEP) {
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for line in BufReader::new(file).lines() {
            match serde_json::from_str::<Line>(&line?) {
                Ok(line) => each(line),
                Err(_) => unreadable += 1,
            }
        }
    }
    Ok(unreadable)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issued(n: usize) -> Record {
        Record::Issued {
            service: "alpha".into(),
            accessor: format!("acc{n}"),
            caller: Caller {
                pid: Some(42),
                uid: Some(1000),
                container: Some("0123456789ab".into()),
                container_name: None,
            },
            secret: None,
            version: None,
        }
    }

    #[test]
    fn records_read_back_as_written_and_carry_no_token_field() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path().join("audit.log"), DEFAULT_MAX_SIZE, DEFAULT_KEEP);
        let admin = Record::Admin {
            uid: 0,
            pid: Some(7),
            exe: Some("/usr/bin/security-bootstrap".into()),
            action: "set".into(),
            service: "alpha".into(),
            name: "db".into(),
            version: Some(2),
        };
        log.record(issued(1));
        log.record(admin.clone());
        log.flush();
        let mut got = Vec::new();
        assert_eq!(read(log.path(), |line| got.push(line.record)).unwrap(), 0);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], issued(1));
        assert_eq!(got[1], admin);
        let text = std::fs::read_to_string(log.path()).unwrap();
        assert!(text.lines().next().unwrap().contains(r#""event":"issued""#), "{text}");
        assert!(!text.contains("token"), "{text}");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(log.path()).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_graceful_stop_writes_what_is_queued_and_does_not_wait_for_a_stalled_disk() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path().join("audit.log"), DEFAULT_MAX_SIZE, DEFAULT_KEEP);
        assert!(log.flush_within(Duration::from_secs(1)), "nothing recorded: nothing to wait for");
        for n in 0..100 {
            log.record(issued(n));
        }
        assert!(log.flush_within(Duration::from_secs(10)));
        assert_eq!(std::fs::read_to_string(log.path()).unwrap().lines().count(), 100);
        // A log whose writes stop returning (a FIFO nobody reads, filled past its 64 KiB buffer,
        // stands in for a disk that stalls).
        let fifo = dir.path().join("stalled.log");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let stalled = AuditLog::new(fifo.clone(), DEFAULT_MAX_SIZE, DEFAULT_KEEP);
        for n in 0..2000 {
            stalled.record(issued(n));
        }
        assert!(!stalled.flush_within(Duration::from_millis(200)), "gave up, reported as not written");
        // Let the writer thread go (a reader opens the FIFO and drains it).
        let mut reader = std::fs::File::open(&fifo).unwrap();
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    }

    #[test]
    fn the_log_rotates_at_max_size_and_reads_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path().join("audit.log"), 1000, 2);
        for n in 0..60 {
            log.record(issued(n));
        }
        log.flush();
        let generations = durable_file::log::generations(log.path(), MAX_KEEP);
        assert_eq!(generations.len(), 3, "the live file and `keep` rotated ones: {generations:?}");
        assert!(std::fs::metadata(log.path()).unwrap().len() <= 1000);
        let mut accessors = Vec::new();
        read(log.path(), |line| {
            if let Record::Issued { accessor, .. } = line.record {
                accessors.push(accessor);
            }
        })
        .unwrap();
        // Between two and three max_size of history, in order, ending with the newest.
        assert!(accessors.len() >= 10, "{accessors:?}");
        assert_eq!(accessors.last().map(String::as_str), Some("acc59"));
        let numbers: Vec<usize> = accessors.iter().map(|a| a[3..].parse().unwrap()).collect();
        assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
    }

    #[test]
    fn records_queued_faster_than_they_are_written_land_whole_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path().join("audit.log"), DEFAULT_MAX_SIZE, DEFAULT_KEEP);
        // Far more than one batch, queued without waiting, with a flush in the middle.
        for n in 0..3000 {
            log.record(issued(n));
            if n == 1500 {
                log.flush();
                assert_eq!(
                    std::fs::read_to_string(log.path()).unwrap().lines().count(),
                    1501,
                    "flushed: all before it"
                );
            }
        }
        log.flush();
        let mut numbers = Vec::new();
        let torn = read(log.path(), |line| {
            if let Record::Issued { accessor, .. } = line.record {
                numbers.push(accessor[3..].parse::<usize>().unwrap());
            }
        })
        .unwrap();
        assert_eq!(torn, 0);
        assert_eq!(numbers, (0..3000).collect::<Vec<_>>());
    }

    #[test]
    fn records_that_cannot_be_written_are_counted_as_dropped() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the log should be: every write fails.
        let path = dir.path().join("audit.log");
        std::fs::create_dir(&path).unwrap();
        let log = AuditLog::new(path, DEFAULT_MAX_SIZE, DEFAULT_KEEP);
        for n in 0..3 {
            log.record(issued(n));
        }
        log.flush();
        assert_eq!(log.dropped(), 3);
    }

    #[test]
    fn a_torn_line_is_counted_not_fatal_and_a_symlink_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::new(path.clone(), DEFAULT_MAX_SIZE, DEFAULT_KEEP);
        log.record(issued(1));
        log.flush();
        std::io::Write::write_all(
            &mut std::fs::OpenOptions::new().append(true).open(&path).unwrap(),
            b"{\"time\":\"20",
        )
        .unwrap();
        let mut n = 0;
        assert_eq!(read(&path, |_| n += 1).unwrap(), 1);
        assert_eq!(n, 1);
        // The next start ends the torn line before its first record: only the torn one is lost.
        let again = AuditLog::new(path.clone(), DEFAULT_MAX_SIZE, DEFAULT_KEEP);
        again.record(issued(2));
        again.flush();
        let mut n = 0;
        assert_eq!(read(&path, |_| n += 1).unwrap(), 1);
        assert_eq!(n, 2);

        let target = dir.path().join("elsewhere");
        let link = dir.path().join("link.log");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let linked = AuditLog::new(link, DEFAULT_MAX_SIZE, DEFAULT_KEEP);
        linked.record(issued(2));
        linked.flush();
        assert!(!target.exists());
    }

    #[test]
    fn config_paths_are_absolute_and_the_size_holds_records() {
        assert!(AuditConfig::default().validate().is_ok());
        let relative = AuditConfig { file: Some("audit.log".into()), ..AuditConfig::default() };
        assert!(relative.validate().unwrap_err().contains("absolute"));
        let tiny = AuditConfig { max_size: 10, ..AuditConfig::default() };
        assert!(tiny.validate().unwrap_err().contains("max_size"));
        for keep in [0, MAX_KEEP + 1] {
            let wrong = AuditConfig { keep, ..AuditConfig::default() };
            assert!(wrong.validate().unwrap_err().contains("keep"), "{keep}");
        }
    }
}
