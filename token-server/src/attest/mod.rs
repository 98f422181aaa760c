//! Who is calling: SO_PEERCRED at accept time, the process pinned against pid reuse, kernel facts
//! from `/proc/<pid>`, the container id from `/proc/<pid>/cgroup`, Docker facts from the daemon, and
//! a final check that the same process is still there.
//!
//! How a caller is identified: its uid/gid from SO_PEERCRED; the process pinned by SO_PEERPIDFD (or,
//! where allowed, by `/proc` alone); when the connection is accepted, its cgroup (container id,
//! systemd unit) and the path of the executable it runs (read from the `/proc/<pid>/exe` link, which
//! does not open the file); when its connection task starts, the executable's file identity (device,
//! inode), but only for callers a `unix` rule with `path` or `sha256` could match by uid/gid; per
//! request, the executable again (a caller whose executable changed since then is denied), whether it shares the host's pid and mount namespaces (`unix`-only selectors require it),
//! its cgroup's container and the Docker daemon's facts about it, and the executable's SHA-256 when a
//! rule that could match the caller's uid/gid, systemd unit and executable path asks for one.
//!
//! Nothing that opens the executable runs in the accept loop or on an async worker: opening
//! `/proc/<pid>/exe` goes to the file system the binary lives on, which may be the caller's own FUSE
//! mount whose daemon never answers. [`Attestor::pin`] (in the accept loop) reads only procfs and
//! SO_PEERCRED/SO_PEERPIDFD; the open and fstat run through [`exe::ExeOpener`] (blocking pool,
//! bounded, with a deadline; the caller is denied when it passes).
//!
//! What the exec check sees: the executable when the connection task starts (shortly after
//! accept), not when the client called connect(). A process that exec'd between its connect() and
//! the accept is judged by what it runs after the exec; this cannot make one service pass for
//! another because the config refuses services told apart only by executable path.
//!
//! - [`kernel`]: the pinned process and what `/proc` says about it.
//! - [`pidfd`]: SO_PEERPIDFD (the one unsafe function) and which of its errors deny.
//! - [`cgroup`]: parsing container ids and systemd units out of `/proc/<pid>/cgroup` (pure).
//! - [`namespaces`]: is the caller in the host's pid and mount namespaces?
//! - [`exe`]: the executable's identity, and hashing it off the async workers, bounded and cached.
//! - [`docker`]: the Docker daemon client and its cache.
//! - [`facts`]: what the attestation produces.

pub mod cgroup;
pub mod docker;
pub mod exe;
pub mod facts;
pub mod kernel;
pub mod namespaces;
pub mod pidfd;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::net::UnixStream;

use self::docker::DockerFacts;
use self::exe::{ExeHasher, ExeOpener, ExeStalled};
use self::facts::Facts;
use self::kernel::{Pinned, Vanished};
use self::namespaces::HostNamespaces;
use crate::config::ServiceRule;

/// Why a caller could not be attested. All are denials (403), never a token.
#[derive(Debug, Error)]
pub enum AttestError {
    /// SO_PEERCRED failed or gave no pid.
    #[error("cannot read the caller's credentials: {0}")]
    Credentials(String),
    /// The process exited or was replaced while being inspected.
    #[error(transparent)]
    Vanished(#[from] Vanished),
    /// Opening the caller's executable did not finish in time (see [`exe::ExeOpener`]).
    #[error(transparent)]
    ExeStalled(#[from] ExeStalled),
    /// Its cgroup file could not be read or names several containers.
    #[error("cannot tell the caller's container: {0}")]
    Cgroup(String),
    /// SO_PEERPIDFD failed for another reason than "not supported by this kernel".
    #[error("cannot pin the caller: SO_PEERPIDFD failed ({0}); the caller may have exited, connect again")]
    Pidfd(std::io::Error),
    /// The process runs another executable than when its connection was taken in (it exec'd with
    /// the connection open): the connection belongs to what it ran then, not to what it runs now.
    /// "Then" is the accept (path) and the start of the connection's task (file identity), not the
    /// client's connect(): an exec between connect() and accept is not seen (see the module doc).
    #[error("executable changed since connect (connected running {before}, now runs {now}); connect again from the process that asks")]
    ExeChanged {
        /// What it ran when the connection was accepted (path) and its task started (identity).
        before: String,
        /// What it runs now.
        now: String,
    },
}

/// Attests callers.
#[derive(Debug, Clone)]
pub struct Attestor {
    docker: Option<DockerFacts>,
    hash_exe: bool,
    hasher: ExeHasher,
    /// Opens executables off the async workers, bounded, with a deadline (its timeout and test hook
    /// are public for tests).
    pub opener: ExeOpener,
    /// When set, executables are opened and hashed only for callers some of these rules could match.
    hash_rules: Option<Arc<[ServiceRule]>>,
    docker_timeout: Duration,
    /// Test hook: sleep this long between lookups and the final check, to widen the pid-reuse race.
    pub race_delay: Option<Duration>,
    /// Refuse callers when the kernel gives no SO_PEERPIDFD (Linux < 6.5): pinning by `/proc` alone
    /// starts when the connection is accepted, not when it was made.
    pub require_pidfd: bool,
}

impl Attestor {
    /// `docker`: the daemon client (None: containers are never matched); `hash_exe`: whether any
    /// selector needs the executable's SHA-256 (files above `hash_limit` bytes are never hashed).
    /// Call [`Attestor::hash_only_for`] to hash only for callers a `sha256` rule could match.
    pub fn new(docker: Option<DockerFacts>, hash_exe: bool, hash_limit: u64) -> Self {
        Self {
            docker,
            hash_exe,
            hasher: ExeHasher::new(hash_limit),
            opener: ExeOpener::default(),
            hash_rules: None,
            docker_timeout: Duration::from_secs(2),
            race_delay: None,
            require_pidfd: true,
        }
    }

    /// Hashes a caller's executable only when one of `rules` wants a `unix.sha256` and its uid, gid
    /// and host/container kind could match the caller (see [`crate::selector::wants_exe_hash`]).
    pub fn hash_only_for(&mut self, rules: &[ServiceRule]) {
        self.hash_exe = rules.iter().any(|r| r.selectors.unix.as_ref().is_some_and(|u| u.sha256.is_some()));
        self.hash_rules = Some(rules.into());
    }

    /// The executable hasher (for tests and metrics).
    pub fn hasher(&self) -> &ExeHasher {
        &self.hasher
    }

    /// The Docker client, if any.
    pub fn docker(&self) -> Option<&DockerFacts> {
        self.docker.as_ref()
    }

    /// At accept time: the peer's credentials (SO_PEERCRED), its pidfd, the pinned process, its cgroup
    /// and its executable's path. Reads only procfs and the socket (never the executable itself, see
    /// the module doc), so it cannot block the accept loop. Call [`Attestor::identify`] next, in the
    /// connection's own task.
    pub fn pin(&self, stream: &UnixStream) -> Result<Peer, AttestError> {
        let cred = stream.peer_cred().map_err(|e| AttestError::Credentials(e.to_string()))?;
        let pid = cred.pid().ok_or_else(|| AttestError::Credentials("the kernel reported no pid".into()))?;
        let pidfd = pidfd::peer_pidfd(stream).map_err(AttestError::Pidfd)?;
        if pidfd.is_none() && self.require_pidfd {
            return Err(AttestError::Credentials(
                "this kernel gives no SO_PEERPIDFD (Linux 6.5 or later); set token_server.allow_without_pidfd: true to accept pinning by /proc alone".into(),
            ));
        }
        let pinned = Pinned::pin(pid, cred.uid(), pidfd)?;
        let cgroup = pinned.read("cgroup").map_err(|e| AttestError::Cgroup(format!("/proc/{pid}/cgroup: {e}")))?;
        let container_id = cgroup::container_id(&cgroup).map_err(|e| AttestError::Cgroup(e.to_string()))?;
        let systemd_unit = if container_id.is_none() { cgroup::systemd_unit(&cgroup) } else { None };
        let (uid, gid) = (cred.uid(), cred.gid());
        let opens_exe = self.hash_rules.as_deref().is_none_or(|rules| {
            crate::selector::wants_exe_file(rules, uid, gid, container_id.is_some(), systemd_unit.as_deref())
        });
        let exe_at_connect = ExeSeen { path: pinned.exe(), id: None };
        Ok(Peer { pinned, uid, gid, container_id, systemd_unit, exe_at_connect, opens_exe })
    }

    /// In the connection's task, before its first request: records the executable's file identity
    /// (device, inode) for the exec check, when a rule could look at the executable
    /// (`unix.path`/`unix.sha256`). Denies when opening it does not finish in time.
    pub async fn identify(&self, mut peer: Peer) -> Result<Peer, AttestError> {
        if peer.opens_exe {
            peer.exe_at_connect = self.exe_seen(&peer.pinned, true).await?.0;
        }
        Ok(peer)
    }

    /// The executable's path (from the link) and, when `open`, its file identity and the open file,
    /// through [`ExeOpener`].
    async fn exe_seen(&self, pinned: &Pinned, open: bool) -> Result<(ExeSeen, Option<std::fs::File>), AttestError> {
        let path = pinned.exe();
        let dir = match pinned.dir() {
            Ok(dir) if open => dir,
            _ => return Ok((ExeSeen { path, id: None }, None)),
        };
        match self.opener.open(dir, path.clone()).await? {
            Some((file, id)) => Ok((ExeSeen { path, id: Some(id) }, Some(file))),
            None => Ok((ExeSeen { path, id: None }, None)),
        }
    }

    /// Per request: gathers the facts about a pinned peer, then re-checks that the very same process
    /// is still there. Facts are only ever returned after that check.
    pub async fn attest(&self, peer: &Peer) -> Result<Facts, AttestError> {
        let (exe, exe_file) = self.exe_seen(&peer.pinned, peer.opens_exe).await?;
        if !exe.same_as(&peer.exe_at_connect) {
            // A process that exited has an unreadable executable: say that it exited, not that it exec'd.
            peer.pinned.verify()?;
            return Err(AttestError::ExeChanged { before: peer.exe_at_connect.to_string(), now: exe.to_string() });
        }
        let host_namespaces = match &peer.container_id {
            None => namespaces::decide(&namespaces::observe(&peer.pinned)),
            Some(_) => HostNamespaces::No("its cgroup names a Docker container".into()),
        };
        let mut facts = Facts {
            pid: peer.pinned.pid(),
            uid: peer.uid,
            gid: peer.gid,
            exe: exe.path,
            systemd_unit: peer.systemd_unit.clone(),
            container_id: peer.container_id.clone(),
            host_namespaces,
            ..Facts::default()
        };
        if let Some(file) = exe_file.filter(|_| self.wants_hash(peer, facts.exe.as_deref())) {
            facts.exe_sha256 = self.hasher.sha256(file).await;
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

    fn wants_hash(&self, peer: &Peer, exe: Option<&std::path::Path>) -> bool {
        let in_container = peer.container_id.is_some();
        let unit = peer.systemd_unit.as_deref();
        self.hash_exe
            && self
                .hash_rules
                .as_deref()
                .is_none_or(|rules| crate::selector::wants_exe_hash(rules, peer.uid, peer.gid, in_container, unit, exe))
    }
}

/// The executable a process runs: its path and the file mapped (device, inode).
#[derive(Debug, Clone, PartialEq, Eq)]
struct ExeSeen {
    path: Option<PathBuf>,
    id: Option<(u64, u64)>,
}

impl ExeSeen {
    /// The same file at the same path. The kernel appends " (deleted)" to the link once the file is
    /// unlinked (a package upgrade): that is not an exec, so it is ignored.
    fn same_as(&self, other: &ExeSeen) -> bool {
        let path = |seen: &ExeSeen| {
            seen.path.as_ref().map(|p| {
                let text = p.to_string_lossy();
                text.strip_suffix(" (deleted)").map(str::to_string).unwrap_or_else(|| text.into_owned())
            })
        };
        self.id == other.id && path(self) == path(other)
    }
}

impl std::fmt::Display for ExeSeen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.path, &self.id) {
            (Some(path), Some((_, ino))) => write!(f, "{} (inode {ino})", path.display()),
            (Some(path), None) => write!(f, "{}", path.display()),
            (None, _) => f.write_str("an unreadable executable"),
        }
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
    match (pinned.pid_namespace(), container.init_pid_namespace.as_deref()) {
        (Some(ours), Some(theirs)) => (ours == theirs).then_some(()).ok_or_else(denied),
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
    /// The executable when the connection was accepted (path) and its task started (identity).
    exe_at_connect: ExeSeen,
    /// Whether a rule could look at the executable: only then is it opened (see the module doc).
    opens_exe: bool,
}

impl Peer {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_executable_is_the_same_file_at_the_same_path() {
        let seen = |path: &str, id: (u64, u64)| ExeSeen { path: Some(path.into()), id: Some(id) };
        let a = seen("/usr/bin/a", (1, 10));
        let cases = [
            (seen("/usr/bin/a", (1, 10)), true),
            (seen("/usr/bin/a (deleted)", (1, 10)), true),
            (seen("/usr/bin/b", (1, 10)), false),
            (seen("/usr/bin/a", (1, 11)), false),
            (seen("/usr/bin/a", (2, 10)), false),
            (ExeSeen { path: Some("/usr/bin/a".into()), id: None }, false),
            (ExeSeen { path: None, id: None }, false),
        ];
        for (now, same) in cases {
            assert_eq!(now.same_as(&a), same, "{now:?}");
        }
        let unreadable = ExeSeen { path: None, id: None };
        assert!(unreadable.same_as(&unreadable.clone()), "unreadable then and now: nothing changed that we can see");
    }
}
