//! `security-bootstrap run`, the whole boot in one process, end to end on the host: pki-init, a
//! supervised OpenBao, setup, the token server and the watchdog. A token fetched over the socket reads
//! the service's secret; OpenBao killed with -9 is restarted and opens itself; a restarted bootstrapper
//! does not re-initialize and finds the same secrets. And `make run`'s script, once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use edgeseal_tests::boot::Boot;
use edgeseal_tests::ports::free_port_pair;
use edgeseal_tests::{wait_until, workspace_binary};
use nix::sys::signal::Signal;

#[test]
fn the_whole_boot_serves_tokens_survives_an_openbao_crash_and_restarts_without_reinit() {
    let mut boot = Boot::new();
    let mut run = boot.start();
    assert!(boot.log().contains("\"initialized\":true"), "first boot initializes:\n{}", boot.log());
    let token = boot.token_until_ok(Duration::from_secs(10));
    let value = boot.secret(&token);
    assert!(value.len() >= 40);

    // OpenBao dies: the supervisor restarts it, it opens itself, tokens flow again.
    let bao = boot.openbao_pid().expect("a supervised OpenBao child");
    boot.kill_openbao();
    wait_until("the supervisor has started a new OpenBao child", Duration::from_secs(60), || {
        boot.openbao_pid().filter(|&child| child != bao)
    });
    let token = boot.token_until_ok(Duration::from_secs(60));
    assert_eq!(boot.secret(&token), value);
    let restarted = boot.openbao_pid().expect("restarted");

    // SIGTERM: everything stops, OpenBao included; the ready file goes away.
    run.signal(Signal::SIGTERM);
    let status = run
        .exited_within(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("run did not stop on SIGTERM:\n{}", boot.log()));
    assert!(status.success(), "{status}\n{}", boot.log());
    assert!(!Path::new(&format!("/proc/{restarted}")).exists(), "the OpenBao child is gone");
    assert!(!boot.ready_file().exists());

    // Start again: it opens itself, no re-init, same secret.
    let before = boot.log().len();
    let _run = boot.start();
    let second_boot = boot.log()[before..].to_string();
    assert!(second_boot.contains("\"initialized\":false"), "{second_boot}");
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
