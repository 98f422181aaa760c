//! `fleet secret set` and `fleet secret rm`: one record per target node.
//!
//! Versions count per node and per secret: a set writes the previous version + 1, where the
//! previous version is the larger of the record's and the `fleet_version` the secret's KV metadata
//! keeps (so a set after an `rm` never reuses a number a node may still have installed). The KV
//! write is check-and-set against the metadata read, so two admins setting at once cannot both win.

use serde_json::{Map, Value};

use super::{check_org, AdminError, Central};
use crate::layout::{self, SecretRef};
use crate::org::OrgKey;
use crate::record::{seal_secret, SecretMeta, SecretRecord, SecretValue};

/// The custom-metadata key holding the last version written to a node's secret path.
const VERSION_KEY: &str = "fleet_version";

/// Versions stay below 2^53, so every JSON reader sees them exactly.
const MAX_VERSION: u64 = 1 << 53;

/// Which nodes a `secret set`/`rm` is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    /// These nodes (each enrolled and not revoked).
    Nodes(Vec<String>),
    /// Every enrolled, unrevoked node.
    All,
}

/// A secret's activation window (unix seconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    /// Not installed before.
    pub not_before: Option<i64>,
    /// Removed from then on.
    pub expires: Option<i64>,
}

async fn target_nodes(central: &Central, targets: &Targets) -> Result<Vec<String>, AdminError> {
    let nodes = match targets {
        Targets::All => central.active_nodes().await?.into_iter().map(|(node, _)| node).collect(),
        Targets::Nodes(nodes) => {
            for node in nodes {
                central.active(layout::node(node)?).await?;
            }
            nodes.clone()
        }
    };
    match nodes.is_empty() {
        true => Err(AdminError::NoNodes),
        false => Ok(nodes),
    }
}

/// The last version written at `path` (record or metadata), and the KV version to check-and-set.
async fn previous(central: &Central, path: &str) -> Result<(u64, u64), AdminError> {
    let (client, token, mount) = (&central.client, &central.token, &central.layout.mount);
    let Some(meta) = client.kv_metadata(token, mount, path).await? else { return Ok((0, 0)) };
    let kept = meta
        .custom_metadata
        .as_ref()
        .and_then(|c| c.get(VERSION_KEY))
        .and_then(Value::as_str)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let record = match client.kv_read(token, mount, path).await? {
        Some(map) => SecretRecord::from_map(&map).map(|r| r.version).unwrap_or(0),
        None => 0,
    };
    Ok((kept.max(record), meta.current_version))
}

/// `fleet secret set SERVICE/NAME (--node N… | --all)`: encrypts `value` under the current K for each
/// target node, as the next version there, signed. Returns `(node, version)` for each.
pub async fn secret_set(
    central: &Central,
    org: &OrgKey,
    secret: &SecretRef,
    targets: &Targets,
    value: &SecretValue,
    window: Window,
) -> Result<Vec<(String, u64)>, AdminError> {
    check_org(central, org).await?;
    let nodes = target_nodes(central, targets).await?;
    let mut id = [0u8; 16];
    getrandom::getrandom(&mut id).map_err(|e| crate::record::SealError::Random(e.to_string()))?;
    let secret_id = hex::encode(id);
    let generation = org.current();
    let mut written = Vec::new();
    for node in nodes {
        let path = central.layout.secret(&node, secret);
        let (last, cas) = previous(central, &path).await?;
        if last >= MAX_VERSION {
            return Err(AdminError::Record {
                path,
                error: crate::record::VerifyError::Malformed(format!(
                    "version {last} is beyond 2^53 (written outside edgeseal?): destroy the path with the admin token, then set the secret again"
                )),
            });
        }
        let meta = SecretMeta {
            node: node.clone(),
            secret: secret.clone(),
            secret_id: secret_id.clone(),
            version: last + 1,
            not_before: window.not_before,
            expires: window.expires,
        };
        let record = seal_secret(org, generation.number, &generation.key, &meta, value)?;
        let (client, token, mount) = (&central.client, &central.token, &central.layout.mount);
        match client.kv_write(token, mount, &path, &record.to_map(), Some(cas)).await? {
            openbao_client::api::kv::Written::Version(_) => {}
            openbao_client::api::kv::Written::CasMismatch => return Err(AdminError::Concurrent(path)),
        }
        let custom = Map::from_iter([(VERSION_KEY.to_string(), Value::String(meta.version.to_string()))]);
        client.kv_set_custom_metadata(token, mount, &path, &custom).await?;
        tracing::info!(node, secret = %secret, version = meta.version, "secret set");
        written.push((node, meta.version));
    }
    Ok(written)
}

/// `fleet secret rm SERVICE/NAME (--node N… | --all)`: deletes the record's current version on each
/// target node that has it (the metadata stays, so the version count goes on); the node removes the
/// secret at its next sync. Returns the nodes it was removed for.
pub async fn secret_rm(central: &Central, secret: &SecretRef, targets: &Targets) -> Result<Vec<String>, AdminError> {
    let nodes = match targets {
        Targets::All => central.nodes().await?,
        Targets::Nodes(nodes) => nodes.iter().map(|n| layout::node(n).map(str::to_string)).collect::<Result<_, _>>()?,
    };
    let (client, token, mount) = (&central.client, &central.token, &central.layout.mount);
    let mut removed = Vec::new();
    for node in nodes {
        let path = central.layout.secret(&node, secret);
        if client.kv_read(token, mount, &path).await?.is_some() {
            client.kv_delete_latest(token, mount, &path).await?;
            tracing::info!(node, secret = %secret, "secret removed");
            removed.push(node);
        }
    }
    Ok(removed)
}
