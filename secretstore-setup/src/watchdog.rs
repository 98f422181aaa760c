//! The unseal watchdog: polls OpenBao's health and unseals it again when it comes back sealed
//! (a restart, a crash) — without an operator. EdgeX never had this (edgex-go#1944).
//!
//! A static-sealed OpenBao opens itself when it restarts: the watchdog only watches it and reports a
//! store that stays sealed (its key did not open it); it never sends it anything.
//!
//! The shares are not kept in memory between events: each re-unseal runs the KDF plug-in and
//! decrypts the keystore again.
//!
//! The watchdog never gives up and never stops `run`: a server on the store's address that is not
//! the pinned OpenBao, an unseal attempt disturbed by another client, a missing keystore — each is
//! logged once when the state changes, and the next tick tries again.

use std::future::Future;

use openbao_client::Client;

use crate::setup::{Setup, SetupError};

/// What the watchdog last saw, so each change is logged once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Unsealed and answering.
    Healthy,
    /// Sealed (and we are unsealing it).
    Sealed,
    /// Not answering.
    Unreachable,
    /// Unsealing failed.
    Failing,
}

/// Runs until `shutdown` completes.
pub async fn run(setup: &Setup, client: &Client, shutdown: impl Future<Output = ()>) {
    run_counting(setup, client, shutdown, &|| {}).await
}

/// [`run`], calling `unsealed` after each unseal it does (`run` counts them for its metrics).
pub async fn run_counting(
    setup: &Setup,
    client: &Client,
    shutdown: impl Future<Output = ()>,
    unsealed: &(dyn Fn() + Send + Sync),
) {
    tokio::pin!(shutdown);
    let mut ticker = tokio::time::interval(setup.store.watchdog_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = Seen::Healthy;
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = ticker.tick() => {}
        }
        let (now, error) = match check_counting(setup, client, unsealed).await {
            Ok(state) => (state, None),
            Err(e) => (Seen::Failing, Some(e)),
        };
        if now != seen {
            match (now, error) {
                (Seen::Healthy, _) => {
                    tracing::info!(address = client.address(), "watchdog: OpenBao is unsealed and healthy")
                }
                (Seen::Unreachable, _) => {
                    tracing::warn!(address = client.address(), "watchdog: OpenBao is not answering")
                }
                (_, Some(e)) => {
                    tracing::error!(address = client.address(), error = %e, "watchdog: could not unseal OpenBao")
                }
                (state, None) => tracing::warn!(address = client.address(), ?state, "watchdog: OpenBao state changed"),
            }
        }
        seen = now;
    }
}

/// One check: unseals if sealed. `Ok(Healthy)` after a successful re-unseal.
pub async fn check(setup: &Setup, client: &Client) -> Result<Seen, SetupError> {
    check_counting(setup, client, &|| {}).await
}

async fn check_counting(
    setup: &Setup,
    client: &Client,
    unsealed: &(dyn Fn() + Send + Sync),
) -> Result<Seen, SetupError> {
    match client.health().await {
        Err(e) if e.is_identity_mismatch() => {
            Err(SetupError::OpenBao { doing: "checking OpenBao's identity".into(), source: e })
        }
        Err(_) => Ok(Seen::Unreachable),
        Ok(h) if !h.initialized => Ok(Seen::Unreachable),
        Ok(h) if !h.sealed => Ok(Seen::Healthy),
        // It opens itself; a sealed one did not take its key, and no share is ever sent to it.
        Ok(_) if setup.static_seal() => Err(SetupError::StaticSealed { address: setup.store.address.clone() }),
        Ok(_) => {
            tracing::warn!(address = client.address(), "watchdog: OpenBao is sealed; unsealing from the keystore");
            setup.unseal_from_keystore(client).await?;
            unsealed();
            Ok(Seen::Healthy)
        }
    }
}
