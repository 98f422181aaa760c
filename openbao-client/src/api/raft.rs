//! `sys/storage/raft/*` and `sys/leader`: the membership of a raft cluster (SPEC §15).

use std::collections::BTreeMap;

use hyper::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Data;
use crate::{Client, Error, Retry, Token};

/// `GET sys/leader` (unauthenticated).
#[derive(Debug, Clone, Deserialize)]
pub struct Leader {
    /// HA is on (always, with raft).
    #[serde(default)]
    pub ha_enabled: bool,
    /// This node is the active one.
    #[serde(default)]
    pub is_self: bool,
    /// The active node's API address (empty while there is none).
    #[serde(default)]
    pub leader_address: String,
    /// The last raft index committed, as this node knows it.
    #[serde(default)]
    pub raft_committed_index: u64,
    /// The last raft index applied on this node.
    #[serde(default)]
    pub raft_applied_index: u64,
}

/// One server of `GET sys/storage/raft/configuration`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct RaftServer {
    /// Its raft node id.
    pub node_id: String,
    /// Its cluster address (`host:port`; not its API address).
    pub address: String,
    /// It is the raft leader.
    #[serde(default)]
    pub leader: bool,
    /// It votes.
    #[serde(default)]
    pub voter: bool,
}

#[derive(Deserialize)]
struct RaftConfigurationData {
    config: RaftConfiguration,
}

#[derive(Deserialize)]
struct RaftConfiguration {
    #[serde(default)]
    servers: Vec<RaftServer>,
}

/// One server as autopilot sees it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct AutopilotServer {
    /// `alive` or `left`/`failed`.
    #[serde(default)]
    pub node_status: String,
    /// `leader`, `voter` or `non-voter`.
    #[serde(default)]
    pub status: String,
    /// Healthy by autopilot's rules (contact, trailing logs, stable).
    #[serde(default)]
    pub healthy: bool,
    /// Time since the leader last heard from it (`"0s"` for the leader).
    #[serde(default)]
    pub last_contact: String,
}

/// `GET sys/storage/raft/autopilot/state`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct AutopilotState {
    /// Every voter is healthy.
    #[serde(default)]
    pub healthy: bool,
    /// Voters that may fail without losing the quorum.
    #[serde(default)]
    pub failure_tolerance: u64,
    /// The leader's node id.
    #[serde(default)]
    pub leader: String,
    /// Voting members.
    #[serde(default)]
    pub voters: Vec<String>,
    /// Every server by node id.
    #[serde(default)]
    pub servers: BTreeMap<String, AutopilotServer>,
}

/// The autopilot rules edgeseal sets (`POST sys/storage/raft/autopilot/configuration`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AutopilotConfig {
    /// Remove servers autopilot holds dead, never below `min_quorum`.
    pub cleanup_dead_servers: bool,
    /// Seconds without contact before a server is dead (OpenBao refuses under 60 with cleanup).
    pub dead_server_last_contact_threshold: u64,
    /// Servers autopilot never prunes below (OpenBao refuses under 3 with cleanup).
    pub min_quorum: u64,
    /// Seconds a new server must be healthy before it is promoted to voter.
    pub server_stabilization_time: u64,
}

impl Client {
    /// `GET sys/leader` (one attempt: callers poll).
    pub async fn leader(&self) -> Result<Leader, Error> {
        self.call(Method::GET, "sys/leader", None, None::<&()>, Retry::Once).await
    }

    /// `GET sys/storage/raft/configuration`: the raft members. Retried: a read.
    pub async fn raft_configuration(&self, token: &Token) -> Result<Vec<RaftServer>, Error> {
        let data: Data<RaftConfigurationData> = self
            .call(Method::GET, "sys/storage/raft/configuration", Some(token), None::<&()>, Retry::Idempotent)
            .await?;
        Ok(data.data.config.servers)
    }

    /// `GET sys/storage/raft/autopilot/state`. Retried: a read.
    pub async fn autopilot_state(&self, token: &Token) -> Result<AutopilotState, Error> {
        let data: Data<AutopilotState> = self
            .call(Method::GET, "sys/storage/raft/autopilot/state", Some(token), None::<&()>, Retry::Idempotent)
            .await?;
        Ok(data.data)
    }

    /// `GET sys/storage/raft/autopilot/configuration`, as OpenBao returns it. Retried: a read.
    pub async fn autopilot_config(&self, token: &Token) -> Result<serde_json::Map<String, serde_json::Value>, Error> {
        let data: Data<serde_json::Map<String, serde_json::Value>> = self
            .call(Method::GET, "sys/storage/raft/autopilot/configuration", Some(token), None::<&()>, Retry::Idempotent)
            .await?;
        Ok(data.data)
    }

    /// `POST sys/storage/raft/autopilot/configuration`. Retried: writing the same rules twice is
    /// the same as once.
    pub async fn set_autopilot_config(&self, token: &Token, config: &AutopilotConfig) -> Result<(), Error> {
        let path = "sys/storage/raft/autopilot/configuration";
        self.call_empty(Method::POST, path, Some(token), Some(config), Retry::Idempotent).await
    }

    /// `POST sys/storage/raft/remove-peer`: `node_id` leaves the raft configuration. Retried: removing
    /// a server that is gone already is refused with a clear error, never a second removal.
    pub async fn remove_raft_peer(&self, token: &Token, node_id: &str) -> Result<(), Error> {
        let body = json!({"server_id": node_id});
        self.call_empty(Method::POST, "sys/storage/raft/remove-peer", Some(token), Some(&body), Retry::Idempotent).await
    }

    /// `PUT sys/step-down`: the active node gives up leadership (forwarded from a standby). One
    /// attempt: a lost answer means a second election, which the caller need not cause.
    pub async fn step_down(&self, token: &Token) -> Result<(), Error> {
        self.call_empty(Method::PUT, "sys/step-down", Some(token), None::<&()>, Retry::Once).await
    }
}
