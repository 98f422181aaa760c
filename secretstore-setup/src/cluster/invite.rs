//! The payload of a join bundle (kind [`super::JOIN_KIND`]): everything a new member needs to open
//! the cluster's store and log in to it, for one node id, until it expires. It travels only inside a
//! signed age bundle encrypted to the new gateway's recipient.
//!
//! ```json
//! {"cluster_id": "…", "node_id": "gw2", "expires": 1767225600,
//!  "members": [{"node_id": "edgeseal-node1", "address": "https://127.0.0.1:18220", "ca_pem": "…"}],
//!  "seal_key": {"id": "edgeseal-…", "key": "<64 hex>"}, "recovery_key": "<base64>",
//!  "identity": {"cert": "<PEM>", "key": "<PEM>"}}
//! ```

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};

use super::{valid_node_id, Member};
use crate::seal::material::{IdentityPem, SealKey, ITEM_CLIENT_IDENTITY, ITEM_SEAL_KEY};
use crate::SecretBytes;

/// A join bundle's payload. `Debug` shows no key.
pub struct Invite {
    /// The cluster's id.
    pub cluster_id: String,
    /// The node id the new member must have (its login is registered under it).
    pub node_id: String,
    /// Unix time after which the bundle is refused.
    pub expires: u64,
    /// Members to join through.
    pub members: Vec<Member>,
    /// The cluster's static seal key.
    pub seal_key: SealKey,
    /// The store's recovery key (OpenBao needs it to rewrap its root key on a seal-key rotation).
    pub recovery_key: Option<SecretBytes>,
    /// The new member's TLS client identity, registered in the cluster's `cert` auth method.
    pub identity: IdentityPem,
}

impl std::fmt::Debug for Invite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invite")
            .field("cluster_id", &self.cluster_id)
            .field("node_id", &self.node_id)
            .field("expires", &self.expires)
            .field("members", &self.members.iter().map(|m| &m.node_id).collect::<Vec<_>>())
            .field("seal_key_id", &self.seal_key.id)
            .finish_non_exhaustive()
    }
}

/// Why a join bundle's payload is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InviteError {
    /// A field is missing or malformed.
    #[error("the join bundle is malformed: {0}")]
    Malformed(String),
    /// It expired.
    #[error("the join bundle expired at unix time {expires} (now {now}): ask a member for a new one")]
    Expired {
        /// When it expired.
        expires: u64,
        /// Now.
        now: u64,
    },
}

impl Invite {
    /// The payload as JSON (it holds keys: only ever put it into a bundle).
    pub fn to_payload(&self) -> Value {
        let key = |bytes: &SecretBytes| serde_json::from_slice::<Value>(bytes.expose()).unwrap_or(Value::Null);
        json!({
            "cluster_id": self.cluster_id,
            "node_id": self.node_id,
            "expires": self.expires,
            "members": self.members,
            "seal_key": key(&self.seal_key.to_item()),
            "recovery_key": self.recovery_key.as_ref().map(|k| STANDARD.encode(k.expose())),
            "identity": key(&self.identity.to_item()),
        })
    }

    /// Reads a payload, refusing it after `expires` (`now`: unix seconds).
    pub fn from_payload(payload: &Value, now: u64) -> Result<Self, InviteError> {
        let bad = |what: &str| InviteError::Malformed(what.to_string());
        let text = |key: &str| payload.get(key).and_then(Value::as_str).ok_or_else(|| bad(&format!("no {key}")));
        let cluster_id = text("cluster_id")?.to_string();
        let node_id = text("node_id")?.to_string();
        if cluster_id.is_empty() || !valid_node_id(&node_id) {
            return Err(bad("cluster_id or node_id is not valid"));
        }
        let expires = payload.get("expires").and_then(Value::as_u64).ok_or_else(|| bad("no expires"))?;
        if now > expires {
            return Err(InviteError::Expired { expires, now });
        }
        let members: Vec<Member> = serde_json::from_value(payload.get("members").cloned().unwrap_or(Value::Null))
            .map_err(|e| bad(&format!("members: {e}")))?;
        if members.is_empty() || members.iter().any(|m| super::api_socket_address(&m.address).is_none()) {
            return Err(bad("members must name at least one https://IP:PORT address"));
        }
        let item = |key: &str| {
            payload
                .get(key)
                .filter(|v| v.is_object())
                .map(|v| SecretBytes::new(serde_json::to_vec(v).unwrap_or_default()))
                .ok_or_else(|| bad(&format!("no {key}")))
        };
        let seal_key =
            SealKey::from_item(ITEM_SEAL_KEY, item("seal_key")?.expose()).map_err(|e| bad(&e.reason.to_string()))?;
        let identity = IdentityPem::from_item(ITEM_CLIENT_IDENTITY, item("identity")?.expose())
            .map_err(|e| bad(&format!("identity: {}", e.reason)))?;
        let recovery_key = match payload.get("recovery_key") {
            None | Some(Value::Null) => None,
            Some(Value::String(b64)) => {
                Some(SecretBytes::new(STANDARD.decode(b64).map_err(|_| bad("recovery_key is not base64"))?))
            }
            Some(_) => return Err(bad("recovery_key is not a string")),
        };
        Ok(Self { cluster_id, node_id, expires, members, seal_key, recovery_key, identity })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn invite() -> Invite {
        Invite {
            cluster_id: "c-1".into(),
            node_id: "gw2".into(),
            expires: 2_000,
            members: vec![Member {
                node_id: "edgeseal-node1".into(),
                address: "https://127.0.0.1:18220".into(),
                ca_pem: "ca".into(),
            }],
            seal_key: SealKey::generate().unwrap(),
            recovery_key: Some(SecretBytes::new(vec![7; 32])),
            identity: IdentityPem::generate().unwrap(),
        }
    }

    #[test]
    fn an_invite_round_trips_and_its_debug_shows_no_key() {
        let made = invite();
        let back = Invite::from_payload(&made.to_payload(), 1_000).unwrap();
        assert_eq!(back.seal_key, made.seal_key);
        assert_eq!(back.identity.cert, made.identity.cert);
        assert_eq!(back.recovery_key.unwrap().expose(), &[7; 32]);
        assert_eq!(
            (back.cluster_id, back.node_id, back.members),
            (made.cluster_id.clone(), made.node_id.clone(), made.members.clone())
        );
        let shown = format!("{made:?}");
        assert!(!shown.contains(made.seal_key.hex().expose()) && !shown.contains("PRIVATE"), "{shown}");
    }

    #[test]
    fn a_malformed_or_expired_invite_is_refused_naming_what_is_wrong() {
        let good = invite().to_payload();
        let with = |key: &str, value: Value| {
            let mut payload = good.clone();
            payload[key] = value;
            payload
        };
        // (payload, now, error mentions)
        let cases = [
            (good.clone(), 2_001, "expired"),
            (with("node_id", json!("gw 2")), 0, "node_id"),
            (with("cluster_id", json!("")), 0, "cluster_id"),
            (with("members", json!([])), 0, "members"),
            (with("members", json!([{"node_id": "a", "address": "http://x", "ca_pem": ""}])), 0, "members"),
            (with("seal_key", json!({"id": "k", "key": "00"})), 0, "32 bytes"),
            (with("seal_key", Value::Null), 0, "seal_key"),
            (with("identity", json!({"cert": "x", "key": "y"})), 0, "identity"),
            (with("recovery_key", json!("%%")), 0, "recovery_key"),
            (with("expires", json!("soon")), 0, "expires"),
        ];
        for (payload, now, says) in cases {
            let e = Invite::from_payload(&payload, now).unwrap_err();
            assert!(e.to_string().contains(says), "{says}: {e}");
        }
    }
}
