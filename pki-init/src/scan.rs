//! Reading the PKI directory: everything is checked before anything is written.
//!
//! The directory belongs to pki-init. Any entry it would not have written — a stray file, a symlink, a
//! directory with an unusable name, a PEM file that does not parse — is an error that names the entry,
//! so that nothing is overwritten or issued on top of something not understood. Certificates that
//! parse but no longer fit the configuration are not errors: [`crate::plan`] reissues them.

use std::collections::BTreeMap;
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rcgen::{PublicKeyData, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384};

use crate::config::{CertName, KeyAlgorithm, PkiConfig, RESERVED_NAME};
use crate::error::PkiError;
use crate::pem::{self, CERTIFICATE, PRIVATE_KEY};
use crate::secret::PrivateKey;
use crate::x509::{self, CertFacts};

pub(crate) use crate::layout::{CA_DIR, CERT_FILE, INTERMEDIATE_FILE, KEY_FILE, ROOT_FILE};
/// Temp files pki-init writes before renaming them into place: `.pki-init-<file>.<random>.tmp`.
pub(crate) const TEMP_PREFIX: &str = ".pki-init-";
pub(crate) const TEMP_SUFFIX: &str = ".tmp";
/// No file pki-init writes comes close to this.
const MAX_FILE_LEN: u64 = 64 * 1024;

/// Owner and permission bits of a file or directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Meta {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) mode: u32,
}

impl From<&Metadata> for Meta {
    fn from(m: &Metadata) -> Self {
        Self { uid: m.uid(), gid: m.gid(), mode: m.mode() & 0o7777 }
    }
}

/// A CA certificate found on disk.
#[derive(Debug, Clone)]
pub(crate) struct CaCert {
    pub(crate) facts: CertFacts,
    /// Root: self-signed. Intermediate: issued and signed by the root on disk.
    pub(crate) signed_by_parent: bool,
}

/// `<name>/cert.pem`.
#[derive(Debug, Clone)]
pub(crate) struct LeafCert {
    pub(crate) facts: CertFacts,
    /// The certificates after the leaf in cert.pem, DER.
    pub(crate) chain: Vec<Vec<u8>>,
    /// The rest of the file is exactly the intermediate on disk.
    pub(crate) chain_ok: bool,
    /// Issued and signed by the intermediate on disk.
    pub(crate) signed_by_intermediate: bool,
    pub(crate) meta: Meta,
}

/// `<name>/key.pem`.
#[derive(Debug, Clone)]
pub(crate) struct LeafKey {
    pub(crate) algorithm: KeyAlgorithm,
    /// Its public key is the one in cert.pem.
    pub(crate) matches_cert: bool,
    pub(crate) meta: Meta,
}

/// `<name>/` of a configured certificate.
#[derive(Debug, Clone)]
pub(crate) struct LeafDir {
    pub(crate) meta: Meta,
    pub(crate) cert: Option<LeafCert>,
    pub(crate) key: Option<LeafKey>,
}

/// A leaf directory whose name is no longer configured: removed by a run.
#[derive(Debug, Clone)]
pub(crate) struct StaleDir {
    pub(crate) name: String,
    pub(crate) path: PathBuf,
    pub(crate) files: Vec<PathBuf>,
}

/// What is on disk, checked and parsed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Disk {
    pub(crate) dir_exists: bool,
    pub(crate) ca_dir_exists: bool,
    pub(crate) root: Option<CaCert>,
    pub(crate) intermediate: Option<CaCert>,
    pub(crate) leaves: BTreeMap<CertName, LeafDir>,
    pub(crate) stale: Vec<StaleDir>,
    /// Temp files left by a crash; they may hold a private key and are removed by a run.
    pub(crate) temps: Vec<PathBuf>,
}

/// Reads and checks `config.dir`. `euid` is the uid the directories must belong to.
pub(crate) fn scan(config: &PkiConfig, euid: u32) -> Result<Disk, PkiError> {
    let dir = &config.dir;
    let mut disk = Disk::default();
    let Some(meta) = entry_meta(dir, false)? else {
        return Ok(disk);
    };
    if !meta.is_dir() {
        return Err(foreign(dir, &meta, dir));
    }
    check_safe_dir(dir, &meta, euid)?;
    disk.dir_exists = true;

    let mut leaf_dirs = Vec::new();
    for (name, path, meta) in list(dir)? {
        let as_name = name.as_deref().and_then(|n| n.parse::<CertName>().ok());
        match (name.as_deref(), as_name) {
            (Some(RESERVED_NAME), _) if meta.is_dir() => {
                check_safe_dir(&path, &meta, euid)?;
                disk.ca_dir_exists = true;
            }
            (_, Some(cert_name)) if meta.is_dir() => leaf_dirs.push((cert_name, path, Meta::from(&meta))),
            _ => return Err(foreign(&path, &meta, dir)),
        }
    }

    if disk.ca_dir_exists {
        let ca_dir = dir.join(CA_DIR);
        for (name, path, meta) in list(&ca_dir)? {
            match name.as_deref() {
                Some(ROOT_FILE | INTERMEDIATE_FILE) if meta.is_file() => {}
                Some(n) if is_temp(n) && meta.is_file() => disk.temps.push(path),
                _ => return Err(foreign(&path, &meta, dir)),
            }
        }
        if let Some((root, _)) = read_certs(&ca_dir.join(ROOT_FILE), 1)? {
            disk.root = Some(CaCert { facts: one(root), signed_by_parent: false });
        }
        if let Some((intermediate, _)) = read_certs(&ca_dir.join(INTERMEDIATE_FILE), 1)? {
            disk.intermediate = Some(CaCert { facts: one(intermediate), signed_by_parent: false });
        }
    }

    for (name, path, meta) in leaf_dirs {
        let mut files = Vec::new();
        for (file, file_path, file_meta) in list(&path)? {
            match file.as_deref() {
                Some(CERT_FILE | KEY_FILE) if file_meta.is_file() => files.push(file_path),
                Some(n) if is_temp(n) && file_meta.is_file() => disk.temps.push(file_path),
                _ => return Err(foreign(&file_path, &file_meta, dir)),
            }
        }
        if config.certs.contains_key(&name) {
            let leaf = read_leaf(&path, meta)?;
            disk.leaves.insert(name, leaf);
        } else {
            disk.stale.push(StaleDir { name: name.to_string(), path, files });
        }
    }
    link(&mut disk);
    Ok(disk)
}

/// Works out who signed what: the root itself, the intermediate by the root, each leaf by the
/// intermediate (and whether cert.pem carries exactly that intermediate). Run again after a CA
/// certificate is restored from the keystore.
pub(crate) fn link(disk: &mut Disk) {
    if let Some(root) = &mut disk.root {
        root.signed_by_parent = x509::signed_by(&root.facts.der, &root.facts.der);
    }
    if let Some(int) = &mut disk.intermediate {
        int.signed_by_parent = disk.root.as_ref().is_some_and(|r| x509::signed_by(&int.facts.der, &r.facts.der));
    }
    let intermediate = disk.intermediate.as_ref();
    for cert in disk.leaves.values_mut().filter_map(|l| l.cert.as_mut()) {
        cert.chain_ok = intermediate.is_some_and(|i| cert.chain.len() == 1 && cert.chain[0] == i.facts.der);
        cert.signed_by_intermediate = intermediate.is_some_and(|i| x509::signed_by(&cert.facts.der, &i.facts.der));
    }
}

fn one(mut certs: Vec<CertFacts>) -> CertFacts {
    certs.swap_remove(0)
}

fn read_leaf(dir: &Path, meta: Meta) -> Result<LeafDir, PkiError> {
    let cert_path = dir.join(CERT_FILE);
    let cert = match read_certs(&cert_path, 2)? {
        None => None,
        Some((mut certs, file_meta)) => {
            let facts = certs.remove(0);
            let chain = certs.into_iter().map(|c| c.der).collect();
            let meta = Meta::from(&file_meta);
            Some(LeafCert { facts, chain, chain_ok: false, signed_by_intermediate: false, meta })
        }
    };
    let key_path = dir.join(KEY_FILE);
    let key = match read_file(&key_path)? {
        None => None,
        Some((bytes, file_meta)) => {
            let (algorithm, spki) = parse_key(&bytes).map_err(|reason| corrupt(&key_path, reason))?;
            let matches_cert = cert.as_ref().is_some_and(|c| c.facts.spki == spki);
            Some(LeafKey { algorithm, matches_cert, meta: Meta::from(&file_meta) })
        }
    };
    Ok(LeafDir { meta, cert, key })
}

/// Parses a PKCS#8 PEM private key (P-256 or P-384) into its algorithm and public key.
pub(crate) fn parse_key(text: &[u8]) -> Result<(KeyAlgorithm, Vec<u8>), String> {
    let key = load_key(text)?;
    let algorithm =
        if key.pair().algorithm() == &PKCS_ECDSA_P384_SHA384 { KeyAlgorithm::P384 } else { KeyAlgorithm::P256 };
    Ok((algorithm, key.pair().subject_public_key_info()))
}

/// Loads a PKCS#8 PEM private key (P-256 or P-384).
pub(crate) fn load_key(text: &[u8]) -> Result<PrivateKey, String> {
    let blocks = pem::decode(text).map_err(|e| e.to_string())?;
    let [block] = blocks.as_slice() else {
        return Err(format!("expected one private key, found {} PEM blocks", blocks.len()));
    };
    if block.label != PRIVATE_KEY {
        return Err(format!("expected a PKCS#8 PRIVATE KEY, found {}", block.label));
    }
    key_from_der(&block.der)
}

/// Loads a PKCS#8 DER private key (P-256 or P-384).
pub(crate) fn key_from_der(der: &[u8]) -> Result<PrivateKey, String> {
    let der = rustls_pki_types::PrivatePkcs8KeyDer::from(der);
    for alg in [&PKCS_ECDSA_P256_SHA256, &PKCS_ECDSA_P384_SHA384] {
        if let Ok(pair) = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, alg) {
            return Ok(PrivateKey::new(pair));
        }
    }
    Err("not an ECDSA P-256 or P-384 PKCS#8 private key".to_string())
}

/// Reads a PEM file of `want` certificates; `None` if it does not exist.
fn read_certs(path: &Path, want: usize) -> Result<Option<(Vec<CertFacts>, Metadata)>, PkiError> {
    let Some((bytes, meta)) = read_file(path)? else {
        return Ok(None);
    };
    let blocks = pem::decode(&bytes).map_err(|e| corrupt(path, e.to_string()))?;
    if blocks.len() != want {
        let what = if want == 1 { "one certificate" } else { "the leaf and the intermediate certificate" };
        return Err(corrupt(path, format!("expected {what}, found {} PEM blocks", blocks.len())));
    }
    let mut certs = Vec::with_capacity(want);
    for (i, block) in blocks.iter().enumerate() {
        if block.label != CERTIFICATE {
            return Err(corrupt(path, format!("PEM block {} is a {}, not a CERTIFICATE", i + 1, block.label)));
        }
        let facts =
            x509::parse(&block.der).map_err(|reason| corrupt(path, format!("certificate {}: {reason}", i + 1)))?;
        certs.push(facts);
    }
    Ok(Some((certs, meta)))
}

/// Reads a regular file without following symlinks, up to [`MAX_FILE_LEN`]; `None` if it is missing.
/// `O_NONBLOCK` keeps a FIFO swapped in by a leaf's owner from hanging the boot.
fn read_file(path: &Path) -> Result<Option<(Vec<u8>, Metadata)>, PkiError> {
    let flags = nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK;
    let file = match File::options().read(true).custom_flags(flags).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("opening", path, e)),
    };
    let meta = file.metadata().map_err(|e| io_err("inspecting", path, e))?;
    if !meta.is_file() {
        return Err(corrupt(path, "not a regular file".to_string()));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_LEN + 1).read_to_end(&mut bytes).map_err(|e| io_err("reading", path, e))?;
    if bytes.len() as u64 > MAX_FILE_LEN {
        return Err(corrupt(path, format!("larger than {MAX_FILE_LEN} bytes")));
    }
    Ok(Some((bytes, meta)))
}

/// A directory's entries, sorted, with their own (not followed) metadata.
fn list(dir: &Path) -> Result<Vec<(Option<String>, PathBuf, Metadata)>, PkiError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_err("listing", dir, e))? {
        let entry = entry.map_err(|e| io_err("listing", dir, e))?;
        let path = entry.path();
        let meta = fs::symlink_metadata(&path).map_err(|e| io_err("inspecting", &path, e))?;
        out.push((entry.file_name().into_string().ok(), path, meta));
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

fn entry_meta(path: &Path, no_follow: bool) -> Result<Option<Metadata>, PkiError> {
    let meta = if no_follow { fs::symlink_metadata(path) } else { fs::metadata(path) };
    match meta {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("inspecting", path, e)),
    }
}

fn is_temp(name: &str) -> bool {
    name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX)
}

/// `pki.dir` and `ca/` must belong to pki-init and be writable by nobody else.
fn check_safe_dir(path: &Path, meta: &Metadata, euid: u32) -> Result<(), PkiError> {
    let m = Meta::from(meta);
    if m.uid != euid || m.mode & 0o022 != 0 {
        return Err(PkiError::UnsafeDir { path: path.to_path_buf(), uid: m.uid, mode: m.mode, euid });
    }
    Ok(())
}

fn foreign(path: &Path, meta: &Metadata, dir: &Path) -> PkiError {
    let ft = meta.file_type();
    let kind = if ft.is_symlink() {
        "symlink"
    } else if ft.is_dir() {
        "directory"
    } else if ft.is_file() {
        "file"
    } else {
        "special file"
    };
    PkiError::Foreign { path: path.to_path_buf(), kind, dir: dir.to_path_buf() }
}

fn corrupt(path: &Path, reason: String) -> PkiError {
    PkiError::Corrupt { path: path.to_path_buf(), reason }
}

pub(crate) fn io_err(op: &'static str, path: &Path, source: io::Error) -> PkiError {
    PkiError::Io { op, path: path.to_path_buf(), source }
}
