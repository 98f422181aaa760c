//! The `token_server:` section of `edgeseal.yaml`, and each service's `selectors:` and `reuse`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Default socket path.
pub const DEFAULT_SOCKET: &str = "/run/edgeseal/token.sock";
/// Default Docker daemon socket.
pub const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// How the token server listens and protects itself.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
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
        }
    }
}

/// How a caller is recognised as a service. Every selector given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selectors {
    /// Facts from the kernel. Without `docker`, only host processes (not in a container) can match.
    #[serde(default)]
    pub unix: Option<UnixSelector>,
    /// Facts from the Docker daemon about the caller's container.
    #[serde(default)]
    pub docker: Option<DockerSelector>,
}

/// Kernel facts about the calling process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnixSelector {
    /// Effective uid (from SO_PEERCRED).
    #[serde(default)]
    pub uid: Option<u32>,
    /// Effective gid.
    #[serde(default)]
    pub gid: Option<u32>,
    /// `/proc/<pid>/exe`, as seen from the host.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// SHA-256 of the executable, lowercase hex.
    #[serde(default)]
    pub sha256: Option<String>,
    /// The systemd unit the process runs in (from its cgroup).
    #[serde(default)]
    pub systemd_unit: Option<String>,
}

/// Docker facts about the calling process's container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerSelector {
    /// Label `com.docker.compose.service`.
    #[serde(default)]
    pub compose_service: Option<String>,
    /// Label `com.docker.compose.project`.
    #[serde(default)]
    pub compose_project: Option<String>,
    /// Container name (without the leading `/`).
    #[serde(default)]
    pub name: Option<String>,
    /// Image reference the container was created from (`Config.Image`).
    #[serde(default)]
    pub image: Option<String>,
    /// Labels that must all be present with these values.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// What the token server needs to know about one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRule {
    /// Service name; its token role is `edgeseal-svc-<name>`.
    pub name: String,
    /// How callers are recognised.
    pub selectors: Selectors,
    /// TTL requested for its tokens (`None` for periodic tokens: the role's period applies).
    pub ttl: Option<Duration>,
    /// Hand all callers one shared, renewed token.
    pub reuse: bool,
}
