//! The async client (cargo feature `tokio`): the same API as [`crate::Client`] on tokio's
//! `UnixStream`, with the same codec, cache and errors. The cache's lock is never held across an
//! `.await`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ::tokio::io::{AsyncReadExt, AsyncWriteExt};
use ::tokio::net::UnixStream;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::secret::{Secret, SecretInfo, Token, Value};
use crate::shared::{self, Core};
use crate::wire::{parse_response, Parsed, Request, Response};

/// An async client of edgeseal's token socket for the calling process's own service.
///
/// Cheap to clone; clones share the cache; `Send + Sync`. Each method is the async form of the
/// [blocking one](crate::Client) of the same name.
#[derive(Debug, Clone)]
pub struct Client {
    core: Core,
}

impl Client {
    /// The socket from `EDGESEAL_SOCKET` (else [`crate::DEFAULT_SOCKET`]); the asserted service
    /// from `EDGESEAL_SERVICE`, if set.
    pub fn from_env() -> Self {
        Self { core: Core::from_env() }
    }

    /// A client of the token socket at `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self { core: Core::new(socket.into()) }
    }

    /// See [`crate::Client::with_service`].
    pub fn with_service(self, service: impl Into<String>) -> Self {
        Self { core: self.core.with_service(service) }
    }

    /// See [`crate::Client::with_check_interval`].
    pub fn with_check_interval(self, interval: Duration) -> Self {
        Self { core: self.core.with_check_interval(interval) }
    }

    /// See [`crate::Client::with_timeout`].
    pub fn with_timeout(self, timeout: Duration) -> Self {
        Self { core: self.core.with_timeout(timeout) }
    }

    /// The token socket this client asks.
    pub fn socket(&self) -> &Path {
        self.core.socket()
    }

    /// See [`crate::Client::get`].
    pub async fn get(&self, name: &str) -> Result<Secret> {
        let value = self.current(name).await?;
        shared::secret(name, &value)
    }

    /// See [`crate::Client::get_json`].
    pub async fn get_json<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        let value = self.current(name).await?;
        shared::json(name, &value)
    }

    /// See [`crate::Client::get_version`].
    pub async fn get_version(&self, name: &str, version: u64) -> Result<Secret> {
        let response = self.exchange(&self.core.read_request(name, Some(version))?).await?;
        let value = self.core.after_read(response, name, false)?;
        shared::secret(name, &value)
    }

    /// See [`crate::Client::list`].
    pub async fn list(&self) -> Result<Vec<SecretInfo>> {
        let response = self.exchange(&self.core.list_request()).await?;
        Ok(self.core.after_list(response, None)?.0)
    }

    /// See [`crate::Client::refresh`].
    pub async fn refresh(&self) -> Result<()> {
        self.list().await.map(drop)
    }

    /// See [`crate::Client::token`].
    pub async fn token(&self) -> Result<Token> {
        let response = self.exchange(&self.core.token_request()).await?;
        self.core.after_token(response)
    }

    async fn current(&self, name: &str) -> Result<Arc<Value>> {
        if let Some(value) = self.core.fresh(name)? {
            return Ok(value);
        }
        let listed = self.exchange(&self.core.list_request()).await?;
        if let (_, Some(value)) = self.core.after_list(listed, Some(name))? {
            return Ok(value);
        }
        let read = self.exchange(&self.core.read_request(name, None)?).await?;
        self.core.after_read(read, name, true)
    }

    /// One request on a new connection, and its answer, within the timeout.
    async fn exchange(&self, request: &Request) -> Result<Response> {
        let socket = self.core.socket();
        match ::tokio::time::timeout(self.core.timeout, exchange(socket, request)).await {
            Ok(answer) => answer,
            Err(_) => Err(Error::Io { socket: socket.to_path_buf(), source: std::io::ErrorKind::TimedOut.into() }),
        }
    }
}

async fn exchange(socket: &Path, request: &Request) -> Result<Response> {
    let io = |source: std::io::Error| Error::Io { socket: socket.to_path_buf(), source };
    let mut stream = UnixStream::connect(socket).await.map_err(|e| Error::connect(socket, e))?;
    // A server turning the connection away answers and closes without reading: read its answer
    // (503, 429) rather than report the broken pipe.
    let written = stream.write_all(&request.encode()).await;
    let mut received = Zeroizing::new(Vec::new());
    let mut chunk = Zeroizing::new(vec![0u8; 64 * 1024]);
    loop {
        let read = match stream.read(&mut chunk).await {
            Ok(read) => read,
            Err(e) => return Err(io(written.err().unwrap_or(e))),
        };
        received.extend_from_slice(&chunk[..read]);
        match parse_response(&received, read == 0) {
            Ok(Parsed::Complete(response)) => return Ok(response),
            Ok(Parsed::Incomplete) => {}
            Err(e) => return Err(written.map_err(io).err().unwrap_or_else(|| Error::protocol(socket, e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync_clone<T: Send + Sync + Clone>() {}

    #[test]
    fn the_client_and_its_futures_are_send() {
        assert_send_sync_clone::<Client>();
        fn send<T: Send>(_: T) {}
        let client = Client::new("/nonexistent/token.sock");
        send(client.get("db"));
        send(client.get_json::<serde_json::Value>("db"));
        send(client.token());
    }

    #[::tokio::test]
    async fn nothing_listening_is_unavailable() {
        let error = Client::new("/nonexistent/edgeseal/token.sock").get("db").await.unwrap_err();
        assert!(matches!(error, Error::Unavailable { .. }), "{error:?}");
    }
}
