//! What the blocking and the tokio client share: settings, the cache, and each operation's steps
//! between its requests. A client runs an operation as: ask the core for a request (or a cached
//! answer), send it with its own I/O, hand the answer back to the core. So the two clients differ
//! only in how bytes move ([`crate::blocking`], [`crate::tokio`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::api;
use crate::cache::Cache;
use crate::error::{Error, Result};
use crate::secret::{Secret, SecretInfo, Token, Value};
use crate::wire::{Request, Response};

/// The token socket when `EDGESEAL_SOCKET` is not set (the server's `token_server.socket` default).
pub const DEFAULT_SOCKET: &str = "/run/edgeseal/token.sock";
/// The environment variable naming the token socket.
pub const SOCKET_ENV: &str = "EDGESEAL_SOCKET";
/// The environment variable naming the service this process asserts it is (optional).
pub const SERVICE_ENV: &str = "EDGESEAL_SERVICE";
/// How long a cached value is returned without asking the server.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(10);
/// How long one request may take, connect to last byte.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// Settings and the shared cache of a client and its clones.
#[derive(Debug, Clone)]
pub(crate) struct Core {
    pub(crate) socket: PathBuf,
    service: Option<String>,
    check_interval: Duration,
    pub(crate) timeout: Duration,
    cache: Arc<Mutex<Cache>>,
}

impl Core {
    pub(crate) fn new(socket: PathBuf) -> Self {
        Self {
            socket,
            service: None,
            check_interval: DEFAULT_CHECK_INTERVAL,
            timeout: DEFAULT_TIMEOUT,
            cache: Arc::default(),
        }
    }

    pub(crate) fn from_env() -> Self {
        let socket = std::env::var_os(SOCKET_ENV).filter(|s| !s.is_empty()).map(PathBuf::from);
        let core = Self::new(socket.unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET)));
        match std::env::var(SERVICE_ENV) {
            Ok(service) if !service.is_empty() => core.with_service(service),
            _ => core,
        }
    }

    /// Each `with_*` starts an empty cache of its own: values read under other settings are not
    /// handed out under these.
    pub(crate) fn with_service(self, service: impl Into<String>) -> Self {
        Self { service: Some(service.into()), cache: Arc::default(), ..self }
    }

    pub(crate) fn with_check_interval(self, interval: Duration) -> Self {
        Self { check_interval: interval, cache: Arc::default(), ..self }
    }

    pub(crate) fn with_timeout(self, timeout: Duration) -> Self {
        Self { timeout, ..self }
    }

    pub(crate) fn socket(&self) -> &Path {
        &self.socket
    }

    fn cache(&self) -> MutexGuard<'_, Cache> {
        // The cache is consistent after every statement: a panic elsewhere cannot leave it half-done.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn check_name(name: &str) -> Result<()> {
        if api::valid_name(name) {
            Ok(())
        } else {
            Err(Error::InvalidName { name: name.to_string() })
        }
    }

    /// Step 1 of a cached read: the value if it is fresh (no I/O), else `None`.
    pub(crate) fn fresh(&self, name: &str) -> Result<Option<Arc<Value>>> {
        Self::check_name(name)?;
        Ok(self.cache().fresh(name, Instant::now(), self.check_interval))
    }

    /// The list request (step 2 of a cached read, `list`, `refresh`).
    pub(crate) fn list_request(&self) -> Request {
        api::list(self.service.as_deref())
    }

    /// Applies a list answer to the cache; with `name`, also its value if the list shows it unchanged.
    pub(crate) fn after_list(
        &self,
        response: Response,
        name: Option<&str>,
    ) -> Result<(Vec<SecretInfo>, Option<Arc<Value>>)> {
        let body = api::success(&self.socket, response, None)?;
        let listed = api::decode_list(&self.socket, &body)?;
        let mut cache = self.cache();
        cache.apply_list(&listed, Instant::now());
        let value = name.and_then(|name| cache.get(name));
        Ok((listed, value))
    }

    /// The read request of `name` (step 3 of a cached read, or `get_version`).
    pub(crate) fn read_request(&self, name: &str, version: Option<u64>) -> Result<Request> {
        Self::check_name(name)?;
        Ok(api::read(name, version, self.service.as_deref()))
    }

    /// Decodes a read; the current version (`cache`) is stored, a 404 forgets the name.
    pub(crate) fn after_read(&self, response: Response, name: &str, cache: bool) -> Result<Arc<Value>> {
        let body = match api::success(&self.socket, response, Some(name)) {
            Ok(body) => body,
            Err(e) => {
                if cache && matches!(e, Error::NotFound { .. }) {
                    self.cache().remove(name);
                }
                return Err(e);
            }
        };
        let value = api::decode_read(&self.socket, name, &body)?;
        if cache {
            Ok(self.cache().insert(name, value, Instant::now()))
        } else {
            Ok(Arc::new(value))
        }
    }

    /// The token request.
    pub(crate) fn token_request(&self) -> Request {
        api::token(self.service.as_deref())
    }

    /// Decodes a token answer.
    pub(crate) fn after_token(&self, response: Response) -> Result<Token> {
        let body = api::success(&self.socket, response, None)?;
        api::decode_token(&self.socket, &body)
    }
}

/// A single value as a [`Secret`], or why it is not one.
pub(crate) fn secret(name: &str, value: &Value) -> Result<Secret> {
    match &value.single {
        Ok(text) => Ok(Secret::new(name, value.version, text.clone())),
        Err(keys) => Err(Error::NotSingleValue { name: name.to_string(), keys: keys.clone() }),
    }
}

/// A secret's data as the caller's type.
pub(crate) fn json<T: serde::de::DeserializeOwned>(name: &str, value: &Value) -> Result<T> {
    api::decode_json(name, value)
}
