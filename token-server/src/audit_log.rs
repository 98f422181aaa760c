//! edgeseal's own audit log: one JSON line per token issued (or secret read) on the service socket and per admin action
//! (SPEC §12). Refusals go to edgeseal's log only: a local user could otherwise push the history out
//! of a size-bounded file with requests that are refused anyway. `security-bootstrap audit` joins it with OpenBao's audit log (accessor →
//! the requests that token made), see [`crate::admin::audit`].
//!
//! - A line never holds a value or a token. It holds the accessor of an issued token (the key of the
//!   join; OpenBao's audit device logs accessors in clear too), who asked (pid, uid, container) and
//!   what happened.
//! - The file is created 0600, opened with `O_APPEND | O_NOFOLLOW`, and each record is one `write`,
//!   made by a thread of the log's own (the token path never waits for the disk). A line torn by a
//!   crash is ended before the next record.
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
use std::sync::Mutex;
use std::time::SystemTime;

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
    queue: Mutex<Option<SyncSender<Message>>>,
    max_size: u64,
    keep: u32,
    dropped: AtomicU64,
}

/// Records that may wait for the writer thread.
pub const QUEUED: usize = 4096;

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
        Self { path, queue: Mutex::new(None), max_size, keep, dropped: AtomicU64::new(0) }
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

    /// Waits until every record queued so far is written (or the writer has gone).
    pub fn flush(&self) {
        let (done, wait) = sync_channel(1);
        if self.send(Message::Flush(done)).is_ok() {
            let _ = wait.recv();
        }
    }

    fn send(&self, message: Message) -> io::Result<()> {
        let mut queue = self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if queue.is_none() {
            let (sender, receiver) = sync_channel(QUEUED);
            let writer = Writer { log: LogFile::new(self.path.clone(), self.max_size, self.keep) };
            std::thread::Builder::new().name("audit-log".into()).spawn(move || writer.run(receiver))?;
            *queue = Some(sender);
        }
        let sender = queue.as_ref().ok_or_else(|| io::Error::other("no writer"))?;
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

/// The writer thread's end: the open file and its rotation.
struct Writer {
    log: LogFile,
}

impl Writer {
    fn run(mut self, queue: Receiver<Message>) {
        for message in queue {
            match message {
                Message::Line(text) => {
                    if let Err(e) = self.log.append(&text) {
                        tracing::warn!(file = %self.log.path().display(), error = %e, "edgeseal's audit log");
                    }
                }
                Message::Flush(done) => {
                    let _ = done.send(());
                }
            }
        }
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
