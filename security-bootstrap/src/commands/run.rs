//! `security-bootstrap run`: the whole boot in one process — pki-init, (optionally) a supervised
//! OpenBao, setup, then the token server and the unseal watchdog until SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use pki_init::layout::{self, OPENBAO as OPENBAO_CERT};
use secretstore_setup::seal::SealMode;
use secretstore_setup::server_config::ServerConfig as BaoConfig;
use secretstore_setup::supervise::{self, SuperviseConfig, Supervisor};
use tokio::sync::watch;

use super::token_server;
use crate::config::Config;

/// The OpenBao configuration for a supervised server, from the PKI and `secret_store`: the TCP
/// listener on `secret_store.address` (`locked` on first boot, see `secretstore_setup::server_config`)
/// and the private Unix listener setup and the watchdog use.
pub fn supervised_openbao(config: &Config, supervise: &SuperviseConfig, locked: bool) -> anyhow::Result<BaoConfig> {
    let data_dir = &supervise.data_dir;
    // Both checked when edgeseal.yaml is loaded; repeated for a configuration built in code.
    let listen = config.secret_store.supervised_listen().with_context(|| {
        format!(
            "a supervised OpenBao listens on secret_store.address, which must be https://IP:PORT, got {}",
            config.secret_store.address
        )
    })?;
    let cluster =
        SocketAddr::new(listen.ip(), listen.port().checked_add(1).context("port 65535 leaves no cluster port")?);
    let pki_dir = &config.pki.dir;
    if !config.pki.certs.contains_key(OPENBAO_CERT) {
        bail!("a supervised OpenBao needs a TLS certificate: add pki.certs.{OPENBAO_CERT} with sans [{}]", listen.ip());
    }
    Ok(BaoConfig {
        data_dir: data_dir.join("raft"),
        listen,
        cluster,
        tls_cert: layout::leaf_cert(pki_dir, OPENBAO_CERT),
        tls_key: layout::leaf_key(pki_dir, OPENBAO_CERT),
        audit_log: config.openbao_audit_log(),
        unauthed_generate_root: supervise.unauthed_generate_root,
        api_socket: Some(supervise.api_socket()),
        tcp_client_ca: locked.then(|| supervise.locked_client_ca()),
        static_seal: None,
        self_init: None,
        // A cluster member's stanzas come from its keystore's membership (the static boot adds them).
        member: None,
    })
}

/// A supervised OpenBao, and whether its TCP listener is still locked (first boot).
struct Supervised {
    supervisor: Supervisor,
    locked: bool,
    /// This process's hold on the store's data_dir, for as long as OpenBao runs.
    _lock: supervise::DataDirLock,
}

/// First boot, once setup has stored the shares and converged: rewrite OpenBao's configuration with
/// the TCP listener open, restart it, and unseal it again over the private socket.
async fn open_tcp_listener(
    config: &Config,
    setup: &secretstore_setup::setup::Setup,
    supervised: &mut Supervised,
) -> anyhow::Result<()> {
    let Some(supervise) = &config.secret_store.supervise else { return Ok(()) };
    let bao = supervised_openbao(config, supervise, false)?;
    supervise::prepare(supervise, &bao).with_context(|| format!("preparing {}", supervise.data_dir.display()))?;
    supervised.supervisor.restart().await;
    let client = setup.client()?;
    until_undisturbed("unsealing OpenBao after opening its TCP listener", || setup.unseal_from_keystore(&client))
        .await?;
    supervised.locked = false;
    tracing::info!(address = %config.secret_store.address, "the unseal shares are in the keystore: OpenBao's TCP listener is open");
    Ok(())
}

/// Pause between two tries of a step whose unseal another client disturbed.
const DISTURBED_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs `step` again for as long as it fails with a disturbed unseal (another local client resetting
/// or feeding `sys/unseal`): like the watchdog, `run` logs it and keeps trying — it is a denial of
/// service while it lasts, never a reason to stop or to doubt the keystore. Bounded only by shutdown
/// (callers race this against the stop signal). Any other error is returned.
async fn until_undisturbed<T, F, Fut>(what: &str, mut step: F) -> Result<T, secretstore_setup::setup::SetupError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, secretstore_setup::setup::SetupError>>,
{
    loop {
        match step().await {
            Err(e) if e.is_unseal_disturbed() => {
                tracing::warn!(step = what, error = %e, "another client keeps disturbing the unseal; trying again");
                tokio::time::sleep(DISTURBED_PAUSE).await;
            }
            outcome => return outcome,
        }
    }
}

/// Runs the command until a signal arrives.
pub fn run(config_path: &Path, ready_file: Option<&Path>) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let setup = super::setup::from_config(config_path)?;
    token_server::raise_descriptor_limit();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    runtime.block_on(boot(config, setup, ready_file.map(Path::to_path_buf)))
}

async fn boot(
    config: Config,
    setup: secretstore_setup::setup::Setup,
    ready_file: Option<PathBuf>,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        token_server::signals().await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    let (pki, kdf, keystore) = (config.pki.clone(), config.kdf.clone(), config.keystore.dir.clone());
    let report = tokio::task::spawn_blocking(move || super::pki::converge(&pki, &kdf, &keystore)).await??;
    tracing::info!(dir = %report.dir.display(), changed = report.changed(), "pki-init done");

    let mut supervised = None;
    let outcome = async {
        let (converged, admin) = tokio::select! {
            converged = converge_store(&config, &setup, &mut supervised) => converged?,
            _ = stopped(stop_rx.clone()) => return Ok(()),
        };
        tracing::info!(
            initialized = converged.initialized,
            unsealed = converged.unsealed,
            changes = converged.changes.len(),
            "setup done"
        );
        for problem in &converged.problems {
            tracing::error!(problem = %problem, "setup problem (one service; the others are served)");
        }
        let supervision = supervised.as_ref().map(|s| s.supervisor.link());
        serve(&config, &setup, admin, supervision, ready_file.as_deref(), stop_rx.clone(), stopped).await
    }
    .await;
    if let Some(supervised) = supervised {
        supervised.supervisor.stop().await;
    }
    if let Some(ready) = &ready_file {
        let _ = std::fs::remove_file(ready);
    }
    outcome
}

/// Brings the store to the configured state: a static-sealed supervised OpenBao is started and opens
/// itself ([`secretstore_setup::seal::boot::open`]); a Shamir-sealed one is started with its TCP
/// listener locked on first boot, unsealed and configured by setup, then opened; an external store
/// is set up where it runs. A supervised OpenBao is left in `supervised` (also when this fails, so
/// that it is stopped). Also returns this run's admin credential, made with the run's privileged
/// token.
async fn converge_store(
    config: &Config,
    setup: &secretstore_setup::setup::Setup,
    supervised: &mut Option<Supervised>,
) -> anyhow::Result<(secretstore_setup::setup::Report, openbao_client::Token)> {
    match &config.secret_store.supervise {
        Some(supervise) if supervise.seal == SealMode::Static => {
            let bao = supervised_openbao(config, supervise, false)?;
            let opened = secretstore_setup::seal::boot::open(setup, bao).await?;
            *supervised = Some(Supervised { supervisor: opened.supervisor, locked: false, _lock: opened.lock });
            Ok((opened.report, opened.admin))
        }
        Some(supervise) => {
            let lock = supervise::DataDirLock::acquire(&supervise.data_dir)
                .with_context(|| format!("locking {}", supervise.data_dir.display()))?;
            let locked = supervise::tcp_stays_locked(&config.keystore.dir);
            let bao = supervised_openbao(config, supervise, locked)?;
            let file = supervise::prepare(supervise, &bao)
                .with_context(|| format!("preparing {}", supervise.data_dir.display()))?;
            let supervisor = Supervisor::start(supervise, &file, Vec::new());
            let started = supervised.insert(Supervised { supervisor, locked, _lock: lock });
            let converged = until_undisturbed("setup", || setup.run_for_server()).await?;
            if started.locked {
                open_tcp_listener(config, setup, started).await?;
            }
            Ok(converged)
        }
        None => Ok(until_undisturbed("setup", || setup.run_for_server()).await?),
    }
}

async fn serve<F: std::future::Future<Output = ()> + Send + 'static>(
    config: &Config,
    setup: &secretstore_setup::setup::Setup,
    admin: openbao_client::Token,
    supervision: Option<supervise::Link>,
    ready_file: Option<&Path>,
    stop_rx: watch::Receiver<bool>,
    stopped: impl Fn(watch::Receiver<bool>) -> F,
) -> anyhow::Result<()> {
    let audit_log = token_server::audit_log(config);
    let started = async {
        let server = token_server::server(config, setup, Some(audit_log.clone())).await?;
        // Bound before readiness is announced: from here on clients can connect (they queue in the kernel).
        let listener = server.bind()?;
        anyhow::Ok((server, listener, setup.client()?))
    };
    let (server, listener, client) = match started.await {
        Ok(started) => started,
        Err(e) => {
            token_server::revoke_quietly(setup, &admin).await;
            return Err(e);
        }
    };
    let watchdog_setup = setup.clone();
    let watchdog_stop = stopped(stop_rx.clone());
    let telemetry = server.state().telemetry.clone();
    let unsealed = telemetry.unseal_counter();
    if let Some(link) = &supervision {
        tokio::spawn(report_supervision(link.subscribe(), server.state().clone(), stopped(stop_rx.clone())));
    }
    let watchdog = tokio::spawn(async move {
        secretstore_setup::watchdog::run_counting(&watchdog_setup, &client, watchdog_stop, &unsealed, supervision)
            .await;
    });
    let admin =
        token_server::serve_admin(config, setup, admin, audit_log.clone(), telemetry, || stopped(stop_rx.clone()))
            .await?;
    let server = tokio::spawn(server.run(listener, stopped(stop_rx.clone())));
    // After the token server is up; a failed sync is reported, never a reason to stop.
    if let Some(fleet) = &config.fleet {
        tokio::spawn(super::fleet_node::sync_loop(admin.state(), fleet.sync_interval, stopped(stop_rx.clone())));
    }
    if let Some(path) = ready_file {
        std::fs::write(path, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing ready file {}", path.display()))?;
    }
    tracing::info!(socket = %config.token_server.socket.display(), "edgeseal is ready");
    let served = server.await.context("token server task")?;
    admin.finished().await;
    let _ = watchdog.await;
    token_server::flush_audit_log(audit_log).await;
    served.context("serving the token socket")
}

/// Keeps the token server's metrics and its 503/health reasons in step with the supervision: the
/// restart count, and a crash loop or a full disk under the audit log while it lasts.
async fn report_supervision(
    mut status: watch::Receiver<supervise::Status>,
    state: std::sync::Arc<::token_server::State>,
    stopped: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stopped);
    loop {
        let now = status.borrow_and_update().clone();
        state.telemetry.set_supervision(now.restarts, now.crash_loop.is_some());
        state.store_problem.set(now.problem());
        tokio::select! {
            _ = &mut stopped => return,
            changed = status.changed() => if changed.is_err() { return },
        }
    }
}
