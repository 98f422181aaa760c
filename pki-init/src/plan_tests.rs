//! Table tests of the planner: facts on disk in, one decision per certificate out.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use time::OffsetDateTime;

use super::*;
use crate::config::{CaKeys, Owner, San, Usage};
use crate::scan::{LeafCert, LeafKey, StaleDir};
use crate::x509::CertFacts;
use crate::KeyAlgorithm;

const DAY: i64 = 86_400;
const EUID: u32 = 0;

fn t0() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
}

fn day(n: i64) -> OffsetDateTime {
    t0() + time::Duration::seconds(n * DAY)
}

fn facts(from: i64, to: i64, is_ca: bool, sans: &[&str]) -> CertFacts {
    CertFacts {
        der: vec![from as u8, to as u8, is_ca as u8],
        subject: "CN=x".into(),
        serial: "01".into(),
        not_before: day(from),
        not_after: day(to),
        sans: sans.iter().map(|s| San::parse(s).unwrap()).collect(),
        other_sans: false,
        usages: if is_ca { BTreeSet::new() } else { BTreeSet::from([Usage::Server, Usage::Client]) },
        other_usages: false,
        is_ca,
        path_len: None,
        algorithm: Some(KeyAlgorithm::P256),
        spki: vec![1],
    }
}

fn config(mode: CaKeys, certs: &[(&str, &[&str])]) -> PkiConfig {
    let mut c = PkiConfig { dir: PathBuf::from("/pki"), ca_keys: mode, ..PkiConfig::default() };
    for (name, sans) in certs {
        let sans = sans.iter().map(|s| San::parse(s).unwrap()).collect();
        c.certs.insert(name.parse().unwrap(), CertConfig::new(sans));
    }
    c
}

fn meta(mode: u32) -> Meta {
    Meta { uid: EUID, gid: 0, mode }
}

fn leaf(from: i64, to: i64, sans: &[&str]) -> LeafDir {
    LeafDir {
        meta: meta(0o700),
        cert: Some(LeafCert {
            facts: facts(from, to, false, sans),
            chain: vec![],
            chain_ok: true,
            signed_by_intermediate: true,
            meta: meta(0o644),
        }),
        key: Some(LeafKey { algorithm: KeyAlgorithm::P256, matches_cert: true, meta: meta(0o600) }),
    }
}

/// A CA issued at day 0 for 3650 days and leaves `a` and `b` issued at day 0 for 90 days.
fn healthy() -> Disk {
    let mut disk = Disk {
        dir_exists: true,
        ca_dir_exists: true,
        root: Some(CaCert { facts: facts(0, 3650, true, &[]), signed_by_parent: true }),
        intermediate: Some(CaCert { facts: facts(0, 3650, true, &[]), signed_by_parent: true }),
        ..Disk::default()
    };
    disk.leaves.insert("a".parse().unwrap(), leaf(0, 90, &["a"]));
    disk.leaves.insert("b".parse().unwrap(), leaf(0, 90, &["b", "127.0.0.1"]));
    disk
}

const AB: &[(&str, &[&str])] = &[("a", &["a"]), ("b", &["b", "127.0.0.1"])];

/// (root, intermediate, a, b) actions, in that order.
fn actions(plan: &Plan) -> Vec<Action> {
    let mut v = vec![plan.root.action, plan.intermediate.action];
    v.extend(plan.leaves.iter().map(|(_, s)| s.action));
    v
}

fn leaf_reason<'a>(plan: &'a Plan, name: &str) -> &'a str {
    &plan.leaves.iter().find(|(n, _)| n.as_str() == name).unwrap().1.reason
}

use Action::{Created as C, Reissued as X, Renewed as R, Unchanged as U};

type Edit = fn(&mut Disk, &mut PkiConfig);
/// What, how the healthy disk or config is edited, which keys are at hand, on which day, the expected
/// actions (root, intermediate, leaves by name), and a phrase of leaf `a`'s reason.
type Case<'a> = (&'a str, Edit, &'a KeyAccess, i64, Vec<Action>, &'a str);

#[test]
fn decisions() {
    let keystore = KeyAccess::available();
    let destroyed = KeyAccess::destroyed();
    let no_int_key = KeyAccess { root: Ok(()), intermediate: Err("is not in the keystore".into()) };
    let no_keys = KeyAccess { root: Err("is not in the keystore".into()), intermediate: Err("is gone".into()) };
    let nothing: Edit = |_, _| {};
    let late_leaves: Edit = |d, _| {
        for l in d.leaves.values_mut() {
            let f = &mut l.cert.as_mut().unwrap().facts;
            (f.not_before, f.not_after) = (day(3500), day(3590));
        }
    };
    #[rustfmt::skip]
    let cases: Vec<Case<'_>> = vec![
        ("first run", |d, _| *d = Disk::default(), &destroyed, 0, vec![C, C, C, C], "new in pki.certs"),
        ("rerun, nothing due", nothing, &destroyed, 10, vec![U, U, U, U], "valid until"),
        ("rerun, keystore", nothing, &keystore, 59, vec![U, U, U, U], "renewal from"),
        ("leaf due, keystore keeps the CA", nothing, &keystore, 60, vec![U, U, R, R], "within renew_before"),
        ("leaf due, destroy makes a new CA", nothing, &destroyed, 60, vec![X, X, R, R], "within renew_before"),
        ("expired leaf", nothing, &keystore, 95, vec![U, U, R, R], "expired"),
        ("SAN change", |_, c| { c.certs.get_mut("a").unwrap().sans.push(San::parse("a.local").unwrap()); },
            &keystore, 1, vec![U, U, X, U], "SANs changed from [a] to [a, a.local]"),
        ("SAN change, destroy", |_, c| { c.certs.get_mut("a").unwrap().sans = vec![San::parse("z").unwrap()]; },
            &destroyed, 1, vec![X, X, X, X], "SANs changed"),
        ("usage change", |_, c| { c.certs.get_mut("a").unwrap().usages = BTreeSet::from([Usage::Server]); },
            &keystore, 1, vec![U, U, X, U], "usages changed from [server, client] to [server]"),
        ("new name", |_, c| { c.certs.insert("c".parse().unwrap(), CertConfig::new(vec![San::parse("c").unwrap()])); },
            &keystore, 1, vec![U, U, U, U, C], "valid until"),
        ("new name, destroy", |_, c| { c.certs.insert("c".parse().unwrap(), CertConfig::new(vec![San::parse("c").unwrap()])); },
            &destroyed, 1, vec![X, X, X, X, C], "issued under the new intermediate CA"),
        ("root near its end", late_leaves, &keystore, 3650 - 119, vec![R, X, X, X], "issued under the new intermediate CA"),
        ("root not yet due", late_leaves, &keystore, 3650 - 121, vec![U, U, U, U], "valid until"),
        ("intermediate lost, root key kept", |d, _| d.intermediate = None, &keystore, 1, vec![U, C, X, X], "new intermediate"),
        ("intermediate lost, no root key", |d, _| d.intermediate = None, &no_keys, 1, vec![X, C, X, X], "new intermediate"),
        ("intermediate key lost, nothing to issue", nothing, &no_int_key, 1, vec![U, U, U, U], "valid until"),
        ("intermediate key lost, leaf due", nothing, &no_int_key, 61, vec![U, X, R, R], "within renew_before"),
        ("no keys, leaf due", nothing, &no_keys, 61, vec![X, X, R, R], "within renew_before"),
        ("intermediate not signed by root", |d, _| d.intermediate.as_mut().unwrap().signed_by_parent = false,
            &keystore, 1, vec![U, X, X, X], "new intermediate"),
        ("root not self-signed", |d, _| d.root.as_mut().unwrap().signed_by_parent = false,
            &keystore, 1, vec![X, X, X, X], "new intermediate"),
        ("algorithm changed", |_, c| c.key_algorithm = KeyAlgorithm::P384, &keystore, 1, vec![X, X, X, X], "key_algorithm is p384"),
        ("clock set back", nothing, &keystore, -1, vec![X, X, X, X], "not valid before"),
        ("key does not match", |d, _| leaf_of(d, "a").key.as_mut().unwrap().matches_cert = false,
            &keystore, 1, vec![U, U, X, U], "key.pem does not match cert.pem"),
        ("key missing", |d, _| leaf_of(d, "a").key = None, &keystore, 1, vec![U, U, X, U], "key.pem is missing"),
        ("cert missing", |d, _| leaf_of(d, "a").cert = None, &keystore, 1, vec![U, U, X, U], "cert.pem is missing"),
        ("leaf from another CA", |d, _| leaf_of(d, "a").cert.as_mut().unwrap().signed_by_intermediate = false,
            &keystore, 1, vec![U, U, X, U], "not issued by ca/intermediate.pem"),
        ("stale chain", |d, _| leaf_of(d, "a").cert.as_mut().unwrap().chain_ok = false,
            &keystore, 1, vec![U, U, X, U], "chain in cert.pem"),
        ("key readable by others", |d, _| leaf_of(d, "a").key.as_mut().unwrap().meta.mode = 0o644,
            &keystore, 1, vec![U, U, X, U], "key.pem has mode 0644"),
        ("directory open to others", |d, _| leaf_of(d, "a").meta.mode = 0o755,
            &keystore, 1, vec![U, U, X, U], "mode 0755"),
        ("owner configured", |_, c| c.certs.get_mut("a").unwrap().owner = Some(Owner { uid: 2002, gid: 2001 }),
            &keystore, 1, vec![U, U, X, U], "belongs to 0:0, not 2002:2001"),
        ("owner removed", |d, _| { let l = leaf_of(d, "a"); l.meta.uid = 5; },
            &keystore, 1, vec![U, U, X, U], "belongs to 5:0, not uid 0"),
        ("leaf outlives intermediate", |d, _| {
            d.intermediate.as_mut().unwrap().facts.not_after = day(200);
            leaf_of(d, "a").cert.as_mut().unwrap().facts.not_after = day(300);
        }, &keystore, 1, vec![U, U, X, U], "outlives ca/intermediate.pem"),
        ("intermediate outlives root", |d, _| d.intermediate.as_mut().unwrap().facts.not_after = day(4000),
            &keystore, 1, vec![U, X, X, X], "new intermediate"),
        ("CA cert that is not a CA", |d, _| d.root.as_mut().unwrap().facts.is_ca = false,
            &keystore, 1, vec![X, X, X, X], "new intermediate"),
    ];
    for (what, edit, keys, at, want, reason_of_a) in cases {
        let mut disk = healthy();
        let mut cfg = config(CaKeys::Keystore, AB);
        edit(&mut disk, &mut cfg);
        let plan = plan(&cfg, &disk, keys, day(at), EUID);
        assert_eq!(actions(&plan), want, "{what}: {plan:#?}");
        assert!(leaf_reason(&plan, "a").contains(reason_of_a), "{what}: {}", leaf_reason(&plan, "a"));
        assert_eq!(plan.changes(), want.iter().any(|a| a.changes()), "{what}");
    }
}

fn leaf_of<'a>(disk: &'a mut Disk, name: &str) -> &'a mut LeafDir {
    disk.leaves.get_mut(name).unwrap()
}

#[test]
fn ca_reasons_say_why_a_new_ca_is_needed() {
    let disk = healthy();
    let cfg = config(CaKeys::Destroy, AB);
    let plan = plan(&cfg, &disk, &KeyAccess::destroyed(), day(61), EUID);
    assert!(plan.root.reason.contains("a must be issued"), "{}", plan.root.reason);
    assert!(plan.root.reason.contains("ca_keys: destroy"), "{}", plan.root.reason);
    assert_eq!(plan.intermediate.reason, "issued under the new root CA");

    let plan = plan_at(&healthy(), 3650 - 100);
    assert!(plan.root.reason.contains("within leaf_validity + renew_before (120d)"), "{}", plan.root.reason);
}

fn plan_at(disk: &Disk, at: i64) -> Plan {
    plan(&config(CaKeys::Keystore, AB), disk, &KeyAccess::available(), day(at), EUID)
}

#[test]
fn names_no_longer_configured_are_removed() {
    let mut disk = healthy();
    disk.stale.push(StaleDir { name: "old".into(), path: "/pki/old".into(), files: vec![] });
    let plan = plan_at(&disk, 1);
    assert_eq!(plan.removed, vec!["old".to_string()]);
    assert!(plan.changes());
}

#[test]
fn every_renewal_window_keeps_leaves_inside_the_ca() {
    // Walk a device's life day by day with a keystore: whenever a leaf is issued, it ends before the CA.
    let cfg = config(CaKeys::Keystore, AB);
    let mut disk = healthy();
    let mut ca_end = day(3650);
    for today in 0..8000 {
        let plan = plan(&cfg, &disk, &KeyAccess::available(), day(today), EUID);
        if plan.root.issues() {
            ca_end = later(day(today), cfg.ca_validity);
            let ca = CaCert { facts: facts(today, (ca_end - t0()).whole_days(), true, &[]), signed_by_parent: true };
            disk.root = Some(ca.clone());
            disk.intermediate = Some(ca);
        }
        for (name, step) in &plan.leaves {
            if step.issues() {
                let end = later(day(today), cfg.leaf_validity);
                assert!(end < ca_end, "day {today}: {name} would end {end} after the CA {ca_end}");
                let sans: Vec<String> = cfg.certs[name].sans.iter().map(|s| s.to_string()).collect();
                let sans: Vec<&str> = sans.iter().map(String::as_str).collect();
                disk.leaves.insert(name.clone(), leaf(today, today + 90, &sans));
            }
        }
        let cert_end = disk.leaves.values().map(|l| l.cert.as_ref().unwrap().facts.not_after).min().unwrap();
        assert!(cert_end > day(today), "day {today}: a leaf expired without being renewed");
    }
    let _ = Duration::ZERO;
}
