//! OpenBao server configuration that edgeseal writes for an OpenBao it starts itself (tests, the
//! supervised mode): raft storage tuned for a single node, a TLS listener with the device PKI, and a
//! declarative file audit device (OpenBao 2.x refuses to enable audit devices through the API).
//!
//! In supervised mode OpenBao also listens on a Unix socket in a 0700 directory: edgeseal's private
//! path for `sys/init`, `sys/unseal` and root generation. Until the keystore holds the unseal shares
//! (first boot) the TCP listener is *locked*: it requires a TLS client certificate issued by a key
//! only OpenBao holds (its own leaf serves as the client CA), so no local process can race
//! `sys/init` on it. The TCP listener cannot simply be left out: raft needs its cluster address to
//! unseal, and a Unix listener has none (OpenBao 2.7 answers "cluster addresses not found").

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything needed to render an OpenBao `config.hcl`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Raft data directory.
    pub data_dir: PathBuf,
    /// API listener address (loopback unless the device needs otherwise).
    pub listen: SocketAddr,
    /// Raft cluster address.
    pub cluster: SocketAddr,
    /// Server certificate chain (leaf + intermediate).
    pub tls_cert: PathBuf,
    /// Server private key.
    pub tls_key: PathBuf,
    /// File audit device, when set.
    pub audit_log: Option<PathBuf>,
    /// Allow the classic unauthenticated `sys/generate-root/*`, which needs the unseal shares and
    /// nothing else. edgeseal uses it only to recover when its stored credential is gone. With
    /// `api_socket` it is enabled on the Unix listener only, never on TCP.
    pub unauthed_generate_root: bool,
    /// A Unix listener (plain HTTP) at this path, in a directory only edgeseal's user may enter.
    pub api_socket: Option<PathBuf>,
    /// Lock the TCP listener: TLS client certificates issued by the certificate in this file are
    /// required (OpenBao's own leaf: nobody else holds its key), so the TCP API answers nobody.
    pub tcp_client_ca: Option<PathBuf>,
    /// Seal with a static key edgeseal holds (the key itself reaches OpenBao through its environment,
    /// never through this file).
    pub static_seal: Option<StaticSeal>,
    /// Initialize empty storage on first start from this, instead of `sys/init`.
    pub self_init: Option<SelfInit>,
    /// A member of a raft cluster (SPEC §15); `None`: one node, [`NODE_ID`].
    pub member: Option<ClusterMember>,
}

/// What a cluster member's configuration adds: its node id, the members it joins through when its
/// storage is empty, standby reads off (a token made through one member is found at once on every
/// other), autopilot ticking fast enough to promote a new member in seconds, and an audit device
/// whose options are the same on every member (OpenBao refuses a member whose declarative audit
/// device differs from the stored one): its path relative to OpenBao's working directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterMember {
    /// Raft node id.
    pub node_id: String,
    /// `retry_join` stanzas (empty for the first member).
    pub retry_join: Vec<crate::cluster::RetryJoin>,
    /// OpenBao's working directory (the supervisor starts it there): an audit log inside it is
    /// named relative to it.
    pub working_dir: PathBuf,
}

/// Name of the file audit device of a cluster member (a device of its own: a store that becomes a
/// member drops the single node's device, whose path is absolute).
pub const CLUSTER_AUDIT_DEVICE: &str = "edgeseal-cluster-access";

/// Environment variable of the supervised OpenBao holding the current static seal key (hex).
pub const SEAL_KEY_ENV: &str = "EDGESEAL_SEAL_KEY";
/// The raft node id of a supervised OpenBao (one node).
pub const NODE_ID: &str = "edgeseal-node1";

/// Environment variable holding the previous key during a seal-key rotation.
pub const PREVIOUS_SEAL_KEY_ENV: &str = "EDGESEAL_SEAL_KEY_PREVIOUS";
/// Path of the file audit device (`sys/audit`).
pub const AUDIT_DEVICE: &str = "edgeseal-access";

/// The `seal "static"` stanza: key ids only; the keys come from [`SEAL_KEY_ENV`] and
/// [`PREVIOUS_SEAL_KEY_ENV`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticSeal {
    /// `current_key_id`.
    pub current_id: String,
    /// `previous_key_id`, during a rotation.
    pub previous_id: Option<String>,
}

/// The `initialize` block: on empty storage OpenBao writes edgeseal's setup policy, mounts the `cert`
/// auth method and registers edgeseal's client certificate for that policy. No root token, no
/// recovery key, no `sys/init` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfInit {
    /// edgeseal's client certificate (PEM; public).
    pub client_cert: String,
    /// Name of the setup policy.
    pub policy_name: String,
    /// Its text.
    pub policy: String,
    /// Mount path of the `cert` auth method.
    pub cert_mount: String,
    /// Name of the certificate entry edgeseal logs in with.
    pub cert_name: String,
    /// TTL of the setup token a login gives (seconds).
    pub token_ttl_secs: u64,
}

impl ServerConfig {
    /// The raft membership of this one node, as OpenBao's `peers.json` recovery file writes it: a
    /// store restored from another device's snapshot still names that device's cluster address, and
    /// this file (read once at start, then removed by OpenBao) makes this node its only voter.
    pub fn peers_json(&self) -> String {
        format!(r#"[{{"id": "{}", "address": "{}", "non_voter": false}}]"#, self.node_id(), self.cluster)
    }

    /// The raft node id.
    pub fn node_id(&self) -> &str {
        self.member.as_ref().map_or(NODE_ID, |c| c.node_id.as_str())
    }

    /// Renders HCL. Paths are quoted with HCL string escaping.
    pub fn render(&self) -> String {
        let mut hcl = String::new();
        let _ = writeln!(hcl, "storage \"raft\" {{");
        let _ = writeln!(hcl, "  path = {}", quote(&self.data_dir.display().to_string()));
        let _ = writeln!(hcl, "  node_id = {}", quote(self.node_id()));
        let _ =
            writeln!(hcl, "  # a single node elects itself after 1 s instead of 5-10 s; a cluster fails over in 1-3 s");
        let _ = writeln!(hcl, "  performance_multiplier = 1");
        if let Some(cluster) = &self.member {
            let _ = writeln!(hcl, "  # a new member is promoted to voter within seconds of being healthy");
            let _ = writeln!(hcl, "  autopilot_reconcile_interval = \"1s\"");
            let _ = writeln!(hcl, "  autopilot_update_interval = \"500ms\"");
            for join in &cluster.retry_join {
                let _ = writeln!(hcl, "  retry_join {{");
                let _ = writeln!(hcl, "    leader_api_addr = {}", quote(&join.address));
                let _ = writeln!(hcl, "    leader_ca_cert = {}", quote(&join.ca_pem));
                let _ = writeln!(hcl, "  }}");
            }
        }
        let _ = writeln!(hcl, "}}\n");
        if self.member.is_some() {
            let _ = writeln!(hcl, "# standbys forward reads too: what one member just wrote, every member reads");
            let _ = writeln!(hcl, "disable_standby_reads = true\n");
        }
        let _ = writeln!(hcl, "listener \"tcp\" {{");
        let _ = writeln!(hcl, "  address = \"{}\"", self.listen);
        let _ = writeln!(hcl, "  cluster_address = \"{}\"", self.cluster);
        let _ = writeln!(hcl, "  tls_cert_file = {}", quote(&self.tls_cert.display().to_string()));
        let _ = writeln!(hcl, "  tls_key_file = {}", quote(&self.tls_key.display().to_string()));
        let _ = writeln!(hcl, "  tls_min_version = \"tls12\"");
        let tcp_generate_root = self.unauthed_generate_root && self.api_socket.is_none();
        let _ = writeln!(hcl, "  disable_unauthed_generate_root_endpoints = {}", !tcp_generate_root);
        if let Some(client_ca) = &self.tcp_client_ca {
            let _ =
                writeln!(hcl, "  # locked until the keystore holds the unseal shares: nobody has a client certificate");
            let _ = writeln!(hcl, "  tls_require_and_verify_client_cert = true");
            let _ = writeln!(hcl, "  tls_client_ca_file = {}", quote(&client_ca.display().to_string()));
        }
        let _ = writeln!(hcl, "}}\n");
        if let Some(socket) = &self.api_socket {
            let _ = writeln!(hcl, "listener \"unix\" {{");
            let _ = writeln!(hcl, "  address = {}", quote(&socket.display().to_string()));
            let _ = writeln!(hcl, "  disable_unauthed_generate_root_endpoints = {}", !self.unauthed_generate_root);
            let _ = writeln!(hcl, "}}\n");
        }
        if let Some(seal) = &self.static_seal {
            let _ = writeln!(hcl, "# the key is in OpenBao's environment only, never in a file");
            let _ = writeln!(hcl, "seal \"static\" {{");
            let _ = writeln!(hcl, "  current_key_id = {}", quote(&seal.current_id));
            let _ = writeln!(hcl, "  current_key = \"env://{SEAL_KEY_ENV}\"");
            if let Some(previous) = &seal.previous_id {
                let _ = writeln!(hcl, "  previous_key_id = {}", quote(previous));
                let _ = writeln!(hcl, "  previous_key = \"env://{PREVIOUS_SEAL_KEY_ENV}\"");
            }
            let _ = writeln!(hcl, "}}\n");
        }
        if let Some(init) = &self.self_init {
            init.render(&mut hcl);
        }
        let _ = writeln!(hcl, "api_addr = \"https://{}\"", self.listen);
        let _ = writeln!(hcl, "cluster_addr = \"https://{}\"", self.cluster);
        if let Some(audit) = &self.audit_log {
            // Accessors in clear so `security-bootstrap audit` can tell which service's token made a
            // request (tokens and values stay HMACed). OpenBao refuses to change the options of an
            // existing declarative device ("modifications to audit devices are not allowed"), so the
            // device has a path of its own: stores of earlier versions drop their `file/` device.
            let (device, path) = match &self.member {
                Some(cluster) => (
                    CLUSTER_AUDIT_DEVICE,
                    audit.strip_prefix(&cluster.working_dir).map_or_else(|_| audit.clone(), PathBuf::from),
                ),
                None => (AUDIT_DEVICE, audit.clone()),
            };
            let _ = writeln!(hcl, "\naudit \"file\" \"{device}\" {{");
            let _ = writeln!(hcl, "  description = \"edgeseal audit log: accessors in clear, values HMACed\"");
            let _ = writeln!(
                hcl,
                "  options {{\n    file_path = {}\n    hmac_accessor = \"false\"\n  }}",
                quote(&path.display().to_string())
            );
            let _ = writeln!(hcl, "}}");
        }
        hcl
    }
}

impl SelfInit {
    fn render(&self, hcl: &mut String) {
        let _ = writeln!(hcl, "# run once, on empty storage: edgeseal's own way in (no root token is ever made)");
        let _ = writeln!(hcl, "initialize \"edgeseal\" {{");
        let _ = writeln!(hcl, "  request \"setup-policy\" {{");
        let _ = writeln!(hcl, "    operation = \"update\"");
        let _ = writeln!(hcl, "    path = {}", quote(&format!("sys/policies/acl/{}", self.policy_name)));
        let _ = writeln!(hcl, "    data = {{ policy = {} }}", quote(&self.policy));
        let _ = writeln!(hcl, "  }}");
        let _ = writeln!(hcl, "  request \"cert-auth\" {{");
        let _ = writeln!(hcl, "    operation = \"update\"");
        let _ = writeln!(hcl, "    path = {}", quote(&format!("sys/auth/{}", self.cert_mount)));
        let _ = writeln!(hcl, "    data = {{ type = \"cert\" }}");
        let _ = writeln!(hcl, "  }}");
        let _ = writeln!(hcl, "  request \"edgeseal-cert\" {{");
        let _ = writeln!(hcl, "    operation = \"update\"");
        let _ = writeln!(hcl, "    path = {}", quote(&format!("auth/{}/certs/{}", self.cert_mount, self.cert_name)));
        let _ = writeln!(
            hcl,
            "    data = {{ certificate = {}, token_policies = {}, token_ttl = \"{}s\", token_max_ttl = \"{}s\" }}",
            quote(&self.client_cert),
            quote(&self.policy_name),
            self.token_ttl_secs,
            self.token_ttl_secs
        );
        let _ = writeln!(hcl, "  }}");
        let _ = writeln!(hcl, "}}\n");
    }
}

fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '$' => out.push_str("$$"),
            '%' => out.push_str("%%"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_raft_tls_and_audit() {
        let config = ServerConfig {
            data_dir: "/var/lib/openbao/da\"ta".into(),
            listen: "127.0.0.1:8200".parse().unwrap(),
            cluster: "127.0.0.1:8201".parse().unwrap(),
            tls_cert: "/run/edgeseal/pki/openbao/cert.pem".into(),
            tls_key: "/run/edgeseal/pki/openbao/key.pem".into(),
            audit_log: Some("/var/log/openbao/audit.log".into()),
            unauthed_generate_root: true,
            api_socket: None,
            tcp_client_ca: None,
            static_seal: None,
            self_init: None,
            member: None,
        };
        let hcl = config.render();
        assert!(hcl.contains("path = \"/var/lib/openbao/da\\\"ta\""), "{hcl}");
        assert!(hcl.contains("performance_multiplier = 1"));
        assert!(hcl.contains("address = \"127.0.0.1:8200\""));
        assert!(hcl.contains("disable_unauthed_generate_root_endpoints = false"));
        assert!(hcl.contains("audit \"file\" \"edgeseal-access\""), "{hcl}");
        assert!(hcl.contains("hmac_accessor = \"false\""), "{hcl}");
        assert!(hcl.contains("api_addr = \"https://127.0.0.1:8200\""));
        assert!(!hcl.contains("listener \"unix\"") && !hcl.contains("tls_require_and_verify_client_cert"));
    }

    #[test]
    fn supervised_listeners_keep_generate_root_and_first_boot_off_the_tcp_listener() {
        let base = ServerConfig {
            data_dir: "/d/raft".into(),
            listen: "127.0.0.1:8200".parse().unwrap(),
            cluster: "127.0.0.1:8201".parse().unwrap(),
            tls_cert: "/p/openbao/cert.pem".into(),
            tls_key: "/p/openbao/key.pem".into(),
            audit_log: None,
            unauthed_generate_root: false,
            api_socket: Some("/d/api/openbao.sock".into()),
            tcp_client_ca: None,
            static_seal: None,
            self_init: None,
            member: None,
        };
        // (unauthed_generate_root, locked) -> (TCP disables it, unix disables it, TCP locked)
        let cases = [
            ((false, false), (true, true, false)),
            ((true, false), (true, false, false)),
            ((true, true), (true, false, true)),
        ];
        for ((unauthed, locked), (tcp_off, unix_off, tcp_locked)) in cases {
            let config = ServerConfig {
                unauthed_generate_root: unauthed,
                tcp_client_ca: locked.then(|| "/d/locked-client-ca.pem".into()),
                ..base.clone()
            };
            let hcl = config.render();
            let (tcp, unix) = hcl.split_at(hcl.find("listener \"unix\"").unwrap());
            assert!(tcp.contains(&format!("disable_unauthed_generate_root_endpoints = {tcp_off}")), "{hcl}");
            assert!(unix.contains(&format!("disable_unauthed_generate_root_endpoints = {unix_off}")), "{hcl}");
            assert!(unix.contains("address = \"/d/api/openbao.sock\""), "{hcl}");
            assert_eq!(tcp.contains("tls_require_and_verify_client_cert = true"), tcp_locked, "{hcl}");
            assert_eq!(tcp.contains("tls_client_ca_file = \"/d/locked-client-ca.pem\""), tcp_locked, "{hcl}");
        }
    }

    #[test]
    fn a_cluster_member_joins_through_other_members_reads_through_the_active_one_and_audits_to_a_relative_path() {
        let config = ServerConfig {
            data_dir: "/d/raft".into(),
            listen: "127.0.0.1:18222".parse().unwrap(),
            cluster: "127.0.0.1:18223".parse().unwrap(),
            tls_cert: "/p/openbao/cert.pem".into(),
            tls_key: "/p/openbao/key.pem".into(),
            audit_log: Some("/d/audit.log".into()),
            unauthed_generate_root: false,
            api_socket: None,
            tcp_client_ca: None,
            static_seal: None,
            self_init: None,
            member: Some(ClusterMember {
                node_id: "gw2".into(),
                retry_join: vec![crate::cluster::RetryJoin {
                    address: "https://127.0.0.1:18220".into(),
                    ca_pem: "-----BEGIN CERTIFICATE-----\nAA\n-----END CERTIFICATE-----\n".into(),
                }],
                working_dir: "/d".into(),
            }),
        };
        let hcl = config.render();
        assert!(hcl.contains("node_id = \"gw2\""), "{hcl}");
        assert!(hcl.contains("leader_api_addr = \"https://127.0.0.1:18220\""), "{hcl}");
        assert!(hcl.contains("leader_ca_cert = \"-----BEGIN CERTIFICATE-----\\nAA\\n"), "{hcl}");
        assert!(hcl.contains("disable_standby_reads = true"), "{hcl}");
        assert!(
            hcl.contains("audit \"file\" \"edgeseal-cluster-access\"") && hcl.contains("file_path = \"audit.log\""),
            "{hcl}"
        );
        assert!(config.peers_json().contains("\"id\": \"gw2\""));
        let outside = ServerConfig { audit_log: Some("/var/log/bao.log".into()), ..config.clone() };
        assert!(outside.render().contains("file_path = \"/var/log/bao.log\""));
        let single = ServerConfig { member: None, ..config };
        let hcl = single.render();
        assert!(
            hcl.contains("node_id = \"edgeseal-node1\"")
                && !hcl.contains("retry_join")
                && !hcl.contains("disable_standby_reads"),
            "{hcl}"
        );
        assert!(
            hcl.contains("audit \"file\" \"edgeseal-access\"") && hcl.contains("file_path = \"/d/audit.log\""),
            "{hcl}"
        );
    }

    #[test]
    fn the_static_seal_names_the_key_only_by_its_variable_and_the_initialize_block_registers_edgeseal() {
        let cert = "-----BEGIN CERTIFICATE-----\nMIIB\"x$y%z\n-----END CERTIFICATE-----\n";
        let config = ServerConfig {
            data_dir: "/d/raft".into(),
            listen: "127.0.0.1:8200".parse().unwrap(),
            cluster: "127.0.0.1:8201".parse().unwrap(),
            tls_cert: "/p/openbao/cert.pem".into(),
            tls_key: "/p/openbao/key.pem".into(),
            audit_log: None,
            unauthed_generate_root: false,
            api_socket: None,
            tcp_client_ca: None,
            static_seal: Some(StaticSeal { current_id: "k2".into(), previous_id: Some("k1".into()) }),
            self_init: Some(crate::seal::self_init(cert, "secret", "edgeseal")),
            member: None,
        };
        let hcl = config.render();
        assert!(
            hcl.contains("current_key_id = \"k2\"") && hcl.contains("current_key = \"env://EDGESEAL_SEAL_KEY\""),
            "{hcl}"
        );
        assert!(hcl.contains("previous_key = \"env://EDGESEAL_SEAL_KEY_PREVIOUS\""), "{hcl}");
        assert!(hcl.contains("path = \"auth/edgeseal-cert/certs/edgeseal\""), "{hcl}");
        assert!(hcl.contains("path = \"sys/auth/edgeseal-cert\"") && hcl.contains("type = \"cert\""), "{hcl}");
        // The PEM is one escaped HCL string: newlines, quotes and template characters cannot break out.
        assert!(hcl.contains("certificate = \"-----BEGIN CERTIFICATE-----\\nMIIB\\\"x$$y%%z\\n"), "{hcl}");
        assert!(!hcl.contains("listener \"unix\""), "{hcl}");
        let without_rotation =
            ServerConfig { static_seal: Some(StaticSeal { current_id: "k2".into(), previous_id: None }), ..config };
        assert!(!without_rotation.render().contains("previous_key"));
    }
}
