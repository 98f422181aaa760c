//! The supervision loop: start OpenBao, wait for it to exit (or for a restart, a stop, a healthy
//! mark, a rotation tick), decide the pause ([`super::restart`]), report, start again.

use std::fs;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openbao_client::SecretString;
use tokio::process::{Child, Command};
use tokio::sync::{watch, Mutex};

use super::output::Output;
use super::restart::{CrashLoop, Exit, RestartPolicy};
use super::{reap_orphan, LogRotation, Status, PID_FILE};

/// The supervision loop's state.
pub(super) struct Task {
    pub(super) binary: PathBuf,
    pub(super) config_file: PathBuf,
    pub(super) data_dir: PathBuf,
    pub(super) audit_log: Option<PathBuf>,
    pub(super) logs: LogRotation,
    pub(super) env: Vec<(&'static str, SecretString)>,
    pub(super) output: Output,
    pub(super) status: watch::Sender<Status>,
    pub(super) pid: Arc<Mutex<Option<u32>>>,
    pub(super) policy: RestartPolicy,
}

/// How one OpenBao process ended.
enum Ended {
    /// It exited by itself (or was killed by someone else): how.
    Exited(String),
    /// A restart was asked: started again at once.
    Asked,
    /// The supervision stops.
    Stopped,
}

impl Task {
    pub(super) async fn run(
        mut self,
        mut stopped: watch::Receiver<bool>,
        mut restart_asked: watch::Receiver<u64>,
        mut healthy: watch::Receiver<u64>,
    ) {
        reap_orphan(&self.config_file).await;
        let mut died = false;
        loop {
            let (mut child, copying) = match self.spawn() {
                Ok(spawned) => spawned,
                Err(e) => {
                    tracing::error!(binary = %self.binary.display(), error = %e, "cannot start OpenBao");
                    let exit = Exit { uptime: Duration::ZERO, seen_healthy: false };
                    let pause = self.after_exit(exit, format!("cannot start {}: {e}", self.binary.display()), None);
                    tokio::select! {
                        _ = stopped.changed() => return,
                        _ = tokio::time::sleep(pause) => {}
                    }
                    continue;
                }
            };
            // A restart asked while OpenBao was down (spawn failed, or the pause) is answered by
            // this spawn, which read the new configuration: marking it seen keeps it from
            // terminating the process `restart()` returns for (and `run` unseals).
            restart_asked.borrow_and_update();
            *self.pid.lock().await = child.id();
            if let Some(pid) = child.id() {
                if let Err(e) = fs::write(self.data_dir.join(PID_FILE), format!("{pid}\n")) {
                    tracing::error!(error = %e, "cannot record OpenBao's pid; an OpenBao orphaned by a crash of edgeseal would not be found");
                }
            }
            let start = self.status.borrow().starts + 1;
            self.status.send_modify(|status| {
                status.starts = start;
                status.restarts += u64::from(died);
            });
            tracing::info!(pid = child.id(), "OpenBao started");
            let started = Instant::now();
            let mut seen_healthy = false;
            let mut rotation = tokio::time::interval(ROTATION_CHECK);
            rotation.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let ended = loop {
                tokio::select! {
                    status = child.wait() => break Ended::Exited(match status {
                        Ok(status) => status.to_string(),
                        Err(e) => format!("lost track of it: {e}"),
                    }),
                    _ = restart_asked.changed() => {
                        // Asked for (a new configuration): stop it cleanly, start again at once.
                        terminate(&mut child).await;
                        break Ended::Asked;
                    }
                    _ = stopped.changed() => {
                        terminate(&mut child).await;
                        break Ended::Stopped;
                    }
                    Ok(()) = healthy.changed(), if !seen_healthy => {
                        seen_healthy = *healthy.borrow_and_update() == start;
                        if seen_healthy {
                            self.healthy_again();
                        }
                    }
                    _ = rotation.tick(), if self.audit_log.is_some() => {
                        self.check_audit_disk();
                        // A Go program dies of a SIGHUP that comes before its handler is installed.
                        if self.logs.max_size > 0 && (seen_healthy || started.elapsed() >= SIGHUP_SAFE_AFTER) {
                            self.rotate_audit_log(&child);
                        }
                    }
                }
            };
            *self.pid.lock().await = None;
            // The copy ends with the process's output; its last line says why it died.
            let joined = tokio::task::spawn_blocking(move || copying.map(std::thread::JoinHandle::join));
            if tokio::time::timeout(OUTPUT_DRAIN, joined).await.is_err() {
                // Something else holds OpenBao's output open (a descendant of it): the copy goes on
                // by itself; the supervision does not wait for it.
                tracing::warn!("OpenBao's output is still open after it exited; not waiting for it");
            }
            // A healthy mark that raced the exit still counts.
            seen_healthy |= *healthy.borrow_and_update() == start;
            match ended {
                Ended::Stopped => return,
                Ended::Asked => died = false,
                Ended::Exited(how) => {
                    died = true;
                    let exit = Exit { uptime: started.elapsed(), seen_healthy };
                    let pause = self.after_exit(exit, how, Some(self.output.last_line()));
                    tokio::select! {
                        _ = stopped.changed() => return,
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }

    /// Decides the pause after an exit described by `how` (with OpenBao's last line of output, when a
    /// process ran), reports it, and returns it.
    fn after_exit(&mut self, exit: Exit, how: String, last_output: Option<String>) -> Duration {
        let decision = self.policy.after(exit, Instant::now());
        self.status.send_modify(|status| status.exits += 1);
        let last_output = last_output.unwrap_or_default();
        let uptime_ms = u64::try_from(exit.uptime.as_millis()).unwrap_or(u64::MAX);
        if decision.early_exits == 0 {
            tracing::warn!(status = %how, uptime_ms, "OpenBao exited; starting it again now");
        } else if decision.crash_loop() {
            let report = CrashLoop {
                exits: decision.early_exits,
                frequent: decision.frequent,
                last_exit: how,
                next_start_in: decision.pause,
            };
            tracing::error!(last_output = %last_output, "{report}");
            self.status.send_modify(|status| status.crash_loop = Some(report));
        } else {
            tracing::warn!(
                status = %how,
                uptime_ms,
                early_exits = decision.early_exits,
                pause_ms = u64::try_from(decision.pause.as_millis()).unwrap_or(u64::MAX),
                last_output = %last_output,
                frequent = decision.frequent,
                "OpenBao exited before it became healthy (or too often); starting it again after a pause"
            );
        }
        decision.pause
    }

    /// The running OpenBao was seen healthy: a crash loop is over.
    fn healthy_again(&self) {
        if self.status.send_if_modified(|status| status.crash_loop.take().is_some()) {
            tracing::info!("OpenBao is healthy again: the crash loop is over");
        }
    }

    /// Notes (and logs, once) a full filesystem under OpenBao's audit log, and when it has room again.
    fn check_audit_disk(&self) {
        let Some(path) = &self.audit_log else { return };
        let dir = path.parent().unwrap_or(path);
        let Ok(fs) = rustix::fs::statvfs(dir) else { return };
        // OpenBao runs as edgeseal's user: root may use the blocks reserved for it.
        let free = if nix::unistd::geteuid().is_root() { fs.f_bfree } else { fs.f_bavail };
        let full = free.saturating_mul(fs.f_frsize) < AUDIT_ROOM;
        let problem = full.then(|| {
            format!(
                "the filesystem of OpenBao's audit log {} is full: OpenBao refuses every request it cannot audit; free space there (the log is rotated at secret_store.supervise.logs.max_size)",
                path.display()
            )
        });
        let changed = self.status.send_if_modified(|status| {
            let changed = status.audit_disk_full.is_some() != full;
            status.audit_disk_full = problem.clone();
            changed
        });
        match (changed, problem) {
            (true, Some(problem)) => tracing::error!("{problem}"),
            (true, None) => {
                tracing::info!(file = %path.display(), "the filesystem of OpenBao's audit log has room again")
            }
            _ => {}
        }
    }

    /// Rotates OpenBao's audit log once it reached its size, and tells OpenBao (SIGHUP) to reopen it:
    /// what it writes until then lands in `<file>.1`, nothing is lost.
    fn rotate_audit_log(&self, child: &Child) {
        let Some(path) = &self.audit_log else { return };
        // A symlink planted at the log's name is neither measured nor rotated.
        let Ok(meta) = fs::symlink_metadata(path) else { return };
        let size = meta.len();
        if !meta.is_file() {
            return;
        }
        if size < self.logs.max_size {
            return;
        }
        let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) else { return };
        match durable_file::log::rotate(path, self.logs.keep) {
            Ok(()) => {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGHUP);
                tracing::info!(file = %path.display(), size, keep = self.logs.keep, "rotated OpenBao's audit log");
            }
            Err(e) => tracing::warn!(file = %path.display(), error = %e, "cannot rotate OpenBao's audit log"),
        }
    }

    /// Starts OpenBao with its output going through a pipe to [`Output`].
    fn spawn(&self) -> std::io::Result<(Child, std::io::Result<std::thread::JoinHandle<()>>)> {
        let (reader, writer) = super::output::pipe()?;
        let mut command = Command::new(&self.binary);
        command
            .arg("server")
            .arg(format!("-config={}", self.config_file.display()))
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", &self.data_dir)
            // A cluster member's audit log path is relative to it (the same on every member).
            .current_dir(&self.data_dir);
        for (name, value) in &self.env {
            command.env(name, value.expose());
        }
        command.stdin(Stdio::null()).stdout(writer.try_clone()?).stderr(writer).kill_on_drop(true);
        let child = command.spawn()?;
        // Our ends of the pipe's write side go with `command`: the copy sees the end of OpenBao's output.
        drop(command);
        Ok((child, self.output.copy(reader)))
    }
}

/// Free bytes under OpenBao's audit log below which its filesystem counts as full (a few records).
const AUDIT_ROOM: u64 = 16 * 1024;
/// How long an exited OpenBao's output may take to drain before the supervision goes on.
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);
/// How often the size of OpenBao's audit log (and the room left for it) is looked at.
const ROTATION_CHECK: Duration = Duration::from_secs(1);
/// An OpenBao started this long ago has its SIGHUP handler installed.
const SIGHUP_SAFE_AFTER: Duration = Duration::from_secs(5);

async fn terminate(child: &mut Child) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
    }
    if tokio::time::timeout(Duration::from_secs(15), child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
    tracing::info!("OpenBao stopped");
}
