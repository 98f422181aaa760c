//! What can go wrong asking edgeseal, and the one mapping from the server's answer to it
//! ([`Error::from_answer`]), shared by both clients.

use std::path::{Path, PathBuf};

/// A failed request to edgeseal's token socket. Messages never hold a secret value: the server's own
/// messages never do, and a value that does not fit the type asked for is reported by position only.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Nothing answers on the socket (missing, connection refused), or edgeseal answered that its
    /// secret store is sealed or down (502/503/504). Usually temporary: see [`Error::may_succeed_later`].
    #[error(
        "edgeseal is not available on {}: {reason} (is edgeseal running, and is this its token socket? set EDGESEAL_SOCKET otherwise)",
        socket.display()
    )]
    Unavailable {
        /// The token socket asked.
        socket: PathBuf,
        /// What failed, or what the server said.
        reason: String,
    },
    /// 403: this process is not the service it asserts (`EDGESEAL_SERVICE`), matches no service, or
    /// the store's policy refuses the read. The server says what it saw.
    #[error("edgeseal refused: {message}")]
    Denied {
        /// The server's message.
        message: String,
    },
    /// 404: the caller's service has no such secret (or not that version).
    #[error("no secret {name:?} for this service: {message}")]
    NotFound {
        /// The secret asked for.
        name: String,
        /// The server's message (it says how an admin sets it).
        message: String,
    },
    /// 429: this process (its uid or container) asks too often; wait and retry.
    #[error("edgeseal rate-limited this process: {message}; try again later")]
    RateLimited {
        /// The server's message.
        message: String,
    },
    /// 400, 405, 413 (or a 404 for an endpoint): client and server disagree on the protocol, e.g.
    /// an older edgeseal that serves no secrets, or the socket is some other HTTP server.
    #[error("edgeseal did not understand the request ({status}): {message}; is this edgeseal's token socket, of a version with /v1/secrets?")]
    BadRequest {
        /// The HTTP status.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// A secret name edgeseal cannot have; nothing was sent.
    #[error("{name:?} is not a secret name: use 1-128 of [A-Za-z0-9._-], not '.' or '..'")]
    InvalidName {
        /// The name given.
        name: String,
    },
    /// `get` of a secret with several keys (or a non-string value): read it with `get_json`.
    #[error("secret {name:?} is not a single value (it has the keys {keys:?}): read it with get_json")]
    NotSingleValue {
        /// The secret.
        name: String,
        /// Its keys (never their values).
        keys: Vec<String>,
    },
    /// `get_json`: the secret's data does not fit the type asked for.
    #[error("secret {name:?} does not fit the type asked for: {reason}")]
    Decode {
        /// The secret.
        name: String,
        /// Where and what kind of mismatch (never the value).
        reason: String,
    },
    /// The answer is not what edgeseal sends (not HTTP, not the JSON expected, an unexpected status).
    #[error("unexpected answer from {}: {reason}", socket.display())]
    Protocol {
        /// The socket asked.
        socket: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// Reading or writing the socket failed midway, or timed out.
    #[error("talking to edgeseal on {}: {source}", socket.display())]
    Io {
        /// The socket asked.
        socket: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether the same request may succeed later without anything changed by an operator: edgeseal
    /// not (yet) running or its store sealed, rate limits, and broken connections. Denials, missing
    /// secrets and protocol errors are answers that stay the same.
    pub fn may_succeed_later(&self) -> bool {
        matches!(self, Error::Unavailable { .. } | Error::RateLimited { .. } | Error::Io { .. })
    }

    /// The error for a failed connect: `Unavailable` when nothing listens (missing socket, refused,
    /// not a socket), else `Io` (e.g. permission denied on the socket's directory).
    pub(crate) fn connect(socket: &Path, error: std::io::Error) -> Self {
        use std::io::ErrorKind::*;
        match error.kind() {
            NotFound | ConnectionRefused | ConnectionReset | ConnectionAborted | NotConnected | AddrNotAvailable => {
                Error::Unavailable { socket: socket.to_path_buf(), reason: format!("cannot connect: {error}") }
            }
            _ => Error::Io { socket: socket.to_path_buf(), source: error },
        }
    }

    /// A wire or JSON problem with the answer.
    pub(crate) fn protocol(socket: &Path, reason: impl std::fmt::Display) -> Self {
        Error::Protocol { socket: socket.to_path_buf(), reason: reason.to_string() }
    }

    /// The error for a non-2xx answer: `status`, its body, the socket asked and the secret asked
    /// for (if any).
    pub fn from_answer(socket: &Path, status: u16, body: &[u8], name: Option<&str>) -> Self {
        let message = server_message(body);
        match status {
            403 => Error::Denied { message },
            404 => match name {
                Some(name) => Error::NotFound { name: name.to_string(), message },
                None => Error::BadRequest { status, message },
            },
            429 => Error::RateLimited { message },
            408 => Error::Io {
                socket: socket.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::TimedOut, format!("the server timed out: {message}")),
            },
            502..=504 => Error::Unavailable { socket: socket.to_path_buf(), reason: message },
            400..=499 => Error::BadRequest { status, message },
            _ => Error::protocol(socket, format!("HTTP status {status}: {message}")),
        }
    }
}

/// The server's message from `{"error": "..."}` (or `{"errors": [...]}`), else the body's text: one
/// line, at most 500 characters.
fn server_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Single {
        error: String,
    }
    #[derive(serde::Deserialize)]
    struct Many {
        errors: Vec<String>,
    }
    let said = serde_json::from_slice::<Single>(body)
        .map(|s| s.error)
        .or_else(|_| serde_json::from_slice::<Many>(body).map(|m| m.errors.join("; ")))
        .unwrap_or_else(|_| String::from_utf8_lossy(body).into_owned());
    let said: String = said.chars().map(|c| if c.is_control() { ' ' } else { c }).take(500).collect();
    if said.trim().is_empty() {
        "(no message)".to_string()
    } else {
        said
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_one_error_and_one_retry_answer() {
        let socket = Path::new("/run/edgeseal/token.sock");
        let body = br#"{"error":"the reason"}"#;
        type Check = fn(&Error) -> bool;
        let cases: &[(u16, Option<&str>, Check, bool)] = &[
            (403, Some("db"), |e| matches!(e, Error::Denied { message } if message == "the reason"), false),
            (404, Some("db"), |e| matches!(e, Error::NotFound { name, .. } if name == "db"), false),
            (404, None, |e| matches!(e, Error::BadRequest { status: 404, .. }), false),
            (429, None, |e| matches!(e, Error::RateLimited { .. }), true),
            (408, None, |e| matches!(e, Error::Io { .. }), true),
            (503, Some("db"), |e| matches!(e, Error::Unavailable { reason, .. } if reason == "the reason"), true),
            (502, None, |e| matches!(e, Error::Unavailable { .. }), true),
            (504, None, |e| matches!(e, Error::Unavailable { .. }), true),
            (400, Some("db"), |e| matches!(e, Error::BadRequest { status: 400, .. }), false),
            (405, None, |e| matches!(e, Error::BadRequest { status: 405, .. }), false),
            (413, None, |e| matches!(e, Error::BadRequest { status: 413, .. }), false),
            (500, None, |e| matches!(e, Error::Protocol { .. }), false),
            (302, None, |e| matches!(e, Error::Protocol { .. }), false),
        ];
        for (status, name, check, later) in cases {
            let error = Error::from_answer(socket, *status, body, *name);
            assert!(check(&error), "{status}: {error:?}");
            assert_eq!(error.may_succeed_later(), *later, "{status}");
            assert!(error.to_string().contains("the reason"), "{status}: {error}");
        }
    }

    #[test]
    fn messages_quote_the_server_on_one_line_and_say_what_to_do() {
        let socket = Path::new("/run/edgeseal/token.sock");
        assert_eq!(server_message(br#"{"error":"two\nlines"}"#), "two lines");
        assert_eq!(server_message(br#"{"errors":["a","b"]}"#), "a; b");
        assert_eq!(server_message(b"plain text"), "plain text");
        assert_eq!(server_message(b""), "(no message)");
        assert_eq!(server_message("x".repeat(2000).as_bytes()).len(), 500);
        let down = Error::from_answer(socket, 503, br#"{"error":"the store is sealed"}"#, None).to_string();
        assert!(down.contains("/run/edgeseal/token.sock") && down.contains("is edgeseal running"), "{down}");
        let refused = Error::connect(socket, std::io::ErrorKind::NotFound.into());
        assert!(matches!(refused, Error::Unavailable { .. }) && refused.may_succeed_later(), "{refused:?}");
        let perm = Error::connect(socket, std::io::ErrorKind::PermissionDenied.into());
        assert!(matches!(perm, Error::Io { .. }), "{perm:?}");
    }
}
