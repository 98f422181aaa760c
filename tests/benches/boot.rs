//! `make bench` — startup time of `security-bootstrap run` to ready (warm boot, supervised OpenBao):
//! from process start to the ready file (pki-init converged, OpenBao started and unsealed, setup
//! converged, token socket serving), side by side with the floor: OpenBao's own start to a listening
//! socket with the same config and data. Release binaries; ratios, not thresholds.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use edgeseal_tests::device::Device;
use edgeseal_tests::openbao::bao_binary;
use edgeseal_tests::ports::free_port_pair;
use security_bootstrap::config::{ServiceEntry, ServiceName};
use token_server::config::{DockerSelector, Selectors};

const WARM_RUNS: usize = 7;

fn release_binary(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release").join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --release -p security-bootstrap -p kdf-plugins` (make bench does)",
        path.display()
    );
    path
}

/// Spawns `command`, times spawn → `ready()`, then stops it with SIGTERM and waits for it.
fn time_until(mut command: Command, ready: impl Fn() -> bool) -> Duration {
    let started = Instant::now();
    let mut child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    while !ready() {
        assert!(child.try_wait().unwrap().is_none(), "{command:?} exited before it was ready");
        assert!(started.elapsed() < Duration::from_secs(120), "{command:?} not ready in 120 s");
        std::thread::sleep(Duration::from_millis(2));
    }
    let took = started.elapsed();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    child.wait().unwrap();
    took
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let bootstrap = release_binary("security-bootstrap");
    let device = Device::new();
    let port = free_port_pair();
    let dir = device.path();
    let mut yaml = device.supervised_config(port, "openbao");
    yaml.pki.ca_keys = pki_init::CaKeys::Keystore;
    yaml.pki.certs.values_mut().for_each(|cert| cert.sans.retain(|san| san.to_string() == "127.0.0.1"));
    let defaults = secretstore_setup::config::SecretStoreConfig::default();
    yaml.secret_store.watchdog_interval = defaults.watchdog_interval;
    yaml.secret_store.wait_timeout = defaults.wait_timeout;
    yaml.token_server.socket = dir.join("token.sock");
    for i in 0..20 {
        let name = format!("svc{i:02}");
        let docker = DockerSelector { compose_service: Some(name.clone()), ..Default::default() };
        let entry = ServiceEntry {
            selectors: Selectors { unix: None, docker: Some(docker) },
            secrets: vec!["password".into()],
            ..Default::default()
        };
        yaml.services.insert(ServiceName(name), entry);
    }
    let config = device.write_yaml(&yaml);
    let ready = dir.join("ready");
    let boot = || {
        let _ = fs::remove_file(&ready);
        let mut command = Command::new(&bootstrap);
        command.args(["run", "--config"]).arg(&config).arg("--ready-file").arg(&ready);
        time_until(command, || ready.exists())
    };
    let cold = boot();
    let warm: Vec<Duration> = (0..WARM_RUNS).map(|_| boot()).collect();

    // The floor: OpenBao alone, same config and data, spawn → TCP listener accepting.
    let hcl = dir.join("openbao/openbao.hcl");
    let bao_start: Vec<Duration> = (0..WARM_RUNS)
        .map(|_| {
            let mut command = Command::new(bao_binary());
            command.arg("server").arg(format!("-config={}", hcl.display()));
            time_until(command, || TcpStream::connect(("127.0.0.1", port)).is_ok())
        })
        .collect();

    let (warm_p50, bao_p50) = (median(warm.clone()), median(bao_start));
    println!("security-bootstrap run → ready, supervised OpenBao, 20 services (release build)");
    println!("| boot | median | max |");
    println!("|---|---|---|");
    println!("| cold (first boot: PKI, raft election, init, configure) | {:.0} ms | |", cold.as_secs_f64() * 1e3);
    println!(
        "| warm (unseal + converge + serve), {WARM_RUNS} runs | {:.0} ms | {:.0} ms |",
        warm_p50.as_secs_f64() * 1e3,
        warm.iter().max().unwrap().as_secs_f64() * 1e3
    );
    println!("| floor: OpenBao alone, spawn → listening | {:.0} ms | |", bao_p50.as_secs_f64() * 1e3);
    println!(
        "edgeseal's own share of a warm boot: {:.0} ms ({:.1}x the bare OpenBao start)",
        (warm_p50.saturating_sub(bao_p50)).as_secs_f64() * 1e3,
        warm_p50.as_secs_f64() / bao_p50.as_secs_f64()
    );
}
