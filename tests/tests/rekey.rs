//! `security-bootstrap rekey` on a supervised Shamir device (SPEC §13): new unseal shares through
//! OpenBao's verified rekey, against the real binary and a real OpenBao. The new shares open the
//! store after OpenBao restarts, the old ones no longer do; SIGKILL of `rekey` at every named crash
//! point leaves a store that opens — a rerun of `rekey` converges, and so does a boot after an
//! OpenBao restart; no share is ever in a file or a log in clear. (The static seal's `rekey` is the
//! key rotation: `static_seal.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use edgeseal_tests::boot::Boot;
use edgeseal_tests::device::DEVICE_IKM;
use edgeseal_tests::regular_files_below;
use kdf_plugins::Ikm;
use nix::sys::signal::Signal;
use secretstore_setup::crash::REKEY_POINTS;
use secretstore_setup::KeystoreDir;

/// One generation of shares as the keystore holds it: the shares, the threshold, and the pending
/// generation's shares if there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Generations {
    shares: Vec<Vec<u8>>,
    threshold: u64,
    pending: Option<(Vec<Vec<u8>>, u64)>,
}

fn generations(boot: &Boot) -> Generations {
    let ikm = Ikm::new(hex::decode(DEVICE_IKM).unwrap());
    let (keystore, _) = KeystoreDir::new(boot.device.keystore_dir()).open_with_ikm(&ikm).unwrap();
    let pending = keystore
        .pending_shares()
        .unwrap()
        .map(|p| (p.shares.iter().map(|s| s.expose().to_vec()).collect(), p.threshold));
    Generations {
        shares: keystore.shares().iter().map(|s| s.expose().to_vec()).collect(),
        threshold: keystore.threshold(),
        pending,
    }
}

fn keystore_file(boot: &Boot) -> PathBuf {
    boot.device.keystore_dir().join("keystore.json")
}

fn rekey(boot: &Boot, args: &[&str], crash_at: Option<&str>) -> std::process::Output {
    let mut all = vec!["rekey"];
    all.extend_from_slice(args);
    boot.command(&all, crash_at)
}

fn assert_ok(out: &std::process::Output, boot: &Boot) {
    assert!(
        out.status.success(),
        "{:?}\n{}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        boot.log()
    );
}

/// OpenBao killed: `run` restarts it and its watchdog unseals it from the keystore; the secret reads back.
fn survives_an_openbao_restart(boot: &Boot, value: &str, what: &str) {
    let before = boot.openbao_pid();
    boot.kill_openbao();
    edgeseal_tests::wait_until(&format!("{what}: OpenBao restarted"), Duration::from_secs(60), || {
        boot.openbao_pid().filter(|pid| Some(*pid) != before)
    });
    assert_eq!(boot.secret(&boot.token_until_ok(Duration::from_secs(60))), value, "{what}\n{}", boot.log());
}

/// Every share ever seen must be in no file below the device directory (keystore, OpenBao's data and
/// audit log, edgeseal's logs) in clear: raw bytes, hex (both cases) or base64.
fn assert_no_share_in_clear(boot: &Boot, shares: &[Vec<u8>], outputs: &[String]) {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut needles: Vec<Vec<u8>> = Vec::new();
    for share in shares {
        needles.push(share.clone());
        needles.push(hex::encode(share).into_bytes());
        needles.push(hex::encode_upper(share).into_bytes());
        // Base64 without its last (padding-dependent) characters.
        needles.push(b64.encode(share).as_bytes()[..40].to_vec());
    }
    // One pass per file: candidates by their first 8 bytes, then a full compare.
    let mut by_prefix: HashMap<[u8; 8], Vec<&Vec<u8>>> = HashMap::new();
    for needle in &needles {
        by_prefix.entry(needle[..8].try_into().unwrap()).or_default().push(needle);
    }
    let mut scanned = 0;
    let mut haystacks: Vec<(String, Vec<u8>)> = regular_files_below(boot.device.path())
        .into_iter()
        .map(|f| (f.display().to_string(), fs::read(&f).unwrap_or_default()))
        .collect();
    haystacks.extend(outputs.iter().enumerate().map(|(i, o)| (format!("command output {i}"), o.clone().into_bytes())));
    for (name, bytes) in &haystacks {
        scanned += 1;
        for at in 0..bytes.len().saturating_sub(7) {
            let Some(candidates) = by_prefix.get(&<[u8; 8]>::try_from(&bytes[at..at + 8]).unwrap()) else { continue };
            for needle in candidates {
                assert!(!bytes[at..].starts_with(needle), "{name} holds an unseal share in clear at byte {at}");
            }
        }
    }
    assert!(scanned > 5 && shares.len() >= 6, "scanned {scanned} files for {} shares", shares.len());
}

#[test]
fn rekey_makes_new_shares_that_open_the_store_and_the_old_ones_no_longer_do() {
    let mut boot = Boot::shamir();
    let mut run = boot.start();
    let value = boot.secret(&boot.token_until_ok(Duration::from_secs(10)));
    let first = generations(&boot);
    let mut outputs = Vec::new();

    let out = rekey(&boot, &["--shares", "5", "--threshold", "3"], None);
    assert_ok(&out, &boot);
    outputs.push(String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr));
    let second = generations(&boot);
    assert_eq!((second.shares.len(), second.threshold, &second.pending), (5, 3, &None));
    assert!(second.shares.iter().all(|s| !first.shares.contains(s)), "all shares are new");
    let second_file = fs::read(keystore_file(&boot)).unwrap();

    survives_an_openbao_restart(&boot, &value, "after the rekey");
    run.stop(Signal::SIGTERM, Duration::from_secs(30));
    let mut run = boot.start();
    assert_eq!(boot.secret(&boot.token_until_ok(Duration::from_secs(30))), value, "a fresh boot opens the store");

    // Another threshold, then back: the audit log shows the authenticated rotate API was used.
    let out = rekey(&boot, &["--shares", "3", "--threshold", "2"], None);
    assert_ok(&out, &boot);
    outputs.push(String::from_utf8_lossy(&out.stdout).into_owned());
    let third = generations(&boot);
    assert_eq!((third.shares.len(), third.threshold), (3, 2));
    let paths = boot.audited_paths();
    for path in ["sys/rotate/root/init", "sys/rotate/root/update", "sys/rotate/root/verify"] {
        assert!(paths.iter().any(|p| p == path), "{path} in {paths:?}");
    }

    // The old shares no longer unseal: with the keystore of the second generation put back, a boot
    // sends them to OpenBao and is refused, changing nothing; with the current one it boots.
    run.stop(Signal::SIGTERM, Duration::from_secs(30));
    let third_file = fs::read(keystore_file(&boot)).unwrap();
    let out = rekey(&boot, &[], None);
    assert!(!out.status.success(), "no OpenBao runs: rekey refuses");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("security-bootstrap run"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut run = boot.start();
    let out = rekey(&boot, &["--shares", "5", "--threshold", "3"], None);
    assert_ok(&out, &boot);
    outputs.push(String::from_utf8_lossy(&out.stdout).into_owned());
    let fourth = generations(&boot);
    let fourth_file = fs::read(keystore_file(&boot)).unwrap();
    run.stop(Signal::SIGTERM, Duration::from_secs(30));
    for (old, name) in [(&second_file, "second"), (&third_file, "third")] {
        fs::write(keystore_file(&boot), old).unwrap();
        let mut refused = boot.spawn();
        let status = refused.exited_within(Duration::from_secs(120)).expect("run stops");
        assert!(!status.success(), "the {name} generation's shares opened the store");
        assert_eq!(fs::read(keystore_file(&boot)).unwrap(), *old, "a refused boot wrote nothing");
    }
    let log = boot.log();
    assert!(log.contains("do not unseal OpenBao"), "the same threshold: the shares were sent and refused:\n{log}");
    assert!(log.contains("asks for 3 shares to unseal but the keystore's threshold is 2"), "{log}");
    fs::write(keystore_file(&boot), &fourth_file).unwrap();
    let _run = boot.start();
    assert_eq!(boot.secret(&boot.token_until_ok(Duration::from_secs(30))), value);

    let all: Vec<Vec<u8>> = [first, second, third, fourth].into_iter().flat_map(|g| g.shares).collect();
    assert_no_share_in_clear(&boot, &all, &outputs);
}

#[test]
fn rekey_killed_at_every_step_leaves_a_store_that_opens_and_a_rerun_converges() {
    let mut boot = Boot::shamir();
    let mut run = boot.start();
    let value = boot.secret(&boot.token_until_ok(Duration::from_secs(10)));
    let mut seen: Vec<Vec<u8>> = generations(&boot).shares;
    let mut outputs = Vec::new();
    let remember = |g: &Generations, seen: &mut Vec<Vec<u8>>| {
        for share in g.shares.iter().chain(g.pending.iter().flat_map(|(p, _)| p)) {
            if !seen.contains(share) {
                seen.push(share.clone());
            }
        }
    };
    // From 5/3 (the default): another threshold, back, the same numbers (so only OpenBao's refusal of
    // the old shares tells the generations apart), another threshold.
    let targets = [("3", "2"), ("5", "3"), ("5", "3"), ("3", "2")];
    assert_eq!(REKEY_POINTS.len(), targets.len());
    for (&point, (shares, threshold)) in REKEY_POINTS.iter().zip(targets) {
        let want = (shares.parse::<usize>().unwrap(), threshold.parse::<u64>().unwrap());
        for restart_first in [false, true] {
            let what = format!("{point}, OpenBao restarted before the rerun: {restart_first}");
            let before = generations(&boot);
            let out = rekey(&boot, &["--shares", shares, "--threshold", threshold], Some(point));
            assert_eq!(out.status.signal(), Some(9), "{what}: {:?}\n{}", out.status, boot.log());
            let crashed = generations(&boot);
            remember(&crashed, &mut seen);
            match point {
                "rekey-after-init" => assert_eq!(crashed, before, "{what}: nothing stored yet"),
                "rekey-after-pending" | "rekey-after-verify" => {
                    assert_eq!(crashed.shares, before.shares, "{what}");
                    assert_eq!(crashed.pending.as_ref().map(|(p, t)| (p.len(), *t)), Some(want), "{what}");
                }
                _ => assert_eq!((crashed.shares.len(), crashed.threshold, &crashed.pending), (want.0, want.1, &None)),
            }
            if restart_first {
                // A boot after an OpenBao restart: the watchdog's unseal, then a whole new `run`.
                survives_an_openbao_restart(&boot, &value, &what);
                run.stop(Signal::SIGTERM, Duration::from_secs(30));
                run = boot.start();
                assert_eq!(boot.secret(&boot.token_until_ok(Duration::from_secs(30))), value, "{what}");
                let booted = generations(&boot);
                if point == "rekey-after-pending" {
                    assert_eq!(
                        booted, crashed,
                        "{what}: the boot opened the store with the current shares, the pending ones wait"
                    );
                }
                if point == "rekey-after-verify" {
                    assert!(boot.log().contains("the new shares of an interrupted rekey opened OpenBao"), "{what}");
                    assert_eq!(booted.pending, None, "{what}: the verified shares were promoted by the boot");
                    assert_eq!((booted.shares.len(), booted.threshold), want, "{what}");
                }
            }
            let discarded = boot.log().matches("discarded the new shares of an interrupted rekey").count();
            let out = rekey(&boot, &["--shares", shares, "--threshold", threshold], None);
            assert_ok(&out, &boot);
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            // OpenBao still waits to verify the pending shares, or already switched to them: the rerun
            // completes that rekey. Restarted before verifying: it forgot them, the rerun discards them.
            let finishes = matches!((point, restart_first), ("rekey-after-pending" | "rekey-after-verify", false));
            assert_eq!(stdout.contains("an interrupted rekey was completed"), finishes, "{what}: {stdout}");
            let discards = (point, restart_first) == ("rekey-after-pending", true);
            let now = boot.log().matches("discarded the new shares of an interrupted rekey").count();
            assert_eq!(now > discarded, discards, "{what}: {}", String::from_utf8_lossy(&out.stderr));
            outputs.push(stdout);
            let after = generations(&boot);
            remember(&after, &mut seen);
            assert_eq!((after.shares.len(), after.threshold, &after.pending), (want.0, want.1, &None), "{what}");
            survives_an_openbao_restart(&boot, &value, &format!("{what}, after the rerun"));
        }
    }
    assert_no_share_in_clear(&boot, &seen, &outputs);
}

#[test]
fn bad_requests_change_nothing() {
    let mut boot = Boot::shamir();
    let _run = boot.start();
    boot.token_until_ok(Duration::from_secs(10));
    let before = fs::read(keystore_file(&boot)).unwrap();
    for args in [
        &["--shares", "3", "--threshold", "4"][..],
        &["--shares", "3", "--threshold", "1"],
        &["--shares", "0", "--threshold", "0"],
        &["--shares", "3"],
    ] {
        let out = rekey(&boot, args, None);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(fs::read(keystore_file(&boot)).unwrap(), before);
}
