//! token-server: a Unix-socket HTTP server that tells who is calling — from the kernel (SO_PEERCRED,
//! `/proc/<pid>`) and the Docker daemon — and only then issues that service its own OpenBao token.
//! No shared secret is ever handed to a service to prove who it is (SPEC §7).
//!
//! `Server::new(config, rules, client, issuing_token)` assembles it, `server.bind()` binds the
//! socket, `server.run(listener, shutdown)` serves until `shutdown` (renewing the issuing token and
//! following Docker events meanwhile). One local user cannot exhaust its connections or descriptors:
//! connections are capped in total (within the open-file limit), per peer and per uid, and shed at
//! once when over a cap; requests are rate-limited per peer; health answers are cached.
//!
//! Layout:
//! - [`admin`]: the admin socket (operators' secrets), apart from the service socket.
//! - [`server`]: assembly (`State`, `Server`), `serve(listener, state, shutdown)`, the accept loop.
//! - [`routes`]: the HTTP routes, audit lines, JSON answers.
//! - [`secrets`]: `GET /v1/secrets…`, the attested caller's own secrets, read with its service's token.
//! - [`audit_log`]: edgeseal's audit log (tokens issued, admin actions), JSON lines.
//! - [`attest`]: peer credentials, the pinned process, kernel and Docker facts.
//! - [`selector`]: matching facts against services' selectors (pure).
//! - [`issue`]: creating tokens with the token-issuing token, shared `reuse` tokens.
//! - [`connections`]: connection caps (total, per peer, per uid) that never wait.
//! - [`shed`]: answering and closing a connection over a cap.
//! - [`metrics`]: the Prometheus/OpenMetrics registry (tokens issued/denied, latency, store state).
//! - [`limits`]: the peer key (uid on the host, container id in a container) and per-peer rate limiting.
//! - [`descriptors`]: raising RLIMIT_NOFILE and the connection budget it allows.
//! - [`health`]: the cached `/v1/health` probe.
//! - [`socket`]: binding the socket defensively.
//! - [`api`]: the wire types.
//! - [`config`]: the `token_server:` section and the services' selectors.

#![deny(unsafe_code)]

pub mod admin;
pub mod api;
pub mod attest;
pub mod audit_log;
pub mod config;
pub mod connections;
pub mod descriptors;
pub mod health;
pub mod issue;
pub mod limits;
pub mod metrics;
pub mod routes;
pub mod secrets;
pub mod selector;
pub mod server;
pub mod shed;
pub mod socket;

pub use server::{serve, BindError, Server, State};
