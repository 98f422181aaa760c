//! TLS to OpenBao: rustls trusting exactly the CA file given (the device CA from pki-init).

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::Error;

/// A client TLS configuration whose only trust anchors are the certificates in `ca_pem`.
pub fn client_config(ca_pem: &Path) -> Result<Arc<rustls::ClientConfig>, Error> {
    let tls_err = |reason: String| Error::Tls { path: ca_pem.to_path_buf(), reason };
    let mut roots = RootCertStore::empty();
    let mut count = 0;
    for cert in CertificateDer::pem_file_iter(ca_pem).map_err(|e| tls_err(e.to_string()))? {
        let cert = cert.map_err(|e| tls_err(e.to_string()))?;
        roots.add(cert).map_err(|e| tls_err(e.to_string()))?;
        count += 1;
    }
    if count == 0 {
        return Err(tls_err("no certificate in the file".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
