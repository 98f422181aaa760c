//! Supervising a local OpenBao: edgeseal starts `bao server` with a configuration it writes from its
//! own PKI (raft with `performance_multiplier = 1`, TLS, a declarative file audit device), restarts it
//! when it dies, and stops it cleanly on shutdown. A device or a laptop then needs no compose file.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::process::{Child, Command};
use tokio::sync::{watch, Mutex};

use crate::server_config::ServerConfig;

/// `secret_store.supervise:` — run OpenBao as a child of edgeseal.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuperviseConfig {
    /// Absolute path of the `bao` binary.
    pub binary: PathBuf,
    /// Persistent directory for raft data, the generated config and OpenBao's logs.
    pub data_dir: PathBuf,
}

/// A supervised OpenBao process.
#[derive(Debug)]
pub struct Supervisor {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    pid: Arc<Mutex<Option<u32>>>,
    restarts: watch::Receiver<u64>,
}

/// Writes the OpenBao configuration and prepares directories; returns the config file's path.
pub fn prepare(config: &SuperviseConfig, server: &ServerConfig) -> std::io::Result<PathBuf> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(&config.data_dir)?;
    fs::DirBuilder::new().recursive(true).mode(0o700).create(&server.data_dir)?;
    let path = config.data_dir.join("openbao.hcl");
    fs::write(&path, server.render())?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
    Ok(path)
}

impl Supervisor {
    /// Starts OpenBao and keeps it running until [`Supervisor::stop`].
    pub fn start(config: &SuperviseConfig, config_file: &Path) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let (restart_tx, restarts) = watch::channel(0u64);
        let pid = Arc::new(Mutex::new(None));
        let (binary, config_file, log_dir) =
            (config.binary.clone(), config_file.to_path_buf(), config.data_dir.clone());
        let pid_slot = pid.clone();
        let task = tokio::spawn(async move {
            let mut backoff = Duration::from_millis(200);
            let mut starts = 0u64;
            loop {
                let mut child = match spawn(&binary, &config_file, &log_dir) {
                    Ok(child) => child,
                    Err(e) => {
                        tracing::error!(binary = %binary.display(), error = %e, "cannot start OpenBao");
                        tokio::select! {
                            _ = stopped.changed() => return,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                        continue;
                    }
                };
                starts += 1;
                *pid_slot.lock().await = child.id();
                if starts > 1 {
                    let _ = restart_tx.send(starts - 1);
                }
                tracing::info!(pid = child.id(), "OpenBao started");
                tokio::select! {
                    status = child.wait() => {
                        tracing::warn!(status = ?status.ok(), "OpenBao exited; restarting it");
                        *pid_slot.lock().await = None;
                        tokio::select! {
                            _ = stopped.changed() => return,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                    _ = stopped.changed() => {
                        terminate(&mut child).await;
                        *pid_slot.lock().await = None;
                        return;
                    }
                }
            }
        });
        Self { stop, task, pid, restarts }
    }

    /// The current OpenBao pid, if running.
    pub async fn pid(&self) -> Option<u32> {
        *self.pid.lock().await
    }

    /// How many times OpenBao was restarted after dying.
    pub fn restarts(&self) -> u64 {
        *self.restarts.borrow()
    }

    /// Stops OpenBao (SIGTERM, then SIGKILL after 15 s) and the supervision.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

fn spawn(binary: &Path, config_file: &Path, log_dir: &Path) -> std::io::Result<Child> {
    let log = fs::OpenOptions::new().create(true).append(true).open(log_dir.join("openbao.log"))?;
    let err = log.try_clone()?;
    Command::new(binary)
        .arg("server")
        .arg(format!("-config={}", config_file.display()))
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", log_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(err))
        .kill_on_drop(true)
        .spawn()
}

async fn terminate(child: &mut Child) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
    }
    if tokio::time::timeout(Duration::from_secs(15), child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
    tracing::info!("OpenBao stopped");
}
