//! The node's fleet inside `run` (SPEC §14): [`NodeFleet`] implements the admin server's
//! [`Fleet`] with the fleet crate's [`edgeseal_fleet::sync::Node`], the keystore (the node keys
//! and TLS identity, opened with the KDF plug-in for each sync and dropped after it) and the admin
//! server's local store and credential; [`sync_loop`] syncs at boot and every `sync_interval`.

use std::sync::Arc;
use std::time::Duration;

use edgeseal_fleet::config::FleetConfig;
use edgeseal_fleet::sync::{LocalStore, Node, Report};
use openbao_client::{Client, Pin};
use serde_json::{json, Value};
use token_server::admin::fleet::{Fleet, Syncing};
use token_server::admin::AdminState;

use super::device::KeystoreDevice;

/// The crash point reached after the first item of a sync is written to the local store, before
/// what is installed is persisted (feature `crash-points`).
pub const CRASH_MID_INSTALL: &str = secretstore_setup::crash::FLEET_POINTS[0];
/// Per-request timeout towards the central store.
const CENTRAL_TIMEOUT: Duration = Duration::from_secs(30);

/// This node's fleet.
#[derive(Debug)]
pub struct NodeFleet {
    config: FleetConfig,
    device: KeystoreDevice,
    node: Node,
}

impl NodeFleet {
    /// The fleet of `config` (already validated when the file loaded), with the keystore `device`
    /// whose directory `dir` also holds the fleet's cache and installed file.
    pub fn new(config: FleetConfig, device: KeystoreDevice, dir: &std::path::Path) -> anyhow::Result<Self> {
        let org = config.org_key()?;
        let node = Node::new(dir, org, config.layout());
        Ok(Self { config, device, node })
    }

    async fn run_sync(&self, state: &AdminState) -> Report {
        let device = self.device.clone();
        let identity = tokio::task::spawn_blocking(move || device.identity()).await;
        let identity = match identity {
            Ok(Ok((_kek, identity))) => identity,
            Ok(Err(e)) => return self.unavailable(format!("opening the node identity: {e:#}")),
            Err(_) => return self.unavailable("the keystore task failed".into()),
        };
        let central = identity.tls.client_identity().map_err(|e| e.to_string()).and_then(|tls| {
            Client::with_identity(&self.config.address, &self.config.ca_cert, &Pin::CaOnly, Some(&tls), CENTRAL_TIMEOUT)
                .map_err(|e| format!("the central store {}: {e}", self.config.address))
        });
        let local = LocalStore {
            client: state.client.clone(),
            token: state.token.clone(),
            mount: state.kv_mount.clone(),
            prefix: state.prefix.clone(),
            services: state.services.keys().cloned().collect(),
        };
        let crash = || secretstore_setup::crash::point(CRASH_MID_INSTALL);
        let report = self.node.sync(central, &identity.keys, &local, &crash).await;
        drop(identity);
        state.observed.telemetry.fleet_synced(report.result.as_str(), report.time);
        report
    }

    fn unavailable(&self, error: String) -> Report {
        tracing::warn!(error = %error, "fleet sync failed");
        let last = self.node.last();
        Report {
            time: edgeseal_fleet::unix_now(),
            result: edgeseal_fleet::sync::SyncResult::Failed,
            offline: false,
            generation: last.as_ref().map(|l| l.generation).unwrap_or_default(),
            versions: last.map(|l| l.versions).unwrap_or_default(),
            changes: Vec::new(),
            waiting: Default::default(),
            unchanged: 0,
            refused: Vec::new(),
            skipped: Vec::new(),
            error: Some(error),
        }
    }
}

impl Fleet for NodeFleet {
    fn sync<'a>(&'a self, state: &'a AdminState) -> Syncing<'a> {
        Box::pin(async move {
            let report = self.run_sync(state).await;
            serde_json::to_value(report).unwrap_or_default()
        })
    }

    fn status(&self) -> Value {
        let Some(last) = self.node.last() else {
            return json!({"address": self.config.address, "last_sync": null, "result": "not synced yet"});
        };
        let at = std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(last.time).unwrap_or_default());
        json!({
            "address": self.config.address,
            "last_sync": humantime::format_rfc3339_seconds(at).to_string(),
            "result": last.result,
            "generation": last.generation,
            "installed": last.versions,
            "waiting": last.waiting,
            "refused": last.refused,
            "skipped": last.skipped,
            "offline": last.offline,
            "error": last.error,
        })
    }
}

/// Syncs at once, then every `interval`, until `stopped`. A failed sync is logged and reported in
/// the status; it never stops anything else.
pub async fn sync_loop(state: Arc<AdminState>, interval: Duration, stopped: impl std::future::Future<Output = ()>) {
    let Some(fleet) = state.fleet.clone() else { return };
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            _ = fleet.sync(&state) => {}
        }
        tokio::select! {
            _ = &mut stopped => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
