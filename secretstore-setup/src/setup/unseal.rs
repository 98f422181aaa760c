//! Waiting for OpenBao, and unsealing it with the keystore's shares.

use std::time::{Duration, Instant};

use openbao_client::api::sys::Health;
use openbao_client::Client;

use super::{Doing, SetupError};
use crate::Keystore;

/// Polls `sys/health` until OpenBao answers, for at most `timeout`.
pub async fn wait_for_openbao(client: &Client, timeout: Duration) -> Result<Health, SetupError> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(20);
    loop {
        match client.health().await {
            Ok(health) => return Ok(health),
            Err(e) if Instant::now() + pause >= deadline => {
                return Err(SetupError::Unreachable {
                    address: client.address().to_string(),
                    waited: timeout,
                    last: e.to_string(),
                })
            }
            Err(_) => {}
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

/// Unseals OpenBao if it is sealed and waits until it is active. Returns whether it was sealed.
pub async fn unseal(client: &Client, keystore: &Keystore, timeout: Duration) -> Result<bool, SetupError> {
    let status = client.seal_status().await.doing(|| "reading OpenBao's seal status".into())?;
    let was_sealed = status.sealed;
    if was_sealed {
        // `sys/unseal` is unauthenticated: anyone local could have fed a bogus share to make our
        // shares combine into garbage. Start from a clean attempt.
        if status.progress > 0 {
            client.unseal_reset().await.doing(|| "resetting a partial unseal attempt".into())?;
        }
        let mut sealed = true;
        for (i, share) in keystore.shares().iter().enumerate() {
            let status = client.unseal(share.expose()).await.doing(|| format!("unsealing OpenBao with share {i}"))?;
            if !status.sealed {
                sealed = false;
                break;
            }
        }
        if sealed {
            return Err(SetupError::Config(
                "every share in the keystore was given but OpenBao is still sealed: the keystore belongs to another store"
                    .into(),
            ));
        }
        tracing::info!(address = client.address(), "unsealed OpenBao");
    }
    wait_active(client, timeout).await?;
    Ok(was_sealed)
}

/// Waits until OpenBao is unsealed and active (raft leadership established).
pub async fn wait_active(client: &Client, timeout: Duration) -> Result<(), SetupError> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match client.health().await {
            Ok(h) if h.initialized && !h.sealed && !h.standby => return Ok(()),
            Ok(h) => format!("initialized={} sealed={} standby={}", h.initialized, h.sealed, h.standby),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(SetupError::Unreachable { address: client.address().to_string(), waited: timeout, last });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
