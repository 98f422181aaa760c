//! `security-bootstrap gate --secret-env/--secret-file/--on-change` (issue 19) against the real
//! `security-bootstrap run` and OpenBao: an unmodified app (a shell script) gets its service's secret
//! values in its environment and in files, and follows a rotation.
//!
//! - the app sees exactly the values an admin set (env and file, a single value and one key of a
//!   multi-key secret); the files are 0600, owned by the app's user (or `--file-owner`), on a tmpfs,
//!   and gone when the app exits; gate exits with the app's status;
//! - a new version (`secrets set`) rewrites the file and sends the app the signal (`signal:HUP`), or
//!   restarts it with the new environment (`restart`), within a bound the test prints;
//! - with only environment variables and `--on-change none`, gate becomes the app (exec);
//! - a file on a persistent filesystem is refused unless `--allow-disk`; an unknown secret or key, or
//!   another service's secret, is refused before the app starts (exit 64 / 77), naming what is wrong;
//! - a file that cannot be rewritten (its tmpfs full) leaves the app running on its values, not
//!   signalled; once there is room again, the next check delivers the new version;
//! - no value in edgeseal's log, its audit log, OpenBao's audit log, or any file on disk.
//!
//! The app's own reports go to the tmpfs too (they hold values). Runs as root.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use edgeseal_tests::boot::Boot;
use edgeseal_tests::{poll_until, regular_files_below};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const V1: &str = "db-pass-ONE-7c1e55";
const V2: &str = "db-pass-TWO-0f93aa";
const V3: &str = "db-pass-THREE-b2d4e1";
const MQTT_USER: &str = "mqtt-user-55e0c2";
const MQTT_PASS: &str = "mqtt-pass-a18f3d";

/// The app: reports what its file held, then its pid and environment value (in that order: a test
/// that sees the start line sees the file's report), records each SIGHUP, exits 3 when told to.
const APP: &str = r#"
out=$OUT
cat "$out/secrets/db" > "$out/file-at-start"
echo "$$ $DB_PASSWORD" >> "$out/starts"
trap 'echo "hup $(cat "$out/secrets/db")" >> "$out/events"' HUP
while :; do
  [ -e "$out/quit" ] && exit 3
  sleep 0.05
done
"#;

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn set(boot: &Boot, name: &str, value: &str) {
    let out = boot.secrets(&["set", name], value.as_bytes());
    assert!(out.status.success(), "{}", text(&out));
}

/// A directory on a tmpfs (/dev/shm), for the secret files and the app's reports.
fn tmpfs_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("edgeseal-gate-").tempdir_in("/dev/shm").unwrap();
    fs::create_dir(dir.path().join("secrets")).unwrap();
    dir
}

fn gate(boot: &Boot, out: &Path, args: &[&str]) -> Command {
    gate_as(boot, "demo", out, args)
}

/// `gate` asserting `service` (the caller is attested as `demo`).
fn gate_as(boot: &Boot, service: &str, out: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(boot.client());
    command.arg("gate").arg("--socket").arg(boot.socket()).args(["--service", service]).args(args);
    command.args(["--", "/bin/sh", "-c", APP]).env("OUT", out);
    command
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

fn lines(path: &Path) -> Vec<String> {
    read(path).lines().map(str::to_string).collect()
}

/// A running gate, stopped with SIGTERM (which it forwards to its app), then SIGKILL, if a test
/// fails before it has exited: no app is left running after a failed test.
struct Gated(Child);

impl Drop for Gated {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = kill(Pid::from_raw(self.0.id() as i32), Signal::SIGTERM);
            if poll_until(Duration::from_secs(5), || self.0.try_wait().ok().flatten()).is_none() {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
    }
}

impl std::ops::Deref for Gated {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Gated {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let status = poll_until(Duration::from_secs(20), || child.try_wait().unwrap());
    status.unwrap_or_else(|| {
        child.kill().ok();
        panic!("gate did not exit")
    })
}

/// Polls until `done`, returning how long it took.
fn timed(what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    poll_until(Duration::from_secs(30), || done().then_some(())).unwrap_or_else(|| panic!("{what}: not within 30 s"));
    started.elapsed()
}

#[test]
fn an_app_gets_env_and_tmpfs_files_follows_rotations_and_leaves_nothing_behind() {
    let mut boot = Boot::new();
    let _run = boot.start();
    set(&boot, "demo/db-password", V1);
    let mqtt = serde_json::json!({"user": MQTT_USER, "password": MQTT_PASS}).to_string();
    let out = boot.secrets(&["set", "demo/mqtt", "--json"], mqtt.as_bytes());
    assert!(out.status.success(), "{}", text(&out));

    // --on-change signal:HUP: the files are rewritten, the app signalled, its environment kept.
    let dir = tmpfs_dir();
    let (db, user) = (dir.path().join("secrets/db"), dir.path().join("secrets/mqtt-user"));
    let mut child = gate(
        &boot,
        dir.path(),
        &[
            "--secret-env",
            "DB_PASSWORD=db-password",
            "--secret-file",
            &format!("{}=db-password", db.display()),
            "--secret-file",
            &format!("{}=mqtt:user", user.display()),
            "--file-owner",
            "4242:4243",
            "--on-change",
            "signal:HUP",
            "--check-interval",
            "200ms",
        ],
    )
    .spawn()
    .map(Gated)
    .unwrap();
    let starts = dir.path().join("starts");
    timed("the app starts", || !read(&starts).is_empty());
    let first = lines(&starts);
    let (app_pid, env_value) = first[0].split_once(' ').unwrap();
    assert_eq!(env_value, V1, "the environment has exactly the value");
    assert_ne!(app_pid, child.id().to_string(), "gate stays the app's parent");
    assert_eq!(read(&dir.path().join("file-at-start")), V1, "the file has exactly the value");
    assert_eq!(read(&user), MQTT_USER, "one key of a multi-key secret");
    for file in [&db, &user] {
        let meta = fs::metadata(file).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{}", file.display());
        assert_eq!((meta.uid(), meta.gid()), (4242, 4243), "--file-owner");
    }

    set(&boot, "demo/db-password", V2);
    let events = dir.path().join("events");
    let took = timed("the file rewritten and SIGHUP sent", || lines(&events).iter().any(|l| l == &format!("hup {V2}")));
    println!("rotation -> file rewritten and SIGHUP received in {} ms (check interval 200 ms)", took.as_millis());
    assert_eq!(read(&db), V2);
    assert_eq!(lines(&starts).len(), 1, "signalled, not restarted");
    assert_eq!(read(&user), MQTT_USER, "an unchanged secret's file is left as it was");

    // SIGTERM to gate reaches the app; the files are removed; gate exits as the app did.
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let status = wait_exit(&mut child);
    assert_eq!(status.code(), Some(128 + 15), "the app was killed by the forwarded SIGTERM");
    assert!(!db.exists() && !user.exists(), "the files are gone when the app has exited");

    // --on-change restart: a new app with the new environment; its own exit status is gate's.
    let dir = tmpfs_dir();
    let db = dir.path().join("secrets/db");
    let mut child = gate(
        &boot,
        dir.path(),
        &[
            "--secret-env",
            "DB_PASSWORD=db-password",
            "--secret-file",
            &format!("{}=db-password", db.display()),
            "--on-change",
            "restart",
            "--check-interval",
            "200ms",
        ],
    )
    .spawn()
    .map(Gated)
    .unwrap();
    let starts = dir.path().join("starts");
    timed("the app starts", || !read(&starts).is_empty());
    assert_eq!(lines(&starts)[0].split_once(' ').unwrap().1, V2);
    let meta = fs::metadata(&db).unwrap();
    assert_eq!((meta.uid(), meta.permissions().mode() & 0o777), (0, 0o600), "owned by the app's user");
    set(&boot, "demo/db-password", V3);
    let took = timed("the app restarted with the new value", || lines(&starts).len() == 2);
    println!("rotation -> app restarted with the new value in {} ms (check interval 200 ms)", took.as_millis());
    let starts_now = lines(&starts);
    let (old_pid, new) = (starts_now[0].split_once(' ').unwrap().0, starts_now[1].split_once(' ').unwrap());
    assert_eq!(new.1, V3, "the restarted app has the new value in its environment");
    assert_eq!(read(&dir.path().join("file-at-start")), V3, "and in its file, before it started");
    assert!(!Path::new(&format!("/proc/{old_pid}")).exists(), "the old app is gone");
    fs::write(dir.path().join("quit"), "").unwrap();
    assert_eq!(wait_exit(&mut child).code(), Some(3), "gate exits with the app's status");
    assert!(!db.exists(), "the file is gone when the app has exited");

    // No value on disk or in any log: edgeseal's, its audit log, OpenBao's audit log (HMACed).
    assert!(fs::metadata(boot.audit_log()).is_ok_and(|m| m.len() > 0), "OpenBao's audit log is scanned");
    for path in regular_files_below(boot.device.path()).into_iter().filter(|p| !p.to_string_lossy().contains("/raft/"))
    {
        let content = String::from_utf8_lossy(&fs::read(&path).unwrap_or_default()).into_owned();
        for value in [V1, V2, V3, MQTT_USER, MQTT_PASS] {
            assert!(!content.contains(value), "{} holds a value", path.display());
        }
    }
}

#[test]
fn env_only_gate_becomes_the_app_and_bad_deliveries_start_nothing() {
    let mut boot = Boot::new();
    let _run = boot.start();
    set(&boot, "demo/db-password", V1);
    let dir = tmpfs_dir();
    let starts = dir.path().join("starts");
    let app_ran = || read(&starts).lines().count();

    // Environment only, --on-change none (the default): exec, the app is gate's own process.
    let mut child = gate(&boot, dir.path(), &["--secret-env", "DB_PASSWORD=db-password", "--secret-env", "WHOLE=mqtt"])
        .stderr(Stdio::piped())
        .spawn()
        .map(Gated)
        .unwrap();
    let status = wait_exit(&mut child);
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    assert_eq!(status.code(), Some(64), "an unknown secret is refused: {stderr}");
    assert!(stderr.contains("\"mqtt\"") && stderr.contains("secrets set demo/mqtt"), "{stderr}");
    assert_eq!(app_ran(), 0, "nothing started");
    let mut child = gate(&boot, dir.path(), &["--secret-env", "DB_PASSWORD=db-password"]).spawn().map(Gated).unwrap();
    timed("the app starts", || app_ran() == 1);
    assert_eq!(lines(&starts)[0], format!("{} {V1}", child.id()), "gate exec'd the app with the value");
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    wait_exit(&mut child);

    // A file on a persistent filesystem: refused (64) unless --allow-disk; then removed at exit.
    let disk = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let on_disk = disk.path().join("db");
    let spec = format!("{}=db-password", on_disk.display());
    let out = gate(&boot, dir.path(), &["--secret-file", &spec]).output().unwrap();
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(text(&out).contains("persistent filesystem") && text(&out).contains("--allow-disk"), "{}", text(&out));
    assert_eq!(app_ran(), 1, "nothing started");
    fs::write(dir.path().join("quit"), "").unwrap();
    let out = gate(&boot, dir.path(), &["--secret-file", &spec, "--allow-disk"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert_eq!(app_ran(), 2);
    assert!(!on_disk.exists(), "removed when the app exited");
    fs::remove_file(dir.path().join("quit")).unwrap();

    // Refused before anything starts: an unknown key, another service's secret, bad flags.
    let key_spec = format!("{}=db-password:user", dir.path().join("secrets/k").display());
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (vec!["--secret-file".into(), key_spec], 64, "has no key \"user\" (its keys: value)"),
        (vec!["--secret-env".into(), "X=a/b".into()], 64, "is not a secret name"),
        (vec!["--secret-file".into(), "relative=db-password".into()], 64, "must be absolute"),
        (
            vec!["--secret-env".into(), "X=db-password".into(), "--on-change".into(), "signal:KILL".into()],
            64,
            "SIGKILL",
        ),
        (
            vec!["--secret-env".into(), "X=db-password".into(), "--secret-env".into(), "X=db-password".into()],
            64,
            "twice",
        ),
        (
            vec!["--secret-env".into(), "X=db-password".into(), "--check-interval".into(), "0s".into()],
            64,
            "at least 100ms",
        ),
        (vec![], 64, "--token-file"),
    ];
    for (args, code, says) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = gate(&boot, dir.path(), &args).output().unwrap();
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(says), "{args:?}: {}", text(&out));
        assert!(!text(&out).contains(V1), "{args:?}: no value in an error");
    }
    let out = gate_as(&boot, "other", dir.path(), &["--secret-env", "X=db-password"]).output().unwrap();
    assert_eq!(out.status.code(), Some(77), "another service's secret: {}", text(&out));
    assert!(text(&out).contains("denied: saw ") && !text(&out).contains(V1), "{}", text(&out));
    assert_eq!(app_ran(), 2, "none of them started the app");
}

#[test]
fn a_full_tmpfs_keeps_the_app_on_its_values_and_the_rotation_arrives_once_there_is_room() {
    let mut boot = Boot::new();
    let _run = boot.start();
    set(&boot, "demo/db-password", V1);
    let dir = tmpfs_dir();
    let _small = edgeseal_tests::SmallTmpfs::mount(&dir.path().join("secrets"), "64k");
    let db = dir.path().join("secrets/db");
    let mut child = gate(
        &boot,
        dir.path(),
        &[
            "--secret-file",
            &format!("{}=db-password", db.display()),
            "--on-change",
            "signal:HUP",
            "--check-interval",
            "200ms",
        ],
    )
    .stderr(Stdio::piped())
    .spawn()
    .map(Gated)
    .unwrap();
    timed("the app starts", || !read(&dir.path().join("starts")).is_empty());
    assert_eq!(read(&db), V1);

    // Fill the tmpfs, then rotate: the file cannot be replaced.
    let filler = dir.path().join("secrets/filler");
    let out =
        Command::new("dd").arg("if=/dev/zero").arg(format!("of={}", filler.display())).arg("bs=4k").output().unwrap();
    assert!(!out.status.success(), "dd stops at a full tmpfs: {}", text(&out));
    set(&boot, "demo/db-password", V2);
    std::thread::sleep(Duration::from_millis(1500)); // several checks (200 ms): each one fails to write
    assert!(child.try_wait().unwrap().is_none(), "gate and the app keep running");
    assert_eq!(read(&db), V1, "the app keeps its value");
    assert!(read(&dir.path().join("events")).is_empty(), "and is not signalled for a file it does not have");

    // Room again: the next check delivers.
    fs::remove_file(&filler).unwrap();
    let took = timed("the new version delivered", || {
        lines(&dir.path().join("events")).iter().any(|l| l == &format!("hup {V2}"))
    });
    println!("room again -> file rewritten and SIGHUP received in {} ms (check interval 200 ms)", took.as_millis());
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(wait_exit(&mut child).code(), Some(143));
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    assert!(
        stderr.contains("cannot be rewritten") && stderr.contains("No space left"),
        "the operator is told why: {stderr}"
    );
    assert!(!stderr.contains(V1) && !stderr.contains(V2), "no value in gate's log");
    assert!(!db.exists(), "removed when the app exited");
}
