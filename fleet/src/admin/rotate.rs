//! `fleet org-key rotate`: a new K and generation for the remaining nodes; every secret re-encrypted.
//!
//! Crash safety (the org key file is the only place K exists at rest, so it must never lose a K the
//! store still needs):
//!
//! 1. The next K is added to the file as `pending` beside the current one (atomic replace, 0600).
//! 2. For each enrolled, unrevoked node: each secret record still of the old generation is verified,
//!    decrypted with the old K and re-sealed under the new one (same version, secret id and
//!    window, so nodes do not reinstall it); then the node's org-key entry of the new generation.
//! 3. The `org` record names the new generation.
//! 4. The file drops the old K: the pending K becomes the current one.
//!
//! Killed anywhere, a re-run converges: with a pending K in the file, `rotate` continues with that
//! same K (step 1 keeps it), skips the records already of the new generation and rewrites the rest;
//! every other command refuses to write until it has finished ([`super::AdminError::RotationPending`]).
//! A node that syncs mid-rotation refuses the records of the generation it does not hold yet and
//! keeps what it has installed; it converges at its next sync after the rotation.

use std::path::Path;

use super::{to_map, AdminError, Central, OrgRecord, ORG_FORMAT};
use crate::layout::SecretRef;
use crate::org::OrgKey;
use crate::record::{open_secret, seal_org_key, seal_secret, verify_secret, Expect, SecretMeta, SecretRecord};

/// What a rotation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rotated {
    /// The new generation.
    pub generation: u64,
    /// Nodes given the new K.
    pub nodes: usize,
    /// Secret records re-encrypted now (records already rewritten by an interrupted run not counted).
    pub secrets: usize,
}

/// Rotates (or finishes rotating) the org key in `path`. See the module documentation.
pub async fn org_key_rotate(central: &Central, org: &mut OrgKey, path: &Path) -> Result<Rotated, AdminError> {
    let stored = central.org_record().await?.ok_or_else(|| AdminError::NoFleet(central.layout.mount.clone()))?;
    if stored.org != org.public().to_string() {
        return Err(AdminError::OrgMismatch { stored: stored.org, file: org.public().to_string() });
    }
    let old = org.current().number;
    let new = org.begin_rotation()?;
    org.save(path)?;
    let org_pub = org.public();
    let (client, token, layout) = (&central.client, &central.token, &central.layout);
    let mut done = Rotated { generation: new, ..Rotated::default() };
    let mut failures = Vec::new();
    for (node, identity) in central.active_nodes().await? {
        let expect = Expect { org: &org_pub, node: &node };
        for service in central.list(&layout.secrets(&node)).await? {
            for name in central.list(&layout.service(&node, &service)).await? {
                let Ok(secret) = SecretRef::new(&service, &name) else { continue };
                let path = layout.secret(&node, &secret);
                let Some(map) = client.kv_read(token, &layout.mount, &path).await? else { continue };
                if SecretRecord::from_map(&map).is_ok_and(|r| r.generation == new) {
                    continue;
                }
                let reencrypted = verify_secret(&map, &secret, expect, old, None).and_then(|record| {
                    let (old_key, new_key) = match (org.key_for(old), org.key_for(new)) {
                        (Some(o), Some(n)) => (o, n),
                        _ => return Err(crate::record::VerifyError::Decrypt),
                    };
                    let value = open_secret(&record, old_key)?;
                    let meta = SecretMeta {
                        node: node.clone(),
                        secret: secret.clone(),
                        secret_id: record.secret_id.clone(),
                        version: record.version,
                        not_before: record.not_before,
                        expires: record.expires,
                    };
                    seal_secret(org, new, new_key, &meta, &value).map_err(|_| crate::record::VerifyError::Decrypt)
                });
                match reencrypted {
                    Ok(record) => {
                        client.kv_write(token, &layout.mount, &path, &record.to_map(), None).await?;
                        done.secrets += 1;
                    }
                    Err(error) => failures.push(format!("{path}: {error}")),
                }
            }
        }
        let recipient = identity.public.recipient.parse().map_err(|e: edgeseal_bundle::KeyError| {
            AdminError::Identity(format!("node {node}'s stored recipient: {e}"))
        })?;
        let Some(key) = org.key_for(new) else { return Err(AdminError::RotationPending(new)) };
        let entry = seal_org_key(org, new, key, &node, &recipient)?;
        client.kv_write(token, &layout.mount, &layout.org_key(&node), &entry.to_map(), None).await?;
        done.nodes += 1;
    }
    if !failures.is_empty() {
        return Err(AdminError::Unfinished(format!(
            "the rotation to generation {new} is unfinished: {} record(s) could not be re-encrypted (the org key file keeps both keys; fix or `fleet secret rm` them, then run `fleet org-key rotate` again): {}",
            failures.len(),
            failures.join("; ")
        )));
    }
    let record = OrgRecord { format: ORG_FORMAT.into(), org: org_pub.to_string(), generation: new };
    client.kv_write(token, &layout.mount, layout.org(), &to_map(&record), None).await?;
    org.finish_rotation();
    org.save(path)?;
    tracing::info!(generation = new, nodes = done.nodes, secrets = done.secrets, "org key rotated");
    Ok(done)
}
