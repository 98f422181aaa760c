//! Who is calling: SO_PEERCRED at accept time, the process pinned against pid reuse, kernel facts
//! from `/proc/<pid>`, the container id from `/proc/<pid>/cgroup`, Docker facts from the daemon, and
//! a final check that the same process is still there.
//!
//! - [`kernel`]: the pinned process and what `/proc` says about it.
//! - [`pidfd`]: SO_PEERPIDFD (the one unsafe function).
//! - [`cgroup`]: parsing container ids and systemd units out of `/proc/<pid>/cgroup` (pure).
//! - [`docker`]: the Docker daemon client and its cache.
//! - [`facts`]: what the attestation produces.

pub mod cgroup;
pub mod docker;
pub mod facts;
pub mod kernel;
pub mod pidfd;

use std::time::Duration;

use thiserror::Error;
use tokio::net::UnixStream;

use self::docker::DockerFacts;
use self::facts::Facts;
use self::kernel::{Pinned, Vanished};

/// Why a caller could not be attested. All are denials (403), never a token.
#[derive(Debug, Error)]
pub enum AttestError {
    /// SO_PEERCRED failed or gave no pid.
    #[error("cannot read the caller's credentials: {0}")]
    Credentials(String),
    /// The process exited or was replaced while being inspected.
    #[error(transparent)]
    Vanished(#[from] Vanished),
    /// Its cgroup file could not be read or names several containers.
    #[error("cannot tell the caller's container: {0}")]
    Cgroup(String),
}

/// Attests callers.
#[derive(Debug, Clone)]
pub struct Attestor {
    docker: Option<DockerFacts>,
    hash_exe: bool,
    hash_limit: u64,
    docker_timeout: Duration,
    /// Test hook: sleep this long between lookups and the final check, to widen the pid-reuse race.
    pub race_delay: Option<Duration>,
    /// Refuse callers when the kernel gives no SO_PEERPIDFD (Linux < 6.5): pinning by `/proc` alone
    /// starts when the connection is accepted, not when it was made.
    pub require_pidfd: bool,
}

impl Attestor {
    /// `docker`: the daemon client (None: containers are never matched); `hash_exe`: whether any
    /// selector needs the executable's SHA-256.
    pub fn new(docker: Option<DockerFacts>, hash_exe: bool, hash_limit: u64) -> Self {
        Self {
            docker,
            hash_exe,
            hash_limit,
            docker_timeout: Duration::from_secs(2),
            race_delay: None,
            require_pidfd: true,
        }
    }

    /// The Docker client, if any.
    pub fn docker(&self) -> Option<&DockerFacts> {
        self.docker.as_ref()
    }

    /// At accept time: the peer's credentials (SO_PEERCRED), its pidfd, and the pinned process.
    pub fn pin(&self, stream: &UnixStream) -> Result<Peer, AttestError> {
        let cred = stream.peer_cred().map_err(|e| AttestError::Credentials(e.to_string()))?;
        let pid = cred.pid().ok_or_else(|| AttestError::Credentials("the kernel reported no pid".into()))?;
        let pidfd = pidfd::peer_pidfd(stream);
        if pidfd.is_none() && self.require_pidfd {
            return Err(AttestError::Credentials(
                "this kernel gives no SO_PEERPIDFD (Linux 6.5 or later); set token_server.allow_without_pidfd: true to accept pinning by /proc alone".into(),
            ));
        }
        let pinned = Pinned::pin(pid, cred.uid(), pidfd)?;
        let cgroup = pinned.read("cgroup").map_err(|e| AttestError::Cgroup(format!("/proc/{pid}/cgroup: {e}")))?;
        let container_id = cgroup::container_id(&cgroup).map_err(|e| AttestError::Cgroup(e.to_string()))?;
        let systemd_unit = if container_id.is_none() { cgroup::systemd_unit(&cgroup) } else { None };
        Ok(Peer { pinned, uid: cred.uid(), gid: cred.gid(), container_id, systemd_unit })
    }

    /// Per request: gathers the facts about a pinned peer, then re-checks that the very same process
    /// is still there. Facts are only ever returned after that check.
    pub async fn attest(&self, peer: &Peer) -> Result<Facts, AttestError> {
        let mut facts = Facts {
            pid: peer.pinned.pid(),
            uid: peer.uid,
            gid: peer.gid,
            exe: peer.pinned.exe(),
            systemd_unit: peer.systemd_unit.clone(),
            container_id: peer.container_id.clone(),
            ..Facts::default()
        };
        if self.hash_exe {
            facts.exe_sha256 = peer.pinned.exe_sha256(self.hash_limit);
        }
        if let Some(id) = &peer.container_id {
            match &self.docker {
                Some(docker) => match tokio::time::timeout(self.docker_timeout, docker.inspect(id)).await {
                    Ok(Ok(container)) => match same_pid_namespace(&peer.pinned, &container) {
                        Ok(()) => facts.container = Some(container),
                        Err(why) => facts.docker_error = Some(why),
                    },
                    Ok(Err(e)) => facts.docker_error = Some(e),
                    Err(_) => facts.docker_error = Some("the Docker daemon did not answer in time".into()),
                },
                None => facts.docker_error = Some("Docker attestation is disabled (token_server.docker_socket)".into()),
            }
        }
        if let Some(delay) = self.race_delay {
            tokio::time::sleep(delay).await;
        }
        peer.pinned.verify()?;
        Ok(facts)
    }
}

/// A process whose cgroup names a container must also live in that container's pid namespace (the one
/// of its init process, `State.Pid`): a cgroup path is only a name, a namespace is not. The namespace
/// links are compared when edgeseal may read them (it needs ptrace access: root on the host, or
/// CAP_SYS_PTRACE); otherwise the depth of pid namespaces (`NSpid` in `/proc/<pid>/status`, readable
/// by anyone) must match the container's and be nested, which a host process never is. Containers
/// sharing the host's pid namespace (`pid: host`) pass trivially.
fn same_pid_namespace(pinned: &Pinned, container: &facts::ContainerFacts) -> Result<(), String> {
    let denied = || {
        "the caller is not in the container's pid namespace (its cgroup names a container it does not run in)"
            .to_string()
    };
    let Some(init) = container.init_pid else {
        return Err("the Docker daemon reported no process for the container".into());
    };
    match (pinned.pid_namespace(), std::fs::read_link(format!("/proc/{init}/ns/pid"))) {
        (Some(ours), Ok(theirs)) => (std::path::Path::new(&ours) == theirs).then_some(()).ok_or_else(denied),
        _ => {
            let theirs = std::fs::read_to_string(format!("/proc/{init}/status"))
                .ok()
                .and_then(|status| kernel::parse_nspid_depth(&status));
            let ours = pinned.read("status").ok().and_then(|status| kernel::parse_nspid_depth(&status));
            match (ours, theirs) {
                (Some(ours), Some(theirs)) if ours == theirs && ours >= 2 => Ok(()),
                _ => Err(denied()),
            }
        }
    }
}

/// A connected peer, pinned at accept time.
#[derive(Debug)]
pub struct Peer {
    pinned: Pinned,
    uid: u32,
    gid: u32,
    container_id: Option<String>,
    systemd_unit: Option<String>,
}

impl Peer {
    /// The key the rate limiter counts requests under: the container, or uid+pid on the host.
    pub fn rate_key(&self) -> String {
        match &self.container_id {
            Some(id) => format!("container:{id}"),
            None => format!("uid:{}:pid:{}", self.uid, self.pinned.pid()),
        }
    }

    /// The pid (for logs).
    pub fn pid(&self) -> i32 {
        self.pinned.pid()
    }

    /// The effective uid from SO_PEERCRED (connection limits count against it).
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// The container id from the caller's cgroup, if it names one (connection limits count against it).
    pub fn container_id(&self) -> Option<&str> {
        self.container_id.as_deref()
    }
}
