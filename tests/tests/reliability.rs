//! Reliability of `run` with a supervised OpenBao (issue: back to serving within a second of a crash):
//! OpenBao killed with SIGKILL again and again under a service fetching a token every 20 ms — every
//! request gets 200 or 503, never a hang or a reset, tokens flow again after each kill, and the
//! server holds as many descriptors after as before; an OpenBao that dies at once every time is
//! reported as a crash loop (log, health reason, 503 reason, metrics) and recovers by itself once
//! fixed; OpenBao's audit log is rotated with retention while OpenBao keeps auditing; a full disk
//! under the audit log gives a clear 503 and the device recovers by itself once there is space.
//!
//! The test process is itself the configured service (`demo`: uid 0 and this test binary), so the
//! client loop runs in-process and sees every answer.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stderr)]

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use edgeseal_tests::boot::Boot;
use edgeseal_tests::poll_until;
use edgeseal_tests::process::{descriptors, rss_kib};
use edgeseal_tests::token_server::{
    answer, Answer as Outcome, TokenLoop, HEALTH_REQUEST as HEALTH, TOKEN_REQUEST as TOKEN,
};
use secretstore_setup::supervise::LogRotation;

/// A request unanswered this long is a hang.
const HANG: Duration = Duration::from_secs(15);

fn request(socket: &Path, raw: &[u8]) -> Outcome {
    answer(socket, raw, HANG)
}

/// A device whose service `demo` is this test process.
fn boot_with_loop_service(shamir: bool) -> Boot {
    let mut boot = if shamir { Boot::shamir() } else { Boot::new() };
    boot.set_demo_executable(Some(std::env::current_exe().unwrap()));
    boot
}

/// The admin socket's `/metrics`, one sample's value.
fn metric(boot: &Boot, sample: &str) -> Option<f64> {
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--unix-socket"])
        .arg(boot.admin_socket())
        .arg("http://admin/metrics")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines().find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
}

/// `kills` SIGKILLs of OpenBao, each one second after tokens flowed again; returns the outcomes.
fn kill_openbao_under_load(boot: &Boot, run_pid: u32, kills: usize) -> Vec<Outcome> {
    let client = TokenLoop::start(&boot.socket(), 1, Duration::from_millis(20));
    assert!(client.first_token_after(Instant::now(), Duration::from_secs(30)).is_some(), "{}", boot.log());
    std::thread::sleep(Duration::from_secs(1));
    let (before, rss_before) = client.quiet(|| (descriptors(run_pid), rss_kib(run_pid)));
    for kill in 1..=kills {
        let old = boot.openbao_pid().unwrap_or_else(|| panic!("no OpenBao:\n{}", boot.log()));
        let killed = Instant::now();
        boot.kill_openbao();
        // The supervisor starts the next OpenBao only once the killed one is reaped (its listener
        // closed): a request sent after the new pid appears cannot be answered by the old one.
        let respawned = poll_until(Duration::from_secs(60), || {
            boot.openbao_pid().filter(|&pid| pid != old).map(|_| Instant::now())
        });
        let respawned = respawned.unwrap_or_else(|| panic!("no new OpenBao after kill {kill}:\n{}", boot.log()));
        let back = client.first_token_after(respawned, Duration::from_secs(60));
        let back = back.unwrap_or_else(|| panic!("no token within 60 s of kill {kill}:\n{}", boot.log()));
        eprintln!(
            "kill {kill}: new OpenBao started {} ms after the SIGKILL, first token {} ms after the SIGKILL",
            (respawned - killed).as_millis(),
            (back - killed).as_millis()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    // Descriptors come back to what they were (a pooled connection may still be closing).
    let settled =
        poll_until(Duration::from_secs(20), || client.quiet(|| (descriptors(run_pid) == before).then_some(())));
    let after = client.quiet(|| descriptors(run_pid));
    eprintln!(
        "run: {} descriptors before, {} after; RSS {rss_before} KiB before, {} KiB after",
        before.len(),
        after.len(),
        rss_kib(run_pid)
    );
    assert!(settled.is_some(), "descriptors before {before:?}\nafter {after:?}");
    client.finish()
}

fn assert_only_200_and_503(outcomes: &[Outcome], boot: &Boot) {
    let ok = outcomes.iter().filter(|o| matches!(o, Outcome::Status(200, _))).count();
    let unavailable = outcomes.iter().filter(|o| matches!(o, Outcome::Status(503, _))).count();
    let other: Vec<&Outcome> = outcomes.iter().filter(|o| !matches!(o, Outcome::Status(200 | 503, _))).collect();
    eprintln!("{} requests: {ok} × 200, {unavailable} × 503, {} other", outcomes.len(), other.len());
    assert!(other.is_empty(), "every request gets 200 or 503: {other:?}\n{}", boot.log());
}

#[test]
fn ten_kills_of_a_static_sealed_openbao_under_a_client_loop_lose_no_request_and_no_descriptor() {
    let mut boot = boot_with_loop_service(false);
    let run = boot.start();
    let outcomes = kill_openbao_under_load(&boot, run.pid(), 10);
    assert_only_200_and_503(&outcomes, &boot);
    // Each crash came after a healthy stretch: started again at once, never backed off.
    let log = boot.log();
    assert_eq!(log.matches("OpenBao exited; starting it again now").count(), 10, "{log}");
    assert!(!log.contains("before it became healthy"), "{log}");
    assert_eq!(metric(&boot, "edgeseal_openbao_restarts_total"), Some(10.0));
    assert_eq!(metric(&boot, "edgeseal_openbao_crash_loop"), Some(0.0));
}

#[test]
fn a_shamir_sealed_openbao_is_unsealed_by_the_watchdog_as_soon_as_it_is_back() {
    let mut boot = boot_with_loop_service(true);
    let run = boot.start();
    let outcomes = kill_openbao_under_load(&boot, run.pid(), 3);
    assert_only_200_and_503(&outcomes, &boot);
    assert_eq!(metric(&boot, "edgeseal_watchdog_unseals_total"), Some(3.0), "{}", boot.log());
}

#[test]
fn an_openbao_that_dies_at_every_start_is_reported_as_a_crash_loop_and_recovers_once_fixed() {
    let mut boot = boot_with_loop_service(false);
    let _run = boot.start();
    assert!(matches!(request(&boot.socket(), TOKEN), Outcome::Status(200, _)));
    // A configuration OpenBao cannot load: it exits at once, every time.
    let hcl = boot.data_dir().join("openbao.hcl");
    let good = fs::read(&hcl).unwrap();
    fs::write(&hcl, "storage \"raft\" { this is not HCL").unwrap();
    boot.kill_openbao();

    let reported = poll_until(Duration::from_secs(30), || boot.log().contains("OpenBao keeps crashing").then_some(()));
    assert!(reported.is_some(), "{}", boot.log());
    let why = |raw: &[u8]| match request(&boot.socket(), raw) {
        Outcome::Status(503, body) => Some(body),
        _ => None,
    };
    // The health reason and a service's 503 both say it (health is cached for a moment).
    let health = poll_until(Duration::from_secs(10), || why(HEALTH).filter(|b| b.contains("keeps crashing")));
    assert!(health.is_some(), "{:?}", request(&boot.socket(), HEALTH));
    let token = why(TOKEN).unwrap_or_default();
    assert!(token.contains("keeps crashing") && token.contains("openbao.log"), "{token}");
    assert_eq!(metric(&boot, "edgeseal_openbao_crash_loop"), Some(1.0));
    // The log names what OpenBao said last.
    assert!(boot.log().contains("last_output"), "{}", boot.log());

    // Fixed: the next start opens, tokens flow, the loop is over — nobody restarted anything.
    fs::write(&hcl, good).unwrap();
    let back = poll_until(Duration::from_secs(60), || {
        matches!(request(&boot.socket(), TOKEN), Outcome::Status(200, _)).then_some(())
    });
    assert!(back.is_some(), "{}", boot.log());
    let over = poll_until(Duration::from_secs(10), || {
        (metric(&boot, "edgeseal_openbao_crash_loop") == Some(0.0)).then_some(())
    });
    assert!(over.is_some());
    assert!(boot.log().contains("the crash loop is over"), "{}", boot.log());
    let health = poll_until(Duration::from_secs(10), || {
        matches!(request(&boot.socket(), HEALTH), Outcome::Status(200, _)).then_some(())
    });
    assert!(health.is_some());
}

/// Every line of `path` is a whole JSON object; how many (none while it does not exist: a rotation
/// renamed it and OpenBao has not reopened it yet).
fn assert_whole_json_lines(path: &Path) -> usize {
    let text = fs::read_to_string(path).unwrap_or_default();
    for (n, line) in text.lines().enumerate() {
        assert!(serde_json::from_str::<serde_json::Value>(line).is_ok(), "{}:{}: {line}", path.display(), n + 1);
    }
    text.lines().count()
}

#[test]
fn openbaos_audit_log_is_rotated_with_retention_while_openbao_keeps_auditing() {
    let mut boot = boot_with_loop_service(false);
    boot.set_logs(Some(LogRotation { max_size: 64 * 1024, keep: 2 }));
    let _run = boot.start();
    let audit = boot.audit_log();
    let generation = |n: u32| durable_file::log::generation(&audit, n);
    // Tokens until the log was rotated past its retention at least once more.
    let mut fetched = 0;
    let mut seen_second = None;
    let rotated_past = poll_until(Duration::from_secs(120), || {
        assert!(matches!(request(&boot.socket(), TOKEN), Outcome::Status(200, _)));
        fetched += 1;
        if generation(2).exists() && seen_second.is_none() {
            seen_second = Some(fs::read(generation(2)).unwrap());
        }
        // `.2` was replaced by a newer generation: one rotation past the retention.
        seen_second.as_ref().filter(|first| fs::read(generation(2)).unwrap() != **first).map(|_| ())
    });
    assert!(
        rotated_past.is_some(),
        "after {fetched} tokens: {:?}\n{}",
        fs::read_dir(boot.data_dir()).unwrap().flatten().map(|e| e.file_name()).collect::<Vec<_>>(),
        boot.log()
    );
    assert!(!generation(3).exists(), "keep 2: no third generation");
    assert!(boot.log().contains("rotated OpenBao's audit log"));
    // OpenBao writes to the new file: a token issued now is in it.
    std::thread::sleep(Duration::from_millis(500));
    let lines_before = assert_whole_json_lines(&audit);
    assert!(matches!(request(&boot.socket(), TOKEN), Outcome::Status(200, _)));
    let in_live =
        poll_until(Duration::from_secs(10), || (assert_whole_json_lines(&audit) > lines_before).then_some(()));
    assert!(in_live.is_some(), "OpenBao still audits into {}", audit.display());
    for n in [1, 2] {
        let lines = assert_whole_json_lines(&generation(n));
        assert!(lines > 10, "generation {n} holds {lines} lines");
        assert!(fs::metadata(generation(n)).unwrap().len() >= 64 * 1024);
    }
    // The audit join reads the rotated generations too.
    let joined = boot.audit(&["--json"]);
    assert!(joined.status.success(), "{}", String::from_utf8_lossy(&joined.stderr));
}

#[test]
fn a_full_disk_under_openbaos_audit_log_gives_a_clear_503_and_the_device_recovers_by_itself() {
    let mut boot = boot_with_loop_service(false);
    let logs = tempfile::tempdir().unwrap();
    let disk = edgeseal_tests::SmallTmpfs::mount(logs.path(), "4m");
    boot.set_openbao_audit_log(Some(logs.path().join("audit.log")));
    let _run = boot.start();
    assert!(matches!(request(&boot.socket(), TOKEN), Outcome::Status(200, _)));

    // No room for another audit line: OpenBao refuses to act unaudited, the service is told why.
    let filler = disk.fill();
    let refused = poll_until(Duration::from_secs(20), || match request(&boot.socket(), TOKEN) {
        Outcome::Status(503, body) => Some(body),
        Outcome::Status(200, _) => None,
        other => panic!("{other:?}"),
    });
    let body = refused.unwrap_or_else(|| panic!("still issuing tokens on a full disk:\n{}", boot.log()));
    eprintln!("on a full disk: 503 {body}");
    // The answer says what to do (the supervisor looks at the disk every second).
    let explained = poll_until(Duration::from_secs(10), || match request(&boot.socket(), TOKEN) {
        Outcome::Status(503, body) if body.contains("is full") => Some(body),
        _ => None,
    });
    let explained = explained.unwrap_or_else(|| panic!("no 503 says the disk is full:\n{}", boot.log()));
    assert!(explained.contains("free space there"), "{explained}");

    // Space again: tokens flow, nothing restarted by hand.
    fs::remove_file(filler).unwrap();
    let back = poll_until(Duration::from_secs(30), || {
        matches!(request(&boot.socket(), TOKEN), Outcome::Status(200, _)).then_some(())
    });
    assert!(back.is_some(), "{}", boot.log());
    let noticed = poll_until(Duration::from_secs(10), || boot.log().contains("has room again").then_some(()));
    assert!(noticed.is_some(), "{}", boot.log());
    // OpenBao tore the line it was writing when the disk filled (its file, not ours); what it wrote
    // since is whole, and the audit join counts the torn line and goes on.
    let text = fs::read_to_string(boot.audit_log()).unwrap();
    let last = text.lines().last().unwrap();
    assert!(serde_json::from_str::<serde_json::Value>(last).is_ok(), "{last}");
    let joined = boot.audit(&["--json"]);
    assert!(joined.status.success(), "{}", String::from_utf8_lossy(&joined.stderr));
}
