//! The fleet's records (SPEC §14) as a node and the admin read them from the central store or the
//! cache: `edgeseal_fleet::record::{SecretRecord::from_map, verify_secret, open_secret,
//! open_org_key, verify_status}`, `edgeseal_fleet::node::plan` on a cache file, and
//! `edgeseal_fleet::OrgKey::from_bytes` (the org key file).
//!
//! Properties:
//! - no input panics any of them;
//! - a secret record that parses round-trips: `from_map(to_map(r)) == r`;
//! - an org key file that parses round-trips (public key, generation, pending generation);
//! - nothing is installed from a record that does not verify against the fixed org key.

#![no_main]

use std::sync::OnceLock;

use edgeseal_bundle::NodeKeys;
use edgeseal_fleet::node::{plan, Fetched, Installed};
use edgeseal_fleet::record::{open_org_key, open_secret, verify_secret, verify_status, Expect, SecretRecord};
use edgeseal_fleet::{OrgKey, SecretRef};
use edgeseal_fuzz::{FLEET_NODE_KEYS, FLEET_ORG_KEY_FILE};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

fn fixed() -> &'static (OrgKey, NodeKeys) {
    static FIXED: OnceLock<(OrgKey, NodeKeys)> = OnceLock::new();
    FIXED.get_or_init(|| {
        let org = OrgKey::from_bytes(FLEET_ORG_KEY_FILE.as_bytes()).expect("the fixed org key parses");
        let keys = NodeKeys::from_item(FLEET_NODE_KEYS.as_bytes()).expect("the fixed node keys parse");
        (org, keys)
    })
}

fuzz_target!(|data: &[u8]| {
    let (org, keys) = fixed();
    let org_pub = org.public();
    let node = keys.node_id();
    let expect = Expect { org: &org_pub, node: &node };

    if let Ok(file) = OrgKey::from_bytes(data) {
        let again = OrgKey::from_bytes(&file.to_bytes()).expect("an accepted org key file round-trips");
        assert_eq!(again.public(), file.public());
        assert_eq!(again.current().number, file.current().number);
        assert_eq!(again.pending().map(|g| g.number), file.pending().map(|g| g.number));
    }

    if let Ok(map) = serde_json::from_slice::<Map<String, Value>>(data) {
        if let Ok(record) = SecretRecord::from_map(&map) {
            assert_eq!(SecretRecord::from_map(&record.to_map()).as_ref(), Ok(&record));
            let at = SecretRef::new(&record.service, &record.name).unwrap_or_else(|_| SecretRef::parse("a/b").unwrap());
            if let Ok(verified) = verify_secret(&map, &at, expect, record.generation, None) {
                let _ = open_secret(&verified, &org.current().key);
            }
        }
        let _ = open_org_key(&map, expect, keys, 0);
        let _ = verify_status(&map, &node, &keys.signer());
    }

    if let Ok(fetched) = serde_json::from_slice::<Fetched>(data) {
        if let Ok(p) = plan(&fetched, &org_pub, keys, &Installed::default(), 1_000) {
            // Only what verified against the org key can be installed: the fuzzer cannot sign.
            for delivery in &p.install {
                let map = &fetched.secrets[&delivery.secret.to_string()];
                assert!(verify_secret(map, &delivery.secret, expect, p.generation, None).is_ok());
            }
        }
    }
});
