//! The sections of `edgeseal.yaml` that secretstore-setup consumes: `secret_store:`, `keystore:`,
//! `file_tokens:`, and each service's setup-related keys.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Default keystore directory: persistent, root-only.
pub const DEFAULT_DIR: &str = "/var/lib/edgeseal";

/// Where the keystore lives.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretStoreConfig {
    /// OpenBao's API address, `https://HOST:PORT`.
    #[serde(default = "default_address")]
    pub address: String,
    /// CA certificate to verify OpenBao's TLS certificate; default: the CA pki-init made.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    /// OpenBao's own certificate (PEM, leaf first), whose public key is pinned: among the certificates
    /// `ca_cert` issues, only a server with this key is OpenBao. Default: `pki.dir/openbao/cert.pem`
    /// when `pki.certs.openbao` exists; without that leaf (an external store) it must be given, or set
    /// to `ca-only` to trust any certificate `ca_cert` issues — only for a store whose CA issues
    /// nothing else. A supervised OpenBao is always pinned to `pki.certs.openbao`.
    #[serde(default)]
    pub server_cert: Option<openbao_client::Pin>,
    /// Shamir shares made at initialization.
    #[serde(default = "default_shares")]
    pub shares: u64,
    /// Shares needed to unseal.
    #[serde(default = "default_threshold")]
    pub threshold: u64,
    /// Path of the KV version 2 mount holding service secrets.
    #[serde(default = "default_kv_mount", deserialize_with = "mount_name")]
    pub kv_mount: String,
    /// Services' secrets live under `<kv_mount>/<service_prefix>/<service>/`; `edgex` gives EdgeX's layout.
    #[serde(default = "default_service_prefix", deserialize_with = "mount_name")]
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
    #[serde(default)]
    pub supervise: Option<crate::supervise::SuperviseConfig>,
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
        }
    }
}

impl SecretStoreConfig {
    /// Checks what serde cannot: share counts.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=255).contains(&self.shares) || !(1..=self.shares).contains(&self.threshold) {
            return Err(format!(
                "secret_store: need 1 <= threshold ({}) <= shares ({}) <= 255",
                self.threshold, self.shares
            ));
        }
        if self.wait_timeout.is_zero() || self.watchdog_interval.is_zero() || self.request_timeout.is_zero() {
            return Err("secret_store: wait_timeout, watchdog_interval and request_timeout must be positive".into());
        }
        Ok(())
    }
}

/// A path segment for mounts and prefixes: `[a-z0-9][a-z0-9_-]*`, at most 64 bytes.
pub fn valid_segment(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn mount_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let name = String::deserialize(d)?;
    if !valid_segment(&name) {
        return Err(serde::de::Error::custom(format!(
            "{name:?} is not a valid name: use 1-64 of [a-z0-9_-], starting with a letter or digit"
        )));
    }
    Ok(name)
}

/// The `file_tokens:` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
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

/// A service's `token:` settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    /// Initial TTL of the service's tokens.
    #[serde(default = "default_token_ttl", with = "humantime_serde")]
    pub ttl: Duration,
    /// When set, tokens are periodic: renewable forever, each renewal for this long.
    #[serde(default, with = "humantime_serde::option")]
    pub period: Option<Duration>,
}

fn default_token_ttl() -> Duration {
    Duration::from_secs(3600)
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self { ttl: default_token_ttl(), period: None }
    }
}

/// Owner of a service's token file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
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
}
