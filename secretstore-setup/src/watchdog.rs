//! The unseal watchdog: polls OpenBao's health and unseals it again when it comes back sealed
//! (a restart, a crash) — without an operator. EdgeX never had this (edgex-go#1944).
//!
//! A static-sealed OpenBao opens itself when it restarts: the watchdog only watches it and reports a
//! store that stays sealed (its key did not open it); it never sends it anything.
//!
//! It looks every `watchdog_interval` while the store is healthy and every [`FAST_POLL`] while it is
//! down or opening itself; a supervisor wakes it the moment OpenBao is started again, and hears from
//! it when OpenBao is healthy (which ends a crash loop, see [`crate::supervise::restart`]).
//!
//! The shares are not kept in memory between events: each re-unseal runs the KDF plug-in and
//! decrypts the keystore again.
//!
//! The watchdog never gives up and never stops `run`: a server on the store's address that is not
//! the pinned OpenBao, an unseal attempt disturbed by another client, a missing keystore — each is
//! logged once when the state changes, and the next tick tries again.

use std::future::Future;
use std::time::{Duration, Instant};

use openbao_client::Client;

use crate::supervise::Link;

use crate::setup::{Setup, SetupError};

/// What the watchdog last saw, so each change is logged once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Unsealed and answering.
    Healthy,
    /// Sealed: a static-sealed store still opening itself (a Shamir one is unsealed by the check).
    Sealed,
    /// Not answering.
    Unreachable,
    /// Unsealing failed, or a static-sealed store stayed sealed.
    Failing,
}

/// How often the watchdog looks while the store is down or opening itself: it is back in service
/// within this of coming back.
pub const FAST_POLL: Duration = Duration::from_millis(100);

/// How long a static-sealed store may stay sealed after it answers before the watchdog reports it
/// (it opens itself in well under a second).
pub const STATIC_OPEN_GRACE: Duration = Duration::from_secs(10);

/// The pause before the next check after seeing `seen`: `interval` while the store is healthy (and
/// after a failed unseal, which runs the KDF plug-in again), [`FAST_POLL`] while it is down or
/// opening itself.
pub fn next_poll(seen: Seen, interval: Duration) -> Duration {
    match seen {
        Seen::Healthy | Seen::Failing => interval,
        Seen::Sealed | Seen::Unreachable => FAST_POLL.min(interval),
    }
}

/// Runs until `shutdown` completes.
pub async fn run(setup: &Setup, client: &Client, shutdown: impl Future<Output = ()>) {
    run_counting(setup, client, shutdown, &|| {}, None).await
}

/// [`run`], calling `unsealed` after each unseal it does (`run` counts them for its metrics). With a
/// supervised OpenBao, `supervision` wakes the watchdog as soon as OpenBao is started again, and
/// hears when it was seen healthy.
pub async fn run_counting(
    setup: &Setup,
    client: &Client,
    shutdown: impl Future<Output = ()>,
    unsealed: &(dyn Fn() + Send + Sync),
    mut supervision: Option<Link>,
) {
    tokio::pin!(shutdown);
    let interval = setup.store.watchdog_interval;
    let mut seen = Seen::Healthy;
    let mut pause = Duration::ZERO;
    let mut sealed_since = None;
    loop {
        let started = async {
            match supervision.as_mut() {
                Some(link) => link.started().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(pause) => {}
            _ = started => {}
        }
        let start = supervision.as_ref().map(Link::current_start);
        let (mut now, mut error) = match check_counting(setup, client, unsealed).await {
            Ok(state) => (state, None),
            Err(e) => (Seen::Failing, Some(e)),
        };
        // A static-sealed store that stays sealed did not take its key: reported, never sent anything.
        sealed_since = (now == Seen::Sealed).then(|| sealed_since.unwrap_or_else(Instant::now));
        if sealed_since.is_some_and(|since| since.elapsed() >= STATIC_OPEN_GRACE) {
            (now, error) = (Seen::Failing, Some(SetupError::StaticSealed { address: setup.store.address.clone() }));
        }
        if let (Seen::Healthy, Some(link), Some(start)) = (now, &supervision, start) {
            link.healthy(start);
        }
        if now != seen {
            match (now, error) {
                (Seen::Healthy, _) => {
                    tracing::info!(address = client.address(), "watchdog: OpenBao is unsealed and healthy")
                }
                (Seen::Unreachable, _) => {
                    tracing::warn!(address = client.address(), "watchdog: OpenBao is not answering")
                }
                (Seen::Sealed, _) => {
                    tracing::info!(
                        address = client.address(),
                        "watchdog: OpenBao is sealed; waiting for it to open itself"
                    )
                }
                (_, Some(e)) => {
                    tracing::error!(address = client.address(), error = %e, "watchdog: could not unseal OpenBao")
                }
                (state, None) => tracing::warn!(address = client.address(), ?state, "watchdog: OpenBao state changed"),
            }
        }
        seen = now;
        pause = next_poll(seen, interval);
    }
}

/// One check: unseals a Shamir-sealed store. `Ok(Healthy)` after a successful re-unseal; `Ok(Sealed)`
/// for a static-sealed store that has not opened itself (yet).
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
        Ok(_) if setup.static_seal() => Ok(Seen::Sealed),
        Ok(_) => {
            tracing::warn!(address = client.address(), "watchdog: OpenBao is sealed; unsealing from the keystore");
            setup.unseal_from_keystore(client).await?;
            unsealed();
            Ok(Seen::Healthy)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_looks_fast_while_the_store_is_down_or_opening_and_slowly_otherwise() {
        let interval = Duration::from_secs(5);
        // (what it saw, pause before the next look)
        let cases = [
            (Seen::Healthy, interval),
            // A failed unseal runs the KDF plug-in again: not ten times a second.
            (Seen::Failing, interval),
            (Seen::Unreachable, FAST_POLL),
            (Seen::Sealed, FAST_POLL),
        ];
        for (seen, pause) in cases {
            assert_eq!(next_poll(seen, interval), pause, "{seen:?}");
        }
        // An interval shorter than the fast poll is never slowed down.
        assert_eq!(next_poll(Seen::Unreachable, Duration::from_millis(20)), Duration::from_millis(20));
    }
}
