//! `security-bootstrap run`, the whole boot in one process, end to end on the host: pki-init, a
//! supervised OpenBao, setup, the token server and the watchdog. A token fetched over the socket reads
//! the service's secret; OpenBao killed with -9 is restarted and re-unsealed; a restarted bootstrapper
//! unseals without re-initializing and finds the same secrets. And `make run`'s script, once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use edgeseal_tests::device::Device;
use edgeseal_tests::ports::free_port_pair;
use edgeseal_tests::process::ChildGuard;
use edgeseal_tests::{poll_until, wait_until, workspace_binary};
use nix::sys::signal::Signal;
use pki_init::CaKeys;
use security_bootstrap::config::{ServiceEntry, ServiceName};
use token_server::config::{Selectors, UnixSelector};

struct Boot {
    device: Device,
    /// World-readable: the client binary and the socket directory.
    public: tempfile::TempDir,
    port: u16,
}

impl Boot {
    fn new() -> Self {
        let public = tempfile::tempdir().unwrap();
        fs::set_permissions(public.path(), fs::Permissions::from_mode(0o755)).unwrap();
        edgeseal_tests::install_executable(
            &workspace_binary("security-bootstrap"),
            &public.path().join("security-bootstrap"),
        );
        Self { device: Device::new(), public, port: free_port_pair() }
    }

    fn client(&self) -> PathBuf {
        self.public.path().join("security-bootstrap")
    }

    fn socket(&self) -> PathBuf {
        self.public.path().join("run/token.sock")
    }

    fn config(&self) -> PathBuf {
        let mut config = self.device.supervised_config(self.port, "openbao");
        config.pki.ca_keys = CaKeys::Keystore;
        config.token_server.socket = self.socket();
        let demo = ServiceEntry {
            selectors: Selectors {
                unix: Some(UnixSelector { uid: Some(0), path: Some(self.client()), ..Default::default() }),
                docker: None,
            },
            secrets: vec!["greeting".into()],
            ..Default::default()
        };
        config.services.insert(ServiceName("demo".into()), demo);
        self.device.write_yaml(&config)
    }

    fn start(&self) -> (ChildGuard, PathBuf) {
        let ready = self.device.path().join("ready");
        let _ = fs::remove_file(&ready);
        let log = fs::File::create(self.device.path().join(format!("run-{}.log", self.port))).unwrap();
        let child = Command::new(workspace_binary("security-bootstrap"))
            .args(["--log-format", "json", "run", "--config"])
            .arg(self.config())
            .arg("--ready-file")
            .arg(&ready)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut guard = ChildGuard::new("security-bootstrap run", child);
        let became_ready = poll_until(Duration::from_secs(120), || {
            assert!(guard.exited().is_none(), "run exited early:\n{}", self.log());
            ready.exists().then_some(())
        });
        assert!(became_ready.is_some(), "not ready after 120 s:\n{}", self.log());
        (guard, ready)
    }

    fn log(&self) -> String {
        fs::read_to_string(self.device.path().join(format!("run-{}.log", self.port))).unwrap_or_default()
    }

    fn fetch(&self) -> Output {
        Command::new(self.client()).arg("token").arg("--socket").arg(self.socket()).output().unwrap()
    }

    fn secret(&self, token: &str) -> String {
        let out = Command::new("curl")
            .args(["-sS", "--fail", "--cacert"])
            .arg(self.device.path().join("pki/ca/ca.pem"))
            .arg("-H")
            .arg(format!("X-Vault-Token: {token}"))
            .arg(format!("https://127.0.0.1:{}/v1/secret/data/edgeseal/demo/greeting", self.port))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        json["data"]["data"]["value"].as_str().unwrap().to_string()
    }

    fn token_until_ok(&self, within: Duration) -> String {
        let mut last = None;
        let token = poll_until(within, || {
            let out = self.fetch();
            if out.status.success() {
                let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                return Some(json["auth"]["client_token"].as_str().unwrap().to_string());
            }
            last = Some(out);
            None
        });
        token.unwrap_or_else(|| {
            let stderr = last.map(|out| String::from_utf8_lossy(&out.stderr).into_owned()).unwrap_or_default();
            panic!("no token within {within:?}: {stderr}\n{}", self.log())
        })
    }
}

fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for task in fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let text = fs::read_to_string(task.path().join("children")).unwrap_or_default();
        out.extend(text.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
    }
    out
}

fn openbao_child(pid: u32) -> Option<u32> {
    children(pid)
        .into_iter()
        .find(|c| fs::read_to_string(format!("/proc/{c}/cmdline")).unwrap_or_default().contains("server\0-config="))
}

#[test]
fn the_whole_boot_serves_tokens_survives_an_openbao_crash_and_restarts_without_reinit() {
    let boot = Boot::new();
    let (mut run, ready) = boot.start();
    assert!(boot.log().contains("\"initialized\":true"), "first boot initializes:\n{}", boot.log());
    let token = boot.token_until_ok(Duration::from_secs(10));
    let value = boot.secret(&token);
    assert!(value.len() >= 40);

    // OpenBao dies: the supervisor restarts it, the watchdog unseals it, tokens flow again.
    let bao = openbao_child(run.pid()).expect("a supervised OpenBao child");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(bao as i32), Signal::SIGKILL).unwrap();
    // Only a new OpenBao child can answer now (the killed one may still be dying): wait for it.
    wait_until("the supervisor has started a new OpenBao child", Duration::from_secs(60), || {
        openbao_child(run.pid()).filter(|&child| child != bao)
    });
    let token = boot.token_until_ok(Duration::from_secs(60));
    assert_eq!(boot.secret(&token), value);
    let restarted = openbao_child(run.pid()).expect("restarted");
    assert_ne!(restarted, bao);
    assert!(boot.log().contains("unsealed and healthy") || boot.log().contains("unsealed OpenBao"), "{}", boot.log());

    // SIGTERM: everything stops, OpenBao included; the ready file goes away.
    run.signal(Signal::SIGTERM);
    let status = run
        .exited_within(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("run did not stop on SIGTERM:\n{}", boot.log()));
    assert!(status.success(), "{status}\n{}", boot.log());
    assert!(!Path::new(&format!("/proc/{restarted}")).exists(), "the OpenBao child is gone");
    assert!(!ready.exists());

    // Start again: unseal from the keystore, no re-init, same secret.
    let (_run, _) = boot.start();
    let second_boot = boot.log();
    assert!(
        second_boot.contains("\"initialized\":false") && second_boot.contains("\"unsealed\":true"),
        "{second_boot}"
    );
    let token = boot.token_until_ok(Duration::from_secs(10));
    assert_eq!(boot.secret(&token), value, "same secrets after a restart");
}

#[test]
fn make_run_starts_fetches_a_token_reads_the_secret_and_stops() {
    let state = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let bin = workspace_binary("security-bootstrap").parent().unwrap().to_path_buf();
    let port = free_port_pair().to_string();
    let run = |_: ()| -> Child {
        Command::new(repo.join("scripts/demo.sh"))
            .arg("--once")
            .env("EDGESEAL_STATE", state.path())
            .env("EDGESEAL_DEMO_PORT", &port)
            .env("EDGESEAL_BIN", &bin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    for round in ["first (init)", "second (unseal)"] {
        let out = run(()).wait_with_output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{round}: {text}");
        assert!(
            text.contains("service=demo")
                && text.contains("characters (value not shown)")
                && text.contains("== stopped"),
            "{round}: {text}"
        );
    }
}
