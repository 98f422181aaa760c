//! The admin's operations against the central store (SPEC §14), with the admin's OpenBao token and
//! the org key file: `security-bootstrap fleet …` calls these.
//!
//! - this file: [`Central`] (client, token, layout), the store's setup and the org check
//!   ([`ensure_central`]), [`org_key_new`], [`enroll`], [`revoke`];
//! - [`secrets`]: [`secret_set`], [`secret_rm`];
//! - [`rotate`]: [`org_key_rotate`] (crash-safe);
//! - [`status`]: [`status`] (per node: last seen, installed versions, errors, stale).
//!
//! Every operation converges when run again after a crash or a failed call: each step is a write
//! of a whole record or a deletion, ordered so that a half-done run leaves nothing a node would
//! accept that it should not.

pub mod rotate;
pub mod secrets;
pub mod status;

use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use edgeseal_bundle::{NodePublic, Recipient, SignerKey};
use openbao_client::{Client, Token};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::Digest as _;

use crate::layout::{self, InvalidName, Layout};
use crate::org::{OrgKey, OrgKeyError};
use crate::record::{seal_org_key, SealError, VerifyError};

pub use rotate::org_key_rotate;
pub use secrets::{secret_rm, secret_set, Targets};
pub use status::{status, NodeReport};

/// `format` of the `org` record.
pub const ORG_FORMAT: &str = "edgeseal-fleet-org-v1";
/// How long a node's login token lives (seconds): one sync needs seconds.
pub const NODE_TOKEN_TTL: u64 = 600;

/// The central store as the admin reaches it.
#[derive(Debug, Clone)]
pub struct Central {
    /// The client (TLS to the central OpenBao).
    pub client: Client,
    /// The admin's token.
    pub token: Token,
    /// Mounts and paths.
    pub layout: Layout,
}

/// Why an admin operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The central store refused or could not be reached.
    #[error(transparent)]
    Bao(#[from] openbao_client::Error),
    /// The org key file.
    #[error(transparent)]
    OrgKey(#[from] OrgKeyError),
    /// A node id, service or name that is not one path segment.
    #[error(transparent)]
    Name(#[from] InvalidName),
    /// Making a record failed.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// The store belongs to another org key.
    #[error("the central store's fleet belongs to org key {stored}, but --org-key holds {file}: wrong org key file, or another mount (--mount)")]
    OrgMismatch {
        /// The org in the store.
        stored: String,
        /// The org of the file.
        file: String,
    },
    /// The store has no fleet yet.
    #[error("the central store has no fleet at mount {0:?}: run `security-bootstrap fleet org-key new` first")]
    NoFleet(String),
    /// The org key file is of another generation than the store (an old copy of the file).
    #[error("the org key file is at key generation {file} but the central store at {stored}: use the current org key file (the one `fleet org-key rotate` last rewrote)")]
    StaleOrgKey {
        /// The file's generation.
        file: u64,
        /// The store's generation.
        stored: u64,
    },
    /// A rotation was interrupted.
    #[error("an org-key rotation to generation {0} is unfinished: run `security-bootstrap fleet org-key rotate` again to finish it first")]
    RotationPending(u64),
    /// The node identity file is not usable.
    #[error("the node identity is not usable: {0} (pass the node's `security-bootstrap node show --json`)")]
    Identity(String),
    /// Not enrolled.
    #[error("node {0} is not enrolled: run `security-bootstrap fleet enroll {0} --identity FILE`")]
    NotEnrolled(String),
    /// Revoked.
    #[error("node {0} was revoked: a revoked node's keys are never trusted again (give the device a new identity and enroll that)")]
    Revoked(String),
    /// Enrolled with other keys.
    #[error("node {0} is already enrolled with other keys: revoke it first if the device was replaced")]
    OtherKeys(String),
    /// `--all` with nobody enrolled.
    #[error("no enrolled node: enroll one with `security-bootstrap fleet enroll`")]
    NoNodes,
    /// A record in the store does not verify.
    #[error("the central record {path} does not verify: {error}")]
    Record {
        /// Its path below the mount.
        path: String,
        /// Why.
        error: VerifyError,
    },
    /// Someone else wrote meanwhile.
    #[error("{0} was changed by someone else meanwhile: run the command again")]
    Concurrent(String),
    /// Part of the work failed; a re-run finishes it.
    #[error("{0}")]
    Unfinished(String),
}

/// The `org` record: public values only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgRecord {
    /// [`ORG_FORMAT`].
    pub format: String,
    /// The org public key.
    pub org: String,
    /// The generation of K the store's records use.
    pub generation: u64,
}

/// A node's `identity` record: public values, when it was enrolled and (once) revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityRecord {
    /// The node's public face, as `node show --json` printed it.
    #[serde(flatten)]
    pub public: NodePublic,
    /// When it was enrolled (unix seconds).
    pub enrolled: i64,
    /// When it was revoked (unix seconds).
    #[serde(default)]
    pub revoked: Option<i64>,
}

fn to_map<T: Serialize>(value: &T) -> Map<String, Value> {
    match serde_json::to_value(value) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

impl Central {
    async fn read<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<Option<T>, AdminError> {
        let Some(map) = self.client.kv_read(&self.token, &self.layout.mount, path).await? else { return Ok(None) };
        serde_json::from_value(Value::Object(map))
            .map(Some)
            .map_err(|e| AdminError::Record { path: path.into(), error: VerifyError::Malformed(e.to_string()) })
    }

    async fn write(&self, path: &str, data: &Map<String, Value>) -> Result<(), AdminError> {
        self.client.kv_write(&self.token, &self.layout.mount, path, data, None).await?;
        Ok(())
    }

    /// The names below `path` (folders without their trailing `/`); a name that is not one valid
    /// path segment (not written by edgeseal) is skipped, so it never becomes part of a path here.
    async fn list(&self, path: &str) -> Result<Vec<String>, AdminError> {
        let names = self.client.kv_list(&self.token, &self.layout.mount, path).await?;
        Ok(names
            .into_iter()
            .map(|n| n.trim_end_matches('/').to_string())
            .filter(|n| layout::valid_segment(n))
            .collect())
    }

    /// The `org` record, if the fleet exists.
    pub async fn org_record(&self) -> Result<Option<OrgRecord>, AdminError> {
        self.read(self.layout.org()).await
    }

    /// A node's identity record.
    pub async fn identity(&self, node: &str) -> Result<Option<IdentityRecord>, AdminError> {
        self.read(&self.layout.identity(layout::node(node)?)).await
    }

    /// Every node ever enrolled (revoked ones included), by id.
    pub async fn nodes(&self) -> Result<Vec<String>, AdminError> {
        let mut nodes = self.list(self.layout.nodes()).await?;
        nodes.sort();
        Ok(nodes)
    }

    /// The identity of an enrolled, unrevoked node.
    async fn active(&self, node: &str) -> Result<IdentityRecord, AdminError> {
        match self.identity(node).await? {
            None => Err(AdminError::NotEnrolled(node.into())),
            Some(identity) if identity.revoked.is_some() => Err(AdminError::Revoked(node.into())),
            Some(identity) => Ok(identity),
        }
    }

    /// Every enrolled, unrevoked node with its identity.
    async fn active_nodes(&self) -> Result<Vec<(String, IdentityRecord)>, AdminError> {
        let mut active = Vec::new();
        for node in self.nodes().await? {
            if let Some(identity) = self.identity(&node).await? {
                if identity.revoked.is_none() {
                    active.push((node, identity));
                }
            }
        }
        Ok(active)
    }
}

/// Checks that the store's fleet belongs to `org`, at its generation, with no rotation unfinished:
/// what every command that writes records with the org key checks first. A store without the fleet
/// yet (`org-key new` stopped after writing the file) is set up for `org` now.
pub async fn check_org(central: &Central, org: &OrgKey) -> Result<OrgRecord, AdminError> {
    let record = match central.org_record().await? {
        Some(record) => record,
        None => ensure_central(central, org).await?,
    };
    if record.org != org.public().to_string() {
        return Err(AdminError::OrgMismatch { stored: record.org, file: org.public().to_string() });
    }
    if let Some(pending) = org.pending() {
        return Err(AdminError::RotationPending(pending.number));
    }
    if record.generation != org.current().number {
        return Err(AdminError::StaleOrgKey { file: org.current().number, stored: record.generation });
    }
    Ok(record)
}

/// Mounts the fleet's KV v2 and `cert` auth mounts if missing, and records the org's public key
/// (`org`), or checks it is this org's. Idempotent: a re-run after a crash converges.
pub async fn ensure_central(central: &Central, org: &OrgKey) -> Result<OrgRecord, AdminError> {
    let (client, token, layout) = (&central.client, &central.token, &central.layout);
    if !client.mounts(token).await?.contains_key(&format!("{}/", layout.mount)) {
        match client.enable_mount(token, &layout.mount, "kv", json!({"version": "2"})).await {
            Err(e) if !already_in_use(&e) => return Err(e.into()),
            _ => {}
        }
    }
    if !client.auth_mounts(token).await?.contains_key(&format!("{}/", layout.cert_mount)) {
        match client.enable_auth(token, &layout.cert_mount, "cert").await {
            Err(e) if !already_in_use(&e) => return Err(e.into()),
            _ => {}
        }
    }
    let mine = OrgRecord { format: ORG_FORMAT.into(), org: org.public().to_string(), generation: org.current().number };
    client.kv_create(token, &layout.mount, layout.org(), &to_map(&mine)).await?;
    let stored = central.org_record().await?.ok_or_else(|| AdminError::NoFleet(layout.mount.clone()))?;
    if stored.org != mine.org {
        return Err(AdminError::OrgMismatch { stored: stored.org, file: mine.org });
    }
    Ok(stored)
}

fn already_in_use(error: &openbao_client::Error) -> bool {
    matches!(error, openbao_client::Error::Api { status: 400, message, .. } if message.contains("already in use"))
}

/// `fleet org-key new`: a new org key written once to `path` (0600, never replacing a file), then the
/// fleet's mounts and its public part in the store. A crash after the file is written is finished by
/// any later command that takes the file ([`ensure_central`]).
pub async fn org_key_new(central: &Central, path: &Path) -> Result<OrgKey, AdminError> {
    let org = OrgKey::generate()?;
    org.create(path)?;
    ensure_central(central, &org).await?;
    Ok(org)
}

/// Checks a node's `node show --json` output: its id is derived from its signing key, its recipient
/// and key parse, its TLS certificate is there and matches its stated SHA-256.
pub fn check_identity(node: &str, public: &NodePublic) -> Result<(Recipient, SignerKey), AdminError> {
    let bad = |what: String| AdminError::Identity(what);
    layout::node(node)?;
    if public.node_id != node {
        return Err(bad(format!("it is node {:?}, not {node:?}", public.node_id)));
    }
    let signer: SignerKey = public.signing_key.parse().map_err(|e: edgeseal_bundle::KeyError| bad(e.to_string()))?;
    if signer.node_id() != node {
        return Err(bad(format!("its signing key is node {}'s, not {node}'s", signer.node_id())));
    }
    let recipient: Recipient = public.recipient.parse().map_err(|e: edgeseal_bundle::KeyError| bad(e.to_string()))?;
    let body: String = public.tls_cert.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = B64.decode(body.trim()).map_err(|_| bad("tls_cert is not a PEM certificate".into()))?;
    if der.is_empty() || !public.tls_cert.contains("-----BEGIN CERTIFICATE-----") {
        return Err(bad("tls_cert is not a PEM certificate".into()));
    }
    if hex::encode(sha2::Sha256::digest(&der)) != public.tls_cert_sha256.to_ascii_lowercase() {
        return Err(bad("tls_cert does not match tls_cert_sha256".into()));
    }
    Ok((recipient, signer))
}

/// `fleet enroll NODE --identity FILE`: records the node's identity, its policy (its own subtree
/// read-only, its own status write-only), its org-key entry, and last its certificate in the
/// `cert` auth mount (logins work only once everything else is there). Enrolling the same node with
/// the same keys again converges; other keys, or a revoked node, are refused.
pub async fn enroll(central: &Central, org: &OrgKey, node: &str, public: &NodePublic) -> Result<(), AdminError> {
    let (recipient, _) = check_identity(node, public)?;
    check_org(central, org).await?;
    let layout = &central.layout;
    let enrolled = match central.identity(node).await? {
        Some(existing) if existing.revoked.is_some() => return Err(AdminError::Revoked(node.into())),
        Some(existing) if existing.public != *public => return Err(AdminError::OtherKeys(node.into())),
        Some(existing) => existing.enrolled,
        None => crate::unix_now(),
    };
    let identity = IdentityRecord { public: public.clone(), enrolled, revoked: None };
    central.write(&layout.identity(node), &to_map(&identity)).await?;
    let policy = layout.policy_name(node);
    central.client.write_policy(&central.token, &policy, &layout.policy(node)).await?;
    let generation = org.current();
    let entry = seal_org_key(org, generation.number, &generation.key, node, &recipient)?;
    central.write(&layout.org_key(node), &entry.to_map()).await?;
    central
        .client
        .write_cert_entry(&central.token, &layout.cert_mount, node, &public.tls_cert, &[&policy], NODE_TOKEN_TTL)
        .await?;
    tracing::info!(node, "enrolled");
    Ok(())
}

/// `fleet revoke NODE`: marks the node revoked (so no later `--all` or rotation includes it), then
/// deletes its certificate entry (no new login), its policy (its current token reads nothing more),
/// its org-key entry and every secret record of its subtree. Each step is idempotent: a re-run after
/// a crash finishes the rest. After the next `fleet org-key rotate`, the K it may have kept decrypts
/// nothing new.
pub async fn revoke(central: &Central, node: &str) -> Result<(), AdminError> {
    let layout = &central.layout;
    let mut identity = central.identity(node).await?.ok_or_else(|| AdminError::NotEnrolled(node.into()))?;
    if identity.revoked.is_none() {
        identity.revoked = Some(crate::unix_now());
        central.write(&layout.identity(node), &to_map(&identity)).await?;
    }
    central.client.delete_cert_entry(&central.token, &layout.cert_mount, node).await?;
    central.client.delete_policy(&central.token, &layout.policy_name(node)).await?;
    let (client, token, mount) = (&central.client, &central.token, &layout.mount);
    client.kv_destroy_all(token, mount, &layout.org_key(node)).await?;
    for service in central.list(&layout.secrets(node)).await? {
        for name in central.list(&layout.service(node, &service)).await? {
            client.kv_destroy_all(token, mount, &format!("{}/{name}", layout.service(node, &service))).await?;
        }
    }
    tracing::info!(node, "revoked");
    Ok(())
}
