//! `GET /v1/cluster` on the admin socket (SPEC §15): the raft cluster as this member sees it —
//! `security-bootstrap cluster status`. Read only; the admin credential may read the raft
//! configuration and autopilot's state and nothing else of `sys/storage/raft`.
//!
//! `{"cluster_id", "this_member": {"active", "leader_address"}, "servers": [{node_id, address,
//! leader, voter}], "autopilot": {healthy, failure_tolerance, leader, voters, servers}}`

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use serde_json::json;

use super::routes::{error, json};
use super::AdminState;

/// Answers `GET /v1/cluster`.
pub async fn status(state: &AdminState) -> Response<Full<Bytes>> {
    let health = match state.client.health().await {
        Ok(health) => health,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, &format!("the secret store: {e}")),
    };
    let leader = state.client.leader().await.ok();
    let servers = match state.client.raft_configuration(&state.token).await {
        Ok(servers) => servers,
        Err(e) => return error(StatusCode::BAD_GATEWAY, &format!("reading the raft members: {e}")),
    };
    // Autopilot answers only on an active node with a cluster; report what there is.
    let autopilot = state.client.autopilot_state(&state.token).await.ok();
    json(
        StatusCode::OK,
        &json!({
            "cluster_id": health.cluster_id,
            "this_member": {
                "active": leader.as_ref().is_some_and(|l| l.is_self),
                "standby": health.standby,
                "leader_address": leader.as_ref().map(|l| l.leader_address.clone()).unwrap_or_default(),
                "raft_applied_index": leader.as_ref().map(|l| l.raft_applied_index),
            },
            "servers": servers,
            "autopilot": autopilot,
        }),
    )
}
