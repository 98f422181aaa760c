//! `security-bootstrap keystore rewrap` (SPEC §13): the keystore moves to another KDF plug-in's KEK
//! ("hardware" here: the test plug-ins answering [`DEVICE_IKM`] and [`OTHER_IKM`]). Against the real
//! binary and a real supervised, static-sealed OpenBao: after a rewrap only the new plug-in opens the
//! keystore, the device boots with it once `kdf:` names it and keeps its secrets; SIGKILL at every
//! rewrap crash point, in either direction, converges on a rerun; neither plug-in → a clear error and
//! nothing changed; bad flags → exit 64 and nothing changed; no seal key, IKM or KEK in any file.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use edgeseal_tests::boot::Boot;
use edgeseal_tests::device::{DEVICE_IKM, OTHER_IKM};
use edgeseal_tests::{regular_files_below, wait_until, write_script};
use kdf_plugins::{Ikm, KdfConfig};
use nix::sys::signal::Signal;
use secretstore_setup::crash::REWRAP_POINTS;
use secretstore_setup::seal::material::SealMaterial;
use secretstore_setup::KeystoreDir;

/// Neither plug-in's answer.
const THIRD_IKM: &str = "a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0";
/// The operator's secret set before the rewrap.
const VALUE: &str = "operator-value-before-rewrap-7c1e";

fn ikm(hex_ikm: &str) -> Ikm {
    Ikm::new(hex::decode(hex_ikm).unwrap())
}

/// A second plug-in in the device directory (the TPM the keystore moves to), answering [`OTHER_IKM`].
fn new_plugin(boot: &Boot) -> PathBuf {
    let path = boot.device.path().join("kdf-plugin-new");
    write_script(
        &path,
        &format!("[ \"$1\" = ikm-v1 ] || {{ echo \"unknown protocol $1\" >&2; exit 2; }}\necho {OTHER_IKM}"),
    );
    path
}

fn kdf(plugin: &Path) -> KdfConfig {
    KdfConfig { plugin: plugin.to_path_buf(), ..KdfConfig::default() }
}

fn rewrap_to(boot: &Boot, plugin: &Path, crash_at: Option<&str>) -> Output {
    boot.command(&["keystore", "rewrap", "--to-plugin", plugin.to_str().unwrap()], crash_at)
}

fn text(out: &Output) -> String {
    format!(
        "{:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Which of the IKMs opens the keystore (exactly one must).
fn opened_by(boot: &Boot) -> &'static str {
    let store = KeystoreDir::new(boot.device.keystore_dir());
    let opening: Vec<_> =
        [DEVICE_IKM, OTHER_IKM].into_iter().filter(|i| store.open_with_ikm(&ikm(i)).is_ok()).collect();
    assert_eq!(opening.len(), 1, "exactly one plug-in opens the keystore: {opening:?}");
    opening[0]
}

/// Every secret that must never be in a file in clear: the seal key, both IKMs and the KEK the
/// keystore is under now.
fn needles(boot: &Boot) -> Vec<String> {
    let under = opened_by(boot);
    let (keystore, kek) = KeystoreDir::new(boot.device.keystore_dir()).open_with_ikm(&ikm(under)).unwrap();
    let material = SealMaterial::from_keystore(&keystore).unwrap().expect("seal material");
    let seal = material.current.hex().expose().to_string();
    let kek = hex::encode(kek.expose());
    vec![
        seal.clone(),
        seal.to_uppercase(),
        DEVICE_IKM.into(),
        OTHER_IKM.into(),
        kek.clone(),
        kek.to_uppercase(),
        VALUE.into(),
    ]
}

/// No needle in any file under the device directory but the plug-ins themselves (the "hardware").
fn scan(boot: &Boot, needles: &[String], step: &str) {
    for file in regular_files_below(boot.device.path()) {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("kdf-plugin") {
            continue;
        }
        let bytes = fs::read(&file).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        for needle in needles {
            assert!(!text.contains(needle.as_str()), "{step}: {} holds a secret in clear", file.display());
        }
    }
}

fn read_value(boot: &Boot) -> String {
    let token = boot.token_until_ok(Duration::from_secs(30));
    let data = boot.read(&token, "api-key").expect("demo/api-key exists");
    data["value"].as_str().unwrap().to_string()
}

#[test]
fn rewrap_moves_the_keystore_to_the_new_plugin_and_the_device_boots_with_it() {
    let mut boot = Boot::new();
    let mut run = boot.start();
    let set = boot.secrets(&["set", "demo/api-key"], VALUE.as_bytes());
    assert!(set.status.success(), "{}", text(&set));
    let greeting = boot.secret(&boot.token_until_ok(Duration::from_secs(10)));
    assert_eq!(read_value(&boot), VALUE);
    run.stop(Signal::SIGTERM, Duration::from_secs(30));
    let secrets = needles(&boot);
    scan(&boot, &secrets, "before");

    let new = new_plugin(&boot);
    let out = rewrap_to(&boot, &new, None);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("keystore rewrap said:\n{stdout}");
    assert!(stdout.contains("re-encrypted under the KEK of"), "{stdout}");
    assert!(stdout.contains("kdf:") && stdout.contains(&format!("plugin: {}", new.display())), "{stdout}");
    assert_eq!(opened_by(&boot), OTHER_IKM, "only the new plug-in opens the keystore");
    let mut secrets = secrets;
    secrets.extend(needles(&boot));
    scan(&boot, &secrets, "after the rewrap");
    let keystore = fs::read(boot.device.keystore_dir().join("keystore.json")).unwrap();

    // With the old kdf: section: inspect and a boot fail, and say why.
    let inspect = boot.command(&["keystore", "inspect"], None);
    assert_eq!(inspect.status.code(), Some(1), "{}", text(&inspect));
    assert!(String::from_utf8_lossy(&inspect.stderr).contains("keystore rewrap"), "{}", text(&inspect));
    let mut old = boot.spawn();
    assert!(!old.exited_within(Duration::from_secs(60)).expect("run stops").success());
    assert!(boot.log().contains("after a `keystore rewrap` the kdf: section must name"), "{}", boot.log());
    eprintln!("inspect with the old kdf: said:\n{}", String::from_utf8_lossy(&inspect.stderr));
    assert!(boot.openbao_pid().is_none(), "no OpenBao started with the old plug-in");

    // The same command again: already done, exit 0, nothing written.
    let again = rewrap_to(&boot, &new, None);
    assert!(again.status.success(), "{}", text(&again));
    assert!(String::from_utf8_lossy(&again.stdout).contains("already under the new KEK"), "{}", text(&again));
    assert_eq!(fs::read(boot.device.keystore_dir().join("keystore.json")).unwrap(), keystore);

    // kdf: switched as told: the device boots, keeps its secrets, and a killed OpenBao opens again.
    boot.set_kdf(Some(kdf(&new)));
    let _run = boot.start();
    assert_eq!(boot.secret(&boot.token_until_ok(Duration::from_secs(30))), greeting);
    assert_eq!(read_value(&boot), VALUE);
    let killed = boot.openbao_pid().unwrap();
    boot.kill_openbao();
    wait_until("a new OpenBao child", Duration::from_secs(60), || boot.openbao_pid().filter(|&p| p != killed));
    assert_eq!(read_value(&boot), VALUE);
    let switched = rewrap_to(&boot, &new, None);
    assert!(String::from_utf8_lossy(&switched.stdout).contains("already names this plug-in"), "{}", text(&switched));
    scan(&boot, &secrets, "after the boot with the new plug-in");
}

/// While `run` serves (it read the keystore at boot), rewraps killed at every crash point, back and
/// forth between the two plug-ins, each finished by a rerun; then the device boots with the last one.
#[test]
fn killed_at_every_rewrap_point_a_rerun_converges_even_while_run_serves() {
    let mut boot = Boot::new();
    let mut run = boot.start();
    let set = boot.secrets(&["set", "demo/api-key"], VALUE.as_bytes());
    assert!(set.status.success(), "{}", text(&set));
    let mut secrets = needles(&boot);
    let plugins = [(boot.device.plugin(), DEVICE_IKM), (new_plugin(&boot), OTHER_IKM)];
    let mut from = 0;
    for &point in REWRAP_POINTS {
        let to = 1 - from;
        let out = rewrap_to(&boot, &plugins[to].0, Some(point));
        assert_eq!(out.status.signal(), Some(9), "{point}: {}", text(&out));
        let expected = if point == "rewrap-after-write" { plugins[to].1 } else { plugins[from].1 };
        assert_eq!(opened_by(&boot), expected, "{point}: the old file or the new one");
        let rerun = rewrap_to(&boot, &plugins[to].0, None);
        assert!(rerun.status.success(), "{point}: {}", text(&rerun));
        let said = String::from_utf8_lossy(&rerun.stdout).to_string();
        let finished = if point == "rewrap-after-write" { "already under the new KEK" } else { "re-encrypted" };
        assert!(said.contains(finished), "{point}: {said}");
        assert_eq!(opened_by(&boot), plugins[to].1, "{point}: converged");
        secrets.extend(needles(&boot));
        scan(&boot, &secrets, point);
        boot.set_kdf(Some(kdf(&plugins[to].0)));
        from = to;
    }
    // The running device kept serving; its OpenBao, killed, is restarted and opens (the seal key is
    // in run's memory, not re-read from the keystore).
    assert_eq!(read_value(&boot), VALUE);
    let killed = boot.openbao_pid().unwrap();
    boot.kill_openbao();
    wait_until("a new OpenBao child", Duration::from_secs(60), || boot.openbao_pid().filter(|&p| p != killed));
    assert_eq!(read_value(&boot), VALUE);
    run.stop(Signal::SIGTERM, Duration::from_secs(30));

    let _run = boot.start();
    assert_eq!(read_value(&boot), VALUE);
    scan(&boot, &secrets, "after the boot with the last plug-in");
}

#[test]
fn neither_plugin_a_failing_or_unstable_one_or_bad_flags_change_nothing() {
    let boot = Boot::new();
    // pki-init makes the keystore (the CA keys are kept in it): no OpenBao needed here.
    let made = boot.command(&["pki-init"], None);
    assert!(made.status.success(), "{}", text(&made));
    let file = boot.device.keystore_dir().join("keystore.json");
    let before = fs::read(&file).unwrap();
    let new = new_plugin(&boot);
    let unchanged = |what: &str| assert_eq!(fs::read(&file).unwrap(), before, "{what}: the keystore was changed");

    for (args, what) in [
        (vec!["--to-plugin", "relative/kdf-plugin"], "a relative plug-in path"),
        (vec!["--to-plugin", new.to_str().unwrap(), "--to-protocol", "edgex", "--to-arg", "x"], "args with edgex"),
        (vec!["--to-plugin", new.to_str().unwrap(), "--to-timeout", "0s"], "a zero timeout"),
        (vec![], "no --to-plugin"),
    ] {
        let mut all = vec!["keystore", "rewrap"];
        all.extend(args);
        let out = boot.command(&all, None);
        assert_eq!(out.status.code(), Some(64), "{what}: {}", text(&out));
        unchanged(what);
    }

    // The config's plug-in answers other hardware now: neither opens.
    boot.device.set_hardware(THIRD_IKM);
    let out = rewrap_to(&boot, &new, None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("opens neither"), "{stderr}");
    assert!(
        stderr.contains(&boot.device.plugin().display().to_string()) && stderr.contains(&new.display().to_string()),
        "both plug-ins are named: {stderr}"
    );
    unchanged("neither opens");

    // The old plug-in fails.
    write_script(&boot.device.plugin(), "echo 'no TPM here' >&2; exit 1");
    let out = rewrap_to(&boot, &new, None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the old one"), "{}", text(&out));
    unchanged("old plug-in fails");

    // A new plug-in whose answer drifts is refused before anything is written.
    boot.device.set_hardware(DEVICE_IKM);
    let drifting = boot.device.path().join("kdf-plugin-drifting");
    write_script(&drifting, "head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo");
    let out = rewrap_to(&boot, &drifting, None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("two different answers"), "{}", text(&out));
    unchanged("a drifting new plug-in");
    assert_eq!(opened_by(&boot), DEVICE_IKM);
}

/// A Shamir-sealed store: the unseal shares move too. `run` keeps serving through a rewrap, but the
/// watchdog's next unseal (it decrypts the keystore with the plug-in `run` was started with) fails,
/// saying why, until `run` is restarted with the new `kdf:`; then boots and re-unseals use the new KEK.
#[test]
fn a_shamir_sealed_device_moves_its_shares_and_unseals_with_the_new_plugin_after_a_restart() {
    let mut boot = Boot::shamir();
    let mut run = boot.start();
    let set = boot.secrets(&["set", "demo/api-key"], VALUE.as_bytes());
    assert!(set.status.success(), "{}", text(&set));
    let new = new_plugin(&boot);
    let out = rewrap_to(&boot, &new, None);
    assert!(out.status.success(), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(opened_by(&boot), OTHER_IKM);
    let (moved, _) = KeystoreDir::new(boot.device.keystore_dir()).open_with_ikm(&ikm(OTHER_IKM)).unwrap();
    assert!(!moved.shares().is_empty());
    assert!(said.contains(&format!(" {} unseal shares", moved.shares().len())), "the shares moved: {said}");
    assert_eq!(read_value(&boot), VALUE, "run keeps serving after the rewrap");

    // OpenBao restarts sealed; run's watchdog, still on the old plug-in, cannot unseal it and says why.
    boot.kill_openbao();
    wait_until("the watchdog's wrong-KEK error", Duration::from_secs(60), || {
        boot.log().contains("after a `keystore rewrap` the kdf: section must name").then_some(())
    });
    run.stop(Signal::SIGTERM, Duration::from_secs(30));

    boot.set_kdf(Some(kdf(&new)));
    let _run = boot.start();
    assert_eq!(read_value(&boot), VALUE);
    let unseals = boot.log().matches("unsealing from the keystore").count();
    boot.kill_openbao();
    wait_until("the watchdog's unseal with the new plug-in", Duration::from_secs(60), || {
        (boot.log().matches("unsealing from the keystore").count() > unseals).then_some(())
    });
    assert_eq!(read_value(&boot), VALUE);
    let mut secrets = needles_shamir(&boot);
    secrets.extend([DEVICE_IKM.to_string(), OTHER_IKM.to_string(), VALUE.to_string()]);
    scan(&boot, &secrets, "shamir, after the boot with the new plug-in");
}

/// The unseal shares (hex and base64) and the KEK, for a Shamir-sealed device.
fn needles_shamir(boot: &Boot) -> Vec<String> {
    use base64::Engine as _;
    let (keystore, kek) = KeystoreDir::new(boot.device.keystore_dir()).open_with_ikm(&ikm(OTHER_IKM)).unwrap();
    assert!(!keystore.shares().is_empty());
    let mut out = vec![hex::encode(kek.expose())];
    for share in keystore.shares() {
        out.push(hex::encode(share.expose()));
        out.push(base64::engine::general_purpose::STANDARD.encode(share.expose()));
    }
    out
}
