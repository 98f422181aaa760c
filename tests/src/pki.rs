//! The device PKI for tests, made by pki-init itself (root CA, intermediate, an `openbao` server leaf
//! for 127.0.0.1 and localhost): every OpenBao the harness starts uses edgeseal's own certificates.

use std::path::{Path, PathBuf};

use pki_init::{CertConfig, CertName, PkiConfig, San};

/// A PKI in a temp dir.
#[derive(Debug)]
pub struct TestPki {
    dir: tempfile::TempDir,
    config: PkiConfig,
}

impl TestPki {
    /// Generates the PKI with pki-init (`ca_keys: destroy`).
    pub fn new() -> Self {
        Self::with_leaves(&[])
    }

    /// The same PKI plus more leaves under the same CA, each `(name, sans)` — e.g. a service whose
    /// leaf also covers 127.0.0.1, to pose as OpenBao.
    pub fn with_leaves(leaves: &[(&str, &[&str])]) -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let mut config = PkiConfig { dir: dir.path().join("pki"), ..PkiConfig::default() };
        let sans = vec![San::parse("127.0.0.1").unwrap(), San::parse("localhost").unwrap()];
        config.certs.insert("openbao".parse::<CertName>().unwrap(), CertConfig::new(sans));
        for (name, sans) in leaves {
            let sans = sans.iter().map(|s| San::parse(s).unwrap()).collect();
            config.certs.insert(name.parse::<CertName>().unwrap(), CertConfig::new(sans));
        }
        pki_init::run(&config, None, time::OffsetDateTime::now_utc()).unwrap_or_else(|e| panic!("pki-init: {e}"));
        Self { dir, config }
    }

    /// Runs pki-init again after removing OpenBao's key: it issues a new leaf with a new key (and,
    /// since the CA keys were destroyed, a new CA), as a renewal on a later boot does.
    pub fn reissue_openbao(&self) {
        std::fs::remove_file(self.key("openbao")).unwrap_or_else(|e| panic!("removing openbao/key.pem: {e}"));
        pki_init::run(&self.config, None, time::OffsetDateTime::now_utc()).unwrap_or_else(|e| panic!("pki-init: {e}"));
    }

    /// The PKI directory.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().join("pki")
    }

    /// The root CA certificate.
    pub fn ca(&self) -> PathBuf {
        pki_init::layout::ca_cert(&self.dir())
    }

    /// `<name>/cert.pem` (leaf + intermediate).
    pub fn cert(&self, name: &str) -> PathBuf {
        pki_init::layout::leaf_cert(&self.dir(), name)
    }

    /// `<name>/key.pem`.
    pub fn key(&self, name: &str) -> PathBuf {
        pki_init::layout::leaf_key(&self.dir(), name)
    }

    /// The temp dir holding the PKI.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}
