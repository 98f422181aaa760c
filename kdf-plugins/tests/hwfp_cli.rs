//! Runs the built `edgeseal-kdf-hwfp` as edgeseal does: on fake trees with `--root`, and on this
//! machine's real root with the environment cleared and `/` as working directory.

#![cfg(test)]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_edgeseal-kdf-hwfp");

const MACHINE_ID: &str = "5f1c0a9e2b7d4c3e8a6f0b1d2c3e4f5a";
const SERIAL: &str = "CN7016351S0123";
const MAC: &str = "3c:ec:ef:12:34:56";
const CPU_MODEL: &str = "Zenith Q7 Processor @ 2.10GHz";

/// Runs the plug-in the way edgeseal does (SPEC §4): empty environment but PATH, cwd `/`, no stdin.
fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir("/")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn run_on(root: &Path, args: &[&str]) -> Output {
    let mut all = args.to_vec();
    let root = root.to_str().unwrap();
    all.extend(["--root", root]);
    run(&all)
}

fn write(root: &Path, rel: &str, contents: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, contents).unwrap();
}

/// A tree with a DMI serial, a machine-id, a CPU model, one PCI NIC and loopback.
fn fake_tree() -> TempDir {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    write(root, "sys/class/dmi/id/product_serial", &format!("{SERIAL}\n"));
    write(root, "sys/class/dmi/id/product_uuid", "00000000-0000-0000-0000-000000000000\n");
    write(root, "etc/machine-id", &format!("{MACHINE_ID}\n"));
    write(root, "proc/cpuinfo", &format!("processor\t: 0\nmodel name\t: {CPU_MODEL}\n"));
    write(root, "sys/class/net/lo/address", "00:00:00:00:00:00\n");
    write(root, "sys/class/net/eth0/address", &format!("{MAC}\n"));
    fs::create_dir_all(root.join("sys/devices/pci0000:00/0000:00:1f.6")).unwrap();
    symlink("../../../../sys/devices/pci0000:00/0000:00:1f.6", root.join("sys/class/net/eth0/device")).unwrap();
    dir
}

fn stdout(output: &Output) -> &str {
    std::str::from_utf8(&output.stdout).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_one_ikm_line(output: &Output) -> String {
    assert!(output.status.success(), "exit {:?}, stderr: {}", output.status, stderr(output));
    let text = stdout(output);
    let line = text.strip_suffix('\n').unwrap_or_else(|| panic!("no trailing newline: {text:?}"));
    assert_eq!(line.len(), 64, "{text:?}");
    assert!(line.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')), "{text:?}");
    line.to_owned()
}

fn assert_no_value(shown: &str) {
    for value in [MACHINE_ID, SERIAL, MAC, "3C:EC:EF", CPU_MODEL, "Zenith"] {
        assert!(!shown.contains(value), "{value:?} leaked into:\n{shown}");
    }
}

#[test]
fn ikm_v1_prints_one_line_of_64_lowercase_hex_digits() {
    let tree = fake_tree();
    let first = assert_one_ikm_line(&run_on(tree.path(), &["ikm-v1"]));
    let again = assert_one_ikm_line(&run_on(tree.path(), &["ikm-v1"]));
    assert_eq!(first, again);

    // A different serial is a different device.
    write(tree.path(), "sys/class/dmi/id/product_serial", "CN7016351S0124\n");
    assert_ne!(first, assert_one_ikm_line(&run_on(tree.path(), &["ikm-v1"])));
}

#[test]
fn explain_names_sources_and_never_prints_a_value_or_the_ikm() {
    let tree = fake_tree();
    let ikm = assert_one_ikm_line(&run_on(tree.path(), &["ikm-v1"]));
    let output = run_on(tree.path(), &["--explain"]);
    assert!(output.status.success(), "stderr: {}", stderr(&output));
    let text = stdout(&output);
    for expected in [
        "dmi.product_serial",
        "machine-id",
        "cpu.model",
        "sys/class/net/eth0",
        "sys/class/dmi/id/product_uuid: placeholder value",
        "sys/class/net/lo: virtual interface (no device)",
    ] {
        assert!(text.contains(expected), "{expected:?} missing from:\n{text}");
    }
    assert_no_value(text);
    assert!(!text.contains(&ikm), "{text}");
}

#[test]
fn refuses_with_only_a_cpu_model() {
    let dir = TempDir::new().unwrap();
    write(dir.path(), "proc/cpuinfo", &format!("model name\t: {CPU_MODEL}\n"));
    write(dir.path(), "sys/class/net/lo/address", "00:00:00:00:00:00\n");

    let output = run_on(dir.path(), &["ikm-v1"]);
    assert_eq!(output.status.code(), Some(1), "stderr: {}", stderr(&output));
    assert!(output.stdout.is_empty(), "stdout: {:?}", stdout(&output));
    let message = stderr(&output);
    assert!(message.contains("no stable hardware identifier"), "{message}");
    assert!(message.contains("etc/machine-id") && message.contains("sys/class/net"), "{message}");
    assert_no_value(&message);

    let output = run_on(dir.path(), &["--explain"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).contains("ikm-v1 refuses"), "{}", stdout(&output));
    assert_no_value(stdout(&output));
}

#[test]
fn unknown_protocols_and_flags_are_usage_errors() {
    let tree = fake_tree();
    let root = tree.path().to_str().unwrap();
    for args in [
        vec!["ikm-v2"],
        vec!["version"],
        vec!["--verbose"],
        vec!["ikm-v1", "--tcti", "swtpm:port=2321"],
        vec!["ikm-v1", "--root"],
        vec!["--root", root],
        vec!["ikm-v1", "--explain", "--root", root],
    ] {
        let output = run(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}: {:?}", stdout(&output));
        assert!(!output.stderr.is_empty(), "{args:?}");
    }
    let missing = tree.path().join("nope");
    let output = run_on(&missing, &["ikm-v1"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("not a directory"), "{}", stderr(&output));
}

#[test]
fn help_prints_usage_and_exit_codes() {
    let output = run(&["--help"]);
    assert!(output.status.success());
    let text = stdout(&output);
    assert!(text.contains("ikm-v1") && text.contains("--explain") && text.contains("--root"), "{text}");
    assert!(text.contains("Exit status"), "{text}");
}

/// This machine has /etc/machine-id; the plug-in must answer, and the same way each time.
#[test]
fn answers_identically_on_the_real_root() {
    let with_word = assert_one_ikm_line(&run(&["ikm-v1"]));
    let again = assert_one_ikm_line(&run(&["ikm-v1"]));
    assert_eq!(with_word, again);
    // EdgeX's hook is run with no arguments and must print the same IKM.
    assert_eq!(with_word, assert_one_ikm_line(&run(&[])));

    let explain = run(&["--explain"]);
    assert!(explain.status.success(), "stderr: {}", stderr(&explain));
    let text = stdout(&explain);
    assert!(!text.contains(&with_word), "{text}");
    if let Ok(id) = fs::read_to_string("/etc/machine-id") {
        let id = id.trim();
        assert!(id.is_empty() || !text.contains(id), "machine-id leaked into:\n{text}");
    }
}
