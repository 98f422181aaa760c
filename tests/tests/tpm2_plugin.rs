//! `edgeseal-kdf-tpm2` against a real TPM simulator (swtpm, started and stopped by the harness): the
//! in-process derivation gives exactly the IKM tpm2-tools give on the same TPM (so no keystore moves);
//! the IKM is stable across runs and reboots of the same TPM, differs on another TPM, survives power
//! cuts (noda keys); a PCR-bound key answers while its PCR holds the recorded value and is refused,
//! naming the PCR, once the PCR is extended; and each fault — no TPM, unsupported TCTI, missing handle,
//! DA lockout, full object memory, a busy TPM, missing tpm2-tools for `provision` — ends with its own
//! one-line error, nothing on stdout, within the timeout.
//!
//! The plug-in binary is the one cargo built for the workspace (`target/debug/edgeseal-kdf-tpm2`); run
//! `cargo build -p kdf-plugins --bins` (or `make test`) first.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use edgeseal_tests::ports::free_port_pair;
use edgeseal_tests::process::wait_within;
use edgeseal_tests::swtpm::Swtpm;
use kdf_plugins::run::PluginError;
use kdf_plugins::tpm2::wire::Response;
use kdf_plugins::tpm2::{commands, PcrPolicy, LABEL};
use kdf_plugins::{run_plugin, KdfConfig, Protocol};
use sha2::{Digest, Sha256};

const PLUGIN: &str = "edgeseal-kdf-tpm2";
const HANDLE: &str = "0x81000101";
/// What edgeseal gives a plug-in.
const PLUGIN_PATH: &str = "/usr/bin:/bin";

/// The plug-in cargo built for this workspace; refuses a missing or stale one.
fn plugin_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/debug/deps/tpm2_plugin-HASH → target/debug/edgeseal-kdf-tpm2
    let dir = exe.parent().and_then(Path::parent).expect("test binary lives in target/<profile>/deps");
    let plugin = dir.join(PLUGIN);
    let built = fs::metadata(&plugin).and_then(|m| m.modified()).unwrap_or_else(|e| {
        panic!(
            "{} is not built ({e}): run the workspace tests (`make test` or `cargo test --workspace`) or \
             `cargo build -p kdf-plugins --bins` first",
            plugin.display()
        )
    });
    let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kdf-plugins/src");
    let newest = edgeseal_tests::newest_mtime(&sources).unwrap_or(SystemTime::UNIX_EPOCH);
    assert!(
        built >= newest,
        "{} is older than the sources in {}: rebuild it with `cargo build -p kdf-plugins --bins`",
        plugin.display(),
        sources.display()
    );
    plugin
}

/// Runs the plug-in the way edgeseal does (cleared environment, `/` as cwd, no stdin), bounded.
fn run_with_path(args: &[&str], path: &str) -> Output {
    let mut child = Command::new(plugin_binary())
        .args(args)
        .env_clear()
        .env("PATH", path)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if wait_within(&mut child, Duration::from_secs(60)).is_none() {
        child.kill().unwrap();
        panic!("{PLUGIN} {args:?} ran for more than 60s");
    }
    child.wait_with_output().unwrap()
}

fn run(args: &[&str]) -> Output {
    run_with_path(args, PLUGIN_PATH)
}

/// Derives and checks the output shape: one line, 64 lowercase hex digits, nothing on stderr.
fn ikm(tpm: &Swtpm, extra: &[&str]) -> String {
    let tcti = tpm.tcti();
    let mut args = vec!["ikm-v1", "--tcti", &tcti];
    args.extend_from_slice(extra);
    let out = run(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?}: {} {stderr}", out.status);
    assert!(stderr.is_empty(), "{args:?}: nothing on stderr on success: {stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let line = stdout.strip_suffix('\n').expect("one line ending in a newline");
    assert_eq!(line.len(), 64, "{stdout:?}");
    assert!(line.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')), "{stdout:?}");
    line.to_owned()
}

/// Runs and expects a runtime failure: exit 1, empty stdout, exactly one line on stderr; returns it.
fn failure(args: &[&str]) -> String {
    failure_with_path(args, PLUGIN_PATH)
}

fn failure_with_path(args: &[&str], path: &str) -> String {
    let out = run_with_path(args, path);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout on failure");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: one line on stderr: {stderr}");
    let line = stderr.trim_end().to_owned();
    assert!(line.starts_with("edgeseal-kdf-tpm2: "), "{line}");
    line
}

fn transient_handles(tpm: &Swtpm) -> String {
    tpm.tool_ok("tpm2_getcap", &["handles-transient"])
}

/// Persists a DA-protected HMAC key (no noda, empty auth) at `handle`, as an older setup might have.
fn persist_da_protected_hmac_key(tpm: &Swtpm, handle: &str) {
    let dir = tempfile::tempdir().unwrap();
    let f = |name: &str| dir.path().join(name).display().to_string();
    let (srk, public, private, key) = (f("srk.ctx"), f("k.pub"), f("k.priv"), f("k.ctx"));
    let parent_attrs = "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|restricted|decrypt";
    tpm.tool_ok(
        "tpm2_createprimary",
        &["-Q", "-C", "o", "-G", "ecc256", "-g", "sha256", "-a", parent_attrs, "-c", &srk],
    );
    tpm.tool_ok("tpm2_flushcontext", &["-t"]);
    let key_attrs = "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign";
    let create = ["-Q", "-C", &srk, "-G", "hmac", "-g", "sha256", "-a", key_attrs, "-u", &public, "-r", &private];
    tpm.tool_ok("tpm2_create", &create);
    tpm.tool_ok("tpm2_flushcontext", &["-t"]);
    tpm.tool_ok("tpm2_load", &["-Q", "-C", &srk, "-u", &public, "-r", &private, "-c", &key]);
    tpm.tool_ok("tpm2_flushcontext", &["-t"]);
    tpm.tool_ok("tpm2_evictcontrol", &["-Q", "-C", "o", "-c", &key, handle]);
    tpm.tool_ok("tpm2_flushcontext", &["-t"]);
}

fn in_lockout(tpm: &Swtpm) -> bool {
    let vars = tpm.tool_ok("tpm2_getcap", &["properties-variable"]);
    let line = vars.lines().find(|l| l.trim_start().starts_with("inLockout:")).expect("inLockout in getcap output");
    line.trim().ends_with('1')
}

/// A private 0700 directory holding a copy of the plug-in, so it passes the runner's trust checks.
struct InstalledPlugin {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

fn install_plugin() -> InstalledPlugin {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(PLUGIN);
    edgeseal_tests::install_executable(&plugin_binary(), &path);
    InstalledPlugin { _dir: dir, path }
}

fn config(plugin: &InstalledPlugin, args: &[&str], protocol: Protocol) -> KdfConfig {
    KdfConfig {
        plugin: plugin.path.clone(),
        args: args.iter().map(|s| s.to_string()).collect(),
        protocol,
        timeout: Duration::from_secs(30),
    }
}

/// The IKM as tpm2-tools compute it (what the plug-in ran before it talked to the TPM itself):
/// `tpm2_createprimary` with the plug-in's template and `tpm2_hmac` of the label, by the key at `handle`
/// or by that primary.
fn ikm_by_tpm2_tools(tpm: &Swtpm, handle: Option<&str>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let label = dir.path().join("label");
    fs::write(&label, LABEL).unwrap();
    let label = label.display().to_string();
    let key = match handle {
        Some(handle) => handle.to_owned(),
        None => {
            let ctx = dir.path().join("primary.ctx").display().to_string();
            let attrs = "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|sign";
            tpm.tool_ok(
                "tpm2_createprimary",
                &["-Q", "-C", "o", "-G", "hmac", "-g", "sha256", "-a", attrs, "-c", &ctx],
            );
            tpm.tool_ok("tpm2_flushcontext", &["-t"]);
            ctx
        }
    };
    let hex = tpm.tool_ok("tpm2_hmac", &["-c", &key, "-g", "sha256", "--hex", &label]);
    tpm.tool_ok("tpm2_flushcontext", &["-t"]);
    hex.trim().to_owned()
}

#[test]
fn the_in_process_ikm_is_the_one_tpm2_tools_compute_on_the_same_tpm() {
    let tpm = Swtpm::start();
    let tools = ikm_by_tpm2_tools(&tpm, None);
    assert_eq!(tools.len(), 64, "{tools}");
    assert_eq!(ikm(&tpm, &[]), tools, "primary key: same template, same key, same IKM");

    let tcti = tpm.tcti();
    assert!(run(&["provision", "--tcti", &tcti, "--handle", HANDLE]).status.success());
    assert_eq!(ikm(&tpm, &["--handle", HANDLE]), ikm_by_tpm2_tools(&tpm, Some(HANDLE)), "persistent key");
    assert_eq!(transient_handles(&tpm).trim(), "");
}

/// Raw TPM commands on swtpm's port (one connection per command), for what the plug-in never does.
fn raw_command(tpm: &Swtpm, command: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(("127.0.0.1", tpm.port())).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(command).unwrap();
    let mut response = vec![0u8; 10];
    stream.read_exact(&mut response).unwrap();
    let size = u32::from_be_bytes([response[2], response[3], response[4], response[5]]) as usize;
    response.resize(size, 0);
    stream.read_exact(&mut response[10..]).unwrap();
    response
}

/// `--pcrs` and `--pcr-values` from what `provision --pcrs` printed on its `Plug-in arguments:` line.
fn pcr_arguments(stdout: &str) -> Vec<String> {
    let line = stdout.lines().find_map(|l| l.strip_prefix("Plug-in arguments: ")).expect("a Plug-in arguments line");
    let args: Vec<String> = line.split(' ').map(str::to_owned).collect();
    let start = args.iter().position(|a| a == "--pcrs").expect("--pcrs in the arguments");
    args[start..].to_vec()
}

#[test]
fn a_pcr_bound_key_answers_while_the_pcr_holds_its_value_and_is_refused_after_an_extend() {
    let tpm = Swtpm::start();
    let tcti = tpm.tcti();
    let unbound = ikm(&tpm, &[]);

    // Recording the values: on a fresh swtpm PCR 7 is all zero.
    let out = run(&["provision", "--tcti", &tcti, "--pcrs", "sha256:7"]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("security-bootstrap keystore rewrap --config"), "{stdout}");
    let zero = "00".repeat(32);
    let args = pcr_arguments(&stdout);
    assert_eq!(args, ["--pcrs", "sha256:7", "--pcr-values", zero.as_str()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    let bound = ikm(&tpm, &args);
    assert_eq!(ikm(&tpm, &args), bound, "stable while the PCR holds its value");
    assert_ne!(bound, unbound, "a PCR-bound key is another key: another IKM");
    assert_eq!(transient_handles(&tpm).trim(), "");

    // The password path is closed: the TPM refuses TPM2_HMAC with the empty password on this template
    // (userWithAuth clear), so only the policy session can use the key.
    let policy = PcrPolicy::new("sha256:7".parse().unwrap(), &[[0; 32]]).unwrap();
    let created = raw_command(&tpm, &commands::create_primary(Some(&policy.auth_policy())));
    let object = commands::parse_create_primary(&Response::parse(&created).unwrap()).unwrap();
    let by_password = raw_command(&tpm, &commands::hmac(object, None, LABEL));
    assert_eq!(Response::parse(&by_password).unwrap().code, 0x12F, "TPM_RC_AUTH_UNAVAILABLE");
    raw_command(&tpm, &commands::flush_context(object));

    // Something else is measured into PCR 7: the plug-in refuses, naming the PCR and both values.
    let digest = "ab".repeat(32);
    tpm.tool_ok("tpm2_pcrextend", &[&format!("7:sha256={digest}")]);
    let now = hex::encode(Sha256::new().chain_update([0u8; 32]).chain_update([0xab; 32]).finalize());
    let mut full = vec!["ikm-v1", "--tcti", tcti.as_str()];
    full.extend_from_slice(&args);
    let refused = failure(&full);
    assert!(refused.starts_with("edgeseal-kdf-tpm2: the TPM refuses the PCR-bound key (TPM response 0x1c4): "));
    assert!(refused.ends_with(&format!("; PCR sha256:7 is {now}, expected {zero}")), "{refused}");
    for phrase in ["security-bootstrap restore", "security-bootstrap keystore rewrap", "provision --pcrs sha256:7"] {
        assert!(refused.contains(phrase), "{phrase}: {refused}");
    }
    assert!(!refused.contains(&bound[..16]) && !refused.contains(&unbound[..16]), "no IKM in errors");
    assert_eq!(transient_handles(&tpm).trim(), "", "the object is flushed after the refusal");
    assert_eq!(tpm.tool_ok("tpm2_getcap", &["handles-loaded-session"]).trim(), "", "and the session");

    // Through edgeseal's runner: a failed plug-in (exit 1) whose reason reaches the operator.
    let plugin = install_plugin();
    let mut runner_args = vec!["--tcti", tcti.as_str()];
    runner_args.extend_from_slice(&args);
    let err = run_plugin(&config(&plugin, &runner_args, Protocol::IkmV1)).unwrap_err();
    assert!(matches!(err, PluginError::Failed { .. }), "{err:?}");
    assert!(err.to_string().contains("exit status 1"), "{err}");
    // The runner quotes the end of stderr: the recovery commands and the PCR values are there.
    for phrase in
        ["security-bootstrap restore", "security-bootstrap keystore rewrap", &format!("PCR sha256:7 is {now}")]
    {
        assert!(err.to_string().contains(phrase), "{phrase}: {err}");
    }

    // The unbound key does not care; re-recording binds to the new value (another IKM again).
    assert_eq!(ikm(&tpm, &[]), unbound);
    let out = run(&["provision", "--tcti", &tcti, "--pcrs", "sha256:7"]);
    let rebound = pcr_arguments(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(rebound[3], now);
    let rebound: Vec<&str> = rebound.iter().map(String::as_str).collect();
    let new_ikm = ikm(&tpm, &rebound);
    assert_ne!(new_ikm, bound);
}

#[test]
fn the_primary_key_gives_the_same_ikm_across_runs_clean_reboots_and_power_cuts() {
    let mut tpm = Swtpm::start();
    let first = ikm(&tpm, &[]);
    assert_eq!(ikm(&tpm, &[]), first, "same TPM, same IKM");
    assert_eq!(ikm(&tpm, &[]), first);
    assert_eq!(transient_handles(&tpm).trim(), "", "the plug-in flushes what it loaded");

    tpm.restart();
    assert_eq!(ikm(&tpm, &[]), first, "after an orderly restart");
    // More power cuts than TPM2_PT_MAX_AUTH_FAIL (3): the noda primary keeps working.
    for cut in 1..=4 {
        tpm.kill_and_restart();
        assert_eq!(ikm(&tpm, &[]), first, "after power cut {cut}");
    }
    assert_eq!(transient_handles(&tpm).trim(), "");
}

#[test]
fn a_state_dir_is_one_tpm_and_another_state_dir_is_another() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("tpm-state");
    let before = {
        let tpm = Swtpm::start_in(&state);
        ikm(&tpm, &[])
    }; // dropped: orderly shutdown, like a reboot
    let tpm = Swtpm::start_in(&state);
    assert_eq!(ikm(&tpm, &[]), before, "the same state dir is the same TPM");

    let other = Swtpm::start();
    assert_ne!(ikm(&other, &[]), before, "another TPM (other seeds) gives another IKM");
}

#[test]
fn a_provisioned_persistent_key_gives_a_stable_ikm_of_its_own() {
    let mut tpm = Swtpm::start();
    let tcti = tpm.tcti();
    let provision = ["provision", "--tcti", &tcti, "--handle", HANDLE];
    let out = run(&provision);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("provisioned a new HMAC-SHA256 key at persistent handle 0x81000101"), "{stdout}");
    assert!(out.stderr.is_empty());

    let persistent = ikm(&tpm, &["--handle", HANDLE]);
    assert_eq!(ikm(&tpm, &["--handle", HANDLE]), persistent);
    assert_ne!(ikm(&tpm, &[]), persistent, "the persistent key is not the primary key");

    tpm.restart();
    assert_eq!(ikm(&tpm, &["--handle", HANDLE]), persistent, "after an orderly restart");
    tpm.kill_and_restart();
    assert_eq!(ikm(&tpm, &["--handle", HANDLE]), persistent, "after a power cut");

    // Provisioning again changes nothing (idempotent), and says so.
    let tcti = tpm.tcti();
    let again = run(&["provision", "--tcti", &tcti, "--handle", HANDLE]);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("already holds"), "{again:?}");
    assert_eq!(ikm(&tpm, &["--handle", HANDLE]), persistent);
    assert_eq!(transient_handles(&tpm).trim(), "");

    // Another TPM provisioned at the same handle has another key.
    let other = Swtpm::start();
    let other_tcti = other.tcti();
    assert!(run(&["provision", "--tcti", &other_tcti, "--handle", HANDLE]).status.success());
    assert_ne!(ikm(&other, &["--handle", HANDLE]), persistent);
}

#[test]
fn provision_never_replaces_a_foreign_object_and_derive_refuses_non_hmac_keys() {
    let tpm = Swtpm::start();
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("ecc.ctx").display().to_string();
    tpm.tool_ok("tpm2_createprimary", &["-Q", "-C", "o", "-G", "ecc256", "-c", &ctx]);
    tpm.tool_ok("tpm2_evictcontrol", &["-Q", "-C", "o", "-c", &ctx, "0x81000102"]);
    tpm.tool_ok("tpm2_flushcontext", &["-t"]);
    let tcti = tpm.tcti();

    let refused = failure(&["provision", "--tcti", &tcti, "--handle", "0x81000102"]);
    assert!(refused.contains("persistent handle 0x81000102 already holds an ecc object"), "{refused}");
    assert!(refused.contains("refusing to replace it"), "{refused}");
    let public = tpm.tool_ok("tpm2_readpublic", &["-c", "0x81000102"]);
    assert!(public.contains("value: ecc"), "the foreign key is untouched");

    let not_hmac = failure(&["ikm-v1", "--tcti", &tcti, "--handle", "0x81000102"]);
    assert!(not_hmac.contains("is an ecc object"), "{not_hmac}");
    assert!(not_hmac.contains("not an HMAC-SHA256 signing key"), "{not_hmac}");
}

#[test]
fn no_tpm_at_the_tcti_is_a_fast_clear_error() {
    let port = free_port_pair(); // nothing listens there
    let tcti = format!("swtpm:host=127.0.0.1,port={port}");
    let started = Instant::now();
    let refused = failure(&["ikm-v1", "--tcti", &tcti]);
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!(
        refused,
        format!(
            "edgeseal-kdf-tpm2: no TPM reachable through TCTI {tcti}: cannot connect to 127.0.0.1:{port}: connection \
             refused; check that the TPM or simulator is running there and that --tcti is right"
        )
    );
    let persistent = failure(&["ikm-v1", "--tcti", &tcti, "--handle", HANDLE]);
    assert!(persistent.contains("connection refused"), "{persistent}");

    let no_device = failure(&["ikm-v1", "--tcti", "device:/dev/edgeseal-no-such-tpm"]);
    assert!(
        no_device.contains(
            "cannot open /dev/edgeseal-no-such-tpm: no such file or directory; check that this machine has a TPM 2.0"
        ),
        "{no_device}"
    );

    // TCTIs the plug-in does not speak are bad usage (exit 2), saying what to use instead.
    for (tcti, want) in [
        (
            "nosuchtcti:x",
            "--tcti \"nosuchtcti:x\" is not supported: the plug-in talks to the TPM itself through device:PATH",
        ),
        (
            "tabrmd:bus_type=system",
            "does not speak D-Bus to tpm2-abrmd; use the kernel resource manager instead (--tcti device:/dev/tpmrm0)",
        ),
        ("swtpm:port=http", "port must be a number from 1 to 65535"),
    ] {
        let out = run(&["ikm-v1", "--tcti", tcti]);
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{tcti}: {stderr}");
        assert!(out.stdout.is_empty());
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(want), "{tcti}: {stderr}");
    }
}

#[test]
fn a_missing_persistent_key_says_how_to_provision_it() {
    let tpm = Swtpm::start();
    let tcti = tpm.tcti();
    let missing = failure(&["ikm-v1", "--tcti", &tcti, "--handle", "0x81000123"]);
    assert_eq!(
        missing,
        "edgeseal-kdf-tpm2: no key at persistent handle 0x81000123 (TPM_RC_HANDLE): provision one with \
         `edgeseal-kdf-tpm2 provision --handle 0x81000123`, or check --handle and --tcti (another TPM has other keys)"
    );
}

#[test]
fn da_lockout_refuses_da_protected_keys_only_and_says_how_to_clear_it() {
    let mut tpm = Swtpm::start();
    let tcti = tpm.tcti();
    assert!(run(&["provision", "--tcti", &tcti, "--handle", HANDLE]).status.success());
    let da_handle = "0x81000111";
    persist_da_protected_hmac_key(&tpm, da_handle);
    let primary = ikm(&tpm, &[]);
    let noda = ikm(&tpm, &["--handle", HANDLE]);
    let da = ikm(&tpm, &["--handle", da_handle]);

    // Power cuts while a DA-protected key is in use: each counts as a failed authorization
    // (TPM2_PT_MAX_AUTH_FAIL is 3 on swtpm), then the TPM locks DA-protected keys out.
    for _ in 0..3 {
        ikm(&tpm, &["--handle", da_handle]);
        tpm.kill_and_restart();
    }
    assert!(in_lockout(&tpm), "three power cuts with a DA-protected key in use lock the TPM out");

    let tcti = tpm.tcti();
    let started = Instant::now();
    let locked = failure(&["ikm-v1", "--tcti", &tcti, "--handle", da_handle]);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        locked.starts_with(
            "edgeseal-kdf-tpm2: the TPM is in dictionary-attack lockout (TPM_RC_LOCKOUT 0x921) and the key at \
             persistent handle 0x81000111 is DA-protected (no noda attribute): clear it with \
             `tpm2_dictionarylockout --clear-lockout`"
        ),
        "{locked}"
    );
    for secret in [&primary, &noda, &da] {
        assert!(!locked.contains(&secret[..16]), "no IKM in errors");
    }

    // The noda keys this plug-in uses keep working during the lockout, with the same IKM.
    assert_eq!(ikm(&tpm, &[]), primary, "the noda primary works in lockout");
    assert_eq!(ikm(&tpm, &["--handle", HANDLE]), noda, "the provisioned noda key works in lockout");
    // Provisioning works too (its transient parent is noda).
    assert!(run(&["provision", "--tcti", &tcti, "--handle", "0x81000105"]).status.success());

    tpm.tool_ok("tpm2_dictionarylockout", &["--clear-lockout"]);
    assert!(!in_lockout(&tpm));
    assert_eq!(ikm(&tpm, &["--handle", da_handle]), da, "after clearing the lockout as the error says");
}

#[test]
fn full_object_memory_is_flushed_retried_and_reported() {
    let tpm = Swtpm::start();
    let before = ikm(&tpm, &[]);
    // Another client leaves objects loaded until the TPM has no slot left (no resource manager on swtpm).
    let dir = tempfile::tempdir().unwrap();
    let mut filled = 0;
    loop {
        let ctx = dir.path().join(format!("leak{filled}.ctx")).display().to_string();
        let out = tpm.tool("tpm2_createprimary", &["-Q", "-C", "o", "-G", "ecc256", "-c", &ctx]);
        if !out.status.success() {
            assert!(String::from_utf8_lossy(&out.stderr).contains("0x902"), "{out:?}");
            break;
        }
        filled += 1;
        assert!(filled < 64, "the TPM never ran out of object slots");
    }
    assert!(!transient_handles(&tpm).trim().is_empty());

    let tcti = tpm.tcti();
    let out = run(&["ikm-v1", "--tcti", &tcti]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8(out.stdout).unwrap(), format!("{before}\n"));
    assert_eq!(
        stderr,
        format!(
            "edgeseal-kdf-tpm2: note: the TPM was out of memory for objects or sessions (0x902), most likely left \
             loaded by another client (TCTI {tcti} has no resource manager): flushed all transient objects and \
             sessions and retried\n"
        )
    );
    assert_eq!(transient_handles(&tpm).trim(), "");
}

#[test]
fn a_tpm_held_busy_by_another_client_times_out_with_a_clear_error() {
    let tpm = Swtpm::start();
    let before = ikm(&tpm, &[]);
    // swtpm serves one connection at a time: a client that holds it blocks everyone else.
    let holder = TcpStream::connect(("127.0.0.1", tpm.port())).unwrap();
    let tcti = tpm.tcti();
    let started = Instant::now();
    let busy = failure(&["ikm-v1", "--tcti", &tcti, "--timeout", "2s"]);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "within its own timeout (took {took:?})");
    // 2s minus the slice kept for cleanup: 1.5s, less the connect (so 1s 499ms or 1s 500ms).
    let prefix =
        format!("edgeseal-kdf-tpm2: TPM2_CreatePrimary got no answer from the TPM through TCTI {tcti} within 1s ");
    assert!(busy.starts_with(&prefix), "{busy}");
    assert!(busy.ends_with("ms: the TPM is busy (another client may hold its connection) or hung; gave up"), "{busy}");

    // Through edgeseal's runner with a longer kdf.timeout, the operator sees the plug-in's reason.
    let plugin = install_plugin();
    let mut cfg = config(&plugin, &["--tcti", &tcti, "--timeout", "2s"], Protocol::IkmV1);
    cfg.timeout = Duration::from_secs(10);
    let err = run_plugin(&cfg).unwrap_err();
    assert!(matches!(err, PluginError::Failed { .. }), "{err:?}");
    assert!(err.to_string().contains("got no answer from the TPM"), "{err}");

    drop(holder);
    assert_eq!(ikm(&tpm, &[]), before, "works again once the connection is free");
}

#[test]
fn deriving_needs_no_tpm2_tools_and_provisioning_names_them_when_missing() {
    let tpm = Swtpm::start();
    let tcti = tpm.tcti();
    let empty = tempfile::tempdir().unwrap();
    let path = empty.path().display().to_string();
    let out = run_with_path(&["ikm-v1", "--tcti", &tcti], &path);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), format!("{}\n", ikm(&tpm, &[])));

    let missing = failure_with_path(&["provision", "--tcti", &tcti, "--handle", HANDLE], &path);
    assert_eq!(
        missing,
        format!(
            "edgeseal-kdf-tpm2: tpm2-tools not found: tpm2_createprimary is not in PATH ({path}); install tpm2-tools \
             (Debian/Ubuntu: apt-get install tpm2-tools)"
        )
    );
}

#[test]
fn bad_usage_exits_2_and_unknown_protocols_fail() {
    for args in [&["ikm-v2"][..], &["hello"], &["ikm-v1", "--bogus"], &["provision"], &["ikm-v1", "--handle", "7"]] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty());
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
    let help = run(&["--help"]);
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("edgeseal-kdf-tpm2 ikm-v1 [--tcti TCTI]"));
}

#[test]
fn edgeseals_runner_gets_the_same_ikm_as_the_command_line() {
    let tpm = Swtpm::start();
    let tcti = tpm.tcti();
    let plugin = install_plugin();

    let ikm_primary = run_plugin(&config(&plugin, &["--tcti", &tcti], Protocol::IkmV1)).unwrap();
    assert_eq!(ikm_primary.len(), 32);
    assert_eq!(hex::encode(ikm_primary.expose()), ikm(&tpm, &[]));

    assert!(run(&["provision", "--tcti", &tcti, "--handle", HANDLE]).status.success());
    let ikm_persistent = run_plugin(&config(&plugin, &["--tcti", &tcti, "--handle", HANDLE], Protocol::IkmV1)).unwrap();
    assert_eq!(hex::encode(ikm_persistent.expose()), ikm(&tpm, &["--handle", HANDLE]));

    // A failure reaches the operator with the plug-in's one-line reason.
    let port = free_port_pair();
    let wrong = format!("swtpm:host=127.0.0.1,port={port}");
    let err = run_plugin(&config(&plugin, &["--tcti", &wrong], Protocol::IkmV1)).unwrap_err();
    assert!(matches!(err, PluginError::Failed { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("exit status 1"), "{message}");
    assert!(message.contains("connection refused"), "{message}");

    // EdgeX convention (no arguments): the defaults, i.e. the kernel's TPM resource manager.
    let edgex = run_plugin(&config(&plugin, &[], Protocol::Edgex));
    if Path::new("/dev/tpmrm0").exists() {
        assert_eq!(edgex.unwrap().len(), 32, "this machine has a TPM: the default TCTI answers");
    } else {
        let err = edgex.unwrap_err().to_string();
        assert!(err.contains("no TPM reachable through TCTI device:/dev/tpmrm0"), "{err}");
    }
}

#[test]
fn time_per_derivation() {
    const RUNS: usize = 20;
    let tpm = Swtpm::start();
    let tcti = tpm.tcti();
    assert!(run(&["provision", "--tcti", &tcti, "--handle", HANDLE]).status.success());
    let plugin = install_plugin();
    let mut report = Vec::new();
    for (mode, extra) in [("primary", &[][..]), ("persistent", &["--handle", HANDLE][..])] {
        let mut times = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let started = Instant::now();
            ikm(&tpm, extra);
            times.push(started.elapsed());
        }
        let mut args = vec!["--tcti", tcti.as_str()];
        args.extend_from_slice(extra);
        let mut runner_times = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let started = Instant::now();
            run_plugin(&config(&plugin, &args, Protocol::IkmV1)).unwrap();
            runner_times.push(started.elapsed());
        }
        report.push(format!("{mode:>10} mode, command line: {}", summary(&mut times)));
        report.push(format!("{mode:>10} mode, run_plugin:   {}", summary(&mut runner_times)));
        times.sort();
        assert!(times[RUNS / 2] < Duration::from_secs(2), "{mode}: a derivation takes milliseconds");
    }
    println!("edgeseal-kdf-tpm2 time per derivation against swtpm ({RUNS} runs each):");
    for line in report {
        println!("  {line}");
    }
}

fn summary(times: &mut [Duration]) -> String {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mean = times.iter().map(|&d| ms(d)).sum::<f64>() / times.len() as f64;
    format!(
        "min {:.1} ms, p50 {:.1} ms, mean {:.1} ms, max {:.1} ms",
        ms(times[0]),
        ms(times[times.len() / 2]),
        mean,
        ms(times[times.len() - 1])
    )
}
