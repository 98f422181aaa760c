//! One local user cannot stop the token service (SPEC §11): connections are capped per peer (a host
//! uid or a container) and in total, a connection over a cap is answered at once and closed instead
//! of waiting for a slot, the open-file limit is raised so descriptors do not run out first, and
//! `/v1/health` is cached and rate-limited. Against a real OpenBao, with the real `security-bootstrap
//! token-server` process where the descriptor limit matters, and a second uid as the victim.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use edgeseal_tests::device::{service, Device};
use edgeseal_tests::docker::{Docker, RunSpec};
use edgeseal_tests::openbao::OpenBao;
use edgeseal_tests::pki::TestPki;
use edgeseal_tests::process::ChildGuard;
use edgeseal_tests::token_server::{raw_request, TestServer};
use edgeseal_tests::{poll_until, wait_until};
use secretstore_setup::setup::Setup;
use security_bootstrap::config::ServiceName;
use token_server::config::{DockerSelector, Selectors, ServerConfig, ServiceRule, UnixSelector};

/// The victim's uid: another local user whose service must keep getting tokens.
const VICTIM_UID: u32 = 4321;
/// The default `token_server.max_connections_per_peer`.
const PER_PEER: usize = 64;
const HEALTH: &[u8] = b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

struct World {
    _pki: TestPki,
    bao: OpenBao,
    device: Device,
    setup: Setup,
    /// World-readable: the client binary and the socket directory.
    public: tempfile::TempDir,
}

fn world() -> World {
    let pki = TestPki::new();
    let bao = OpenBao::start(&pki);
    let device = Device::new();
    let setup = device.setup(&bao, vec![service("hostsvc", &["api-key"], None)]);
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(setup.run()).unwrap();
    let public = edgeseal_tests::public_client_dir();
    World { _pki: pki, bao, device, setup, public }
}

impl World {
    fn client(&self) -> PathBuf {
        self.public.path().join("security-bootstrap")
    }

    fn socket(&self) -> PathBuf {
        self.public.path().join("run/token.sock")
    }

    /// `hostsvc` is the victim uid running the client binary.
    fn rule(&self) -> ServiceRule {
        ServiceRule {
            name: "hostsvc".into(),
            role: secretstore_setup::setup::policy::service_role_name("hostsvc"),
            selectors: Selectors {
                unix: Some(UnixSelector { uid: Some(VICTIM_UID), path: Some(self.client()), ..Default::default() }),
                docker: None,
            },
            ttl: Some(Duration::from_secs(600)),
            reuse: false,
            batch: false,
        }
    }

    fn config(&self) -> ServerConfig {
        ServerConfig { socket: self.socket(), docker_socket: None, ..ServerConfig::default() }
    }

    /// `security-bootstrap token` as the victim uid; waits for it however long it takes.
    fn victim_fetch(&self) -> Output {
        Command::new(self.client())
            .arg("token")
            .arg("--socket")
            .arg(self.socket())
            .uid(VICTIM_UID)
            .gid(VICTIM_UID)
            .output()
            .unwrap()
    }

    /// The real token server, started with a soft open-file limit of 1024 (the hard limit as this
    /// test has it), as many systems start services; returns once `/v1/health` answers 200.
    fn start_real_server(&self, tweak: impl FnOnce(&mut ServerConfig)) -> ChildGuard {
        let mut config = self.device.config(&self.setup);
        config.token_server = ServerConfig { socket: self.socket(), docker_socket: None, ..ServerConfig::default() };
        tweak(&mut config.token_server);
        let service = config.services.get_mut(&ServiceName("hostsvc".into()));
        service.expect("the setup has the service hostsvc").selectors = self.rule().selectors;
        let path = self.device.write_yaml(&config);
        let log = fs::File::create(self.device.path().join("token-server.log")).unwrap();
        let child = Command::new("prlimit")
            .arg(format!("--nofile=1024:{}", nofile(std::process::id()).1))
            .arg("--")
            .arg(self.client())
            .args(["token-server", "--config"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut guard = ChildGuard::new("token-server", child);
        wait_until("the token server answers /v1/health with 200", Duration::from_secs(120), || {
            assert!(guard.exited().is_none(), "the token server exited:\n{}", self.server_log());
            (self.socket().exists() && raw_request(&self.socket(), HEALTH).0 == 200).then_some(())
        });
        guard
    }

    fn server_log(&self) -> String {
        fs::read_to_string(self.device.path().join("token-server.log")).unwrap_or_default()
    }

    /// `auth/token/lookup-self` calls OpenBao has answered (each health probe makes one).
    fn lookups_in_audit_log(&self) -> usize {
        fs::read_to_string(self.bao.audit_log())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["type"] == "response" && v["request"]["path"] == "auth/token/lookup-self")
            .count()
    }
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// The soft and hard "Max open files" of a process.
fn nofile(pid: u32) -> (u64, u64) {
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let fields: Vec<u64> = line.split_whitespace().skip(3).take(2).map(|v| v.parse().unwrap()).collect();
    (fields[0], fields[1])
}

/// Whether the server still holds `stream` open without having answered on it.
fn held_open(stream: &mut UnixStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    matches!(stream.read(&mut byte), Err(e) if e.kind() == ErrorKind::WouldBlock)
}

/// Reads what the server sent on `stream` until it closed it; `None` while it is still open.
fn answer_if_closed(stream: &mut UnixStream, buf: &mut Vec<u8>) -> Option<String> {
    stream.set_nonblocking(true).unwrap();
    let mut chunk = [0u8; 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return Some(String::from_utf8_lossy(buf).into_owned()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return None,
            Err(e) => panic!("reading a flood connection: {e}"),
        }
    }
}

/// (a) + (c): uid 0 opens 400 idle connections — more than its cap, and more than a soft limit of
/// 1024 descriptors holds at three per connection. The server keeps 64 of them, answers the rest at
/// once with 429 and a message saying why, and the victim uid gets its token while the 64 are still
/// held open. Before: the accept loop stopped on EMFILE (or the global semaphore) and the victim
/// waited in the kernel's queue until the flood's connections expired.
#[test]
fn a_flood_of_idle_connections_from_one_uid_does_not_stop_another_uid() {
    let w = world();
    // Idle connections would otherwise be dropped after 5 s; here they stay for their whole lifetime.
    let server = w.start_real_server(|c| c.header_timeout = Duration::from_secs(3600));

    let mut flood: Vec<UnixStream> = (0..400).map(|_| UnixStream::connect(w.socket()).unwrap()).collect();

    // The victim, another uid, connects after the whole flood (the kernel queues connections in order)
    // and is served.
    let out = w.victim_fetch();
    assert!(out.status.success(), "the other uid gets its token: {}\n{}", text(&out), w.server_log());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["service"], "hostsvc");

    // By then the server had decided on every flood connection: all but PER_PEER were answered 429
    // and closed (their answers may still be on the way), and the PER_PEER are still held open, so
    // the victim was served while the flood held everything it was allowed to hold.
    let mut answers: Vec<Option<String>> = vec![None; flood.len()];
    let mut buffers: Vec<Vec<u8>> = vec![Vec::new(); flood.len()];
    let over_the_cap = flood.len() - PER_PEER;
    let all_shed = poll_until(Duration::from_secs(120), || {
        for (i, stream) in flood.iter_mut().enumerate() {
            if answers[i].is_none() {
                answers[i] = answer_if_closed(stream, &mut buffers[i]);
                if let Some(answer) = &answers[i] {
                    assert!(
                        answer.starts_with("HTTP/1.1 429 "),
                        "flood connection {i} was closed with {answer:?}: a connection over the per-peer cap \
                         is answered 429, one within it stays open"
                    );
                    let body: serde_json::Value =
                        serde_json::from_str(answer.split_once("\r\n\r\n").unwrap().1).unwrap();
                    let error = body["error"].as_str().unwrap();
                    assert!(
                        error.contains("too many open connections from uid 0 (at most 64)")
                            && error.contains("close idle"),
                        "{error}"
                    );
                }
            }
        }
        (answers.iter().filter(|a| a.is_some()).count() >= over_the_cap).then_some(())
    });
    assert!(
        all_shed.is_some(),
        "connections over the per-peer cap were not shed: {} of {} answered\n{}",
        answers.iter().filter(|a| a.is_some()).count(),
        flood.len(),
        w.server_log()
    );
    let held: Vec<&mut UnixStream> =
        flood.iter_mut().zip(&answers).filter(|(_, a)| a.is_none()).map(|(s, _)| s).collect();
    assert_eq!(held.len(), PER_PEER);
    for stream in held {
        assert!(held_open(stream), "the flood's connections within the cap are still open");
    }
    let (soft, hard) = nofile(server.pid());
    assert!(hard > 1024 * 2, "this test needs a hard open-file limit above 2048, found {hard}");
    assert_eq!(soft, hard, "the open-file limit was raised from 1024 to the hard limit");
    let log = w.server_log();
    assert!(log.contains("before=1024") && log.contains(&format!("now={hard}")), "the raise is logged:\n{log}");
    // A shed connection frees nothing the flood could hold: closing the held ones lets uid 0 in again.
    drop(flood);
    wait_until("uid 0 is served again once its connections are closed", Duration::from_secs(120), || {
        (raw_request(&w.socket(), HEALTH).0 == 200).then_some(())
    });
}

/// (c) the global cap: a connection over `max_connections` is answered 503 at once (it does not wait
/// in the accept queue for a slot), with a message saying to retry.
#[test]
fn a_connection_over_the_global_cap_is_answered_503_at_once() {
    let w = world();
    let config = ServerConfig { max_connections: 3, header_timeout: Duration::from_secs(3600), ..w.config() };
    let server = TestServer::start(&w.setup, config, vec![w.rule()], None, |_| {});
    let mut idle: Vec<UnixStream> = (0..3).map(|_| UnixStream::connect(server.socket()).unwrap()).collect();
    let mut over = UnixStream::connect(server.socket()).unwrap();
    over.write_all(HEALTH).unwrap();
    let mut answer = String::new();
    over.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer:?}");
    assert!(answer.contains("holds its most connections (3); retry shortly"), "{answer}");
    assert!(idle.iter_mut().all(held_open), "the three connections within the cap are still held open");
    drop(idle);
    wait_until("a slot frees when a connection closes", Duration::from_secs(120), || {
        (raw_request(server.socket(), HEALTH).0 == 200).then_some(())
    });
}

/// (b) 100 health requests in a row make at most one OpenBao probe per second (default
/// `health_cache: 1s`), counted in OpenBao's own audit log; before, each made a `sys/health` and an
/// audited `lookup-self`. Health is rate-limited per peer like every other request.
#[test]
fn health_requests_are_cached_and_rate_limited() {
    let w = world();
    let server = TestServer::start(&w.setup, w.config(), vec![w.rule()], None, |_| {});
    let before = w.lookups_in_audit_log();
    let started = Instant::now();
    for _ in 0..100 {
        let (status, body) = raw_request(server.socket(), HEALTH);
        assert_eq!(status, 200, "{body}");
    }
    let elapsed = started.elapsed();
    let probes = w.lookups_in_audit_log() - before;
    let most = elapsed.as_secs() as usize + 1;
    assert!(probes >= 1 && probes <= most, "{probes} OpenBao probes for 100 health requests in {elapsed:?}");
    assert_eq!(
        server.state.metrics.health_probes.load(Ordering::Relaxed) as usize,
        probes,
        "the server counts its probes"
    );
    drop(server);

    // No refill: the burst of 5 is all a peer gets, health included.
    let config = ServerConfig {
        rate_per_second: 0,
        rate_burst: 5,
        socket: w.public.path().join("run2/token.sock"),
        ..w.config()
    };
    let server = TestServer::start(&w.setup, config, vec![w.rule()], None, |_| {});
    let statuses: Vec<u16> = (0..8).map(|_| raw_request(server.socket(), HEALTH).0).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429]);
}

/// The same per container: one container holding 150 idle connections keeps 64 (the rest are shed
/// at once), and another container of the same uid (both run as root) still
/// gets its token, Docker-attested, while they are held. The global cap here (100) is below the flood,
/// so a server that counted only in total would have let the first container starve the second.
#[test]
fn a_flood_from_one_container_does_not_stop_another_container() {
    let pki = TestPki::new();
    let bao = OpenBao::start(&pki);
    let device = Device::new();
    let setup =
        device.setup(&bao, vec![service("alpha", &["db-password"], None), service("beta", &["db-password"], None)]);
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(setup.run()).unwrap();
    let docker = Docker::ensure();
    let run_dir = tempfile::tempdir().unwrap();
    fs::set_permissions(run_dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let config = ServerConfig {
        socket: run_dir.path().join("token.sock"),
        docker_socket: None,
        max_connections: 100,
        header_timeout: Duration::from_secs(3600),
        ..ServerConfig::default()
    };
    let rule = |name: &str| ServiceRule {
        name: name.into(),
        role: secretstore_setup::setup::policy::service_role_name(name),
        selectors: Selectors {
            unix: None,
            docker: Some(DockerSelector { compose_service: Some(name.into()), ..Default::default() }),
        },
        ttl: Some(Duration::from_secs(600)),
        reuse: false,
        batch: false,
    };
    let server = TestServer::start(&setup, config, vec![rule("alpha"), rule("beta")], Some(&docker.socket()), |_| {});
    let load = PathBuf::from(env!("CARGO_BIN_EXE_token-load"));
    let client = edgeseal_tests::workspace_binary("security-bootstrap");
    let image = docker.image_from_binaries("edgeseal-test/limits:tokens", &[&load, &client], &[]);

    let flood =
        docker.run(
            RunSpec::new(&image)
                .bind(run_dir.path(), "/run/edgeseal")
                .label("com.docker.compose.service", "alpha")
                .args([load.to_str().unwrap(), "--socket", "/run/edgeseal/token.sock", "--hold", "150"]),
        );
    let metrics = &server.state.metrics;
    let shed = poll_until(Duration::from_secs(120), || {
        (metrics.shed.load(Ordering::Relaxed) >= 150 - PER_PEER as u64).then_some(())
    });
    assert!(
        shed.is_some(),
        "the container's connections over its cap were not shed ({} shed, {} open); its logs:\n{}",
        metrics.shed.load(Ordering::Relaxed),
        server.state.connections.open(),
        flood.logs()
    );
    assert_eq!(server.state.connections.open(), PER_PEER, "the flooding container holds its cap and no more");

    let victim =
        docker.run(
            RunSpec::new(&image)
                .bind(run_dir.path(), "/run/edgeseal")
                .label("com.docker.compose.service", "beta")
                .args([client.to_str().unwrap(), "token", "--socket", "/run/edgeseal/token.sock"]),
        );
    assert_eq!(victim.wait(Duration::from_secs(120)), 0, "the other container gets its token: {}", victim.logs());
    let json: serde_json::Value = serde_json::from_str(victim.stdout().trim()).unwrap();
    assert_eq!(json["service"], "beta");
    assert_eq!(server.state.connections.open(), PER_PEER, "served while the flood still held its connections");
    assert!(flood.inspect()["State"]["Running"].as_bool().unwrap(), "{}", flood.logs());
}
