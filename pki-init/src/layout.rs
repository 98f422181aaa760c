//! Where pki-init puts each file under `pki.dir`: the one statement of the PKI layout, used by pki-init
//! itself, by `security-bootstrap` (which CA OpenBao is verified against, which leaf it serves and is
//! pinned to) and by the test harness.
//!
//! ```text
//! pki.dir/ca/ca.pem             root CA certificate
//! pki.dir/ca/intermediate.pem   intermediate CA certificate
//! pki.dir/<name>/cert.pem       leaf certificate followed by the intermediate
//! pki.dir/<name>/key.pem        leaf private key
//! ```

use std::path::{Path, PathBuf};

/// The CA directory inside `pki.dir` (also why no certificate may be called `ca`).
pub const CA_DIR: &str = "ca";
/// The root certificate inside [`CA_DIR`].
pub const ROOT_FILE: &str = "ca.pem";
/// The intermediate certificate inside [`CA_DIR`].
pub const INTERMEDIATE_FILE: &str = "intermediate.pem";
/// A leaf's certificate chain inside `<name>/`.
pub const CERT_FILE: &str = "cert.pem";
/// A leaf's private key inside `<name>/`.
pub const KEY_FILE: &str = "key.pem";
/// The leaf OpenBao's TLS listener serves (`pki.certs.openbao`); a store with it is pinned to it.
pub const OPENBAO: &str = "openbao";

/// `dir/ca/ca.pem`: the root CA certificate, what clients trust.
pub fn ca_cert(dir: &Path) -> PathBuf {
    dir.join(CA_DIR).join(ROOT_FILE)
}

/// `dir/ca/intermediate.pem`.
pub fn intermediate_cert(dir: &Path) -> PathBuf {
    dir.join(CA_DIR).join(INTERMEDIATE_FILE)
}

/// `dir/<name>/`: a leaf's directory.
pub fn leaf_dir(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// `dir/<name>/cert.pem`: a leaf's certificate chain.
pub fn leaf_cert(dir: &Path, name: &str) -> PathBuf {
    leaf_dir(dir, name).join(CERT_FILE)
}

/// `dir/<name>/key.pem`: a leaf's private key.
pub fn leaf_key(dir: &Path, name: &str) -> PathBuf {
    leaf_dir(dir, name).join(KEY_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let dir = Path::new("/run/edgeseal/pki");
        let cases = [
            (ca_cert(dir), "/run/edgeseal/pki/ca/ca.pem"),
            (intermediate_cert(dir), "/run/edgeseal/pki/ca/intermediate.pem"),
            (leaf_cert(dir, OPENBAO), "/run/edgeseal/pki/openbao/cert.pem"),
            (leaf_key(dir, "core-data"), "/run/edgeseal/pki/core-data/key.pem"),
        ];
        for (got, want) in cases {
            assert_eq!(got, Path::new(want));
        }
    }
}
