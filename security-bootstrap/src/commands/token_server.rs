//! `security-bootstrap token-server`: serve attested tokens on the Unix socket, and the admin socket
//! beside it, until SIGTERM/SIGINT. The servers themselves are assembled in `token_server`; this
//! module reads the issuing token from the keystore, makes this run's admin credential and composes.

use anyhow::{bail, Context};
use openbao_client::{Client, Token};
use secretstore_setup::setup::{Setup, ITEM_ISSUER};
use std::sync::Arc;

use token_server::admin::{AdminServer, AdminState, ServiceSecrets};
use token_server::audit_log::AuditLog;
use token_server::{Server, State};

use crate::config::Config;

/// edgeseal's audit log as `config` places it.
pub fn audit_log(config: &Config) -> Arc<AuditLog> {
    Arc::new(AuditLog::new(config.audit_file(), config.audit.max_size))
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
    Ok(Server::from(state))
}

/// The admin socket's server, acting with `admin` (this run's admin credential), recording admin
/// actions in `audit_log`.
pub fn admin_server(
    config: &Config,
    setup: &Setup,
    admin: Token,
    audit_log: Arc<AuditLog>,
) -> anyhow::Result<AdminServer> {
    let client = setup.tcp_client()?;
    let services = config
        .services
        .iter()
        .map(|(name, entry)| (name.0.clone(), ServiceSecrets { generated: entry.secrets.clone() }))
        .collect();
    Ok(AdminServer::new(AdminState {
        config: config.admin.clone(),
        client,
        token: admin,
        kv_mount: config.secret_store.kv_mount.clone(),
        prefix: config.secret_store.service_prefix.clone(),
        services,
        audit_log: Some(audit_log),
        openbao_audit_log: config.openbao_audit_log(),
    }))
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
        let admin = setup.admin_credential().await.context("making the admin socket's credential")?;
        let admin = admin_server(&config, &setup, admin, audit_log)?;
        let listener = server.bind()?;
        let admin_listener =
            admin.bind().with_context(|| format!("binding the admin socket {}", config.admin.socket.display()))?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let admin = tokio::spawn(admin.run(admin_listener, stopped(stop_rx.clone())));
        let served = server.run(listener, async move {
            signals().await;
            let _ = stop_tx.send(true);
        });
        let served = served.await;
        if let Ok(Err(e)) = admin.await {
            tracing::warn!(error = %e, "the admin socket stopped with an error");
        }
        served.context("serving the token socket")
    })
}
