//! Where the fleet lives in the central store (SPEC §14): one KV v2 mount (default `fleet`) and one
//! `cert` auth mount (default `fleet-cert`).
//!
//! ```text
//! <mount>/org                                       org signing public key, generation
//! <mount>/nodes/<node>/identity                     recipient, signing key, TLS cert, enrolled, revoked
//! <mount>/nodes/<node>/org-key                      K age-encrypted to the node, signed by the org key
//! <mount>/nodes/<node>/secrets/<service>/<name>     AES-256-GCM(V, K), signed by the org key
//! <mount>/status/<node>                             written by the node, signed by the node's key
//! ```
//!
//! Every node id, service and secret name is one path segment, checked with the local store's rule
//! ([`valid_segment`]): 1-128 of `[A-Za-z0-9._-]`, not `.` or `..`; so no `/`, no glob character of an
//! OpenBao policy, and no way out of a node's subtree.

use std::fmt;

/// The default KV v2 mount of the fleet.
pub const DEFAULT_MOUNT: &str = "fleet";
/// The default `cert` auth mount nodes log in with.
pub const DEFAULT_CERT_MOUNT: &str = "fleet-cert";
/// The prefix of each node's policy (`fleet-node-<node>`).
pub const POLICY_PREFIX: &str = "fleet-node-";

/// A name that is not one valid path segment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?} is not valid: 1-128 of [A-Za-z0-9._-], not '.' or '..' (no '/')")]
pub struct InvalidName {
    /// What it names (node id, service, secret name, mount).
    pub what: &'static str,
    /// The refused value.
    pub value: String,
}

/// Whether `s` is one valid path segment: the local store's rule for secret names.
pub fn valid_segment(s: &str) -> bool {
    openbao_client::api::kv::valid_secret_name(s)
}

fn check(what: &'static str, value: &str) -> Result<(), InvalidName> {
    match valid_segment(value) {
        true => Ok(()),
        false => Err(InvalidName { what, value: value.to_string() }),
    }
}

/// A node id, checked.
pub fn node(id: &str) -> Result<&str, InvalidName> {
    check("node id", id).map(|()| id)
}

/// A secret's `SERVICE/NAME`, each part checked.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecretRef {
    /// The service.
    pub service: String,
    /// The secret's name.
    pub name: String,
}

impl SecretRef {
    /// From its two parts, checked.
    pub fn new(service: &str, name: &str) -> Result<Self, InvalidName> {
        check("service", service)?;
        check("secret name", name)?;
        Ok(Self { service: service.to_string(), name: name.to_string() })
    }

    /// Parses `SERVICE/NAME`.
    pub fn parse(s: &str) -> Result<Self, InvalidName> {
        match s.split_once('/') {
            Some((service, name)) => Self::new(service, name),
            None => Err(InvalidName { what: "SERVICE/NAME", value: s.to_string() }),
        }
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.service, self.name)
    }
}

impl serde::Serialize for SecretRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for SecretRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The central paths, relative to the KV mount (what `openbao_client` KV calls take as `path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The KV v2 mount.
    pub mount: String,
    /// The `cert` auth mount.
    pub cert_mount: String,
}

impl Default for Layout {
    fn default() -> Self {
        Self { mount: DEFAULT_MOUNT.into(), cert_mount: DEFAULT_CERT_MOUNT.into() }
    }
}

impl Layout {
    /// A layout on other mounts, checked.
    pub fn new(mount: &str, cert_mount: &str) -> Result<Self, InvalidName> {
        check("KV mount", mount)?;
        check("cert auth mount", cert_mount)?;
        Ok(Self { mount: mount.into(), cert_mount: cert_mount.into() })
    }

    /// `org`.
    pub fn org(&self) -> &'static str {
        "org"
    }

    /// `nodes` (listed to find every enrolled node).
    pub fn nodes(&self) -> &'static str {
        "nodes"
    }

    /// `nodes/<node>/identity`.
    pub fn identity(&self, node: &str) -> String {
        format!("nodes/{node}/identity")
    }

    /// `nodes/<node>/org-key`.
    pub fn org_key(&self, node: &str) -> String {
        format!("nodes/{node}/org-key")
    }

    /// `nodes/<node>/secrets` (listed: the services).
    pub fn secrets(&self, node: &str) -> String {
        format!("nodes/{node}/secrets")
    }

    /// `nodes/<node>/secrets/<service>` (listed: the names).
    pub fn service(&self, node: &str, service: &str) -> String {
        format!("nodes/{node}/secrets/{service}")
    }

    /// `nodes/<node>/secrets/<service>/<name>`.
    pub fn secret(&self, node: &str, secret: &SecretRef) -> String {
        format!("nodes/{node}/secrets/{}/{}", secret.service, secret.name)
    }

    /// `status/<node>`.
    pub fn status(&self, node: &str) -> String {
        format!("status/{node}")
    }

    /// The node's policy name.
    pub fn policy_name(&self, node: &str) -> String {
        format!("{POLICY_PREFIX}{node}")
    }

    /// The node's policy: read (and list) its own subtree, write only its own status; nothing else.
    /// `node` must have been checked with [`node`] (no glob character can reach the policy).
    pub fn policy(&self, node: &str) -> String {
        let m = &self.mount;
        format!(
            "# edgeseal fleet node {node}: its own subtree, read-only; its own status, write-only\n\
             path \"{m}/data/nodes/{node}/*\" {{ capabilities = [\"read\"] }}\n\
             path \"{m}/metadata/nodes/{node}/*\" {{ capabilities = [\"read\", \"list\"] }}\n\
             path \"{m}/data/status/{node}\" {{ capabilities = [\"create\", \"update\"] }}\n"
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn names_that_could_leave_a_subtree_are_refused() {
        // (input, accepted)
        let cases = [
            ("node-0123", true),
            ("a.b_c-D", true),
            ("", false),
            (".", false),
            ("..", false),
            ("a/b", false),
            ("a*", false),
            ("a+", false),
            ("a b", false),
            ("é", false),
        ];
        for (input, ok) in cases {
            assert_eq!(node(input).is_ok(), ok, "{input:?}");
            assert_eq!(SecretRef::new(input, "x").is_ok(), ok, "service {input:?}");
            assert_eq!(SecretRef::new("x", input).is_ok(), ok, "name {input:?}");
        }
        assert_eq!(node(&"a".repeat(129)).unwrap_err().what, "node id");
        for input in ["svc", "svc/", "/name", "svc/a/b", "../x"] {
            assert!(SecretRef::parse(input).is_err(), "{input:?}");
        }
        assert_eq!(SecretRef::parse("db/password").unwrap().to_string(), "db/password");
    }

    #[test]
    fn the_policy_names_only_the_nodes_own_paths() {
        let layout = Layout::default();
        let policy = layout.policy("node-1");
        assert!(policy.contains("\"fleet/data/nodes/node-1/*\""), "{policy}");
        assert!(policy.contains("\"fleet/data/status/node-1\" { capabilities = [\"create\", \"update\"] }"));
        assert_eq!(policy.matches("path ").count(), 3, "{policy}");
        assert!(!policy.contains("delete") && !policy.contains("sudo"), "{policy}");
        assert_eq!(layout.secret("n", &SecretRef::parse("s/x").unwrap()), "nodes/n/secrets/s/x");
    }
}
