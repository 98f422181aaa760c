//! The admin socket (SPEC §12): operators set, read, version, rotate and remove the services' secrets
//! through a second Unix socket, apart from the service socket.
//!
//! - The socket is mode 0600 (0660 with `admin.group`, owned by that group). Every connection's peer
//!   uid (SO_PEERCRED) is checked against `admin.uids` at accept time, and the peer must share the
//!   server's mount namespace (a container's root is uid 0 too); any other caller is answered 403 and
//!   closed without a byte of its request being interpreted.
//! - The server acts with an admin credential made each boot by setup with that run's privileged
//!   token (policy `edgeseal-admin`: the services' KV paths only). It lives only in this process's
//!   memory, is renewed while the server runs and revoked at shutdown.
//! - Every admin action is one audit line (target `edgeseal::audit`, event `admin`): uid, pid,
//!   action, service, name, resulting version — never a value.
//!
//! [`routes`] holds the HTTP API and its (pure, table-tested) input rules; [`audit`] joins edgeseal's
//! audit log with OpenBao's for `security-bootstrap audit`; [`observe`] the metrics and status reports;
//! [`transfer`] the node identity, secrets bundles and backups (with the keystore through [`device`]);
//! [`cluster`] the raft cluster this member belongs to; [`fleet`] the node's fleet sync.

pub mod audit;
pub mod cluster;
pub mod device;
pub mod fleet;
pub mod observe;
pub mod routes;
pub mod transfer;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::StatusCode;
use hyper_util::rt::{TokioIo, TokioTimer};
use openbao_client::{Client, Token};
use serde::{Deserialize, Serialize};
use tokio::net::UnixListener;
use tokio::sync::Semaphore;

use crate::audit_log::AuditLog;
use crate::shed::{shed, LINGER_SLOTS};

/// Default path of the admin socket.
pub const DEFAULT_SOCKET: &str = "/run/edgeseal/admin.sock";

/// `admin:` — the admin socket.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// The socket's path.
    pub socket: PathBuf,
    /// Peer uids allowed to administer (SO_PEERCRED).
    pub uids: Vec<u32>,
    /// A group given access to the socket file (mode 0660); without it the socket is 0600.
    pub group: Option<u32>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self { socket: PathBuf::from(DEFAULT_SOCKET), uids: vec![0], group: None }
    }
}

impl AdminConfig {
    /// The rules beyond the types: an absolute socket path, at least one uid.
    pub fn validate(&self) -> Result<(), String> {
        if !self.socket.is_absolute() {
            return Err(format!("socket {} must be an absolute path", self.socket.display()));
        }
        if self.uids.is_empty() {
            return Err("uids must name at least one uid (0 is root)".into());
        }
        Ok(())
    }
}

/// What the admin routes know about a service: the secrets setup generates for it.
#[derive(Debug, Clone, Default)]
pub struct ServiceSecrets {
    /// Names of its generated secrets (`rotate` makes a new random value for these).
    pub generated: Vec<String>,
}

/// Everything the admin server shares between connections.
#[derive(Debug)]
pub struct AdminState {
    /// The socket and who may use it.
    pub config: AdminConfig,
    /// OpenBao.
    pub client: Client,
    /// The admin credential (memory only).
    pub token: Token,
    /// KV v2 mount of the services' secrets.
    pub kv_mount: String,
    /// Path prefix below the mount (`<prefix>/<service>/<name>`).
    pub prefix: String,
    /// The configured services.
    pub services: BTreeMap<String, ServiceSecrets>,
    /// edgeseal's audit log: admin actions are written to it, `audit` reads it.
    pub audit_log: Option<Arc<AuditLog>>,
    /// OpenBao's file audit log (accessors in clear), read by `audit`.
    pub openbao_audit_log: Option<PathBuf>,
    /// Metrics and status: the token server's counters, selectors, certificates.
    pub observed: observe::Observed,
    /// The keystore, for the node identity, bundles and backups ([`transfer`]).
    pub device: Option<transfer::DeviceHandle>,
    /// The node's fleet (`fleet:` in edgeseal.yaml), when configured.
    pub fleet: Option<Arc<dyn fleet::Fleet>>,
}

/// How often the admin credential (period 24 h) is renewed.
const RENEW_EVERY: Duration = Duration::from_secs(3600);
/// Slowloris guard.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest an admin connection may live: long enough for a backup of a large store or an import of
/// a large bundle (callers are admins; slow senders are bounded by the header timeout).
const MAX_CONNECTION_LIFETIME: Duration = Duration::from_secs(600);

/// The admin socket's server.
#[derive(Debug)]
pub struct AdminServer {
    state: Arc<AdminState>,
}

impl AdminServer {
    /// Assembles the server.
    pub fn new(state: AdminState) -> Self {
        Self { state: Arc::new(state) }
    }

    /// The shared state (for `metrics.listen`, served beside the socket).
    pub fn state(&self) -> Arc<AdminState> {
        self.state.clone()
    }

    /// Binds the socket (0600, or 0660 owned by `admin.group`).
    pub fn bind(&self) -> io::Result<UnixListener> {
        let config = &self.state.config;
        let mode = if config.group.is_some() { 0o660 } else { 0o600 };
        let listener = crate::socket::bind_with_mode(&config.socket, mode)?;
        if let Some(gid) = config.group {
            std::os::unix::fs::chown(&config.socket, None, Some(gid))?;
        }
        Ok(listener)
    }

    /// Serves until `shutdown`, renewing the credential meanwhile; then revokes it and removes the
    /// socket.
    pub async fn run(self, listener: UnixListener, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        let state = self.state;
        let renewer = state.clone();
        let renewal = tokio::spawn(async move {
            let mut tick = tokio::time::interval(RENEW_EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = renewer.client.renew_self(&renewer.token).await {
                    tracing::warn!(error = %e, "renewing the admin credential failed");
                }
            }
        });
        tracing::info!(socket = %state.config.socket.display(), uids = ?state.config.uids, "admin socket listening");
        let served = serve(listener, state.clone(), shutdown).await;
        renewal.abort();
        match state.client.revoke_self(&state.token).await {
            Ok(()) => tracing::info!("admin credential revoked"),
            Err(e) => tracing::warn!(error = %e, "revoking the admin credential failed; it expires within its period"),
        }
        let socket = &state.config.socket;
        if std::fs::symlink_metadata(socket).is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type())) {
            let _ = std::fs::remove_file(socket);
        }
        served
    }
}

/// Whether the caller shares this server's mount namespace. A container's uid 0 is uid 0 to
/// SO_PEERCRED too; an admin runs on the host (or `docker exec`s into the bootstrapper's container).
fn same_mount_namespace(pid: Option<i32>) -> bool {
    let Some(pid) = pid.filter(|p| *p > 0) else { return false };
    match (std::fs::read_link(format!("/proc/{pid}/ns/mnt")), std::fs::read_link("/proc/self/ns/mnt")) {
        (Ok(theirs), Ok(ours)) => theirs == ours,
        _ => false,
    }
}

async fn serve(listener: UnixListener, state: Arc<AdminState>, shutdown: impl Future<Output = ()>) -> io::Result<()> {
    tokio::pin!(shutdown);
    let lingering = Arc::new(Semaphore::new(LINGER_SLOTS));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            stream = crate::socket::accept(&listener, "admin socket") => stream,
        };
        let caller = match stream.peer_cred() {
            Ok(cred) => routes::Admin { uid: cred.uid(), pid: cred.pid() },
            Err(e) => {
                shed(stream, StatusCode::FORBIDDEN, &format!("cannot read the caller's credentials: {e}"), &lingering);
                continue;
            }
        };
        let refusal = if !state.config.uids.contains(&caller.uid) {
            Some("not an admin: this uid is not in admin.uids")
        } else if !same_mount_namespace(caller.pid) {
            Some("not an admin: the caller runs in another mount namespace (a container's root is not the host's)")
        } else {
            None
        };
        if let Some(reason) = refusal {
            tracing::warn!(target: "edgeseal::audit", event = "admin-refused", uid = caller.uid, pid = caller.pid, reason);
            // Answered 403 whatever it asks: the request is parsed by HTTP, never looked at.
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(
                        move |_request| async move { Ok::<_, Infallible>(routes::refused(reason)) },
                    );
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .keep_alive(false)
                    .serve_connection(TokioIo::new(stream), service);
                let _ = tokio::time::timeout(HEADER_TIMEOUT, connection).await;
            });
            continue;
        }
        let state = state.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(routes::handle(&state, caller, request).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(MAX_CONNECTION_LIFETIME, watcher.watch(connection)).await;
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
    Ok(())
}
