//! One sync of a node (SPEC §14), the I/O around the pure [`crate::node::plan`]: log in to the central
//! store and fetch (or, when that fails, read [`crate::cache`]), plan against what is installed, write
//! each change to the local store as a new KV version (source `fleet`), persist what is installed,
//! and write the signed status.
//!
//! - K exists only inside [`crate::node::plan`]; the node keys only for the duration of one call.
//! - A multi-key secret is one KV write: a service never reads half of it.
//! - An item whose local current version already holds the delivered data is not written again, so
//!   a sync interrupted between the local writes and [`INSTALLED_FILE`] converges without new versions.
//! - Services not configured on this node are skipped and reported; nothing is written for them.
//! - On disk: the cache (ciphertexts) and [`INSTALLED_FILE`] (versions and the generation: public).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use edgeseal_bundle::{NodeKeys, SignerKey};
use openbao_client::api::kv::Written;
use openbao_client::{Client, Token};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::layout::{Layout, SecretRef};
use crate::node::{plan, Fetched, Installed, RemoveReason, Session};
use crate::record::StatusRecord;

/// What the node has installed (versions and generation: no value), in the keystore directory.
pub const INSTALLED_FILE: &str = "fleet-installed.json";
/// Largest installed file read.
const MAX_INSTALLED: u64 = 16 * 1024 * 1024;

/// The local store the node installs into, with the admin credential.
#[derive(Debug, Clone)]
pub struct LocalStore {
    /// The device's OpenBao.
    pub client: Client,
    /// The admin credential (memory only).
    pub token: Token,
    /// KV v2 mount of the services' secrets.
    pub mount: String,
    /// Path prefix below the mount (`<prefix>/<service>/<name>`).
    pub prefix: String,
    /// The services configured on this node.
    pub services: BTreeSet<String>,
}

impl LocalStore {
    fn path(&self, secret: &SecretRef) -> String {
        format!("{}/{}/{}", self.prefix, secret.service, secret.name)
    }
}

/// How a sync ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncResult {
    /// Fetched, verified and applied; nothing refused.
    Ok,
    /// Fetched and applied; some records were refused (their installed values are unchanged), or
    /// some items could not be written locally.
    Refused,
    /// The central store was not reachable (or refused the login): applied from the cache.
    Offline,
    /// Nothing applied (see `error`).
    Failed,
}

impl SyncResult {
    /// Its name (the metrics label).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Refused => "refused",
            Self::Offline => "offline",
            Self::Failed => "failed",
        }
    }
}

/// One secret changed by a sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// `service/name`.
    pub secret: String,
    /// The fleet version.
    pub version: u64,
    /// The local KV version that holds it (`None` for a removal).
    pub local_version: Option<u64>,
    /// `install`, `update`, `expired`, `withdrawn`.
    pub action: String,
}

/// A record refused, or an item not applied, and why (never a value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// `service/name`.
    pub secret: String,
    /// Why.
    pub reason: String,
}

/// What one sync did: names and versions only, never a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// When it ended (unix seconds).
    pub time: i64,
    /// How it ended.
    pub result: SyncResult,
    /// Planned from the cache: the central store was not reachable.
    pub offline: bool,
    /// The generation of K used (0: none yet).
    pub generation: u64,
    /// What is installed now, by `service/name`.
    pub versions: BTreeMap<String, u64>,
    /// Installed or removed by this sync.
    pub changes: Vec<Change>,
    /// Verified records not valid yet: `service/name` → not_before (unix seconds).
    pub waiting: BTreeMap<String, i64>,
    /// Installed and unchanged.
    pub unchanged: usize,
    /// Records refused (what is installed for them stays as it was), and items the local store
    /// could not take (retried at the next sync).
    pub refused: Vec<Problem>,
    /// Records for services not configured on this node (not installed).
    pub skipped: Vec<String>,
    /// Why the sync failed, went offline, or could not write its status.
    pub error: Option<String>,
}

impl Report {
    fn failed(time: i64, generation: u64, versions: BTreeMap<String, u64>, error: String) -> Self {
        Self {
            time,
            result: SyncResult::Failed,
            offline: false,
            generation,
            versions,
            changes: Vec::new(),
            waiting: BTreeMap::new(),
            unchanged: 0,
            refused: Vec::new(),
            skipped: Vec::new(),
            error: Some(error),
        }
    }
}

/// The node's side of a fleet: where its files live, whom it trusts, the last report. Syncs are
/// serialized (the periodic one and `fleet sync` never overlap).
#[derive(Debug)]
pub struct Node {
    dir: PathBuf,
    org: SignerKey,
    layout: Layout,
    running: tokio::sync::Mutex<()>,
    last: Mutex<Option<Report>>,
}

/// Called after the first item of a sync is written to the local store (a test's crash point).
pub type Hook<'a> = &'a (dyn Fn() + Send + Sync);

impl Node {
    /// A node keeping its files in `dir` (the keystore directory), trusting records signed by `org`.
    pub fn new(dir: &Path, org: SignerKey, layout: Layout) -> Self {
        Self { dir: dir.to_path_buf(), org, layout, running: tokio::sync::Mutex::new(()), last: Mutex::new(None) }
    }

    /// The last sync's report.
    pub fn last(&self) -> Option<Report> {
        self.last.lock().map(|last| last.clone()).unwrap_or_default()
    }

    /// One sync: `central` is a client presenting the node's TLS identity (or why none could be
    /// made: then the cache is used), `keys` the node's keys, `local` the store to install into.
    pub async fn sync(
        &self,
        central: Result<Client, String>,
        keys: &NodeKeys,
        local: &LocalStore,
        after_first: Hook<'_>,
    ) -> Report {
        let _running = self.running.lock().await;
        let report = self.sync_once(central, keys, local, after_first).await;
        match report.result {
            SyncResult::Failed => tracing::warn!(error = report.error.as_deref().unwrap_or(""), "fleet sync failed"),
            result => tracing::info!(
                result = result.as_str(),
                offline = report.offline,
                generation = report.generation,
                changes = report.changes.len(),
                refused = report.refused.len(),
                skipped = report.skipped.len(),
                "fleet sync done"
            ),
        }
        if let Ok(mut last) = self.last.lock() {
            *last = Some(report.clone());
        }
        report
    }

    async fn sync_once(
        &self,
        central: Result<Client, String>,
        keys: &NodeKeys,
        local: &LocalStore,
        after_first: Hook<'_>,
    ) -> Report {
        let now = crate::unix_now();
        let mut installed = match load_installed(&self.dir) {
            Ok(installed) => installed,
            Err(e) => return Report::failed(now, 0, BTreeMap::new(), e),
        };
        let versions = |i: &Installed| i.versions.iter().map(|(s, v)| (s.to_string(), *v)).collect();
        let node = keys.node_id();
        let online = match central {
            Ok(client) => self.fetch(client, &node, now).await,
            Err(e) => Err(e),
        };
        let (session, fetched, offline_because) = match online {
            Ok((session, fetched)) => (Some(session), fetched, None),
            Err(why) => match crate::cache::load(&self.dir) {
                Ok(Some(cached)) => (None, cached, Some(why)),
                Ok(None) => {
                    return Report::failed(
                        now,
                        installed.generation,
                        versions(&installed),
                        format!("{why}; no fleet cache to fall back on"),
                    )
                }
                Err(e) => {
                    return Report::failed(now, installed.generation, versions(&installed), format!("{why}; {e}"))
                }
            },
        };
        let mut plan = match plan(&fetched, &self.org, keys, &installed, now) {
            Ok(plan) => plan,
            Err(e) => {
                let report = Report::failed(now, installed.generation, versions(&installed), e.to_string());
                if let Some(session) = session {
                    let status = StatusRecord::signed(
                        keys,
                        now,
                        installed.generation,
                        report.versions.clone(),
                        vec![e.to_string()],
                    );
                    if let Err(e) = session.write_status(&status).await {
                        tracing::warn!(error = %e, "writing the fleet status failed");
                    }
                    session.logout().await;
                }
                return report;
            }
        };
        // Verified as a whole (the org-key entry): worth keeping for a boot without the network.
        let mut error = offline_because.clone();
        if session.is_some() {
            if let Err(e) = crate::cache::save(&self.dir, &fetched) {
                error = Some(e.to_string());
            }
        }
        let (deliveries, skipped): (Vec<_>, Vec<_>) =
            std::mem::take(&mut plan.install).into_iter().partition(|d| local.services.contains(&d.secret.service));
        let skipped: Vec<String> = skipped.iter().map(|d| d.secret.to_string()).collect();
        let (changes, failed_writes) = apply(local, &mut plan, deliveries, &installed, after_first).await;
        plan.record(&mut installed);
        if let Err(e) = save_installed(&self.dir, &installed) {
            error = Some(e);
        }
        let refused: Vec<Problem> = plan
            .refused
            .iter()
            .map(|(at, e)| Problem { secret: at.clone(), reason: format!("{} ({e})", e.kind()) })
            .chain(failed_writes)
            .collect();
        if let Some(session) = session {
            let mut errors: Vec<String> = refused.iter().map(|p| format!("{}: {}", p.secret, p.reason)).collect();
            errors.extend(skipped.iter().map(|s| format!("{s}: service not configured on this node (skipped)")));
            let status = StatusRecord::signed(keys, now, installed.generation, versions(&installed), errors);
            if let Err(e) = session.write_status(&status).await {
                error = Some(e.to_string());
            }
            session.logout().await;
        }
        let result = match (&offline_because, refused.is_empty()) {
            (Some(_), _) => SyncResult::Offline,
            (None, false) => SyncResult::Refused,
            (None, true) => SyncResult::Ok,
        };
        Report {
            time: now,
            result,
            offline: offline_because.is_some(),
            generation: installed.generation,
            versions: versions(&installed),
            changes,
            waiting: plan.waiting.iter().map(|(s, at)| (s.to_string(), *at)).collect(),
            unchanged: plan.unchanged.len(),
            refused,
            skipped,
            error,
        }
    }

    async fn fetch(&self, client: Client, node: &str, now: i64) -> Result<(Session, Fetched), String> {
        let session = Session::login(client, self.layout.clone(), node).await.map_err(|e| e.to_string())?;
        match session.fetch(now).await {
            Ok(fetched) => Ok((session, fetched)),
            Err(e) => {
                session.logout().await;
                Err(e.to_string())
            }
        }
    }
}

/// Writes each delivery to the local store and removes what the plan removes, leaving in `plan`
/// only what was done (so that [`crate::node::Plan::record`] records exactly that); the changes,
/// and the items that could not be written or removed (retried at the next sync).
async fn apply(
    local: &LocalStore,
    plan: &mut crate::node::Plan,
    deliveries: Vec<crate::node::Delivery>,
    installed: &Installed,
    after_first: Hook<'_>,
) -> (Vec<Change>, Vec<Problem>) {
    let mut changes = Vec::new();
    let mut failed_writes = Vec::new();
    for delivery in deliveries {
        let previous = installed.versions.get(&delivery.secret).copied();
        match install(local, &delivery.secret, delivery.version, delivery.value.expose(), plan.generation).await {
            Ok(local_version) => {
                let action = if previous.is_some() { "update" } else { "install" };
                tracing::info!(target: "edgeseal::audit", event = "fleet", action, service = %delivery.secret.service,
                    name = %delivery.secret.name, version = delivery.version, local_version);
                changes.push(Change {
                    secret: delivery.secret.to_string(),
                    version: delivery.version,
                    local_version: Some(local_version),
                    action: action.into(),
                });
                if changes.len() == 1 {
                    after_first();
                }
                plan.install.push(delivery);
            }
            Err(e) => failed_writes.push(Problem { secret: delivery.secret.to_string(), reason: e }),
        }
    }
    let mut removed = Vec::new();
    for (secret, reason) in std::mem::take(&mut plan.remove) {
        if !local.services.contains(&secret.service) {
            removed.push((secret, reason));
            continue;
        }
        match local.client.kv_destroy_all(&local.token, &local.mount, &local.path(&secret)).await {
            Ok(()) => {
                let action = match reason {
                    RemoveReason::Expired(_) => "expired",
                    RemoveReason::Withdrawn => "withdrawn",
                };
                tracing::info!(target: "edgeseal::audit", event = "fleet", action, service = %secret.service, name = %secret.name);
                changes.push(Change {
                    secret: secret.to_string(),
                    version: installed.versions.get(&secret).copied().unwrap_or_default(),
                    local_version: None,
                    action: action.into(),
                });
                removed.push((secret, reason));
            }
            Err(e) => failed_writes
                .push(Problem { secret: secret.to_string(), reason: format!("removing it from the local store: {e}") }),
        }
    }
    plan.remove = removed;
    (changes, failed_writes)
}

/// Writes one delivered value as a new local version (one KV write, whatever its number of keys),
/// unless the current version already holds it; returns the local version that holds it.
async fn install(
    local: &LocalStore,
    secret: &SecretRef,
    version: u64,
    value: &[u8],
    generation: u64,
) -> Result<u64, String> {
    let data: Map<String, Value> =
        serde_json::from_slice(value).map_err(|_| "the delivered value is not a JSON object".to_string())?;
    let path = local.path(secret);
    let current = local
        .client
        .kv_read_version(&local.token, &local.mount, &path, None)
        .await
        .map_err(|e| format!("reading the local store: {e}"))?;
    if let Some(current) = current.filter(|c| c.data == data) {
        return Ok(current.version);
    }
    match local.client.kv_write(&local.token, &local.mount, &path, &data, None).await {
        Ok(Written::Version(local_version)) => {
            let what = format!("fleet v{version} (org key generation {generation})");
            if let Err(e) =
                local.client.kv_record_source(&local.token, &local.mount, &path, local_version, &what, &[]).await
            {
                tracing::warn!(error = %e, "recording the source of a fleet secret failed");
            }
            Ok(local_version)
        }
        Ok(Written::CasMismatch) => Err("the local store refused the write".into()),
        Err(e) => Err(format!("writing to the local store: {e}")),
    }
}

/// The installed file in `dir`.
pub fn installed_path(dir: &Path) -> PathBuf {
    dir.join(INSTALLED_FILE)
}

/// What is installed, from `dir` (nothing yet when there is no file).
pub fn load_installed(dir: &Path) -> Result<Installed, String> {
    let path = installed_path(dir);
    let err =
        |e: String| format!("reading {}: {e} (remove it: the next sync installs everything again)", path.display());
    match std::fs::metadata(&path) {
        Ok(meta) if meta.len() > MAX_INSTALLED => Err(err(format!("larger than {MAX_INSTALLED} bytes"))),
        Ok(_) => {
            let bytes = std::fs::read(&path).map_err(|e| err(e.to_string()))?;
            serde_json::from_slice(&bytes).map_err(|e| err(e.to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Installed::default()),
        Err(e) => Err(err(e.to_string())),
    }
}

fn save_installed(dir: &Path, installed: &Installed) -> Result<(), String> {
    let path = installed_path(dir);
    let bytes = serde_json::to_vec(installed).map_err(|e| e.to_string())?;
    durable_file::write(&path, &bytes, &durable_file::Options::private())
        .map(|_| ())
        .map_err(|e| format!("writing {}: {e}", path.display()))
}
