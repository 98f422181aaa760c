#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

use super::*;

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[test]
fn names_must_be_one_component() {
    for (name, ok) in [
        ("keystore.json", true),
        (".hidden", true),
        ("a b", true),
        ("", false),
        (".", false),
        ("..", false),
        ("a/b", false),
        ("/abs", false),
        ("nul\0byte", false),
    ] {
        assert_eq!(valid_name(name), ok, "{name:?}");
    }
}

#[test]
fn temp_names_are_recognised_by_prefix_and_suffix() {
    for (name, prefix, ok) in [
        (".keystore.json.0123abcd.tmp", ".keystore.json.", true),
        (".keystore.json..tmp", ".keystore.json.", false),
        (".keystore.json.tmp", ".keystore.json.", false),
        ("keystore.json", ".keystore.json.", false),
        (".pki-init-key.pem.ff.tmp", ".pki-init-", true),
        (".pki-init-key.pem.ff.tmpx", ".pki-init-", false),
    ] {
        assert_eq!(is_temp_name(name, prefix), ok, "{name:?} {prefix:?}");
    }
}

#[test]
fn a_new_file_gets_its_exact_mode_whatever_the_umask_and_no_temp_is_left() {
    let tmp = tempfile::tempdir().unwrap();
    for mode in [0o600, 0o644, 0o640, 0o400] {
        let path = tmp.path().join(format!("f{mode:o}"));
        assert_eq!(write(&path, b"hello", &Options::with_mode(mode)).unwrap(), Outcome::Written);
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, mode, "{mode:o}");
        assert_eq!(fs::read(&path).unwrap(), b"hello");
    }
    assert!(names(tmp.path()).iter().all(|n| !n.ends_with(TEMP_SUFFIX)), "{:?}", names(tmp.path()));
}

#[test]
fn overwrite_replaces_a_file_and_a_symlink_without_following_it() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("token");
    write(&path, b"old", &Options::private()).unwrap();
    write(&path, b"new", &Options::private()).unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"new");

    let elsewhere = tmp.path().join("elsewhere");
    fs::write(&elsewhere, b"do not touch").unwrap();
    fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
    write(&path, b"newer", &Options::private()).unwrap();
    assert!(fs::symlink_metadata(&path).unwrap().file_type().is_file(), "the symlink itself was replaced");
    assert_eq!(fs::read(&path).unwrap(), b"newer");
    assert_eq!(fs::read(&elsewhere).unwrap(), b"do not touch");

    fs::remove_file(&path).unwrap();
    nix_mkfifo(&path);
    write(&path, b"after fifo", &Options::private()).unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"after fifo");
}

#[test]
fn a_directory_in_the_way_is_an_error_that_says_so_and_leaves_no_temp() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("token");
    fs::create_dir_all(path.join("x")).unwrap();
    let err = write(&path, b"data", &Options::private()).unwrap_err();
    assert!(
        matches!(
            err.kind(),
            io::ErrorKind::IsADirectory | io::ErrorKind::DirectoryNotEmpty | io::ErrorKind::AlreadyExists
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains(&path.display().to_string()), "{err}");
    assert_eq!(names(tmp.path()), ["token"]);
}

#[test]
fn no_clobber_never_replaces_and_reports_what_is_there() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("keystore.json");
    let options = Options::private().no_clobber();
    assert_eq!(write(&path, b"first", &options).unwrap(), Outcome::Written);
    assert_eq!(write(&path, b"second", &options).unwrap(), Outcome::Exists);
    assert_eq!(fs::read(&path).unwrap(), b"first");
    assert_eq!(names(tmp.path()), ["keystore.json"], "no temp left after either outcome");
    // A dangling symlink occupies the name too: it is neither followed nor replaced.
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(tmp.path().join("missing"), &link).unwrap();
    assert_eq!(write(&link, b"x", &options).unwrap(), Outcome::Exists);
    assert!(!tmp.path().join("missing").exists());
}

#[test]
fn owner_and_custom_temp_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = Dir::open(tmp.path()).unwrap();
    // The temp dir is ours: as root the file is given away, otherwise only our own ids are allowed.
    let mine = fs::metadata(tmp.path()).unwrap();
    let (uid, gid) = if mine.uid() == 0 { (4242, 4343) } else { (mine.uid(), mine.gid()) };
    let options = Options::with_mode(0o640).owner(uid, gid).temp_prefix(".pki-init-cert.pem.");
    write_in(&dir, "cert.pem", b"cert", &options).unwrap();
    dir.sync().unwrap();
    let meta = fs::metadata(tmp.path().join("cert.pem")).unwrap();
    assert_eq!((meta.uid(), meta.gid(), meta.permissions().mode() & 0o777), (uid, gid, 0o640));
}

#[test]
fn a_child_directory_is_opened_only_if_it_is_not_a_symlink() {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir(tmp.path().join("real")).unwrap();
    fs::create_dir(tmp.path().join("target")).unwrap();
    std::os::unix::fs::symlink(tmp.path().join("target"), tmp.path().join("link")).unwrap();
    fs::write(tmp.path().join("file"), b"").unwrap();
    let base = Dir::open(tmp.path()).unwrap();
    let real = base.open_child_nofollow("real").unwrap();
    write_in(&real, "x", b"1", &Options::private()).unwrap();
    assert!(tmp.path().join("real/x").is_file());
    for name in ["link", "file", "missing", "..", "a/b"] {
        assert!(base.open_child_nofollow(name).is_err(), "{name}");
    }
    assert!(names(&tmp.path().join("target")).is_empty(), "nothing written through the symlink");
}

#[test]
fn invalid_targets_are_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = Dir::open(tmp.path()).unwrap();
    for name in ["", "..", "a/b"] {
        let err = write_in(&dir, name, b"x", &Options::private()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{name:?}");
    }
    assert!(write(Path::new("/"), b"x", &Options::private()).is_err());
    assert!(names(tmp.path()).is_empty());
    sync_parent(&tmp.path().join("anything")).unwrap();
}

#[test]
fn a_staged_file_is_private_and_out_of_sight_until_committed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = Dir::open(tmp.path()).unwrap();
    write(&tmp.path().join("key.pem"), b"old", &Options::private()).unwrap();
    let options = Options::private().temp_prefix(".pki-init-key.pem.");
    let staged = stage_in(&dir, "key.pem", b"new", &options).unwrap();
    assert_eq!(staged.target(), tmp.path().join("key.pem"));
    let listed = names(tmp.path());
    assert_eq!(listed.len(), 2, "{listed:?}");
    let temp = tmp.path().join(&listed[0]);
    assert!(is_temp_name(&listed[0], ".pki-init-key.pem."), "{listed:?}");
    assert_eq!(fs::read(&temp).unwrap(), b"new");
    assert_eq!(fs::metadata(&temp).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(fs::read(tmp.path().join("key.pem")).unwrap(), b"old", "nothing in place before the commit");

    sync_filesystems([&dir, &dir]).unwrap();
    assert_eq!(staged.commit().unwrap(), Outcome::Written);
    dir.sync_filesystem().unwrap();
    assert_eq!(fs::read(tmp.path().join("key.pem")).unwrap(), b"new");
    assert_eq!(names(tmp.path()), ["key.pem"]);
}

#[test]
fn a_staged_file_dropped_uncommitted_leaves_nothing_and_no_clobber_applies_at_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = Dir::open(tmp.path()).unwrap();
    drop(stage_in(&dir, "a", b"1", &Options::private()).unwrap());
    assert!(names(tmp.path()).is_empty());

    let options = Options::private().no_clobber();
    let first = stage_in(&dir, "b", b"first", &options).unwrap();
    let second = stage_in(&dir, "b", b"second", &options).unwrap();
    assert_eq!(first.commit().unwrap(), Outcome::Written);
    assert_eq!(second.commit().unwrap(), Outcome::Exists);
    assert_eq!(fs::read(tmp.path().join("b")).unwrap(), b"first");
    assert_eq!(names(tmp.path()), ["b"], "the loser's temp file is removed");
    assert_eq!(stage_in(&dir, "c/d", b"x", &options).unwrap_err().kind(), io::ErrorKind::InvalidInput);
}

fn nix_mkfifo(path: &Path) {
    rustix::fs::mknodat(rustix::fs::CWD, path, rustix::fs::FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
    assert!(fs::symlink_metadata(path).unwrap().file_type().is_fifo());
}
