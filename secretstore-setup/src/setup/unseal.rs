//! Waiting for OpenBao, and unsealing it with the keystore's shares.
//!
//! `sys/unseal` needs no token: any process that reaches a listener can reset an attempt or feed it a
//! share of its own, and then ours combine into garbage. So an unseal is a series of *attempts*: each
//! starts clean (a reset if anything is in progress), gives at most the threshold of shares — never
//! every share in the keystore — and checks after each share that the progress is the one our shares
//! alone would make. A disturbed attempt is started over (with backoff) until `wait_timeout`; an
//! attempt that failed without any sign of interference is counted, and a few of those mean the
//! keystore's shares do not open this store.
//!
//! Every call goes to the pinned OpenBao only (see `openbao_client::tls`): a server with another key
//! gets no share, and that is reported at once.
//!
//! What remains exposed with an external store (one edgeseal does not supervise): its TCP listener is
//! the only path, so a local process can keep disturbing unseal attempts (a denial of service until it
//! stops; it never learns a share), and can race `sys/init` on a store nobody initialized yet (then
//! setup refuses the store, see [`super::SetupError::KeystoreMissing`]).

use std::time::Duration;

use openbao_client::api::sys::Health;
use openbao_client::retry::{retry, Attempt, Backoff};
use openbao_client::Client;

use super::{Doing, SetupError};
use crate::Keystore;

/// Attempts that failed without any sign of another client before the shares are declared foreign.
const CLEAN_FAILURES: u32 = 5;

/// Polls `sys/health` until OpenBao answers, for at most `timeout`. A server that fails the identity
/// pin is reported at once: nothing is sent to it, and waiting would not make it OpenBao.
pub async fn wait_for_openbao(client: &Client, timeout: Duration) -> Result<Health, SetupError> {
    let backoff = Backoff::within(timeout, Duration::from_millis(20), Duration::from_millis(500));
    retry(backoff, || async {
        match client.health().await {
            Ok(health) => Attempt::Done(health),
            Err(e) if e.is_identity_mismatch() => Attempt::Fail(e),
            Err(e) => Attempt::Retry(e),
        }
    })
    .await
    .map_err(|e| unreachable_or_impostor(client, timeout, e))
}

fn unreachable_or_impostor(client: &Client, timeout: Duration, e: openbao_client::Error) -> SetupError {
    if e.is_identity_mismatch() {
        return SetupError::OpenBao { doing: "checking OpenBao's identity".into(), source: e };
    }
    SetupError::Unreachable { address: client.address().to_string(), waited: timeout, last: e.to_string() }
}

/// How one unseal attempt ended.
enum Outcome {
    Unsealed,
    /// Still sealed; `disturbed`: the progress showed another client's hand.
    Failed {
        disturbed: bool,
        seen: String,
    },
}

/// Unseals OpenBao if it is sealed and waits until it is active. Returns whether it was sealed.
pub async fn unseal(client: &Client, keystore: &Keystore, timeout: Duration) -> Result<bool, SetupError> {
    let status = client.seal_status().await.doing(|| "reading OpenBao's seal status".into())?;
    if !status.sealed {
        wait_active(client, timeout).await?;
        return Ok(false);
    }
    let clean_failures = std::sync::atomic::AtomicU32::new(0);
    let backoff = Backoff::within(timeout, Duration::from_millis(20), Duration::from_millis(500));
    retry(backoff, || {
        let clean = &clean_failures;
        async move {
            match attempt(client, keystore).await {
                Ok(Outcome::Unsealed) => Attempt::Done(()),
                Ok(Outcome::Failed { disturbed: true, seen }) => {
                    tracing::warn!(
                        address = client.address(),
                        seen,
                        "an unseal attempt was disturbed by another client; starting over"
                    );
                    Attempt::Retry(SetupError::UnsealDisturbed {
                        address: client.address().to_string(),
                        waited: timeout,
                        seen,
                    })
                }
                Ok(Outcome::Failed { disturbed: false, seen }) => {
                    let failed = clean.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    let err = SetupError::ForeignShares { address: client.address().to_string(), seen };
                    if failed >= CLEAN_FAILURES {
                        Attempt::Fail(err)
                    } else {
                        Attempt::Retry(err)
                    }
                }
                Err(SetupError::OpenBao { source, doing }) if source.is_unreachable() => {
                    Attempt::Retry(SetupError::OpenBao { source, doing })
                }
                Err(e) => Attempt::Fail(e),
            }
        }
    })
    .await?;
    tracing::info!(address = client.address(), "unsealed OpenBao");
    wait_active(client, timeout).await?;
    Ok(true)
}

/// One clean attempt: reset whatever is in progress, then give shares one by one, at most the
/// threshold OpenBao states, checking that each moves the progress exactly one step.
async fn attempt(client: &Client, keystore: &Keystore) -> Result<Outcome, SetupError> {
    let mut status = client.seal_status().await.doing(|| "reading OpenBao's seal status".into())?;
    if !status.sealed {
        return Ok(Outcome::Unsealed);
    }
    if status.progress > 0 {
        status = client.unseal_reset().await.doing(|| "resetting a partial unseal attempt".into())?;
    }
    let needed = usize::try_from(status.threshold).unwrap_or(usize::MAX);
    if needed == 0 || needed > keystore.shares().len() {
        return Err(SetupError::ThresholdMismatch {
            address: client.address().to_string(),
            store: status.threshold,
            shares: keystore.shares().len(),
        });
    }
    if status.progress != 0 {
        return Ok(Outcome::Failed {
            disturbed: true,
            seen: format!("progress {} right after a reset", status.progress),
        });
    }
    for (i, share) in keystore.shares().iter().take(needed).enumerate() {
        let given = u64::try_from(i + 1).unwrap_or(u64::MAX);
        match client.unseal(share.expose()).await {
            Ok(s) if !s.sealed => return Ok(Outcome::Unsealed),
            Ok(s) if s.progress == given => {}
            Ok(s) => {
                let seen = format!("progress {} after our share {given} of {needed}", s.progress);
                return Ok(Outcome::Failed { disturbed: true, seen });
            }
            // The shares in this attempt did not combine into the key (OpenBao answers 400 and resets).
            Err(e) if e.status() == Some(400) => {
                return Ok(Outcome::Failed { disturbed: false, seen: e.to_string() });
            }
            Err(e) => {
                return Err(SetupError::OpenBao { doing: format!("unsealing OpenBao with share {i}"), source: e })
            }
        }
    }
    Ok(Outcome::Failed { disturbed: false, seen: format!("still sealed after {needed} shares") })
}

/// Waits until OpenBao is unsealed and active (raft leadership established).
pub async fn wait_active(client: &Client, timeout: Duration) -> Result<(), SetupError> {
    let backoff = Backoff::within(timeout, Duration::from_millis(10), Duration::from_millis(100));
    retry(backoff, || async {
        match client.health().await {
            Ok(h) if h.initialized && !h.sealed && !h.standby => Attempt::Done(()),
            Ok(h) => Attempt::Retry(format!("initialized={} sealed={} standby={}", h.initialized, h.sealed, h.standby)),
            Err(e) if e.is_identity_mismatch() => Attempt::Fail(e.to_string()),
            Err(e) => Attempt::Retry(e.to_string()),
        }
    })
    .await
    .map_err(|last| SetupError::Unreachable { address: client.address().to_string(), waited: timeout, last })
}
