//! The blocking client: std's `UnixStream`, one connection per request, bounded in time
//! ([`Client::with_timeout`]) and size ([`crate::wire::MAX_ANSWER`]).

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::secret::{Secret, SecretInfo, Token};
use crate::shared::{self, Core};
use crate::wire::{parse_response, Parsed, Request, Response};

/// A blocking client of edgeseal's token socket for the calling process's own service.
///
/// Cheap to clone; clones share the cache; `Send + Sync`. See the [crate docs](crate) for the cache.
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

    /// Asserts that this process is `service` (`?service=` / the token request's `service`): the
    /// server refuses (403, [`Error::Denied`]) when it attests the caller as another service.
    pub fn with_service(self, service: impl Into<String>) -> Self {
        Self { core: self.core.with_service(service) }
    }

    /// How long a cached value is handed out without asking the server (default 10 s;
    /// `Duration::ZERO` checks on every `get`).
    pub fn with_check_interval(self, interval: Duration) -> Self {
        Self { core: self.core.with_check_interval(interval) }
    }

    /// How long one request may take, connect to last byte (default 15 s).
    pub fn with_timeout(self, timeout: Duration) -> Self {
        Self { core: self.core.with_timeout(timeout) }
    }

    /// The token socket this client asks.
    pub fn socket(&self) -> &Path {
        self.core.socket()
    }

    /// The value of the single-value secret `name` (cached; see the crate docs). A secret with
    /// several keys is [`Error::NotSingleValue`]: read it with [`Client::get_json`].
    pub fn get(&self, name: &str) -> Result<Secret> {
        let value = self.current(name)?;
        shared::secret(name, &value)
    }

    /// The data object of the secret `name` as `T` (cached like [`Client::get`]), e.g. a struct
    /// of the keys of a multi-key secret, or a `HashMap<String, String>`. Copies in `T` are not
    /// wiped on drop: prefer [`Client::get`] for single values.
    pub fn get_json<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        let value = self.current(name)?;
        shared::json(name, &value)
    }

    /// Version `version` of the single-value secret `name`, always read from the server (not cached).
    pub fn get_version(&self, name: &str, version: u64) -> Result<Secret> {
        let response = self.exchange(&self.core.read_request(name, Some(version))?)?;
        let value = self.core.after_read(response, name, false)?;
        shared::secret(name, &value)
    }

    /// The caller's secrets: names and current versions (never values). Also counts as a check of
    /// every cached value.
    pub fn list(&self) -> Result<Vec<SecretInfo>> {
        let response = self.exchange(&self.core.list_request())?;
        Ok(self.core.after_list(response, None)?.0)
    }

    /// Checks the cache against the server now (one list): unchanged values are fresh again,
    /// changed ones are read on their next `get`.
    pub fn refresh(&self) -> Result<()> {
        self.list().map(drop)
    }

    /// A token for the caller's service (`POST /v1/token`); never cached.
    pub fn token(&self) -> Result<Token> {
        let response = self.exchange(&self.core.token_request())?;
        self.core.after_token(response)
    }

    /// The current value of `name`: cached and fresh, else checked with one list, else read.
    fn current(&self, name: &str) -> Result<std::sync::Arc<crate::secret::Value>> {
        if let Some(value) = self.core.fresh(name)? {
            return Ok(value);
        }
        let listed = self.exchange(&self.core.list_request())?;
        if let (_, Some(value)) = self.core.after_list(listed, Some(name))? {
            return Ok(value);
        }
        let read = self.exchange(&self.core.read_request(name, None)?)?;
        self.core.after_read(read, name, true)
    }

    /// One request on a new connection, and its answer.
    fn exchange(&self, request: &Request) -> Result<Response> {
        let socket = self.core.socket();
        let deadline = Instant::now() + self.core.timeout;
        let io = |source: std::io::Error| Error::Io { socket: socket.to_path_buf(), source };
        let mut stream = UnixStream::connect(socket).map_err(|e| Error::connect(socket, e))?;
        stream.set_write_timeout(Some(self.core.timeout)).map_err(io)?;
        // A server turning the connection away answers and closes without reading: its answer
        // (503, 429) is worth more than the broken pipe, so read it if it is there.
        let written = stream.write_all(&request.encode());
        let mut received = Zeroizing::new(Vec::new());
        let mut chunk = Zeroizing::new(vec![0u8; 64 * 1024]);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io(ErrorKind::TimedOut.into()));
            }
            stream.set_read_timeout(Some(left)).map_err(io)?;
            let read = match stream.read(&mut chunk) {
                Ok(read) => read,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Err(io(ErrorKind::TimedOut.into())),
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync_clone<T: Send + Sync + Clone>() {}

    #[test]
    fn the_client_is_shared_across_threads() {
        assert_send_sync_clone::<Client>();
    }

    /// A one-shot server on a socket pair's path: answers `answer` to one request.
    fn serve_once(answer: &'static [u8]) -> (tempfile_dir::Dir, PathBuf) {
        let dir = tempfile_dir::Dir::new();
        let path = dir.0.join("token.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            if let Ok((mut stream, _)) = listener.accept() {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                let _ = stream.write_all(answer);
            }
        });
        (dir, path)
    }

    /// A temporary directory without a dev-dependency.
    mod tempfile_dir {
        pub(super) struct Dir(pub(super) std::path::PathBuf);
        impl Dir {
            pub(super) fn new() -> Self {
                use std::sync::atomic::{AtomicUsize, Ordering};
                static N: AtomicUsize = AtomicUsize::new(0);
                let n = N.fetch_add(1, Ordering::Relaxed);
                let path = std::env::temp_dir().join(format!("edgeseal-client-{}-{n}", std::process::id()));
                std::fs::create_dir_all(&path).unwrap();
                Self(path)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn nothing_listening_is_unavailable_and_a_stranger_is_a_protocol_error() {
        let dir = tempfile_dir::Dir::new();
        let missing = Client::new(dir.0.join("none.sock"));
        let error = missing.get("db").unwrap_err();
        assert!(matches!(error, Error::Unavailable { .. }) && error.may_succeed_later(), "{error:?}");
        assert!(error.to_string().contains("none.sock"), "{error}");

        let (_dir, path) = serve_once(b"SSH-2.0-OpenSSH_9.2\r\n");
        let error = Client::new(path).token().unwrap_err();
        assert!(matches!(error, Error::Protocol { .. }), "{error:?}");

        let (_dir, path) = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{\"cut");
        let error = Client::new(path).token().unwrap_err();
        assert!(matches!(error, Error::Protocol { .. }) && error.to_string().contains("cut off"), "{error}");
    }

    #[test]
    fn an_answer_sent_without_reading_the_request_is_still_read() {
        let dir = tempfile_dir::Dir::new();
        let path = dir.0.join("shed.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let body = br#"{"error":"too many connections"}"#;
            let head = format!("HTTP/1.1 503 Service Unavailable\r\ncontent-length: {}\r\n\r\n", body.len());
            stream.write_all(head.as_bytes()).unwrap();
            stream.write_all(body).unwrap();
        });
        // A request larger than the socket buffer, so that writing it fails once the server is gone.
        let client = Client::new(&path).with_service("s".repeat(1 << 20));
        let error = client.token().unwrap_err();
        server.join().unwrap();
        assert!(matches!(&error, Error::Unavailable { reason, .. } if reason == "too many connections"), "{error:?}");
    }

    #[test]
    fn a_silent_server_times_out() {
        let dir = tempfile_dir::Dir::new();
        let path = dir.0.join("silent.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let client = Client::new(&path).with_timeout(Duration::from_millis(100));
        let error = client.list().unwrap_err();
        assert!(matches!(&error, Error::Io { source, .. } if source.kind() == ErrorKind::TimedOut), "{error:?}");
        drop(listener);
    }
}
