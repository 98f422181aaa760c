//! KV version 2: read a secret (a version of it), create one only if it does not exist, write a new
//! version (optionally check-and-set), delete or destroy, list, and read its metadata.
//!
//! Also edgeseal's two conventions for the secrets below a service's folder, shared by every writer
//! (the admin API, EdgeX seeding at setup): what a secret name may be ([`valid_secret_name`]), and who
//! wrote each version, kept in the secret's custom metadata as `v<N>` ([`Client::kv_record_source`]).

use hyper::Method;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::retry::{retry, Attempt, Backoff};
use crate::{Client, Error, Retry, Token};

#[derive(Deserialize)]
struct KvData {
    data: Option<Map<String, Value>>,
    #[serde(default)]
    metadata: Option<VersionMetadata>,
}

/// One version of a secret, as KV v2 describes it.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
pub struct VersionMetadata {
    /// The version number.
    #[serde(default)]
    pub version: u64,
    /// When it was written (RFC 3339).
    #[serde(default)]
    pub created_time: String,
    /// When it was deleted (empty when it is not).
    #[serde(default)]
    pub deletion_time: String,
    /// Destroyed for good.
    #[serde(default)]
    pub destroyed: bool,
}

/// A secret's metadata: its versions, and the custom metadata edgeseal keeps (provenance).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Metadata {
    /// The newest version.
    #[serde(default)]
    pub current_version: u64,
    /// When the newest version was written.
    #[serde(default)]
    pub updated_time: String,
    /// Every version still known, by number.
    #[serde(default)]
    pub versions: std::collections::BTreeMap<String, VersionMetadata>,
    /// Custom metadata (strings).
    #[serde(default)]
    pub custom_metadata: Option<Map<String, Value>>,
}

/// A secret read at one version.
#[derive(Debug, Clone)]
pub struct Versioned {
    /// Its key/value data (values are secrets: callers never log them).
    pub data: Map<String, Value>,
    /// The version read.
    pub version: u64,
}

/// Why a write was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Written as this version.
    Version(u64),
    /// `cas` did not match the current version: nothing was written.
    CasMismatch,
}

#[derive(Deserialize)]
struct KvEnvelope {
    data: KvData,
}

/// Whether [`Client::kv_create`] wrote the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// It was written now.
    Written,
    /// It already existed; nothing was changed.
    Existed,
}

/// Whether OpenBao answered that a KV mount is still upgrading to version 2 (for a moment after it is
/// mounted, and after a restart that interrupted the upgrade): worth asking again shortly.
pub fn is_upgrading(error: &Error) -> bool {
    matches!(error, Error::Api { status: 400, message, .. } if message.contains("Upgrading from non-versioned to versioned data"))
}

/// Versions whose provenance ([`Client::kv_record_source`]) is kept in a secret's custom metadata.
pub const PROVENANCE_KEPT: u64 = 32;

/// A secret name: 1-128 of `[A-Za-z0-9._-]`, not `.` or `..` (it becomes one KV path segment).
pub fn valid_secret_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The custom-metadata key holding who wrote `version`.
pub fn provenance_key(version: u64) -> String {
    format!("v{version}")
}

/// How long a KV call waits out a mount's upgrade.
const UPGRADE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs `call` again while the mount is upgrading (see [`is_upgrading`]), for up to `patience`.
/// Safe for every KV call, writes included: a mount that answers it is upgrading did nothing.
async fn through_upgrade<T, F, Fut>(patience: std::time::Duration, mut call: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    let every = std::time::Duration::from_millis(50);
    retry(Backoff::within(patience, every, every), || {
        let answer = call();
        async move {
            match answer.await {
                Ok(value) => Attempt::Done(value),
                Err(e) if is_upgrading(&e) => Attempt::Retry(e),
                Err(e) => Attempt::Fail(e),
            }
        }
    })
    .await
}

impl Client {
    /// [`through_upgrade`] with [`UPGRADE_PATIENCE`]. Every KV call goes through it: a mount answers
    /// that it is upgrading for a moment after it is mounted (setup's first writes and reads run
    /// right then, concurrently) and after a restart that interrupted the upgrade.
    async fn through_upgrade<T, F, Fut>(&self, call: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        through_upgrade(UPGRADE_PATIENCE, call).await
    }

    /// `GET <mount>/data/<path>`: the latest version's data, or `None`.
    pub async fn kv_read(&self, token: &Token, mount: &str, path: &str) -> Result<Option<Map<String, Value>>, Error> {
        let api = format!("{mount}/data/{path}");
        let envelope: Option<KvEnvelope> = self
            .through_upgrade(|| self.call_opt(Method::GET, &api, Some(token), None::<&()>, Retry::Idempotent))
            .await?;
        Ok(envelope.and_then(|e| e.data.data))
    }

    /// `POST <mount>/data/<path>` with `cas: 0`: creates the secret only if it has never been written.
    pub async fn kv_create(
        &self,
        token: &Token,
        mount: &str,
        path: &str,
        data: &Map<String, Value>,
    ) -> Result<Created, Error> {
        let api = format!("{mount}/data/{path}");
        let body = json!({"data": data, "options": {"cas": 0}});
        let written = self
            .through_upgrade(|| self.call_empty(Method::POST, &api, Some(token), Some(&body), Retry::Idempotent))
            .await;
        match written {
            Ok(()) => Ok(Created::Written),
            Err(Error::Api { status: 400, ref message, .. }) if message.contains("check-and-set") => {
                Ok(Created::Existed)
            }
            Err(e) => Err(e),
        }
    }

    /// `GET <mount>/data/<path>[?version=N]`: that version (the newest without one), or `None` when it
    /// does not exist or is deleted. Waits out a mount's upgrade (see [`is_upgrading`]).
    pub async fn kv_read_version(
        &self,
        token: &Token,
        mount: &str,
        path: &str,
        version: Option<u64>,
    ) -> Result<Option<Versioned>, Error> {
        let api = match version {
            Some(v) => format!("{mount}/data/{path}?version={v}"),
            None => format!("{mount}/data/{path}"),
        };
        let envelope: Option<KvEnvelope> = self
            .through_upgrade(|| self.call_opt(Method::GET, &api, Some(token), None::<&()>, Retry::Idempotent))
            .await?;
        Ok(envelope.and_then(|e| {
            let version = e.data.metadata.map(|m| m.version).unwrap_or_default();
            e.data.data.map(|data| Versioned { data, version })
        }))
    }

    /// `POST <mount>/data/<path>`: a new version; with `cas`, only if the current version is that
    /// number (0: only if the secret was never written). Not retried: a lost answer could hide a
    /// written version, and a blind retry would write another. (A mount that answers it is still
    /// upgrading wrote nothing: that answer is asked again, see [`is_upgrading`].)
    pub async fn kv_write(
        &self,
        token: &Token,
        mount: &str,
        path: &str,
        data: &Map<String, Value>,
        cas: Option<u64>,
    ) -> Result<Written, Error> {
        #[derive(Deserialize)]
        struct Answer {
            data: VersionMetadata,
        }
        let api = format!("{mount}/data/{path}");
        let body = match cas {
            Some(cas) => json!({"data": data, "options": {"cas": cas}}),
            None => json!({"data": data}),
        };
        let answer =
            self.through_upgrade(|| self.call::<Answer>(Method::POST, &api, Some(token), Some(&body), Retry::Once));
        match answer.await {
            Ok(answer) => Ok(Written::Version(answer.data.version)),
            Err(Error::Api { status: 400, ref message, .. }) if message.contains("check-and-set") => {
                Ok(Written::CasMismatch)
            }
            Err(e) => Err(e),
        }
    }

    /// `GET <mount>/metadata/<path>`, or `None` when the secret does not exist.
    pub async fn kv_metadata(&self, token: &Token, mount: &str, path: &str) -> Result<Option<Metadata>, Error> {
        let api = format!("{mount}/metadata/{path}");
        let envelope: Option<crate::api::Data<Metadata>> = self
            .through_upgrade(|| self.call_opt(Method::GET, &api, Some(token), None::<&()>, Retry::Idempotent))
            .await?;
        Ok(envelope.map(|e| e.data))
    }

    /// `POST <mount>/metadata/<path>` with `custom_metadata` (replaces it).
    pub async fn kv_set_custom_metadata(
        &self,
        token: &Token,
        mount: &str,
        path: &str,
        custom: &Map<String, Value>,
    ) -> Result<(), Error> {
        let api = format!("{mount}/metadata/{path}");
        let body = json!({"custom_metadata": custom});
        self.through_upgrade(|| self.call_empty(Method::POST, &api, Some(token), Some(&body), Retry::Idempotent)).await
    }

    /// Records who wrote `version` (e.g. "set by uid 0", "seeded from /etc/x.json") in the secret's
    /// custom metadata under `v<version>`, keeping the entries of the last [`PROVENANCE_KEPT`] versions,
    /// and sets the keys `extra` (other than `v<N>`; keys that are not `v<N>` are kept) in the same
    /// write. Read-modify-write: a concurrent writer's entry can be lost, never a secret value.
    pub async fn kv_record_source(
        &self,
        token: &Token,
        mount: &str,
        path: &str,
        version: u64,
        what: &str,
        extra: &[(&str, &str)],
    ) -> Result<(), Error> {
        let current = self.kv_metadata(token, mount, path).await?;
        let mut custom = current.and_then(|m| m.custom_metadata).unwrap_or_default();
        custom.retain(|key, _| match key.strip_prefix('v').and_then(|n| n.parse::<u64>().ok()) {
            Some(n) => n + PROVENANCE_KEPT > version,
            None => true,
        });
        custom.insert(provenance_key(version), Value::String(what.to_string()));
        for (key, value) in extra {
            custom.insert((*key).to_string(), Value::String((*value).to_string()));
        }
        self.kv_set_custom_metadata(token, mount, path, &custom).await
    }

    /// `LIST <mount>/metadata/<path>/`: the names below a folder (folders end with `/`). Like a read,
    /// it waits out a mount that is still upgrading (after a restart).
    pub async fn kv_list(&self, token: &Token, mount: &str, path: &str) -> Result<Vec<String>, Error> {
        let api = format!("{mount}/metadata/{}/?list=true", path.trim_end_matches('/'));
        let keys: Option<crate::api::Data<crate::api::Keys>> = self
            .through_upgrade(|| self.call_opt(Method::GET, &api, Some(token), None::<&()>, Retry::Idempotent))
            .await?;
        Ok(keys.map(|k| k.data.keys).unwrap_or_default())
    }

    /// `DELETE <mount>/data/<path>`: deletes the newest version (it stays recoverable by number only
    /// through undelete; reads get 404).
    pub async fn kv_delete_latest(&self, token: &Token, mount: &str, path: &str) -> Result<(), Error> {
        let api = format!("{mount}/data/{path}");
        self.through_upgrade(|| self.call_empty(Method::DELETE, &api, Some(token), None::<&()>, Retry::Idempotent))
            .await
    }

    /// `DELETE <mount>/metadata/<path>`: destroys every version and the metadata.
    pub async fn kv_destroy_all(&self, token: &Token, mount: &str, path: &str) -> Result<(), Error> {
        let api = format!("{mount}/metadata/{path}");
        self.through_upgrade(|| self.call_empty(Method::DELETE, &api, Some(token), None::<&()>, Retry::Idempotent))
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::time::Duration;

    use super::*;

    fn api_error(status: u16, message: &str) -> Error {
        Error::Api { method: "GET".into(), path: "secret/metadata/x".into(), status, message: message.into() }
    }

    const UPGRADING: &str =
        "Upgrading from non-versioned to versioned data. This backend will be unavailable for a brief period and will resume service shortly.";

    /// One scripted answer: `None` for success, else an API error's status and message.
    type Answer = Option<(u16, &'static str)>;

    /// `through_upgrade` over scripted answers: what it returned and how many were asked.
    fn over(answers: &[Answer], patience: Duration) -> (Result<(), Error>, usize) {
        let asked = Cell::new(0);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let done = runtime.block_on(through_upgrade(patience, || {
            let n = asked.get();
            asked.set(n + 1);
            let answer = answers.get(n).copied().flatten();
            async move { answer.map_or(Ok(()), |(status, message)| Err(api_error(status, message))) }
        }));
        (done, asked.get())
    }

    #[test]
    fn a_mount_that_is_upgrading_is_asked_again_and_every_other_answer_is_returned() {
        let minute = Duration::from_secs(60);
        // (answers in order, asked, final status: None for success)
        let cases: [(&[Answer], usize, Option<u16>); 5] = [
            (&[None], 1, None),
            (&[Some((400, UPGRADING)), Some((400, UPGRADING)), None], 3, None),
            (&[Some((400, "check-and-set parameter did not match"))], 1, Some(400)),
            (&[Some((400, UPGRADING)), Some((403, "permission denied"))], 2, Some(403)),
            (&[Some((500, UPGRADING))], 1, Some(500)),
        ];
        for (answers, asked, status) in cases {
            let (done, n) = over(answers, minute);
            assert_eq!((n, done.err().and_then(|e| e.status())), (asked, status), "{answers:?}");
        }
        // Still upgrading once patience has passed: that answer is returned.
        let (done, n) = over(&[Some((400, UPGRADING)); 1000], Duration::from_millis(300));
        assert!(done.as_ref().is_err_and(is_upgrading), "{done:?}");
        assert!(n < 1000, "asked {n} times within 300 ms");
    }
}
