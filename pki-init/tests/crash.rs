#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Crash safety of a run's writes (SPEC §11, `src/write.rs`): a real process running
//! [`pki_init::run`] is killed with SIGKILL at each crash point between the batched write phases, on a
//! first boot and on a renewal that also adds and removes a leaf. What the killed run left is what the
//! phase promises (old files or new ones, never a certificate without its key and CA), and the next
//! run converges to a PKI both verifiers accept, with no temp file left.
//!
//! The killed process is this test binary again, running the ignored test [`child`]; crash points
//! exist because the crate's dev-dependency on itself turns on its `crash-points` feature.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use pki_init::crash::{self, CRASH_ENV};
use pki_init::{
    Action, CaKeys, CertConfig, MemoryKeyStore, PkiConfig, Report, SecretPem, INTERMEDIATE_CA_ITEM, ROOT_CA_ITEM,
};
use time::OffsetDateTime;

// Without the crash points the children would run to the end: refuse to build instead.
const _: () =
    assert!(crash::ENABLED, "pki-init's tests need its `crash-points` feature (its dev-dependency on itself)");

/// What the child runs: `<scenario> <unix time> <scratch dir>`.
const CHILD_ENV: &str = "PKI_INIT_CRASH_TEST_CHILD";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// An empty `pki.dir`, `ca_keys: destroy`: everything is created.
    FirstBoot,
    /// `ca_keys: keystore`, 61 days after the first boot: both leaves renewed under the same CA,
    /// `new-svc` added, `old-svc` removed.
    Renewal,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Self::FirstBoot => "first-boot",
            Self::Renewal => "renewal",
        }
    }

    fn config(self, scratch: &Path) -> PkiConfig {
        let dir = scratch.join("pki");
        match self {
            Self::FirstBoot => config(&dir, CaKeys::Destroy),
            Self::Renewal => with_leaf(config(&dir, CaKeys::Keystore), "new-svc"),
        }
    }
}

fn with_leaf(mut config: PkiConfig, name: &str) -> PkiConfig {
    config.certs.insert(name.parse().unwrap(), CertConfig::new(sans(&[name])));
    config
}

/// The keystore the child uses: the items the parent saved, as files beside `pki.dir`.
fn store_dir(scratch: &Path) -> PathBuf {
    scratch.join("store")
}

fn save_store(store: &MemoryKeyStore, scratch: &Path) {
    fs::create_dir(store_dir(scratch)).unwrap();
    for item in [ROOT_CA_ITEM, INTERMEDIATE_CA_ITEM] {
        fs::write(store_dir(scratch).join(item), store.get(item).unwrap().expose()).unwrap();
    }
}

fn load_store(scratch: &Path) -> MemoryKeyStore {
    let mut store = MemoryKeyStore::new();
    for item in [ROOT_CA_ITEM, INTERMEDIATE_CA_ITEM] {
        store.insert(item, SecretPem::from_utf8(fs::read(store_dir(scratch).join(item)).unwrap()).unwrap());
    }
    store
}

/// Runs the scenario in a child process told to die at `point`, and checks that it did.
fn run_killed_at(scenario: Scenario, now: OffsetDateTime, scratch: &Path, point: &str) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{} {} {}", scenario.name(), now.unix_timestamp(), scratch.display()))
        .env(CRASH_ENV, point)
        .output()
        .unwrap();
    assert_eq!(
        out.status.signal(),
        Some(9),
        "{scenario:?} {point}: expected kill -9 at the point: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The process the tests kill: runs one scenario's `pki_init::run`, which dies at the crash point.
#[test]
#[ignore = "a child process of the other tests in this file (it does nothing on its own)"]
fn child() {
    let Ok(args) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut args = args.splitn(3, ' ');
    let (scenario, now, scratch) = (args.next().unwrap(), args.next().unwrap(), Path::new(args.next().unwrap()));
    let now = OffsetDateTime::from_unix_timestamp(now.parse().unwrap()).unwrap();
    let scenario = [Scenario::FirstBoot, Scenario::Renewal].into_iter().find(|s| s.name() == scenario).unwrap();
    let mut store = load_store_if_any(scratch);
    let report = pki_init::run(&scenario.config(scratch), Some(&mut store), now).unwrap();
    panic!("the run was not killed at its crash point and ended: {report}");
}

fn load_store_if_any(scratch: &Path) -> MemoryKeyStore {
    if store_dir(scratch).exists() {
        load_store(scratch)
    } else {
        MemoryKeyStore::new()
    }
}

/// Relative paths of the files under `dir` whose names mark them as pki-init's temp files.
fn temps(dir: &Path) -> Vec<String> {
    snapshot(dir).paths().into_iter().filter(|p| p.contains("/.pki-init-") && p.ends_with(".tmp")).collect()
}

/// Every file holding a private key, temp or not, is readable by its owner only.
fn keys_are_private(dir: &Path, context: &str) {
    for (path, bytes) in snapshot(dir).files() {
        if String::from_utf8_lossy(bytes).contains("PRIVATE KEY") {
            let mode = fs::metadata(dir.join(path)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{context}: {}", path.display());
        }
    }
}

fn verify_all(dir: &Path, report: &Report, at: OffsetDateTime) {
    assert!(report.all_valid(), "{report}");
    for c in report.certs.iter().filter(|c| c.kind == pki_init::CertKind::Leaf && c.action != Action::Removed) {
        webpki_verify(dir, &c.name, webpki::KeyUsage::client_auth(), None, at).unwrap();
        openssl_verify(dir, &c.name, &[], at).unwrap();
    }
}

/// The rerun after a crash converges: no temp file, every leaf verifies, and a further run is a no-op.
fn rerun_converges(config: &PkiConfig, store: &mut MemoryKeyStore, now: OffsetDateTime, context: &str) -> Report {
    let report = pki_init::run(config, Some(store), now).unwrap();
    assert!(temps(&config.dir).is_empty(), "{context}: {:?}", temps(&config.dir));
    verify_all(&config.dir, &report, now + time::Duration::minutes(1));
    keys_are_private(&config.dir, context);
    assert!(!pki_init::run(config, Some(store), now).unwrap().changed(), "{context}: converged");
    report
}

#[test]
fn killed_at_any_write_phase_of_a_first_boot_a_rerun_converges() {
    for &point in crash::POINTS {
        let scratch = tempfile::tempdir().unwrap();
        let config = Scenario::FirstBoot.config(scratch.path());
        let dir = &config.dir;
        let now = t0();
        run_killed_at(Scenario::FirstBoot, now, scratch.path(), point);

        let leaves = ["openbao", "core-data"];
        let in_place = |file: &str| dir.join(file).exists();
        keys_are_private(dir, point);
        match point {
            crash::AFTER_SYNC => {
                // Every file written, none in place.
                assert_eq!(temps(dir).len(), 2 + 2 * leaves.len(), "{point}: {:?}", temps(dir));
                assert!(!in_place("ca/ca.pem") && !in_place("ca/intermediate.pem"), "{point}");
                assert!(leaves.iter().all(|l| !in_place(&format!("{l}/key.pem"))), "{point}");
            }
            crash::AFTER_KEYS => {
                // The CA and every key; no certificate.
                assert!(in_place("ca/ca.pem") && in_place("ca/intermediate.pem"), "{point}");
                for leaf in leaves {
                    assert!(in_place(&format!("{leaf}/key.pem")) && !in_place(&format!("{leaf}/cert.pem")), "{point}");
                }
                assert_eq!(temps(dir).len(), leaves.len(), "{point}: the certificates' temp files");
            }
            _ => {
                assert!(temps(dir).is_empty(), "{point}: {:?}", temps(dir));
                assert!(leaves.iter().all(|l| in_place(&format!("{l}/cert.pem"))), "{point}");
            }
        }

        let report = rerun_converges(&config, &mut MemoryKeyStore::new(), now, point);
        let action = |name: &str| report.get(name).unwrap().action;
        match point {
            // No CA file was in place: a new CA; the CA keys died with the process (`ca_keys: destroy`),
            // so after AFTER_KEYS a new CA too.
            crash::AFTER_SYNC | crash::AFTER_KEYS => {
                let ca = if point == crash::AFTER_SYNC { Action::Created } else { Action::Reissued };
                assert_eq!((action("root CA"), action("intermediate CA")), (ca, ca), "{point}: {report}");
                for leaf in leaves {
                    let reason = report.get(leaf).unwrap().reason.as_str();
                    assert_eq!((action(leaf), reason), (Action::Reissued, "cert.pem is missing"), "{report}");
                }
            }
            _ => assert!(report.certs.iter().all(|c| c.action == Action::Unchanged), "{point}: {report}"),
        }
    }
}

#[test]
fn killed_at_any_write_phase_of_a_renewal_a_rerun_converges_under_the_same_ca() {
    for &point in crash::POINTS {
        let scratch = tempfile::tempdir().unwrap();
        let renewal = Scenario::Renewal.config(scratch.path());
        let dir = renewal.dir.clone();
        let t0 = t0();
        let mut store = MemoryKeyStore::new();
        let first = with_leaf(config(&dir, CaKeys::Keystore), "old-svc");
        pki_init::run(&first, Some(&mut store), t0).unwrap();
        save_store(&store, scratch.path());
        let before = snapshot(&dir);
        let now = days(t0, 61);
        run_killed_at(Scenario::Renewal, now, scratch.path(), point);

        let after = snapshot(&dir);
        let same = |file: &str| after.bytes(file) == before.bytes(file);
        keys_are_private(&dir, point);
        assert!(same("ca/ca.pem") && same("ca/intermediate.pem"), "{point}: the CA is kept");
        assert!(same("old-svc/key.pem") && same("old-svc/cert.pem"), "{point}: removed only at the end");
        match point {
            crash::AFTER_SYNC => {
                for file in ["openbao/key.pem", "openbao/cert.pem", "core-data/key.pem", "core-data/cert.pem"] {
                    assert!(same(file), "{point}: {file} is still the old one");
                }
                assert!(!dir.join("new-svc/key.pem").exists(), "{point}");
                assert_eq!(temps(&dir).len(), 6, "{point}: {:?}", temps(&dir));
            }
            crash::AFTER_KEYS => {
                // New keys beside the old certificates: the one state a rerun must reissue from.
                for leaf in ["openbao", "core-data"] {
                    assert!(!same(&format!("{leaf}/key.pem")) && same(&format!("{leaf}/cert.pem")), "{point}");
                }
                assert!(dir.join("new-svc/key.pem").exists() && !dir.join("new-svc/cert.pem").exists());
            }
            _ => {
                for file in ["openbao/key.pem", "openbao/cert.pem", "core-data/cert.pem", "new-svc/cert.pem"] {
                    assert!(dir.join(file).exists() && (file.starts_with("new-svc") || !same(file)), "{point}: {file}");
                }
            }
        }

        let report = rerun_converges(&renewal, &mut store, now, point);
        assert_eq!(store.saves(), 1, "{point}: no new CA");
        assert_eq!(report.get("root CA").unwrap().action, Action::Unchanged, "{point}: {report}");
        assert_eq!(report.get("old-svc").unwrap().action, Action::Removed, "{point}: {report}");
        assert!(!dir.join("old-svc").exists(), "{point}");
        let bao = report.get("openbao").unwrap();
        match point {
            crash::AFTER_SYNC => assert_eq!(bao.action, Action::Renewed, "{point}: {report}"),
            crash::AFTER_KEYS => {
                assert_eq!((bao.action, bao.reason.as_str()), (Action::Reissued, "key.pem does not match cert.pem"))
            }
            _ => assert_eq!(bao.action, Action::Unchanged, "{point}: {report}"),
        }
    }
}
