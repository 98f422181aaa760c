//! What the clients hand out: [`Secret`] (one value), [`Token`], [`SecretInfo`] (a name and its
//! version). Values live in zeroizing buffers, wiped on drop, and their `Debug` is redacted; there is
//! no `Display`: printing a value takes an explicit [`Secret::expose`].

use std::fmt;
use std::time::Duration;

use zeroize::Zeroizing;

/// The value of a single-value secret (`{"value": "..."}`), as read by `get` or `get_version`.
#[derive(Clone)]
pub struct Secret {
    name: String,
    version: u64,
    value: Zeroizing<String>,
}

impl Secret {
    pub(crate) fn new(name: &str, version: u64, value: Zeroizing<String>) -> Self {
        Self { name: name.to_string(), version, value }
    }

    /// The value. Keep the borrow short: copies made from it are not wiped.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// The secret's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The KV version read (1 for the first value set; each `secrets set`/`rotate` adds one).
    pub fn version(&self) -> u64 {
        self.version
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("value", &"<redacted>")
            .finish()
    }
}

/// An OpenBao token for the caller's service (`POST /v1/token`). Never cached: each call is a new
/// token (or, for a `reuse` service, the shared one).
#[derive(Clone)]
pub struct Token {
    token: Zeroizing<String>,
    accessor: String,
    ttl: Duration,
    renewable: bool,
    policies: Vec<String>,
    service: String,
}

impl Token {
    /// The token itself (`X-Vault-Token`).
    pub fn expose(&self) -> &str {
        &self.token
    }

    /// Its accessor (names it in audit logs; not a secret).
    pub fn accessor(&self) -> &str {
        &self.accessor
    }

    /// How long it is valid from issue (`lease_duration`); zero for a token without expiry.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Whether it can be renewed (`auth/token/renew-self`).
    pub fn renewable(&self) -> bool {
        self.renewable
    }

    /// Its policies.
    pub fn policies(&self) -> &[String] {
        &self.policies
    }

    /// The service edgeseal attested the caller as.
    pub fn service(&self) -> &str {
        &self.service
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("service", &self.service)
            .field("accessor", &self.accessor)
            .field("ttl", &self.ttl)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// One of the caller's secrets as listed by `list`: its name and current version (never a value).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Deserialize)]
pub struct SecretInfo {
    /// The name (`get` takes it).
    pub name: String,
    /// The current version.
    pub version: u64,
}

/// A secret's data as read, shared by the cache and the answers made from it.
pub(crate) struct Value {
    /// The version read.
    pub(crate) version: u64,
    /// The data object's JSON text, for `get_json`.
    pub(crate) json: Zeroizing<String>,
    /// `Ok(value)` when the data is exactly `{"value": "<string>"}`, else its keys.
    pub(crate) single: Result<Zeroizing<String>, Vec<String>>,
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Value").field("version", &self.version).field("data", &"<redacted>").finish()
    }
}

impl Token {
    pub(crate) fn from_auth(service: String, auth: crate::api::Auth) -> Self {
        Self {
            token: auth.client_token,
            accessor: auth.accessor,
            ttl: Duration::from_secs(auth.lease_duration),
            renewable: auth.renewable,
            policies: auth.policies,
            service,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_a_value() {
        let secret = Secret::new("db", 3, Zeroizing::new("hunter2-VALUE".into()));
        let shown = format!("{secret:?} {secret:#?}");
        assert!(!shown.contains("hunter2-VALUE") && shown.contains("<redacted>") && shown.contains("db"), "{shown}");
        assert_eq!((secret.expose(), secret.version(), secret.name()), ("hunter2-VALUE", 3, "db"));
        let token = Token {
            token: Zeroizing::new("s.TOKEN-VALUE".into()),
            accessor: "acc".into(),
            ttl: Duration::from_secs(60),
            renewable: true,
            policies: vec!["p".into()],
            service: "svc".into(),
        };
        let shown = format!("{token:?} {token:#?}");
        assert!(!shown.contains("s.TOKEN-VALUE") && shown.contains("<redacted>"), "{shown}");
        let value = Value { version: 1, json: Zeroizing::new("{\"value\":\"v-SECRET\"}".into()), single: Err(vec![]) };
        assert!(!format!("{value:?}").contains("v-SECRET"));
    }
}
