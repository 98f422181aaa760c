//! `fleet status`: per node, what the store holds for it and what it last reported.

use std::collections::BTreeMap;

use edgeseal_bundle::SignerKey;
use serde::Serialize;

use super::{AdminError, Central};
use crate::layout;
use crate::record::{verify_status, SecretRecord};

/// One node's state, as `fleet status` shows it (never a value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeReport {
    /// The node id.
    pub node: String,
    /// When it was enrolled (unix seconds).
    pub enrolled: i64,
    /// When it was revoked (unix seconds).
    pub revoked: Option<i64>,
    /// The versions the store holds for it, by `service/name`.
    pub central: BTreeMap<String, u64>,
    /// When it last reported (unix seconds), from its signed status.
    pub last_seen: Option<i64>,
    /// The generation of K it holds.
    pub generation: Option<u64>,
    /// The versions it reported installed, by `service/name`.
    pub installed: BTreeMap<String, u64>,
    /// What it reported as refused or failed, and why its status could not be read.
    pub errors: Vec<String>,
    /// Secrets whose installed version differs from the store's.
    pub behind: Vec<String>,
    /// Not seen within the stale limit (or never).
    pub stale: bool,
}

/// `fleet status [--node N]`: every node (or one), sorted by id. A node whose status is not signed
/// by its enrolled key shows that as an error, and its claims are not used.
pub async fn status(central: &Central, node: Option<&str>, stale_after: i64) -> Result<Vec<NodeReport>, AdminError> {
    let nodes = match node {
        Some(node) => vec![layout::node(node)?.to_string()],
        None => central.nodes().await?,
    };
    let now = crate::unix_now();
    let (client, token, layout) = (&central.client, &central.token, &central.layout);
    let mut reports = Vec::new();
    for node in nodes {
        let identity = central.identity(&node).await?.ok_or_else(|| AdminError::NotEnrolled(node.clone()))?;
        let mut report = NodeReport {
            node: node.clone(),
            enrolled: identity.enrolled,
            revoked: identity.revoked,
            central: BTreeMap::new(),
            last_seen: None,
            generation: None,
            installed: BTreeMap::new(),
            errors: Vec::new(),
            behind: Vec::new(),
            stale: true,
        };
        for service in central.list(&layout.secrets(&node)).await? {
            for name in central.list(&layout.service(&node, &service)).await? {
                let path = format!("{}/{name}", layout.service(&node, &service));
                if let Some(map) = client.kv_read(token, &layout.mount, &path).await? {
                    match SecretRecord::from_map(&map) {
                        Ok(record) => drop(report.central.insert(format!("{service}/{name}"), record.version)),
                        Err(e) => report.errors.push(format!("central {path}: {e}")),
                    }
                }
            }
        }
        if let Some(map) = client.kv_read(token, &layout.mount, &layout.status(&node)).await? {
            let signer: Result<SignerKey, _> = identity.public.signing_key.parse();
            match signer
                .map_err(|e| e.to_string())
                .and_then(|s| verify_status(&map, &node, &s).map_err(|e| e.to_string()))
            {
                Ok(status) => {
                    report.last_seen = Some(status.time);
                    report.generation = Some(status.generation);
                    report.installed = status.installed;
                    report.errors.extend(status.errors);
                    report.stale = now - status.time > stale_after;
                }
                Err(e) => report.errors.push(format!("its status does not verify: {e}")),
            }
        }
        report.behind = report
            .central
            .iter()
            .filter(|(name, version)| report.installed.get(*name) != Some(version))
            .map(|(name, _)| name.clone())
            .collect();
        reports.push(report);
    }
    Ok(reports)
}
