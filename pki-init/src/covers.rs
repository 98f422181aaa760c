//! Which leaves a TLS client would accept for a host name (pure): a leaf that may serve TLS
//! (`usages` includes `server`) and whose SANs match the host the way a verifier matches them — an
//! IP SAN equal to an IP host, a DNS SAN equal to the name (ASCII case-insensitive), or a `*.` wildcard
//! standing for exactly one leftmost label.
//!
//! edgeseal uses it to refuse a configuration in which a service's leaf covers the OpenBao address:
//! whoever holds that leaf could answer in OpenBao's place.

use std::net::IpAddr;

use crate::config::{CertName, PkiConfig, San, Usage};

/// Whether `san` covers `host` (a DNS name, or an IP address without brackets).
pub fn san_covers(san: &San, host: &str) -> bool {
    let host_ip = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().ok();
    match (san, host_ip) {
        (San::Ip(ip), Some(host_ip)) => canonical(*ip) == canonical(host_ip),
        (San::Ip(_), None) | (San::Dns(_), Some(_)) => false,
        (San::Dns(name), None) => {
            let host = host.trim_end_matches('.').to_ascii_lowercase();
            match name.strip_prefix("*.") {
                Some(parent) => host.split_once('.').is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
                None => *name == host,
            }
        }
    }
}

/// `::ffff:127.0.0.1` and `127.0.0.1` are one address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The leaves of `config` that may serve TLS for `host`, in name order.
pub fn leaves_covering<'a>(config: &'a PkiConfig, host: &str) -> Vec<&'a CertName> {
    config
        .certs
        .iter()
        .filter(|(_, cert)| cert.usages.contains(&Usage::Server))
        .filter(|(_, cert)| cert.sans.iter().any(|san| san_covers(san, host)))
        .map(|(name, _)| name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CertConfig;

    #[test]
    fn san_matching_follows_tls_name_rules() {
        let cases = [
            ("127.0.0.1", "127.0.0.1", true),
            ("127.0.0.1", "127.0.0.2", false),
            ("::1", "::1", true),
            ("::1", "[::1]", true),
            ("127.0.0.1", "::ffff:127.0.0.1", true),
            ("127.0.0.1", "localhost", false),
            ("localhost", "127.0.0.1", false),
            ("localhost", "localhost", true),
            ("localhost", "LOCALHOST", true),
            ("localhost", "localhost.", true),
            ("openbao", "openbao.local", false),
            ("*.edge.local", "bao.edge.local", true),
            ("*.edge.local", "edge.local", false),
            ("*.edge.local", "a.b.edge.local", false),
            ("*.edge.local", ".edge.local", false),
        ];
        for (san, host, want) in cases {
            assert_eq!(san_covers(&San::parse(san).unwrap(), host), want, "{san} covers {host}?");
        }
    }

    #[test]
    fn only_server_leaves_covering_the_host_are_listed() {
        let mut config = PkiConfig::default();
        let leaf = |sans: &[&str]| CertConfig::new(sans.iter().map(|s| San::parse(s).unwrap()).collect());
        config.certs.insert("openbao".parse().unwrap(), leaf(&["127.0.0.1", "localhost"]));
        config.certs.insert("rogue".parse().unwrap(), leaf(&["127.0.0.1"]));
        config.certs.insert("web".parse().unwrap(), leaf(&["*.edge.local"]));
        let mut client_only = leaf(&["127.0.0.1"]);
        client_only.usages = [Usage::Client].into();
        config.certs.insert("mqtt-client".parse().unwrap(), client_only);
        let names = |host| leaves_covering(&config, host).iter().map(|n| n.as_str().to_string()).collect::<Vec<_>>();
        assert_eq!(names("127.0.0.1"), ["openbao", "rogue"]);
        assert_eq!(names("localhost"), ["openbao"]);
        assert_eq!(names("bao.edge.local"), ["web"]);
        assert!(names("10.0.0.1").is_empty());
    }
}
