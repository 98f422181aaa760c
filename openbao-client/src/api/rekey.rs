//! `sys/rotate/root/*`: a Shamir rekey (new unseal shares for the same store), authenticated.
//!
//! Verified against OpenBao 2.7.2: the Vault-style unauthenticated `sys/rekey/*` answers
//! `400 {"errors":["unsupported operation"]}` (the listener option `disable_unauthed_rekey_endpoints`
//! defaults to true since 2.5); `sys/rotate/root/{init,update,verify}` is the same flow behind a token
//! (`403 permission denied` without one). The attempt lives in the server's memory only: an OpenBao
//! restart forgets it. With `require_verification`, the last `update` returns the new shares and a
//! verification nonce but OpenBao keeps opening with the old shares until `verify` has received the
//! threshold of *new* shares; only then does it switch. A failed verification rotates the
//! verification nonce and keeps the attempt. Some answers are wrapped in `data`, the final `update`
//! answer is not, so each is read either way.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hyper::Method;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{Client, Error, Retry, SecretString, Token, UnsealKey};

const INIT: &str = "sys/rotate/root/init";
const UPDATE: &str = "sys/rotate/root/update";
const VERIFY: &str = "sys/rotate/root/verify";

/// A rekey attempt as `init` reports it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RekeyStatus {
    /// An attempt is in progress.
    #[serde(default)]
    pub started: bool,
    /// The attempt's nonce (for `update`).
    #[serde(default)]
    pub nonce: String,
    /// Current shares given so far.
    #[serde(default)]
    pub progress: u64,
    /// Current shares needed (the store's threshold now).
    #[serde(default)]
    pub required: u64,
    /// New shares to make.
    #[serde(default, rename = "n")]
    pub shares: u64,
    /// New threshold.
    #[serde(default, rename = "t")]
    pub threshold: u64,
}

/// A verification as `GET verify` reports it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct VerifyStatus {
    /// A verification is waiting for new shares.
    #[serde(default)]
    pub started: bool,
    /// Its nonce.
    #[serde(default)]
    pub nonce: String,
    /// New shares given so far.
    #[serde(default)]
    pub progress: u64,
    /// New shares needed.
    #[serde(default, rename = "t")]
    pub threshold: u64,
}

/// What one `update` share did.
#[derive(Debug)]
pub enum Update {
    /// More current shares are needed.
    Progress(u64),
    /// The new shares, waiting for verification (OpenBao still opens with the old ones).
    Done {
        /// The new shares.
        shares: Vec<UnsealKey>,
        /// The verification nonce.
        verification_nonce: String,
    },
}

#[derive(Deserialize)]
struct RawUpdate {
    #[serde(default)]
    complete: bool,
    #[serde(default)]
    progress: u64,
    #[serde(default)]
    keys_base64: Vec<SecretString>,
    #[serde(default)]
    verification_nonce: String,
    #[serde(default)]
    verification_required: bool,
}

#[derive(Deserialize)]
struct RawVerify {
    #[serde(default)]
    complete: bool,
    #[serde(default)]
    progress: u64,
}

impl Client {
    /// `GET sys/rotate/root/init`: the attempt in progress, if any.
    pub async fn rekey_status(&self, token: &Token) -> Result<RekeyStatus, Error> {
        let value: Value = self.call(Method::GET, INIT, Some(token), None::<&()>, Retry::Idempotent).await?;
        unwrap(value, "GET", INIT)
    }

    /// `DELETE sys/rotate/root/init`: cancels any attempt (and its pending verification); the current
    /// shares stay valid. Idempotent.
    pub async fn rekey_cancel(&self, token: &Token) -> Result<(), Error> {
        self.call_empty(Method::DELETE, INIT, Some(token), None::<&()>, Retry::Idempotent).await
    }

    /// `PUT sys/rotate/root/init` with `require_verification: true`. Not retried: a second start is
    /// refused while the first runs ("rotation already in progress"); the caller cancels and starts
    /// over.
    pub async fn rekey_init(&self, token: &Token, shares: u64, threshold: u64) -> Result<RekeyStatus, Error> {
        let body = json!({"secret_shares": shares, "secret_threshold": threshold, "require_verification": true});
        let value: Value = self.call(Method::PUT, INIT, Some(token), Some(&body), Retry::Once).await?;
        unwrap(value, "PUT", INIT)
    }

    /// `PUT sys/rotate/root/update` with one current share. Not retried: a repeated share is refused
    /// ("already provided"), and a lost final answer loses the new shares — harmless, since OpenBao
    /// switches only at verification, but the caller must then cancel and start over.
    pub async fn rekey_update(&self, token: &Token, share: &[u8], nonce: &str) -> Result<Update, Error> {
        let body = json!({"key": STANDARD.encode(share), "nonce": nonce});
        let value: Value = self.call(Method::PUT, UPDATE, Some(token), Some(&body), Retry::Once).await?;
        let raw: RawUpdate = unwrap(value, "PUT", UPDATE)?;
        if !raw.complete {
            return Ok(Update::Progress(raw.progress));
        }
        let bad = |reason: &str| Error::Decode { method: "PUT".into(), path: UPDATE.into(), reason: reason.into() };
        if !raw.verification_required || raw.verification_nonce.is_empty() {
            return Err(bad("the rekey completed without verification (was require_verification ignored?)"));
        }
        let shares = raw
            .keys_base64
            .iter()
            .map(|k| STANDARD.decode(k.expose()).map(UnsealKey::new))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| bad("keys_base64 holds something that is not base64"))?;
        if shares.is_empty() {
            return Err(bad("the rekey completed but returned no shares"));
        }
        Ok(Update::Done { shares, verification_nonce: raw.verification_nonce })
    }

    /// `GET sys/rotate/root/verify`: the verification waiting for new shares, if any.
    pub async fn rekey_verify_status(&self, token: &Token) -> Result<VerifyStatus, Error> {
        let value: Value = self.call(Method::GET, VERIFY, Some(token), None::<&()>, Retry::Idempotent).await?;
        unwrap(value, "GET", VERIFY)
    }

    /// `DELETE sys/rotate/root/verify`: drops the shares given to the verification so far (a new
    /// verification nonce; the attempt and its new shares stay). Idempotent.
    pub async fn rekey_verify_restart(&self, token: &Token) -> Result<(), Error> {
        self.call_empty(Method::DELETE, VERIFY, Some(token), None::<&()>, Retry::Idempotent).await
    }

    /// `PUT sys/rotate/root/verify` with one new share: `Ok(true)` once OpenBao has switched to the new
    /// shares. Not retried: a repeated share is refused; the caller reads [`Client::rekey_verify_status`].
    pub async fn rekey_verify(&self, token: &Token, share: &[u8], nonce: &str) -> Result<bool, Error> {
        let body = json!({"key": STANDARD.encode(share), "nonce": nonce});
        let value: Value = self.call(Method::PUT, VERIFY, Some(token), Some(&body), Retry::Once).await?;
        let raw: RawVerify = unwrap(value, "PUT", VERIFY)?;
        let _ = raw.progress;
        Ok(raw.complete)
    }
}

/// Reads an answer that may or may not be wrapped in `data`.
fn unwrap<T: DeserializeOwned>(value: Value, method: &str, path: &str) -> Result<T, Error> {
    let inner = match value.get("data") {
        Some(data) if data.is_object() => data.clone(),
        _ => value,
    };
    serde_json::from_value(inner).map_err(|e| Error::Decode {
        method: method.into(),
        path: path.into(),
        reason: format!("rekey answer: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_wrapped_or_not() {
        // As OpenBao 2.7.2 sent them (keys shortened).
        let wrapped = json!({"request_id":"1f","data":{"n":3,"nonce":"69c2","progress":0,"required":1,"started":true,"t":2,"verification_nonce":"","verification_required":true}});
        let status: RekeyStatus = unwrap(wrapped, "PUT", INIT).unwrap();
        assert!(status.started && status.nonce == "69c2" && status.required == 1 && status.shares == 3);
        let done = json!({"backup":false,"complete":true,"keys_base64":["AAEC"],"nonce":"69c2","verification_nonce":"7754","verification_required":true});
        let raw: RawUpdate = unwrap(done, "PUT", UPDATE).unwrap();
        assert!(raw.complete && raw.verification_nonce == "7754" && raw.keys_base64.len() == 1);
        let verify = json!({"data":{"n":3,"nonce":"7754","progress":1,"started":true,"t":2}});
        let raw: VerifyStatus = unwrap(verify, "GET", VERIFY).unwrap();
        assert!(raw.started && raw.progress == 1 && raw.threshold == 2);
        assert!(unwrap::<RekeyStatus>(json!({"data": {"started": "yes"}}), "GET", INIT).is_err());
    }
}
