//! `security-bootstrap token-server`: serve attested tokens on the Unix socket until SIGTERM/SIGINT.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use openbao_client::{Client, Token};
use secretstore_setup::setup::{Setup, ITEM_ISSUER};
use token_server::attest::docker::DockerFacts;
use token_server::attest::Attestor;
use token_server::issue::Issuer;
use token_server::State;

use crate::config::Config;

/// How often the issuing token (period 24 h) is renewed.
const RENEW_EVERY: Duration = Duration::from_secs(3600);

/// Builds the token server's state: the issuing token from the keystore, Docker if configured.
pub async fn state(config: &Config, setup: &Setup) -> anyhow::Result<State> {
    let ikm = setup.ikm().await?;
    let store = setup.keystore_dir();
    let file = store.read()?.ok_or_else(|| {
        anyhow::anyhow!("no keystore at {}: run `security-bootstrap setup` first", store.path().display())
    })?;
    let kek = secretstore_setup::keystore::derive_file_kek(&file, &ikm)
        .map_err(|reason| secretstore_setup::KeystoreError::Corrupt { path: store.path().to_path_buf(), reason })?;
    let keystore = store.open(&kek)?;
    let Some(issuer) = keystore.item(ITEM_ISSUER) else {
        bail!("keystore {} holds no token-issuing token: run `security-bootstrap setup` first", store.path().display());
    };
    let issuer = Token::new(
        std::str::from_utf8(issuer.expose()).context("the token-issuing token in the keystore is not text")?,
    );
    let client = Client::new(
        &config.secret_store.address,
        &config.ca_cert(),
        &config.server_pin()?,
        config.token_server.store_timeout,
    )?;
    let rules = config.service_rules();
    let docker = match &config.token_server.docker_socket {
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
    let hash_exe = rules.iter().any(|r| r.selectors.unix.as_ref().is_some_and(|u| u.sha256.is_some()));
    let mut attestor = Attestor::new(docker, hash_exe, config.token_server.exe_hash_limit);
    attestor.require_pidfd = !config.token_server.allow_without_pidfd;
    Ok(State::new(config.token_server.clone(), rules, attestor, Issuer::new(client, issuer)))
}

/// Runs the server until `shutdown`.
pub async fn serve(state: Arc<State>, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    let socket = state.config.socket.clone();
    let listener = token_server::socket::bind(&socket).with_context(|| format!("binding {}", socket.display()))?;
    if let Some(docker) = state.attestor.docker().cloned() {
        tokio::spawn(docker.follow_events());
    }
    let renewer = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(RENEW_EVERY);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = renewer.issuer.renew().await {
                tracing::warn!(error = %e, "renewing the token-issuing token failed");
            }
        }
    });
    tracing::info!(socket = %socket.display(), services = state.rules.len(), "token server listening");
    token_server::serve(listener, state, shutdown).await.context("serving the token socket")?;
    let _ = std::fs::remove_file(&socket);
    Ok(())
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
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    runtime.block_on(async {
        let state = Arc::new(state(&config, &setup).await?);
        serve(state, signals()).await
    })
}
