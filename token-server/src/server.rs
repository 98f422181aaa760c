//! The token server assembled: [`State::assemble`] builds everything the server shares (attestor with
//! its Docker client, issuer, limits, health cache) from the config, the services, an OpenBao client
//! and the issuing token; [`Server`] binds the socket and runs [`serve`] together with the
//! issuing-token renewal and the Docker event follower. The binary and the test harness both use it.
//!
//! The accept loop never waits: each connection is pinned (SO_PEERCRED, SO_PEERPIDFD and procfs
//! only, see [`Attestor::pin`]), counted against the caps of [`crate::connections`] and either
//! served or shed at once. Whatever touches the caller's executable file (which may live on a file
//! system that never answers) runs later, in the connection's own task, off the async workers and
//! with a deadline (see [`crate::attest`]).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::StatusCode;
use hyper_util::rt::{TokioIo, TokioTimer};
use openbao_client::{Client, Token};
use thiserror::Error;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

use crate::attest::docker::DockerFacts;
use crate::attest::{AttestError, Attestor, Peer};
use crate::audit_log::AuditLog;
use crate::config::{ServerConfig, ServiceRule};
use crate::connections::{ConnectionLimits, Slot};
use crate::descriptors::{connection_budget, nofile_soft_limit};
use crate::health::HealthCache;
use crate::issue::Issuer;
use crate::limits::{PeerKey, RateLimiter};
use crate::routes::{handle, Caller};
use crate::shed::{shed, LINGER_SLOTS};

/// Longest a connection may live; clients are short-lived.
const MAX_CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// How long graceful shutdown waits for in-flight requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How often the issuing token (period 24 h) is renewed.
pub const RENEW_EVERY: Duration = Duration::from_secs(3600);

/// Counters, for tests and metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Tokens issued.
    pub issued: AtomicU64,
    /// Requests denied (403).
    pub denied: AtomicU64,
    /// Requests answered 503.
    pub unavailable: AtomicU64,
    /// Requests rejected by the rate limiter.
    pub limited: AtomicU64,
    /// Connections turned away at accept time (over a connection cap).
    pub shed: AtomicU64,
    /// Health probes sent to OpenBao (at most one per `health_cache` interval).
    pub health_probes: AtomicU64,
}

/// Everything the server shares between connections.
#[derive(Debug)]
pub struct State {
    /// Listener settings and limits.
    pub config: ServerConfig,
    /// The services and their selectors.
    pub rules: Vec<ServiceRule>,
    /// Who is calling.
    pub attestor: Attestor,
    /// Token issuance.
    pub issuer: Issuer,
    /// Per-peer rate limit.
    pub limiter: RateLimiter,
    /// Connection caps (total, per peer, per uid).
    pub connections: Arc<ConnectionLimits>,
    /// `/v1/health` answers.
    pub health: HealthCache,
    /// What the supervision knows is wrong with the store (added to 503 answers).
    pub store_problem: crate::health::StoreProblem,
    /// Counters.
    pub metrics: Metrics,
    /// edgeseal's audit log (one line per token issued), when configured.
    pub audit: Option<Arc<AuditLog>>,
    /// The Prometheus registry (`GET /metrics` on the admin socket renders it).
    pub telemetry: Arc<crate::metrics::Telemetry>,
    /// Where the services' secrets live, for `GET /v1/secrets…`; `None` answers those with 404.
    pub secrets: Option<crate::secrets::SecretsLayout>,
}

impl State {
    /// A state from its parts; limits come from the config, and the global connection cap is lowered
    /// to what the current open-file limit allows (see [`crate::descriptors::connection_budget`]).
    pub fn new(config: ServerConfig, rules: Vec<ServiceRule>, attestor: Attestor, issuer: Issuer) -> Self {
        let limiter = RateLimiter::new(config.rate_per_second, config.rate_burst);
        let total = connection_budget(config.max_connections, nofile_soft_limit());
        let connections =
            Arc::new(ConnectionLimits::new(total, config.max_connections_per_peer, config.max_connections_per_uid));
        let health = HealthCache::new(config.health_cache);
        Self {
            config,
            rules,
            attestor,
            issuer,
            limiter,
            connections,
            health,
            store_problem: crate::health::StoreProblem::default(),
            metrics: Metrics::default(),
            telemetry: Arc::default(),
            audit: None,
            secrets: None,
        }
    }

    /// Assembles the server: connects to Docker when a service has a docker selector (if the daemon
    /// cannot be reached, containers are denied and a warning is logged), hashes executables only
    /// when a selector wants it, and issues with `issuing_token` through `client`.
    pub async fn assemble(config: ServerConfig, rules: Vec<ServiceRule>, client: Client, issuing_token: Token) -> Self {
        let docker = match &config.docker_socket {
            Some(socket) if rules.iter().any(|r| r.selectors.docker.is_some()) => {
                match DockerFacts::connect(socket).await {
                    Ok(docker) => Some(docker),
                    Err(e) => {
                        tracing::warn!(error = %e, "Docker attestation unavailable: containers will be denied");
                        None
                    }
                }
            }
            _ => None,
        };
        let mut attestor = Attestor::new(docker, false, config.exe_hash_limit);
        attestor.hash_only_for(&rules);
        attestor.require_pidfd = !config.allow_without_pidfd;
        Self::new(config, rules, attestor, Issuer::new(client, issuing_token))
    }
}

/// The token socket could not be bound.
#[derive(Debug, Error)]
#[error("cannot bind the token socket {path}: {source}")]
pub struct BindError {
    /// `token_server.socket`.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: io::Error,
}

/// The assembled token server.
#[derive(Debug)]
pub struct Server {
    state: Arc<State>,
}

impl From<State> for Server {
    fn from(state: State) -> Self {
        Self { state: Arc::new(state) }
    }
}

impl Server {
    /// Assembles the server (see [`State::assemble`]).
    pub async fn new(config: ServerConfig, rules: Vec<ServiceRule>, client: Client, issuing_token: Token) -> Self {
        State::assemble(config, rules, client, issuing_token).await.into()
    }

    /// The shared state (metrics, rules, limits).
    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// Binds `token_server.socket` (see [`crate::socket::bind`]). Once this returns, clients can
    /// connect: their connections wait in the kernel's queue until [`Server::run`] accepts them, so
    /// readiness may be announced right after.
    pub fn bind(&self) -> Result<UnixListener, BindError> {
        let path = &self.state.config.socket;
        crate::socket::bind(path).map_err(|source| BindError { path: path.clone(), source })
    }

    /// Serves `listener` until `shutdown`, renewing the issuing token every [`RENEW_EVERY`] and
    /// following Docker events (to drop cached containers) meanwhile; removes the socket at the end.
    pub async fn run(self, listener: UnixListener, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        let state = self.state;
        let mut tasks = tokio::task::JoinSet::new();
        if let Some(docker) = state.attestor.docker().cloned() {
            tasks.spawn(docker.follow_events());
        }
        let renewer = state.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(RENEW_EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = renewer.issuer.renew().await {
                    tracing::warn!(error = %e, "renewing the token-issuing token failed");
                }
            }
        });
        let socket = state.config.socket.clone();
        tracing::info!(
            socket = %socket.display(),
            services = state.rules.len(),
            max_connections = state.connections.total(),
            max_connections_per_peer = state.config.max_connections_per_peer,
            max_connections_per_uid = state.config.max_connections_per_uid,
            "token server listening"
        );
        let served = serve(listener, state, shutdown).await;
        tasks.shutdown().await;
        if std::fs::symlink_metadata(&socket).is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type())) {
            let _ = std::fs::remove_file(&socket);
        }
        served
    }
}

/// Serves `listener` until `shutdown` completes, then finishes in-flight requests (bounded).
pub async fn serve(listener: UnixListener, state: Arc<State>, shutdown: impl Future<Output = ()>) -> io::Result<()> {
    tokio::pin!(shutdown);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let lingering = Arc::new(Semaphore::new(LINGER_SLOTS));
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            stream = crate::socket::accept(&listener, "token server") => stream,
        };
        let (peer, key, slot) = match admit(&state, &stream) {
            Ok(admitted) => admitted,
            Err((status, message)) => {
                state.metrics.shed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(status = status.as_u16(), reason = %message, "connection shed");
                shed(stream, status, &message, &lingering);
                continue;
            }
        };
        let state = state.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let header_timeout = state.config.header_timeout;
            // The executable's identity is taken here, not in the accept loop: opening it may block.
            let peer = match peer {
                Ok(peer) => state.attestor.identify(peer).await,
                Err(e) => Err(e),
            };
            let caller = Arc::new(Caller { peer, key });
            let service = hyper::service::service_fn(move |request| {
                let (state, caller) = (state.clone(), caller.clone());
                async move { Ok::<_, Infallible>(handle(&state, &caller, request).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(MAX_CONNECTION_LIFETIME, watcher.watch(connection)).await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
    Ok(())
}

/// A pinned caller (or why it could not be pinned), the peer it counts against, and its slot.
type Admitted = (Result<Peer, AttestError>, PeerKey, Slot);

/// Pins the caller as soon as its connection is accepted and takes a connection slot for it without
/// waiting; otherwise the answer to shed it with. Never opens the caller's executable.
fn admit(state: &State, stream: &UnixStream) -> Result<Admitted, (StatusCode, String)> {
    let uid = stream
        .peer_cred()
        .map_err(|e| (StatusCode::FORBIDDEN, format!("cannot read the caller's credentials: {e}")))?
        .uid();
    let peer = state.attestor.pin(stream);
    // A caller that could not be pinned (its token requests are all denied) is its own small peer:
    // it must not spend the slots and rate of the host uid (a container's uid 0 is not the host's).
    let key = match &peer {
        Ok(p) => PeerKey::new(uid, p.container_id()),
        Err(_) => PeerKey::Unpinned { uid },
    };
    let slot = state.connections.try_acquire(uid, key.clone()).map_err(|shed| (shed.status(), shed.to_string()))?;
    Ok((peer, key, slot))
}
