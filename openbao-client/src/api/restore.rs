//! Raft snapshots and the token sweep of a restore (SPEC §13 backup/restore).

use super::{Data, Keys};
use crate::{Client, Error, Retry, Token};
use bytes::Bytes;
use hyper::Method;

/// Largest snapshot read or sent.
pub const MAX_SNAPSHOT: usize = 256 * 1024 * 1024;

impl Client {
    /// `GET sys/storage/raft/snapshot`: the store's raft snapshot (a gzipped tar, sealed by the
    /// store's own keys). Needs `read` on that path. Retried: reading changes nothing.
    pub async fn raft_snapshot(&self, token: &Token) -> Result<Bytes, Error> {
        let path = "sys/storage/raft/snapshot";
        let (status, body) =
            self.send_bytes(&Method::GET, path, Some(token), Bytes::new(), Retry::Idempotent, MAX_SNAPSHOT).await?;
        if !status.is_success() {
            return Err(crate::api_error(&Method::GET, path, status, &body));
        }
        Ok(body)
    }

    /// `POST sys/storage/raft/snapshot-force`: replaces the whole store with `snapshot`, which may
    /// come from another store (its keys, not this one's, then open it: OpenBao seals itself).
    /// Needs `update`+`sudo` there. One attempt: the caller decides whether to start over.
    pub async fn raft_restore_force(&self, token: &Token, snapshot: Bytes) -> Result<(), Error> {
        let path = "sys/storage/raft/snapshot-force";
        let (status, body) = self.send_bytes(&Method::POST, path, Some(token), snapshot, Retry::Once, 4096).await?;
        if !status.is_success() {
            return Err(crate::api_error(&Method::POST, path, status, &body));
        }
        Ok(())
    }

    /// `LIST auth/token/accessors`: every token's accessor (needs `sudo` there). Retried: a read.
    pub async fn list_token_accessors(&self, token: &Token) -> Result<Vec<String>, Error> {
        let listed: Option<Data<Keys>> = self
            .call_opt(Method::GET, "auth/token/accessors?list=true", Some(token), None::<&()>, Retry::Idempotent)
            .await?;
        Ok(listed.map(|d| d.data.keys).unwrap_or_default())
    }
}
