//! The file-token fallback against a real OpenBao when services misbehave in the directories they own
//! (SPEC §8, §11: one service cannot stop the boot or the token service of the others):
//! - whatever a service puts at `secrets-token.json` (a directory, a symlink, a fifo) is replaced by a
//!   regular 0600 file it owns, and setup succeeds for everyone;
//! - a service directory edgeseal must not write through (a symlink to elsewhere) is reported for that
//!   service alone, nothing is written outside, and the others get their tokens;
//! - a token file naming somebody else's token does not get that token revoked.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use edgeseal_tests::device::{service, Device};
use edgeseal_tests::openbao::OpenBao;
use edgeseal_tests::pki::TestPki;
use edgeseal_tests::token_server::issuer_token;
use openbao_client::{Client, Token};
use secretstore_setup::setup::Setup;
use serde_json::{Map, Value};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// (service, uid): every one has a file token, gid 2001.
const SERVICES: [(&str, u32); 4] = [("alpha", 2002), ("beta", 2003), ("gamma", 2004), ("delta", 2005)];

struct Fixture {
    _pki: TestPki,
    _bao: OpenBao,
    device: Device,
    setup: Setup,
    client: Client,
    rt: tokio::runtime::Runtime,
}

impl Fixture {
    /// A device whose first boot has run: every service has its file token.
    fn booted() -> Self {
        let pki = TestPki::new();
        let bao = OpenBao::start(&pki);
        let device = Device::new();
        let services = SERVICES.iter().map(|&(name, uid)| service(name, &[], Some((uid, 2001)))).collect();
        let setup = device.setup(&bao, services);
        let client = setup.client().unwrap();
        let rt = rt();
        rt.block_on(setup.run()).unwrap();
        Self { _pki: pki, _bao: bao, device, setup, client, rt }
    }

    fn service_dir(&self, name: &str) -> PathBuf {
        self.device.file_tokens_dir().join(name)
    }

    fn token_path(&self, name: &str) -> PathBuf {
        self.service_dir(name).join("secrets-token.json")
    }

    fn file_json(&self, name: &str) -> Value {
        serde_json::from_slice(&fs::read(self.token_path(name)).unwrap()).unwrap()
    }

    fn file_token(&self, name: &str) -> Token {
        Token::new(self.file_json(name)["auth"]["client_token"].as_str().unwrap())
    }

    fn works(&self, token: &Token) -> bool {
        self.rt.block_on(self.client.lookup_self(token)).is_ok()
    }

    /// The service's token file is a fresh regular file, 0600, owned by it, with a working token.
    fn assert_served(&self, name: &str, uid: u32, previous: &Token) {
        let path = self.token_path(name);
        let meta = fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_file(), "{name}: a regular file at {}", path.display());
        assert_eq!((meta.permissions().mode() & 0o777, meta.uid(), meta.gid()), (0o600, uid, 2001), "{name}");
        let token = self.file_token(name);
        assert_ne!(token.expose(), previous.expose(), "{name}: a token of this boot");
        assert!(self.works(&token), "{name}: its file token works");
    }
}

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(2001)).unwrap();
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo").arg("-m").arg("0600").arg(path).status().unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
}

#[test]
fn a_directory_symlink_or_fifo_at_the_token_file_is_replaced_and_every_service_is_served() {
    let f = Fixture::booted();
    let before: Vec<Token> = SERVICES.iter().map(|(name, _)| f.file_token(name)).collect();
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    fs::write(&victim, b"not a token file").unwrap();

    // Each service acts as the owner of its directory (the files it makes are its own).
    let alpha = f.token_path("alpha");
    fs::remove_file(&alpha).unwrap();
    fs::create_dir_all(alpha.join("x")).unwrap();
    chown(&alpha.join("x"), 2002);
    chown(&alpha, 2002);
    let beta = f.token_path("beta");
    fs::remove_file(&beta).unwrap();
    std::os::unix::fs::symlink(&victim, &beta).unwrap();
    chown(&beta, 2003);
    let gamma = f.token_path("gamma");
    fs::remove_file(&gamma).unwrap();
    mkfifo(&gamma);
    chown(&gamma, 2004);
    assert!(fs::symlink_metadata(&gamma).unwrap().file_type().is_fifo());

    let report = f.rt.block_on(f.setup.run()).expect("one service's directory never stops the boot");
    assert!(report.problems.is_empty(), "everything in the way could be replaced: {:?}", report.problems);
    for (&(name, uid), previous) in SERVICES.iter().zip(&before) {
        f.assert_served(name, uid, previous);
    }
    assert_eq!(fs::read(&victim).unwrap(), b"not a token file", "the symlink was replaced, not followed");
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 1, "nothing written next to the symlink's target");
    // The displaced directory stays in alpha's own directory, for alpha to clean up.
    let leftovers: Vec<String> = fs::read_dir(f.service_dir("alpha"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "secrets-token.json")
        .collect();
    assert!(leftovers.iter().all(|n| n.starts_with(".secrets-token.json.displaced-")), "{leftovers:?}");

    // And the next boot is clean again.
    let again = f.rt.block_on(f.setup.run()).unwrap();
    assert!(again.problems.is_empty(), "{:?}", again.problems);
}

#[test]
fn a_service_directory_that_cannot_be_written_through_is_reported_and_the_others_are_served() {
    let f = Fixture::booted();
    let before: Vec<Token> = SERVICES.iter().map(|(name, _)| f.file_token(name)).collect();
    let outside = tempfile::tempdir().unwrap();
    fs::set_permissions(outside.path(), fs::Permissions::from_mode(0o755)).unwrap();
    // alpha's directory is replaced by a symlink to a directory elsewhere.
    fs::remove_dir_all(f.service_dir("alpha")).unwrap();
    std::os::unix::fs::symlink(outside.path(), f.service_dir("alpha")).unwrap();

    let report = f.rt.block_on(f.setup.run()).expect("one service's directory never stops the boot");
    let problems = report.problems.join("\n");
    assert!(problems.contains("file token of alpha not written"), "{problems}");
    assert!(problems.contains("is not a directory") && problems.contains("remove it"), "tells what to do: {problems}");
    assert!(!problems.contains("beta") && !problems.contains("gamma"), "{problems}");
    for (&(name, uid), previous) in SERVICES.iter().zip(&before).skip(1) {
        f.assert_served(name, uid, previous);
    }
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0, "nothing written through the symlink");
    let meta = fs::metadata(outside.path()).unwrap();
    assert_eq!((meta.uid(), meta.permissions().mode() & 0o777), (0, 0o755), "the target's owner and mode untouched");

    // The `setup` command succeeds too and tells the operator.
    let config = f.device.write_config(&f.setup);
    let out = std::process::Command::new(edgeseal_tests::workspace_binary("security-bootstrap"))
        .args(["setup", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("problem      file token of alpha not written"), "{text}");
    assert!(text.contains("refreshed    file token of beta refreshed"), "{text}");
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0, "nothing written through the symlink");
}

#[test]
fn a_token_file_naming_another_token_does_not_get_that_token_revoked() {
    let f = Fixture::booted();
    let issuer = issuer_token(&f.device.keystore_dir());
    // beta's token as the token server would hand it to beta's process.
    let meta = Map::from_iter([
        ("service".to_string(), Value::String("beta".into())),
        ("attestation".to_string(), Value::String("unix".into())),
    ]);
    let beta_live = f.rt.block_on(f.client.create_token(&issuer, "edgeseal-svc-beta", &meta, Some(3600))).unwrap();
    let issuer_accessor = f.rt.block_on(f.client.lookup_self(&issuer)).unwrap().accessor;

    // alpha names beta's token in its own file, gamma names the token-issuing token.
    for (name, accessor) in [("alpha", beta_live.accessor.as_str()), ("gamma", issuer_accessor.as_str())] {
        let mut json = f.file_json(name);
        json["auth"]["accessor"] = Value::String(accessor.to_string());
        fs::write(f.token_path(name), serde_json::to_vec(&json).unwrap()).unwrap();
    }
    let delta_before = f.file_token("delta");

    let report = f.rt.block_on(f.setup.run()).unwrap();
    assert!(f.works(&beta_live.client_token), "beta's token survives alpha's edited file");
    assert!(f.works(&issuer), "the token-issuing token survives gamma's edited file");
    let problems = report.problems.join("\n");
    assert!(problems.contains("superseded file token of alpha not revoked"), "{problems}");
    assert!(problems.contains("superseded file token of gamma not revoked"), "{problems}");
    // An honest file still has its superseded token revoked.
    assert!(!f.works(&delta_before), "delta's previous file token is revoked");
    assert!(f.works(&f.file_token("delta")));
}
