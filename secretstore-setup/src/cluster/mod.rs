//! Clusters (SPEC §15): several gateways' supervised OpenBao members form one raft cluster. Each
//! member opens itself with the cluster's static seal key, held under *its own* KEK; a new member
//! gets that key (and a login of its own) from a signed join bundle made by a member.
//!
//! - [`ClusterConfig`]: `secret_store.cluster:` — this member's raft node id and other members'
//!   API addresses.
//! - [`Membership`]: `cluster.json` beside the keystore (public values only): the cluster id and the
//!   members a joined gateway knows, with the CA certificates their API certificates chain to. Its
//!   presence says the keystore belongs to a cluster it joined: such a keystore never creates a store.
//! - [`invite`]: the join bundle's payload, made on a member (`cluster invite`), opened on the new
//!   gateway (`cluster join`).
//!
//! Rules the boot follows ([`crate::seal::storage::plan`]): only the first member ever carries the
//! `initialize` block (a joiner with it would bootstrap a second cluster: openbao/openbao#3652); a
//! joining member starts on empty storage with `retry_join` stanzas and opens itself once the join
//! has replicated the barrier keys; a standby is an open store (it forwards writes and, with
//! `disable_standby_reads`, reads to the active member).

pub mod invite;
pub mod ops;

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Raft node id of a member whose config names none (and of every store made before clusters).
pub const DEFAULT_NODE_ID: &str = crate::server_config::NODE_ID;
/// Bundle kind of a join bundle.
pub const JOIN_KIND: &str = "cluster-join";

/// `secret_store.cluster:` — this gateway's OpenBao is a member of a raft cluster.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// This member's raft node id (`[A-Za-z0-9_-]{1,64}`), unique in the cluster and never changed
    /// once the member has joined. The first member keeps the id its store was made with
    /// (`edgeseal-node1`, the default).
    #[serde(default = "default_node_id")]
    pub node_id: String,
    /// Other members' API addresses (`https://IP:PORT`) this member joins through when its storage
    /// is empty. Those a join bundle named are known already; their CA comes from the bundle, the
    /// others' from this device's own CA (`secret_store.ca_cert`).
    #[serde(default)]
    pub join: Vec<String>,
}

fn default_node_id() -> String {
    DEFAULT_NODE_ID.into()
}

impl ClusterConfig {
    /// Whether this gateway joins a cluster rather than creating one: it names members to join, or
    /// a node id other than the first member's.
    pub fn joins(&self) -> bool {
        !self.join.is_empty() || self.node_id != DEFAULT_NODE_ID
    }

    /// The rules beyond the types.
    pub fn validate(&self) -> Result<(), String> {
        if !valid_node_id(&self.node_id) {
            return Err(format!("node_id {:?} is not 1 to 64 of [A-Za-z0-9_-]", self.node_id));
        }
        for address in &self.join {
            if api_socket_address(address).is_none() {
                return Err(format!("join address {address:?} is not https://IP:PORT"));
            }
        }
        Ok(())
    }
}

/// `https://IP:PORT` as a socket address.
pub fn api_socket_address(address: &str) -> Option<std::net::SocketAddr> {
    address.trim_end_matches('/').strip_prefix("https://")?.parse().ok()
}

/// Node ids go into OpenBao's HCL and into a `cert` entry's name: letters, digits, `-` and `_`.
pub fn valid_node_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Name of the `cert` auth entry a joined member logs in with (the first member keeps
/// [`crate::seal::CERT_NAME`]).
pub fn login_name(node_id: &str) -> String {
    format!("edgeseal-member-{node_id}")
}

/// A member as a join bundle and `cluster.json` name it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// Its raft node id.
    pub node_id: String,
    /// Its API address, `https://IP:PORT`.
    pub address: String,
    /// The CA certificate (PEM) its API certificate chains to.
    pub ca_pem: String,
}

/// `cluster.json` beside the keystore: what this gateway knows of the cluster it joined.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Membership {
    /// The cluster's id (`sys/health.cluster_id`): a member that finds another id after a join
    /// made or joined another cluster, and stops.
    pub cluster_id: String,
    /// This member's raft node id, as the invite fixed it.
    pub node_id: String,
    /// The members it joins through.
    pub members: Vec<Member>,
}

/// File name of [`Membership`] in the keystore directory.
pub const MEMBERSHIP_FILE: &str = "cluster.json";

impl Membership {
    /// Its path for the keystore in `keystore_dir`.
    pub fn path(keystore_dir: &Path) -> PathBuf {
        keystore_dir.join(MEMBERSHIP_FILE)
    }

    /// The membership recorded beside the keystore in `keystore_dir`, if any.
    pub fn read(keystore_dir: &Path) -> io::Result<Option<Self>> {
        let path = Self::path(keystore_dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is not a cluster membership: {e}", path.display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes it durably (0600: public values, but nobody else's business).
    pub fn write(&self, keystore_dir: &Path) -> Result<(), durable_file::Error> {
        let text = serde_json::to_vec_pretty(self).unwrap_or_default();
        durable_file::write(&Self::path(keystore_dir), &text, &durable_file::Options::private()).map(drop)
    }

    /// The login name this member uses.
    pub fn login_name(&self) -> String {
        login_name(&self.node_id)
    }
}

/// `join-pending` beside the keystore: `cluster join` stored a join bundle's keys; the next boot
/// starts OpenBao on empty storage with `retry_join` and removes the marker once the member is open
/// and in the cluster the bundle named.
pub fn join_pending_marker(keystore_dir: &Path) -> PathBuf {
    keystore_dir.join("join-pending")
}

/// One `retry_join` stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryJoin {
    /// The member's API address.
    pub address: String,
    /// The CA (PEM) its API certificate chains to.
    pub ca_pem: String,
}

/// The `retry_join` stanzas of a member: every member the membership knows (its own CA each), then
/// the config's other addresses with this device's CA. Never this member itself.
pub fn retry_joins(config: &ClusterConfig, membership: Option<&Membership>, own_ca_pem: &str) -> Vec<RetryJoin> {
    let mut joins: Vec<RetryJoin> = membership
        .map(|m| {
            m.members
                .iter()
                .filter(|member| member.node_id != config.node_id)
                .map(|member| RetryJoin { address: member.address.clone(), ca_pem: member.ca_pem.clone() })
                .collect()
        })
        .unwrap_or_default();
    for address in &config.join {
        if !joins.iter().any(|j| same_address(&j.address, address)) {
            joins.push(RetryJoin { address: address.clone(), ca_pem: own_ca_pem.to_string() });
        }
    }
    joins
}

fn same_address(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    #[test]
    fn a_cluster_section_needs_a_plain_node_id_and_https_ip_addresses() {
        // (node_id, join, error mentions)
        let cases: [(&str, &[&str], Option<&str>); 6] = [
            ("gw2", &["https://127.0.0.1:18220"], None),
            ("edgeseal-node1", &[], None),
            ("", &[], Some("node_id")),
            ("gw 2", &[], Some("node_id")),
            ("gw2", &["http://127.0.0.1:18220"], Some("join address")),
            ("gw2", &["https://gateway-1:18220"], Some("join address")),
        ];
        for (node_id, join, says) in cases {
            let config = ClusterConfig { node_id: node_id.into(), join: join.iter().map(|s| s.to_string()).collect() };
            match (config.validate(), says) {
                (Ok(()), None) => {}
                (Err(e), Some(says)) => assert!(e.contains(says), "{node_id} {join:?}: {e}"),
                (outcome, _) => panic!("{node_id} {join:?}: {outcome:?}"),
            }
        }
    }

    #[test]
    fn retry_join_names_every_other_member_once_with_its_own_ca() {
        let member = |id: &str, port: u16| Member {
            node_id: id.into(),
            address: format!("https://127.0.0.1:{port}"),
            ca_pem: format!("{id}-ca"),
        };
        let membership = Membership {
            cluster_id: "c".into(),
            node_id: "gw3".into(),
            members: vec![member("gw1", 18220), member("gw3", 18224)],
        };
        let config = ClusterConfig {
            node_id: "gw3".into(),
            join: vec!["https://127.0.0.1:18220/".into(), "https://127.0.0.1:18222".into()],
        };
        let joins = retry_joins(&config, Some(&membership), "own-ca");
        let got: Vec<(&str, &str)> = joins.iter().map(|j| (j.address.as_str(), j.ca_pem.as_str())).collect();
        assert_eq!(got, [("https://127.0.0.1:18220", "gw1-ca"), ("https://127.0.0.1:18222", "own-ca")]);
        assert!(retry_joins(&ClusterConfig { node_id: "gw1".into(), join: vec![] }, None, "x").is_empty());
    }

    #[test]
    fn the_membership_round_trips_beside_the_keystore() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Membership::read(dir.path()).unwrap(), None);
        let membership = Membership { cluster_id: "c1".into(), node_id: "gw2".into(), members: vec![] };
        membership.write(dir.path()).unwrap();
        assert_eq!(Membership::read(dir.path()).unwrap(), Some(membership));
        std::fs::write(Membership::path(dir.path()), b"{").unwrap();
        assert!(Membership::read(dir.path()).unwrap_err().to_string().contains("cluster.json"));
    }
}
