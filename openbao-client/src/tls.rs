//! TLS to OpenBao: the certificate must chain to the device CA **and** carry the pinned public key.
//!
//! A chain to the device CA alone is not an identity: every service leaf pki-init issues chains to it,
//! and a leaf whose SANs cover the store's address (127.0.0.1 is common) could answer in OpenBao's
//! place while it is down — and be handed unseal shares, or `sys/init` and its answer. So the client
//! also compares the server's end-entity SubjectPublicKeyInfo with the one in OpenBao's own
//! certificate file ([`Pin::ServerCert`]). The pin is read when the client is built: pki-init makes
//! a new key whenever it reissues the leaf, and it runs before every setup, so each boot's clients
//! pin the key OpenBao serves that boot.
//!
//! [`Pin::CaOnly`] is the explicit opt-out for an external store with a CA of its own, which no other
//! service's certificate chains to.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

/// Which server certificates, among those chaining to the CA, the client accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pin {
    /// Only one with the same public key as the first certificate in this PEM file (OpenBao's leaf).
    ServerCert(PathBuf),
    /// Any certificate the CA issued for the address. Safe only when that CA issues nothing else.
    CaOnly,
}

/// The word that selects [`Pin::CaOnly`] in `secret_store.server_cert`.
pub const CA_ONLY: &str = "ca-only";

/// `secret_store.server_cert`: an absolute path, or `ca-only`.
impl<'de> Deserialize<'de> for Pin {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text == CA_ONLY {
            return Ok(Pin::CaOnly);
        }
        let path = PathBuf::from(&text);
        if !path.is_absolute() {
            return Err(serde::de::Error::custom(format!(
                "{text:?} is neither an absolute path to OpenBao's certificate nor `{CA_ONLY}`"
            )));
        }
        Ok(Pin::ServerCert(path))
    }
}

/// The inverse of [`Pin`]'s `Deserialize`: a path, or `ca-only`.
impl Serialize for Pin {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Pin::ServerCert(path) => path.serialize(s),
            Pin::CaOnly => s.serialize_str(CA_ONLY),
        }
    }
}

/// The error a pinned verifier returns for a certificate with another key; found again in the chain
/// of a failed request by [`is_identity_mismatch`].
#[derive(Debug)]
struct IdentityMismatch;

impl std::fmt::Display for IdentityMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the server's certificate chains to the CA but its key is not OpenBao's pinned key")
    }
}

impl std::error::Error for IdentityMismatch {}

/// Whether a transport error was caused by a server certificate that failed the pin.
pub(crate) fn is_identity_mismatch(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut pending: Vec<&(dyn std::error::Error + 'static)> = vec![error];
    // Bounded: a chain is short; never loop on a pathological one.
    for _ in 0..32 {
        let Some(e) = pending.pop() else { return false };
        if e.downcast_ref::<IdentityMismatch>().is_some() {
            return true;
        }
        if let Some(rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(other)))) =
            e.downcast_ref::<rustls::Error>()
        {
            if other.downcast_ref::<IdentityMismatch>().is_some() {
                return true;
            }
        }
        // io::Error hides the error it wraps from `source()`: look inside it explicitly.
        if let Some(inner) = e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            pending.push(inner);
        }
        if let Some(source) = e.source() {
            pending.push(source);
        }
    }
    false
}

/// Chain verification by webpki, then the public-key pin.
#[derive(Debug)]
struct PinnedVerifier {
    chain: Arc<WebPkiServerVerifier>,
    spki: Vec<u8>,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        let cert = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        if cert.subject_public_key_info().as_ref() != self.spki.as_slice() {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
                IdentityMismatch,
            )))));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}

/// The SubjectPublicKeyInfo (DER) of the first certificate in `pem` (the leaf of a `cert.pem`).
pub fn pinned_key(pem: &Path) -> Result<Vec<u8>, Error> {
    let pin_err = |reason: String| Error::Pin { path: pem.to_path_buf(), reason };
    let first = CertificateDer::pem_file_iter(pem)
        .map_err(|e| pin_err(e.to_string()))?
        .next()
        .ok_or_else(|| pin_err("no certificate in the file".into()))?
        .map_err(|e| pin_err(e.to_string()))?;
    let cert = webpki::EndEntityCert::try_from(&first).map_err(|e| pin_err(format!("not a certificate: {e}")))?;
    Ok(cert.subject_public_key_info().as_ref().to_vec())
}

/// The TLS client certificate edgeseal presents to OpenBao's `cert` auth method: a certificate chain
/// and its private key, both PEM. The key is wiped from memory when this is dropped; `Debug` shows
/// neither.
#[derive(Clone)]
pub struct ClientIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: crate::token::ClientKey,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity").field("certificates", &self.chain.len()).finish_non_exhaustive()
    }
}

impl ClientIdentity {
    /// From a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, SEC1 or PKCS#1).
    pub fn from_pem(cert_pem: &str, key_pem: &[u8]) -> Result<Self, Error> {
        let bad = |reason: String| Error::ClientIdentity { reason };
        let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("the certificate is not PEM: {e}")))?;
        if chain.is_empty() {
            return Err(bad("no certificate in the PEM".into()));
        }
        let key =
            PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| bad(format!("the private key is not PEM: {e}")))?;
        let key = crate::token::ClientKey::new(key.secret_der().to_vec());
        let identity = Self { chain, key };
        // Refuse a key rustls cannot sign with now, not at the first handshake.
        identity.signing_key()?;
        Ok(identity)
    }

    fn private_key(&self) -> PrivateKeyDer<'static> {
        match PrivateKeyDer::try_from(self.key.expose().to_vec()) {
            Ok(key) => key,
            // `from_pem` accepted it, and the bytes never change.
            Err(_) => PrivateKeyDer::Pkcs8(self.key.expose().to_vec().into()),
        }
    }

    fn signing_key(&self) -> Result<(), Error> {
        rustls::crypto::ring::default_provider()
            .key_provider
            .load_private_key(self.private_key())
            .map(|_| ())
            .map_err(|e| Error::ClientIdentity { reason: format!("the private key cannot sign TLS handshakes: {e}") })
    }
}

/// A client TLS configuration whose only trust anchors are the certificates in `ca_pem`, accepting
/// only the server `pin` names, presenting `identity` when the server asks for a client certificate.
pub fn client_config(
    ca_pem: &Path,
    pin: &Pin,
    identity: Option<&ClientIdentity>,
) -> Result<Arc<rustls::ClientConfig>, Error> {
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
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(e.to_string()))?;
    let builder = match pin {
        Pin::CaOnly => builder.with_root_certificates(roots),
        Pin::ServerCert(pem) => {
            let spki = pinned_key(pem)?;
            let chain = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| tls_err(e.to_string()))?;
            builder.dangerous().with_custom_certificate_verifier(Arc::new(PinnedVerifier { chain, spki }))
        }
    };
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(identity) => builder
            .with_client_auth_cert(identity.chain.clone(), identity.private_key())
            .map_err(|e| Error::ClientIdentity { reason: e.to_string() })?,
    };
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_cert_is_a_path_or_ca_only() {
        let cases = [
            ("\"ca-only\"", Ok(Pin::CaOnly)),
            (
                "\"/run/edgeseal/pki/openbao/cert.pem\"",
                Ok(Pin::ServerCert("/run/edgeseal/pki/openbao/cert.pem".into())),
            ),
            ("\"pki/openbao/cert.pem\"", Err("neither an absolute path")),
            ("\"CA-ONLY\"", Err("neither an absolute path")),
        ];
        for (json, want) in cases {
            let got = serde_json::from_str::<Pin>(json).map_err(|e| e.to_string());
            match (got, want) {
                (Ok(pin), Ok(expected)) => assert_eq!(pin, expected, "{json}"),
                (Err(message), Err(expected)) => assert!(message.contains(expected), "{json}: {message}"),
                (got, want) => panic!("{json}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn identity_mismatch_is_found_behind_an_io_error() {
        let rustls_err =
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(IdentityMismatch))));
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, rustls_err);
        assert!(is_identity_mismatch(&io));
        // hyper-rustls wraps tokio-rustls's io::Error in another one.
        let nested = std::io::Error::other(io);
        assert!(is_identity_mismatch(&nested));
        let other = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        assert!(!is_identity_mismatch(&other));
        assert!(!is_identity_mismatch(&std::io::Error::from(std::io::ErrorKind::ConnectionRefused)));
    }
}
