//! EdgeX seed files (`services.<svc>.seed_file`, SPEC §12) against the real `security-bootstrap run`
//! and a real OpenBao: the service's token reads exactly the seeded values; the file is scrubbed as
//! EdgeX scrubs it (no value left, every entry imported, mode and owner kept); `secrets history`
//! says "seeded"; a restart, or a run killed between the import and the scrub, writes no second
//! version; a malformed file is a clear problem naming the file that imports nothing; a file that
//! cannot be rewritten is a problem that says it still holds the values; no value reaches a log.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use edgeseal_tests::boot::Boot;
use edgeseal_tests::regular_files_below;
use nix::sys::signal::Signal;
use serde_json::{json, Value};

const USER: &str = "seed-user-6c1f04";
const PASSWORD: &str = "seed-pass-8e3a91d7";
const TOKEN: &str = "seed-mqtt-2b7f55aa";

fn stdout(out: &std::process::Output) -> String {
    assert!(out.status.success(), "{:?}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A seed file for `demo` in the device directory: two secrets to import and one imported earlier.
fn seed_file(boot: &Boot) -> PathBuf {
    let dir = boot.device.path().join("edgex");
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join("secrets.json");
    let text = json!({"secrets": [
        {"secretName": "credentials", "imported": false,
         "secretData": [{"key": "username", "value": USER}, {"key": "password", "value": PASSWORD}]},
        {"secretName": "mqtt", "imported": false, "secretData": [{"key": "token", "value": TOKEN}], "note": "Go ignores this"},
        {"secretName": "earlier", "imported": true, "secretData": []},
    ]});
    fs::write(&path, serde_json::to_vec_pretty(&text).unwrap()).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(&path, Some(0), Some(65534)).unwrap();
    path
}

/// The versions `secrets history` lists for `demo/<name>`, with their sources.
fn history(boot: &Boot, name: &str) -> Vec<(u64, String)> {
    let out = stdout(&boot.secrets(&["history", &format!("demo/{name}"), "--json"], b""));
    let versions: Value = serde_json::from_str(&out).unwrap();
    versions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].as_u64().unwrap(), v["source"].as_str().unwrap().to_string()))
        .collect()
}

fn assert_scrubbed(path: &Path) {
    let text = fs::read_to_string(path).unwrap();
    for value in [USER, PASSWORD, TOKEN] {
        assert!(!text.contains(value), "the scrubbed file holds a value:\n{text}");
    }
    let json: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        json,
        json!({"secrets": [
            {"secretName": "credentials", "imported": true, "secretData": []},
            {"secretName": "mqtt", "imported": true, "secretData": []},
            {"secretName": "earlier", "imported": true, "secretData": []},
        ]}),
        "EdgeX's scrub"
    );
}

/// No seeded value in any file below the device directory outside raft: the scrubbed seed file,
/// edgeseal's log (`run.log`), OpenBao's log and its audit log (which holds HMACs only).
fn assert_no_value_in_files_or_logs(boot: &Boot) {
    // Outside OpenBao's (encrypted) raft storage.
    let files = regular_files_below(boot.device.path());
    for path in files.iter().filter(|p| !p.components().any(|c| c.as_os_str() == "raft")) {
        let text = String::from_utf8_lossy(&fs::read(path).unwrap_or_default()).into_owned();
        for value in [USER, PASSWORD, TOKEN] {
            assert!(!text.contains(value), "{} holds a seeded value", path.display());
        }
    }
    assert!(boot.audit_log().exists(), "OpenBao's audit log was scanned");
}

#[test]
fn a_seed_file_is_imported_once_scrubbed_and_its_versions_say_seeded() {
    let mut boot = Boot::new();
    let path = seed_file(&boot);
    boot.set_seed_file(Some(path.clone()));
    let mut run = boot.start();
    let token = boot.token_until_ok(Duration::from_secs(10));
    assert_eq!(boot.read(&token, "credentials"), Some(json!({"username": USER, "password": PASSWORD})));
    assert_eq!(boot.read(&token, "mqtt"), Some(json!({"token": TOKEN})));
    assert_eq!(boot.read(&token, "earlier"), None, "an imported entry is not imported again");

    assert_scrubbed(&path);
    let meta = fs::metadata(&path).unwrap();
    assert_eq!((meta.mode() & 0o777, meta.uid(), meta.gid()), (0o640, 0, 65534), "mode and owner kept");

    let seeded = format!("seeded from {}", path.display());
    assert_eq!(history(&boot, "credentials"), [(1, seeded.clone())]);
    let list: Value = serde_json::from_str(&stdout(&boot.secrets(&["list", "demo", "--json"], b""))).unwrap();
    let mqtt = list.as_array().unwrap().iter().find(|s| s["name"] == "mqtt").unwrap();
    assert_eq!((mqtt["version"].as_u64(), mqtt["source"].as_str()), (Some(1), Some(seeded.as_str())), "{list}");

    // A restart imports nothing again.
    run.stop(Signal::SIGTERM, Duration::from_secs(30));
    let mut run = boot.start();
    let token = boot.token_until_ok(Duration::from_secs(10));
    assert_eq!(history(&boot, "credentials"), [(1, seeded.clone())]);
    assert_eq!(history(&boot, "mqtt"), [(1, seeded)]);
    assert_eq!(boot.read(&token, "mqtt"), Some(json!({"token": TOKEN})));
    run.stop(Signal::SIGTERM, Duration::from_secs(30));

    assert_no_value_in_files_or_logs(&boot);
}

#[test]
fn a_run_killed_between_the_import_and_the_scrub_writes_no_second_version() {
    // On a reboot: a first boot killed before it completed starts the store over.
    let mut boot = Boot::new();
    boot.start().stop(Signal::SIGTERM, Duration::from_secs(30));
    let path = seed_file(&boot);
    boot.set_seed_file(Some(path.clone()));
    let point = secretstore_setup::crash::SEED_POINTS[0];
    let status = boot.run_until_crash(point);
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9), "{status}\n{}", boot.log());
    assert!(fs::read_to_string(&path).unwrap().contains(PASSWORD), "killed before the scrub");

    let _run = boot.start();
    let token = boot.token_until_ok(Duration::from_secs(10));
    let seeded = format!("seeded from {}", path.display());
    assert_eq!(history(&boot, "credentials"), [(1, seeded.clone())], "no duplicate version");
    assert_eq!(history(&boot, "mqtt"), [(1, seeded)]);
    assert_eq!(boot.read(&token, "credentials"), Some(json!({"username": USER, "password": PASSWORD})));
    assert_scrubbed(&path);
}

#[test]
fn a_malformed_seed_file_is_a_problem_naming_the_file_and_imports_nothing() {
    let mut boot = Boot::new();
    let dir = boot.device.path().join("edgex");
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join("secrets.json");
    // The first entry is fine, the second is not: nothing of the file may be imported.
    let text = serde_json::to_vec(&json!({"secrets": [
        {"secretName": "credentials", "imported": false, "secretData": [{"key": "password", "value": PASSWORD}]},
        {"secretName": "mqtt", "imported": false, "secretData": [{"key": "token", "value": ""}]},
    ]}))
    .unwrap();
    fs::write(&path, &text).unwrap();
    boot.set_seed_file(Some(path.clone()));
    let _run = boot.start();
    let token = boot.token_until_ok(Duration::from_secs(10));

    let log = boot.log();
    let problem =
        log.lines().find(|l| l.contains("setup problem")).unwrap_or_else(|| panic!("no problem logged:\n{log}"));
    assert!(problem.contains(&path.display().to_string()), "names the file: {problem}");
    assert!(problem.contains("secrets[1]") && problem.contains("has no value"), "names the entry: {problem}");
    assert!(problem.contains("nothing was imported for service demo"), "{problem}");
    assert_eq!(boot.read(&token, "credentials"), None, "nothing half-imported");
    assert_eq!(boot.read(&token, "mqtt"), None);
    let list: Value = serde_json::from_str(&stdout(&boot.secrets(&["list", "demo", "--json"], b""))).unwrap();
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["greeting"], "the service's KV holds only its generated secret");
    assert_eq!(fs::read(&path).unwrap(), text, "the file is left as it was");
    assert!(boot.secret(&token).len() >= 40, "the rest of setup went on");
    assert!(!log.contains(PASSWORD), "no value in the log");
}

/// Removes the immutable attribute even when the test fails, so that the temp dir can be removed.
struct Immutable(PathBuf);

impl Immutable {
    fn set(path: &Path) -> Self {
        let out = Command::new("chattr").arg("+i").arg(path).output().unwrap();
        assert!(
            out.status.success(),
            "chattr +i (needs root and ext4/tmpfs): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(path.to_path_buf())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).output();
    }
}

#[test]
fn a_seed_file_that_cannot_be_rewritten_is_imported_and_reported_as_still_holding_the_values() {
    let mut boot = Boot::new();
    let path = seed_file(&boot);
    boot.set_seed_file(Some(path.clone()));
    let immutable = Immutable::set(&path);
    let mut run = boot.start();
    let token = boot.token_until_ok(Duration::from_secs(10));
    assert_eq!(boot.read(&token, "credentials"), Some(json!({"username": USER, "password": PASSWORD})));
    let log = boot.log();
    let problem =
        log.lines().find(|l| l.contains("setup problem")).unwrap_or_else(|| panic!("no problem logged:\n{log}"));
    assert!(
        problem.contains(&path.display().to_string()) && problem.contains("still holds them in clear"),
        "{problem}"
    );
    assert!(!log.contains(PASSWORD) && !log.contains(TOKEN), "no value in the log");
    // The admin replaces the seeded credentials (say they leaked) while the file still holds them.
    let replaced = json!({"username": USER, "password": "rotated-after-leak-77c1"});
    stdout(&boot.secrets(&["set", "demo/credentials", "--json"], replaced.to_string().as_bytes()));
    run.stop(Signal::SIGTERM, Duration::from_secs(30));

    // A reboot with the file still unscrubbed does not bring the old value back.
    let mut run = boot.start();
    let token = boot.token_until_ok(Duration::from_secs(10));
    assert_eq!(boot.read(&token, "credentials"), Some(replaced.clone()), "the admin's version stands");
    run.stop(Signal::SIGTERM, Duration::from_secs(30));

    // Made writable again: the next run scrubs it without writing another version.
    drop(immutable);
    let _run = boot.start();
    assert_scrubbed(&path);
    let seeded = format!("seeded from {}", path.display());
    assert_eq!(history(&boot, "credentials"), [(1, seeded), (2, "set by uid 0".to_string())]);
    let token = boot.token_until_ok(Duration::from_secs(10));
    assert_eq!(boot.read(&token, "credentials"), Some(replaced));
}

#[test]
fn a_seed_file_that_is_a_symlink_or_a_fifo_is_refused_and_the_boot_goes_on() {
    // A symbolic link to another service's seed file would import its values into this service's
    // folder; a FIFO would block setup on open for ever.
    let mut boot = Boot::new();
    let elsewhere = seed_file(&boot);
    let link = boot.device.path().join("link.json");
    std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
    boot.set_seed_file(Some(link.clone()));
    let mut run = boot.start();
    let token = boot.token_until_ok(Duration::from_secs(10));
    assert_eq!(boot.read(&token, "credentials"), None, "nothing imported through the link");
    let log = boot.log();
    assert!(log.contains("is a symbolic link"), "{log}");
    assert!(fs::read_to_string(&elsewhere).unwrap().contains(PASSWORD), "the target is left as it was");
    run.stop(Signal::SIGTERM, Duration::from_secs(30));

    let fifo = boot.device.path().join("fifo.json");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    boot.set_seed_file(Some(fifo));
    let _run = boot.start();
    assert!(boot.log().contains("is not a regular file"), "{}", boot.log());
}

#[test]
fn a_shamir_sealed_store_is_seeded_by_the_same_setup_step() {
    let mut boot = Boot::shamir();
    let path = seed_file(&boot);
    boot.set_seed_file(Some(path.clone()));
    let _run = boot.start();
    let token = boot.token_until_ok(Duration::from_secs(10));
    assert_eq!(boot.read(&token, "credentials"), Some(json!({"username": USER, "password": PASSWORD})));
    assert_scrubbed(&path);
    assert_eq!(history(&boot, "mqtt"), [(1, format!("seeded from {}", path.display()))]);
    assert_no_value_in_files_or_logs(&boot);
}
