//! The token server on a real Unix socket against a real OpenBao, with host processes as callers:
//! attestation by uid + executable path, denials that say what was seen, ambiguity, a caller that
//! vanishes mid-attestation, bad requests, slowloris, 1000 concurrent clients, and OpenBao going
//! down and coming back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::Ordering;
use std::time::Duration;

use edgeseal_tests::device::{service, Device};
use edgeseal_tests::openbao::OpenBao;
use edgeseal_tests::pki::TestPki;
use edgeseal_tests::token_server::{raw_request, TestServer, PY_ASK_TOKEN};
use openbao_client::Token;
use secretstore_setup::setup::Setup;
use token_server::config::{Selectors, ServerConfig, ServiceRule, UnixSelector};

struct World {
    _pki: TestPki,
    bao: OpenBao,
    _device: Device,
    setup: Setup,
    /// A world-readable directory holding the client binary (so other uids can run it).
    bin: tempfile::TempDir,
}

fn world() -> World {
    let pki = TestPki::new();
    let bao = OpenBao::start(&pki);
    let device = Device::new();
    let setup = device.setup(&bao, vec![service("hostsvc", &["api-key"], None), service("other", &["api-key"], None)]);
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(setup.run()).unwrap();
    let bin = edgeseal_tests::public_client_dir();
    World { _pki: pki, bao, _device: device, setup, bin }
}

impl World {
    fn client(&self) -> PathBuf {
        self.bin.path().join("security-bootstrap")
    }

    fn config(&self) -> ServerConfig {
        let socket_dir = self.bin.path().join("run");
        ServerConfig { socket: socket_dir.join("token.sock"), docker_socket: None, ..ServerConfig::default() }
    }

    fn rule(&self, name: &str, uid: u32) -> ServiceRule {
        ServiceRule {
            name: name.into(),
            role: secretstore_setup::setup::policy::service_role_name(name),
            selectors: Selectors {
                unix: Some(UnixSelector { uid: Some(uid), path: Some(self.client()), ..Default::default() }),
                docker: None,
            },
            ttl: Some(Duration::from_secs(600)),
            reuse: false,
            batch: false,
        }
    }

    fn fetch(&self, socket: &Path, uid: Option<u32>, extra: &[&str]) -> Output {
        let mut command = Command::new(self.client());
        command.arg("token").arg("--socket").arg(socket).args(extra);
        if let Some(uid) = uid {
            command.uid(uid).gid(uid);
        }
        command.output().unwrap()
    }
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn token_of(output: &Output) -> Token {
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("{}", text(output)));
    Token::new(json["auth"]["client_token"].as_str().unwrap())
}

#[test]
fn a_host_process_matched_by_uid_and_path_gets_its_own_token_and_another_uid_does_not() {
    let w = world();
    let server = TestServer::start(&w.setup, w.config(), vec![w.rule("hostsvc", 0)], None, |_| {});
    let out = w.fetch(server.socket(), None, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["service"], "hostsvc");
    assert!(json["auth"]["accessor"].is_string() && json["auth"]["policies"].is_array(), "token-file shape: {json}");

    let token = token_of(&out);
    let client = w.setup.client().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    assert!(rt.block_on(client.kv_read(&token, "secret", "edgeseal/hostsvc/api-key")).unwrap().is_some());
    assert_eq!(
        rt.block_on(client.kv_read(&token, "secret", "edgeseal/other/api-key")).unwrap_err().status(),
        Some(403)
    );
    let info = rt.block_on(client.lookup_self(&token)).unwrap();
    let meta = info.meta.unwrap();
    assert_eq!((meta["service"].as_str(), meta["attestation"].as_str()), (Some("hostsvc"), Some("unix")));

    // Same binary, another uid: denied, and the message says what was seen.
    let out = w.fetch(server.socket(), Some(4321), &[]);
    assert_eq!(out.status.code(), Some(77), "{}", text(&out));
    let message = text(&out);
    assert!(message.contains("uid=4321") && message.contains("no service matches your process"), "{message}");
    assert!(!message.contains("client_token"));

    // A different executable with the right uid: denied.
    let (status, body) =
        raw_request(server.socket(), b"POST /v1/token HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("exe=") && body.contains("no service matches your process"), "{body}");

    // Asserting another service than the attested one is denied.
    let out = w.fetch(server.socket(), None, &["--service", "other"]);
    assert_eq!(out.status.code(), Some(77), "{}", text(&out));
    assert!(text(&out).contains("asserts service \"other\""));
    assert_eq!(server.state.metrics.issued.load(Ordering::Relaxed), 1);
}

#[test]
fn two_services_matching_the_same_caller_is_ambiguous_and_gets_no_token() {
    let w = world();
    let server = TestServer::start(&w.setup, w.config(), vec![w.rule("hostsvc", 0), w.rule("other", 0)], None, |_| {});
    let out = w.fetch(server.socket(), None, &[]);
    assert_eq!(out.status.code(), Some(77), "{}", text(&out));
    assert!(text(&out).contains("ambiguous"), "{}", text(&out));
    assert_eq!(server.state.metrics.issued.load(Ordering::Relaxed), 0);
}

/// A caller that connects, hands its socket to a child, and exits: the classic way to borrow
/// another process's credentials. `parent_lingers` is how long the connecting process stays alive
/// after the child has sent the request.
fn borrowed_socket_request(socket: &Path, parent_lingers: Duration) -> String {
    let script = r#"
import os, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
r, w = os.pipe()
if os.fork() == 0:
    os.close(r)
    ask(s, lambda: os.write(w, b"sent"))
    sys.exit(0)
os.close(w)
os.read(r, 4)
# Deliberate: the parent, whose credentials the socket carries, stays alive this long after its
# child sent the request, so the server sees it alive or gone at a chosen moment.
time.sleep(float(sys.argv[2]))
os._exit(0)
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg([PY_ASK_TOKEN, script].concat())
        .arg(socket)
        .arg(parent_lingers.as_secs_f64().to_string())
        .output()
        .unwrap();
    // The parent exits first; its child prints the answer before exiting. `output()` reads stdout to
    // its end, which comes only once the child (which shares it) has exited too: nothing to wait for.
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_caller_that_exits_during_attestation_gets_no_token() {
    let w = world();
    let mut rule = w.rule("hostsvc", 0);
    rule.selectors.unix.as_mut().unwrap().path = None; // uid 0 alone would match the python caller
                                                       // Test hook: widen the window between the lookups and the final "same process?" check.
    let server = TestServer::start(&w.setup, w.config(), vec![rule], None, |a| {
        a.race_delay = Some(Duration::from_millis(800));
    });
    // The connecting process exits while its request is being attested.
    let answer = borrowed_socket_request(server.socket(), Duration::from_millis(200));
    assert!(answer.contains("403") && answer.contains("exited during attestation"), "{answer}");
    // It exits before the server even reads the request.
    let answer = borrowed_socket_request(server.socket(), Duration::ZERO);
    assert!(answer.contains("403") && answer.contains("exited"), "{answer}");
    assert_eq!(server.state.metrics.issued.load(Ordering::Relaxed), 0, "no token was created");
    assert_eq!(server.state.metrics.denied.load(Ordering::Relaxed), 2);
}

#[test]
fn a_caller_that_changes_its_uid_during_attestation_gets_no_token() {
    let w = world();
    let mut rule = w.rule("hostsvc", 0);
    rule.selectors.unix.as_mut().unwrap().path = None;
    let server = TestServer::start(&w.setup, w.config(), vec![rule], None, |a| {
        a.race_delay = Some(Duration::from_millis(800));
    });
    // Root when it connects (the rule's uid), nobody by the time the server checks again.
    let script = r#"
import os, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
ask(s, lambda: (time.sleep(0.2), os.setresuid(65534, 65534, 65534)))
"#;
    let out =
        Command::new("python3").arg("-c").arg([PY_ASK_TOKEN, script].concat()).arg(server.socket()).output().unwrap();
    let answer = String::from_utf8_lossy(&out.stdout);
    assert!(
        answer.contains("403") && answer.contains("changed its uid"),
        "{answer} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(server.state.metrics.issued.load(Ordering::Relaxed), 0, "no token was created");
}

#[test]
fn bad_requests_get_their_4xx_and_json_errors() {
    let w = world();
    let server = TestServer::start(&w.setup, w.config(), vec![w.rule("hostsvc", 0)], None, |_| {});
    let close = "Connection: close\r\n";
    let cases: Vec<(String, u16)> = vec![
        (format!("POST /v1/token HTTP/1.1\r\nHost: x\r\n{close}Content-Length: 8\r\n\r\n{{\"servic"), 400),
        (format!("POST /v1/token HTTP/1.1\r\nHost: x\r\n{close}Content-Length: 15\r\n\r\n{{\"extra\": true}}"), 400),
        (format!("POST /v1/token HTTP/1.1\r\nHost: x\r\n{close}Content-Length: 5000\r\n\r\n{}", "a".repeat(5000)), 413),
        (format!("POST /v1/token HTTP/1.1\r\nHost: x\r\n{close}Transfer-Encoding: chunked\r\n\r\n1388\r\n{}\r\n0\r\n\r\n", "a".repeat(5000)), 413),
        (format!("GET /v1/token HTTP/1.1\r\nHost: x\r\n{close}\r\n"), 405),
        (format!("DELETE /v1/health HTTP/1.1\r\nHost: x\r\n{close}\r\n"), 405),
        (format!("GET /v2/anything HTTP/1.1\r\nHost: x\r\n{close}\r\n"), 404),
        ("this is not http\r\n\r\n".to_string(), 400),
    ];
    for (raw, want) in cases {
        let (status, body) = raw_request(server.socket(), raw.as_bytes());
        assert_eq!(status, want, "{}: {body}", &raw[..raw.len().min(40)]);
        assert!(body.is_empty() || body.contains("\"error\""), "JSON errors: {body}");
    }
    // whoami answers with facts and never a token.
    let (status, body) =
        raw_request(server.socket(), b"GET /v1/whoami HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"uid\":0") && body.contains("no service matches") && !body.contains("client_token"),
        "{body}"
    );
    assert_eq!(server.state.metrics.issued.load(Ordering::Relaxed), 0);
}

#[test]
fn a_slowloris_connection_is_closed_and_does_not_block_others() {
    let w = world();
    let config = ServerConfig { header_timeout: Duration::from_millis(500), ..w.config() };
    let server = TestServer::start(&w.setup, config, vec![w.rule("hostsvc", 0)], None, |_| {});
    use std::io::{Read, Write};
    let mut idle = std::os::unix::net::UnixStream::connect(server.socket()).unwrap();
    let mut partial = std::os::unix::net::UnixStream::connect(server.socket()).unwrap();
    partial.write_all(b"POST /v1/token HTTP/1.1\r\nHost: x\r\nContent-Le").unwrap();
    // Meanwhile a legitimate client is served.
    let out = w.fetch(server.socket(), None, &[]);
    assert!(out.status.success(), "{}", text(&out));
    for stream in [&mut idle, &mut partial] {
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut buf = Vec::new();
        let n = stream.read_to_end(&mut buf);
        assert!(n.is_ok(), "the server closes a connection that does not send its request: {n:?}");
    }
}

#[test]
fn a_thousand_concurrent_clients_are_all_served() {
    let w = world();
    // All 1000 come from this one process (one uid): lift the per-peer caps, this is about capacity.
    // 1000 fresh service tokens are 1000 raft writes inside OpenBao, whose pace depends on the disk;
    // the store timeout is lifted too, so that the test asserts capacity and never a speed.
    let config = ServerConfig {
        store_timeout: Duration::from_secs(300),
        rate_per_second: 100_000,
        rate_burst: 100_000,
        max_connections_per_peer: 1000,
        max_connections_per_uid: 1000,
        ..w.config()
    };
    let mut rule = w.rule("hostsvc", 0);
    rule.selectors.unix.as_mut().unwrap().path = std::env::current_exe().ok();
    let server = TestServer::start(&w.setup, config, vec![rule], None, |_| {});
    let rss_before = rss_kib();
    let socket = server.socket().to_path_buf();
    let statuses: Vec<u16> = server.block_on(async move {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..1000 {
            let socket = socket.clone();
            tasks.spawn(async move {
                // As `gate` does: a 503 (the server busy with the others) is asked again, anything
                // else is the answer.
                loop {
                    let stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
                    let (mut sender, conn) =
                        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
                    tokio::spawn(conn);
                    let request = hyper::Request::post("/v1/token")
                        .header("host", "localhost")
                        .body(http_body_util::Full::new(bytes::Bytes::new()))
                        .unwrap();
                    let status = sender.send_request(request).await.map(|r| r.status().as_u16()).unwrap_or(0);
                    if status != 503 {
                        break status;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            });
        }
        let mut statuses = Vec::new();
        while let Some(status) = tasks.join_next().await {
            statuses.push(status.unwrap());
        }
        statuses
    });
    let ok = statuses.iter().filter(|&&s| s == 200).count();
    assert_eq!(
        ok,
        1000,
        "every legitimate client gets its token: {:?}",
        statuses.iter().filter(|&&s| s != 200).take(5).collect::<Vec<_>>()
    );
    let grown = rss_kib().saturating_sub(rss_before);
    assert!(grown < 256 * 1024, "memory stays bounded: grew {grown} KiB for 1000 clients");
}

#[test]
fn openbao_down_is_a_quick_503_and_tokens_flow_again_once_it_is_back_and_unsealed() {
    let mut w = world();
    let server = TestServer::start(&w.setup, w.config(), vec![w.rule("hostsvc", 0)], None, |_| {});
    assert!(w.fetch(server.socket(), None, &[]).status.success());
    let (status, _) = raw_request(server.socket(), b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(status, 200);
    let health = Command::new(w.client()).arg("health").arg("--socket").arg(server.socket()).output().unwrap();
    assert!(health.status.success(), "{}", text(&health));

    w.bao.stop();
    let out = w.fetch(server.socket(), None, &[]);
    assert_eq!(out.status.code(), Some(69), "unavailable: {}", text(&out));
    let (status, body) =
        raw_request(server.socket(), b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(status, 503, "{body}");
    let health = Command::new(w.client()).arg("health").arg("--socket").arg(server.socket()).output().unwrap();
    assert_eq!(health.status.code(), Some(69), "{}", text(&health));

    w.bao.restart();
    let out = w.fetch(server.socket(), None, &[]);
    assert_eq!(out.status.code(), Some(69), "sealed is unavailable too: {}", text(&out));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = w.setup.client().unwrap();
    rt.block_on(secretstore_setup::watchdog::check(&w.setup, &client)).unwrap();
    let out = w.fetch(server.socket(), None, &[]);
    assert!(out.status.success(), "tokens flow again without restarting the server: {}", text(&out));
}

fn rss_kib() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A local user can run a binary from its own FUSE mount whose daemon never answers: opening that
/// executable (through `/proc/<pid>/exe`) then blocks for good. The test hook stands for such a file
/// system: opening the executable of any python caller blocks until the test releases it. The
/// server must keep accepting and serving others, deny the stalled caller at its deadline, and keep
/// the stuck thread's permit (so stuck threads cannot pile up).
#[test]
fn a_caller_whose_executable_never_opens_does_not_hold_up_anyone() {
    use std::io::Read;
    use std::process::Stdio;
    use std::sync::mpsc;
    use std::sync::{Arc, Mutex};
    use token_server::attest::exe::ExeOpenHook;

    let w = world();
    let (entered_tx, entered) = mpsc::channel::<()>();
    let (release, stalled) = mpsc::channel::<()>();
    let (entered_tx, stalled) = (Mutex::new(entered_tx), Mutex::new(stalled));
    let server = TestServer::start(&w.setup, w.config(), vec![w.rule("hostsvc", 0)], None, move |a| {
        a.opener.timeout = Duration::from_secs(1);
        a.opener.hook = Some(ExeOpenHook(Arc::new(move |path| {
            let name = path.and_then(Path::file_name).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if name.starts_with("python") {
                let _ = entered_tx.lock().unwrap().send(());
                let _ = stalled.lock().unwrap().recv();
            }
        })));
    });
    let script = r#"
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
ask(s)
"#;
    let mut stalled_caller = Command::new("python3")
        .arg("-c")
        .arg([PY_ASK_TOKEN, script].concat())
        .arg(server.socket())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // A generous bound against a hang, not a timing assertion.
    entered.recv_timeout(Duration::from_secs(120)).expect("the server never tried to open the python executable");

    // While that open is stuck, other callers are accepted and served.
    for _ in 0..3 {
        let out = w.fetch(server.socket(), None, &[]);
        assert!(out.status.success(), "{}", text(&out));
        token_of(&out);
    }
    // The stalled caller is denied at its deadline, though its open is still stuck.
    let mut answer = String::new();
    stalled_caller.stdout.take().unwrap().read_to_string(&mut answer).unwrap();
    stalled_caller.wait().unwrap();
    assert!(answer.contains("403") && answer.contains("did not open within"), "{answer}");
    assert_eq!(server.state.attestor.opener.busy(), 1, "the stuck thread keeps its permit");
    assert_eq!(server.state.metrics.issued.load(Ordering::Relaxed), 3);
    release.send(()).unwrap();
    edgeseal_tests::wait_until("the stuck open to finish", Duration::from_secs(60), || {
        (server.state.attestor.opener.busy() == 0).then_some(())
    });
}
