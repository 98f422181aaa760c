//! Supervising a local OpenBao: edgeseal starts `bao server` with a configuration it writes from its
//! own PKI (raft with `performance_multiplier = 1`, TLS, a declarative file audit device), restarts it
//! when it dies, and stops it cleanly on shutdown. A device or a laptop then needs no compose file.
//!
//! With the static seal (the default, [`crate::seal`]) OpenBao gets its seal key through its
//! environment at each start ([`Supervisor::start_with_env`]) and opens itself; it has no Unix
//! listener and no locked phase. The rest of this paragraph is the Shamir path (`seal: shamir`).
//!
//! The supervised OpenBao also listens on a Unix socket, `data_dir/api/openbao.sock`, in a directory
//! of mode 0700 owned by edgeseal's user (and `data_dir` with every directory above it must be owned by
//! root or that user and not writable by others, see [`check_data_dir`]): setup and the watchdog talk to it there, so `sys/init`,
//! `sys/unseal` and root generation are out of reach of other local users' processes. On first boot
//! (the keystore holds no shares yet) the TCP listener starts *locked* (see
//! [`crate::server_config`]); once setup has stored the shares and converged, `run` rewrites the
//! configuration with the TCP listener open and restarts OpenBao ([`Supervisor::restart`]), then
//! unseals it again over the socket.
//!
//! What stays exposed on the TCP listener every user reaches: `sys/unseal` (anyone can reset or feed
//! an attempt — a nuisance setup and the watchdog retry through, never a disclosure), `sys/health`
//! and `sys/seal-status`. Unauthenticated root generation is disabled there in every case.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use durable_file::log::LogFile;
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Mutex};

use openbao_client::SecretString;

use crate::server_config::ServerConfig;

mod output;
pub mod restart;
mod task;

use output::Output;
pub use restart::CrashLoop;
use restart::RestartPolicy;
use task::Task;

/// `secret_store.supervise:` — run OpenBao as a child of edgeseal.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SuperviseConfig {
    /// Absolute path of the `bao` binary.
    pub binary: PathBuf,
    /// Persistent directory for raft data, the generated config and OpenBao's logs.
    pub data_dir: PathBuf,
    /// Enable OpenBao's unauthenticated `sys/generate-root/*` on the private Unix listener (never on
    /// TCP). Off by default; setup needs it only to recover a root token when the bootstrap
    /// credential in the keystore is lost (a crash on first boot before it was stored).
    #[serde(default)]
    pub unauthed_generate_root: bool,
    /// How OpenBao is sealed: `static` (the default: a key edgeseal holds, self-initialization, no
    /// root token) or `shamir` (unseal shares through the API, as for a store edgeseal does not start).
    #[serde(default)]
    pub seal: crate::seal::SealMode,
    /// Rotation of OpenBao's audit log and of its output (`openbao.log`).
    #[serde(default)]
    pub logs: LogRotation,
}

/// `secret_store.supervise.logs:` — OpenBao's audit log and `openbao.log` are rotated at `max_size`
/// (bytes; 0 turns rotation off), keeping `keep` old files of each. On by default: a device with a
/// small disk must not fill it with logs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogRotation {
    /// Size at which a log is rotated.
    pub max_size: u64,
    /// Rotated files kept of each log.
    pub keep: u32,
}

impl Default for LogRotation {
    fn default() -> Self {
        Self { max_size: 64 * 1024 * 1024, keep: 3 }
    }
}

impl LogRotation {
    /// Most rotated files that may be kept.
    pub const MAX_KEEP: u32 = durable_file::log::MAX_KEEP;

    /// The rules beyond the types.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_size != 0 && !(64 * 1024..=16 * 1024 * 1024 * 1024).contains(&self.max_size) {
            return Err(format!(
                "max_size {} is out of range: give 65536 to 17179869184 (bytes), or 0 to never rotate",
                self.max_size
            ));
        }
        if !(1..=Self::MAX_KEEP).contains(&self.keep) {
            return Err(format!(
                "keep {} is out of range: give 1 to {} (rotated files kept)",
                self.keep,
                Self::MAX_KEEP
            ));
        }
        Ok(())
    }
}

/// What [`prepare`] wrote, for [`Supervisor::start`].
#[derive(Debug, Clone)]
pub struct Prepared {
    /// OpenBao's configuration file.
    pub config_file: PathBuf,
    /// The file audit device's log, rotated by the supervisor.
    pub audit_log: Option<PathBuf>,
}

impl SuperviseConfig {
    /// The private Unix socket: `data_dir/api/openbao.sock`.
    pub fn api_socket(&self) -> PathBuf {
        self.data_dir.join("api").join("openbao.sock")
    }

    /// The OpenBao configuration file edgeseal writes.
    pub fn config_file(&self) -> PathBuf {
        self.data_dir.join("openbao.hcl")
    }

    /// The client CA of the locked TCP listener (OpenBao's own leaf certificate, alone).
    pub fn locked_client_ca(&self) -> PathBuf {
        self.data_dir.join("locked-client-ca.pem")
    }
}

/// Whether OpenBao must start with its TCP listener locked: the keystore in `keystore_dir` does not
/// hold unseal shares yet (first boot, or a first boot that was interrupted), or cannot be read.
pub fn tcp_stays_locked(keystore_dir: &Path) -> bool {
    !matches!(crate::KeystoreDir::new(keystore_dir).read(), Ok(Some(file)) if file.secret_shares > 0)
}

/// Longest path a Unix socket address can hold (sun_path, with its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// A supervised OpenBao process: started again when it dies, at once after a crash, with a growing
/// pause while it keeps dying before it becomes healthy ([`restart`]); its output copied to a rotated
/// `openbao.log` ([`output`]), its audit log rotated, and [`Status`] published for the watchdog, health
/// and metrics.
#[derive(Debug)]
pub struct Supervisor {
    stop: watch::Sender<bool>,
    restart: watch::Sender<u64>,
    status: watch::Receiver<Status>,
    healthy: Arc<watch::Sender<u64>>,
    task: tokio::task::JoinHandle<()>,
    pid: Arc<Mutex<Option<u32>>>,
}

/// Writes the OpenBao configuration and prepares directories (the socket's directory 0700, owned by
/// us — refused otherwise).
pub fn prepare(config: &SuperviseConfig, server: &ServerConfig) -> std::io::Result<Prepared> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(&config.data_dir)?;
    check_data_dir(&config.data_dir)?;
    fs::DirBuilder::new().recursive(true).mode(0o700).create(&server.data_dir)?;
    if let Some(socket) = &server.api_socket {
        private_socket_dir(socket)?;
    }
    if let Some(client_ca) = &server.tcp_client_ca {
        let chain = fs::read_to_string(&server.tls_cert)?;
        let end = "-----END CERTIFICATE-----";
        let leaf = chain.find(end).map(|at| &chain[..at + end.len()]).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} holds no PEM certificate", server.tls_cert.display()),
            )
        })?;
        fs::write(client_ca, format!("{}\n", leaf.trim_start()))?;
        fs::set_permissions(client_ca, fs::Permissions::from_mode(0o600))?;
    }
    let path = config.config_file();
    fs::write(&path, server.render())?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
    Ok(Prepared { config_file: path, audit_log: server.audit_log.clone() })
}

/// Checks `data_dir` and every directory above it (as configured, and after resolving symlinks): each
/// must be owned by root or edgeseal's user and not writable by group or others (a root-owned sticky
/// directory like `/tmp` is fine) — the rule of `kdf_plugins::trust` for plug-ins. Otherwise another
/// user could swap `api/` (or the whole directory) and sit between edgeseal and OpenBao, receiving
/// the unseal shares.
pub fn check_data_dir(data_dir: &Path) -> std::io::Result<()> {
    use kdf_plugins::trust::{judge, Kind, Verdict};
    let euid = nix::unistd::geteuid().as_raw();
    let resolved = fs::canonicalize(data_dir)?;
    let mut dirs: Vec<&Path> = data_dir.ancestors().filter(|d| !d.as_os_str().is_empty()).collect();
    dirs.extend(resolved.ancestors());
    dirs.dedup();
    for dir in dirs {
        let meta = fs::metadata(dir)?;
        let mode = meta.permissions().mode() & 0o7777;
        let why = match judge(Kind::Directory, meta.uid(), mode, euid) {
            Verdict::Trusted => continue,
            Verdict::ForeignOwner => {
                format!("is owned by uid {}, neither root nor edgeseal's user (uid {euid})", meta.uid())
            }
            Verdict::Writable | Verdict::NotExecutable => format!("has mode {mode:o}: group or others can write to it"),
        };
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{} {why}; it holds (or is above) secret_store.supervise.data_dir {}, where OpenBao's private socket lives, so another user could swap it and receive the unseal shares. Fix the ownership/permissions (chown root or edgeseal's user, chmod go-w) or choose another data_dir",
                dir.display(),
                data_dir.display()
            ),
        ));
    }
    Ok(())
}

/// Creates (or checks) the socket's directory: mode 0700, owned by our effective uid; a stale socket
/// file is OpenBao's to replace.
fn private_socket_dir(socket: &Path) -> std::io::Result<()> {
    let invalid = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, what);
    if socket.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(invalid(format!(
            "OpenBao's socket path {} is longer than {MAX_SOCKET_PATH} bytes: choose a shorter secret_store.supervise.data_dir",
            socket.display()
        )));
    }
    let dir = socket.parent().ok_or_else(|| invalid(format!("{} has no directory", socket.display())))?;
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let meta = fs::symlink_metadata(dir)?;
    if !meta.is_dir() || meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err(invalid(format!(
            "{} must be a directory owned by edgeseal's user (uid {}): it guards OpenBao's private socket",
            dir.display(),
            nix::unistd::geteuid()
        )));
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

impl Supervisor {
    /// Starts OpenBao as `prepared`, and keeps it running until [`Supervisor::stop`]. `env` is added to
    /// OpenBao's (otherwise empty) environment at every start: how the static seal key reaches it
    /// without touching a disk. The values stay in this process's memory (wiped on drop) so that a
    /// crashed OpenBao is started again at once.
    pub fn start(config: &SuperviseConfig, prepared: &Prepared, env: Vec<(&'static str, SecretString)>) -> Self {
        let (stop, stopped) = watch::channel(false);
        let (restart, restart_asked) = watch::channel(0u64);
        let (status_tx, status) = watch::channel(Status::default());
        let (healthy, healthy_rx) = watch::channel(0u64);
        let pid = Arc::new(Mutex::new(None));
        let log = LogFile::new(config.data_dir.join(OUTPUT_LOG), config.logs.max_size, config.logs.keep);
        let task = Task {
            binary: config.binary.clone(),
            config_file: prepared.config_file.clone(),
            data_dir: config.data_dir.clone(),
            audit_log: prepared.audit_log.clone(),
            logs: config.logs.clone(),
            env,
            output: Output::new(log),
            status: status_tx,
            pid: pid.clone(),
            policy: RestartPolicy::default(),
        };
        let task = tokio::spawn(task.run(stopped, restart_asked, healthy_rx));
        Self { stop, restart, status, healthy: Arc::new(healthy), task, pid }
    }

    /// Stops OpenBao cleanly and starts it again (it re-reads its configuration file, and comes back
    /// sealed); returns once the new process is started.
    pub async fn restart(&mut self) {
        let before = self.status.borrow_and_update().starts;
        self.restart.send_modify(|generation| *generation += 1);
        let _ = self.status.wait_for(|status| status.starts > before).await;
    }

    /// The current OpenBao pid, if running.
    pub async fn pid(&self) -> Option<u32> {
        *self.pid.lock().await
    }

    /// How many times OpenBao was started again after dying.
    pub fn restarts(&self) -> u64 {
        self.status.borrow().restarts
    }

    /// What the watchdog (and the token server's health and metrics) need of the supervision.
    pub fn link(&self) -> Link {
        let seen = self.status.borrow().starts;
        Link { status: self.status.clone(), healthy: self.healthy.clone(), seen }
    }

    /// Stops OpenBao (SIGTERM, then SIGKILL after 15 s) and the supervision.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// The supervision as others see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// OpenBao processes started so far.
    pub starts: u64,
    /// Of those, started again after one died.
    pub restarts: u64,
    /// Processes that ended by themselves, and starts that failed.
    pub exits: u64,
    /// Set while OpenBao keeps dying before it becomes healthy.
    pub crash_loop: Option<CrashLoop>,
    /// Set while the filesystem of OpenBao's audit log is full (OpenBao then refuses every request
    /// it cannot audit): what to do about it.
    pub audit_disk_full: Option<String>,
}

impl Status {
    /// What is wrong, for operators (the 503 and health reasons), if anything.
    pub fn problem(&self) -> Option<String> {
        let problems: Vec<String> =
            self.crash_loop.iter().map(ToString::to_string).chain(self.audit_disk_full.iter().cloned()).collect();
        (!problems.is_empty()).then(|| problems.join("; "))
    }
}

/// A handle on the supervision for the watchdog: it learns at once when OpenBao was started again,
/// and tells the supervisor when it saw it healthy (which ends a crash loop and makes its next crash
/// a single one, restarted at once).
#[derive(Debug, Clone)]
pub struct Link {
    status: watch::Receiver<Status>,
    healthy: Arc<watch::Sender<u64>>,
    /// The last start [`Link::started`] reported.
    seen: u64,
}

impl Link {
    /// The supervision now.
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// Every change of [`Link::status`].
    pub fn subscribe(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// The number of the OpenBao start running now: take it before a probe, and hand it to
    /// [`Link::healthy`] if the probe found the store healthy.
    pub fn current_start(&self) -> u64 {
        self.status.borrow().starts
    }

    /// The OpenBao of start `start` was seen unsealed and healthy (a mark for an earlier start, taken
    /// before a restart, is ignored by the supervisor).
    pub fn healthy(&self, start: u64) {
        self.healthy.send_if_modified(|seen| std::mem::replace(seen, start) != start);
    }

    /// Resolves when OpenBao was started again since the last time this resolved (at once if it
    /// was); pending forever once the supervision has stopped.
    pub async fn started(&mut self) {
        let seen = self.seen;
        let starts = self.status.wait_for(|status| status.starts > seen).await.map(|status| status.starts);
        match starts {
            Ok(starts) => self.seen = starts,
            Err(_) => std::future::pending::<()>().await,
        }
    }
}

/// OpenBao's standard output and error, in `data_dir`.
pub const OUTPUT_LOG: &str = "openbao.log";

/// The pid of the OpenBao edgeseal last started, in `data_dir` (for operators and tests; orphans
/// are found by their command line, see [`reap_orphan`]).
pub(crate) const PID_FILE: &str = "openbao.pid";

/// The exclusive lock on a supervised OpenBao's `data_dir`, held for as long as one edgeseal process
/// (`run`, `migrate-seal`) works on that store; released by the kernel when the process dies. Two
/// edgeseals on one store would kill each other's OpenBao and, while a store is being created, wipe
/// it under the other.
#[derive(Debug)]
pub struct DataDirLock {
    _file: fs::File,
}

/// The lock file in `data_dir`.
const LOCK_FILE: &str = "edgeseal.lock";

impl DataDirLock {
    /// Takes the lock, creating `data_dir` (0700) if needed; refused at once when another process
    /// holds it.
    pub fn acquire(data_dir: &Path) -> std::io::Result<Self> {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(data_dir)?;
        let path = data_dir.join(LOCK_FILE);
        let file = fs::OpenOptions::new().create(true).truncate(false).write(true).mode(0o600).open(&path)?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Self { _file: file }),
            Err(rustix::io::Errno::WOULDBLOCK) => Err(std::io::Error::new(
                std::io::ErrorKind::WouldBlock,
                format!(
                    "another edgeseal process (`run` or `migrate-seal`) is working on the OpenBao store in {}: stop it first ({} is locked)",
                    data_dir.display(),
                    path.display()
                ),
            )),
            Err(e) => Err(e.into()),
        }
    }
}

/// Kills every OpenBao a previous edgeseal started on this store and left behind when it was killed
/// with SIGKILL (a service manager kills the whole group; a bare host may not): it still holds the
/// raft storage and the listener, so a new OpenBao could not start, and wiping or copying the storage
/// under it would lose data. Call it only while holding the [`DataDirLock`]: then no live edgeseal
/// owns such an OpenBao. A process is ours when its command line is `… server -config=<config_file>`
/// *and* that path, seen from its own root directory, is this very file (same device and inode):
/// another container's OpenBao with the same path on a shared pid namespace is left alone, and so
/// is a recycled pid.
pub async fn reap_orphan(config_file: &Path) {
    for pid in orphans(config_file) {
        tracing::warn!(pid, "an OpenBao left running by an earlier, killed edgeseal holds the store; stopping it");
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        for _ in 0..200 {
            if !is_ours(pid, config_file) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Live OpenBao processes running `config_file` (see [`reap_orphan`]).
fn orphans(config_file: &Path) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str().and_then(|name| name.parse::<i32>().ok()))
        .filter(|&pid| is_ours(pid, config_file))
        .collect()
}

/// Whether `pid` is a live (not zombie) OpenBao running this very `config_file`.
fn is_ours(pid: i32, config_file: &Path) -> bool {
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let flag = format!("-config={}", config_file.display());
    if !cmdline.split(|&b| b == 0).any(|arg| arg == flag.as_bytes()) {
        return false;
    }
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    if stat.is_empty() || stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')) {
        return false;
    }
    let theirs = fs::metadata(format!("/proc/{pid}/root{}", config_file.display()));
    match (theirs, fs::metadata(config_file)) {
        (Ok(theirs), Ok(ours)) => theirs.dev() == ours.dev() && theirs.ino() == ours.ino(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn a_data_dir_below_a_directory_others_can_write_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        // (mode of the directory above data_dir, refused?)
        // Sticky counts only when root owns the directory (as for /tmp).
        let root = nix::unistd::geteuid().is_root();
        for (mode, refused) in [(0o700, false), (0o755, false), (0o775, true), (0o777, true), (0o1777, !root)] {
            let above = tmp.path().join(format!("above-{mode:o}"));
            let data = above.join("data");
            fs::DirBuilder::new().recursive(true).mode(0o700).create(&data).unwrap();
            fs::set_permissions(&above, fs::Permissions::from_mode(mode)).unwrap();
            let outcome = check_data_dir(&data);
            assert_eq!(outcome.is_err(), refused, "mode {mode:o}: {outcome:?}");
            if let Err(e) = outcome {
                assert!(e.to_string().contains(&above.display().to_string()), "{e}");
            }
            // The data dir itself, loosened.
            fs::set_permissions(&above, fs::Permissions::from_mode(0o700)).unwrap();
            fs::set_permissions(&data, fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(check_data_dir(&data).is_err(), refused, "data_dir itself with mode {mode:o}");
        }
        if root {
            // Owned by another user, even with a tight mode.
            let above = tmp.path().join("above-foreign");
            let data = above.join("data");
            fs::DirBuilder::new().recursive(true).mode(0o700).create(&data).unwrap();
            std::os::unix::fs::chown(&above, Some(12345), None).unwrap();
            let e = check_data_dir(&data).unwrap_err();
            assert!(e.to_string().contains("owned by uid 12345"), "{e}");
        }
    }

    #[test]
    fn prepare_refuses_a_data_dir_others_could_swap() {
        let tmp = tempfile::tempdir().unwrap();
        let above = tmp.path().join("shared");
        fs::DirBuilder::new().mode(0o700).create(&above).unwrap();
        fs::set_permissions(&above, fs::Permissions::from_mode(0o777)).unwrap();
        let data_dir = above.join("bao");
        let config = SuperviseConfig {
            binary: "/bin/false".into(),
            data_dir: data_dir.clone(),
            unauthed_generate_root: false,
            seal: crate::seal::SealMode::Shamir,
            logs: LogRotation::default(),
        };
        let server = ServerConfig {
            data_dir: data_dir.join("raft"),
            listen: "127.0.0.1:8200".parse().unwrap(),
            cluster: "127.0.0.1:8201".parse().unwrap(),
            tls_cert: tmp.path().join("cert.pem"),
            tls_key: tmp.path().join("key.pem"),
            audit_log: None,
            unauthed_generate_root: false,
            api_socket: Some(config.api_socket()),
            tcp_client_ca: None,
            static_seal: None,
            self_init: None,
            member: None,
        };
        let e = prepare(&config, &server).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");
        assert!(!data_dir.join("openbao.hcl").exists(), "nothing written into a data_dir others could swap");
    }

    /// A restart asked while the binary cannot be started is answered by the next spawn, and that
    /// process is kept: it is not terminated by the (already answered) request.
    #[tokio::test]
    async fn a_restart_asked_while_down_is_answered_by_the_next_spawn_only() {
        let dir = tempfile::tempdir().unwrap();
        let binary = dir.path().join("bao");
        let pids = dir.path().join("pids");
        let config = SuperviseConfig {
            binary: binary.clone(),
            data_dir: dir.path().to_path_buf(),
            unauthed_generate_root: false,
            seal: crate::seal::SealMode::Shamir,
            logs: LogRotation::default(),
        };
        let prepared = Prepared { config_file: dir.path().join("openbao.hcl"), audit_log: None };
        let mut supervisor = Supervisor::start(&config, &prepared, Vec::new());
        let spawned = supervisor.link().subscribe();
        let mut status = supervisor.link().subscribe();
        let install = async {
            // The first spawn failed: OpenBao is down when the restart is asked.
            status.wait_for(|status| status.exits > 0).await.unwrap();
            let script = format!("#!/bin/sh\necho $$ >> {}\nexec sleep 600\n", pids.display());
            let staged = dir.path().join("bao.new");
            fs::write(&staged, script).unwrap();
            fs::set_permissions(&staged, fs::Permissions::from_mode(0o755)).unwrap();
            fs::rename(&staged, &binary).unwrap();
        };
        // `restart` asks at once; the binary appears only after a spawn failed.
        tokio::join!(supervisor.restart(), install);
        let mut tries = 0;
        while fs::read_to_string(&pids).unwrap_or_default().lines().count() < 1 && tries < 1000 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            tries += 1;
        }
        assert_eq!(fs::read_to_string(&pids).unwrap().lines().count(), 1, "the started process ran");
        supervisor.stop().await;
        assert_eq!(spawned.borrow().starts, 1, "the process restart() returned for was not terminated and replaced");
    }
}
