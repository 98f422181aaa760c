//! docker/docker-compose.yml end to end on a real Docker daemon, with Debian's docker-compose 1.29 (or
//! `$EDGESEAL_COMPOSE`, e.g. compose v2): the images are built offline by docker/build-images.sh, then
//! `up` runs pki-init → OpenBao with TLS → the bootstrapper → the example services. alpha and beta
//! get their own tokens through the socket (Docker-attested), read their own secret and are refused
//! the other's (403); legacy does the same with its file token. `down` keeping the volumes and `up`
//! again → the same secrets (compared by the digest the example prints, never the value), unsealed
//! without re-initialization. `down -v` at the end, and everything is removed on failure too.
//!
//! Network: every container shares the host's network namespace; OpenBao listens on 127.0.0.1 at a
//! free port, and compose must create no network at all (the daemon has no bridge).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use edgeseal_tests::compose::{self, Compose, Project};
use edgeseal_tests::docker::Docker;
use edgeseal_tests::openbao::bao_binary;
use edgeseal_tests::ports::free_port_pair;
use edgeseal_tests::workspace_binary;
use secretstore_setup::server_config::ServerConfig;

/// The example services and the service whose secret each one must be refused.
const EXAMPLES: [(&str, &str); 3] = [("alpha", "beta"), ("beta", "alpha"), ("legacy", "alpha")];
/// The volumes of docker-compose.yml.
const VOLUMES: [&str; 6] = ["pki", "keystore", "openbao-data", "openbao-logs", "run", "file-tokens"];
/// How long the example services may take to log their results after `up` returned.
const RESULTS_TIMEOUT: Duration = Duration::from_secs(90);

fn docker_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker")
}

/// The three images, tagged for this test process and removed on drop.
struct Images {
    docker: Docker,
    tag: String,
}

impl Images {
    /// Runs docker/build-images.sh against the daemon with this workspace's binaries.
    fn build(docker: &Docker) -> Self {
        let bin_dir = workspace_binary("security-bootstrap").parent().unwrap().to_path_buf();
        for name in ["edgeseal-kdf-hwfp", "example-service"] {
            workspace_binary(name);
        }
        let images = Self { docker: docker.clone(), tag: format!("test-{}", std::process::id()) };
        let mut build = Command::new(docker_dir().join("build-images.sh"));
        build
            .arg("--bin-dir")
            .arg(&bin_dir)
            .arg("--bao")
            .arg(bao_binary())
            .arg("--tag")
            .arg(&images.tag)
            .env("DOCKER_HOST", format!("unix://{}", docker.socket().display()))
            .env_remove("DOCKER_CONTEXT");
        let out = compose::run(&mut build, Duration::from_secs(300));
        assert!(out.status.success(), "docker/build-images.sh failed ({}):\n{}", out.status, out.text());
        eprint!("{}", out.stdout);
        images
    }

    fn image(&self, name: &str) -> String {
        format!("edgeseal/{name}:{}", self.tag)
    }
}

impl Drop for Images {
    fn drop(&mut self) {
        let names: Vec<String> =
            ["example-service", "openbao", "security-bootstrap"].iter().map(|n| self.image(n)).collect();
        compose::run(self.docker.cli().args(["rmi", "-f"]).args(&names), Duration::from_secs(60));
    }
}

/// Copies `template` to `out`, replacing each `(from, to)` exactly `count` times (so a template that
/// drifted from what the test expects fails loudly instead of running with the defaults).
fn render(template: &Path, replacements: &[(&str, &str, usize)], out: &Path) {
    let mut text = fs::read_to_string(template).unwrap();
    for (from, to, count) in replacements {
        assert_eq!(text.matches(from).count(), *count, "{}: occurrences of {from:?}", template.display());
        text = text.replace(from, to);
    }
    fs::write(out, text).unwrap();
}

/// A machine-id (32 lowercase hex digits) for the KDF plug-in: the "hardware" of this test device.
fn machine_id() -> String {
    let mut bytes = [0u8; 16];
    fs::File::open("/dev/urandom").unwrap().read_exact(&mut bytes).unwrap();
    format!("{}\n", hex::encode(bytes))
}

/// What an example service logged: where its token came from, and `N chars, digest D` of its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    token_from: String,
    own_secret: String,
}

fn outcome(service: &str, other: &str, log: &str) -> Outcome {
    let prefix = format!("example-service {service}: ");
    let field = |start: &str| {
        let start = format!("{prefix}{start}");
        log.lines()
            .find_map(|line| line.strip_prefix(&start))
            .unwrap_or_else(|| panic!("{service} did not log {start:?}:\n{log}"))
            .to_string()
    };
    let denied = format!("{prefix}other service's secret secret/data/edgeseal/{other}/db-password: denied (403)");
    assert!(log.contains(&denied), "{service} was not refused {other}'s secret:\n{log}");
    let own = field(&format!("read own secret secret/data/edgeseal/{service}/db-password: ok ("));
    let own_secret = own.strip_suffix(')').unwrap_or_else(|| panic!("{service}: {own}")).to_string();
    assert!(own_secret.starts_with("43 chars, digest "), "a 32-byte base64url secret: {own_secret}");
    Outcome { token_from: field("token from "), own_secret }
}

/// Waits until every example service logged its results and checks them; the outcomes by service.
fn results(project: &Project) -> BTreeMap<&'static str, Outcome> {
    let mut all = BTreeMap::new();
    for (service, other) in EXAMPLES {
        let log = project.wait_for_log(service, RESULTS_TIMEOUT, |log| log.contains("all checks passed"));
        let outcome = outcome(service, other, &log);
        eprintln!(
            "edgeseal compose test: {service}: token from {}, own secret {}",
            outcome.token_from, outcome.own_secret
        );
        all.insert(service, outcome);
    }
    assert_eq!(all["alpha"].token_from, "file /tmp/token", "gate wrote alpha's token");
    assert_eq!(all["beta"].token_from, "file /tmp/token", "gate wrote beta's token");
    assert_eq!(
        all["legacy"].token_from, "file /run/edgeseal-secrets/legacy/secrets-token.json (file token)",
        "legacy read the file token"
    );
    let digests: std::collections::BTreeSet<&String> = all.values().map(|o| &o.own_secret).collect();
    assert_eq!(digests.len(), 3, "each service has its own secret: {all:?}");

    // The tokens of alpha and beta were issued through the socket to their own containers.
    let bootstrapper = project.logs("bootstrapper");
    for service in ["alpha", "beta"] {
        let container = project.containers(Some(service)).into_iter().next().unwrap();
        let issued = format!("container=\"{}\" service={service} ", &container[..12]);
        assert!(
            bootstrapper.lines().any(|l| l.contains("event=\"issued\"") && l.contains(&issued)),
            "no token issued to {service}'s container {container}:\n{bootstrapper}"
        );
    }
    assert!(!bootstrapper.contains("service=legacy "), "legacy never uses the socket:\n{bootstrapper}");
    let logs = project.all_logs();
    assert!(!logs.contains("client_token"), "a token response in a log:\n{logs}");
    all
}

fn networks(docker: &Docker) -> Vec<String> {
    let out = compose::run(
        docker.cli().args(["network", "ls", "--format", "{{.Name}} {{.Driver}}"]),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", out.text());
    let mut names: Vec<String> = out.stdout.lines().map(str::to_owned).collect();
    names.sort();
    names
}

#[test]
fn compose_up_serves_own_secrets_refuses_others_and_restarts_without_reinit() {
    let started = Instant::now();
    let docker = Docker::ensure();
    let compose = Compose::find();
    eprintln!("edgeseal compose test: {} against unix://{}", compose.version(), docker.socket().display());

    let build_started = Instant::now();
    let images = Images::build(&docker);
    let build_time = build_started.elapsed();

    // The device's files: docker/edgeseal.yaml and docker/openbao.hcl with a free loopback port and
    // this project's name; the machine-id the KDF plug-in fingerprints.
    let port = free_port_pair();
    let work = tempfile::tempdir().unwrap();
    let compose_file = docker_dir().join("docker-compose.yml");
    let project = Project::new(&docker, compose, "edgeseal-compose", &compose_file);
    let (api, cluster) = (format!("127.0.0.1:{port}"), format!("127.0.0.1:{}", port + 1));
    let config = work.path().join("edgeseal.yaml");
    let selector = format!("compose_project: {}", project.name());
    render(
        &docker_dir().join("edgeseal.yaml"),
        &[("https://127.0.0.1:8200", &format!("https://{api}"), 1), ("compose_project: edgeseal", &selector, 2)],
        &config,
    );
    let bao_config = work.path().join("openbao.hcl");
    render(
        &docker_dir().join("openbao.hcl"),
        &[("127.0.0.1:8200", &api, 2), ("127.0.0.1:8201", &cluster, 2)],
        &bao_config,
    );
    let machine_id_file = work.path().join("machine-id");
    fs::write(&machine_id_file, machine_id()).unwrap();
    let project = project
        .env("EDGESEAL_TAG", &images.tag)
        .env("EDGESEAL_OPENBAO_IMAGE", images.image("openbao"))
        .env("EDGESEAL_OPENBAO_PORT", port.to_string())
        .env("EDGESEAL_CONFIG", config.display().to_string())
        .env("EDGESEAL_OPENBAO_CONFIG", bao_config.display().to_string())
        .env("EDGESEAL_MACHINE_ID", machine_id_file.display().to_string())
        .env("EDGESEAL_DOCKER_SOCKET", docker.socket().display().to_string());

    // First boot: pki-init, OpenBao initialized by the bootstrapper, the services read their secrets.
    let networks_before = networks(&docker);
    let first_up = project.up();
    let first_started = Instant::now();
    let first = results(&project);
    let first_results = first_started.elapsed();
    let bootstrapper = project.logs("bootstrapper");
    assert!(bootstrapper.contains("initialized=true"), "the first boot initializes OpenBao:\n{bootstrapper}");
    let pki_init = project.containers(Some("pki-init"));
    assert_eq!(project.inspect(&pki_init[0])["State"]["ExitCode"], 0, "{}", project.logs("pki-init"));
    let bootstrapper_id = project.containers(Some("bootstrapper")).remove(0);
    assert_eq!(project.inspect(&bootstrapper_id)["State"]["Health"]["Status"], "healthy");

    // Loopback only: every container is in the host's network namespace; compose made no network.
    let ids = project.containers(None);
    assert_eq!(ids.len(), 6, "pki-init, openbao, bootstrapper, alpha, beta, legacy");
    for id in &ids {
        let container = project.inspect(id);
        assert_eq!(container["HostConfig"]["NetworkMode"], "host", "{}", container["Name"]);
    }
    assert_eq!(networks(&docker), networks_before, "compose must not create a network");
    let listening: SocketAddr = api.parse().unwrap();
    assert_eq!(listening.ip(), Ipv4Addr::LOCALHOST);
    std::net::TcpStream::connect_timeout(&listening, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("OpenBao is not listening on {listening} of the host: {e}"));

    // `down` keeps the volumes; `up` again: unsealed from the keystore, not re-initialized, same secrets.
    let first_down = project.down(false);
    assert!(project.containers(None).is_empty(), "down removes the containers");
    let volumes = project.volumes();
    for volume in VOLUMES {
        let name = format!("{}_{volume}", project.name());
        assert!(volumes.contains(&name), "down keeps volume {name}: {volumes:?}");
    }
    let second_up = project.up();
    let second = results(&project);
    let bootstrapper = project.logs("bootstrapper");
    assert!(
        bootstrapper.contains("initialized=false") && !bootstrapper.contains("initialized=true"),
        "the second boot unseals without re-initializing:\n{bootstrapper}"
    );
    assert!(bootstrapper.contains("unsealed=true"), "{bootstrapper}");
    for (service, _) in EXAMPLES {
        assert_eq!(
            first[service].own_secret, second[service].own_secret,
            "{service}'s secret is the same after down/up"
        );
    }

    // `down -v` removes everything.
    let last_down = project.down(true);
    assert!(project.containers(None).is_empty());
    assert!(project.volumes().is_empty(), "down -v removes the volumes: {:?}", project.volumes());
    eprintln!(
        "edgeseal compose test: images {:.1} s, first up {:.1} s (+{:.1} s to the services' results), down {:.1} s, \
         second up {:.1} s, down -v {:.1} s, total {:.1} s",
        build_time.as_secs_f64(),
        first_up.as_secs_f64(),
        first_results.as_secs_f64(),
        first_down.as_secs_f64(),
        second_up.as_secs_f64(),
        last_down.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    drop(project);
    drop(images);
}

/// docker/openbao.hcl is what `security-bootstrap run` writes for an OpenBao it supervises, with the
/// openbao container's paths: raft with performance_multiplier = 1, TLS from pki-init, unauthenticated
/// generate-root disabled (every container on the network reaches this listener), the declarative file
/// audit device. (A supervised OpenBao also gets a private Unix listener, which compose cannot share.)
#[test]
fn the_compose_openbao_config_is_what_a_supervised_openbao_gets() {
    let supervised = ServerConfig {
        data_dir: "/openbao/file".into(),
        listen: "127.0.0.1:8200".parse().unwrap(),
        cluster: "127.0.0.1:8201".parse().unwrap(),
        tls_cert: "/etc/edgeseal/pki/openbao/cert.pem".into(),
        tls_key: "/etc/edgeseal/pki/openbao/key.pem".into(),
        audit_log: Some("/openbao/logs/audit.log".into()),
        unauthed_generate_root: false,
        api_socket: None,
        tcp_client_ca: None,
        static_seal: None,
        self_init: None,
    }
    .render();
    let significant = |text: &str| -> Vec<String> {
        text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_owned).collect()
    };
    let file = fs::read_to_string(docker_dir().join("openbao.hcl")).unwrap();
    assert_eq!(significant(&file), significant(&supervised), "docker/openbao.hcl drifted from ServerConfig::render()");
}
