//! Table tests of the `pki:` section: what parses, and where each error points.

use super::*;

fn parse(yaml: &str) -> Result<PkiConfig, (Option<usize>, String)> {
    serde_yaml_ng::from_str(yaml).map_err(|e: serde_yaml_ng::Error| (e.location().map(|l| l.line()), e.to_string()))
}

#[test]
fn defaults() {
    let c = parse("{}").unwrap();
    assert_eq!(c, PkiConfig::default());
    assert_eq!(c.dir, Path::new("/run/edgeseal/pki"));
    assert_eq!(c.ca_validity, Duration::from_secs(3650 * DAY));
    assert_eq!(c.leaf_validity, Duration::from_secs(90 * DAY));
    assert_eq!(c.renew_before, Duration::from_secs(30 * DAY));
    assert_eq!(c.key_algorithm, KeyAlgorithm::P256);
    assert_eq!(c.ca_keys, CaKeys::Destroy);
    assert!(c.certs.is_empty());
    c.validate().unwrap();
}

#[test]
fn a_full_section() {
    let c = parse(
        "dir: /srv/pki\nca_validity: 365d\nleaf_validity: 30d\nrenew_before: 10d\nkey_algorithm: p384\nca_keys: keystore\n\
         certs:\n  openbao: { sans: [localhost, 127.0.0.1, OpenBao, '::1'] }\n  \
         core-data:\n    sans: [core-data]\n    usages: [client]\n    owner: { uid: 2002, gid: 2001 }\n",
    )
    .unwrap();
    assert_eq!(c.key_algorithm, KeyAlgorithm::P384);
    assert_eq!(c.ca_keys, CaKeys::Keystore);
    let bao = &c.certs["openbao"];
    let sans: Vec<String> = bao.sans.iter().map(ToString::to_string).collect();
    assert_eq!(sans, ["localhost", "127.0.0.1", "openbao", "::1"]);
    assert_eq!(bao.usages, BTreeSet::from([Usage::Server, Usage::Client]));
    assert_eq!(bao.owner, None);
    let data = &c.certs["core-data"];
    assert_eq!(data.usages, BTreeSet::from([Usage::Client]));
    assert_eq!(data.owner, Some(Owner { uid: 2002, gid: 2001 }));
}

#[test]
fn errors_point_at_the_value() {
    // serde_yaml_ng reports a value's own line for scalars and the enclosing mapping's or sequence's
    // line for values checked inside a collection; the message always carries the key path and value.
    let cases: &[(&str, usize, &str)] = &[
        ("dir: relative/pki\n", 1, "pki.dir must be an absolute directory"),
        ("dir: /\n", 1, "pki.dir must be an absolute directory"),
        ("dir: /run/../etc\n", 1, "pki.dir must be an absolute directory"),
        ("ca_validity: 0s\n", 1, "pki.ca_validity must be between 1s and 36500d, got 0s"),
        ("leaf_validity: 500ms\n", 1, "pki.leaf_validity must be between 1s and 36500d, got 500ms"),
        ("leaf_validity: -1d\n", 1, "leaf_validity"),
        ("ca_validity: 40000d\n", 1, "pki.ca_validity must be between"),
        ("renew_before: 40000d\n", 1, "pki.renew_before must be at most"),
        ("ca_validity: forever\n", 1, "ca_validity"),
        ("key_algorithm: rsa\n", 1, "unknown variant `rsa`"),
        ("ca_keys: disk\n", 1, "unknown variant `disk`"),
        ("colour: blue\n", 1, "unknown field `colour`"),
        // A bad key is reported at the start of its mapping, with the key quoted.
        (
            "certs:\n  ok: { sans: [a] }\n  Bad_Name: { sans: [a] }\n",
            2,
            "\"Bad_Name\" is not a usable certificate name",
        ),
        ("certs:\n  ca: { sans: [a] }\n", 2, "`ca` cannot name a certificate"),
        ("certs:\n  -x: { sans: [a] }\n", 2, "not a usable certificate name"),
        ("certs:\n  x:\n    sans: [a, 'bad name']\n", 3, "\"bad name\" is not a DNS name or an IP address"),
        // In a block sequence the error points at the sequence; the message quotes the value.
        (
            "certs:\n  x:\n    sans:\n      - a\n      - 127.0.0.256\n",
            4,
            "\"127.0.0.256\" is not a DNS name or an IP address",
        ),
        ("certs:\n  x:\n    sans: [a, 'a..b']\n", 3, "not a DNS name"),
        ("certs:\n  x:\n    sans: ['fe80::1%eth0']\n", 3, "not a DNS name"),
        ("certs:\n  x:\n    sans: []\n", 3, "sans must list at least one"),
        ("certs:\n  x:\n    sans: [a, A]\n", 3, "SAN \"a\" is listed twice"),
        ("certs:\n  x: { usages: [server] }\n", 2, "missing field `sans`"),
        ("certs:\n  x:\n    sans: [a]\n    usages: []\n", 3, "usages must list server, client or both"),
        ("certs:\n  x:\n    sans: [a]\n    usages: [server, server]\n", 3, "usage server is listed twice"),
        ("certs:\n  x:\n    sans: [a]\n    usages: [peer]\n", 4, "unknown variant `peer`"),
        ("certs:\n  x:\n    sans: [a]\n    owner: { uid: 1 }\n", 4, "missing field `gid`"),
        ("certs:\n  x:\n    sans: [a]\n    owner: { uid: -1, gid: 1 }\n", 4, "uid"),
        ("certs:\n  x:\n    sans: [a]\n    owner: { uid: 4294967295, gid: 1 }\n", 4, "owner uid and gid must be below"),
        ("certs:\n  x:\n    sans: [a]\n    mode: 0644\n", 4, "unknown field `mode`"),
        ("certs:\n  x: { sans: [a] }\n  x: { sans: [b] }\n", 2, "certificate \"x\" is listed twice"),
    ];
    let mut failures = Vec::new();
    for (yaml, line, want) in cases {
        let (at, message) = parse(yaml).expect_err(yaml);
        if !message.contains(want) || at != Some(*line) {
            failures.push(format!("{yaml:?}: line {at:?}: {message}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn cross_key_errors() {
    let cases: &[(&str, &str)] = &[
        (
            "ca_validity: 90d\nleaf_validity: 90d\n",
            "pki.leaf_validity (90d) must be shorter than pki.ca_validity (90d)",
        ),
        (
            "ca_validity: 30d\n",
            "pki.leaf_validity (90d) must be shorter than pki.ca_validity (30d): a leaf cannot outlive its CA",
        ),
        ("renew_before: 90d\n", "pki.renew_before (90d) must be shorter than pki.leaf_validity (90d)"),
        (
            "ca_validity: 100d\n",
            "pki.ca_validity (100d) must be longer than pki.leaf_validity + pki.renew_before (90d + 30d)",
        ),
    ];
    for (yaml, want) in cases {
        let (_, message) = parse(yaml).expect_err(yaml);
        assert!(message.contains(want), "{yaml:?}: {message}");
    }
    // renew_before 0 is allowed: renew only what has expired.
    parse("renew_before: 0s\n").unwrap();
}

#[test]
fn validate_catches_configs_built_in_code() {
    let mut c = PkiConfig::default();
    c.certs.insert("x".parse().unwrap(), CertConfig::new(vec![San::Dns("Not Valid".into())]));
    assert_eq!(c.validate().unwrap_err().to_string(), "pki.certs.x: \"Not Valid\" is not a DNS name or an IP address");
    c.certs.insert("x".parse().unwrap(), CertConfig::new(vec![]));
    assert!(c.validate().unwrap_err().to_string().contains("at least one"));
    let c = PkiConfig { leaf_validity: Duration::from_secs(4000 * DAY), ..PkiConfig::default() };
    assert!(matches!(c.validate(), Err(PkiConfigError::LeafOutlivesCa { .. })));
    let c = PkiConfig { dir: PathBuf::from("pki"), ..PkiConfig::default() };
    assert!(matches!(c.validate(), Err(PkiConfigError::Dir(_))));
}

#[test]
fn names() {
    for ok in ["a", "openbao", "core-data", "0", "a-", &"a".repeat(63)] {
        assert_eq!(ok.parse::<CertName>().unwrap().as_str(), ok);
    }
    for bad in ["", "-a", "A", "a_b", "a.b", "a b", "é", &"a".repeat(64)] {
        assert_eq!(bad.parse::<CertName>(), Err(PkiConfigError::Name(bad.to_string())), "{bad:?}");
    }
    assert_eq!("ca".parse::<CertName>(), Err(PkiConfigError::ReservedName));
}

#[test]
fn sans() {
    let dns = |s: &str| San::Dns(s.to_string());
    let ip = |s: &str| San::Ip(s.parse().unwrap());
    let cases: &[(&str, Option<San>)] = &[
        ("localhost", Some(dns("localhost"))),
        ("OpenBao.Local", Some(dns("openbao.local"))),
        ("*.edge.local", Some(dns("*.edge.local"))),
        ("a-b.c1", Some(dns("a-b.c1"))),
        ("127.0.0.1", Some(ip("127.0.0.1"))),
        ("::1", Some(ip("::1"))),
        ("2001:db8::1", Some(ip("2001:db8::1"))),
        ("", None),
        ("*", None),
        ("a.*.b", None),
        ("*.", None),
        ("-a.b", None),
        ("a-.b", None),
        ("a..b", None),
        ("a.b.", None),
        ("under_score", None),
        ("1.2.3", None),
        ("256.0.0.1", None),
        ("http://x", None),
        ("ünï", None),
        (&format!("{}.b", "a".repeat(64)), None),
        (&format!("{}a", "a.".repeat(126)), Some(dns(&format!("{}a", "a.".repeat(126))))),
        (&format!("{}ab", "a.".repeat(126)), None),
    ];
    for (text, want) in cases {
        assert_eq!(San::parse(text).ok(), *want, "{text:?}");
    }
}

#[test]
fn durations_print_as_written() {
    let cases = [(90 * DAY, "90d"), (36 * 3600, "36h"), (90, "90s"), (120, "2m"), (0, "0s")];
    for (secs, want) in cases {
        assert_eq!(show(Duration::from_secs(secs)), want);
    }
    assert_eq!(show(Duration::from_millis(1500)), "1s 500ms");
}
