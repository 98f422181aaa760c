//! Docker-attested tokens: containers on a real Docker daemon (images built offline, `FROM scratch`
//! with the project's own `security-bootstrap` as the client) fetch tokens through the bind-mounted
//! socket; the token server identifies each by its cgroup and the daemon's labels.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use edgeseal_tests::device::{service, Device};
use edgeseal_tests::docker::{Docker, RunSpec};
use edgeseal_tests::openbao::OpenBao;
use edgeseal_tests::pki::TestPki;
use edgeseal_tests::token_server::TestServer;
use edgeseal_tests::{wait_until, workspace_binary};
use openbao_client::Token;
use token_server::config::{DockerSelector, Selectors, ServerConfig, ServiceRule};

const WAIT: Duration = Duration::from_secs(60);

fn compose_rule(name: &str, compose_service: &str) -> ServiceRule {
    ServiceRule {
        name: name.into(),
        role: secretstore_setup::setup::policy::service_role_name(name),
        selectors: Selectors {
            unix: None,
            docker: Some(DockerSelector { compose_service: Some(compose_service.into()), ..Default::default() }),
        },
        ttl: Some(Duration::from_secs(600)),
        reuse: false,
        batch: false,
    }
}

#[test]
fn containers_get_their_own_service_token_and_strangers_are_denied() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let pki = TestPki::new();
    let bao = OpenBao::start(&pki);
    let device = Device::new();
    let setup =
        device.setup(&bao, vec![service("alpha", &["db-password"], None), service("beta", &["db-password"], None)]);
    rt.block_on(setup.run()).unwrap();

    let docker = Docker::ensure();
    let run_dir = tempfile::tempdir().unwrap();
    fs::set_permissions(run_dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let config =
        ServerConfig { socket: run_dir.path().join("token.sock"), docker_socket: None, ..ServerConfig::default() };
    let rules = vec![compose_rule("alpha", "alpha"), compose_rule("beta", "beta")];
    let server = TestServer::start(&setup, config, rules, Some(&docker.socket()), |_| {});

    let client = workspace_binary("security-bootstrap");
    let image = docker.image_from_binaries("edgeseal-test/client:tokens", &[&client], &[client.to_str().unwrap()]);
    let fetch = |labels: &[(&str, &str)]| {
        let mut spec = RunSpec::new(&image).bind(run_dir.path(), "/run/edgeseal").args([
            "token",
            "--socket",
            "/run/edgeseal/token.sock",
        ]);
        for (k, v) in labels {
            spec = spec.label(*k, *v);
        }
        let container = docker.run(spec);
        let code = container.wait(WAIT);
        (code, container.stdout(), container.stderr(), container.id().to_string())
    };
    let kv = |token: &Token, svc: &str| {
        rt.block_on(setup.client().unwrap().kv_read(token, "secret", &format!("edgeseal/{svc}/db-password")))
    };

    // alpha's container reads alpha's secret and gets 403 on beta's.
    let (code, stdout, stderr, id) =
        fetch(&[("com.docker.compose.service", "alpha"), ("com.docker.compose.project", "demo")]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["service"], "alpha");
    let alpha = Token::new(json["auth"]["client_token"].as_str().unwrap());
    assert!(kv(&alpha, "alpha").unwrap().is_some());
    assert_eq!(kv(&alpha, "beta").unwrap_err().status(), Some(403));
    let info = rt.block_on(setup.client().unwrap().lookup_self(&alpha)).unwrap();
    let meta = info.meta.unwrap();
    assert_eq!(meta["attestation"], "docker");
    assert_eq!(meta["container_id"], id.as_str(), "the token names the container it was issued to");

    // beta's container gets beta's.
    let (code, stdout, stderr, _) = fetch(&[("com.docker.compose.service", "beta")]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let beta = Token::new(
        serde_json::from_str::<serde_json::Value>(&stdout).unwrap()["auth"]["client_token"].as_str().unwrap(),
    );
    assert!(kv(&beta, "beta").unwrap().is_some());
    assert_eq!(kv(&beta, "alpha").unwrap_err().status(), Some(403));

    // An unlabelled container and one whose label no service has are denied, saying what was seen.
    let (code, stdout, stderr, id) = fetch(&[]);
    assert_eq!(code, 77, "{stdout}{stderr}");
    assert!(stderr.contains(&id[..12]) && stderr.contains("no service matches your process"), "{stderr}");
    let (code, stdout, stderr, _) = fetch(&[("com.docker.compose.service", "gamma")]);
    assert_eq!(code, 77, "{stdout}{stderr}");
    assert!(stderr.contains("compose_service=gamma") && stderr.contains("no service matches"), "{stderr}");
    assert!(!stdout.contains("client_token") && !stderr.contains("client_token"));

    // whoami from inside a container shows the Docker facts.
    let container =
        docker.run(
            RunSpec::new(&image)
                .bind(run_dir.path(), "/run/edgeseal")
                .label("com.docker.compose.service", "alpha")
                .args(["token", "--whoami", "--socket", "/run/edgeseal/token.sock"]),
        );
    assert_eq!(container.wait(WAIT), 0, "{}", container.logs());
    let whoami: serde_json::Value = serde_json::from_str(&container.stdout()).unwrap();
    assert_eq!(whoami["service"], "alpha");
    assert_eq!(whoami["facts"]["container"]["id"], container.id());
    assert_eq!(whoami["facts"]["container"]["labels"]["com.docker.compose.service"], "alpha");
    assert_eq!(server.state.metrics.issued.load(std::sync::atomic::Ordering::Relaxed), 2);

    // A host process moved into alpha's cgroup (so its /proc/<pid>/cgroup names alpha's container) is
    // still not in alpha's pid namespace: denied.
    drop(container);
    let hang = workspace_binary("edgeseal-kdf-test");
    let sleeper_image = docker.image_from_binaries("edgeseal-test/sleeper:tokens", &[&hang], &[hang.to_str().unwrap()]);
    let alpha_sleeper =
        docker.run(RunSpec::new(&sleeper_image).label("com.docker.compose.service", "alpha").args(["ikm-v1", "hang"]));
    // The impostor waits (on its stdin) until it has been moved into alpha's cgroup, then asks.
    let mut impostor = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(format!(
            "read moved; exec {} token --socket {}",
            client.display(),
            run_dir.path().join("token.sock").display()
        ))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut moved = 0;
    for entry in fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let procs = entry.path().join("docker").join(alpha_sleeper.id()).join("cgroup.procs");
        if procs.exists() && fs::write(&procs, impostor.id().to_string()).is_ok() {
            moved += 1;
        }
    }
    assert!(moved > 0, "could not move the impostor into the container's cgroup");
    let cgroup = fs::read_to_string(format!("/proc/{}/cgroup", impostor.id())).unwrap();
    assert!(cgroup.contains(alpha_sleeper.id()), "the impostor's cgroup names alpha's container: {cgroup}");
    impostor.stdin.take().unwrap().write_all(b"moved\n").unwrap();
    let out = impostor.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(77), "{stderr}");
    assert!(stderr.contains("not in the container's pid namespace"), "{stderr}");
    drop(alpha_sleeper);

    // Inspect answers are cached per running container and dropped on the daemon's die events.
    let sleeper = docker.run(RunSpec::new(&sleeper_image).args(["ikm-v1", "hang"]));
    let cache = server.state.attestor.docker().unwrap().clone();
    let facts = server.block_on(cache.inspect(sleeper.id())).unwrap();
    assert!(facts.running && facts.id == sleeper.id());
    assert_eq!(cache.cached_len(), 1, "a running container's facts are cached");
    drop(sleeper);
    wait_until("die/destroy events have emptied the cache", Duration::from_secs(20), || {
        (cache.cached_len() == 0).then_some(())
    });
}
