//! The fleet's node side on the admin socket (SPEC §14): `POST /v1/fleet/sync` runs one sync now and
//! answers what it changed (never a value); `GET /v1/status` shows the last sync. The sync itself is
//! the fleet crate's; `security-bootstrap` composes it behind [`Fleet`] (the token server does not
//! depend on the fleet crate).
//!
//! | request | answer |
//! |---|---|
//! | `POST /v1/fleet/sync` | the sync's report: `{time, result, offline, generation, versions, changes, waiting, unchanged, refused, skipped, error}` |

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use serde_json::Value;

use super::routes::{error, json, Admin};
use super::AdminState;

/// A sync in progress.
pub type Syncing<'a> = Pin<Box<dyn Future<Output = Value> + Send + 'a>>;

/// The node's fleet, as the admin server drives it.
pub trait Fleet: Send + Sync + std::fmt::Debug {
    /// Runs one sync with the admin server's local store and credential; its report (JSON, never a
    /// value). Syncs never overlap.
    fn sync<'a>(&'a self, state: &'a AdminState) -> Syncing<'a>;

    /// The last sync, for `/v1/status`: `{last_sync, result, generation, installed, refused, offline, …}`.
    fn status(&self) -> Value;
}

/// `POST /v1/fleet/sync`: 200 with the report; 404 when the fleet is not configured.
pub async fn sync(state: &AdminState, admin: Admin) -> Response<Full<Bytes>> {
    let Some(fleet) = &state.fleet else {
        return error(StatusCode::NOT_FOUND, "this device has no fleet: add a fleet: section to edgeseal.yaml");
    };
    let report = fleet.sync(state).await;
    super::routes::audit(state, admin, "fleet-sync", "", report["result"].as_str().unwrap_or_default(), None);
    json(StatusCode::OK, &report)
}

/// The `fleet` field of `/v1/status`.
pub fn status(state: &AdminState) -> Value {
    match &state.fleet {
        Some(fleet) => fleet.status(),
        None => Value::String("not configured".into()),
    }
}
