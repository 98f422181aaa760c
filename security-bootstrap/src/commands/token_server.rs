//! `security-bootstrap token-server`: serve attested tokens on the Unix socket, and the admin socket
//! beside it, until SIGTERM/SIGINT. The servers themselves are assembled in `token_server`; this
//! module reads the issuing token from the keystore, makes this run's admin credential and composes.

use anyhow::{bail, Context};
use openbao_client::{Client, Token};
use secretstore_setup::setup::{Setup, ITEM_ISSUER};
use std::sync::Arc;

use secretstore_setup::seal::SealMode;
use token_server::admin::observe::{CertExpiry, CertProbe, Observed};
use token_server::admin::{AdminServer, AdminState, ServiceSecrets};
use token_server::audit_log::AuditLog;
use token_server::metrics::Telemetry;
use token_server::{Server, State};

use crate::config::Config;

/// edgeseal's audit log as `config` places it.
pub fn audit_log(config: &Config) -> Arc<AuditLog> {
    Arc::new(AuditLog::new(config.audit_file(), config.audit.max_size, config.audit.keep))
}

/// Waits (at most 5 s) until every record queued so far is in the audit log: the last thing a
/// graceful stop does.
pub async fn flush_audit_log(audit_log: Arc<AuditLog>) {
    let path = audit_log.path().to_path_buf();
    let flushed = tokio::task::spawn_blocking(move || audit_log.flush_within(std::time::Duration::from_secs(5))).await;
    if !flushed.unwrap_or(false) {
        tracing::warn!(file = %path.display(), "edgeseal's audit log: records still queued at exit were not written");
    }
}

/// The token server for `config`, issuing with the token `setup` stored in the keystore, recording
/// the tokens it issues in `audit_log`.
pub async fn server(config: &Config, setup: &Setup, audit_log: Option<Arc<AuditLog>>) -> anyhow::Result<Server> {
    let issuing_token = issuing_token(setup).await?;
    let client = Client::new(
        &config.secret_store.address,
        &config.ca_cert(),
        &config.server_pin()?,
        config.token_server.store_timeout,
    )?;
    let mut state = State::assemble(config.token_server.clone(), config.service_rules(), client, issuing_token).await;
    state.audit = audit_log;
    state.secrets = Some(token_server::secrets::SecretsLayout {
        kv_mount: config.secret_store.kv_mount.clone(),
        prefix: config.secret_store.service_prefix.clone(),
    });
    Ok(Server::from(state))
}

/// The admin socket's server, acting with `admin` (this run's admin credential), recording admin
/// actions in `audit_log` and reporting the token server's `telemetry`.
fn admin_server(
    config: &Config,
    setup: &Setup,
    admin: Token,
    audit_log: Arc<AuditLog>,
    telemetry: Arc<Telemetry>,
) -> anyhow::Result<AdminServer> {
    let client = setup.tcp_client()?;
    let services = config
        .services
        .iter()
        .map(|(name, entry)| (name.0.clone(), ServiceSecrets { generated: entry.secrets.clone() }))
        .collect();
    let device = super::device::KeystoreDevice {
        kdf: config.kdf.clone(),
        store: secretstore_setup::KeystoreDir::new(&config.keystore.dir),
        config: serde_json::to_vec(config).unwrap_or_default(),
    };
    let fleet: Option<Arc<dyn token_server::admin::fleet::Fleet>> = match &config.fleet {
        Some(fleet) => {
            Some(Arc::new(super::fleet_node::NodeFleet::new(fleet.clone(), device.clone(), &config.keystore.dir)?))
        }
        None => None,
    };
    Ok(AdminServer::new(AdminState {
        config: config.admin.clone(),
        client,
        token: admin,
        kv_mount: config.secret_store.kv_mount.clone(),
        prefix: config.secret_store.service_prefix.clone(),
        services,
        audit_log: Some(audit_log),
        openbao_audit_log: config.openbao_audit_log(),
        device: Some(Arc::new(device)),
        fleet,
        observed: Observed {
            telemetry,
            selectors: config.services.iter().map(|(name, entry)| (name.0.clone(), entry.selectors.clone())).collect(),
            certificates: certificate_probe(config.pki.clone()),
            seal: match &config.secret_store.supervise {
                Some(supervise) if supervise.seal == SealMode::Static => "static",
                Some(_) => "shamir",
                None => "external",
            }
            .into(),
            ..Observed::default()
        },
    }))
}

/// Reads the device certificates' expiry with pki-init's check (reads `pki.dir`, changes nothing).
fn certificate_probe(pki: pki_init::PkiConfig) -> CertProbe {
    Arc::new(move || {
        let report = match pki_init::check(&pki, time::OffsetDateTime::now_utc()) {
            Ok(report) => report,
            Err(e) => {
                tracing::warn!(error = %e, "reading the device certificates for metrics failed");
                return Vec::new();
            }
        };
        report
            .certs
            .iter()
            .filter_map(|c| {
                let cert = c.cert.as_ref()?;
                let text = cert.not_after.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
                Some(CertExpiry {
                    name: c.name.clone(),
                    not_after: cert.not_after.unix_timestamp(),
                    not_after_text: text,
                })
            })
            .collect()
    })
}

/// Revokes this run's admin credential on an error path (logged if that fails too: it expires
/// within its period, and it was never written anywhere).
pub async fn revoke_quietly(setup: &Setup, credential: &Token) {
    let revoked = match setup.tcp_client() {
        Ok(client) => client.revoke_self(credential).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = revoked {
        tracing::warn!(error = %e, "revoking the admin credential failed; it expires within its period");
    }
}

/// The admin socket and `metrics.listen`, being served.
#[derive(Debug)]
pub struct AdminServing {
    state: Arc<AdminState>,
    admin: tokio::task::JoinHandle<std::io::Result<()>>,
    metrics: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl AdminServing {
    /// The admin server's shared state (the fleet sync runs with it).
    pub fn state(&self) -> Arc<AdminState> {
        self.state.clone()
    }

    /// Waits until both have stopped (after the shutdown they were given).
    pub async fn finished(self) {
        if let Ok(Err(e)) = self.admin.await {
            tracing::warn!(error = %e, "the admin socket stopped with an error");
        }
        if let Some(metrics) = self.metrics {
            let _ = metrics.await;
        }
    }
}

/// Serves the admin socket with `credential` (this run's admin credential) and, when configured,
/// `metrics.listen`, until the future `stopped()` makes completes (each server gets its own). If the
/// admin socket cannot be served, the credential is revoked before the error is returned. A
/// `metrics.listen` that cannot be bound is logged, not fatal: the token service matters more.
pub async fn serve_admin<F>(
    config: &Config,
    setup: &Setup,
    credential: Token,
    audit_log: Arc<AuditLog>,
    telemetry: Arc<Telemetry>,
    stopped: impl Fn() -> F,
) -> anyhow::Result<AdminServing>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let bound = admin_server(config, setup, credential.clone(), audit_log, telemetry).and_then(|admin| {
        let listener =
            admin.bind().with_context(|| format!("binding the admin socket {}", config.admin.socket.display()))?;
        Ok((admin, listener))
    });
    let (admin, admin_listener) = match bound {
        Ok(bound) => bound,
        Err(e) => {
            revoke_quietly(setup, &credential).await;
            return Err(e);
        }
    };
    let metrics = match config.metrics.listen {
        Some(address) => match tokio::net::TcpListener::bind(address).await {
            Ok(listener) => {
                if !address.ip().is_loopback() {
                    tracing::warn!(%address, "metrics are served on an address that is not loopback (metrics.allow_remote)");
                }
                tracing::info!(%address, "metrics listening (GET /metrics)");
                Some(tokio::spawn(token_server::admin::observe::serve_metrics(listener, admin.state(), stopped())))
            }
            Err(e) => {
                tracing::error!(%address, error = %e, "metrics.listen cannot be bound (is another program on that port?); serving without it (/metrics on the admin socket still answers)");
                None
            }
        },
        None => None,
    };
    Ok(AdminServing { state: admin.state(), admin: tokio::spawn(admin.run(admin_listener, stopped())), metrics })
}

/// The token-issuing token from the keystore (opened with the KDF plug-in's IKM).
async fn issuing_token(setup: &Setup) -> anyhow::Result<Token> {
    let ikm = setup.ikm().await?;
    let store = setup.keystore_dir();
    let (keystore, _) = store.open_with_ikm(&ikm)?;
    let Some(issuer) = keystore.item(ITEM_ISSUER) else {
        bail!("keystore {} holds no token-issuing token: run `security-bootstrap setup` first", store.path().display());
    };
    Ok(Token::new(std::str::from_utf8(issuer.expose()).context("the token-issuing token in the keystore is not text")?))
}

/// Raises the open-file limit to its hard limit (token-socket connections hold descriptors; children
/// inherit it) and logs the outcome. A failure is logged, not fatal: the connection cap then follows
/// the lower limit.
pub fn raise_descriptor_limit() {
    match token_server::descriptors::raise_nofile_limit() {
        Ok(limit) => tracing::info!(before = limit.before, now = limit.now, "open-file limit (RLIMIT_NOFILE)"),
        Err(e) => tracing::warn!(error = %e, "open-file limit not raised"),
    }
}

/// Resolves when SIGTERM or SIGINT arrives.
pub async fn signals() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Runs the command.
pub fn run(config_path: &std::path::Path) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let setup = super::setup::from_config(config_path)?;
    raise_descriptor_limit();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    runtime.block_on(async {
        let audit_log = audit_log(&config);
        let server = server(&config, &setup, Some(audit_log.clone())).await?;
        let listener = server.bind()?;
        let admin = setup.admin_credential().await.context("making the admin socket's credential")?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let admin = serve_admin(&config, &setup, admin, audit_log.clone(), server.state().telemetry.clone(), || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|stop| *stop).await;
            }
        })
        .await?;
        // On a worker thread, as in `run`: each accepted connection's task then starts on the
        // accepting worker (no cross-thread wake-up per connection).
        let served = tokio::spawn(server.run(listener, async move {
            signals().await;
            let _ = stop_tx.send(true);
        }))
        .await
        .context("the token server's task failed")?;
        admin.finished().await;
        flush_audit_log(audit_log).await;
        served.context("serving the token socket")
    })
}
