//! The keystore on disk: modes, no-clobber creation, updates that keep the shares, kill -9 at any
//! instant leaving the old file or the new one — never a mix, never a keystore that cannot unseal —
//! and two processes updating it at once both landing (the directory's lock).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kdf_plugins::Kek;
use secretstore_setup::keystore::store::Created;
use secretstore_setup::{Keystore, KeystoreDir, KeystoreError, SecretBytes, UnsealShare};

fn shares(seed: u8) -> Vec<UnsealShare> {
    (0..5u8).map(|i| UnsealShare::new(vec![seed.wrapping_add(i); 33])).collect()
}

fn kek() -> Kek {
    Kek::from_bytes([42; 32])
}

fn create(dir: &Path, seed: u8) -> Keystore {
    let keystore = Keystore::new(shares(seed), 3).unwrap();
    KeystoreDir::new(dir).create(&keystore.seal(&kek()).unwrap()).unwrap();
    keystore
}

/// A fresh keystore directory path (not yet created: edgeseal creates it 0700).
fn ks_dir() -> (tempfile::TempDir, std::path::PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("keystore");
    (root, dir)
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    getrandom::getrandom(&mut b).unwrap();
    u64::from_le_bytes(b)
}

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), fs::read(e.path()).unwrap()))
        .collect();
    files.sort();
    files
}

#[test]
fn a_new_keystore_is_0600_in_a_0700_directory() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("var/lib/edgeseal");
    create(&dir, 1);
    assert_eq!(fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    let file = fs::metadata(dir.join("keystore.json")).unwrap();
    assert_eq!(file.permissions().mode() & 0o777, 0o600);
    assert_eq!(file.uid(), nix::unistd::geteuid().as_raw());
    assert_eq!(snapshot(&dir).len(), 1, "no temp file left behind");
}

#[test]
fn an_existing_keystore_is_never_overwritten_by_a_different_one() {
    let (_root, dir) = ks_dir();
    let original = create(&dir, 1);
    let before = snapshot(&dir);

    let other = Keystore::new(shares(100), 3).unwrap().seal(&kek()).unwrap();
    let err = KeystoreDir::new(&dir).create(&other).unwrap_err();
    assert!(matches!(err, KeystoreError::AlreadyExists { .. }), "{err:?}");
    assert!(err.to_string().contains("refusing to overwrite"), "{err}");
    assert_eq!(snapshot(&dir), before, "nothing changed on disk");

    // The very same bytes again (a rerun after a crash just after the write) is fine.
    let same = KeystoreDir::new(&dir).read().unwrap().unwrap();
    assert_eq!(KeystoreDir::new(&dir).create(&same).unwrap(), Created::AlreadyPresent);
    assert_eq!(KeystoreDir::new(&dir).open(&kek()).unwrap(), original);
}

#[test]
fn update_changes_items_and_keeps_the_shares() {
    let (_root, dir) = ks_dir();
    let original = create(&dir, 1);
    let store = KeystoreDir::new(&dir);
    store.update(&kek(), |k| k.set_item("pki-ca-key", SecretBytes::new(b"ca key".to_vec()))).unwrap();
    let reopened = store.open(&kek()).unwrap();
    assert_eq!(reopened.shares(), original.shares());
    assert_eq!(reopened.item("pki-ca-key").unwrap().expose(), b"ca key");
    assert_eq!(fs::metadata(store.path()).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn errors_name_the_file_and_leave_it_untouched() {
    let (_root, dir) = ks_dir();
    create(&dir, 1);
    let store = KeystoreDir::new(&dir);
    let before = snapshot(&dir);
    let path = store.path().display().to_string();

    let wrong = Kek::from_bytes([43; 32]);
    let err = store.open(&wrong).unwrap_err();
    assert!(matches!(err, KeystoreError::WrongKek { .. }), "{err:?}");
    assert!(err.to_string().contains(&path) && err.to_string().contains("hardware or the KDF plug-in changed"));
    let err = store.update(&wrong, |_| Ok(())).unwrap_err();
    assert!(matches!(err, KeystoreError::WrongKek { .. }), "{err:?}");
    assert_eq!(snapshot(&dir), before);

    let mut bytes = fs::read(store.path()).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    fs::write(store.path(), &bytes).unwrap();
    let before = snapshot(&dir);
    let err = store.open(&kek()).unwrap_err();
    assert!(matches!(err, KeystoreError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains(&path) && err.to_string().contains("corrupted or was tampered with"));
    assert!(store.update(&kek(), |_| Ok(())).is_err());
    assert_eq!(snapshot(&dir), before);

    let missing = KeystoreDir::new(dir.join("none"));
    assert!(matches!(missing.open(&kek()), Err(KeystoreError::Missing(_))));
    assert!(missing.read().unwrap().is_none());
}

#[test]
fn a_directory_others_can_read_is_refused_for_writing() {
    let root = tempfile::tempdir().unwrap();
    fs::set_permissions(root.path(), fs::Permissions::from_mode(0o755)).unwrap(); // made by the operator
    let file = Keystore::new(shares(1), 3).unwrap().seal(&kek()).unwrap();
    let err = KeystoreDir::new(root.path()).create(&file).unwrap_err();
    assert!(matches!(err, KeystoreError::UnsafeDir { mode: 0o755, .. }), "{err:?}");
    assert!(snapshot(root.path()).is_empty());
}

#[test]
fn open_with_ikm_opens_with_the_files_own_salt_and_says_what_to_do_otherwise() {
    let (_root, dir) = ks_dir();
    let ikm = kdf_plugins::Ikm::new(vec![7; 32]);
    let keystore = Keystore::new(shares(3), 3).unwrap();
    let store = KeystoreDir::new(&dir);
    store.create(&keystore.seal(&keystore.derive_kek(&ikm)).unwrap()).unwrap();

    let (opened, kek) = store.open_with_ikm(&ikm).unwrap();
    assert_eq!(opened, keystore);
    store.update(&kek, |k| k.set_item("pki-ca-key", SecretBytes::new(b"k".to_vec()))).unwrap();

    let err = store.open_with_ikm(&kdf_plugins::Ikm::new(vec![8; 32])).unwrap_err();
    assert!(matches!(err, KeystoreError::WrongKek { .. }), "{err:?}");
    assert!(err.to_string().contains("hardware or the KDF plug-in changed"), "{err}");
    let err = KeystoreDir::new(dir.join("none")).open_with_ikm(&ikm).unwrap_err();
    assert!(matches!(err, KeystoreError::Missing(_)), "{err:?}");
    assert!(err.to_string().contains("run `security-bootstrap setup` first"), "{err}");
}

const CHILD_ENV: &str = "EDGESEAL_TEST_KEYSTORE_WRITER";

/// The child side of the crash test: rewrites the keystore as fast as it can until killed.
fn writer_child(dir: &Path, mode: &str) -> ! {
    let store = KeystoreDir::new(dir);
    if mode == "create" {
        let keystore = Keystore::new(shares(7), 3).unwrap();
        store.create(&keystore.seal(&kek()).unwrap()).unwrap();
        std::process::exit(0);
    }
    let mut n: u64 = 0;
    loop {
        n += 1;
        let size = (random_u64() % 4096) as usize + 1;
        store
            .update(&kek(), |k| {
                k.set_item("counter", SecretBytes::new(n.to_le_bytes().to_vec()))?;
                k.set_item("padding", SecretBytes::new(vec![0x5a; size]))
            })
            .unwrap();
    }
}

fn spawn_writer(dir: &Path, mode: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "a_writer_killed_at_any_instant_leaves_a_whole_keystore", "--nocapture"])
        .env(CHILD_ENV, format!("{mode}:{}", dir.display()))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn a_writer_killed_at_any_instant_leaves_a_whole_keystore() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        let (mode, dir) = spec.split_once(':').unwrap();
        writer_child(Path::new(dir), mode);
    }

    // Updates: each kill lands somewhere in a loop of read–encrypt–write–fsync–rename.
    let (_root, dir) = ks_dir();
    let original = create(&dir, 1);
    let store = KeystoreDir::new(&dir);
    let mut counters = std::collections::BTreeSet::new();
    for _ in 0..25 {
        let mut child = spawn_writer(&dir, "update");
        std::thread::sleep(Duration::from_millis(20 + random_u64() % 60));
        child.kill().unwrap();
        child.wait().unwrap();
        let keystore = store.open(&kek()).expect("after kill -9 the keystore must open");
        assert_eq!(keystore.shares(), original.shares(), "the unseal shares survive every crash");
        if let Some(counter) = keystore.item("counter") {
            counters.insert(counter.expose().to_vec());
        }
    }
    assert!(counters.len() > 5, "the writer must have been killed mid-loop many times, saw {}", counters.len());

    // First creation: afterwards there is either no keystore or a complete one.
    let (mut none, mut whole) = (0, 0);
    for _ in 0..25 {
        let (_root, dir) = ks_dir();
        let mut child = spawn_writer(&dir, "create");
        std::thread::sleep(Duration::from_micros(random_u64() % 20_000));
        let _ = child.kill();
        child.wait().unwrap();
        match KeystoreDir::new(&dir).read() {
            Ok(None) => none += 1,
            Ok(Some(_)) => {
                assert_eq!(KeystoreDir::new(&dir).open(&kek()).unwrap().shares(), shares(7).as_slice());
                whole += 1;
            }
            Err(e) => panic!("a crash during creation left a broken keystore: {e}"),
        }
    }
    assert_eq!(none + whole, 25);
}

#[test]
fn a_writer_waits_while_another_holds_the_directory_lock() {
    let (_root, dir) = ks_dir();
    create(&dir, 1);
    let held = fs::File::open(&dir).unwrap();
    rustix::fs::flock(&held, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let before = snapshot(&dir);
    let writer = std::thread::spawn({
        let dir = dir.clone();
        move || KeystoreDir::new(&dir).update(&kek(), |k| k.set_item("late", SecretBytes::new(b"1".to_vec())))
    });
    // However long we look, nothing is written while the lock is held.
    for _ in 0..20 {
        assert!(!writer.is_finished(), "the writer cannot finish while another holds the lock");
        assert_eq!(snapshot(&dir), before);
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(held);
    writer.join().unwrap().expect("the writer proceeds once the lock is released");
    assert!(KeystoreDir::new(&dir).open(&kek()).unwrap().item("late").is_some());
}

const RACE_ENV: &str = "EDGESEAL_TEST_KEYSTORE_RACER";
/// Increments each racer makes.
const RACE_ROUNDS: u64 = 60;

fn counter(keystore: &Keystore, item: &str) -> u64 {
    keystore.item(item).map_or(0, |v| u64::from_le_bytes(v.expose().try_into().unwrap()))
}

/// The child side of the race: increments the shared counter (and its own) RACE_ROUNDS times. Any
/// error — the keystore "changed on disk", a vanished temp file — fails the child.
fn racer_child(dir: &Path, name: &str) -> ! {
    let store = KeystoreDir::new(dir);
    for _ in 0..RACE_ROUNDS {
        store
            .update(&kek(), |k| {
                let (shared, own) = (counter(k, "shared") + 1, counter(k, name) + 1);
                k.set_item("shared", SecretBytes::new(shared.to_le_bytes().to_vec()))?;
                k.set_item(name, SecretBytes::new(own.to_le_bytes().to_vec()))
            })
            .unwrap_or_else(|e| panic!("racer {name}: {e}"));
    }
    std::process::exit(0);
}

#[test]
fn two_processes_updating_at_once_both_land() {
    if let Ok(spec) = std::env::var(RACE_ENV) {
        let (name, dir) = spec.split_once(':').unwrap();
        racer_child(Path::new(dir), name);
    }
    let (_root, dir) = ks_dir();
    let original = create(&dir, 1);
    let racers: Vec<_> = ["racer-a", "racer-b"]
        .iter()
        .map(|name| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "two_processes_updating_at_once_both_land", "--nocapture"])
                .env(RACE_ENV, format!("{name}:{}", dir.display()))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for racer in racers {
        let out = racer.wait_with_output().unwrap();
        assert!(out.status.success(), "a concurrent writer failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let keystore = KeystoreDir::new(&dir).open(&kek()).unwrap();
    assert_eq!(keystore.shares(), original.shares());
    assert_eq!((counter(&keystore, "racer-a"), counter(&keystore, "racer-b")), (RACE_ROUNDS, RACE_ROUNDS));
    assert_eq!(counter(&keystore, "shared"), 2 * RACE_ROUNDS, "no update was lost");
    assert_eq!(snapshot(&dir).len(), 1, "no temp file left behind");
}

/// `keystore rewrap`'s replace: the same shares and items under the new KEK with a new salt; the old KEK
/// no longer opens it; a keystore that changed since it was read, or that the old KEK does not open,
/// is left as it is.
#[test]
fn rewrap_moves_everything_to_the_new_kek_and_refuses_a_changed_or_foreign_keystore() {
    let (_root, dir) = ks_dir();
    create(&dir, 1);
    let store = KeystoreDir::new(&dir);
    store.update(&kek(), |k| k.set_item("pki-ca-key", SecretBytes::new(b"ca key".to_vec()))).unwrap();
    let keystore = store.open(&kek()).unwrap();
    let moved = keystore.resalted().unwrap();
    assert_ne!(moved.salt(), keystore.salt(), "a fresh salt");
    let new_kek = Kek::from_bytes([43; 32]);

    // Changed since it was read (another writer): refused, nothing written.
    let stale = {
        let mut stale = keystore.clone();
        stale.set_item("other", SecretBytes::new(b"x".to_vec())).unwrap();
        stale.resalted().unwrap()
    };
    let before = fs::read(store.path()).unwrap();
    assert!(matches!(store.rewrap(&kek(), &stale, &new_kek), Err(KeystoreError::Concurrent { .. })));
    // A KEK that does not open it: refused.
    assert!(matches!(store.rewrap(&new_kek, &moved, &new_kek), Err(KeystoreError::WrongKek { .. })));
    assert_eq!(fs::read(store.path()).unwrap(), before, "nothing written");

    store.rewrap(&kek(), &moved, &new_kek).unwrap();
    let opened = store.open(&new_kek).unwrap();
    assert!(opened.same_contents(&keystore));
    assert_eq!(opened.salt(), moved.salt());
    assert_eq!(opened.item("pki-ca-key").unwrap().expose(), b"ca key");
    let err = store.open(&kek()).unwrap_err();
    assert!(err.to_string().contains("keystore rewrap"), "{err}");
    assert_eq!(fs::metadata(store.path()).unwrap().mode() & 0o777, 0o600);
}
