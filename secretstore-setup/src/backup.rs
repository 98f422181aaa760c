//! What a backup carries (SPEC §13): the store's raft snapshot, what opens it (the static seal key(s)
//! and edgeseal's client identity, or the Shamir unseal shares), and the other keystore items that
//! are not bound to this hardware (the recovery key, CA keys, the bootstrap AppRole) — plus the
//! config digest and versions. Never the IKM, the KEK, the node identity (it belongs to the device) or
//! a token (a restore revokes them all). The payload goes into a signed age bundle of kind `backup`.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::identity::{ITEM_NODE_KEYS, ITEM_NODE_TLS};
use crate::setup::ITEM_ISSUER;
use crate::{Keystore, SecretBytes, UnsealShare};

/// The payload's own format name.
pub const PAYLOAD_FORMAT: &str = "edgeseal-backup-v1";

/// Whether a keystore item travels in a backup: everything but the node identity (this device's
/// own), the token-issuing token (a restore revokes every token and setup makes a new one) and the
/// keys of a store a restore replaced (`replaced-*`).
pub fn travels(item: &str) -> bool {
    ![ITEM_NODE_KEYS, ITEM_NODE_TLS, ITEM_ISSUER].contains(&item)
        && !item.starts_with(crate::seal::restore::REPLACED_PREFIX)
}

/// Whether `restore` puts a travelling item into the restoring device's keystore: everything but the
/// CA keys (`pki-*`). Those stay in the backup; the restoring device keeps the PKI it already issued
/// its certificates from (putting another CA's key beside them would not match its `pki.dir`).
pub fn restored(item: &str) -> bool {
    travels(item) && !item.starts_with("pki-")
}

/// The config digest a backup records: SHA-256, hex.
pub fn digest(config: &[u8]) -> String {
    hex::encode(Sha256::digest(config))
}

/// A backup, opened. `Debug` shows no secret.
pub struct Backup {
    /// The raft snapshot (sealed by the store's own keys).
    pub snapshot: Vec<u8>,
    /// The keystore items that travel ([`travels`]).
    pub items: BTreeMap<String, SecretBytes>,
    /// A Shamir store's unseal shares and threshold.
    pub shares: Option<(Vec<UnsealShare>, u64)>,
    /// SHA-256 of the edgeseal.yaml the device ran with (hex), to tell an operator whether the
    /// configuration on the new device matches.
    pub config_sha256: String,
    /// Versions of what made it (`edgeseal`, and whatever else the maker records).
    pub versions: Map<String, Value>,
}

impl std::fmt::Debug for Backup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backup")
            .field("snapshot_bytes", &self.snapshot.len())
            .field("items", &self.items.keys().collect::<Vec<_>>())
            .field("shares", &self.shares.as_ref().map(|(s, t)| (s.len(), *t)))
            .field("config_sha256", &self.config_sha256)
            .field("versions", &self.versions)
            .finish()
    }
}

impl Backup {
    /// A backup of the store whose keystore is `keystore`, with its raft `snapshot`.
    pub fn new(keystore: &Keystore, snapshot: Vec<u8>, config: &[u8]) -> Self {
        let items = keystore
            .item_names()
            .filter(|name| travels(name))
            .filter_map(|name| keystore.item(name).map(|value| (name.to_string(), value.clone())))
            .collect();
        let shares = keystore.has_shares().then(|| (keystore.shares().to_vec(), keystore.threshold()));
        let mut versions = Map::new();
        versions.insert("edgeseal".into(), Value::String(env!("CARGO_PKG_VERSION").into()));
        Self { snapshot, items, shares, config_sha256: digest(config), versions }
    }

    /// The payload. It holds the seal key in base64: it only ever goes into an encrypted bundle.
    pub fn to_payload(&self) -> Value {
        let items: Map<String, Value> = self
            .items
            .iter()
            .map(|(name, value)| (name.clone(), Value::String(STANDARD.encode(value.expose()))))
            .collect();
        let shares = self.shares.as_ref().map(|(shares, threshold)| {
            json!({
                "threshold": threshold,
                "shares": shares.iter().map(|s| STANDARD.encode(s.expose())).collect::<Vec<_>>(),
            })
        });
        json!({
            "format": PAYLOAD_FORMAT,
            "snapshot": STANDARD.encode(&self.snapshot),
            "snapshot_sha256": hex::encode(Sha256::digest(&self.snapshot)),
            "items": items,
            "shamir": shares,
            "config_sha256": self.config_sha256,
            "versions": self.versions,
        })
    }

    /// Reads a payload [`Backup::to_payload`] wrote; says what is wrong otherwise (never quoting a
    /// value).
    pub fn from_payload(payload: &Value) -> Result<Self, String> {
        let field = |key: &str| payload.get(key).ok_or_else(|| format!("the backup has no {key}"));
        let text = |key: &str| field(key)?.as_str().ok_or_else(|| format!("the backup's {key} is not a string"));
        match payload.get("format").and_then(Value::as_str) {
            Some(PAYLOAD_FORMAT) => {}
            other => {
                return Err(format!("the backup's format is {other:?}, not {PAYLOAD_FORMAT:?} (a newer edgeseal?)"))
            }
        }
        let b64 =
            |what: &str, text: &str| STANDARD.decode(text).map_err(|_| format!("the backup's {what} is not base64"));
        let snapshot = b64("snapshot", text("snapshot")?)?;
        if hex::encode(Sha256::digest(&snapshot)) != text("snapshot_sha256")? {
            return Err("the backup's snapshot does not match its checksum".into());
        }
        let mut items = BTreeMap::new();
        for (name, value) in field("items")?.as_object().ok_or("the backup's items are not an object")? {
            if !crate::keystore::format::valid_purpose(name) || !travels(name) {
                return Err(format!("the backup holds an item {name:?} a backup never holds"));
            }
            let value = value.as_str().ok_or_else(|| format!("the backup's item {name} is not a string"))?;
            items.insert(name.clone(), SecretBytes::new(b64(name, value)?));
        }
        let shares = match payload.get("shamir") {
            None | Some(Value::Null) => None,
            Some(shamir) => {
                let threshold =
                    shamir.get("threshold").and_then(Value::as_u64).ok_or("the backup's threshold is not a number")?;
                let list =
                    shamir.get("shares").and_then(Value::as_array).ok_or("the backup's shares are not a list")?;
                let shares = list
                    .iter()
                    .map(|s| s.as_str().ok_or("a share is not a string".to_string()).and_then(|s| b64("share", s)))
                    .map(|s| s.map(UnsealShare::new))
                    .collect::<Result<Vec<_>, _>>()?;
                if shares.is_empty() || threshold == 0 || threshold > shares.len() as u64 {
                    return Err("the backup's shares and threshold do not fit together".into());
                }
                Some((shares, threshold))
            }
        };
        let versions = payload.get("versions").and_then(Value::as_object).cloned().unwrap_or_default();
        Ok(Self { snapshot, items, shares, config_sha256: text("config_sha256")?.to_string(), versions })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::seal::material::SealMaterial;

    #[test]
    fn a_backup_carries_what_opens_the_store_and_nothing_of_the_device_or_its_tokens() {
        let mut keystore = Keystore::without_shares().unwrap();
        SealMaterial::generate().unwrap().store(&mut keystore).unwrap();
        crate::identity::NodeIdentity::generate().unwrap().store(&mut keystore).unwrap();
        keystore.set_item(ITEM_ISSUER, SecretBytes::new(b"s.token".to_vec())).unwrap();
        keystore.set_item("pki-root-ca-key", SecretBytes::new(b"PEM".to_vec())).unwrap();
        let backup = Backup::new(&keystore, b"snapshot".to_vec(), b"config");
        let names: Vec<&str> = backup.items.keys().map(String::as_str).collect();
        assert_eq!(names, ["client-identity", "pki-root-ca-key", "seal-key"]);
        let back = Backup::from_payload(&backup.to_payload()).unwrap();
        assert_eq!(back.snapshot, b"snapshot");
        assert_eq!(back.items.keys().collect::<Vec<_>>(), backup.items.keys().collect::<Vec<_>>());
        assert!(back.items.iter().all(|(k, v)| backup.items[k] == *v));
        assert!(!format!("{back:?}").contains("PEM"));
    }

    #[test]
    fn a_damaged_payload_is_named_and_never_quoted() {
        let mut keystore = Keystore::without_shares().unwrap();
        SealMaterial::generate().unwrap().store(&mut keystore).unwrap();
        let good = Backup::new(&keystore, b"snapshot".to_vec(), b"config").to_payload();
        let edit = |f: &dyn Fn(&mut Value)| {
            let mut p = good.clone();
            f(&mut p);
            p
        };
        // (payload, error mentions)
        let cases = [
            (edit(&|p| p["format"] = json!("edgeseal-backup-v9")), "format"),
            (edit(&|p| p["snapshot"] = json!("c25hcHNob3U=")), "checksum"),
            (edit(&|p| p["items"]["node-keys"] = json!("AAAA")), "never holds"),
            (edit(&|p| p["items"]["seal-key"] = json!("%%%")), "not base64"),
            (edit(&|p| p["shamir"] = json!({"threshold": 3, "shares": ["AAAA"]})), "do not fit"),
            (edit(&|p| p.as_object_mut().unwrap().remove("items").map(drop).unwrap_or(())), "no items"),
        ];
        for (payload, says) in cases {
            let e = Backup::from_payload(&payload).unwrap_err();
            assert!(e.contains(says), "{says}: {e}");
        }
    }
}
