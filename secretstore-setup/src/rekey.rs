//! `security-bootstrap rekey` on a Shamir store: new unseal shares, crash-safe (SPEC §13).
//!
//! OpenBao 2.7's verified rekey (`sys/rotate/root/*`, see `openbao_client::api::rekey`) makes the new
//! shares at the last `update` but keeps opening with the old ones until `verify` has received the
//! threshold of new shares. So:
//!
//! 1. a root token for this run from the current shares (revoked at the end);
//! 2. cancel any stale attempt, `init` with `require_verification` (crash point `rekey-after-init`);
//! 3. `update` with the threshold of current shares → the new shares and a verification nonce;
//! 4. the new shares go durably into the keystore as a *pending generation* (KEK-encrypted item,
//!    [`crate::keystore::pending`]) before OpenBao can switch (`rekey-after-pending`);
//! 5. `verify` with the threshold of new shares: OpenBao switches (`rekey-after-verify`);
//! 6. the pending generation becomes the current shares, durably (`rekey-after-promote`).
//!
//! At every instant the keystore holds the shares that open the store: the current ones until step 5
//! completes, and from step 4 on the new ones too. Every path that unseals or generates a root token
//! from the keystore ([`unseal_generations`], [`obtain_root`]) tries the current shares and, when
//! OpenBao refuses them, the pending ones — and promotes those that worked. A rerun of `rekey` with a
//! pending generation finishes it (OpenBao still waits to verify exactly these shares) or discards it
//! (it cancelled the attempt after proving the current shares open the store) — never the generation
//! that opens the store.

use kdf_plugins::Kek;
use openbao_client::api::rekey::Update;
use openbao_client::{Client, Token};

use crate::crash;
use crate::keystore::format::MAX_SHARES;
use crate::keystore::{BuildError, KeystoreDir, KeystoreError, PendingShares};
use crate::setup::root::{self, Root};
use crate::setup::{file_kek, unseal, Doing, Setup, SetupError};
use crate::{Keystore, UnsealShare};

/// What a rekey did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rekeyed {
    /// New shares were made, verified and stored.
    New {
        /// Number of shares.
        shares: u64,
        /// Threshold.
        threshold: u64,
    },
    /// An interrupted rekey was completed (its shares are current now) and it was what was asked.
    Finished {
        /// Number of shares.
        shares: u64,
        /// Threshold.
        threshold: u64,
    },
}

/// Checks a requested share count and threshold as OpenBao would (pure).
pub fn check_request(shares: u64, threshold: u64) -> Result<(), String> {
    if shares == 0 || shares > MAX_SHARES {
        return Err(format!("--shares {shares}: give 1 to {MAX_SHARES}"));
    }
    if threshold == 0 || threshold > shares {
        return Err(format!("--threshold {threshold}: give 1 to --shares ({shares})"));
    }
    if shares > 1 && threshold < 2 {
        return Err(format!("--threshold {threshold} with {shares} shares: OpenBao needs a threshold of at least 2 when there is more than one share"));
    }
    Ok(())
}

fn build(store: &KeystoreDir) -> impl Fn(BuildError) -> SetupError + '_ {
    |source| SetupError::Keystore(KeystoreError::Build { path: store.path().to_path_buf(), source })
}

/// Unseals OpenBao (if sealed) with the keystore's current shares, and when OpenBao refuses them
/// (wrong shares, or another threshold) with the pending generation of an interrupted rekey, which
/// is then promoted durably. Returns whether OpenBao was sealed, and the keystore as it now is.
pub async fn unseal_generations(
    client: &Client,
    store: &KeystoreDir,
    kek: &Kek,
    keystore: Keystore,
    timeout: std::time::Duration,
) -> Result<(bool, Keystore), SetupError> {
    let Some(pending) = keystore.as_pending().map_err(build(store))? else {
        return unseal::unseal(client, &keystore, timeout).await.map(|sealed| (sealed, keystore));
    };
    match unseal::unseal(client, &keystore, timeout).await {
        Err(refused @ (SetupError::ForeignShares { .. } | SetupError::ThresholdMismatch { .. })) => {
            tracing::warn!(
                address = client.address(),
                "the current unseal shares do not open OpenBao; trying the new shares of an interrupted rekey"
            );
            match unseal::unseal(client, &pending, timeout).await {
                Ok(sealed) => {
                    let promoted = store.promote_pending_shares(kek)?;
                    tracing::info!(
                        "the new shares of an interrupted rekey opened OpenBao; they are the current shares now"
                    );
                    Ok((sealed, promoted))
                }
                Err(_) => Err(refused),
            }
        }
        outcome => outcome.map(|sealed| (sealed, keystore)),
    }
}

/// A root token for this run (recorded with [`root::remember`]) from whichever generation of shares
/// opens the store: with a pending generation, one untried-again root generation with the current
/// shares, then one with the pending ones (promoted durably if they worked); without one, or when
/// neither answered clearly, the usual retrying [`root::obtain`] with the current shares. Returns
/// the keystore as it now is, and whether a pending generation was promoted.
pub async fn obtain_root(
    setup: &Setup,
    client: &Client,
    store: &KeystoreDir,
    kek: &Kek,
    keystore: Keystore,
) -> Result<(Root, Keystore, bool), SetupError> {
    if let Some(pending) = keystore.as_pending().map_err(build(store))? {
        match root::generate_once(setup, client, &keystore).await {
            Ok(root) => return Ok((root::remember(client, store, root).await?, keystore, false)),
            Err(tried) => tracing::warn!(
                tried,
                "the current unseal shares give no root token; trying the new shares of an interrupted rekey"
            ),
        }
        if let Ok(root) = root::generate_once(setup, client, &pending).await {
            let root = root::remember(client, store, root).await?;
            let promoted = store.promote_pending_shares(kek)?;
            tracing::info!("the new shares of an interrupted rekey open OpenBao; they are the current shares now");
            return Ok((root, promoted, true));
        }
    }
    let root = root::obtain(setup, client, store, &keystore).await?;
    Ok((root, keystore, false))
}

/// Rekeys the Shamir store to `want` (shares, threshold), or to its current numbers. See the module
/// documentation for the steps and why each crash leaves a store that opens.
pub async fn rekey(setup: &Setup, want: Option<(u64, u64)>) -> Result<Rekeyed, SetupError> {
    setup.validate()?;
    if setup.static_seal() {
        return Err(SetupError::Config(
            "a static-sealed OpenBao has no unseal shares: `security-bootstrap rekey` without --shares/--threshold rotates its seal key".into(),
        ));
    }
    if let Some((shares, threshold)) = want {
        check_request(shares, threshold).map_err(SetupError::Config)?;
    }
    let client = setup.client()?;
    let health = unseal::wait_for_openbao(&client, setup.store.wait_timeout).await?;
    let store = setup.keystore_dir();
    if !health.initialized {
        return Err(SetupError::Config(format!(
            "OpenBao at {} is not initialized: there is nothing to rekey yet (`security-bootstrap run` or `setup` initializes it)",
            setup.store.address
        )));
    }
    let ikm = setup.ikm().await?;
    let file = store.read()?.filter(|f| f.secret_shares > 0).ok_or_else(|| SetupError::KeystoreMissing {
        address: setup.store.address.clone(),
        path: store.path().to_path_buf(),
    })?;
    let kek = file_kek(&store, &file, &ikm)?;
    drop(ikm);
    let keystore = store.open(&kek)?;
    let (_, keystore) = unseal_generations(&client, &store, &kek, keystore, setup.store.wait_timeout).await?;
    let (root, keystore, promoted) = obtain_root(setup, &client, &store, &kek, keystore).await?;
    let outcome = async {
        let (keystore, finished) = settle_pending(&client, &root.token, &store, &kek, keystore).await?;
        let now = (keystore.shares().len() as u64, keystore.threshold());
        let want = want.unwrap_or(now);
        if (promoted || finished) && want == now {
            return Ok(Rekeyed::Finished { shares: now.0, threshold: now.1 });
        }
        rekey_now(&client, &root.token, &store, &kek, &keystore, want).await
    }
    .await;
    let revoked = client.revoke_self(&root.token).await.doing(|| "revoking this run's root token".into());
    if revoked.is_ok() {
        root::forget_pending(&store);
    }
    let rekeyed = outcome?;
    revoked?;
    Ok(rekeyed)
}

/// With a pending generation while the current shares open the store: finishes it if OpenBao still
/// waits to verify exactly these shares, otherwise cancels OpenBao's attempt and then discards it.
/// Returns the keystore as it now is and whether a pending generation was finished.
async fn settle_pending(
    client: &Client,
    token: &Token,
    store: &KeystoreDir,
    kek: &Kek,
    keystore: Keystore,
) -> Result<(Keystore, bool), SetupError> {
    let Some(pending) = keystore.pending_shares().map_err(build(store))? else { return Ok((keystore, false)) };
    let status = match client.rekey_verify_status(token).await {
        Ok(status) => status,
        // "no rekey in progress"
        Err(e) if e.status() == Some(400) => Default::default(),
        Err(e) => return Err(SetupError::OpenBao { doing: "reading OpenBao's rekey verification".into(), source: e }),
    };
    if status.started && status.threshold == pending.threshold {
        if status.progress > 0 {
            client.rekey_verify_restart(token).await.doing(|| "restarting a partial rekey verification".into())?;
        }
        let nonce =
            client.rekey_verify_status(token).await.doing(|| "reading OpenBao's rekey verification".into())?.nonce;
        match verify(client, token, &pending, &nonce).await {
            Ok(true) => {
                tracing::info!("finished an interrupted rekey: OpenBao verified its new shares");
                crash::point("rekey-after-verify");
                let promoted = store.promote_pending_shares(kek)?;
                crash::point("rekey-after-promote");
                return Ok((promoted, true));
            }
            Ok(false) => {}
            // Refused: these are not the shares OpenBao waits for.
            Err(SetupError::OpenBao { source, .. }) if source.status() == Some(400) => {}
            Err(e) => return Err(e),
        }
    }
    // The current shares opened the store (see `obtain_root`); once the attempt is cancelled the pending
    // ones can never take effect, so forgetting them loses nothing.
    client.rekey_cancel(token).await.doing(|| "cancelling an interrupted rekey".into())?;
    let keystore = store.update(kek, |k| {
        k.discard_pending_shares();
        Ok(())
    })?;
    tracing::warn!("discarded the new shares of an interrupted rekey that OpenBao never switched to (it was restarted or the attempt cancelled)");
    Ok((keystore, false))
}

/// Feeds the threshold of `pending`'s shares to the verification; `true` once OpenBao switched.
async fn verify(client: &Client, token: &Token, pending: &PendingShares, nonce: &str) -> Result<bool, SetupError> {
    let threshold = usize::try_from(pending.threshold).unwrap_or(usize::MAX);
    for (given, share) in (1..).zip(pending.shares.iter().take(threshold)) {
        let complete = client
            .rekey_verify(token, share.expose(), nonce)
            .await
            .doing(|| format!("verifying the new unseal shares (share {given} of {threshold})"))?;
        if complete {
            return Ok(true);
        }
    }
    Ok(false)
}

async fn rekey_now(
    client: &Client,
    token: &Token,
    store: &KeystoreDir,
    kek: &Kek,
    keystore: &Keystore,
    (shares, threshold): (u64, u64),
) -> Result<Rekeyed, SetupError> {
    check_request(shares, threshold).map_err(SetupError::Config)?;
    client.rekey_cancel(token).await.doing(|| "cancelling a stale rekey attempt".into())?;
    let status = client.rekey_init(token, shares, threshold).await.doing(|| "starting the rekey".into())?;
    crash::point("rekey-after-init");
    let required = usize::try_from(status.required).unwrap_or(usize::MAX);
    if required == 0 || required > keystore.shares().len() {
        return Err(SetupError::ThresholdMismatch {
            address: client.address().to_string(),
            store: status.required,
            keystore: keystore.threshold(),
            shares: keystore.shares().len(),
        });
    }
    let mut made = None;
    for (given, share) in (1..).zip(keystore.shares().iter().take(required)) {
        let update = client
            .rekey_update(token, share.expose(), &status.nonce)
            .await
            .doing(|| format!("giving the rekey current share {given} of {required}"))?;
        if let Update::Done { shares, verification_nonce } = update {
            made = Some((shares, verification_nonce));
            break;
        }
    }
    let Some((new, nonce)) = made else {
        let _ = client.rekey_cancel(token).await;
        return Err(SetupError::Rekey(format!(
            "OpenBao did not make new shares after {required} current shares (someone else fed or cancelled the attempt); nothing changed, run `security-bootstrap rekey` again"
        )));
    };
    let new: Vec<UnsealShare> = new.iter().map(|k| UnsealShare::new(k.expose().to_vec())).collect();
    let pending = PendingShares::new(new, threshold, nonce.clone()).map_err(build(store))?;
    // Durable before OpenBao can switch: from here on the keystore holds whichever generation opens it.
    store.update(kek, |k| k.set_pending_shares(&pending))?;
    crash::point("rekey-after-pending");
    if !verify(client, token, &pending, &nonce).await? {
        return Err(SetupError::Rekey(
            "OpenBao did not complete the verification of the new shares; the keystore keeps both generations and every unseal tries both: run `security-bootstrap rekey` again to finish or discard it".into(),
        ));
    }
    crash::point("rekey-after-verify");
    store.promote_pending_shares(kek)?;
    crash::point("rekey-after-promote");
    tracing::info!(shares, threshold, "rekeyed: OpenBao opens with the new shares only, and they are the keystore's");
    Ok(Rekeyed::New { shares, threshold })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked_as_openbao_would() {
        let cases: &[(u64, u64, bool)] = &[
            (5, 3, true),
            (1, 1, true),
            (2, 2, true),
            (255, 2, true),
            (0, 0, false),
            (3, 0, false),
            (3, 4, false),
            (3, 1, false),
            (256, 3, false),
        ];
        for &(shares, threshold, ok) in cases {
            assert_eq!(check_request(shares, threshold).is_ok(), ok, "{shares}/{threshold}");
        }
    }
}
