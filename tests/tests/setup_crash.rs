//! Crash safety of `security-bootstrap setup` (SPEC §11): the real binary is killed with SIGKILL at
//! every named point of a first initialization and of a reboot; every rerun converges, and OpenBao can
//! always still be unsealed afterwards. The one point where the shares can be lost (between OpenBao's
//! answer to sys/init and the keystore's fsync) is detected and explained instead.
//!
//! Crash points exist only in a build with the cargo feature `crash-points`: `cargo test --workspace`
//! (and `make test`) builds the binary with it, because this crate enables it on its dev-dependency
//! `security-bootstrap`; a release build has none.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output};

use edgeseal_tests::device::{service, Device};
use edgeseal_tests::openbao::OpenBao;
use edgeseal_tests::pki::TestPki;
use secretstore_setup::crash::{reboot_points, CRASH_ENV, POINTS};
use secretstore_setup::setup::Setup;

fn bootstrap_binary() -> std::path::PathBuf {
    edgeseal_tests::workspace_binary("security-bootstrap")
}

fn setup_cli(config: &Path, crash_at: Option<&str>) -> Output {
    let mut command = Command::new(bootstrap_binary());
    command.args(["setup", "--config"]).arg(config).env_remove(CRASH_ENV);
    if let Some(point) = crash_at {
        command.env(CRASH_ENV, point);
    }
    command.output().unwrap()
}

/// Runs setup told to die at `point` and checks that it did (SIGKILL).
fn crash_at(config: &Path, point: &str) {
    let crashed = setup_cli(config, Some(point));
    assert_eq!(
        crashed.status.signal(),
        Some(9),
        "{point}: expected kill -9 at the point; if setup ran to the end instead, {} was built without the \
         `crash-points` feature: build it with `cargo test --workspace` (or `cargo build -p security-bootstrap \
         --features crash-points`): {}",
        bootstrap_binary().display(),
        text(&crashed)
    );
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn services() -> Vec<secretstore_setup::config::ServiceSetup> {
    vec![service("alpha", &["db-password"], Some((2002, 2001))), service("beta", &["api-key"], Some((2003, 2001)))]
}

/// After a successful run: restart OpenBao (sealed) and check the next run unseals and changes nothing.
fn assert_unsealable_and_converged(bao: &mut OpenBao, config: &Path, setup: &Setup, context: &str) {
    bao.restart();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    assert!(rt.block_on(setup.client().unwrap().health()).unwrap().sealed, "{context}: restarted sealed");
    let out = setup_cli(config, None);
    assert!(out.status.success(), "{context}: rerun after restart: {}", text(&out));
    let report = text(&out);
    assert!(report.contains("(unsealed)"), "{context}: {report}");
    assert!(report.contains("config       unchanged"), "{context}: converged: {report}");
}

#[test]
fn killed_at_any_point_of_a_first_initialization_a_rerun_converges() {
    assert!(POINTS.len() >= 10);
    for &point in POINTS {
        let pki = TestPki::new();
        let mut bao = OpenBao::start(&pki);
        let device = Device::new();
        let setup = device.setup(&bao, services());
        let config = device.write_config(&setup);

        crash_at(&config, point);

        let rerun = setup_cli(&config, None);
        if point == "after-init" {
            // The shares existed only in the killed process: detected, explained, nothing touched.
            assert_eq!(rerun.status.code(), Some(1), "{point}: {}", text(&rerun));
            let message = text(&rerun);
            assert!(message.contains("was killed before the unseal shares reached the keystore"), "{message}");
            assert!(!device.keystore_dir().join("keystore.json").exists());
            continue;
        }
        assert!(rerun.status.success(), "{point}: rerun must converge: {}", text(&rerun));
        assert!(!device.keystore_dir().join("init-pending").exists(), "{point}: marker cleared");
        assert!(!device.keystore_dir().join("root-accessor.pending").exists(), "{point}: root revoked");
        assert_unsealable_and_converged(&mut bao, &config, &setup, point);
    }
}

#[test]
fn killed_at_any_point_of_a_reboot_a_rerun_converges() {
    assert!(reboot_points().count() >= 10);
    let pki = TestPki::new();
    let mut bao = OpenBao::start(&pki);
    let device = Device::new();
    let setup = device.setup(&bao, services());
    let config = device.write_config(&setup);
    assert!(setup_cli(&config, None).status.success());

    for point in reboot_points() {
        bao.restart();
        crash_at(&config, point);
        let rerun = setup_cli(&config, None);
        assert!(rerun.status.success(), "{point}: rerun must converge: {}", text(&rerun));
        assert!(!device.keystore_dir().join("root-accessor.pending").exists(), "{point}: root revoked");
        assert_unsealable_and_converged(&mut bao, &config, &setup, point);
    }
}
