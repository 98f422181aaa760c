//! The `token_server:` section of `edgeseal.yaml`, each service's `selectors:` and `reuse`, and
//! [`check_selectors`], the rules every set of services' selectors must follow (pure).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Default socket path.
pub const DEFAULT_SOCKET: &str = "/run/edgeseal/token.sock";
/// Default Docker daemon socket.
pub const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// How the token server listens and protects itself.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// The Unix socket services connect to (mode 0666: attestation, not file modes, is the guard).
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    /// The Docker daemon's socket; must be root-owned, in root-owned directories. `null` disables
    /// Docker attestation (containers are then never matched).
    #[serde(default = "default_docker_socket")]
    pub docker_socket: Option<PathBuf>,
    /// Most connections held open at once. The effective cap is also bounded by the open-file
    /// limit: at most (RLIMIT_NOFILE - 256) / 4 connections, keeping 256 descriptors for the process's
    /// own needs (see `descriptors`). Connections over the cap are answered 503 and closed at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Most connections held open at once by one peer: a host uid, or a container. Further ones are
    /// answered 429 and closed at once; other peers are not affected.
    #[serde(default = "default_max_connections_per_peer")]
    pub max_connections_per_peer: usize,
    /// Most connections held open at once by one uid, host processes and containers together (a
    /// container id comes from a cgroup name, which a user can choose in a delegated cgroup tree).
    #[serde(default = "default_max_connections_per_uid")]
    pub max_connections_per_uid: usize,
    /// Requests per second allowed per peer (the container, or the uid on the host).
    #[serde(default = "default_rate")]
    pub rate_per_second: u32,
    /// Burst allowed per peer above the rate.
    #[serde(default = "default_burst")]
    pub rate_burst: u32,
    /// Time a client has to send its request headers (slowloris guard).
    #[serde(default = "default_header_timeout", with = "humantime_serde")]
    pub header_timeout: Duration,
    /// Limit for one OpenBao call made on behalf of a client; beyond it the client gets 503.
    #[serde(default = "default_store_timeout", with = "humantime_serde")]
    pub store_timeout: Duration,
    /// How long a `/v1/health` answer is reused: OpenBao is asked at most once per interval, whatever
    /// the number of callers. `0s` asks on every request.
    #[serde(default = "default_health_cache", with = "humantime_serde")]
    pub health_cache: Duration,
    /// Executables larger than this are not hashed (`unix.sha256` selectors then never match).
    #[serde(default = "default_hash_limit")]
    pub exe_hash_limit: u64,
    /// Serve callers on kernels without SO_PEERPIDFD (Linux < 6.5), pinning them by `/proc` alone,
    /// which starts at accept time rather than at connect time. Off by default.
    #[serde(default)]
    pub allow_without_pidfd: bool,
    /// Longest TTL a service's batch tokens may have (`services.<svc>.token.ttl` with `type: batch`):
    /// a batch token can be neither revoked nor renewed, so it stays valid for its whole TTL.
    #[serde(default = "default_max_batch_ttl", with = "humantime_serde")]
    pub max_batch_ttl: Duration,
}

/// Default `max_batch_ttl`.
pub const DEFAULT_MAX_BATCH_TTL: Duration = Duration::from_secs(3600);

fn default_max_batch_ttl() -> Duration {
    DEFAULT_MAX_BATCH_TTL
}

fn default_socket() -> PathBuf {
    PathBuf::from(DEFAULT_SOCKET)
}
fn default_docker_socket() -> Option<PathBuf> {
    Some(PathBuf::from(DEFAULT_DOCKER_SOCKET))
}
fn default_max_connections() -> usize {
    2048
}
fn default_max_connections_per_peer() -> usize {
    64
}
fn default_max_connections_per_uid() -> usize {
    256
}
fn default_health_cache() -> Duration {
    Duration::from_secs(1)
}
fn default_rate() -> u32 {
    50
}
fn default_burst() -> u32 {
    100
}
fn default_header_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_store_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_hash_limit() -> u64 {
    64 * 1024 * 1024
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            socket: default_socket(),
            docker_socket: default_docker_socket(),
            max_connections: default_max_connections(),
            max_connections_per_peer: default_max_connections_per_peer(),
            max_connections_per_uid: default_max_connections_per_uid(),
            rate_per_second: default_rate(),
            rate_burst: default_burst(),
            header_timeout: default_header_timeout(),
            store_timeout: default_store_timeout(),
            health_cache: default_health_cache(),
            exe_hash_limit: default_hash_limit(),
            allow_without_pidfd: false,
            max_batch_ttl: default_max_batch_ttl(),
        }
    }
}

/// The longest `health_cache` accepted: a cached "healthy" hides a store that was sealed since.
pub const MAX_HEALTH_CACHE: Duration = Duration::from_secs(60);

impl ServerConfig {
    /// Checks what serde cannot: absolute socket paths, limits of at least 1 (0 would refuse every
    /// client), a per-peer cap within the per-uid one, positive timeouts, a short health cache.
    /// `edgeseal.yaml` runs this when it is loaded; call it for a configuration built in code.
    pub fn validate(&self) -> Result<(), TokenServerConfigError> {
        use TokenServerConfigError as E;
        if !self.socket.is_absolute() {
            return Err(E::RelativePath { key: "socket", path: self.socket.clone() });
        }
        if let Some(docker) = self.docker_socket.as_ref().filter(|p| !p.is_absolute()) {
            return Err(E::RelativePath { key: "docker_socket", path: docker.clone() });
        }
        let limits = [
            ("max_connections", self.max_connections as u64),
            ("max_connections_per_peer", self.max_connections_per_peer as u64),
            ("max_connections_per_uid", self.max_connections_per_uid as u64),
            ("rate_burst", u64::from(self.rate_burst)),
        ];
        if let Some((key, _)) = limits.into_iter().find(|(_, v)| *v == 0) {
            return Err(E::Zero(key));
        }
        if self.max_connections_per_peer > self.max_connections_per_uid {
            return Err(E::PeerAboveUid { peer: self.max_connections_per_peer, uid: self.max_connections_per_uid });
        }
        let timeouts = [
            ("header_timeout", self.header_timeout),
            ("store_timeout", self.store_timeout),
            ("max_batch_ttl", self.max_batch_ttl),
        ];
        if let Some((key, _)) = timeouts.into_iter().find(|(_, d)| d.is_zero()) {
            return Err(E::ZeroTimeout(key));
        }
        if self.health_cache > MAX_HEALTH_CACHE {
            return Err(E::HealthCache(self.health_cache));
        }
        Ok(())
    }
}

/// A `token_server:` section that parsed but cannot be used. A config error (exit 64).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TokenServerConfigError {
    /// A socket path that is not absolute.
    #[error("token_server.{key} must be an absolute path, got {path:?}")]
    RelativePath {
        /// `socket` or `docker_socket`.
        key: &'static str,
        /// The path given.
        path: PathBuf,
    },
    /// A connection limit or the burst set to 0, which would refuse every client.
    #[error("token_server.{0} must be at least 1: 0 would refuse every client")]
    Zero(&'static str),
    /// A per-peer cap above the per-uid one, which would never apply.
    #[error("token_server.max_connections_per_peer ({peer}) must not exceed max_connections_per_uid ({uid}): a peer is one uid or one of its containers")]
    PeerAboveUid {
        /// `max_connections_per_peer`.
        peer: usize,
        /// `max_connections_per_uid`.
        uid: usize,
    },
    /// A timeout of zero.
    #[error("token_server.{0} must be longer than 0s")]
    ZeroTimeout(&'static str),
    /// `health_cache` above [`MAX_HEALTH_CACHE`].
    #[error("token_server.health_cache must be at most {}, got {}: a cached answer would hide a sealed store that long", humantime_serde::re::humantime::format_duration(MAX_HEALTH_CACHE), humantime_serde::re::humantime::format_duration(*.0))]
    HealthCache(Duration),
}

impl TokenServerConfigError {
    /// The key the error is about, e.g. `token_server.rate_burst`.
    pub fn key(&self) -> String {
        let field = match self {
            Self::RelativePath { key, .. } | Self::Zero(key) | Self::ZeroTimeout(key) => key,
            Self::PeerAboveUid { .. } => "max_connections_per_peer",
            Self::HealthCache(_) => "health_cache",
        };
        format!("token_server.{field}")
    }
}

/// How a caller is recognised as a service. Every selector given must match. A service with neither
/// is never served on the socket (its token comes from `file_token`, or from outside edgeseal).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Selectors {
    /// Facts from the kernel. Without `docker`, only host processes can match: no container in their
    /// cgroup, and the pid and mount namespaces of the host (pid 1's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unix: Option<UnixSelector>,
    /// Facts from the Docker daemon about the caller's container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<DockerSelector>,
}

/// Kernel facts about the calling process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UnixSelector {
    /// Effective uid (from SO_PEERCRED).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Effective gid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// `/proc/<pid>/exe`, as seen from the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// SHA-256 of the executable, lowercase hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The systemd unit the process runs in (from its cgroup).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systemd_unit: Option<String>,
}

/// Docker facts about the calling process's container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DockerSelector {
    /// Label `com.docker.compose.service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compose_service: Option<String>,
    /// Label `com.docker.compose.project`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compose_project: Option<String>,
    /// Container name (without the leading `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Image reference the container was created from (`Config.Image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Labels that must all be present with these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// What the token server needs to know about one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRule {
    /// Service name (audit logs, token metadata, `?service=`).
    pub name: String,
    /// The OpenBao token role its tokens are created against. Whoever creates the roles says what
    /// it is (secretstore-setup's `policy::service_role_name`); the token server never builds it.
    pub role: String,
    /// How callers are recognised.
    pub selectors: Selectors,
    /// TTL requested for its tokens (`None` for periodic tokens: the role's period applies).
    pub ttl: Option<Duration>,
    /// Hand all callers one shared, renewed token. Never with `batch`.
    pub reuse: bool,
    /// The role makes batch tokens: never stored, never renewed, valid for exactly their TTL.
    pub batch: bool,
}

/// A set of services whose selectors cannot be used safely. Reported as a config error (exit 64).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SelectorsError {
    /// A `unix` selector with neither uid nor systemd_unit.
    #[error("services.{service}.selectors.unix: give uid (or systemd_unit); path and sha256 only narrow a uid match, they do not say who runs the binary")]
    UnixWithoutWho {
        /// The service.
        service: String,
    },
    /// A `docker: {}` selector, which every container satisfies.
    #[error("services.{service}.selectors.docker is empty and would match every container: give compose_service, compose_project, name, image or labels")]
    EmptyDocker {
        /// The service.
        service: String,
    },
    /// Two services whose callers nothing fixed tells apart.
    #[error("services {first} and {second} could both match a process of {uid}: path and sha256 do not separate them, because a process of one can exec the other's executable with its connection open; give them different uids, different unix.systemd_unit values, or docker selectors that tell their containers apart")]
    SharedCaller {
        /// The first service (in name order).
        first: String,
        /// The second.
        second: String,
        /// Which uid(s) both could match, e.g. `uid 998` or `any uid`.
        uid: String,
    },
}

impl SelectorsError {
    /// The key the error is about, e.g. `services.a.selectors.unix` (for two services sharing a
    /// caller: the second one's selectors).
    pub fn key(&self) -> String {
        match self {
            Self::UnixWithoutWho { service } => format!("services.{service}.selectors.unix"),
            Self::EmptyDocker { service } => format!("services.{service}.selectors.docker"),
            Self::SharedCaller { second, .. } => format!("services.{second}.selectors"),
        }
    }
}

/// Checks every service's selectors and every pair of services:
/// - a `unix` selector names who runs the process (uid or systemd_unit);
/// - a `docker` selector names at least one fact (an empty one matches every container);
/// - two services with `unix` selectors that could match the same uid must be told apart by
///   something the process cannot change by exec'ing another binary: different systemd units (its
///   cgroup), a docker selector on one only (host vs container), or docker selectors that conflict
///   on a field or label. `path`, `sha256` and `gid` do not count: a process of one service could
///   exec the other's executable (or switch group) while keeping its connection open.
///
/// A service with no selectors at all is allowed: the token server never matches it (its token is a
/// file token, or comes from outside edgeseal).
pub fn check_selectors<'a>(services: impl IntoIterator<Item = (&'a str, &'a Selectors)>) -> Result<(), SelectorsError> {
    let mut services: Vec<(&str, &Selectors)> = services.into_iter().collect();
    services.sort_by(|a, b| a.0.cmp(b.0));
    for (name, selectors) in &services {
        if let Some(unix) = &selectors.unix {
            if unix.uid.is_none() && unix.systemd_unit.is_none() {
                return Err(SelectorsError::UnixWithoutWho { service: (*name).to_string() });
            }
        }
        if let Some(docker) = &selectors.docker {
            if docker_facts(docker).is_empty() {
                return Err(SelectorsError::EmptyDocker { service: (*name).to_string() });
            }
        }
    }
    for (i, (first, a)) in services.iter().enumerate() {
        for (second, b) in &services[i + 1..] {
            if let Some(uid) = shared_caller(a, b) {
                return Err(SelectorsError::SharedCaller {
                    first: (*first).to_string(),
                    second: (*second).to_string(),
                    uid,
                });
            }
        }
    }
    Ok(())
}

/// Which uid(s) a process matching both `a` and `b` by fixed facts could have, or `None` when their
/// fixed facts exclude each other.
fn shared_caller(a: &Selectors, b: &Selectors) -> Option<String> {
    let (ua, ub) = (a.unix.as_ref()?, b.unix.as_ref()?);
    if let (Some(x), Some(y)) = (ua.uid, ub.uid) {
        if x != y {
            return None;
        }
    }
    if let (Some(x), Some(y)) = (&ua.systemd_unit, &ub.systemd_unit) {
        if x != y {
            return None;
        }
    }
    match (&a.docker, &b.docker) {
        (Some(_), None) | (None, Some(_)) => return None,
        (Some(x), Some(y)) if docker_conflict(x, y) => return None,
        _ => {}
    }
    Some(ua.uid.or(ub.uid).map(|uid| format!("uid {uid}")).unwrap_or_else(|| "any uid".into()))
}

/// The container facts a docker selector asks for, as (key, value); compose fields as their labels.
fn docker_facts(docker: &DockerSelector) -> BTreeMap<String, &str> {
    let mut facts: BTreeMap<String, &str> =
        docker.labels.iter().map(|(k, v)| (format!("label:{k}"), v.as_str())).collect();
    let fields = [
        ("label:com.docker.compose.service", &docker.compose_service),
        ("label:com.docker.compose.project", &docker.compose_project),
        ("name", &docker.name),
        ("image", &docker.image),
    ];
    for (key, value) in fields {
        if let Some(value) = value {
            facts.insert(key.to_string(), value.as_str());
        }
    }
    facts
}

/// No container can satisfy both: some fact is asked for with two different values.
fn docker_conflict(a: &DockerSelector, b: &DockerSelector) -> bool {
    let (a, b) = (docker_facts(a), docker_facts(b));
    a.iter().any(|(key, value)| b.get(key).is_some_and(|other| other != value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unix(uid: Option<u32>, path: Option<&str>, unit: Option<&str>) -> Option<UnixSelector> {
        Some(UnixSelector {
            uid,
            path: path.map(PathBuf::from),
            systemd_unit: unit.map(str::to_string),
            ..Default::default()
        })
    }

    fn compose(service: &str) -> Option<DockerSelector> {
        Some(DockerSelector { compose_service: Some(service.into()), ..Default::default() })
    }

    fn sel(unix: Option<UnixSelector>, docker: Option<DockerSelector>) -> Selectors {
        Selectors { unix, docker }
    }

    #[test]
    fn table() {
        let label = |k: &str, v: &str| {
            Some(DockerSelector { labels: BTreeMap::from([(k.to_string(), v.to_string())]), ..Default::default() })
        };
        let cases: Vec<(&str, Vec<Selectors>, Result<(), &str>)> = vec![
            (
                "two binaries of one uid",
                vec![
                    sel(unix(Some(998), Some("/usr/bin/a"), None), None),
                    sel(unix(Some(998), Some("/usr/bin/b"), None), None),
                ],
                Err("services s0 and s1 could both match a process of uid 998"),
            ),
            (
                "different uids",
                vec![sel(unix(Some(998), None, None), None), sel(unix(Some(999), None, None), None)],
                Ok(()),
            ),
            (
                "different systemd units",
                vec![
                    sel(unix(Some(998), Some("/usr/bin/a"), Some("a.service")), None),
                    sel(unix(Some(998), Some("/usr/bin/b"), Some("b.service")), None),
                ],
                Ok(()),
            ),
            (
                "a unit on one side only",
                vec![
                    sel(unix(Some(998), Some("/usr/bin/a"), Some("a.service")), None),
                    sel(unix(Some(998), Some("/usr/bin/b"), None), None),
                ],
                Err("services s0 and s1 could both match a process of uid 998"),
            ),
            (
                "the same unit twice",
                vec![
                    sel(unix(None, None, Some("a.service")), None),
                    sel(unix(None, Some("/x"), Some("a.service")), None),
                ],
                Err("could both match a process of any uid"),
            ),
            (
                "a unit-only rule and a uid rule",
                vec![sel(unix(None, None, Some("a.service")), None), sel(unix(Some(5), None, None), None)],
                Err("could both match a process of uid 5"),
            ),
            (
                "host vs container",
                vec![sel(unix(Some(1000), None, None), None), sel(unix(Some(1000), None, None), compose("alpha"))],
                Ok(()),
            ),
            (
                "two compose services",
                vec![
                    sel(unix(Some(1000), None, None), compose("alpha")),
                    sel(unix(Some(1000), None, None), compose("beta")),
                ],
                Ok(()),
            ),
            (
                "a compose service and the same label spelled out",
                vec![
                    sel(unix(Some(1000), None, None), compose("alpha")),
                    sel(unix(Some(1000), Some("/b"), None), label("com.docker.compose.service", "beta")),
                ],
                Ok(()),
            ),
            (
                "docker selectors that one container can satisfy both",
                vec![
                    sel(unix(Some(1000), Some("/a"), None), compose("alpha")),
                    sel(unix(Some(1000), Some("/b"), None), label("tier", "x")),
                ],
                Err("services s0 and s1 could both match"),
            ),
            (
                "docker-only rules are not compared (no unix selector to exec around)",
                vec![sel(None, compose("alpha")), sel(None, label("tier", "x"))],
                Ok(()),
            ),
            (
                "an empty docker selector",
                vec![sel(None, Some(DockerSelector::default()))],
                Err("services.s0.selectors.docker is empty"),
            ),
            (
                "an empty docker selector next to a unix one",
                vec![sel(unix(Some(1), None, None), Some(DockerSelector::default()))],
                Err("would match every container"),
            ),
            (
                "an empty unix selector",
                vec![sel(Some(UnixSelector::default()), None)],
                Err("services.s0.selectors.unix: give uid"),
            ),
            ("a path alone", vec![sel(unix(None, Some("/usr/bin/a"), None), None)], Err("give uid (or systemd_unit)")),
            ("no selectors at all (file token only)", vec![sel(None, None), sel(None, None)], Ok(())),
        ];
        for (name, selectors, want) in cases {
            let names: Vec<String> = (0..selectors.len()).map(|i| format!("s{i}")).collect();
            let got = check_selectors(names.iter().map(String::as_str).zip(selectors.iter()));
            match (got, want) {
                (Ok(()), Ok(())) => {}
                (Err(e), Err(text)) => assert!(e.to_string().contains(text), "{name}: {e}"),
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }
}
