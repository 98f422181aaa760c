#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

struct World {
    org: OrgKey,
    other_org: OrgKey,
    node1: NodeKeys,
    node2: NodeKeys,
}

fn world() -> World {
    World {
        org: OrgKey::generate().unwrap(),
        other_org: OrgKey::generate().unwrap(),
        node1: NodeKeys::generate().unwrap(),
        node2: NodeKeys::generate().unwrap(),
    }
}

fn meta(node: &str, name: &str, version: u64) -> SecretMeta {
    SecretMeta {
        node: node.into(),
        secret: SecretRef::new("db", name).unwrap(),
        secret_id: "00ff".into(),
        version,
        not_before: None,
        expires: Some(2_000_000_000),
    }
}

fn value() -> SecretValue {
    SecretValue::new(br#"{"value":"hunter2"}"#.to_vec())
}

fn sealed(org: &OrgKey, meta: &SecretMeta) -> Map<String, Value> {
    let key = &org.current().key;
    seal_secret(org, org.current().number, key, meta, &value()).unwrap().to_map()
}

fn resign(org: &OrgKey, map: &mut Map<String, Value>) {
    let mut record = SecretRecord::from_map(map).unwrap();
    record.signature = B64.encode(org.sign(&signed_bytes(SECRET_CONTEXT, &record)));
    *map = record.to_map();
}

#[test]
fn a_secret_record_opens_only_where_it_belongs_and_every_tampering_has_its_error() {
    let w = world();
    let n1 = w.node1.node_id();
    let n2 = w.node2.node_id();
    let org_pub = w.org.public();
    let expect = Expect { org: &org_pub, node: &n1 };
    let at = SecretRef::new("db", "password").unwrap();
    let good = sealed(&w.org, &meta(&n1, "password", 2));
    let other_sig = sealed(&w.org, &meta(&n1, "password", 3))["signature"].clone();
    type Mutate<'a> = Box<dyn Fn(&mut Map<String, Value>) + 'a>;
    type Case<'a> = (&'a str, Mutate<'a>, Option<u64>, Result<(), &'a str>);
    // (what, mutation, installed version, expected outcome: Ok(()) or the error's kind)
    let cases: Vec<Case<'_>> = vec![
        ("untouched", Box::new(|_| {}), None, Ok(())),
        ("same version installed", Box::new(|_| {}), Some(2), Ok(())),
        ("older version installed", Box::new(|_| {}), Some(1), Ok(())),
        (
            "flipped ciphertext byte",
            Box::new(|m| {
                let mut c = B64.decode(m["ciphertext"].as_str().unwrap()).unwrap();
                c[0] ^= 1;
                m["ciphertext"] = B64.encode(c).into();
            }),
            None,
            Err("bad_signature"),
        ),
        ("replaced signature", Box::new(|m| m["signature"] = other_sig.clone()), None, Err("bad_signature")),
        ("signature not base64", Box::new(|m| m["signature"] = "!!".into()), None, Err("bad_signature")),
        ("version bumped", Box::new(|m| m["version"] = 9.into()), None, Err("bad_signature")),
        ("expiry removed", Box::new(|m| m["expires"] = Value::Null), None, Err("bad_signature")),
        (
            "signer named as another org",
            Box::new(|m| m["org"] = w.other_org.public().to_string().into()),
            None,
            Err("wrong_signer"),
        ),
        (
            "signed by another org key",
            Box::new(|m| *m = sealed(&w.other_org, &meta(&n1, "password", 2))),
            None,
            Err("wrong_signer"),
        ),
        ("another node's record", Box::new(|m| *m = sealed(&w.org, &meta(&n2, "password", 2))), None, Err("mismatch")),
        ("another name's record", Box::new(|m| *m = sealed(&w.org, &meta(&n1, "username", 2))), None, Err("mismatch")),
        (
            "another generation",
            Box::new(|m| {
                m["generation"] = 2.into();
                resign(&w.org, m);
            }),
            None,
            Err("wrong_generation"),
        ),
        ("a replayed older version", Box::new(|_| {}), Some(3), Err("rollback")),
        (
            "org-signed garbage ciphertext",
            Box::new(|m| {
                m["ciphertext"] = B64.encode([7u8; 40]).into();
                resign(&w.org, m);
            }),
            None,
            Err("decrypt"),
        ),
        (
            "AAD field changed and re-signed",
            Box::new(|m| {
                m["secret_id"] = "other".into();
                resign(&w.org, m);
            }),
            None,
            Err("decrypt"),
        ),
        ("another format", Box::new(|m| m["format"] = "v0".into()), None, Err("malformed")),
        ("missing field", Box::new(|m| drop(m.remove("nonce"))), None, Err("malformed")),
        ("unknown field", Box::new(|m| drop(m.insert("extra".into(), 1.into()))), None, Err("malformed")),
    ];
    for (what, mutate, installed, want) in cases {
        let mut map = good.clone();
        mutate(&mut map);
        let got = verify_secret(&map, &at, expect, 1, installed)
            .and_then(|record| open_secret(&record, &w.org.current().key).map(|v| (record, v)));
        match (got, want) {
            (Ok((record, v)), Ok(())) => {
                assert_eq!(v.expose(), value().expose(), "{what}");
                assert_eq!((record.version, record.expires), (2, Some(2_000_000_000)), "{what}");
            }
            (Err(e), Err(kind)) => assert_eq!(e.kind(), kind, "{what}: {e}"),
            (got, want) => panic!("{what}: got {:?}, want {want:?}", got.map(|(r, _)| r.version)),
        }
    }
}

#[test]
fn a_wrong_k_decrypts_nothing() {
    let w = world();
    let n1 = w.node1.node_id();
    let record = SecretRecord::from_map(&sealed(&w.org, &meta(&n1, "password", 1))).unwrap();
    let other = FleetKey::generate().unwrap();
    assert_eq!(open_secret(&record, &other).unwrap_err(), VerifyError::Decrypt);
}

#[test]
fn the_org_key_entry_opens_only_for_its_node_with_the_org_signature() {
    let w = world();
    let (n1, n2) = (w.node1.node_id(), w.node2.node_id());
    let org_pub = w.org.public();
    let expect = Expect { org: &org_pub, node: &n1 };
    let key = &w.org.current().key;
    let for_node = |org: &OrgKey, generation: u64, node: &str, keys: &NodeKeys| {
        seal_org_key(org, generation, key, node, &keys.recipient()).unwrap().to_map()
    };
    type Mutate<'a> = Box<dyn Fn(&mut Map<String, Value>) + 'a>;
    // (what, mutation, min generation, expected outcome)
    let cases: Vec<(&str, Mutate<'_>, u64, Result<u64, &str>)> = vec![
        ("untouched", Box::new(|_| {}), 1, Ok(1)),
        ("a newer generation", Box::new(|m| *m = for_node(&w.org, 3, &n1, &w.node1)), 1, Ok(3)),
        ("node 2's entry", Box::new(|m| *m = for_node(&w.org, 1, &n2, &w.node2)), 1, Err("mismatch")),
        (
            "signed by another org key",
            Box::new(|m| *m = for_node(&w.other_org, 1, &n1, &w.node1)),
            1,
            Err("wrong_signer"),
        ),
        ("an older generation", Box::new(|_| {}), 2, Err("wrong_generation")),
        ("generation changed", Box::new(|m| m["generation"] = 5.into()), 1, Err("bad_signature")),
        ("K replaced", Box::new(|m| m["k"] = for_node(&w.org, 1, &n1, &w.node1)["k"].clone()), 1, Err("bad_signature")),
        ("for node 1, encrypted to node 2", Box::new(|m| *m = for_node(&w.org, 1, &n1, &w.node2)), 1, Err("org_key")),
        ("not a record", Box::new(|m| *m = Map::new()), 1, Err("malformed")),
    ];
    for (what, mutate, min, want) in cases {
        let mut map = for_node(&w.org, 1, &n1, &w.node1);
        mutate(&mut map);
        match (open_org_key(&map, expect, &w.node1, min), want) {
            (Ok((generation, k)), Ok(g)) => {
                assert_eq!(generation, g, "{what}");
                assert_eq!(k.expose(), key.expose(), "{what}");
            }
            (Err(e), Err(kind)) => assert_eq!(e.kind(), kind, "{what}: {e}"),
            (got, want) => panic!("{what}: got {:?}, want {want:?}", got.map(|(g, _)| g)),
        }
    }
}

#[test]
fn a_status_verifies_against_its_nodes_key_only() {
    let w = world();
    let n1 = w.node1.node_id();
    let installed = BTreeMap::from([("db/password".to_string(), 2)]);
    let good = StatusRecord::signed(&w.node1, 100, 1, installed, vec!["db/x: rollback".into()]).to_map();
    assert_eq!(verify_status(&good, &n1, &w.node1.signer()).unwrap().installed["db/password"], 2);
    let mut altered = good.clone();
    altered["installed"] = json!({"db/password": 3});
    assert_eq!(verify_status(&altered, &n1, &w.node1.signer()).unwrap_err(), VerifyError::BadSignature);
    let other = StatusRecord::signed(&w.node2, 100, 1, BTreeMap::new(), vec![]).to_map();
    assert_eq!(verify_status(&other, &n1, &w.node1.signer()).unwrap_err().kind(), "wrong_signer");
    assert_eq!(verify_status(&good, "node-x", &w.node1.signer()).unwrap_err().kind(), "mismatch");
}

#[test]
fn validity_windows() {
    // (not_before, expires, now, expected)
    let cases = [
        (None, None, 5, Validity::Valid),
        (Some(10), None, 5, Validity::NotYet(10)),
        (Some(10), None, 10, Validity::Valid),
        (None, Some(10), 9, Validity::Valid),
        (None, Some(10), 10, Validity::Expired(10)),
        (Some(20), Some(10), 15, Validity::Expired(10)),
        (Some(10), Some(20), 5, Validity::NotYet(10)),
    ];
    for (not_before, expires, now, want) in cases {
        assert_eq!(validity(not_before, expires, now), want, "{not_before:?} {expires:?} {now}");
    }
}

#[test]
fn empty_or_huge_values_are_not_sealed() {
    let w = world();
    let m = meta(&w.node1.node_id(), "password", 1);
    let key = &w.org.current().key;
    for v in [Vec::new(), vec![b'x'; MAX_VALUE + 1]] {
        assert!(matches!(seal_secret(&w.org, 1, key, &m, &SecretValue::new(v)), Err(SealError::Size)));
    }
}
