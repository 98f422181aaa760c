//! Helpers shared by pki-init's integration tests: configurations, directory snapshots, and two
//! independent verifiers (rustls-webpki in process, the `openssl` CLI).

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pki_init::{CaKeys, CertConfig, KeyAlgorithm, PkiConfig, San, Usage};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use time::OffsetDateTime;

pub const DAY: i64 = 86_400;

/// A fixed "now" a little in the past, so that certificates are valid for the real clock too
/// (openssl verify and webpki are also given explicit times where it matters).
pub fn t0() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    now - time::Duration::hours(1)
}

pub fn days(t: OffsetDateTime, n: i64) -> OffsetDateTime {
    t + time::Duration::seconds(n * DAY)
}

pub fn sans(list: &[&str]) -> Vec<San> {
    list.iter().map(|s| San::parse(s).unwrap()).collect()
}

/// `openbao` (server + client, SANs localhost and 127.0.0.1) and `core-data` (client only).
pub fn config(dir: &Path, mode: CaKeys) -> PkiConfig {
    let mut c = PkiConfig { dir: dir.to_path_buf(), ca_keys: mode, ..PkiConfig::default() };
    c.certs.insert("openbao".parse().unwrap(), CertConfig::new(sans(&["localhost", "127.0.0.1", "openbao"])));
    let mut data = CertConfig::new(sans(&["core-data"]));
    data.usages = [Usage::Client].into();
    c.certs.insert("core-data".parse().unwrap(), data);
    c
}

pub fn with_algorithm(mut c: PkiConfig, alg: KeyAlgorithm) -> PkiConfig {
    c.key_algorithm = alg;
    c
}

/// Everything observable about a directory tree: per entry its bytes (files), mode, owner, inode
/// and mtime. Equal snapshots mean nothing was written, replaced or touched.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot(BTreeMap<PathBuf, Entry>);

#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    pub bytes: Option<Vec<u8>>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub ino: u64,
    pub mtime: (i64, i64),
}

pub fn snapshot(root: &Path) -> Snapshot {
    let mut map = BTreeMap::new();
    if fs::symlink_metadata(root).is_ok() {
        walk(root, root, &mut map);
    }
    Snapshot(map)
}

fn walk(root: &Path, path: &Path, map: &mut BTreeMap<PathBuf, Entry>) {
    let meta = fs::symlink_metadata(path).unwrap();
    let bytes = meta.is_file().then(|| fs::read(path).unwrap());
    let rel = path.strip_prefix(root).unwrap().to_path_buf();
    map.insert(
        rel,
        Entry {
            bytes,
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
            ino: meta.ino(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
        },
    );
    if meta.is_dir() {
        for entry in fs::read_dir(path).unwrap() {
            walk(root, &entry.unwrap().path(), map);
        }
    }
}

impl Snapshot {
    pub fn bytes(&self, rel: &str) -> &[u8] {
        self.0[Path::new(rel)].bytes.as_deref().unwrap()
    }

    pub fn entry(&self, rel: &str) -> &Entry {
        &self.0[Path::new(rel)]
    }

    pub fn paths(&self) -> Vec<String> {
        self.0.keys().map(|p| p.display().to_string()).collect()
    }

    /// Every regular file, with its bytes.
    pub fn files(&self) -> impl Iterator<Item = (&PathBuf, &[u8])> {
        self.0.iter().filter_map(|(p, e)| e.bytes.as_deref().map(|b| (p, b)))
    }
}

pub fn certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path).unwrap().collect::<Result<Vec<_>, _>>().unwrap()
}

pub fn unix(t: OffsetDateTime) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(t.unix_timestamp()).unwrap()))
}

/// Verifies `dir/<name>/cert.pem` with rustls-webpki against `dir/ca/ca.pem` only, at `at`, for
/// `usage`, and (when given) for the server name or IP `subject`.
pub fn webpki_verify(
    dir: &Path,
    name: &str,
    usage: webpki::KeyUsage,
    subject: Option<&str>,
    at: OffsetDateTime,
) -> Result<(), webpki::Error> {
    let ca = certs(&dir.join("ca/ca.pem")).remove(0);
    let anchor = webpki::anchor_from_trusted_cert(&ca)?.to_owned();
    let chain = certs(&dir.join(name).join("cert.pem"));
    let ee = webpki::EndEntityCert::try_from(&chain[0])?;
    ee.verify_for_usage(webpki::ALL_VERIFICATION_ALGS, &[anchor], &chain[1..], unix(at), usage, None, None)?;
    if let Some(subject) = subject {
        let server_name = ServerName::try_from(subject.to_string()).unwrap();
        ee.verify_is_valid_for_subject_name(&server_name)?;
    }
    Ok(())
}

/// `openssl verify -x509_strict -CAfile ca.pem -untrusted intermediate.pem [extra] cert.pem` at `at`;
/// returns openssl's combined output on failure.
pub fn openssl_verify(dir: &Path, name: &str, extra: &[&str], at: OffsetDateTime) -> Result<(), String> {
    let cert = dir.join(name).join("cert.pem");
    let out = Command::new("openssl")
        .arg("verify")
        .arg("-x509_strict")
        .args(["-attime", &at.unix_timestamp().to_string()])
        .arg("-CAfile")
        .arg(dir.join("ca/ca.pem"))
        .arg("-untrusted")
        .arg(dir.join("ca/intermediate.pem"))
        .args(extra)
        .arg(&cert)
        .output()
        .expect("the openssl CLI is needed for this test: apt-get install openssl");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() && text.trim() == format!("{}: OK", cert.display()) {
        Ok(())
    } else {
        Err(text)
    }
}

/// Fails loudly unless running as root (owner tests chown files).
pub fn require_root() {
    assert_eq!(
        nix::unistd::geteuid().as_raw(),
        0,
        "this test gives files to other users and must run as root (as the project's CI does)"
    );
}
