//! `make bench` — a fleet of `BENCH_NODES` (default 1,000) simulated nodes against one local central
//! OpenBao 2.7 (raft, TLS, file audit, on loopback), issue 14. Each node is a task with its own node
//! identity (age + Ed25519 keys, a P-256 TLS client certificate), enrolled by the admin library, and
//! syncing as `run` does: a TLS client of its own, the `cert` login as itself, fetch, verify and
//! decrypt (`edgeseal_fleet::node::plan`), a signed status, logout. `BENCH_CONCURRENCY` (default 8)
//! nodes work at once.
//!
//! Measured, each beside the floor — the same OpenBao requests sent directly, with no signature, no
//! encryption and no verification (what any client of that layout pays to OpenBao itself):
//!
//! 1. enrollment (identity record, policy, org-key entry, cert entry) per second;
//! 2. `secret set --all`: one record per node, per second;
//! 3. syncs per second with nothing changed, and with one changed secret to install;
//! 4. central storage per node (the raft directory's growth over the run, divided by the nodes).
//!
//! The README extrapolates to 100,000 nodes at a 5-minute interval on a 3-node raft cluster.
//!
//! Environment: `EDGESEAL_BAO`, `BENCH_NODES`, `BENCH_CONCURRENCY`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgeseal_fleet::admin::secrets::{Targets, Window};
use edgeseal_fleet::admin::{self, Central};
use edgeseal_fleet::node::{plan, Installed, Session};
use edgeseal_fleet::{record, Layout, SecretRef, SecretValue};
use edgeseal_tests::bench::{bao_version, cpus, env_count, loadavg, Figure};
use edgeseal_tests::central::init_central;
use edgeseal_tests::openbao::{bao_binary, OpenBao};
use edgeseal_tests::pki::TestPki;
use edgeseal_tests::regular_files_below;
use openbao_client::{Client, Pin};
use secretstore_setup::identity::NodeIdentity;
use serde_json::{json, Map, Value};
use tokio::sync::Mutex;

const TIMEOUT: Duration = Duration::from_secs(60);
/// The interval and fleet size the README extrapolates to.
const TARGET_NODES: f64 = 100_000.0;
const TARGET_INTERVAL_SECS: f64 = 300.0;

/// A node id of the enrollment floor, its sealed org-key entry and its certificate.
type FloorNode = (String, Map<String, Value>, String);

/// One simulated node.
struct SimNode {
    id: String,
    identity: NodeIdentity,
    installed: Mutex<Installed>,
    /// Its last signed status (what the floor writes back, same size).
    status: Mutex<Map<String, Value>>,
}

impl SimNode {
    fn client(&self, bao: &OpenBao) -> Client {
        let tls = self.identity.tls.client_identity().unwrap();
        Client::with_identity(&bao.address(), bao.ca(), &Pin::CaOnly, Some(&tls), TIMEOUT).unwrap()
    }

    /// One sync as `run` does it; the number of items installed.
    async fn sync(&self, bao: &OpenBao, org: &edgeseal_bundle::SignerKey) -> usize {
        let session = Session::login(self.client(bao), Layout::default(), &self.id).await.unwrap();
        let now = edgeseal_fleet::unix_now();
        let fetched = session.fetch(now).await.unwrap();
        let mut installed = self.installed.lock().await;
        let plan = plan(&fetched, org, &self.identity.keys, &installed, now).unwrap();
        assert!(
            plan.refused.is_empty(),
            "refused: {:?}",
            plan.refused.iter().map(|(a, e)| (a, e.kind())).collect::<Vec<_>>()
        );
        plan.record(&mut installed);
        let status = plan.status(&self.identity.keys, &installed, now);
        session.write_status(&status).await.unwrap();
        *self.status.lock().await = status.to_map();
        session.logout().await;
        plan.install.len()
    }

    /// The floor of a sync: the same requests, sent directly (no verification, no decryption, the
    /// last status written back as it is).
    async fn raw_sync(&self, bao: &OpenBao) {
        let layout = Layout::default();
        let client = self.client(bao);
        let token = client.cert_login(&layout.cert_mount, &self.id).await.unwrap().client_token;
        client.kv_read(&token, &layout.mount, &layout.org_key(&self.id)).await.unwrap();
        for service in client.kv_list(&token, &layout.mount, &layout.secrets(&self.id)).await.unwrap() {
            let folder = layout.service(&self.id, service.trim_end_matches('/'));
            for name in client.kv_list(&token, &layout.mount, &folder).await.unwrap() {
                client.kv_read(&token, &layout.mount, &format!("{folder}/{name}")).await.unwrap();
            }
        }
        let status = self.status.lock().await.clone();
        client.kv_write(&token, &layout.mount, &layout.status(&self.id), &status, None).await.unwrap();
        client.revoke_self(&token).await.unwrap();
    }
}

/// Runs `work(i)` for i in 0..n, `concurrency` at a time; the wall time.
async fn concurrently<F, Fut>(n: usize, concurrency: usize, work: F) -> Duration
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let work = Arc::new(work);
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (next, work) = (next.clone(), work.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    work(i).await;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    started.elapsed()
}

/// Bytes of the store's files below `dir` (not its logs: the audit log and OpenBao's own).
fn bytes_below(dir: &Path) -> u64 {
    regular_files_below(dir)
        .iter()
        .filter(|f| !f.file_name().is_some_and(|n| n.to_string_lossy().contains("log")))
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum()
}

fn rate(n: usize, took: Duration) -> f64 {
    n as f64 / took.as_secs_f64()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n = env_count("BENCH_NODES", 1000, 10);
    let concurrency = env_count("BENCH_CONCURRENCY", 8, 1);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let pki = TestPki::new();
    let bao = Arc::new(OpenBao::start(&pki));
    let (client, root, _) = rt.block_on(init_central(&bao));
    let central = Arc::new(Central { client: client.clone(), token: root.clone(), layout: Layout::default() });
    let dir = tempfile::tempdir().unwrap();
    let org = Arc::new(rt.block_on(admin::org_key_new(&central, &dir.path().join("org.key"))).unwrap());
    let org_public = Arc::new(org.public());
    let storage_before = bytes_below(bao.dir());

    let made = Instant::now();
    let nodes: Arc<Vec<SimNode>> = Arc::new(
        (0..n)
            .map(|_| {
                let identity = NodeIdentity::generate().unwrap();
                let id = identity.keys.node_id();
                SimNode { id, identity, installed: Mutex::new(Installed::default()), status: Mutex::new(Map::new()) }
            })
            .collect(),
    );
    eprintln!("{n} node identities made in {:.1} s", made.elapsed().as_secs_f64());

    // 1. Enrollment, and its floor: the same four writes for as many other node ids, directly.
    let enroll = rt.block_on(concurrently(n, concurrency, {
        let (central, org, nodes) = (central.clone(), org.clone(), nodes.clone());
        move |i| {
            let (central, org, nodes) = (central.clone(), org.clone(), nodes.clone());
            async move {
                let node = &nodes[i];
                admin::enroll(&central, &org, &node.id, &node.identity.public()).await.unwrap();
            }
        }
    }));
    eprintln!("enrolled {n} nodes in {:.1} s", enroll.as_secs_f64());
    let floor_ids: Arc<Vec<FloorNode>> = Arc::new(
        nodes
            .iter()
            .map(|node| {
                let id = format!("floor-{}", node.id);
                let g = org.current();
                let entry = record::seal_org_key(&org, g.number, &g.key, &id, &node.identity.keys.recipient()).unwrap();
                (id, entry.to_map(), node.identity.tls.cert.clone())
            })
            .collect(),
    );
    // The floor writes into a KV mount of its own (same engine, same layout), so that `--all` below
    // sees only the fleet's nodes.
    rt.block_on(client.enable_mount(&root, "floor", "kv", json!({"version": "2"}))).unwrap();
    let floor_layout = Arc::new(Layout::new("floor", "fleet-cert").unwrap());
    let enroll_floor = rt.block_on(concurrently(n, concurrency, {
        let (central, floor_ids, floor_layout) = (central.clone(), floor_ids.clone(), floor_layout.clone());
        move |i| {
            let (central, floor_ids, l) = (central.clone(), floor_ids.clone(), floor_layout.clone());
            async move {
                let (id, entry, cert) = &floor_ids[i];
                let (c, t) = (&central.client, &central.token);
                let identity = Map::from_iter([("public".to_string(), json!({"node_id": id, "tls_cert": cert}))]);
                c.kv_write(t, &l.mount, &l.identity(id), &identity, None).await.unwrap();
                c.write_policy(t, &l.policy_name(id), &l.policy(id)).await.unwrap();
                c.kv_write(t, &l.mount, &l.org_key(id), entry, None).await.unwrap();
                c.write_cert_entry(t, &l.cert_mount, id, cert, &[&l.policy_name(id)], 3600).await.unwrap();
            }
        }
    }));

    // 2. One secret for every node (edgeseal's `secret set --all`, one record per node).
    let secret = SecretRef::parse("app/api-key").unwrap();
    let value = SecretValue::new(serde_json::to_vec(&json!({"value": "fleet-bench-value-1"})).unwrap());
    let started = Instant::now();
    let set =
        rt.block_on(admin::secret_set(&central, &org, &secret, &Targets::All, &value, Window::default())).unwrap();
    let publish = started.elapsed();
    assert_eq!(set.len(), n);

    // 3. Syncs: the first installs the secret (not timed), then nothing changed, then one change.
    let sync_all = |expect: usize| {
        let (nodes, bao, org_public) = (nodes.clone(), bao.clone(), org_public.clone());
        concurrently(n, concurrency, move |i| {
            let (nodes, bao, org_public) = (nodes.clone(), bao.clone(), org_public.clone());
            async move {
                let installed = nodes[i].sync(&bao, &org_public).await;
                assert_eq!(installed, expect, "node {i}");
            }
        })
    };
    rt.block_on(sync_all(1));
    let unchanged = rt.block_on(sync_all(0));
    let raw = rt.block_on(concurrently(n, concurrency, {
        let (nodes, bao) = (nodes.clone(), bao.clone());
        move |i| {
            let (nodes, bao) = (nodes.clone(), bao.clone());
            async move { nodes[i].raw_sync(&bao).await }
        }
    }));
    let value = SecretValue::new(serde_json::to_vec(&json!({"value": "fleet-bench-value-2"})).unwrap());
    rt.block_on(admin::secret_set(&central, &org, &secret, &Targets::All, &value, Window::default())).unwrap();
    let changed = rt.block_on(sync_all(1));
    let storage_per_node = bytes_below(bao.dir()).saturating_sub(storage_before) as f64 / (2 * n) as f64;
    // What one node's current records weigh (identity, org-key entry, the secret, the status).
    let layout = Layout::default();
    let id = &nodes[0].id;
    let record_bytes: usize = [layout.identity(id), layout.org_key(id), layout.secret(id, &secret), layout.status(id)]
        .iter()
        .map(|path| {
            let data = rt.block_on(client.kv_read(&root, &layout.mount, path)).unwrap().unwrap_or_default();
            serde_json::to_vec(&data).unwrap().len()
        })
        .sum();

    let (sync_rate, raw_rate, changed_rate) = (rate(n, unchanged), rate(n, raw), rate(n, changed));
    println!(
        "fleet: {n} simulated nodes, {concurrency} at a time, one local central OpenBao (release build; {} CPUs, load {}; {})",
        cpus(),
        loadavg(),
        bao_version(&bao_binary())
    );
    println!("| benchmark | edgeseal fleet | floor: the same OpenBao requests, directly | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| enrollment | {:.0} nodes/s | {:.0}/s | {:.2}x |",
        rate(n, enroll),
        rate(n, enroll_floor),
        rate(n, enroll) / rate(n, enroll_floor)
    );
    println!("| `secret set --all` (one record per node) | {:.0} records/s | | |", rate(n, publish));
    println!("| sync, nothing changed | {sync_rate:.0} syncs/s | {raw_rate:.0}/s | {:.2}x |", sync_rate / raw_rate);
    println!(
        "| sync, one secret changed (installed) | {changed_rate:.0} syncs/s | | {:.2}x |",
        changed_rate / raw_rate
    );
    println!(
        "| central storage per node: its current records (identity, org-key entry, one secret, status) | {:.1} kB of JSON; the raft files grew {:.1} kB per node, floor's included (KV v2 keeps old versions; bbolt grows in steps) | | |",
        record_bytes as f64 / 1000.0,
        storage_per_node / 1000.0
    );
    let needed = TARGET_NODES / TARGET_INTERVAL_SECS;
    println!(
        "100,000 nodes every 5 min need {needed:.0} syncs/s; this one-node central store does {sync_rate:.0}/s ({:.0}% of it)",
        100.0 * sync_rate / needed
    );
    Figure::new("fleet", &format!("sync, nothing changed, {n} nodes"), format!("{sync_rate:.0}/s"), "reported", true)
        .against(format!("the same requests directly: {raw_rate:.0}/s"), format!("{:.2}x", sync_rate / raw_rate))
        .record();
    Figure::new("fleet", &format!("enrollment, {n} nodes"), format!("{:.0}/s", rate(n, enroll)), "reported", true)
        .against(
            format!("the same writes directly: {:.0}/s", rate(n, enroll_floor)),
            format!("{:.2}x", rate(n, enroll) / rate(n, enroll_floor)),
        )
        .record();
}
