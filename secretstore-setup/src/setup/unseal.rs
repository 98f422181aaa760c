//! Waiting for OpenBao, and unsealing it with the keystore's shares.
//!
//! `sys/unseal` needs no token: any process that reaches a listener can reset an attempt or feed it a
//! share of its own, and then ours combine into garbage. So an unseal is a series of *attempts*: each
//! starts clean (a reset if anything is in progress), gives at most the threshold of shares — never
//! every share in the keystore — and checks after each share that the progress is the one our shares
//! alone would make. A disturbed attempt is started over (with backoff) until `wait_timeout`; an
//! attempt is judged disturbed when any answer differs from what our shares alone would produce:
//! the progress, the attempt's nonce (a reset and a new attempt change it), or a refusal (400) before
//! we gave the threshold of shares. Only an attempt refused on our last share with every earlier
//! answer as expected counts as a refusal, and only several of those in a row mean the keystore's
//! shares do not open this store. We send at most the keystore's own threshold of shares, and none if
//! the server states another threshold.
//!
//! Every call goes to the pinned OpenBao only (see `openbao_client::tls`): a server with another key
//! gets no share, and that is reported at once.
//!
//! What remains exposed with an external store (one edgeseal does not supervise): its TCP listener is
//! the only path, so a local process can keep disturbing unseal attempts (a denial of service until it
//! stops; it never learns a share), and can race `sys/init` on a store nobody initialized yet (then
//! setup refuses the store, see [`super::SetupError::KeystoreMissing`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use openbao_client::api::sys::Health;
use openbao_client::retry::{retry, Attempt, Backoff};
use openbao_client::Client;

use super::{Doing, SetupError};
use crate::Keystore;

/// Consecutive attempts refused although nothing disturbed them before the shares are declared
/// foreign. A disturbed attempt starts the count over.
const UNDISTURBED_REFUSALS: u32 = 5;

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// OpenBao is unsealed.
    Unsealed,
    /// Still sealed, and another client's hand was seen: a progress our shares alone would not make,
    /// a nonce that changed (someone reset the attempt and started another), or a refusal before we
    /// had given the threshold of shares (someone else's shares completed the combination).
    Disturbed {
        /// What gave it away.
        seen: String,
    },
    /// Still sealed although every answer was the one our shares alone would give: one nonce
    /// throughout, the progress exactly our count, and the refusal came on our last share. Only
    /// these count towards [`SetupError::ForeignShares`]. (A client that resets and refeeds in the
    /// instant before our last share is not visible in the answers; it has to win that race
    /// `UNDISTURBED_REFUSALS` times in a row.)
    Refused {
        /// What OpenBao answered.
        seen: String,
    },
}

/// OpenBao's answer to one of our shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The seal status it returned.
    Status {
        /// Still sealed.
        sealed: bool,
        /// The attempt's progress.
        progress: u64,
        /// The attempt's nonce.
        nonce: String,
    },
    /// 400: the shares in the attempt did not combine into the key (the attempt is reset).
    Refused(String),
}

/// What one answer means for the attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// As expected; give the next share.
    Next,
    /// The attempt ended: see [`Outcome`].
    Done(Outcome),
}

/// Judges OpenBao's answer to our share `given` (1-based) of `threshold`. `nonce` is the attempt's
/// nonce as the answer to our first share stated it (`None` for the first share). Pure.
pub fn judge(given: u64, threshold: u64, nonce: Option<&str>, answer: Answer) -> Step {
    let disturbed = |seen: String| Step::Done(Outcome::Disturbed { seen });
    match answer {
        Answer::Status { sealed: false, .. } => Step::Done(Outcome::Unsealed),
        Answer::Status { progress, .. } if progress != given => {
            disturbed(format!("progress {progress} after our share {given} of {threshold}"))
        }
        Answer::Status { nonce: now, .. } if nonce.is_some_and(|first| first != now) => disturbed(format!(
            "the unseal nonce changed before our share {given} of {threshold} (the attempt was reset and restarted)"
        )),
        Answer::Status { .. } if given >= threshold => {
            disturbed(format!("still sealed after our share {given} of {threshold} without a refusal"))
        }
        Answer::Status { .. } => Step::Next,
        Answer::Refused(seen) if given < threshold => disturbed(format!(
            "refused on our share {given} of {threshold}: other shares completed the combination ({seen})"
        )),
        Answer::Refused(seen) => Step::Done(Outcome::Refused { seen }),
    }
}

/// Unseals OpenBao if it is sealed and waits until it is active. Returns whether it was sealed.
///
/// Disturbed attempts are retried (with backoff) until `timeout`, then reported as
/// [`SetupError::UnsealDisturbed`]; [`SetupError::ForeignShares`] is reported only after
/// `UNDISTURBED_REFUSALS` consecutive attempts that showed no sign of another client.
pub async fn unseal(client: &Client, keystore: &Keystore, timeout: Duration) -> Result<bool, SetupError> {
    let status = client.seal_status().await.doing(|| "reading OpenBao's seal status".into())?;
    if !status.sealed {
        wait_active(client, timeout).await?;
        return Ok(false);
    }
    let refusals = AtomicU32::new(0);
    let backoff = Backoff::within(timeout, Duration::from_millis(20), Duration::from_millis(500));
    retry(backoff, || {
        let refusals = &refusals;
        async move {
            let disturbed = |seen: String| {
                refusals.store(0, Ordering::Relaxed);
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
            };
            match attempt(client, keystore).await {
                Ok(Outcome::Unsealed) => Attempt::Done(()),
                Ok(Outcome::Disturbed { seen }) => disturbed(seen),
                Ok(Outcome::Refused { seen }) => {
                    let refused = refusals.fetch_add(1, Ordering::Relaxed) + 1;
                    if refused >= UNDISTURBED_REFUSALS {
                        return Attempt::Fail(SetupError::ForeignShares {
                            address: client.address().to_string(),
                            seen,
                        });
                    }
                    tracing::warn!(
                        address = client.address(),
                        seen,
                        refused,
                        "an unseal attempt was refused; trying again"
                    );
                    // Not yet proof: if time runs out now, say what is known.
                    Attempt::Retry(SetupError::UnsealDisturbed {
                        address: client.address().to_string(),
                        waited: timeout,
                        seen: format!("{seen}; refused {refused} time(s) in a row without a visible disturbance"),
                    })
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

/// One clean attempt: reset whatever is in progress, then give the keystore's threshold of shares
/// one by one, judging each answer ([`judge`]).
pub async fn attempt(client: &Client, keystore: &Keystore) -> Result<Outcome, SetupError> {
    attempt_interleaved(client, keystore, |_| Box::pin(async {})).await
}

/// A future run between two of our shares (tests use it to play another client deterministically).
pub type Between = Pin<Box<dyn Future<Output = ()> + Send>>;

/// [`attempt`], running `between(given)` after our share `given` is accepted and before the next.
/// Production code passes a no-op; tests pass another client's interference.
pub async fn attempt_interleaved(
    client: &Client,
    keystore: &Keystore,
    mut between: impl FnMut(u64) -> Between,
) -> Result<Outcome, SetupError> {
    let mut status = client.seal_status().await.doing(|| "reading OpenBao's seal status".into())?;
    if !status.sealed {
        return Ok(Outcome::Unsealed);
    }
    let threshold = keystore.threshold();
    let shares = keystore.shares();
    if status.threshold != threshold || threshold == 0 || usize::try_from(threshold).map_or(true, |t| t > shares.len())
    {
        return Err(SetupError::ThresholdMismatch {
            address: client.address().to_string(),
            store: status.threshold,
            keystore: threshold,
            shares: shares.len(),
        });
    }
    if status.progress > 0 {
        status = client.unseal_reset().await.doing(|| "resetting a partial unseal attempt".into())?;
    }
    if status.progress != 0 {
        return Ok(Outcome::Disturbed { seen: format!("progress {} right after a reset", status.progress) });
    }
    let mut nonce: Option<String> = None;
    for (share, given) in shares.iter().zip(1..=threshold) {
        let answer = match client.unseal(share.expose()).await {
            Ok(s) => Answer::Status { sealed: s.sealed, progress: s.progress, nonce: s.nonce },
            Err(e) if e.status() == Some(400) => Answer::Refused(e.to_string()),
            Err(e) => {
                return Err(SetupError::OpenBao { doing: format!("unsealing OpenBao with share {given}"), source: e })
            }
        };
        let now = match &answer {
            Answer::Status { nonce, .. } => Some(nonce.clone()),
            Answer::Refused(_) => None,
        };
        match judge(given, threshold, nonce.as_deref(), answer) {
            Step::Done(outcome) => return Ok(outcome),
            Step::Next => {}
        }
        if nonce.is_none() {
            nonce = now;
        }
        between(given).await;
    }
    Ok(Outcome::Disturbed { seen: format!("still sealed after {threshold} shares") })
}

/// Waits until OpenBao is unsealed and active (raft leadership established), looking every 10 ms:
/// a boot waits on this, and a growing pause would see the store open up to that pause late.
pub async fn wait_active(client: &Client, timeout: Duration) -> Result<(), SetupError> {
    let backoff = Backoff::within(timeout, Duration::from_millis(10), Duration::from_millis(10));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn status(sealed: bool, progress: u64, nonce: &str) -> Answer {
        Answer::Status { sealed, progress, nonce: nonce.into() }
    }

    fn disturbed(step: &Step) -> bool {
        matches!(step, Step::Done(Outcome::Disturbed { .. }))
    }

    #[test]
    fn judge_tells_disturbed_attempts_from_refused_ones() {
        let refused = || Answer::Refused("400".into());
        // (given, threshold, first nonce, answer, expected: "next" | "unsealed" | "disturbed" | "refused")
        let cases: Vec<(u64, u64, Option<&str>, Answer, &str)> = vec![
            (1, 3, None, status(true, 1, "n1"), "next"),
            (2, 3, Some("n1"), status(true, 2, "n1"), "next"),
            (3, 3, Some("n1"), status(false, 0, ""), "unsealed"),
            (3, 3, Some("n1"), refused(), "refused"),
            (1, 1, None, refused(), "refused"),
            // Someone fed a share between ours: the progress runs ahead.
            (2, 3, Some("n1"), status(true, 3, "n1"), "disturbed"),
            // Someone's share completed the combination before we gave the threshold.
            (2, 3, Some("n1"), refused(), "disturbed"),
            (1, 3, None, refused(), "disturbed"),
            // Reset and one fake share between ours: progress looks right, the nonce does not.
            (2, 3, Some("n1"), status(true, 2, "n2"), "disturbed"),
            (1, 3, None, status(true, 1, ""), "next"),
            (3, 3, Some("n1"), status(true, 3, "n1"), "disturbed"),
            (2, 3, Some("n1"), status(true, 1, "n1"), "disturbed"),
        ];
        for (given, threshold, nonce, answer, expected) in cases {
            let step = judge(given, threshold, nonce, answer.clone());
            let got = match &step {
                Step::Next => "next",
                Step::Done(Outcome::Unsealed) => "unsealed",
                s if disturbed(s) => "disturbed",
                _ => "refused",
            };
            assert_eq!(got, expected, "share {given}/{threshold}, nonce {nonce:?}, {answer:?}: {step:?}");
        }
    }
}
