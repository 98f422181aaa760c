//! Attestation of host processes against a real OpenBao and the token server on a real socket, with
//! real namespaces (`unshare`) and real processes as callers:
//! - a process that matches a `unix`-only rule by uid and executable, but runs in its own pid or mount
//!   namespace (what any container runtime, or a user's `unshare`, gives), is denied and told which
//!   namespace is not the host's, while the same binary outside gets the token;
//! - a process that connects, then execs another service's binary with the connection open, is denied;
//! - a denied caller hears about its own process only, never about other services;
//! - a `unix.sha256` rule matches the binary with that digest (hashed off the async workers).
//!
//! Runs as root (namespaces, other uids).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use edgeseal_tests::device::{service, Device};
use edgeseal_tests::openbao::OpenBao;
use edgeseal_tests::pki::TestPki;
use edgeseal_tests::token_server::{TestServer, PY_ASK_TOKEN};
use secretstore_setup::setup::Setup;
use token_server::config::{Selectors, ServerConfig, ServiceRule, UnixSelector};

/// The system's Python (not a pyenv shim: the executable itself), used as a caller.
const PYTHON: &str = "/usr/bin/python3.11";

struct World {
    _pki: TestPki,
    _bao: OpenBao,
    _device: Device,
    setup: Setup,
    /// A world-readable directory holding the callers' binaries.
    bin: tempfile::TempDir,
}

fn world() -> World {
    let pki = TestPki::new();
    let bao = OpenBao::start(&pki);
    let device = Device::new();
    let setup = device.setup(&bao, vec![service("hostsvc", &["api-key"], None)]);
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(setup.run()).unwrap();
    let bin = edgeseal_tests::public_client_dir();
    World { _pki: pki, _bao: bao, _device: device, setup, bin }
}

impl World {
    fn client(&self) -> PathBuf {
        self.bin.path().join("security-bootstrap")
    }

    fn config(&self) -> ServerConfig {
        ServerConfig { socket: self.bin.path().join("run/token.sock"), docker_socket: None, ..ServerConfig::default() }
    }

    fn start(&self, rules: Vec<ServiceRule>) -> TestServer {
        TestServer::start(&self.setup, self.config(), rules, None, |_| {})
    }

    /// `token --socket S` run by `prefix` (e.g. `unshare --mount`), as root.
    fn fetch_via(&self, socket: &Path, prefix: &[&str]) -> Output {
        let mut command = match prefix.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(self.client());
                command
            }
            None => Command::new(self.client()),
        };
        command.arg("token").arg("--socket").arg(socket).output().unwrap()
    }
}

fn unix_rule(name: &str, unix: UnixSelector) -> ServiceRule {
    ServiceRule {
        name: name.into(),
        role: secretstore_setup::setup::policy::service_role_name(name),
        selectors: Selectors { unix: Some(unix), docker: None },
        ttl: Some(Duration::from_secs(600)),
        reuse: false,
        batch: false,
    }
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn assert_token(output: &Output, service: &str) {
    assert!(output.status.success(), "{}", text(output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["service"], service, "{json}");
    assert!(json["auth"]["client_token"].is_string());
}

fn assert_denied(output: &Output, mentions: &[&str]) {
    let message = text(output);
    assert_eq!(output.status.code(), Some(77), "denied (77): {message}");
    for text in mentions {
        assert!(message.contains(text), "{text:?} missing: {message}");
    }
    assert!(!message.contains("client_token"), "{message}");
}

#[test]
fn a_matching_process_in_its_own_pid_or_mount_namespace_is_not_a_host_process() {
    let w = world();
    let rule = unix_rule("hostsvc", UnixSelector { uid: Some(0), path: Some(w.client()), ..Default::default() });
    let server = w.start(vec![rule]);
    let socket = server.socket();

    // The same binary, same uid, in the host's namespaces: served.
    assert_token(&w.fetch_via(socket, &[]), "hostsvc");

    // Its own pid namespace (the mount namespace stays the host's).
    let out = w.fetch_via(socket, &["unshare", "--pid", "--fork"]);
    assert_denied(&out, &["uid=0", "host_namespaces=no", "pid namespace", "is not the host's"]);
    // Its own pid namespace with its own /proc (which needs its own mount namespace too): the pid
    // namespace is named first.
    let out = w.fetch_via(socket, &["unshare", "--pid", "--fork", "--mount-proc"]);
    assert_denied(&out, &["host_namespaces=no", "pid namespace", "is not the host's"]);
    // Its own mount namespace only: the exe path is read there, where any binary can sit anywhere.
    let out = w.fetch_via(socket, &["unshare", "--mount"]);
    assert_denied(&out, &["host_namespaces=no", "mount namespace", "is not the host's"]);

    // And the host process is still served afterwards.
    assert_token(&w.fetch_via(socket, &[]), "hostsvc");
    assert_eq!(server.state.metrics.issued.load(std::sync::atomic::Ordering::Relaxed), 2);
}

/// A Python caller: connects, asks `/v1/whoami` on a kept-alive connection (so the server has
/// accepted and pinned it), then execs `target` with the connection kept open; `target` (a copy of
/// Python) asks for a token on it and prints the raw answer.
fn exec_after_connect(python: &Path, target: &Path, socket: &Path) -> String {
    let first = r#"
import os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"GET /v1/whoami HTTP/1.1\r\nHost: x\r\n\r\n")
data = b""
while b"\r\n\r\n" not in data:
    data += s.recv(65536)
head, body = data.split(b"\r\n\r\n", 1)
length = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0])
while len(body) < length:
    body += s.recv(65536)
assert head.startswith(b"HTTP/1.1 200"), head
os.set_inheritable(s.fileno(), True)
os.execv(sys.argv[2], [sys.argv[2], "-c", sys.argv[3], str(s.fileno())])
"#;
    let second = [PY_ASK_TOKEN, "s = socket.socket(fileno=int(sys.argv[1]))\nask(s)\n"].concat();
    let out = Command::new(python).arg("-c").arg(first).arg(socket).arg(target).arg(second).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_process_that_execs_another_binary_on_its_open_connection_is_denied() {
    let w = world();
    // Service B is "uid 0 running svc-b"; the caller connects as plain Python (no service), then execs
    // svc-b with its connection open.
    let svc_b = w.bin.path().join("svc-b");
    edgeseal_tests::install_executable(Path::new(PYTHON), &svc_b);
    let rule = unix_rule("hostsvc", UnixSelector { uid: Some(0), path: Some(svc_b.clone()), ..Default::default() });
    let server = w.start(vec![rule]);

    // svc-b itself, connecting on its own: served (the rule is right).
    let direct = Command::new(&svc_b)
        .arg("-c")
        .arg(
            r#"
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"POST /v1/token HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
print(s.recv(65536).decode())
"#,
        )
        .arg(server.socket())
        .output()
        .unwrap();
    let answer = text(&direct);
    assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("client_token"), "{answer}");

    // Connected as Python, asking as svc-b: denied.
    let answer = exec_after_connect(Path::new(PYTHON), &svc_b, server.socket());
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains("executable changed since connect") && answer.contains("python3"), "{answer}");
    assert!(!answer.contains("client_token"), "{answer}");
    assert_eq!(server.state.metrics.issued.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[test]
fn a_denied_caller_hears_about_its_own_process_only() {
    let w = world();
    let rules = vec![
        unix_rule("hostsvc", UnixSelector { uid: Some(0), path: Some(w.client()), ..Default::default() }),
        unix_rule(
            "zeta-hidden",
            UnixSelector {
                uid: Some(1234),
                path: Some("/opt/zeta-hidden/bin".into()),
                systemd_unit: Some("zeta-hidden.service".into()),
                ..Default::default()
            },
        ),
    ];
    let server = w.start(rules);
    let out = Command::new(w.client()).arg("token").arg("--socket").arg(server.socket()).uid(4321).gid(4321).output();
    let out = out.unwrap();
    assert_denied(&out, &["uid=4321", "exe=", "no service matches your process"]);
    let message = text(&out);
    for secret in ["hostsvc", "zeta-hidden", "1234", "/opt/zeta-hidden/bin", "unix.uid", "unix.path"] {
        assert!(!message.contains(secret), "the denial names {secret:?}: {message}");
    }
    let whoami = Command::new(w.client())
        .args(["token", "--whoami", "--socket"])
        .arg(server.socket())
        .uid(4321)
        .gid(4321)
        .output()
        .unwrap();
    let answer = text(&whoami);
    assert!(answer.contains("\"uid\":4321") || answer.contains("\"uid\": 4321"), "{answer}");
    for secret in ["hostsvc", "zeta-hidden", "1234", "/opt/zeta-hidden/bin"] {
        assert!(!answer.contains(secret), "whoami names {secret:?}: {answer}");
    }
}

#[test]
fn a_sha256_rule_matches_the_binary_with_that_digest_only() {
    let w = world();
    let digest = |path: &Path| {
        let out = Command::new("sha256sum").arg(path).output().unwrap();
        String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_string()
    };
    let rule = |sha256: String| {
        unix_rule("hostsvc", UnixSelector { uid: Some(0), sha256: Some(sha256), ..Default::default() })
    };
    // A debug build of the client is larger than the default limit.
    let config = ServerConfig { exe_hash_limit: 1 << 30, ..w.config() };
    let server = TestServer::start(&w.setup, config.clone(), vec![rule(digest(&w.client()))], None, |_| {});
    assert_token(&w.fetch_via(server.socket(), &[]), "hostsvc");
    assert_token(&w.fetch_via(server.socket(), &[]), "hostsvc");
    assert_eq!(server.state.attestor.hasher().cached_len(), 1, "the second caller's digest came from the cache");
    drop(server);
    let server = TestServer::start(&w.setup, config, vec![rule(digest(Path::new(PYTHON)))], None, |_| {});
    assert_denied(&w.fetch_via(server.socket(), &[]), &["no service matches your process"]);
}

#[test]
fn configs_whose_selectors_cannot_tell_services_apart_are_refused_with_exit_64() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("edgeseal.yaml");
    let cases = [
        (
            "services:\n  a:\n    selectors:\n      unix: { uid: 998, path: /usr/bin/a }\n  b:\n    selectors:\n      unix: { uid: 998, path: /usr/bin/b }\n",
            "services a and b could both match a process of uid 998",
        ),
        ("services:\n  a:\n    selectors:\n      docker: {}\n", "services.a.selectors.docker is empty"),
    ];
    for (yaml, want) in cases {
        fs::write(&config, yaml).unwrap();
        let out = Command::new(edgeseal_tests::workspace_binary("security-bootstrap"))
            .arg("token-server")
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{}", text(&out));
        assert!(text(&out).contains(want), "{}", text(&out));
    }
}
