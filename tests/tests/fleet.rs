//! The fleet (SPEC §14) against a real central OpenBao: the admin CLI (`security-bootstrap fleet …`)
//! and the library on one side, two nodes' sync (their own cert logins) on the other.
//!
//! - a secret for node 1 only reaches node 1; `--all` reaches both; an update is version 2; an
//!   expired one is removed; one not valid yet is not installed until it is;
//! - node 1 can neither log in as node 2 nor read node 2's subtree nor write its status;
//! - tampering (a flipped ciphertext byte, a replaced signature, a replayed older version, swapped
//!   org-key entries, a record signed by a key that is not the org key) is refused with its typed
//!   error and changes nothing installed;
//! - a revoked node cannot log in; after `org-key rotate` node 1 converges on the new generation with
//!   the same values, and node 2's old K decrypts nothing written since;
//! - no K and no V in any key (any version) of the central mount, read with the root token.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use base64::Engine as _;
use edgeseal_bundle::SignerKey;
use edgeseal_fleet::admin::{self, secrets::Window, Central, Targets};
use edgeseal_fleet::node::{plan, Fetched, Installed, Plan, RemoveReason, Session, SyncError};
use edgeseal_fleet::record::{self, Expect, SecretMeta, VerifyError};
use edgeseal_fleet::{Layout, OrgKey, SecretRef, SecretValue};
use edgeseal_tests::central::{fleet_cli, init_central};
use edgeseal_tests::openbao::OpenBao;
use edgeseal_tests::pki::TestPki;
use openbao_client::{Client, Pin, Token};
use secretstore_setup::identity::NodeIdentity;
use serde_json::{Map, Value};

const TIMEOUT: Duration = Duration::from_secs(30);

struct Node {
    id: String,
    identity: NodeIdentity,
    installed: Installed,
    /// The local store, as the `run` integration would hold it: values by secret.
    values: BTreeMap<SecretRef, String>,
}

impl Node {
    fn new() -> Self {
        let identity = NodeIdentity::generate().unwrap();
        Self { id: identity.keys.node_id(), identity, installed: Installed::default(), values: BTreeMap::new() }
    }

    fn client(&self, bao: &OpenBao) -> Client {
        let tls = self.identity.tls.client_identity().unwrap();
        Client::with_identity(&bao.address(), bao.ca(), &Pin::CaOnly, Some(&tls), TIMEOUT).unwrap()
    }

    async fn login(&self, bao: &OpenBao) -> Result<Session, SyncError> {
        Session::login(self.client(bao), Layout::default(), &self.id).await
    }

    /// One sync at `now`: fetch, plan, apply to the local values, write the signed status.
    async fn sync_at(&mut self, bao: &OpenBao, org: &SignerKey, now: i64) -> Result<(Fetched, Plan), SyncError> {
        let session = self.login(bao).await?;
        let fetched = session.fetch(now).await?;
        let plan = plan(&fetched, org, &self.identity.keys, &self.installed, now)?;
        for delivery in &plan.install {
            let data: Map<String, Value> = serde_json::from_slice(delivery.value.expose()).unwrap();
            self.values.insert(delivery.secret.clone(), data["value"].as_str().unwrap().to_string());
        }
        for (secret, _) in &plan.remove {
            self.values.remove(secret);
        }
        plan.record(&mut self.installed);
        session.write_status(&plan.status(&self.identity.keys, &self.installed, now)).await?;
        session.logout().await;
        Ok((fetched, plan))
    }

    async fn sync(&mut self, bao: &OpenBao, org: &SignerKey) -> Result<(Fetched, Plan), SyncError> {
        self.sync_at(bao, org, edgeseal_fleet::unix_now()).await
    }

    fn value(&self, secret: &str) -> Option<&str> {
        self.values.get(&SecretRef::parse(secret).unwrap()).map(String::as_str)
    }

    fn version(&self, secret: &str) -> Option<u64> {
        self.installed.versions.get(&SecretRef::parse(secret).unwrap()).copied()
    }

    fn identity_file(&self, dir: &Path) -> PathBuf {
        let path = dir.join(format!("{}.json", self.id));
        std::fs::write(&path, serde_json::to_vec_pretty(&self.identity.public()).unwrap()).unwrap();
        path
    }
}

fn ok(output: Output, what: &str) -> String {
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{what}: {:?}\nstdout: {stdout}\nstderr: {stderr}", output.status);
    stdout.into_owned()
}

fn refused_kinds(plan: &Plan) -> Vec<(String, &'static str)> {
    plan.refused.iter().map(|(at, e)| (at.clone(), e.kind())).collect()
}

/// `node`'s org-key entry of the org's current generation, as the admin writes it.
fn org_key_entry(org: &OrgKey, node: &Node) -> Map<String, Value> {
    let g = org.current();
    record::seal_org_key(org, g.number, &g.key, &node.id, &node.identity.keys.recipient()).unwrap().to_map()
}

/// Every path below `path` of the mount (recursively).
async fn every_key(central: &Central, path: &str, out: &mut Vec<String>) {
    let names = match path {
        // The mount's top level (kv_list takes a folder below it).
        "" => {
            let api = format!("{}/metadata/?list=true", central.layout.mount);
            let keys: Value = central
                .client
                .call(hyper::Method::GET, &api, Some(&central.token), None::<&()>, openbao_client::Retry::Idempotent)
                .await
                .unwrap();
            serde_json::from_value(keys["data"]["keys"].clone()).unwrap()
        }
        _ => central.client.kv_list(&central.token, &central.layout.mount, path).await.unwrap(),
    };
    for name in names {
        let full = if path.is_empty() { name.clone() } else { format!("{path}/{name}") };
        match name.strip_suffix('/') {
            Some(_) => Box::pin(every_key(central, full.trim_end_matches('/'), out)).await,
            None => out.push(full),
        }
    }
}

#[test]
fn fleet_end_to_end() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let pki = TestPki::new();
    let bao = OpenBao::start(&pki);
    let (client, root, _) = rt.block_on(init_central(&bao));
    let central = Central { client, token: root.clone(), layout: Layout::default() };
    let dir = tempfile::tempdir().unwrap();
    let org_file = dir.path().join("org.key");
    let org_arg = org_file.to_str().unwrap();

    // The admin makes the org key with the CLI: 0600, its public key printed (and again by `show`).
    let printed = ok(fleet_cli(&bao, &root, &["org-key", "new", "-o", org_arg], b""), "org-key new");
    assert_eq!(std::fs::metadata(&org_file).unwrap().permissions().mode() & 0o777, 0o600);
    let org_pub: SignerKey = printed.trim().parse().unwrap();
    let shown = ok(fleet_cli(&bao, &root, &["org-key", "show", "--org-key", org_arg], b""), "org-key show");
    assert_eq!(shown.trim(), org_pub.to_string());
    let again = fleet_cli(&bao, &root, &["org-key", "new", "-o", org_arg], b"");
    assert_eq!(again.status.code(), Some(64), "an org key file is never replaced");

    // Two nodes enrolled with the CLI from their `node show --json`.
    let mut n1 = Node::new();
    let mut n2 = Node::new();
    for node in [&n1, &n2] {
        let file = node.identity_file(dir.path());
        let args = ["enroll", &node.id, "--identity", file.to_str().unwrap(), "--org-key", org_arg];
        ok(fleet_cli(&bao, &root, &args, b""), "enroll");
    }
    let wrong = n2.identity_file(dir.path());
    let mismatch =
        fleet_cli(&bao, &root, &["enroll", &n1.id, "--identity", wrong.to_str().unwrap(), "--org-key", org_arg], b"");
    assert_ne!(mismatch.status.code(), Some(0), "a node id that is not the identity's is refused");

    // A secret for node 1 only: node 1 gets it, node 2 nothing.
    let set = |secret: &str, target: &[&str], value: &str| {
        let mut args = vec!["secret", "set", secret];
        args.extend_from_slice(target);
        args.extend_from_slice(&["--org-key", org_arg]);
        ok(fleet_cli(&bao, &root, &args, format!("{value}\n").as_bytes()), "secret set")
    };
    set("db/password", &["--node", &n1.id], "s3cret-one");
    rt.block_on(n1.sync(&bao, &org_pub)).unwrap();
    rt.block_on(n2.sync(&bao, &org_pub)).unwrap();
    assert_eq!((n1.value("db/password"), n1.version("db/password")), (Some("s3cret-one"), Some(1)));
    assert!(n2.values.is_empty(), "node 2 got nothing");

    // --all reaches both; an update is version 2 on both.
    set("shared/token", &["--all"], "shared-v1");
    rt.block_on(n1.sync(&bao, &org_pub)).unwrap();
    let (n1_v1_fetch, _) = rt.block_on(n2.sync(&bao, &org_pub)).unwrap();
    let n1_v1_record = rt
        .block_on(central.client.kv_read(&root, "fleet", &format!("nodes/{}/secrets/shared/token", n1.id)))
        .unwrap()
        .unwrap();
    set("shared/token", &["--all"], "shared-v2");
    rt.block_on(n1.sync(&bao, &org_pub)).unwrap();
    let (n2_fetched, _) = rt.block_on(n2.sync(&bao, &org_pub)).unwrap();
    for node in [&n1, &n2] {
        assert_eq!((node.value("shared/token"), node.version("shared/token")), (Some("shared-v2"), Some(2)));
    }
    assert_eq!(n1_v1_fetch.secrets.len(), 1);

    // The admin's status (CLI, JSON) shows what each node installed, signed by it.
    let status: Value =
        serde_json::from_str(&ok(fleet_cli(&bao, &root, &["status", "--json"], b""), "status")).unwrap();
    let report = |id: &str| status["nodes"].as_array().unwrap().iter().find(|n| n["node"] == id).unwrap().clone();
    assert_eq!(report(&n1.id)["installed"], serde_json::json!({"db/password": 1, "shared/token": 2}));
    assert_eq!(report(&n2.id)["installed"], serde_json::json!({"shared/token": 2}));
    assert_eq!(
        (report(&n1.id)["stale"].clone(), report(&n1.id)["behind"].clone()),
        (Value::Bool(false), serde_json::json!([]))
    );
    let table = ok(fleet_cli(&bao, &root, &["status"], b""), "status table");
    assert!(table.contains(&n1.id) && table.contains("ok"), "{table}");

    // Validity windows (through the library: the node's clock is the `now` it plans with).
    let org = OrgKey::load(&org_file).unwrap();
    let now = edgeseal_fleet::unix_now();
    let db = SecretRef::parse("db/password").unwrap();
    let later = SecretRef::parse("later/x").unwrap();
    let one = Targets::Nodes(vec![n1.id.clone()]);
    let value = |v: &str| SecretValue::new(serde_json::to_vec(&serde_json::json!({"value": v})).unwrap());
    let past = Window { not_before: None, expires: Some(now - 60) };
    let written = rt.block_on(admin::secret_set(&central, &org, &db, &one, &value("expired-one"), past)).unwrap();
    assert_eq!(written, vec![(n1.id.clone(), 2)]);
    let future = Window { not_before: Some(now + 3600), expires: None };
    rt.block_on(admin::secret_set(&central, &org, &later, &one, &value("later-one"), future)).unwrap();
    let (_, p) = rt.block_on(n1.sync(&bao, &org_pub)).unwrap();
    assert_eq!(p.remove, vec![(db.clone(), RemoveReason::Expired(now - 60))], "expired: removed");
    assert_eq!(p.waiting, vec![(later.clone(), now + 3600)], "not yet valid: waiting");
    assert_eq!((n1.value("db/password"), n1.value("later/x")), (None, None));
    rt.block_on(n1.sync_at(&bao, &org_pub, now + 3601)).unwrap();
    assert_eq!(n1.value("later/x"), Some("later-one"), "installed once valid");

    // Node 1 cannot log in as node 2, nor read node 2's subtree, nor write its status.
    rt.block_on(async {
        let as_n2 = Session::login(n1.client(&bao), Layout::default(), &n2.id).await;
        assert!(matches!(as_n2, Err(SyncError::Login { .. })), "node 1 logged in as node 2");
        let session = n1.login(&bao).await.unwrap();
        for path in [
            format!("nodes/{}/org-key", n2.id),
            format!("nodes/{}/secrets/shared/token", n2.id),
            format!("nodes/{}/identity", n2.id),
            format!("status/{}", n2.id),
            "org".to_string(),
        ] {
            let denied = session.read(&path).await.unwrap_err();
            assert_eq!(denied.status(), Some(403), "node 1 read {path}: {denied}");
        }
        for folder in [format!("nodes/{}/secrets", n2.id), "nodes".to_string(), "status".to_string()] {
            let listed = central.client.kv_list(session.token(), "fleet", &folder).await;
            assert_eq!(listed.unwrap_err().status(), Some(403), "node 1 listed {folder}");
        }
        let forged = edgeseal_fleet::record::StatusRecord::signed(&n1.identity.keys, now, 1, BTreeMap::new(), vec![]);
        let written = central
            .client
            .kv_write(session.token(), "fleet", &format!("status/{}", n2.id), &forged.to_map(), None)
            .await;
        assert_eq!(written.unwrap_err().status(), Some(403), "node 1 wrote node 2's status");
        let own_id = format!("nodes/{}/identity", n1.id);
        let written = central.client.kv_write(session.token(), "fleet", &own_id, &Map::new(), None).await;
        assert_eq!(written.unwrap_err().status(), Some(403), "node 1 wrote into its own subtree");
    });

    // Tampering by whoever controls the central store: each refused with its error, nothing changes.
    let token_path = format!("nodes/{}/secrets/shared/token", n1.id);
    let good = rt.block_on(central.client.kv_read(&root, "fleet", &token_path)).unwrap().unwrap();
    let other_org = OrgKey::generate().unwrap();
    let forged_meta = SecretMeta {
        node: n1.id.clone(),
        secret: SecretRef::parse("shared/token").unwrap(),
        secret_id: "f00d".into(),
        version: 3,
        not_before: None,
        expires: None,
    };
    let forged = record::seal_secret(&other_org, 1, &other_org.current().key, &forged_meta, &value("forged")).unwrap();
    let other_signature = rt
        .block_on(central.client.kv_read(&root, "fleet", &format!("nodes/{}/secrets/later/x", n1.id)))
        .unwrap()
        .unwrap()["signature"]
        .clone();
    type Tamper = Box<dyn Fn(&mut Map<String, Value>)>;
    let cases: Vec<(&str, Tamper, &str)> = vec![
        (
            "a flipped ciphertext byte",
            Box::new(|m| {
                let b64 = base64::engine::general_purpose::STANDARD;
                let mut c = b64.decode(m["ciphertext"].as_str().unwrap()).unwrap();
                c[3] ^= 0x80;
                m["ciphertext"] = b64.encode(c).into();
            }),
            "bad_signature",
        ),
        ("a replaced signature", Box::new(move |m| m["signature"] = other_signature.clone()), "bad_signature"),
        ("a replayed older version", Box::new(move |m| *m = n1_v1_record.clone()), "rollback"),
        ("a record signed by another key", Box::new(move |m| *m = forged.to_map()), "wrong_signer"),
    ];
    for (what, tamper, kind) in cases {
        let mut map = good.clone();
        tamper(&mut map);
        rt.block_on(central.client.kv_write(&root, "fleet", &token_path, &map, None)).unwrap();
        let (_, p) = rt.block_on(n1.sync(&bao, &org_pub)).unwrap();
        assert_eq!(refused_kinds(&p), vec![("shared/token".to_string(), kind)], "{what}");
        assert!(p.install.is_empty() && p.remove.is_empty(), "{what}: nothing changes");
        assert_eq!((n1.value("shared/token"), n1.version("shared/token")), (Some("shared-v2"), Some(2)), "{what}");
        let reports = rt.block_on(admin::status(&central, Some(&n1.id), 900)).unwrap();
        assert!(
            reports[0].errors.iter().any(|e| e.contains(kind)),
            "{what}: reported in status: {:?}",
            reports[0].errors
        );
    }
    rt.block_on(central.client.kv_write(&root, "fleet", &token_path, &good, None)).unwrap();
    // Swapped org-key entries: node 1 refuses the whole sync, before decrypting anything.
    let (k1_path, k2_path) = (format!("nodes/{}/org-key", n1.id), format!("nodes/{}/org-key", n2.id));
    let entry1 = rt.block_on(central.client.kv_read(&root, "fleet", &k1_path)).unwrap().unwrap();
    let entry2 = rt.block_on(central.client.kv_read(&root, "fleet", &k2_path)).unwrap().unwrap();
    rt.block_on(central.client.kv_write(&root, "fleet", &k1_path, &entry2, None)).unwrap();
    rt.block_on(central.client.kv_write(&root, "fleet", &k2_path, &entry1, None)).unwrap();
    for node in [&mut n1, &mut n2] {
        let before = node.values.clone();
        let swapped = rt.block_on(node.sync(&bao, &org_pub)).unwrap_err();
        assert!(matches!(swapped, SyncError::OrgKey(VerifyError::Mismatch { field: "node", .. })), "{swapped}");
        assert_eq!(node.values, before);
    }
    rt.block_on(central.client.kv_write(&root, "fleet", &k1_path, &entry1, None)).unwrap();
    rt.block_on(central.client.kv_write(&root, "fleet", &k2_path, &entry2, None)).unwrap();
    let (_, p) = rt.block_on(n1.sync(&bao, &org_pub)).unwrap();
    assert!(p.refused.is_empty() && p.install.is_empty(), "converged again: {:?}", refused_kinds(&p));

    // Node 2's K (generation 1), as a stolen device would have kept it.
    let n2_k1 = {
        let expect = Expect { org: &org_pub, node: &n2.id };
        record::open_org_key(n2_fetched.org_key.as_ref().unwrap(), expect, &n2.identity.keys, 0).unwrap().1
    };
    let k1 = *org.current().key.expose();
    assert_eq!(n2_k1.expose(), &k1);

    // Revoke node 2 (CLI): its login fails, and a session it opened before reads nothing more.
    let open_session = rt.block_on(n2.login(&bao)).unwrap();
    ok(fleet_cli(&bao, &root, &["revoke", &n2.id], b""), "revoke");
    let revoked = rt.block_on(n2.sync(&bao, &org_pub)).unwrap_err();
    assert!(matches!(revoked, SyncError::Login { .. }), "{revoked}");
    let denied = rt.block_on(open_session.read(&format!("nodes/{}/identity", n2.id))).unwrap_err();
    assert_eq!(denied.status(), Some(403), "{denied}");
    let status: Value =
        serde_json::from_str(&ok(fleet_cli(&bao, &root, &["status", "--json", "--node", &n2.id], b""), "status"))
            .unwrap();
    assert!(
        status["nodes"][0]["revoked"].is_i64() && status["nodes"][0]["central"] == serde_json::json!({}),
        "{status}"
    );
    let refused = fleet_cli(&bao, &root, &["secret", "set", "x/y", "--node", &n2.id, "--org-key", org_arg], b"v\n");
    assert_eq!(refused.status.code(), Some(1), "a revoked node gets nothing");

    // Rotate (CLI): node 1 converges on generation 2 with the same values, nothing reinstalled.
    let rotated = ok(fleet_cli(&bao, &root, &["org-key", "rotate", "--org-key", org_arg], b""), "rotate");
    assert!(rotated.contains("generation 2"), "{rotated}");
    let org2 = OrgKey::load(&org_file).unwrap();
    assert_eq!((org2.current().number, org2.pending().is_none()), (2, true));
    let k2 = *org2.current().key.expose();
    let (_, p) = rt.block_on(n1.sync(&bao, &org_pub)).unwrap();
    assert_eq!((p.generation, p.install.len(), p.refused.len()), (2, 0, 0));
    assert_eq!((n1.value("shared/token"), n1.value("later/x")), (Some("shared-v2"), Some("later-one")));
    set("shared/token", &["--all"], "shared-v3");
    rt.block_on(n1.sync(&bao, &org_pub)).unwrap();
    assert_eq!((n1.value("shared/token"), n1.version("shared/token")), (Some("shared-v3"), Some(3)));
    // Node 2's old K opens nothing written since: neither the new value nor a re-encrypted one.
    for name in ["shared/token", "later/x"] {
        let path = format!("nodes/{}/secrets/{name}", n1.id);
        let map = rt.block_on(central.client.kv_read(&root, "fleet", &path)).unwrap().unwrap();
        let record = record::SecretRecord::from_map(&map).unwrap();
        assert_eq!(record.generation, 2, "{name}");
        assert_eq!(record::open_secret(&record, &n2_k1).unwrap_err(), VerifyError::Decrypt, "{name}");
    }
    // A replayed generation-1 org-key entry is refused by a node that has seen generation 2.
    rt.block_on(central.client.kv_write(&root, "fleet", &k1_path, &entry1, None)).unwrap();
    let replayed = rt.block_on(n1.sync(&bao, &org_pub)).unwrap_err();
    assert!(matches!(replayed, SyncError::OrgKey(VerifyError::WrongGeneration { expected: 2, got: 1 })), "{replayed}");

    // `secret rm` withdraws a secret at the next sync; setting it again continues the version count.
    ok(fleet_cli(&bao, &root, &["secret", "rm", "later/x", "--node", &n1.id], b""), "secret rm");
    // (the replayed entry above replaced by the current one again)
    rt.block_on(central.client.kv_write(&root, "fleet", &k1_path, &org_key_entry(&org2, &n1), None)).unwrap();
    let (_, p) = rt.block_on(n1.sync(&bao, &org_pub)).unwrap();
    assert_eq!(p.remove, vec![(later.clone(), RemoveReason::Withdrawn)]);
    assert_eq!(n1.value("later/x"), None);
    set("later/x", &["--node", &n1.id], "later-two");
    rt.block_on(n1.sync(&bao, &org_pub)).unwrap();
    assert_eq!((n1.value("later/x"), n1.version("later/x")), (Some("later-two"), Some(2)));

    // Exit codes: a token the central store refuses (77), a central store that does not answer (69).
    let bogus = Token::new("s.not-a-token");
    assert_eq!(fleet_cli(&bao, &bogus, &["status"], b"").status.code(), Some(77));
    let unknown = fleet_cli(&bao, &root, &["status", "--node", "node-nope"], b"");
    assert_eq!(unknown.status.code(), Some(64), "{}", String::from_utf8_lossy(&unknown.stderr));

    // Scan: every version of every key of the central mount, read with the root token.
    let mut keys = Vec::new();
    rt.block_on(every_key(&central, "", &mut keys));
    assert!(keys.len() >= 8, "{keys:?}");
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut needles: Vec<String> = Vec::new();
    for k in [k1, k2] {
        needles.extend([hex::encode(k), b64.encode(k), String::from_utf8_lossy(&k).into_owned()]);
    }
    for v in ["s3cret-one", "shared-v1", "shared-v2", "shared-v3", "expired-one", "later-one"] {
        needles.extend([v.to_string(), hex::encode(v), b64.encode(v)]);
    }
    let mut scanned = 0;
    for key in &keys {
        let meta = rt.block_on(central.client.kv_metadata(&root, "fleet", key)).unwrap().unwrap();
        for version in meta.versions.keys() {
            let read = rt.block_on(central.client.kv_read_version(&root, "fleet", key, version.parse().ok())).unwrap();
            let Some(read) = read else { continue };
            let text = serde_json::to_string(&read.data).unwrap();
            for needle in &needles {
                assert!(!text.contains(needle.as_str()), "{key} v{version} holds a plaintext K or V");
            }
            scanned += 1;
        }
    }
    assert!(scanned > keys.len(), "older versions were scanned too ({scanned})");
}

/// `org-key new` killed after writing the file: the next command finishes setting the store up.
/// A rotation killed after the org key file gained the next K and part of the store was rewritten
/// (steps 1 and part of 2 of `admin::rotate`): nodes keep what they have, other writes are refused
/// until `org-key rotate` runs again, which converges; the cache serves a node while the store is down.
#[test]
fn an_interrupted_rotation_converges_and_the_cache_serves_offline() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let pki = TestPki::new();
    let mut bao = OpenBao::start(&pki);
    let (client, root, _) = rt.block_on(init_central(&bao));
    let central = Central { client, token: root.clone(), layout: Layout::default() };
    let dir = tempfile::tempdir().unwrap();
    let org_file = dir.path().join("org.key");
    let org_arg = org_file.to_str().unwrap();
    // `org-key new` killed right after writing the file: the next command sets the store up.
    let org = OrgKey::generate().unwrap();
    org.create(&org_file).unwrap();
    assert!(rt.block_on(central.org_record()).unwrap().is_none(), "no fleet in the store yet");
    let org_pub = org.public();
    let mut n1 = Node::new();
    rt.block_on(admin::enroll(&central, &org, &n1.id, &n1.identity.public())).unwrap();
    assert_eq!(rt.block_on(central.org_record()).unwrap().unwrap().org, org_pub.to_string());
    let one = Targets::Nodes(vec![n1.id.clone()]);
    let value = |v: &str| SecretValue::new(serde_json::to_vec(&serde_json::json!({"value": v})).unwrap());
    for (secret, v) in [("a/one", "value-one"), ("a/two", "value-two")] {
        let secret = SecretRef::parse(secret).unwrap();
        rt.block_on(admin::secret_set(&central, &org, &secret, &one, &value(v), Window::default())).unwrap();
    }
    rt.block_on(n1.sync(&bao, &org_pub)).unwrap();
    assert_eq!((n1.value("a/one"), n1.value("a/two")), (Some("value-one"), Some("value-two")));

    // The crash: the file holds both keys; one record is already of generation 2.
    let mut interrupted = OrgKey::load(&org_file).unwrap();
    assert_eq!(interrupted.begin_rotation().unwrap(), 2);
    interrupted.save(&org_file).unwrap();
    let path = format!("nodes/{}/secrets/a/one", n1.id);
    let map = rt.block_on(central.client.kv_read(&root, "fleet", &path)).unwrap().unwrap();
    let old = record::SecretRecord::from_map(&map).unwrap();
    let v = record::open_secret(&old, interrupted.key_for(1).unwrap()).unwrap();
    let meta = SecretMeta {
        node: n1.id.clone(),
        secret: SecretRef::parse("a/one").unwrap(),
        secret_id: old.secret_id.clone(),
        version: old.version,
        not_before: None,
        expires: None,
    };
    let rewritten = record::seal_secret(&interrupted, 2, interrupted.key_for(2).unwrap(), &meta, &v).unwrap();
    rt.block_on(central.client.kv_write(&root, "fleet", &path, &rewritten.to_map(), None)).unwrap();

    // Mid-rotation: the node refuses the record it cannot open yet and keeps its value.
    let (_, p) = rt.block_on(n1.sync(&bao, &org_pub)).unwrap();
    assert_eq!(refused_kinds(&p), vec![("a/one".to_string(), "wrong_generation")]);
    assert_eq!((n1.value("a/one"), n1.value("a/two")), (Some("value-one"), Some("value-two")));
    let refused = fleet_cli(&bao, &root, &["secret", "set", "a/three", "--all", "--org-key", org_arg], b"x\n");
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("run `security-bootstrap fleet org-key rotate` again"));

    // The re-run finishes with the same K and converges; the node follows.
    let out = ok(fleet_cli(&bao, &root, &["org-key", "rotate", "--org-key", org_arg], b""), "rotate re-run");
    assert!(out.contains("generation 2: 1 node(s) given the new K, 1 secret record(s) re-encrypted"), "{out}");
    let finished = OrgKey::load(&org_file).unwrap();
    assert_eq!(finished.current().key.expose(), interrupted.key_for(2).unwrap().expose(), "the pending K was kept");
    assert!(finished.pending().is_none() && finished.key_for(1).is_none(), "the old K is forgotten");
    let (fetched, p) = rt.block_on(n1.sync(&bao, &org_pub)).unwrap();
    assert_eq!((p.generation, p.refused.len(), p.install.len()), (2, 0, 0));
    assert_eq!(rt.block_on(central.org_record()).unwrap().unwrap().generation, 2);

    // The central store stops: a reboot with an empty local store installs from the cache.
    let cache = tempfile::tempdir().unwrap();
    edgeseal_fleet::cache::save(cache.path(), &fetched).unwrap();
    bao.stop();
    let offline = rt.block_on(n1.login(&bao));
    assert!(matches!(offline, Err(SyncError::Login { .. })));
    assert_eq!(fleet_cli(&bao, &root, &["status"], b"").status.code(), Some(69), "the central store is down");
    let cached = edgeseal_fleet::cache::load(cache.path()).unwrap().unwrap();
    let fresh = Installed { generation: n1.installed.generation, versions: BTreeMap::new() };
    let p = plan(&cached, &org_pub, &n1.identity.keys, &fresh, edgeseal_fleet::unix_now()).unwrap();
    let mut values: Vec<(String, String)> = p
        .install
        .iter()
        .map(|d| {
            let data: Map<String, Value> = serde_json::from_slice(d.value.expose()).unwrap();
            (d.secret.to_string(), data["value"].as_str().unwrap().to_string())
        })
        .collect();
    values.sort();
    assert_eq!(values, [("a/one", "value-one"), ("a/two", "value-two")].map(|(a, b)| (a.into(), b.into())).to_vec());
}
