//! token-server: a Unix-socket HTTP server that tells who is calling — from the kernel (SO_PEERCRED,
//! `/proc/<pid>`) and the Docker daemon — and only then issues that service its own OpenBao token.
//! No shared secret is ever handed to a service to prove who it is (SPEC §7).
//!
//! Layout:
//! - [`server`]: `serve(listener, state, shutdown)`, routing, limits, audit lines.
//! - [`attest`]: peer credentials, the pinned process, kernel and Docker facts.
//! - [`selector`]: matching facts against services' selectors (pure).
//! - [`issue`]: creating tokens with the token-issuing token, shared `reuse` tokens.
//! - [`limits`]: per-peer rate limiting.
//! - [`socket`]: binding the socket defensively.
//! - [`api`]: the wire types.
//! - [`config`]: the `token_server:` section and the services' selectors.

#![deny(unsafe_code)]

pub mod api;
pub mod attest;
pub mod config;
pub mod issue;
pub mod limits;
pub mod selector;
pub mod server;
pub mod socket;

pub use server::{serve, State};
