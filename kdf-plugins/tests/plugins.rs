//! Running real plug-in executables: every misbehaviour of SPEC §4 gets its own clear error, and the
//! trust rules refuse plug-ins that someone else could replace.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kdf_plugins::output::OutputError;
use kdf_plugins::run::PluginError;
use kdf_plugins::trust::TrustError;
use kdf_plugins::{run_plugin, KdfConfig, Protocol};

const DEFAULT_IKM: &str = "5eed0fedcba9876543210123456789abcdef0123456789abcdef0123456789ab";

/// A private directory holding a copy of the test plug-in, mode 0755 in a 0700 directory.
struct PluginDir {
    dir: tempfile::TempDir,
    exe: PathBuf,
}

impl PluginDir {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("edgeseal-kdf-test");
        install(Path::new(env!("CARGO_BIN_EXE_edgeseal-kdf-test")), &exe);
        Self { dir, exe }
    }

    fn script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        let side = self.dir.path().join(format!("{name}.src"));
        fs::write(&side, format!("#!/bin/sh\n{body}\n")).unwrap();
        install(&side, &path);
        path
    }

    fn config(&self, mode: &[&str], timeout: Duration) -> KdfConfig {
        KdfConfig {
            plugin: self.exe.clone(),
            args: mode.iter().map(|s| s.to_string()).collect(),
            protocol: Protocol::IkmV1,
            timeout,
        }
    }

    fn run(&self, mode: &[&str]) -> Result<kdf_plugins::Ikm, PluginError> {
        run_plugin(&self.config(mode, Duration::from_secs(10)))
    }
}

/// Copies an executable by a child process (`install`): this multi-threaded test process then never
/// holds a write descriptor to a file it executes, which a concurrent fork would inherit (ETXTBSY).
fn install(src: &Path, dst: &Path) {
    let status = std::process::Command::new("install").args(["-m", "0755"]).arg(src).arg(dst).status().unwrap();
    assert!(status.success());
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_good_plugin_returns_its_ikm() {
    let p = PluginDir::new();
    let ikm = p.run(&["good"]).unwrap();
    assert_eq!(hex::encode(ikm.expose()), DEFAULT_IKM);
    let other = "ffeeddccbbaa99887766554433221100";
    assert_eq!(hex::encode(p.run(&["good", other]).unwrap().expose()), other);
}

#[test]
fn the_plugin_sees_a_cleared_environment_root_cwd_and_empty_stdin() {
    std::env::set_var("EDGESEAL_LEAK_CHECK", "must-not-reach-the-plugin");
    let p = PluginDir::new();
    let ikm = p.run(&["sandbox"]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(hex::encode(ikm.expose()), DEFAULT_IKM);
}

#[test]
fn configured_args_follow_the_protocol_word_and_edgex_hooks_get_none() {
    let p = PluginDir::new();
    let args = p.script("args.sh", r#"echo "$*" >&2; exit 9"#);
    let mut config =
        KdfConfig { plugin: args.clone(), args: vec!["--tcti".into(), "swtpm:port=1".into()], ..KdfConfig::default() };
    let err = run_plugin(&config).unwrap_err().to_string();
    assert!(err.contains(r#"stderr: "ikm-v1 --tcti swtpm:port=1""#), "{err}");

    config.protocol = Protocol::Edgex;
    config.args.clear();
    let err = run_plugin(&config).unwrap_err().to_string();
    assert!(err.ends_with("exit status 9"), "edgex hooks get no arguments at all: {err}");
}

#[test]
fn every_bad_output_has_its_own_error_that_never_quotes_stdout() {
    let p = PluginDir::new();
    type Expect = fn(&OutputError) -> bool;
    let cases: &[(&str, Expect)] = &[
        ("bad-hex", |e| matches!(e, OutputError::NotHex { .. })),
        ("uppercase", |e| matches!(e, OutputError::NotHex { .. })),
        ("no-output", |e| matches!(e, OutputError::Empty)),
        ("extra-lines", |e| matches!(e, OutputError::ExtraLines { lines: 2 })),
        ("short", |e| matches!(e, OutputError::TooShort { len: 4 })),
    ];
    for (mode, want) in cases {
        match p.run(&[mode]) {
            Err(PluginError::BadOutput { reason, .. }) if want(&reason) => {}
            other => panic!("{mode}: unexpected {other:?}"),
        }
        let message = p.run(&[mode]).unwrap_err().to_string();
        assert!(message.contains(&p.exe.display().to_string()), "names the plug-in: {message}");
        assert!(!message.to_lowercase().contains(&DEFAULT_IKM[..16]), "{mode} leaks output: {message}");
        assert!(!message.contains("not hex\n") && !message.contains("this is not"), "{message}");
    }
}

#[test]
fn a_failing_plugin_is_reported_with_its_exit_code_and_stderr() {
    let p = PluginDir::new();
    let err = p.run(&["fail", "7"]).unwrap_err();
    assert!(matches!(err, PluginError::Failed { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("exit status 7"), "{message}");
    assert!(message.contains("failing on purpose with exit code 7"), "{message}");
}

#[test]
fn a_crashing_plugin_is_reported_with_its_signal() {
    let p = PluginDir::new();
    let err = p.run(&["crash"]).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, PluginError::Failed { .. }), "{err:?}");
    assert!(message.contains("killed by signal 6 (SIGABRT)"), "{message}");
    assert!(message.contains("crashing on purpose"), "{message}");
}

#[test]
fn a_hanging_plugin_is_killed_at_the_timeout() {
    let p = PluginDir::new();
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let err = run_plugin(&p.config(&["hang"], timeout)).unwrap_err();
    assert!(started.elapsed() >= timeout);
    assert!(matches!(err, PluginError::Timeout { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("did not finish within 300ms and was killed"), "{message}");
    assert!(message.contains("hanging on purpose"), "stderr is quoted: {message}");
}

#[test]
fn a_plugin_that_leaves_a_child_holding_stdout_does_not_hang_edgeseal() {
    let p = PluginDir::new();
    let err = run_plugin(&p.config(&["orphan"], Duration::from_millis(300))).unwrap_err();
    assert!(matches!(err, PluginError::Timeout { .. }), "{err:?}");
}

#[test]
fn huge_output_is_cut_off_and_refused() {
    let p = PluginDir::new();
    let err = p.run(&["huge"]).unwrap_err();
    assert!(matches!(err, PluginError::OutputTooLarge { .. }), "{err:?}");
}

#[test]
fn a_slow_start_within_the_timeout_is_fine() {
    let p = PluginDir::new();
    let ikm = run_plugin(&p.config(&["slow-start", "500"], Duration::from_secs(10))).unwrap();
    assert_eq!(hex::encode(ikm.expose()), DEFAULT_IKM);
}

#[test]
fn a_plugin_that_does_not_know_the_protocol_fails_clearly() {
    let p = PluginDir::new();
    let hook = p.script(
        "old-hook.sh",
        r#"[ $# -eq 0 ] || { echo "unknown argument $1" >&2; exit 2; }; echo 00112233445566778899aabbccddeeff"#,
    );
    let ikm_v1 = KdfConfig { plugin: hook.clone(), ..KdfConfig::default() };
    let message = run_plugin(&ikm_v1).unwrap_err().to_string();
    assert!(message.contains("exit status 2") && message.contains("unknown argument ikm-v1"), "{message}");
    // The same hook works unchanged under the EdgeX convention.
    let edgex = KdfConfig { protocol: Protocol::Edgex, ..ikm_v1 };
    assert_eq!(hex::encode(run_plugin(&edgex).unwrap().expose()), "00112233445566778899aabbccddeeff");
}

#[test]
fn a_missing_or_non_executable_plugin_is_refused_before_running() {
    let p = PluginDir::new();
    let missing = KdfConfig { plugin: p.dir.path().join("nope"), ..KdfConfig::default() };
    let err = run_plugin(&missing).unwrap_err();
    assert!(matches!(err, PluginError::Untrusted { source: TrustError::Inspect { .. }, .. }), "{err:?}");

    chmod(&p.exe, 0o644);
    let err = p.run(&["good"]).unwrap_err();
    assert!(matches!(err, PluginError::Untrusted { source: TrustError::NotExecutable(_), .. }), "{err:?}");

    let dir_as_plugin = KdfConfig { plugin: p.dir.path().to_path_buf(), ..KdfConfig::default() };
    let err = run_plugin(&dir_as_plugin).unwrap_err();
    assert!(matches!(err, PluginError::Untrusted { source: TrustError::NotRegularFile(_), .. }), "{err:?}");
}

#[test]
fn a_group_or_world_writable_plugin_is_refused() {
    for mode in [0o775, 0o757, 0o777] {
        let p = PluginDir::new();
        chmod(&p.exe, mode);
        let err = p.run(&["good"]).unwrap_err();
        assert!(matches!(err, PluginError::Untrusted { source: TrustError::Writable { .. }, .. }), "{mode:o}: {err:?}");
        assert!(err.to_string().contains("chmod go-w"), "says what to do: {err}");
    }
}

#[test]
fn a_writable_parent_directory_is_refused_but_a_sticky_root_dir_is_fine() {
    let p = PluginDir::new();
    let sub = p.dir.path().join("sub");
    fs::create_dir(&sub).unwrap();
    let exe = sub.join("plugin");
    install(&p.exe, &exe);
    let config = KdfConfig { plugin: exe.clone(), args: vec!["good".into()], ..KdfConfig::default() };

    chmod(&sub, 0o777);
    let err = run_plugin(&config).unwrap_err();
    match &err {
        PluginError::Untrusted { source: TrustError::Writable { path, .. }, .. } => assert_eq!(path, &sub),
        other => panic!("{other:?}"),
    }
    chmod(&sub, 0o775);
    assert!(run_plugin(&config).is_err(), "group-writable parent");

    // Root-owned and sticky, like /tmp: another user cannot replace our file in it.
    chmod(&sub, 0o1777);
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs a root-owned directory: run it as root (make test does)"
    );
    run_plugin(&config).unwrap();
    std::os::unix::fs::chown(&sub, Some(4242), None).unwrap();
    let err = run_plugin(&config).unwrap_err();
    assert!(matches!(err, PluginError::Untrusted { source: TrustError::Owner { uid: 4242, .. }, .. }), "{err:?}");
}

#[test]
fn a_symlink_through_a_writable_directory_is_refused() {
    let p = PluginDir::new();
    let open = p.dir.path().join("open");
    fs::create_dir(&open).unwrap();
    let link = open.join("plugin");
    std::os::unix::fs::symlink(&p.exe, &link).unwrap();
    chmod(&open, 0o777);
    let config = KdfConfig { plugin: link, args: vec!["good".into()], ..KdfConfig::default() };
    let err = run_plugin(&config).unwrap_err();
    assert!(matches!(err, PluginError::Untrusted { source: TrustError::Writable { .. }, .. }), "{err:?}");
    chmod(&open, 0o755);
    run_plugin(&config).unwrap();
}

#[test]
fn a_plugin_owned_by_another_user_is_refused() {
    assert!(nix::unistd::geteuid().is_root(), "this test chowns a file: run it as root (make test does)");
    let p = PluginDir::new();
    std::os::unix::fs::chown(&p.exe, Some(4242), None).unwrap();
    let err = p.run(&["good"]).unwrap_err();
    assert!(matches!(err, PluginError::Untrusted { source: TrustError::Owner { uid: 4242, .. }, .. }), "{err:?}");
}
