//! OpenBao server configuration that edgeseal writes for an OpenBao it starts itself (tests, the
//! supervised mode): raft storage tuned for a single node, a TLS listener with the device PKI, and a
//! declarative file audit device (OpenBao 2.x refuses to enable audit devices through the API).

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
    /// nothing else. edgeseal uses it only to recover when its stored credential is gone.
    pub unauthed_generate_root: bool,
}

impl ServerConfig {
    /// Renders HCL. Paths are quoted with HCL string escaping.
    pub fn render(&self) -> String {
        let mut hcl = String::new();
        let _ = writeln!(hcl, "storage \"raft\" {{");
        let _ = writeln!(hcl, "  path = {}", quote(&self.data_dir.display().to_string()));
        let _ = writeln!(hcl, "  node_id = \"edgeseal-node1\"");
        let _ = writeln!(hcl, "  # a single node elects itself after 1 s instead of 5-10 s");
        let _ = writeln!(hcl, "  performance_multiplier = 1");
        let _ = writeln!(hcl, "}}\n");
        let _ = writeln!(hcl, "listener \"tcp\" {{");
        let _ = writeln!(hcl, "  address = \"{}\"", self.listen);
        let _ = writeln!(hcl, "  cluster_address = \"{}\"", self.cluster);
        let _ = writeln!(hcl, "  tls_cert_file = {}", quote(&self.tls_cert.display().to_string()));
        let _ = writeln!(hcl, "  tls_key_file = {}", quote(&self.tls_key.display().to_string()));
        let _ = writeln!(hcl, "  tls_min_version = \"tls12\"");
        let _ = writeln!(hcl, "  disable_unauthed_generate_root_endpoints = {}", !self.unauthed_generate_root);
        let _ = writeln!(hcl, "}}\n");
        let _ = writeln!(hcl, "api_addr = \"https://{}\"", self.listen);
        let _ = writeln!(hcl, "cluster_addr = \"https://{}\"", self.cluster);
        if let Some(audit) = &self.audit_log {
            let _ = writeln!(hcl, "\naudit \"file\" \"file\" {{");
            let _ = writeln!(hcl, "  description = \"edgeseal audit log\"");
            let _ = writeln!(hcl, "  options {{\n    file_path = {}\n  }}", quote(&audit.display().to_string()));
            let _ = writeln!(hcl, "}}");
        }
        hcl
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
        };
        let hcl = config.render();
        assert!(hcl.contains("path = \"/var/lib/openbao/da\\\"ta\""), "{hcl}");
        assert!(hcl.contains("performance_multiplier = 1"));
        assert!(hcl.contains("address = \"127.0.0.1:8200\""));
        assert!(hcl.contains("disable_unauthed_generate_root_endpoints = false"));
        assert!(hcl.contains("audit \"file\" \"file\""));
        assert!(hcl.contains("api_addr = \"https://127.0.0.1:8200\""));
    }
}
