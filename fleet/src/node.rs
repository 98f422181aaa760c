//! The node's side of the fleet (SPEC §14), as a library the `run` integration calls:
//!
//! 1. [`Session::login`]: the `cert` auth login with the node's TLS client key;
//! 2. [`Session::fetch`]: the node's org-key entry and secret records, as stored ([`Fetched`]:
//!    ciphertexts only, what [`crate::cache`] keeps for a boot without the network);
//! 3. [`plan`] (pure): verify the org-key entry, open K (in RAM only, wiped when `plan` returns),
//!    verify every record before decrypting it, and say what to install, remove, wait for or refuse;
//! 4. the caller installs the [`Plan`] in the local store, then [`Plan::record`] updates its
//!    [`Installed`] and [`Plan::status`] signs the report [`Session::write_status`] writes.
//!
//! A refused record changes nothing that is installed; it is reported in the status.
//!
//! Cost of one sync to the central store: one login, one read (org-key entry), one list of the
//! node's services and one per service, one read per record, one write (status). SPEC §14's "one
//! read per *changed* item" would need a per-node index of versions to read first; not done here.

use std::collections::BTreeMap;

use edgeseal_bundle::{NodeKeys, SignerKey};
use openbao_client::{Client, Token};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::layout::{Layout, SecretRef};
use crate::record::{
    open_org_key, open_secret, validity, verify_secret, Expect, SecretValue, StatusRecord, Validity, VerifyError,
};

/// `format` of a [`Fetched`] (the cache file).
pub const FETCHED_FORMAT: &str = "edgeseal-fleet-cache-v1";

/// Why a sync failed as a whole (per-record refusals are in [`Plan::refused`]).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The cert login was refused or failed.
    #[error("fleet login as {node} failed (is the node enrolled and not revoked? `security-bootstrap fleet status --node {node}`): {source}")]
    Login {
        /// The node.
        node: String,
        /// OpenBao's answer.
        source: openbao_client::Error,
    },
    /// Reading the node's records failed.
    #[error("reading the fleet's records: {0}")]
    Fetch(openbao_client::Error),
    /// Writing the status failed.
    #[error("writing the fleet status: {0}")]
    Status(openbao_client::Error),
    /// No org-key entry for this node.
    #[error("the central store holds no org key for node {0} (not enrolled, or revoked)")]
    NoOrgKey(String),
    /// The org-key entry was refused.
    #[error("the node's org-key entry was refused: {0}")]
    OrgKey(VerifyError),
    /// The fetched records are another node's.
    #[error("the fetched records are node {got}'s, not {expected}'s")]
    OtherNode {
        /// This node.
        expected: String,
        /// Whose they are.
        got: String,
    },
}

/// What the node has installed from the fleet (kept by the caller, e.g. in the local store's
/// metadata): the highest generation of K seen (an older org-key entry is a replay) and the version
/// of each secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installed {
    /// The highest generation of K seen (0: none yet).
    pub generation: u64,
    /// Installed versions.
    pub versions: BTreeMap<SecretRef, u64>,
}

/// The node's records as fetched: ciphertexts and signatures only, never K or V.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fetched {
    /// [`FETCHED_FORMAT`].
    pub format: String,
    /// The node.
    pub node: String,
    /// When (unix seconds).
    pub fetched: i64,
    /// The org-key entry.
    pub org_key: Option<Map<String, Value>>,
    /// Secret records by `service/name`.
    pub secrets: BTreeMap<String, Map<String, Value>>,
}

/// A secret to install (as a new local version, source `fleet`).
#[derive(Debug)]
pub struct Delivery {
    /// Service and name.
    pub secret: SecretRef,
    /// The fleet version.
    pub version: u64,
    /// The node-independent id of this value.
    pub secret_id: String,
    /// When it expires (unix seconds): the next sync after that removes it.
    pub expires: Option<i64>,
    /// V: the JSON object of its keys and values.
    pub value: SecretValue,
}

/// Why an installed secret is to be removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveReason {
    /// Its record expired (unix seconds).
    Expired(i64),
    /// The admin removed it (`fleet secret rm`), or it is no longer sent to this node.
    Withdrawn,
}

/// What one sync decided.
#[derive(Debug, Default)]
pub struct Plan {
    /// The generation of K used.
    pub generation: u64,
    /// New or changed secrets to install.
    pub install: Vec<Delivery>,
    /// Installed secrets to remove.
    pub remove: Vec<(SecretRef, RemoveReason)>,
    /// Verified records not valid yet (not_before, unix seconds): not installed.
    pub waiting: Vec<(SecretRef, i64)>,
    /// Installed and unchanged.
    pub unchanged: Vec<SecretRef>,
    /// Refused records: what is installed for them stays as it was.
    pub refused: Vec<(String, VerifyError)>,
}

impl Plan {
    /// Updates `installed` once the caller has installed and removed what the plan says.
    pub fn record(&self, installed: &mut Installed) {
        installed.generation = installed.generation.max(self.generation);
        for delivery in &self.install {
            installed.versions.insert(delivery.secret.clone(), delivery.version);
        }
        for (secret, _) in &self.remove {
            installed.versions.remove(secret);
        }
    }

    /// The signed status to write after applying the plan (`installed` as updated by [`Plan::record`]).
    pub fn status(&self, keys: &NodeKeys, installed: &Installed, now: i64) -> StatusRecord {
        let versions = installed.versions.iter().map(|(s, v)| (s.to_string(), *v)).collect();
        let errors = self.refused.iter().map(|(at, e)| format!("{at}: {} ({e})", e.kind())).collect();
        StatusRecord::signed(keys, now, installed.generation, versions, errors)
    }
}

/// Decides what to install and remove from `fetched`, trusting only `org`, for the node `keys`, given
/// what is `installed`, at `now` (unix seconds). K lives only inside this call.
pub fn plan(
    fetched: &Fetched,
    org: &SignerKey,
    keys: &NodeKeys,
    installed: &Installed,
    now: i64,
) -> Result<Plan, SyncError> {
    let node = keys.node_id();
    if fetched.node != node {
        return Err(SyncError::OtherNode { expected: node, got: fetched.node.clone() });
    }
    let expect = Expect { org, node: &node };
    let entry = fetched.org_key.as_ref().ok_or_else(|| SyncError::NoOrgKey(node.clone()))?;
    let (generation, k) = open_org_key(entry, expect, keys, installed.generation).map_err(SyncError::OrgKey)?;
    let mut plan = Plan { generation, ..Plan::default() };
    let mut present = Vec::new();
    for (at, map) in &fetched.secrets {
        let secret = match SecretRef::parse(at) {
            Ok(secret) => secret,
            Err(e) => {
                plan.refused.push((at.clone(), VerifyError::Malformed(e.to_string())));
                continue;
            }
        };
        present.push(secret.clone());
        let current = installed.versions.get(&secret).copied();
        let record = match verify_secret(map, &secret, expect, generation, current) {
            Ok(record) => record,
            Err(e) => {
                plan.refused.push((at.clone(), e));
                continue;
            }
        };
        match validity(record.not_before, record.expires, now) {
            Validity::Expired(at) if current.is_some() => plan.remove.push((secret, RemoveReason::Expired(at))),
            Validity::Expired(_) => {}
            Validity::NotYet(at) => plan.waiting.push((secret, at)),
            Validity::Valid if current == Some(record.version) => plan.unchanged.push(secret),
            Validity::Valid => match open_secret(&record, &k) {
                Ok(value) => plan.install.push(Delivery {
                    secret,
                    version: record.version,
                    secret_id: record.secret_id,
                    expires: record.expires,
                    value,
                }),
                Err(e) => plan.refused.push((at.clone(), e)),
            },
        }
    }
    for secret in installed.versions.keys() {
        if !present.contains(secret) {
            plan.remove.push((secret.clone(), RemoveReason::Withdrawn));
        }
    }
    Ok(plan)
}

/// A node logged in to the central store.
#[derive(Debug)]
pub struct Session {
    client: Client,
    token: Token,
    layout: Layout,
    node: String,
}

impl Session {
    /// Logs in as `node` with the TLS client identity `client` presents (see
    /// [`Client::with_identity`]); the login is refused unless the certificate is the one enrolled for
    /// `node`.
    pub async fn login(client: Client, layout: Layout, node: &str) -> Result<Self, SyncError> {
        let auth = client
            .cert_login(&layout.cert_mount, node)
            .await
            .map_err(|source| SyncError::Login { node: node.into(), source })?;
        Ok(Self { client, token: auth.client_token, layout, node: node.into() })
    }

    /// The session's token (for tests and diagnostics; never log it).
    pub fn token(&self) -> &Token {
        &self.token
    }

    /// One list per service and one read per record: the org-key entry and every secret record.
    pub async fn fetch(&self, now: i64) -> Result<Fetched, SyncError> {
        let (client, token, layout) = (&self.client, &self.token, &self.layout);
        let read = |path: String| async move { client.kv_read(token, &layout.mount, &path).await };
        let list = |path: String| async move {
            let names = client.kv_list(token, &layout.mount, &path).await?;
            // A name that is not one valid path segment never becomes part of a path.
            let names = names.into_iter().map(|n| n.trim_end_matches('/').to_string());
            Ok::<_, openbao_client::Error>(names.filter(|n| crate::layout::valid_segment(n)))
        };
        let org_key = read(layout.org_key(&self.node)).await.map_err(SyncError::Fetch)?;
        let mut secrets = BTreeMap::new();
        for service in list(layout.secrets(&self.node)).await.map_err(SyncError::Fetch)? {
            for name in list(layout.service(&self.node, &service)).await.map_err(SyncError::Fetch)? {
                let path = format!("{}/{name}", layout.service(&self.node, &service));
                if let Some(map) = read(path).await.map_err(SyncError::Fetch)? {
                    secrets.insert(format!("{service}/{name}"), map);
                }
            }
        }
        Ok(Fetched { format: FETCHED_FORMAT.into(), node: self.node.clone(), fetched: now, org_key, secrets })
    }

    /// Reads any path of the fleet mount with this node's token (tests prove the policy with it).
    pub async fn read(&self, path: &str) -> Result<Option<Map<String, Value>>, openbao_client::Error> {
        self.client.kv_read(&self.token, &self.layout.mount, path).await
    }

    /// Writes the node's signed status to `status/<node>`.
    pub async fn write_status(&self, status: &StatusRecord) -> Result<(), SyncError> {
        let path = self.layout.status(&self.node);
        self.client
            .kv_write(&self.token, &self.layout.mount, &path, &status.to_map(), None)
            .await
            .map(|_| ())
            .map_err(SyncError::Status)
    }

    /// Revokes the session's token (best effort: it expires by itself).
    pub async fn logout(self) {
        if let Err(e) = self.client.revoke_self(&self.token).await {
            tracing::debug!(error = %e, "fleet logout failed; the token expires by itself");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::org::OrgKey;
    use crate::record::{seal_org_key, seal_secret, SecretMeta};

    fn value(v: &str) -> SecretValue {
        SecretValue::new(serde_json::to_vec(&serde_json::json!({"value": v})).unwrap())
    }

    fn record(
        org: &OrgKey,
        node: &str,
        secret: &str,
        version: u64,
        window: (Option<i64>, Option<i64>),
    ) -> Map<String, Value> {
        let meta = SecretMeta {
            node: node.into(),
            secret: SecretRef::parse(secret).unwrap(),
            secret_id: "01".into(),
            version,
            not_before: window.0,
            expires: window.1,
        };
        let g = org.current();
        seal_secret(org, g.number, &g.key, &meta, &value(&format!("{secret}-v{version}"))).unwrap().to_map()
    }

    #[test]
    fn a_plan_installs_changes_removes_withdrawn_and_expired_waits_and_refuses() {
        let org = OrgKey::generate().unwrap();
        let keys = NodeKeys::generate().unwrap();
        let node = keys.node_id();
        let now = 1_000;
        let mut secrets = BTreeMap::new();
        // (secret, record version, window, installed version before) → expected outcome
        type Window = (Option<i64>, Option<i64>);
        let cases: [(&str, u64, Window, Option<u64>, &str); 7] = [
            ("a/new", 1, (None, None), None, "install"),
            ("a/changed", 3, (None, Some(2_000)), Some(2), "install"),
            ("a/same", 2, (None, None), Some(2), "unchanged"),
            ("a/expired", 2, (None, Some(now)), Some(1), "remove"),
            ("a/expired-never-installed", 1, (None, Some(10)), None, "nothing"),
            ("a/later", 1, (Some(now + 1), None), None, "waiting"),
            ("a/replayed", 1, (None, None), Some(4), "refused"),
        ];
        let mut installed = Installed { generation: 1, versions: BTreeMap::new() };
        for (secret, version, window, before, _) in cases {
            secrets.insert(secret.to_string(), record(&org, &node, secret, version, window));
            if let Some(v) = before {
                installed.versions.insert(SecretRef::parse(secret).unwrap(), v);
            }
        }
        installed.versions.insert(SecretRef::parse("a/withdrawn").unwrap(), 7);
        let entry = seal_org_key(&org, 1, &org.current().key, &node, &keys.recipient()).unwrap().to_map();
        let fetched =
            Fetched { format: FETCHED_FORMAT.into(), node: node.clone(), fetched: now, org_key: Some(entry), secrets };

        // The cache keeps exactly what was fetched, and a plan from it is the same.
        let dir = tempfile::tempdir().unwrap();
        assert!(crate::cache::load(dir.path()).unwrap().is_none());
        crate::cache::save(dir.path(), &fetched).unwrap();
        let cached = crate::cache::load(dir.path()).unwrap().unwrap();
        assert_eq!(cached, fetched);
        let text = std::fs::read_to_string(crate::cache::path(dir.path())).unwrap();
        assert!(!text.contains("a/new-v1") && !text.contains(&hex::encode(org.current().key.expose())));

        let p = plan(&cached, &org.public(), &keys, &installed, now).unwrap();
        let outcome = |secret: &str| -> &str {
            let s = SecretRef::parse(secret).unwrap();
            if p.install.iter().any(|d| d.secret == s) {
                "install"
            } else if p.unchanged.contains(&s) {
                "unchanged"
            } else if p.remove.iter().any(|(r, _)| *r == s) {
                "remove"
            } else if p.waiting.iter().any(|(w, _)| *w == s) {
                "waiting"
            } else if p.refused.iter().any(|(at, _)| *at == secret) {
                "refused"
            } else {
                "nothing"
            }
        };
        for (secret, _, _, _, want) in cases {
            assert_eq!(outcome(secret), want, "{secret}");
        }
        assert_eq!(outcome("a/withdrawn"), "remove");
        let changed = p.install.iter().find(|d| d.secret.name == "changed").unwrap();
        assert_eq!((changed.version, changed.expires), (3, Some(2_000)));
        assert_eq!(changed.value.expose(), value("a/changed-v3").expose());
        assert!(!format!("{p:?}").contains("a/changed-v3"), "a plan's Debug shows no value");

        p.record(&mut installed);
        let versions: Vec<(String, u64)> = installed.versions.iter().map(|(s, v)| (s.to_string(), *v)).collect();
        let want = [("a/changed", 3), ("a/new", 1), ("a/replayed", 4), ("a/same", 2)];
        assert_eq!(versions, want.map(|(s, v)| (s.to_string(), v)).to_vec());
        let status = p.status(&keys, &installed, now);
        assert_eq!(status.errors.len(), 1);
        assert!(status.errors[0].starts_with("a/replayed: rollback"), "{:?}", status.errors);

        // Another node's fetch, or one without an org key, fails as a whole.
        let other = NodeKeys::generate().unwrap();
        assert!(matches!(plan(&fetched, &org.public(), &other, &installed, now), Err(SyncError::OtherNode { .. })));
        let keyless = Fetched { org_key: None, ..fetched };
        assert!(matches!(plan(&keyless, &org.public(), &keys, &installed, now), Err(SyncError::NoOrgKey(_))));
    }
}
