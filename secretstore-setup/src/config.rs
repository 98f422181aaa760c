//! The sections of `edgeseal.yaml` that secretstore-setup consumes: `secret_store:`, `keystore:`,
//! `file_tokens:`, and each service's setup-related keys.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Default keystore directory: persistent, root-only.
pub const DEFAULT_DIR: &str = "/var/lib/edgeseal";

/// Where the keystore lives.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeystoreConfig {
    /// Directory holding `keystore.json`; created 0700. Must survive reboots.
    #[serde(default = "default_dir")]
    pub dir: PathBuf,
}

fn default_dir() -> PathBuf {
    PathBuf::from(DEFAULT_DIR)
}

impl Default for KeystoreConfig {
    fn default() -> Self {
        Self { dir: default_dir() }
    }
}

/// Default OpenBao address.
pub const DEFAULT_ADDRESS: &str = "https://127.0.0.1:8200";

/// The `secret_store:` section: which OpenBao, and how to set it up.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecretStoreConfig {
    /// OpenBao's API address, `https://HOST:PORT`.
    #[serde(default = "default_address")]
    pub address: String,
    /// CA certificate to verify OpenBao's TLS certificate; default: the CA pki-init made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
    /// OpenBao's own certificate (PEM, leaf first), whose public key is pinned: among the certificates
    /// `ca_cert` issues, only a server with this key is OpenBao. Default: `pki.dir/openbao/cert.pem`
    /// when `pki.certs.openbao` exists; without that leaf (an external store) it must be given, or set
    /// to `ca-only` to trust any certificate `ca_cert` issues — only for a store whose CA issues
    /// nothing else. A supervised OpenBao is always pinned to `pki.certs.openbao`.
    #[serde(default, deserialize_with = "server_cert", skip_serializing_if = "Option::is_none")]
    pub server_cert: Option<openbao_client::Pin>,
    /// Shamir shares made at initialization.
    #[serde(default = "default_shares")]
    pub shares: u64,
    /// Shares needed to unseal.
    #[serde(default = "default_threshold")]
    pub threshold: u64,
    /// Path of the KV version 2 mount holding service secrets.
    #[serde(default = "default_kv_mount", deserialize_with = "kv_mount")]
    pub kv_mount: String,
    /// Services' secrets live under `<kv_mount>/<service_prefix>/<service>/`; `edgex` gives EdgeX's layout.
    #[serde(default = "default_service_prefix", deserialize_with = "service_prefix")]
    pub service_prefix: String,
    /// How long to wait for OpenBao to answer before giving up.
    #[serde(default = "default_wait", with = "humantime_serde")]
    pub wait_timeout: Duration,
    /// How often the watchdog checks whether OpenBao came back sealed.
    #[serde(default = "default_watchdog", with = "humantime_serde")]
    pub watchdog_interval: Duration,
    /// Limit for one HTTP request to OpenBao.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Start and supervise a local OpenBao (`security-bootstrap run`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supervise: Option<crate::supervise::SuperviseConfig>,
    /// The supervised OpenBao is a member of a raft cluster of gateways (SPEC §15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<crate::cluster::ClusterConfig>,
}

fn default_address() -> String {
    DEFAULT_ADDRESS.into()
}
fn default_shares() -> u64 {
    5
}
fn default_threshold() -> u64 {
    3
}
fn default_kv_mount() -> String {
    "secret".into()
}
fn default_service_prefix() -> String {
    "edgeseal".into()
}
fn default_wait() -> Duration {
    Duration::from_secs(60)
}
fn default_watchdog() -> Duration {
    Duration::from_secs(5)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}

impl Default for SecretStoreConfig {
    fn default() -> Self {
        Self {
            address: default_address(),
            ca_cert: None,
            server_cert: None,
            shares: default_shares(),
            threshold: default_threshold(),
            kv_mount: default_kv_mount(),
            service_prefix: default_service_prefix(),
            wait_timeout: default_wait(),
            watchdog_interval: default_watchdog(),
            request_timeout: default_request_timeout(),
            supervise: None,
            cluster: None,
        }
    }
}

impl SecretStoreConfig {
    /// The socket address a supervised OpenBao listens on: `address` as `https://IP:PORT`, with a
    /// port below 65535 (the next one is its cluster port).
    pub fn supervised_listen(&self) -> Option<std::net::SocketAddr> {
        let address = self.address.trim_end_matches('/');
        let listen: std::net::SocketAddr = address.strip_prefix("https://")?.parse().ok()?;
        (listen.port() < u16::MAX).then_some(listen)
    }
}

/// Most Shamir shares OpenBao makes.
pub const MAX_SHARES: u64 = 255;

impl SecretStoreConfig {
    /// Checks what serde cannot: a usable address, share counts, positive timeouts. `edgeseal.yaml`
    /// runs this when it is loaded; call it for a configuration built in code.
    pub fn validate(&self) -> Result<(), SecretStoreConfigError> {
        openbao_client::address_host(&self.address)
            .map_err(|_| SecretStoreConfigError::Address(self.address.clone()))?;
        if self.supervise.is_some() && self.supervised_listen().is_none() {
            return Err(SecretStoreConfigError::SupervisedAddress(self.address.clone()));
        }
        if let Some(logs) = self.supervise.as_ref().map(|s| &s.logs) {
            logs.validate().map_err(SecretStoreConfigError::SupervisedLogs)?;
        }
        if let Some(cluster) = &self.cluster {
            match &self.supervise {
                Some(supervise) if supervise.seal == crate::seal::SealMode::Static => {}
                _ => return Err(SecretStoreConfigError::Cluster(
                    "a cluster member is a supervised, static-sealed OpenBao: add secret_store.supervise (seal: static)".into(),
                )),
            }
            cluster.validate().map_err(SecretStoreConfigError::Cluster)?;
        }
        if !(1..=MAX_SHARES).contains(&self.shares) {
            return Err(SecretStoreConfigError::Shares(self.shares));
        }
        if !(1..=self.shares).contains(&self.threshold) {
            return Err(SecretStoreConfigError::Threshold { threshold: self.threshold, shares: self.shares });
        }
        let durations = [
            ("wait_timeout", self.wait_timeout),
            ("watchdog_interval", self.watchdog_interval),
            ("request_timeout", self.request_timeout),
        ];
        if let Some((key, _)) = durations.into_iter().find(|(_, d)| d.is_zero()) {
            return Err(SecretStoreConfigError::ZeroDuration(key));
        }
        Ok(())
    }
}

/// A `secret_store:` section that parsed but cannot be used. A config error (exit 64).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SecretStoreConfigError {
    /// `address` is not `https://HOST[:PORT]` without a path.
    #[error("secret_store.address must be https://HOST:PORT with no path, got {0:?}")]
    Address(String),
    /// A supervised OpenBao listens on `address`, which must then name an IP address and a port.
    #[error("a supervised OpenBao listens on secret_store.address, which must be https://IP:PORT (port below 65535), got {0:?}")]
    SupervisedAddress(String),
    /// `cluster:` cannot be used.
    #[error("{0}")]
    Cluster(String),
    /// `shares` is 0 or above [`MAX_SHARES`].
    #[error("secret_store.shares must be between 1 and {MAX_SHARES}, got {0}")]
    Shares(u64),
    /// `threshold` is 0 or above `shares`.
    #[error("secret_store.threshold must be between 1 and shares ({shares}), got {threshold}")]
    Threshold {
        /// `threshold`.
        threshold: u64,
        /// `shares`.
        shares: u64,
    },
    /// A timeout or interval of zero.
    #[error("secret_store.{0} must be longer than 0s")]
    ZeroDuration(&'static str),
    /// `supervise.logs` broke one of its rules.
    #[error("secret_store.supervise.logs: {0}")]
    SupervisedLogs(String),
}

impl SecretStoreConfigError {
    /// The key the error is about, e.g. `secret_store.threshold`.
    pub fn key(&self) -> String {
        let field = match self {
            Self::Address(_) | Self::SupervisedAddress(_) => "address",
            Self::Shares(_) => "shares",
            Self::Threshold { .. } => "threshold",
            Self::ZeroDuration(field) => field,
            Self::SupervisedLogs(_) => "supervise.logs",
            Self::Cluster(_) => "cluster",
        };
        format!("secret_store.{field}")
    }
}

/// A path segment for mounts and prefixes: `[a-z0-9][a-z0-9_-]*`, at most 64 bytes.
pub fn valid_segment(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Field-level checks name their key: serde places them at the start of `secret_store:`.
fn kv_mount<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    segment(d, "secret_store.kv_mount")
}

fn service_prefix<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    segment(d, "secret_store.service_prefix")
}

fn segment<'de, D: serde::Deserializer<'de>>(d: D, key: &str) -> Result<String, D::Error> {
    let name = String::deserialize(d)?;
    if !valid_segment(&name) {
        return Err(serde::de::Error::custom(format!(
            "{key}: {name:?} is not a valid name: use 1-64 of [a-z0-9_-], starting with a letter or digit"
        )));
    }
    Ok(name)
}

fn server_cert<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<openbao_client::Pin>, D::Error> {
    Option::<openbao_client::Pin>::deserialize(d)
        .map_err(|e| serde::de::Error::custom(format!("secret_store.server_cert: {e}")))
}

/// The `file_tokens:` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileTokensConfig {
    /// Directory holding `<service>/secrets-token.json`.
    #[serde(default = "default_file_tokens_dir")]
    pub dir: PathBuf,
}

fn default_file_tokens_dir() -> PathBuf {
    PathBuf::from("/run/edgeseal/secrets")
}

impl Default for FileTokensConfig {
    fn default() -> Self {
        Self { dir: default_file_tokens_dir() }
    }
}

/// Which kind of OpenBao token a service's callers get.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenType {
    /// A stored token (one raft write per token): renewable, revocable. The default, because EdgeX's
    /// clients renew their tokens.
    #[default]
    Service,
    /// An encrypted blob OpenBao never stores (no storage write per token, several times faster): it
    /// can be neither renewed nor revoked and lives exactly its TTL. Clients come back to the socket
    /// for a new one instead of renewing.
    Batch,
}

/// A service's `token:` settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    /// `service` (default) or `batch`.
    #[serde(default, rename = "type", skip_serializing_if = "is_service")]
    pub kind: TokenType,
    /// Initial TTL of the service's tokens (a batch token's whole life).
    #[serde(default = "default_token_ttl", with = "humantime_serde")]
    pub ttl: Duration,
    /// When set, tokens are periodic: renewable forever, each renewal for this long. Service tokens only.
    #[serde(default, with = "humantime_serde::option", skip_serializing_if = "Option::is_none")]
    pub period: Option<Duration>,
}

fn is_service(kind: &TokenType) -> bool {
    *kind == TokenType::Service
}

fn default_token_ttl() -> Duration {
    Duration::from_secs(3600)
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self { kind: TokenType::Service, ttl: default_token_ttl(), period: None }
    }
}

impl TokenSettings {
    /// Whether the service's tokens are batch tokens.
    pub fn is_batch(&self) -> bool {
        self.kind == TokenType::Batch
    }

    /// Checks the settings of service `service` with what else it asks for: a shared token (`reuse`,
    /// renewed by the token server), a file token (refreshed only at boot, renewed by its client) and
    /// the cap on batch TTLs (`token_server.max_batch_ttl`).
    pub fn validate(
        &self,
        service: &str,
        reuse: bool,
        file_token: bool,
        max_batch_ttl: Duration,
    ) -> Result<(), TokenSettingsError> {
        let service = service.to_string();
        if !self.is_batch() {
            return Ok(());
        }
        if self.ttl.is_zero() {
            return Err(TokenSettingsError::ZeroTtl { service });
        }
        if self.period.is_some() {
            return Err(TokenSettingsError::BatchPeriod { service });
        }
        if reuse {
            return Err(TokenSettingsError::BatchReuse { service });
        }
        if file_token {
            return Err(TokenSettingsError::BatchFileToken { service });
        }
        if self.ttl > max_batch_ttl {
            return Err(TokenSettingsError::BatchTtl { service, ttl: self.ttl, max: max_batch_ttl });
        }
        Ok(())
    }
}

fn human(d: &Duration) -> humantime::FormattedDuration {
    humantime::format_duration(*d)
}

/// A service's `token:` settings that cannot be used together. A config error (exit 64).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TokenSettingsError {
    /// A batch TTL of zero (OpenBao would give the system's maximum, 32 days by default).
    #[error("services.{service}.token.ttl must be longer than 0s for a batch token: 0s would make OpenBao use its maximum TTL, and batch tokens cannot be revoked")]
    ZeroTtl {
        /// The service.
        service: String,
    },
    /// Batch tokens cannot be periodic (OpenBao refuses such a role).
    #[error("services.{service}.token.type is batch, which cannot have a period: batch tokens cannot be renewed and die with their TTL; remove token.period, or use type: service for periodic tokens")]
    BatchPeriod {
        /// The service.
        service: String,
    },
    /// A shared token saves storage writes, which batch tokens do not make, and one shared batch token
    /// could not be revoked or renewed.
    #[error("services.{service}.token.type is batch, which cannot be combined with reuse: true: batch tokens cannot be renewed or revoked, so one token shared by every caller could not be cut off, and sharing saves nothing (a batch token costs OpenBao no storage write); remove reuse to give each caller a fresh batch token, or use type: service")]
    BatchReuse {
        /// The service.
        service: String,
    },
    /// A file token is written once per boot and renewed by its client; a batch token cannot be.
    #[error("services.{service}.token.type is batch, which cannot be combined with file_token: a token file is written once per boot and its client renews it, and batch tokens cannot be renewed; use type: service for this service, or fetch tokens over the socket")]
    BatchFileToken {
        /// The service.
        service: String,
    },
    /// A batch TTL above the cap: batch tokens cannot be revoked.
    #[error("services.{service}.token.ttl is {} for a batch token, above token_server.max_batch_ttl ({}): batch tokens cannot be revoked, so a leaked or superseded one stays valid for its whole TTL; shorten the ttl (clients come back to the socket for a new token), or raise token_server.max_batch_ttl knowingly", human(.ttl), human(.max))]
    BatchTtl {
        /// The service.
        service: String,
        /// The TTL asked for.
        ttl: Duration,
        /// `token_server.max_batch_ttl`.
        max: Duration,
    },
}

impl TokenSettingsError {
    /// The key the error is about, e.g. `services.core-data.token.type`.
    pub fn key(&self) -> String {
        match self {
            Self::ZeroTtl { service } | Self::BatchTtl { service, .. } => format!("services.{service}.token.ttl"),
            Self::BatchPeriod { service } | Self::BatchReuse { service } | Self::BatchFileToken { service } => {
                format!("services.{service}.token.type")
            }
        }
    }
}

/// Owner of a service's token file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileTokenOwner {
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
}

/// What secretstore-setup needs to know about one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSetup {
    /// The service name (`[a-z0-9][a-z0-9_-]*`).
    pub name: String,
    /// Secrets generated once and stored in KV for this service.
    pub secrets: Vec<String>,
    /// Token TTL/period.
    pub token: TokenSettings,
    /// Also write the file-token fallback, owned by this uid/gid.
    pub file_token: Option<FileTokenOwner>,
    /// An EdgeX SecretsFile (absolute path) imported into the service's secrets at setup, then
    /// scrubbed ([`crate::seed`]).
    pub seed_file: Option<PathBuf>,
}
