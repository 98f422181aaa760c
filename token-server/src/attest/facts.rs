//! What edgeseal learned about a caller: from the kernel and, for containers, the Docker daemon.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use super::namespaces::HostNamespaces;

/// Attested facts about the process on the other end of a connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Facts {
    /// Host pid (SO_PEERCRED).
    pub pid: i32,
    /// Effective uid (SO_PEERCRED).
    pub uid: u32,
    /// Effective gid (SO_PEERCRED).
    pub gid: u32,
    /// `/proc/<pid>/exe`, as seen from the host (a container's binary shows its path inside the
    /// container's root).
    pub exe: Option<PathBuf>,
    /// SHA-256 of the executable, when a selector needs it and it is below the size limit.
    pub exe_sha256: Option<String>,
    /// The systemd unit of the process, if it runs in one.
    pub systemd_unit: Option<String>,
    /// The container id from `/proc/<pid>/cgroup`, if the process is in a container.
    pub container_id: Option<String>,
    /// The Docker daemon's answer about that container.
    pub container: Option<ContainerFacts>,
    /// Why the Docker facts are missing, when the process is in a container but they are.
    pub docker_error: Option<String>,
    /// Whether the process shares the host's pid and mount namespaces (those of pid 1); only then
    /// can a `unix`-only selector match it.
    pub host_namespaces: HostNamespaces,
}

/// Facts about a container, from `GET /containers/<id>/json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ContainerFacts {
    /// Full container id.
    pub id: String,
    /// Name without the leading `/`.
    pub name: String,
    /// `Config.Image`.
    pub image: String,
    /// `Config.Labels`.
    pub labels: BTreeMap<String, String>,
    /// `State.Running`.
    pub running: bool,
    /// `State.Pid`: the container's init process on the host, used to check the caller shares its pid
    /// namespace.
    #[serde(skip)]
    pub init_pid: Option<i64>,
    /// The pid namespace of that init process (`pid:[inode]`), read when the daemon answered (cached
    /// with the answer); `None` when edgeseal may not read it (no ptrace access).
    #[serde(skip)]
    pub init_pid_namespace: Option<String>,
}

impl ContainerFacts {
    /// Label `com.docker.compose.service`.
    pub fn compose_service(&self) -> Option<&str> {
        self.labels.get("com.docker.compose.service").map(String::as_str)
    }

    /// Label `com.docker.compose.project`.
    pub fn compose_project(&self) -> Option<&str> {
        self.labels.get("com.docker.compose.project").map(String::as_str)
    }
}

impl Facts {
    /// One line describing what was seen, for denial messages and audit logs: the caller's own facts
    /// only, never another service's selectors.
    pub fn describe(&self) -> String {
        let exe = self.exe.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "?".into());
        let mut text = format!("pid={} uid={} gid={} exe={exe}", self.pid, self.uid, self.gid);
        match (&self.container, &self.container_id) {
            (Some(c), _) => {
                text.push_str(&format!(" container={} name={} image={}", short(&c.id), c.name, c.image));
                if let Some(service) = c.compose_service() {
                    text.push_str(&format!(" compose_service={service}"));
                }
            }
            (None, Some(id)) => match &self.docker_error {
                Some(why) => text.push_str(&format!(" container={} (no Docker facts: {why})", short(id))),
                None => text.push_str(&format!(" container={} (no Docker facts)", short(id))),
            },
            (None, None) => text.push_str(" container=none"),
        }
        if self.container_id.is_none() && self.host_namespaces != HostNamespaces::Yes {
            text.push_str(&format!(" host_namespaces={}", self.host_namespaces));
        }
        text
    }
}

/// The first 12 characters of a container id, as `docker ps` shows it.
pub fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}
