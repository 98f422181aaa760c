//! Device PKI for tests, laid out like pki-init's (`ca/ca.pem`, `<name>/{cert.pem,key.pem}`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A PKI in a temp dir with an `openbao` server certificate for 127.0.0.1 and localhost.
#[derive(Debug)]
pub struct TestPki {
    dir: tempfile::TempDir,
}

impl TestPki {
    /// Generates the PKI.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let ca_dir = dir.path().join("ca");
        let leaf = dir.path().join("openbao");
        fs::create_dir_all(&ca_dir).and_then(|()| fs::create_dir_all(&leaf)).unwrap_or_else(|e| panic!("{e}"));
        let p = |path: &Path| path.display().to_string();
        let ca_key = dir.path().join("ca.key");
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &p(&ca_key),
            "-out",
            &p(&ca_dir.join("ca.pem")),
            "-days",
            "30",
            "-subj",
            "/CN=edgeseal test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        let csr = dir.path().join("openbao.csr");
        openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &p(&leaf.join("key.pem")),
            "-out",
            &p(&csr),
            "-subj",
            "/CN=openbao",
        ]);
        let ext = dir.path().join("leaf.ext");
        fs::write(&ext, "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n")
            .unwrap_or_else(|e| panic!("{e}"));
        openssl(&[
            "x509",
            "-req",
            "-in",
            &p(&csr),
            "-CA",
            &p(&ca_dir.join("ca.pem")),
            "-CAkey",
            &p(&ca_key),
            "-CAcreateserial",
            "-out",
            &p(&leaf.join("cert.pem")),
            "-days",
            "30",
            "-extfile",
            &p(&ext),
        ]);
        let _ = fs::remove_file(&ca_key);
        Self { dir }
    }

    /// The PKI directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The root CA certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca/ca.pem")
    }

    /// `<name>/cert.pem`.
    pub fn cert(&self, name: &str) -> PathBuf {
        self.dir.path().join(name).join("cert.pem")
    }

    /// `<name>/key.pem`.
    pub fn key(&self, name: &str) -> PathBuf {
        self.dir.path().join(name).join("key.pem")
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl").args(args).output().unwrap_or_else(|e| {
        panic!("openssl not found ({e}): run `make test` (installs openssl) or apt-get install openssl")
    });
    assert!(out.status.success(), "openssl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}
