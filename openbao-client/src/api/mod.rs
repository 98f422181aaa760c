//! Typed OpenBao endpoints, one module per area. Only what edgeseal uses.

pub mod auth;
pub mod kv;
pub mod raft;
pub mod rekey;
pub mod restore;
pub mod sys;

use serde::Deserialize;

/// The `{"data": …}` envelope of most read responses.
#[derive(Debug, Deserialize)]
pub struct Data<T> {
    /// The payload.
    pub data: T,
}

/// The payload of a LIST response.
#[derive(Debug, Default, Deserialize)]
pub struct Keys {
    /// The listed names.
    #[serde(default)]
    pub keys: Vec<String>,
}

/// Percent-encodes one path segment conservatively (names here are `[a-z0-9-_]`, but be safe).
pub(crate) fn segment(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
