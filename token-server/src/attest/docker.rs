//! Docker facts about a container: the daemon's answer to `GET /containers/<id>/json`, cached per
//! container id and dropped when the daemon reports the container died or was destroyed.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::query_parameters::EventsOptions;
use futures_util::StreamExt;
use thiserror::Error;

use super::facts::ContainerFacts;

/// Cached answers older than this are asked again (the event stream normally clears them first).
const CACHE_TTL: Duration = Duration::from_secs(60);
/// Bound on the cache.
const CACHE_MAX: usize = 4096;

/// Why the Docker daemon cannot be used.
#[derive(Debug, Error)]
pub enum DockerError {
    /// The socket path is not safe to trust.
    #[error("docker socket {path}: {reason}")]
    Untrusted {
        /// The socket or a directory above it.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Connecting or negotiating the API version failed.
    #[error("docker daemon at {path}: {reason}")]
    Connect {
        /// The socket.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// A Docker daemon client with a per-container cache.
#[derive(Clone)]
pub struct DockerFacts {
    client: bollard::Docker,
    socket: PathBuf,
    cache: Arc<Mutex<HashMap<String, (ContainerFacts, Instant)>>>,
    /// Bumped by every die/destroy/rename event and every break of the event stream: an answer asked
    /// for before a bump may describe a container that has since died, so it is not cached.
    events: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for DockerFacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerFacts").field("socket", &self.socket).finish_non_exhaustive()
    }
}

/// Checks that a daemon socket is one a workload cannot control: a socket owned by root, in
/// directories owned by root (or us) that group and others cannot write (root's sticky dirs allowed).
pub fn check_socket(path: &Path) -> Result<(), DockerError> {
    let untrusted = |p: &Path, reason: String| DockerError::Untrusted { path: p.to_path_buf(), reason };
    let meta = std::fs::metadata(path).map_err(|e| untrusted(path, e.to_string()))?;
    if !meta.file_type().is_socket() {
        return Err(untrusted(path, "is not a socket".into()));
    }
    if meta.uid() != 0 {
        return Err(untrusted(path, format!("is owned by uid {}, not root", meta.uid())));
    }
    let euid = nix::unistd::geteuid().as_raw();
    for dir in path.ancestors().skip(1) {
        let meta = std::fs::metadata(dir).map_err(|e| untrusted(dir, e.to_string()))?;
        let mode = meta.permissions().mode();
        let owner_ok = meta.uid() == 0 || meta.uid() == euid;
        let sticky_root = meta.uid() == 0 && mode & 0o1000 != 0;
        if !owner_ok || (mode & 0o022 != 0 && !sticky_root) {
            return Err(untrusted(
                dir,
                format!("directory is not root-controlled (owner {}, mode {:04o})", meta.uid(), mode & 0o7777),
            ));
        }
    }
    Ok(())
}

impl DockerFacts {
    /// Connects to the daemon at `socket` (API version negotiated) after checking the socket.
    pub async fn connect(socket: &Path) -> Result<Self, DockerError> {
        check_socket(socket)?;
        let connect = |reason: String| DockerError::Connect { path: socket.to_path_buf(), reason };
        let path = socket.to_str().ok_or_else(|| connect("path is not UTF-8".into()))?;
        let client = bollard::Docker::connect_with_unix(path, 10, bollard::API_DEFAULT_VERSION)
            .map_err(|e| connect(e.to_string()))?
            .negotiate_version()
            .await
            .map_err(|e| connect(e.to_string()))?;
        Ok(Self { client, socket: socket.to_path_buf(), cache: Arc::default(), events: Arc::default() })
    }

    /// Facts about container `id` (64 hex, from the caller's cgroup).
    pub async fn inspect(&self, id: &str) -> Result<ContainerFacts, String> {
        if let Some(facts) = self.cached(id) {
            return Ok(facts);
        }
        let asked_at = self.events.load(std::sync::atomic::Ordering::SeqCst);
        let answer = self.client.inspect_container(id, None).await.map_err(|e| e.to_string())?;
        let config = answer.config.unwrap_or_default();
        let facts = ContainerFacts {
            id: answer.id.unwrap_or_default(),
            name: answer.name.unwrap_or_default().trim_start_matches('/').to_string(),
            image: config.image.unwrap_or_default(),
            labels: config.labels.unwrap_or_default().into_iter().collect::<BTreeMap<_, _>>(),
            running: answer.state.as_ref().and_then(|s| s.running).unwrap_or(false),
            init_pid: answer.state.as_ref().and_then(|s| s.pid).filter(|p| *p > 0),
            init_pid_namespace: None,
        };
        let facts = ContainerFacts {
            init_pid_namespace: facts.init_pid.and_then(|pid| {
                std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok().map(|l| l.to_string_lossy().into_owned())
            }),
            ..facts
        };
        if facts.id != id {
            return Err(format!("the daemon answered for container {:?}, not {id}", facts.id));
        }
        if facts.running {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if self.events.load(std::sync::atomic::Ordering::SeqCst) != asked_at {
                // A container died (or the stream broke) while the daemon answered: do not cache.
                return Ok(facts);
            }
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(id.to_string(), (facts.clone(), Instant::now()));
        }
        Ok(facts)
    }

    fn cached(&self, id: &str) -> Option<ContainerFacts> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(id).filter(|(_, at)| at.elapsed() < CACHE_TTL).map(|(facts, _)| facts.clone())
    }

    /// Number of cached containers (for tests and metrics).
    pub fn cached_len(&self) -> usize {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Follows the daemon's event stream and drops cache entries of containers that die or are
    /// destroyed. Reconnects with backoff; clears the whole cache whenever the stream breaks.
    pub async fn follow_events(self) {
        let mut pause = Duration::from_millis(100);
        loop {
            let filters = HashMap::from([
                ("type".to_string(), vec!["container".to_string()]),
                ("event".to_string(), vec!["die".to_string(), "destroy".to_string(), "rename".to_string()]),
            ]);
            let mut events = self.client.events(Some(EventsOptions { filters: Some(filters), ..Default::default() }));
            while let Some(event) = events.next().await {
                match event {
                    Ok(event) => {
                        pause = Duration::from_millis(100);
                        if let Some(id) = event.actor.and_then(|a| a.id) {
                            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                            self.events.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            cache.remove(&id);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "docker event stream failed; cache cleared");
                        break;
                    }
                }
            }
            {
                let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                self.events.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                cache.clear();
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }
}
