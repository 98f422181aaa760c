//! docker/docker-compose.yml end to end on a real Docker daemon, with Debian's docker-compose 1.29 (or
//! `$EDGESEAL_COMPOSE`, e.g. compose v2): the images are built offline by docker/build-images.sh, then
//! `up` runs pki-init → the bootstrapper, which starts OpenBao as its child (static seal, TLS from
//! pki-init), converges it and serves tokens → the example services. alpha and beta get their own
//! tokens through the socket (Docker-attested), read their own secret and are refused the other's
//! (403); legacy does the same with its file token. db is an unmodified app (password-app) that
//! reads its password from the file `gate --secret-file` writes: it accepts the value the admin reads
//! (`secrets get` through `compose exec bootstrapper`), and after `secrets rotate` it accepts the new
//! value and refuses the old one, in the same container (SIGHUP from gate, no rebuild, no recreation).
//!
//! The seal key (read from the running OpenBao's environment) is in no file of any compose volume and
//! in no container log, nor is db's password (old or new); OpenBao runs inside the bootstrapper
//! container. `docker restart` of the bootstrapper, and `down` keeping the volumes then `up` again,
//! both come back without re-initialization, and the restarted services get tokens and read the same
//! secrets (compared by the digest the example prints, never the value); db's new container gets the
//! rotated password. OpenBao's audit log shows its self-initialization and edgeseal's certificate
//! logins, never `sys/init` or `sys/unseal`. `down -v` at the end, and everything is removed on
//! failure too.
//!
//! Network: every container shares the host's network namespace; OpenBao listens on 127.0.0.1 at a
//! free port, and compose must create no network at all (the daemon has no bridge).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use edgeseal_tests::compose::{self, Compose, Project};
use edgeseal_tests::docker::Docker;
use edgeseal_tests::openbao::bao_binary;
use edgeseal_tests::ports::{free_port, free_port_pair};
use edgeseal_tests::regular_files_below;
use edgeseal_tests::{poll_until, workspace_binary};
use secretstore_setup::server_config::SEAL_KEY_ENV;
use sha2::{Digest, Sha256};

/// The example services and the service whose secret each one must be refused.
const EXAMPLES: [(&str, &str); 3] = [("alpha", "beta"), ("beta", "alpha"), ("legacy", "alpha")];
/// The volumes of docker-compose.yml.
const VOLUMES: [&str; 5] = ["pki", "keystore", "openbao-data", "run", "file-tokens"];
/// How long the example services may take to log their results after `up` returned.
const RESULTS_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a restarted bootstrapper may take to be healthy again.
const RESTART_TIMEOUT: Duration = Duration::from_secs(120);
/// What an example service logs once it has checked everything.
const ALL_PASSED: &str = "all checks passed";
/// What the bootstrapper logs once setup is done (with `initialized=…`), once per boot.
const SETUP_DONE: &str = "setup done";
/// What password-app (service db) logs, with the first 12 hex digits of its password's SHA-256, at
/// start and each time it read its password file again.
const DB_READY: &str = "password-app: ready: password sha256 ";
/// db's secret, as the admin names it.
const DB_SECRET: &str = "db/db-password";
/// The admin socket in the bootstrapper's container (docker/edgeseal.yaml's admin.socket).
const ADMIN_SOCKET: &str = "/run/edgeseal-admin/admin.sock";
/// How long gate (checking every 2 s) may take to hand db a rotated password.
const ROTATION_TIMEOUT: Duration = Duration::from_secs(60);

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
        for name in ["edgeseal-kdf-hwfp", "example-service", "password-app"] {
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
        let names: Vec<String> = ["password-app", "example-service", "openbao", "security-bootstrap"]
            .iter()
            .map(|n| self.image(n))
            .collect();
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

/// The part of `log` after the `n`th line containing `marker` (n = 0: all of it); `None` while there
/// are fewer. A restarted container keeps its earlier log: this is what one run of it wrote.
fn after_nth<'a>(log: &'a str, marker: &str, n: usize) -> Option<&'a str> {
    if n == 0 {
        return Some(log);
    }
    let (at, found) = log.match_indices(marker).nth(n - 1)?;
    let rest = &log[at + found.len()..];
    Some(rest.find('\n').map_or("", |nl| &rest[nl + 1..]))
}

/// Waits until every example service logged the results of its `run`th start (1 = the first start of
/// its container) and checks them; the outcomes by service. The tokens of alpha and beta must have
/// been issued through the socket to their own containers by the bootstrapper's `boot`th boot.
fn results(project: &Project, run: usize, boot: usize) -> BTreeMap<&'static str, Outcome> {
    let mut all = BTreeMap::new();
    for (service, other) in EXAMPLES {
        let log = project.wait_for_log(service, RESULTS_TIMEOUT, |log| log.matches(ALL_PASSED).count() >= run);
        let this_run = after_nth(&log, ALL_PASSED, run - 1).unwrap();
        let outcome = outcome(service, other, this_run);
        eprintln!(
            "edgeseal compose test: {service} (start {run}): token from {}, own secret {}",
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

    let log = project.logs("bootstrapper");
    let this_boot = after_nth(&log, SETUP_DONE, boot)
        .unwrap_or_else(|| panic!("the bootstrapper did not finish setup {boot} times:\n{log}"));
    for service in ["alpha", "beta"] {
        let container = project.containers(Some(service)).into_iter().next().unwrap();
        let issued = format!("container=\"{}\" service={service} ", &container[..12]);
        assert!(
            this_boot.lines().any(|l| l.contains("event=\"issued\"") && l.contains(&issued)),
            "boot {boot} of the bootstrapper issued no token to {service}'s container {container}:\n{log}"
        );
    }
    assert!(!log.contains("service=legacy "), "legacy never uses the socket:\n{log}");
    let logs = project.all_logs();
    assert!(!logs.contains("client_token"), "a token response in a log:\n{logs}");
    all
}

/// The `initialized=…` of every `setup done` line of the bootstrapper's log, boot by boot.
fn initialized(project: &Project) -> Vec<bool> {
    let log = project.logs("bootstrapper");
    log.lines()
        .filter(|l| l.contains(SETUP_DONE))
        .map(|l| {
            if l.contains("initialized=true") {
                true
            } else {
                assert!(l.contains("initialized=false"), "{l}");
                false
            }
        })
        .collect()
}

/// The static seal key the running OpenBao got, from its environment (the test runs as root, and the
/// bootstrapper shares the host's pid namespace). Also checks that OpenBao runs in the bootstrapper's
/// container, as its only `bao` process.
fn seal_key(project: &Project, bootstrapper: &str) -> String {
    let docker = project.docker();
    let top = compose::run(docker.cli().args(["top", bootstrapper, "-eo", "pid,args"]), Duration::from_secs(60));
    assert!(top.status.success(), "docker top: {}", top.text());
    let bao: Vec<u32> = top
        .stdout
        .lines()
        .skip(1)
        .filter(|l| l.contains("/usr/local/bin/bao server"))
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(bao.len(), 1, "one OpenBao in the bootstrapper's container:\n{}", top.stdout);
    let environ = fs::read(format!("/proc/{}/environ", bao[0])).unwrap();
    let prefix = format!("{SEAL_KEY_ENV}=");
    let key = environ
        .split(|&b| b == 0)
        .find_map(|var| var.strip_prefix(prefix.as_bytes()))
        .unwrap_or_else(|| panic!("OpenBao (pid {}) has no {SEAL_KEY_ENV} in its environment", bao[0]));
    let key = String::from_utf8(key.to_vec()).unwrap();
    assert!(key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()), "a 32-byte key in hex");
    key
}

/// Where the daemon keeps the files of `volume` (the private daemon runs in this mount namespace).
fn mountpoint(docker: &Docker, volume: &str) -> PathBuf {
    let out = compose::run(
        docker.cli().args(["volume", "inspect", "--format", "{{.Mountpoint}}", volume]),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "docker volume inspect {volume}: {}", out.text());
    let path = PathBuf::from(out.stdout.trim());
    assert!(path.is_dir(), "volume {volume}'s mount point {} is not visible to the test", path.display());
    path
}

/// Every file of the project's volumes, by volume, and which of them (and whether the container logs)
/// hold the seal key: in hex (either case), base64 or raw.
struct KeySearch {
    looked_at: BTreeMap<String, Vec<String>>,
    holders: Vec<String>,
}

fn search_key(project: &Project, key_hex: &str) -> KeySearch {
    let raw = hex::decode(key_hex).unwrap();
    let text: Vec<String> = vec![
        key_hex.to_lowercase(),
        key_hex.to_uppercase(),
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &raw),
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &raw),
    ];
    // The text forms are ASCII: a lossy UTF-8 view keeps every ASCII run, and std's substring search
    // is fast even in a debug build (raft's database is megabytes). The raw key: where its first byte is.
    let holds = |bytes: &[u8]| {
        let lossy = String::from_utf8_lossy(bytes);
        text.iter().any(|t| lossy.contains(t.as_str()))
            || bytes
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == raw[0])
                .any(|(at, _)| bytes.get(at..at + raw.len()) == Some(raw.as_slice()))
    };
    let mut search = KeySearch { looked_at: BTreeMap::new(), holders: Vec::new() };
    for volume in project.volumes() {
        let root = mountpoint(project.docker(), &volume);
        let mut names = Vec::new();
        for file in regular_files_below(&root) {
            let bytes = fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let name = file.strip_prefix(&root).unwrap().display().to_string();
            if holds(&bytes) {
                search.holders.push(format!("{volume}: {name}"));
            }
            names.push(name);
        }
        let short = volume.strip_prefix(&format!("{}_", project.name())).unwrap_or(&volume).to_string();
        search.looked_at.insert(short, names);
    }
    if holds(project.all_logs().as_bytes()) {
        search.holders.push("the container logs".into());
    }
    search
}

/// No file in any of the project's volumes, and no container log, holds the seal key. Returns the
/// files looked at by volume, so that a caller can check the look was not at empty volumes.
fn assert_key_nowhere(project: &Project, key_hex: &str) -> BTreeMap<String, Vec<String>> {
    let search = search_key(project, key_hex);
    assert!(search.holders.is_empty(), "the seal key is on a volume or in a log: {:?}", search.holders);
    search.looked_at
}

/// The request paths of OpenBao's audit log (volume `openbao-data`, `audit.log`).
fn audited_paths(project: &Project) -> Vec<String> {
    let volume = format!("{}_openbao-data", project.name());
    let log = mountpoint(project.docker(), &volume).join("audit.log");
    let text = fs::read_to_string(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let entry: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            entry["request"]["path"].as_str().unwrap_or_default().to_string()
        })
        .collect()
}

/// The audit log shows the self-initialization and edgeseal's certificate logins (`logins` of them
/// at least, one per boot), and never `sys/init` or `sys/unseal`: no one initialized or unsealed
/// OpenBao through its API.
fn assert_audit_without_init_or_unseal(project: &Project, logins: usize) {
    let paths = audited_paths(project);
    let count = |path: &str| paths.iter().filter(|p| p.as_str() == path).count();
    assert!(count("sys/auth/edgeseal-cert") >= 1, "the self-initialization mounted cert auth: {paths:?}");
    assert!(count("auth/edgeseal-cert/login") >= logins, "{logins} certificate logins: {paths:?}");
    for forbidden in ["sys/init", "sys/unseal"] {
        assert_eq!(count(forbidden), 0, "{forbidden} in OpenBao's audit log: {paths:?}");
    }
    assert!(!paths.iter().any(|p| p.starts_with("sys/generate-root")), "root generation audited: {paths:?}");
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

/// Waits until the bootstrapper (container `id`) is healthy after its `boot`th boot finished setup.
fn wait_healthy(project: &Project, id: &str, boot: usize) {
    let healthy = poll_until(RESTART_TIMEOUT, || {
        let health = project.inspect(id)["State"]["Health"]["Status"].clone();
        (health == "healthy" && initialized(project).len() >= boot).then_some(())
    });
    healthy.unwrap_or_else(|| panic!("the bootstrapper is not healthy after boot {boot}:\n{}", project.all_logs()));
}

/// `security-bootstrap ARGS --admin-socket …` run by `compose exec` in the bootstrapper's container
/// (root in its mount namespace, which the admin socket requires), as an operator runs it; its stdout.
fn admin(project: &Project, args: &[&str]) -> String {
    let mut all = vec!["exec", "-T", "bootstrapper", "/usr/local/bin/security-bootstrap"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--admin-socket", ADMIN_SOCKET]);
    let out = project.run(&all, Duration::from_secs(60));
    assert!(out.status.success(), "security-bootstrap {args:?} in the bootstrapper ({}): {}", out.status, out.stderr);
    out.stdout
}

/// The first 12 hex digits of the SHA-256 of `value`: what password-app logs of its password.
fn short_sha256(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))[..12].to_string()
}

/// The digests db logged, in order: one per read of its password file.
fn db_digests(log: &str) -> Vec<String> {
    log.lines().filter_map(|l| l.split_once(DB_READY)).map(|(_, digest)| digest.trim().to_string()).collect()
}

/// What db (password-app on the host's loopback) answers to `password`: `ok` or `denied`.
fn ask_db(port: u16, password: &str) -> String {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .unwrap_or_else(|e| panic!("db is not listening on 127.0.0.1:{port}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    stream.write_all(format!("{password}\n").as_bytes()).unwrap();
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).unwrap();
    answer.trim_end().to_string()
}

/// Which files of the project's volumes, and whether the container logs or `docker inspect` of
/// `container`, hold one of `values` (as text).
fn holders_of(project: &Project, container: &str, values: &[&str]) -> Vec<String> {
    let holds = |text: &str| values.iter().any(|v| text.contains(v));
    let mut holders = Vec::new();
    for volume in project.volumes() {
        let root = mountpoint(project.docker(), &volume);
        for file in regular_files_below(&root) {
            let bytes = fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            if holds(&String::from_utf8_lossy(&bytes)) {
                holders.push(format!("{volume}: {}", file.strip_prefix(&root).unwrap().display()));
            }
        }
    }
    if holds(&project.all_logs()) {
        holders.push("the container logs".into());
    }
    if holds(&project.inspect(container).to_string()) {
        holders.push(format!("docker inspect {container}"));
    }
    holders
}

/// db's passwords are in no file of any volume, no container log, and not in db's configuration
/// (environment, command line): only in the file on db's tmpfs and in OpenBao (encrypted).
fn assert_db_password_nowhere(project: &Project, container: &str, passwords: &[&str]) {
    let holders = holders_of(project, container, passwords);
    assert!(holders.is_empty(), "db's password is on a volume, in a log or in docker inspect: {holders:?}");
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

    // The device's files: docker/edgeseal.yaml with a free loopback port (the supervised OpenBao
    // listens there, its cluster on the next port) and this project's name; the machine-id the KDF
    // plug-in fingerprints.
    let port = free_port_pair();
    let db_port = free_port();
    let work = tempfile::tempdir().unwrap();
    let compose_file = docker_dir().join("docker-compose.yml");
    let project = Project::new(&docker, compose, "edgeseal-compose", &compose_file);
    let api = format!("127.0.0.1:{port}");
    let config = work.path().join("edgeseal.yaml");
    let selector = format!("compose_project: {}", project.name());
    render(
        &docker_dir().join("edgeseal.yaml"),
        &[("https://127.0.0.1:8200", &format!("https://{api}"), 1), ("compose_project: edgeseal", &selector, 3)],
        &config,
    );
    let machine_id_file = work.path().join("machine-id");
    fs::write(&machine_id_file, machine_id()).unwrap();
    let project = project
        .env("EDGESEAL_TAG", &images.tag)
        .env("EDGESEAL_OPENBAO_PORT", port.to_string())
        .env("EDGESEAL_CONFIG", config.display().to_string())
        .env("EDGESEAL_MACHINE_ID", machine_id_file.display().to_string())
        .env("EDGESEAL_DOCKER_SOCKET", docker.socket().display().to_string())
        .env("EDGESEAL_DB_PORT", db_port.to_string());

    // First boot: pki-init, then the bootstrapper starts OpenBao, which initializes itself; the
    // services read their secrets.
    let networks_before = networks(&docker);
    let first_up = project.up();
    let first_started = Instant::now();
    let first = results(&project, 1, 1);
    let first_results = first_started.elapsed();
    assert_eq!(initialized(&project), [true], "the first boot creates the store:\n{}", project.logs("bootstrapper"));
    let log = project.logs("bootstrapper");
    let setup_line = log.lines().find(|l| l.contains(SETUP_DONE)).unwrap();
    eprintln!("edgeseal compose test: bootstrapper: {}", setup_line.split(SETUP_DONE).nth(1).unwrap().trim());
    let pki_init = project.containers(Some("pki-init"));
    assert_eq!(project.inspect(&pki_init[0])["State"]["ExitCode"], 0, "{}", project.logs("pki-init"));
    let bootstrapper = project.containers(Some("bootstrapper")).remove(0);
    assert_eq!(project.inspect(&bootstrapper)["State"]["Health"]["Status"], "healthy");

    // Loopback only: every container is in the host's network namespace; compose made no network.
    // No OpenBao container: OpenBao runs inside the bootstrapper's.
    let ids = project.containers(None);
    assert_eq!(ids.len(), 6, "pki-init, bootstrapper, alpha, beta, legacy, db");
    for id in &ids {
        let container = project.inspect(id);
        assert_eq!(container["HostConfig"]["NetworkMode"], "host", "{}", container["Name"]);
    }
    assert_eq!(networks(&docker), networks_before, "compose must not create a network");
    let listening: SocketAddr = api.parse().unwrap();
    assert_eq!(listening.ip(), Ipv4Addr::LOCALHOST);
    std::net::TcpStream::connect_timeout(&listening, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("OpenBao is not listening on {listening} of the host: {e}"));

    // The seal key: in the OpenBao child's environment, in no file of any volume, in no log.
    let key = seal_key(&project, &bootstrapper);
    let search_started = Instant::now();
    let seen = assert_key_nowhere(&project, &key);
    let search_time = search_started.elapsed();
    let has = |volume: &str, file: &str| seen.get(volume).is_some_and(|files| files.iter().any(|f| f == file));
    for (volume, file) in [
        ("keystore", "keystore.json"),
        ("openbao-data", "raft/vault.db"),
        ("openbao-data", "audit.log"),
        ("openbao-data", "openbao.hcl"),
        ("file-tokens", "legacy/secrets-token.json"),
        ("pki", "openbao/key.pem"),
    ] {
        assert!(has(volume, file), "volume {volume} was looked at and holds {file}: {seen:?}");
    }
    assert_audit_without_init_or_unseal(&project, 1);
    // The search finds a key where there is one: planted in a file of a volume, in each encoding.
    let planted = mountpoint(&docker, &format!("{}_openbao-data", project.name())).join("planted");
    let raw = hex::decode(&key).unwrap();
    for encoded in [
        key.clone().into_bytes(),
        key.to_uppercase().into_bytes(),
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &raw).into_bytes(),
        raw.clone(),
    ] {
        fs::write(&planted, [b"x".as_slice(), &encoded, b"y"].concat()).unwrap();
        let holders = search_key(&project, &key).holders;
        assert_eq!(holders, [format!("{}_openbao-data: planted", project.name())], "the planted key is found");
    }
    fs::remove_file(&planted).unwrap();

    // db: an unmodified app (password-app) reads its password from the file `gate --secret-file`
    // wrote on its tmpfs. It accepts the value the admin reads through the bootstrapper's admin socket.
    let db = project.containers(Some("db")).remove(0);
    let db_started = project.inspect(&db)["State"]["StartedAt"].clone();
    let first_password = admin(&project, &["secrets", "get", DB_SECRET]);
    assert_eq!(first_password.len(), 43, "db's password: 32 generated bytes in base64url");
    let log = project.wait_for_log("db", RESULTS_TIMEOUT, |log| !db_digests(log).is_empty());
    assert_eq!(db_digests(&log), [short_sha256(&first_password)], "db uses the password the admin reads:\n{log}");
    assert_eq!(ask_db(db_port, &first_password), "ok", "db accepts its password");
    assert_eq!(ask_db(db_port, "not-the-password"), "denied", "db refuses another");
    eprintln!("edgeseal compose test: db: password sha256 {}", short_sha256(&first_password));

    // `secrets rotate`: gate sees the new version, rewrites the file and sends SIGHUP; the app reads
    // the new value. Same container, same process: no rebuild, no recreation, no restart.
    let rotate_started = Instant::now();
    let rotated = admin(&project, &["secrets", "rotate", DB_SECRET]);
    assert!(rotated.starts_with(&format!("{DB_SECRET} rotated to version ")), "{rotated}");
    let new_password = admin(&project, &["secrets", "get", DB_SECRET]);
    assert!(new_password.len() == 43 && new_password != first_password, "rotate generated a new password");
    let log = project.wait_for_log("db", ROTATION_TIMEOUT, |log| db_digests(log).len() >= 2);
    let db_rotation = rotate_started.elapsed();
    assert_eq!(
        db_digests(&log),
        [short_sha256(&first_password), short_sha256(&new_password)],
        "db read the rotated password once:\n{log}"
    );
    assert_eq!(ask_db(db_port, &new_password), "ok", "db accepts the rotated password");
    assert_eq!(ask_db(db_port, &first_password), "denied", "db refuses the old password");
    assert!(log.contains("a secret changed: signalling the app"), "gate sent the app its signal:\n{log}");
    assert_eq!(log.matches("password-app: listening").count(), 1, "the app was signalled, not restarted:\n{log}");
    assert_eq!(project.containers(Some("db")), std::slice::from_ref(&db), "db's container was not recreated");
    let container = project.inspect(&db);
    assert_eq!(container["State"]["StartedAt"], db_started, "db's container was not restarted");
    assert_eq!(container["State"]["Running"], true);
    assert_eq!(container["RestartCount"], 0);
    // The token server served the values to db's own container (Docker-attested), at start and after
    // the rotation.
    let log = project.logs("bootstrapper");
    let to_db = format!("container=\"{}\" service=db ", &db[..12]);
    let reads = log.lines().filter(|l| l.contains("event=\"secret_read\"") && l.contains(&to_db)).count();
    assert!(reads >= 2, "the token server served db's container its secret twice:\n{log}");
    eprintln!(
        "edgeseal compose test: db: rotated to sha256 {}, picked up {:.1} s after `secrets rotate`; \
         {reads} secret reads and {} lines naming db in the bootstrapper's log",
        short_sha256(&new_password),
        db_rotation.as_secs_f64(),
        log.lines().filter(|l| l.contains("service=db")).count()
    );
    // Neither password is on a volume, in a log or in db's configuration; the search finds one that is.
    let passwords = [first_password.as_str(), new_password.as_str()];
    assert_db_password_nowhere(&project, &db, &passwords);
    fs::write(&planted, format!("x{new_password}y")).unwrap();
    let holders = holders_of(&project, &db, &passwords);
    assert_eq!(holders, [format!("{}_openbao-data: planted", project.name())], "the planted password is found");
    fs::remove_file(&planted).unwrap();

    // `docker restart` of the bootstrapper: OpenBao restarts with it and opens itself with the key
    // from the keystore (no re-initialization); the restarted services get new tokens and read the
    // same secrets.
    let restart_started = Instant::now();
    let restart = compose::run(docker.cli().args(["restart", "-t", "30", &bootstrapper]), Duration::from_secs(120));
    assert!(restart.status.success(), "docker restart: {}", restart.text());
    let restart_returned = restart_started.elapsed();
    wait_healthy(&project, &bootstrapper, 2);
    let restart_healthy = restart_started.elapsed();
    assert_eq!(initialized(&project), [true, false], "the restart opens the store:\n{}", project.logs("bootstrapper"));
    assert_eq!(seal_key(&project, &bootstrapper), key, "the restarted OpenBao got the same key");
    let out = project.run(&["restart", "-t", "5", "alpha", "beta", "legacy"], Duration::from_secs(120));
    assert!(out.status.success(), "compose restart of the services: {}", out.text());
    let restarted = results(&project, 2, 2);
    for (service, _) in EXAMPLES {
        assert_eq!(first[service].own_secret, restarted[service].own_secret, "{service}'s secret after docker restart");
    }
    assert_key_nowhere(&project, &key);
    assert_db_password_nowhere(&project, &db, &passwords);
    assert_audit_without_init_or_unseal(&project, 2);

    // `down` keeps the volumes; `up` again: OpenBao opens itself, not re-initialized, same secrets.
    let first_down = project.down(false);
    assert!(project.containers(None).is_empty(), "down removes the containers");
    let volumes = project.volumes();
    for volume in VOLUMES {
        let name = format!("{}_{volume}", project.name());
        assert!(volumes.contains(&name), "down keeps volume {name}: {volumes:?}");
    }
    assert_key_nowhere(&project, &key);
    let second_up = project.up();
    let second = results(&project, 1, 1);
    assert_eq!(initialized(&project), [false], "up after down opens the store:\n{}", project.logs("bootstrapper"));
    let bootstrapper = project.containers(Some("bootstrapper")).remove(0);
    assert_eq!(seal_key(&project, &bootstrapper), key, "the same key after down/up");
    for (service, _) in EXAMPLES {
        assert_eq!(
            first[service].own_secret, second[service].own_secret,
            "{service}'s secret is the same after down/up"
        );
    }
    assert_key_nowhere(&project, &key);
    // db's new container gets the rotated password: it is the service's secret in OpenBao, not the image's.
    let db = project.containers(Some("db")).remove(0);
    let log = project.wait_for_log("db", RESULTS_TIMEOUT, |log| !db_digests(log).is_empty());
    assert_eq!(db_digests(&log), [short_sha256(&new_password)], "db after down/up:\n{log}");
    assert_eq!(ask_db(db_port, &new_password), "ok", "db accepts the rotated password after down/up");
    assert_eq!(ask_db(db_port, &first_password), "denied", "db refuses the old password after down/up");
    assert_db_password_nowhere(&project, &db, &passwords);
    assert_audit_without_init_or_unseal(&project, 3);

    // `down -v` removes everything.
    let last_down = project.down(true);
    assert!(project.containers(None).is_empty());
    assert!(project.volumes().is_empty(), "down -v removes the volumes: {:?}", project.volumes());
    eprintln!(
        "edgeseal compose test: images {:.1} s, first up {:.1} s (+{:.1} s to the services' results), key search \
         {:.1} s, docker restart {:.1} s (healthy after {:.1} s), down {:.1} s, second up {:.1} s, down -v {:.1} s, \
         total {:.1} s",
        build_time.as_secs_f64(),
        first_up.as_secs_f64(),
        first_results.as_secs_f64(),
        search_time.as_secs_f64(),
        restart_returned.as_secs_f64(),
        restart_healthy.as_secs_f64(),
        first_down.as_secs_f64(),
        second_up.as_secs_f64(),
        last_down.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    drop(project);
    drop(images);
}
