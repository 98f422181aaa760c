//! An OpenBao impostor: an HTTPS server on a loopback address that answers like a sealed (or an
//! uninitialized) OpenBao, with whatever certificate it is given — typically another service's leaf
//! from the same device CA — and records every request it receives. Tests use it to prove that
//! edgeseal sends it nothing: no unseal share, no `sys/init`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// One request the impostor received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The body (for an unseal request: the share).
    pub body: Vec<u8>,
}

/// A running impostor; stopped on drop.
#[derive(Debug)]
pub struct Impostor {
    requests: Arc<Mutex<Vec<Recorded>>>,
    connections: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Impostor {
    /// Listens on `listen` with the certificate chain `cert` and key `key`; answers as an OpenBao that
    /// is `initialized` (then sealed) or not.
    pub fn start(listen: SocketAddr, cert: &Path, key: &Path, initialized: bool) -> Self {
        Self::start_with_threshold(listen, cert, key, initialized, THRESHOLD)
    }

    /// The same, claiming that `threshold` shares are needed to unseal (a lie, to lure more shares).
    pub fn start_with_threshold(
        listen: SocketAddr,
        cert: &Path,
        key: &Path,
        initialized: bool,
        threshold: usize,
    ) -> Self {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .unwrap_or_else(|e| panic!("reading {}: {e}", cert.display()))
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("parsing {}: {e}", cert.display()));
        let key = PrivateKeyDer::from_pem_file(key).unwrap_or_else(|e| panic!("reading {}: {e}", key.display()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = std::net::TcpListener::bind(listen).unwrap_or_else(|e| panic!("impostor bind {listen}: {e}"));
        listener.set_nonblocking(true).unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let (recorded, counted) = (requests.clone(), connections.clone());
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let (tcp, _) = tokio::select! {
                        _ = &mut stopped => return,
                        accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
                    };
                    counted.fetch_add(1, Ordering::SeqCst);
                    let (acceptor, recorded) = (acceptor.clone(), recorded.clone());
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else { return };
                        let service = hyper::service::service_fn(move |request| {
                            let recorded = recorded.clone();
                            async move { Ok::<_, hyper::Error>(answer(request, &recorded, initialized, threshold).await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                            .await;
                    });
                }
            });
        });
        Self { requests, connections, stop: Some(stop), thread: Some(thread) }
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// TCP connections accepted so far (a client that refused the certificate still counts).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Impostor {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Shares the impostor asks for by default, like a store made with `threshold: 3`.
pub const THRESHOLD: usize = 3;

async fn answer(
    request: Request<hyper::body::Incoming>,
    recorded: &Mutex<Vec<Recorded>>,
    initialized: bool,
    threshold: usize,
) -> Response<Full<Bytes>> {
    let method = request.method().to_string();
    let path = request.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
    let body = request.into_body().collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
    // Unseal progress as OpenBao keeps it: shares since the last reset or failed combination. The
    // impostor never unseals: with threshold shares it answers 400 as for shares of another store.
    let progress = {
        let mut recorded = recorded.lock().unwrap();
        recorded.push(Recorded { method, path: path.clone(), body });
        let mut progress = 0;
        for r in recorded.iter().filter(|r| r.path.starts_with("/v1/sys/unseal")) {
            let reset = String::from_utf8_lossy(&r.body).contains("\"reset\"");
            // After a failed combination the next share starts a new attempt (progress 1).
            progress = if reset {
                0
            } else if progress == threshold {
                1
            } else {
                progress + 1
            };
        }
        progress
    };
    let sealed = |progress: usize| {
        serde_json::json!({"type": "shamir", "initialized": initialized, "sealed": true, "t": threshold, "n": 5,
            "progress": progress})
    };
    let json = if path.starts_with("/v1/sys/health") {
        serde_json::json!({"initialized": initialized, "sealed": true, "standby": false, "version": "2.7.2"})
    } else if path.starts_with("/v1/sys/seal-status") {
        let current = if progress == threshold { 0 } else { progress };
        sealed(current)
    } else if path.starts_with("/v1/sys/unseal") && progress == threshold {
        let mut response = Response::new(Full::new(Bytes::from(r#"{"errors":["invalid key"]}"#)));
        *response.status_mut() = hyper::StatusCode::BAD_REQUEST;
        return response;
    } else if path.starts_with("/v1/sys/unseal") {
        sealed(progress)
    } else if path.starts_with("/v1/sys/init") {
        serde_json::json!({"keys_base64": ["AAAA"], "root_token": "s.impostor"})
    } else {
        serde_json::json!({"errors": ["impostor"]})
    };
    Response::new(Full::new(Bytes::from(json.to_string())))
}
