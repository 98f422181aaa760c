//! Secrets and backups leaving or entering the device as bundles (SPEC §13), on the admin socket.
//!
//! | request | answer |
//! |---|---|
//! | `GET /v1/node` | [`NodePublic`] |
//! | `POST /v1/export` `{"selectors": ["svc/name", "svc/*"], "to": ["age1…"]}` | `{"bundle", "from", "secrets": [{service, name, version}]}` |
//! | `POST /v1/import` `{"bundle", "from": ["ed25519:…"], "allow_unsigned", "dry_run"}` | `{"sender", "dry_run", "changes": [{service, name, action, version}]}` |
//! | `POST /v1/backup` `{"to": ["age1…"]}` | `{"bundle", "from", "snapshot_bytes"}` |
//!
//! The secrets payload ([`SecretSet`]) is one JSON object: `"service/name"` → a string (the secret's
//! `value`) or an object of string keys and values (EdgeX's multi-key shape). `secrets seal` reads
//! the same shape, and so does a bundle made with the plain `age` CLI.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use edgeseal_bundle::{kind, Recipient, SignerKey, Trust};
use http_body_util::Full;
use hyper::{Response, StatusCode};
use openbao_client::api::kv::Written;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::device::Device;
use super::routes::{check_data, error, json, path, record_provenance, store_error, unknown, valid_name, Admin};
use super::AdminState;

/// Largest bundle file `secrets import` sends.
pub const MAX_IMPORT: usize = 64 * 1024 * 1024;
/// Largest import request: that file armored (+35 %) and JSON-escaped.
pub const MAX_IMPORT_REQUEST: usize = 2 * MAX_IMPORT;
/// How long reading the raft snapshot of a backup may take.
const SNAPSHOT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// One secret of a set: where it goes and its data.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    /// The service.
    pub service: String,
    /// The secret's name.
    pub name: String,
    /// Its data (string keys and values).
    pub data: Map<String, Value>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Entry({}/{}, [REDACTED; {} keys])", self.service, self.name, self.data.len())
    }
}

/// A set of secrets, ordered by service and name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretSet(pub Vec<Entry>);

impl SecretSet {
    /// Reads the payload shape; the error names the entry, never a value.
    pub fn parse(payload: &Value) -> Result<Self, String> {
        let object = payload.as_object().ok_or("a secrets bundle is one JSON object of \"service/name\": value")?;
        if object.is_empty() {
            return Err("the bundle holds no secret".into());
        }
        let mut entries = BTreeMap::new();
        for (key, value) in object {
            let (service, name) = key
                .split_once('/')
                .filter(|(s, n)| valid_name(s) && valid_name(n))
                .ok_or_else(|| format!("{key:?} is not SERVICE/NAME (each 1-128 of [A-Za-z0-9._-])"))?;
            let data = match value {
                Value::String(s) => Map::from_iter([("value".to_string(), Value::String(s.clone()))]),
                Value::Object(map) => map.clone(),
                _ => return Err(format!("{key}: the value is neither a string nor an object of strings")),
            };
            check_data(&data).map_err(|e| format!("{key}: {e}"))?;
            entries.insert((service.to_string(), name.to_string()), data);
        }
        Ok(Self(entries.into_iter().map(|((service, name), data)| Entry { service, name, data }).collect()))
    }

    /// The payload shape (a lone `value` key becomes a plain string).
    pub fn to_payload(&self) -> Value {
        let object: Map<String, Value> = self
            .0
            .iter()
            .map(|e| {
                let value = match (e.data.len(), e.data.get("value")) {
                    (1, Some(Value::String(s))) => Value::String(s.clone()),
                    _ => Value::Object(e.data.clone()),
                };
                (format!("{}/{}", e.service, e.name), value)
            })
            .collect();
        Value::Object(object)
    }
}

/// An export selector: `svc/name` or `svc/*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    /// The service.
    pub service: String,
    /// One secret, or all of the service's (`*`).
    pub name: Option<String>,
}

impl std::str::FromStr for Selector {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('/') {
            Some((service, "*")) if valid_name(service) => Ok(Self { service: service.into(), name: None }),
            Some((service, name)) if valid_name(service) && valid_name(name) => {
                Ok(Self { service: service.into(), name: Some(name.into()) })
            }
            _ => Err(format!("{s:?} is not a selector: SERVICE/NAME or SERVICE/*")),
        }
    }
}

/// Recipients from their text; the error names the bad one.
pub fn recipients(to: &[String]) -> Result<Vec<Recipient>, String> {
    if to.is_empty() {
        return Err("name at least one recipient (--to age1…)".into());
    }
    to.iter().map(|r| r.parse::<Recipient>().map_err(|e| e.to_string())).collect()
}

/// What importing one entry would do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// No readable current version (none yet, or the newest was deleted with `secrets rm`): a new
    /// version over `current` (0: none at all).
    Create {
        /// The metadata's current version (the write's check-and-set).
        current: u64,
    },
    /// A new version over `current`.
    Update {
        /// The version it replaces (the write's check-and-set).
        current: u64,
    },
    /// The current version holds exactly this data: nothing is written.
    Unchanged {
        /// That version.
        current: u64,
    },
}

impl Action {
    /// Decides from the secret's readable current version and data, and the metadata's current
    /// version (pure).
    pub fn decide(
        readable: Option<(u64, &Map<String, Value>)>,
        metadata_version: u64,
        wanted: &Map<String, Value>,
    ) -> Self {
        match readable {
            None => Self::Create { current: metadata_version },
            Some((version, data)) if data == wanted => Self::Unchanged { current: version },
            Some((version, _)) => Self::Update { current: version },
        }
    }

    /// The check-and-set version of the write, if there is one.
    fn cas(self) -> Option<u64> {
        match self {
            Self::Create { current } | Self::Update { current } => Some(current),
            Self::Unchanged { .. } => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Create { .. } => "create",
            Self::Update { .. } => "update",
            Self::Unchanged { .. } => "unchanged",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportBody {
    selectors: Vec<String>,
    to: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportBody {
    bundle: String,
    #[serde(default)]
    from: Vec<String>,
    #[serde(default)]
    any_signer: bool,
    #[serde(default)]
    allow_unsigned: bool,
    #[serde(default)]
    dry_run: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupBody {
    to: Vec<String>,
}

// The error is the HTTP answer itself, returned to the caller at once: boxing it buys nothing.
#[allow(clippy::result_large_err)]
fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Response<Full<Bytes>>> {
    serde_json::from_slice(bytes)
        .map_err(|e| error(StatusCode::BAD_REQUEST, &format!("the request is not valid JSON: {e}")))
}

/// Runs a [`Device`] call off the async workers.
async fn on_device<T: Send + 'static>(
    state: &AdminState,
    call: impl FnOnce(&dyn Device) -> Result<T, String> + Send + 'static,
) -> Result<T, Response<Full<Bytes>>> {
    let Some(device) = state.device.clone() else {
        return Err(error(
            StatusCode::NOT_FOUND,
            "this server has no keystore access (node identity, bundles, backups)",
        ));
    };
    match tokio::task::spawn_blocking(move || call(device.as_ref())).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(message)) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, &message)),
        Err(_) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, "the keystore task failed")),
    }
}

/// `GET /v1/node`.
pub async fn node(state: &AdminState) -> Response<Full<Bytes>> {
    match on_device(state, |device| device.node().map(|(_, public)| public)).await {
        Ok(public) => json(StatusCode::OK, &serde_json::to_value(public).unwrap_or_default()),
        Err(answer) => answer,
    }
}

/// `POST /v1/export`.
pub async fn export(state: &AdminState, admin: Admin, body: &[u8]) -> Response<Full<Bytes>> {
    let body: ExportBody = match parse(body) {
        Ok(body) => body,
        Err(answer) => return answer,
    };
    let to = match recipients(&body.to) {
        Ok(to) => to,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    let selectors: Vec<Selector> = match body.selectors.iter().map(|s| s.parse()).collect() {
        Ok(selectors) => selectors,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    if selectors.is_empty() {
        return error(StatusCode::BAD_REQUEST, "name the secrets to export (SERVICE/NAME or SERVICE/*)");
    }
    let mut set = BTreeMap::new();
    for selector in &selectors {
        if let Some(answer) = unknown(state, &selector.service) {
            return answer;
        }
        let names = match &selector.name {
            Some(name) => vec![name.clone()],
            None => match state
                .client
                .kv_list(&state.token, &state.kv_mount, &format!("{}/{}", state.prefix, selector.service))
                .await
            {
                Ok(names) => names.into_iter().filter(|n| !n.ends_with('/')).collect(),
                Err(e) => return store_error(&e),
            },
        };
        for name in names {
            let kv_path = path(state, &selector.service, &name);
            match state.client.kv_read_version(&state.token, &state.kv_mount, &kv_path, None).await {
                Ok(Some(secret)) => {
                    set.insert((selector.service.clone(), name), (secret.version, secret.data));
                }
                Ok(None) if selector.name.is_some() => {
                    return error(StatusCode::NOT_FOUND, &format!("no secret {}/{name}", selector.service))
                }
                Ok(None) => {}
                Err(e) => return store_error(&e),
            }
        }
    }
    if set.is_empty() {
        return error(StatusCode::NOT_FOUND, "the selectors match no secret: nothing to export");
    }
    let exported: Vec<Value> = set
        .iter()
        .map(|((service, name), (version, _))| json!({"service": service, "name": name, "version": version}))
        .collect();
    let payload =
        SecretSet(set.into_iter().map(|((service, name), (_, data))| Entry { service, name, data }).collect())
            .to_payload();
    let sealed = on_device(state, move |device| {
        let (keys, public) = device.node()?;
        edgeseal_bundle::seal(kind::SECRETS, payload, &to, Some(&keys))
            .map(|bundle| (bundle, public.node_id))
            .map_err(|e| e.to_string())
    })
    .await;
    let (bundle, from) = match sealed {
        Ok(sealed) => sealed,
        Err(answer) => return answer,
    };
    for secret in &exported {
        let (service, name) =
            (secret["service"].as_str().unwrap_or_default(), secret["name"].as_str().unwrap_or_default());
        super::routes::audit(state, admin, "export", service, name, secret["version"].as_u64());
    }
    json(StatusCode::OK, &json!({"bundle": bundle, "from": from, "secrets": exported}))
}

/// `POST /v1/import`: all or nothing as far as the checks go — every entry is checked (names,
/// services, values) and planned against the store before anything is written, and each write is a
/// check-and-set against the version planned, so a concurrent change stops the import.
pub async fn import(state: &AdminState, admin: Admin, body: &[u8]) -> Response<Full<Bytes>> {
    let body: ImportBody = match parse(body) {
        Ok(body) => body,
        Err(answer) => return answer,
    };
    let senders: Vec<SignerKey> = match body.from.iter().map(|k| k.parse::<SignerKey>()).collect() {
        Ok(senders) => senders,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let trust = Trust { senders, any_signer: body.any_signer, allow_unsigned: body.allow_unsigned };
    let bundle = body.bundle.into_bytes();
    let opened = on_device(state, move |device| {
        let (keys, public) = device.node()?;
        let opened = edgeseal_bundle::open(&bundle, &keys.identities(), &public.recipient, &trust, kind::SECRETS);
        Ok(opened.map_err(|e| e.to_string()))
    })
    .await;
    let opened = match opened {
        Ok(Ok(opened)) => opened,
        Ok(Err(refusal)) => {
            return error(StatusCode::UNPROCESSABLE_ENTITY, &format!("{refusal}: nothing was imported"))
        }
        Err(answer) => return answer,
    };
    let set = match SecretSet::parse(&opened.payload) {
        Ok(set) => set,
        Err(message) => return error(StatusCode::UNPROCESSABLE_ENTITY, &format!("{message}: nothing was imported")),
    };
    drop(opened.payload);
    let foreign: Vec<&str> =
        set.0.iter().map(|e| e.service.as_str()).filter(|s| !state.services.contains_key(*s)).collect();
    if !foreign.is_empty() {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!(
                "the bundle holds secrets of services not in edgeseal.yaml ({}): nothing was imported",
                foreign.join(", ")
            ),
        );
    }
    let mut plan = Vec::with_capacity(set.0.len());
    for entry in &set.0 {
        let kv_path = path(state, &entry.service, &entry.name);
        let current = match state.client.kv_read_version(&state.token, &state.kv_mount, &kv_path, None).await {
            Ok(current) => current,
            Err(e) => return store_error(&e),
        };
        let metadata_version = match &current {
            Some(_) => 0,
            None => match state.client.kv_metadata(&state.token, &state.kv_mount, &kv_path).await {
                Ok(metadata) => metadata.map(|m| m.current_version).unwrap_or(0),
                Err(e) => return store_error(&e),
            },
        };
        plan.push(Action::decide(current.as_ref().map(|c| (c.version, &c.data)), metadata_version, &entry.data));
    }
    let sender = opened.sender.as_ref().map(|s| json!({"node": s.node, "key": s.key.to_string()}));
    let source = match &opened.sender {
        Some(s) => format!("imported from {} by uid {}", s.node, admin.uid),
        None => format!("imported from an unsigned bundle by uid {}", admin.uid),
    };
    let mut changes = Vec::with_capacity(plan.len());
    let mut written = 0;
    for (entry, action) in set.0.iter().zip(&plan) {
        let version = match (body.dry_run, action.cas()) {
            (true, _) => None,
            (false, None) => match action {
                Action::Unchanged { current } => Some(*current),
                _ => None,
            },
            (false, Some(cas)) => {
                let kv_path = path(state, &entry.service, &entry.name);
                let stopped = |what: &str| {
                    format!(
                        "{}/{}: {what}; {written} of {} secrets were written before it (run the import again: those are unchanged then)",
                        entry.service,
                        entry.name,
                        plan.len()
                    )
                };
                match state.client.kv_write(&state.token, &state.kv_mount, &kv_path, &entry.data, Some(cas)).await {
                    Ok(Written::Version(version)) => {
                        written += 1;
                        super::routes::audit(state, admin, "import", &entry.service, &entry.name, Some(version));
                        record_provenance(state, &kv_path, version, &source).await;
                        Some(version)
                    }
                    Ok(Written::CasMismatch) => {
                        return error(StatusCode::CONFLICT, &stopped("changed while importing"));
                    }
                    Err(e) => {
                        let status =
                            if e.is_unreachable() { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::BAD_GATEWAY };
                        return error(status, &stopped(&format!("the secret store: {e}")));
                    }
                }
            }
        };
        changes
            .push(json!({"service": entry.service, "name": entry.name, "action": action.name(), "version": version}));
    }
    json(StatusCode::OK, &json!({"sender": sender, "dry_run": body.dry_run, "changes": changes}))
}

/// `POST /v1/backup`: root only (whatever `admin.uids` says): a backup carries the seal key, so
/// whoever chooses its recipient holds the whole store.
pub async fn backup(state: &AdminState, admin: Admin, body: &[u8]) -> Response<Full<Bytes>> {
    if admin.uid != 0 {
        return error(StatusCode::FORBIDDEN, "a backup carries the seal key: only root (uid 0) may make one");
    }
    let body: BackupBody = match parse(body) {
        Ok(body) => body,
        Err(answer) => return answer,
    };
    let to = match recipients(&body.to) {
        Ok(to) => to,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    let recipients_text = body.to.join(",");
    let snapshot = match state.client.with_timeout(SNAPSHOT_TIMEOUT).raft_snapshot(&state.token).await {
        Ok(snapshot) => snapshot.to_vec(),
        Err(e) => return store_error(&e),
    };
    let size = snapshot.len();
    let made = on_device(state, move |device| device.backup(snapshot, &to)).await;
    match made {
        Ok((bundle, from)) => {
            super::routes::audit(state, admin, "backup", "", &format!("to {recipients_text}"), None);
            json(StatusCode::OK, &json!({"bundle": bundle, "from": from, "snapshot_bytes": size}))
        }
        Err(answer) => answer,
    }
}

/// The device handle the admin state keeps.
pub type DeviceHandle = Arc<dyn Device>;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_secret_set_reads_strings_and_multi_key_objects_and_names_a_bad_entry_without_its_value() {
        let set = SecretSet::parse(&json!({"b/x": "one", "a/db": {"username": "u", "password": "p"}})).unwrap();
        assert_eq!(set.0.iter().map(|e| format!("{}/{}", e.service, e.name)).collect::<Vec<_>>(), ["a/db", "b/x"]);
        assert_eq!(set.0[1].data, Map::from_iter([("value".into(), json!("one"))]));
        assert_eq!(SecretSet::parse(&set.to_payload()).unwrap(), set);
        // (payload, error mentions)
        let cases = [
            (json!([]), "one JSON object"),
            (json!({}), "no secret"),
            (json!({"nope": "hunter2"}), "not SERVICE/NAME"),
            (json!({"a/../b": "hunter2"}), "not SERVICE/NAME"),
            (json!({"a/b": 7}), "neither a string"),
            (json!({"a/b": ""}), "non-empty string"),
            (json!({"a/b": {"k": 1}}), "non-empty string"),
        ];
        for (payload, says) in cases {
            let e = SecretSet::parse(&payload).unwrap_err();
            assert!(e.contains(says) && !e.contains("hunter2"), "{payload}: {e}");
        }
    }

    #[test]
    fn selectors_name_one_secret_or_all_of_one_service() {
        let cases = [
            ("svc/name", Ok(Selector { service: "svc".into(), name: Some("name".into()) })),
            ("svc/*", Ok(Selector { service: "svc".into(), name: None })),
            ("*/*", Err(())),
            ("svc", Err(())),
            ("svc/a/b", Err(())),
            ("svc/..", Err(())),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<Selector>().map_err(|_| ()), want, "{text}");
        }
    }

    #[test]
    fn an_import_creates_updates_or_leaves_alone_by_the_current_data() {
        let data = |v: &str| Map::from_iter([("value".to_string(), json!(v))]);
        let (old, new) = (data("old"), data("new"));
        assert_eq!(Action::decide(None, 0, &new), Action::Create { current: 0 });
        // The newest version was deleted (`secrets rm`): written over it, not as version 1.
        assert_eq!(Action::decide(None, 4, &new), Action::Create { current: 4 });
        assert_eq!(Action::decide(Some((3, &old)), 3, &new), Action::Update { current: 3 });
        assert_eq!(Action::decide(Some((3, &new)), 3, &new), Action::Unchanged { current: 3 });
    }
}
