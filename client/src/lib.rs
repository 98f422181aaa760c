//! `edgeseal-client`: a service reads its own secrets and tokens from edgeseal's token socket
//! (SPEC §7). edgeseal attests the calling process (uid, executable, container) and answers for
//! the service it matches; there is nothing to configure but, optionally, the socket.
//!
//! ```no_run
//! # fn main() -> Result<(), edgeseal_client::Error> {
//! // EDGESEAL_SOCKET (default /run/edgeseal/token.sock); EDGESEAL_SERVICE, if set, is asserted.
//! let client = edgeseal_client::Client::from_env();
//! let password = client.get("mqtt-password")?; // a single-value secret
//! connect_mqtt(password.expose());
//!
//! #[derive(serde::Deserialize)]
//! struct Db { username: String, password: String }
//! let db: Db = client.get_json("db")?; // a multi-key secret
//! let token = client.token()?; // an OpenBao token of this service (never cached)
//! # let _ = (db.username, db.password, token);
//! # Ok(()) }
//! # fn connect_mqtt(_: &str) {}
//! ```
//!
//! **Cache.** `get` and `get_json` keep values in process, by name. A value checked less than the
//! check interval ago (default 10 s, [`Client::with_check_interval`]) is returned with no I/O. After
//! that, one `GET /v1/secrets` (the names and versions of all the caller's secrets) checks every
//! cached value at once; only a value whose version changed (an admin's `secrets set`/`rotate`) is
//! read again. [`Client::refresh`] checks now. `Duration::ZERO` checks on every `get`. Tokens and
//! `get_version` are never cached.
//!
//! **Errors** ([`Error`]) say what to do; [`Error::may_succeed_later`] tells a retry loop whether
//! waiting can help (edgeseal not running yet, store sealed, rate-limited).
//!
//! **Secrets** ([`Secret`], [`Token`]) are wiped from memory on drop and print as `<redacted>`.
//!
//! Layout: [`wire`] (HTTP/1.1 codec), `api` (endpoints), `cache`, `shared` (what the two clients
//! share), `blocking` ([`Client`], std only) and [`tokio`] (`tokio::Client`, cargo feature
//! `tokio`).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod api;
mod blocking;
mod cache;
mod error;
mod secret;
mod shared;
#[cfg(feature = "tokio")]
pub mod tokio;
pub mod wire;

pub use crate::api::valid_name;
pub use crate::blocking::Client;
pub use crate::error::{Error, Result};
pub use crate::secret::{Secret, SecretInfo, Token};
pub use crate::shared::{DEFAULT_CHECK_INTERVAL, DEFAULT_SOCKET, DEFAULT_TIMEOUT, SERVICE_ENV, SOCKET_ENV};
