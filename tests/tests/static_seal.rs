//! The static seal (SPEC §6, §11): a supervised OpenBao seals with a key edgeseal keeps KEK-encrypted in
//! the keystore and initializes itself; edgeseal logs in with its client certificate. Against the real
//! `security-bootstrap run` and a real OpenBao: no `sys/init`, `sys/unseal` or root generation ever
//! reaches the store; SIGKILL of `run` or of OpenBao at random instants of a first boot or a reboot
//! loses nothing; other hardware opens nothing and starts nothing; neither key is ever in a file or
//! a log in clear.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use edgeseal_tests::boot::Boot;
use edgeseal_tests::device::{DEVICE_IKM, OTHER_IKM};
use edgeseal_tests::openbao::race_init;
use edgeseal_tests::regular_files_below;
use edgeseal_tests::{poll_until, wait_until};
use kdf_plugins::Ikm;
use nix::sys::signal::Signal;
use secretstore_setup::seal::material::SealMaterial;
use secretstore_setup::KeystoreDir;

/// Requests a static-sealed store must never receive.
const SHAMIR_PATHS: &[&str] = &["sys/init", "sys/unseal", "sys/generate-root", "sys/generate-root-token"];

fn assert_no_shamir_traffic(boot: &Boot) {
    let paths = boot.audited_paths();
    assert!(
        paths.iter().any(|p| p == "auth/edgeseal-cert/login"),
        "edgeseal logged in with its certificate: {paths:?}"
    );
    let shamir: Vec<_> = paths.iter().filter(|p| SHAMIR_PATHS.iter().any(|s| p.starts_with(s))).collect();
    assert!(shamir.is_empty(), "a static-sealed store got {shamir:?}");
    // No token with the root policy was ever issued to a client. (OpenBao runs its own `initialize`
    // requests under an internal root token, audited with request ids `initialize[…]`, and revokes
    // it itself at the end, request id `self-init-revoke-root`; nothing returns it to anyone.)
    let text = fs::read_to_string(boot.audit_log()).unwrap();
    assert!(text.contains("\"id\":\"self-init-revoke-root\""), "OpenBao revoked its self-init token");
    for line in text.lines().filter(|l| l.contains("\"type\":\"response\"")) {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap();
        let id = entry["request"]["id"].as_str().unwrap_or_default();
        if id.starts_with("initialize[") || id == "self-init-revoke-root" {
            continue;
        }
        let policies = &entry["auth"]["policies"];
        assert!(
            !policies.as_array().is_some_and(|p| p.iter().any(|p| p == "root"))
                || entry["auth"]["client_token"].is_null(),
            "a root token was issued: {line}"
        );
    }
}

/// A tiny deterministic generator: random instants that a failing run can reproduce from its seed.
struct Instants(u64);

impl Instants {
    fn new() -> Self {
        let seed = std::env::var("EDGESEAL_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
        });
        eprintln!("random kill instants: EDGESEAL_TEST_SEED={seed}");
        Self(seed)
    }

    /// Uniform in [0, within).
    fn next(&mut self, within: Duration) -> Duration {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let fraction = (self.0 >> 11) as f64 / (1u64 << 53) as f64;
        within.mul_f64(fraction)
    }
}

/// Random kill instants per test: `EDGESEAL_TEST_KILLS`, 6 by default (`make test` keeps it short;
/// raise it for a soak).
fn kills() -> usize {
    std::env::var("EDGESEAL_TEST_KILLS").ok().and_then(|n| n.parse().ok()).unwrap_or(6)
}

/// Boots `boot` once (returning `demo`'s secret), then again, timing that reboot to ready; both runs
/// are stopped.
fn first_boot_then_reboot_time(boot: &mut Boot) -> (String, Duration) {
    let mut run = boot.start();
    let value = boot.secret(&boot.token_until_ok(Duration::from_secs(10)));
    run.stop(Signal::SIGTERM, Duration::from_secs(30));
    let at = Instant::now();
    let mut run = boot.start();
    let reboot = at.elapsed();
    run.stop(Signal::SIGTERM, Duration::from_secs(30));
    (value, reboot)
}

/// Waits until `run`, whose OpenBao was killed `delay` into its boot, is ready — without giving up.
fn ready_after_openbao_was_killed(
    boot: &Boot,
    run: &mut edgeseal_tests::process::ChildGuard,
    round: usize,
    delay: Duration,
) {
    let ready = poll_until(Duration::from_secs(120), || {
        assert!(
            run.exited().is_none(),
            "round {round}: run gave up after OpenBao was killed {delay:?} in:\n{}",
            boot.log()
        );
        boot.ready_file().exists().then_some(())
    });
    assert!(ready.is_some(), "round {round}: not ready:\n{}", boot.log());
}

/// How long a first boot of a fresh device takes to be ready, measured here.
fn first_boot_time() -> Duration {
    let mut boot = Boot::new();
    let started = Instant::now();
    let _run = boot.start();
    started.elapsed()
}

#[test]
fn no_sys_init_unseal_or_root_generation_ever_reaches_a_static_sealed_store() {
    let mut boot = Boot::new();
    let mut run = boot.start();
    let value = boot.secret(&boot.token_until_ok(Duration::from_secs(10)));

    // OpenBao killed under run: it is restarted and opens itself; tokens flow with no unseal traffic.
    let killed = boot.openbao_pid().unwrap();
    boot.kill_openbao();
    let at = Instant::now();
    wait_until("a new OpenBao child", Duration::from_secs(60), || boot.openbao_pid().filter(|&p| p != killed));
    let token = boot.token_until_ok(Duration::from_secs(60));
    eprintln!("OpenBao killed -> first token: {:?}", at.elapsed());
    assert_eq!(boot.secret(&token), value);

    run.stop(Signal::SIGTERM, Duration::from_secs(30));
    let _run = boot.start();
    assert_eq!(boot.secret(&boot.token_until_ok(Duration::from_secs(10))), value);
    assert_no_shamir_traffic(&boot);
    let log = boot.log();
    assert!(!log.contains("unsealing"), "{log}");
}

#[test]
fn sigkill_of_run_at_random_instants_of_a_first_boot_always_converges() {
    let window = first_boot_time();
    let mut instants = Instants::new();
    for round in 0..kills() {
        let mut boot = Boot::new();
        let delay = instants.next(window);
        let mut run = boot.spawn();
        std::thread::sleep(delay);
        run.signal(Signal::SIGKILL);
        run.exited_within(Duration::from_secs(10)).unwrap();
        // Its OpenBao may still run (as after an OOM kill on a bare host); the rerun stops it.
        let _run = boot.start();
        let token = boot.token_until_ok(Duration::from_secs(30));
        assert!(boot.secret(&token).len() >= 40, "round {round}, killed after {delay:?}");
        eprintln!("round {round}: run killed {delay:?} into a first boot of ~{window:?}; the rerun converged");
        assert_no_shamir_traffic(&boot);
    }
}

#[test]
fn killed_at_every_named_point_of_a_first_boot_and_a_reboot_a_rerun_converges_and_keeps_the_secrets() {
    use secretstore_setup::crash::{STATIC_FIRST_BOOT_ONLY, STATIC_POINTS};
    for &point in STATIC_POINTS {
        let mut boot = Boot::new();
        let status = boot.run_until_crash(point);
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "{point}: {status}\n{}",
            boot.log()
        );
        let _run = boot.start();
        assert!(boot.secret(&boot.token_until_ok(Duration::from_secs(30))).len() >= 40, "first boot, {point}");
    }
    let mut boot = Boot::new();
    let mut run = boot.start();
    let value = boot.secret(&boot.token_until_ok(Duration::from_secs(10)));
    run.stop(Signal::SIGTERM, Duration::from_secs(30));
    for &point in STATIC_POINTS.iter().filter(|p| !STATIC_FIRST_BOOT_ONLY.contains(p)) {
        let status = boot.run_until_crash(point);
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "{point}: {status}\n{}",
            boot.log()
        );
        let mut run = boot.start();
        assert_eq!(
            boot.secret(&boot.token_until_ok(Duration::from_secs(30))),
            value,
            "reboot, {point}: the store was kept"
        );
        run.stop(Signal::SIGTERM, Duration::from_secs(30));
    }
    assert_no_shamir_traffic(&boot);
}

#[test]
fn sigkill_of_openbao_at_random_instants_of_a_first_boot_is_survived_by_the_same_run() {
    let window = first_boot_time();
    let mut instants = Instants::new();
    for round in 0..kills() {
        let mut boot = Boot::new();
        let delay = instants.next(window);
        let mut run = boot.spawn();
        std::thread::sleep(delay);
        let killed = boot.openbao_pid();
        boot.kill_openbao();
        ready_after_openbao_was_killed(&boot, &mut run, round, delay);
        assert!(boot.secret(&boot.token_until_ok(Duration::from_secs(30))).len() >= 40);
        eprintln!("round {round}: OpenBao ({killed:?}) killed {delay:?} into a first boot; run converged");
    }
}

#[test]
fn sigkill_of_run_at_random_instants_of_a_reboot_loses_nothing() {
    let mut boot = Boot::new();
    let started = Instant::now();
    let (value, reboot) = first_boot_then_reboot_time(&mut boot);
    eprintln!("first boot {:?}, reboot {reboot:?}", started.elapsed());
    let mut instants = Instants::new();
    for round in 0..kills() {
        let delay = instants.next(reboot);
        let mut run = boot.spawn();
        std::thread::sleep(delay);
        run.signal(Signal::SIGKILL);
        run.exited_within(Duration::from_secs(10)).unwrap();
        let mut run = boot.start();
        assert_eq!(boot.secret(&boot.token_until_ok(Duration::from_secs(30))), value, "round {round} ({delay:?})");
        run.stop(Signal::SIGTERM, Duration::from_secs(30));
    }
    assert_no_shamir_traffic(&boot);
}

#[test]
fn sigkill_of_openbao_at_random_instants_of_a_reboot_is_survived_by_the_same_run() {
    let mut boot = Boot::new();
    let (value, reboot) = first_boot_then_reboot_time(&mut boot);
    let mut instants = Instants::new();
    for round in 0..kills() {
        let delay = instants.next(reboot);
        let mut run = boot.spawn();
        std::thread::sleep(delay);
        boot.kill_openbao();
        ready_after_openbao_was_killed(&boot, &mut run, round, delay);
        assert_eq!(boot.secret(&boot.token_until_ok(Duration::from_secs(30))), value, "round {round} ({delay:?})");
        run.stop(Signal::SIGTERM, Duration::from_secs(30));
    }
    assert_no_shamir_traffic(&boot);
}

#[test]
fn a_second_edgeseal_on_the_same_store_is_refused_and_the_first_keeps_serving() {
    let mut boot = Boot::new();
    let _run = boot.start();
    let value = boot.secret(&boot.token_until_ok(Duration::from_secs(10)));
    let openbao = boot.openbao_pid();
    let mut second = boot.spawn();
    let status = second.exited_within(Duration::from_secs(60)).expect("the second run stops");
    assert!(!status.success());
    assert!(boot.log().contains("another edgeseal process"), "{}", boot.log());
    assert_eq!(boot.openbao_pid(), openbao, "the first run's OpenBao was left alone");
    assert_eq!(boot.secret(&boot.token_until_ok(Duration::from_secs(10))), value);
    let out = boot.command(&["migrate-seal"], None);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("another edgeseal process"));
}

#[test]
fn a_local_user_racing_sys_init_during_a_first_boot_gets_nothing_and_the_store_is_edgeseals() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    let mut boot = Boot::new();
    let (answers, stop, tries) =
        (Arc::new(Mutex::new(Vec::new())), Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let racer = {
        let (answers, stop, tries, port) = (answers.clone(), stop.clone(), tries.clone(), boot.port);
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let (code, body) = race_init(
                    port,
                    r#"{"secret_shares":1,"secret_threshold":1,"recovery_shares":1,"recovery_threshold":1}"#,
                );
                tries.fetch_add(1, Ordering::SeqCst);
                if code != 0 {
                    answers.lock().unwrap().push((code, body));
                }
            }
        })
    };
    let _run = boot.start();
    let after = tries.load(Ordering::SeqCst);
    wait_until("the racer has tried three more times", Duration::from_secs(60), || {
        (tries.load(Ordering::SeqCst) >= after + 3).then_some(())
    });
    stop.store(true, Ordering::SeqCst);
    racer.join().unwrap();
    let answers = answers.lock().unwrap().clone();
    assert!(!answers.is_empty(), "the racer reached OpenBao");
    for (code, body) in &answers {
        assert!(!body.contains("keys") && !body.contains("root_token"), "the racer initialized the store: {body}");
        assert_eq!(*code, 400, "only 'already initialized' reaches the racer: {code} {body}");
    }
    assert!(boot.secret(&boot.token_until_ok(Duration::from_secs(30))).len() >= 40, "the store is edgeseal's");
    eprintln!("{} sys/init attempts, {} answered, all 400", tries.load(Ordering::SeqCst), answers.len());
}

#[test]
fn other_hardware_opens_nothing_and_starts_no_openbao() {
    let mut boot = Boot::new();
    let mut run = boot.start();
    run.stop(Signal::SIGTERM, Duration::from_secs(30));
    let keystore = boot.device.keystore_dir().join("keystore.json");
    let before = (fs::read(&keystore).unwrap(), tree(&boot.data_dir().join("raft")));
    let started = boot.log().matches("OpenBao started").count();

    boot.device.set_hardware(OTHER_IKM);
    let mut run = boot.spawn();
    let status = run.exited_within(Duration::from_secs(60)).expect("run stops");
    assert!(!status.success());
    let log = boot.log();
    assert!(log.contains("plug-in") || log.contains("hardware"), "the error names the hardware or plug-in:\n{log}");
    assert_eq!(log.matches("OpenBao started").count(), started, "no OpenBao was started with a wrong key");
    assert!(boot.openbao_pid().is_none());
    assert_eq!((fs::read(&keystore).unwrap(), tree(&boot.data_dir().join("raft"))), before, "nothing written");

    boot.device.set_hardware(DEVICE_IKM);
    let _run = boot.start();
    boot.token_until_ok(Duration::from_secs(30));
}

#[test]
fn a_store_whose_storage_is_gone_is_refused_not_recreated() {
    let mut boot = Boot::new();
    let mut run = boot.start();
    run.stop(Signal::SIGTERM, Duration::from_secs(30));
    fs::rename(boot.data_dir().join("raft"), boot.device.path().join("raft.moved")).unwrap();
    let mut run = boot.spawn();
    let status = run.exited_within(Duration::from_secs(60)).expect("run stops");
    assert!(!status.success());
    assert!(boot.log().contains("would create a new, empty store"), "{}", boot.log());
    assert!(!boot.data_dir().join("raft").join("vault.db").exists(), "no new store was created");
    fs::remove_dir_all(boot.data_dir().join("raft")).ok();
    fs::rename(boot.device.path().join("raft.moved"), boot.data_dir().join("raft")).unwrap();
    let _run = boot.start();
    boot.token_until_ok(Duration::from_secs(30));
}

#[test]
fn the_seal_key_and_client_key_are_in_no_file_or_log_and_openbaos_environment_is_root_only() {
    let mut boot = Boot::new();
    let _run = boot.start();
    boot.token_until_ok(Duration::from_secs(10));
    let ikm = Ikm::new(hex::decode(DEVICE_IKM).unwrap());
    let (keystore, _) = KeystoreDir::new(boot.device.keystore_dir()).open_with_ikm(&ikm).unwrap();
    let material = SealMaterial::from_keystore(&keystore).unwrap().expect("seal material in the keystore");
    let seal_hex = material.current.hex().expose().to_string();
    let key_pem = material.identity.private_key().expose().to_string();
    let key_body: String = key_pem.lines().filter(|l| !l.starts_with("-----")).collect();
    // (The first 36 base64 characters of every P-256 PKCS#8 key are the same ASN.1 header.)
    let recovery = keystore.item(secretstore_setup::seal::material::ITEM_RECOVERY_KEY).expect("a recovery key");
    let recovery_hex = hex::encode(recovery.expose());
    let recovery_b64 = base64::engine::general_purpose::STANDARD.encode(recovery.expose());
    let needles = [
        seal_hex.clone(),
        seal_hex.to_uppercase(),
        key_body.clone(),
        key_body[48..108].to_string(),
        recovery_hex,
        recovery_b64,
    ];
    for file in regular_files_below(boot.device.path()) {
        let bytes = fs::read(&file).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        for needle in &needles {
            assert!(!text.contains(needle.as_str()), "{} holds a key in clear", file.display());
        }
    }

    // The key reaches OpenBao through its environment: readable by its own user (root) only.
    let pid = boot.openbao_pid().unwrap();
    let environ = format!("/proc/{pid}/environ");
    let meta = fs::metadata(&environ).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o400));
    let env = fs::read(&environ).unwrap();
    assert!(String::from_utf8_lossy(&env).contains(&format!("EDGESEAL_SEAL_KEY={seal_hex}")));
    let as_nobody = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "cat"])
        .arg(&environ)
        .output()
        .unwrap();
    assert!(!as_nobody.status.success(), "another user read OpenBao's environment");
}

/// Names, sizes and contents hashes of every file below `dir`.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = regular_files_below(dir)
        .into_iter()
        .map(|f| (f.display().to_string(), fs::read(&f).unwrap_or_default()))
        .collect();
    out.sort();
    out
}

fn seal_keys(boot: &Boot) -> (String, Option<String>) {
    let ikm = Ikm::new(hex::decode(DEVICE_IKM).unwrap());
    let (keystore, _) = KeystoreDir::new(boot.device.keystore_dir()).open_with_ikm(&ikm).unwrap();
    let material = SealMaterial::from_keystore(&keystore).unwrap().expect("seal material");
    (material.current.id.clone(), material.next.as_ref().map(|n| n.id.clone()))
}

#[test]
fn a_seal_key_rotation_completes_at_the_next_boot_whatever_step_a_kill_interrupts() {
    let mut boot = Boot::new();
    let mut run = boot.start();
    let value = boot.secret(&boot.token_until_ok(Duration::from_secs(10)));
    run.stop(Signal::SIGTERM, Duration::from_secs(30));
    let (old, _) = seal_keys(&boot);

    // Unseal shares are no part of a static seal: refused as bad usage, nothing changed.
    let keystore = fs::read(boot.device.keystore_dir().join("keystore.json")).unwrap();
    let refused = boot.command(&["rekey", "--shares", "5", "--threshold", "3"], None);
    assert_eq!(refused.status.code(), Some(64), "{}", String::from_utf8_lossy(&refused.stderr));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("static seal"));
    assert_eq!(fs::read(boot.device.keystore_dir().join("keystore.json")).unwrap(), keystore);

    // `rekey` starts the rotation; `rotate-seal-key` is its hidden alias.
    let out = boot.command(&["rekey"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (current, next) = seal_keys(&boot);
    let next = next.expect("a next key is pending");
    assert_eq!(current, old);
    let again = boot.command(&["rotate-seal-key"], None);
    assert!(String::from_utf8_lossy(&again.stdout).contains("already pending"));

    for point in ["mid-rotation", "after-rotation"] {
        let status = boot.run_until_crash(point);
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "{point}: {status}\n{}",
            boot.log()
        );
        let (current, pending) = seal_keys(&boot);
        assert!(
            (current == old && pending.as_deref() == Some(next.as_str())) || (current == next && pending.is_none()),
            "{point}: the keystore holds the old key with the next pending, or the next alone"
        );
    }
    let mut run = boot.start();
    assert_eq!(seal_keys(&boot), (next.clone(), None), "the rotation completed");
    assert_eq!(boot.secret(&boot.token_until_ok(Duration::from_secs(30))), value);
    // And the store opens with the new key alone, at every later start.
    run.stop(Signal::SIGTERM, Duration::from_secs(30));
    let _run = boot.start();
    assert_eq!(boot.secret(&boot.token_until_ok(Duration::from_secs(30))), value);
    let config = fs::read_to_string(boot.data_dir().join("openbao.hcl")).unwrap();
    assert!(config.contains(&next) && !config.contains(&old) && !config.contains("previous_key"), "{config}");
    assert_no_shamir_traffic(&boot);
}

#[test]
fn migrate_seal_moves_a_shamir_store_and_a_kill_at_every_step_loses_nothing() {
    let mut boot = Boot::shamir();
    let mut run = boot.start();
    let value = boot.secret(&boot.token_until_ok(Duration::from_secs(10)));
    run.stop(Signal::SIGTERM, Duration::from_secs(30));

    // Static mode refuses the Shamir store, changing nothing, and says what to do.
    boot.set_shamir(false);
    let mut refused = boot.spawn();
    assert!(!refused.exited_within(Duration::from_secs(60)).expect("run stops").success());
    assert!(boot.log().contains("migrate-seal"), "{}", boot.log());

    let points = [
        "after-migrate-backup",
        "after-migrate-marker",
        "after-migrate-material",
        "mid-migrate-unseal",
        "after-migrate-unseal",
        "after-migrate-cert",
        "after-migrate-verify",
    ];
    for point in points {
        let out = boot.command(&["migrate-seal"], Some(point));
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&out.status),
            Some(9),
            "{point}: {:?} {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            boot.log()
        );
        // Until a migration completes, `run` refuses to start on the half-moved store, with either
        // seal in the config (a Shamir run would write data the resumed migration then discards).
        // Before the migration is marked, the store is still a plain Shamir store: a Shamir run
        // serves it, and the next migrate-seal copies it afresh.
        for shamir in [false, true] {
            boot.set_shamir(shamir);
            if shamir && point == "after-migrate-backup" {
                let mut run = boot.start();
                assert_eq!(boot.secret(&boot.token_until_ok(Duration::from_secs(30))), value);
                run.stop(Signal::SIGTERM, Duration::from_secs(30));
                continue;
            }
            let mut refused = boot.spawn();
            assert!(
                !refused.exited_within(Duration::from_secs(60)).expect("run stops").success(),
                "{point}, shamir {shamir}"
            );
        }
        boot.set_shamir(false);
    }
    let out = boot.command(&["migrate-seal"], None);
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stderr), boot.log());
    assert!(String::from_utf8_lossy(&out.stdout).contains("migrated"), "{}", String::from_utf8_lossy(&out.stdout));
    let again = boot.command(&["migrate-seal"], None);
    assert!(String::from_utf8_lossy(&again.stdout).contains("already"), "{}", String::from_utf8_lossy(&again.stdout));

    let before = boot.audited_paths().len();
    let _run = boot.start();
    assert_eq!(
        boot.secret(&boot.token_until_ok(Duration::from_secs(30))),
        value,
        "the secret made before the migration"
    );
    let after: Vec<_> = boot.audited_paths().split_off(before);
    assert!(after.iter().any(|p| p == "auth/edgeseal-cert/login"), "{after:?}");
    assert!(!after.iter().any(|p| SHAMIR_PATHS.iter().any(|s| p.starts_with(s))), "{after:?}");
}
