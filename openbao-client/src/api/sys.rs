//! `sys/`: health, init, unseal, root-token generation, mounts, ACL policies.

use std::collections::BTreeMap;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine as _;
use hyper::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::{segment, Data, Keys};
use crate::{Client, Error, Retry, SecretString, Token, UnsealKey};

/// `GET sys/health`, with every state mapped to a 200 so the body is always read.
#[derive(Debug, Clone, Deserialize)]
pub struct Health {
    /// `sys/init` has been done.
    pub initialized: bool,
    /// The barrier is sealed.
    pub sealed: bool,
    /// This node is a standby.
    #[serde(default)]
    pub standby: bool,
    /// Server version.
    #[serde(default)]
    pub version: String,
    /// The cluster's id (empty until initialized): the same on every member of a raft cluster.
    #[serde(default)]
    pub cluster_id: String,
}

/// `sys/seal-status` / `sys/unseal` answer.
#[derive(Debug, Clone, Deserialize)]
pub struct SealStatus {
    /// Still sealed.
    pub sealed: bool,
    /// Shares needed.
    #[serde(rename = "t")]
    pub threshold: u64,
    /// Total shares.
    #[serde(rename = "n")]
    pub shares: u64,
    /// Shares given so far in this attempt.
    pub progress: u64,
    /// Whether the store is initialized.
    #[serde(default)]
    pub initialized: bool,
    /// The current unseal attempt's nonce (empty when none is in progress). A reset, or a failed
    /// combination, ends the attempt; the next share starts one with a new nonce.
    #[serde(default)]
    pub nonce: String,
    /// The seal's kind (`shamir`, `static`, …).
    #[serde(default, rename = "type")]
    pub seal_type: String,
}

/// `sys/init` answer: the unseal shares and the initial root token. `Debug` shows neither (they are
/// secret types).
#[derive(Debug)]
pub struct InitResponse {
    /// The raw unseal shares.
    pub shares: Vec<UnsealKey>,
    /// The initial root token.
    pub root_token: Token,
}

/// `sys/init` as it comes over the wire; every string is wiped on drop.
#[derive(Deserialize)]
struct RawInit {
    keys_base64: Vec<SecretString>,
    root_token: Token,
}

/// A mounted secrets engine or auth method.
#[derive(Debug, Clone, Deserialize)]
pub struct Mount {
    /// Engine type (`kv`, `approle`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// Engine options (`{"version": "2"}` for KV v2).
    #[serde(default)]
    pub options: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct GenerateRootStatus {
    #[serde(default)]
    nonce: String,
    #[serde(default)]
    required: u64,
    #[serde(default)]
    otp: String,
    #[serde(default)]
    complete: bool,
    #[serde(default)]
    encoded_token: String,
    #[serde(default)]
    encoded_root_token: String,
}

/// Which root-token generation endpoint to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenerateRoot<'a> {
    /// OpenBao ≥ 2.6 `sys/generate-root-token/*`, authenticated with a token allowed to use it.
    Authenticated(&'a Token),
    /// The classic `sys/generate-root/*`, enabled only with the listener option
    /// `disable_unauthed_generate_root_endpoints = false`.
    Unauthenticated,
}

impl Client {
    /// `GET sys/health` (one attempt: callers poll).
    pub async fn health(&self) -> Result<Health, Error> {
        let path = "sys/health?standbyok=true&perfstandbyok=true&uninitcode=200&sealedcode=200&standbycode=200";
        self.call(Method::GET, path, None, None::<&()>, Retry::Once).await
    }

    /// `PUT sys/init`. Never retried: a lost answer would lose the shares.
    pub async fn init(&self, shares: u64, threshold: u64) -> Result<InitResponse, Error> {
        let body = json!({"secret_shares": shares, "secret_threshold": threshold});
        let raw: RawInit = self.call(Method::PUT, "sys/init", None, Some(&body), Retry::Once).await?;
        let mut decoded = Vec::with_capacity(raw.keys_base64.len());
        for key in &raw.keys_base64 {
            decoded.push(UnsealKey::new(STANDARD.decode(key.expose()).map_err(|_| Error::Decode {
                method: "PUT".into(),
                path: "sys/init".into(),
                reason: "keys_base64 holds something that is not base64".into(),
            })?));
        }
        Ok(InitResponse { shares: decoded, root_token: raw.root_token })
    }

    /// `GET sys/seal-status`.
    pub async fn seal_status(&self) -> Result<SealStatus, Error> {
        self.call(Method::GET, "sys/seal-status", None, None::<&()>, Retry::Idempotent).await
    }

    /// `PUT sys/unseal` with one share.
    pub async fn unseal(&self, share: &[u8]) -> Result<SealStatus, Error> {
        let body = json!({"key": STANDARD.encode(share)});
        self.call(Method::PUT, "sys/unseal", None, Some(&body), Retry::Idempotent).await
    }

    /// `PUT sys/unseal {"key": …, "migrate": true}`: one share of a seal migration (a Shamir store
    /// started with a new `seal` stanza). Not retried: the caller reads the progress and decides.
    pub async fn unseal_migrate(&self, share: &[u8]) -> Result<SealStatus, Error> {
        let body = json!({"key": STANDARD.encode(share), "migrate": true});
        self.call(Method::PUT, "sys/unseal", None, Some(&body), Retry::Once).await
    }

    /// `PUT sys/rotate/recovery/init` of an auto-unsealed store: makes `shares` new recovery keys
    /// (threshold `threshold`) and returns them; the previous ones stop working. Needs `sudo` on
    /// `sys/rotate/recovery/*`. Never retried: a lost answer would lose the new keys (the caller makes
    /// new ones again).
    pub async fn rotate_recovery(&self, token: &Token, shares: u64, threshold: u64) -> Result<Vec<UnsealKey>, Error> {
        #[derive(Deserialize)]
        struct Rotated {
            #[serde(default)]
            complete: bool,
            #[serde(default)]
            keys_base64: Vec<SecretString>,
        }
        let body = json!({"secret_shares": shares, "secret_threshold": threshold});
        let path = "sys/rotate/recovery/init";
        let Data { data: rotated }: Data<Rotated> =
            self.call(Method::PUT, path, Some(token), Some(&body), Retry::Once).await?;
        let bad = |reason: &str| Error::Decode { method: "PUT".into(), path: path.into(), reason: reason.into() };
        if !rotated.complete || rotated.keys_base64.is_empty() {
            return Err(bad("the rotation did not complete at once (is verification required?)"));
        }
        rotated
            .keys_base64
            .iter()
            .map(|key| {
                STANDARD
                    .decode(key.expose())
                    .map(UnsealKey::new)
                    .map_err(|_| bad("keys_base64 holds something that is not base64"))
            })
            .collect()
    }

    /// `PUT sys/unseal {"reset": true}`: discards any unseal progress (e.g. a bogus share someone else sent).
    pub async fn unseal_reset(&self) -> Result<SealStatus, Error> {
        self.call(Method::PUT, "sys/unseal", None, Some(&json!({"reset": true})), Retry::Idempotent).await
    }

    /// Generates a root token from unseal shares: cancels any attempt in progress, starts one, feeds
    /// at most as many shares as the attempt requires (never all of them), and decodes the token with
    /// the one-time password.
    ///
    /// Not retried here: on the unauthenticated endpoint anyone who reaches the listener can cancel or
    /// feed the attempt (the nonce is public), so the caller decides whether to start over.
    pub async fn generate_root<'s>(
        &self,
        mode: GenerateRoot<'_>,
        shares: impl IntoIterator<Item = &'s [u8]>,
    ) -> Result<Token, Error> {
        let (base, token) = match mode {
            GenerateRoot::Authenticated(token) => ("sys/generate-root-token", Some(token)),
            GenerateRoot::Unauthenticated => ("sys/generate-root", None),
        };
        let attempt = format!("{base}/attempt");
        self.call_empty(Method::DELETE, &attempt, token, None::<&()>, Retry::Idempotent).await?;
        let started: GenerateRootStatus =
            unwrap_data(self.call(Method::PUT, &attempt, token, Some(&json!({})), Retry::Once).await?, &attempt)?;
        let otp = Zeroizing::new(started.otp.clone());
        let update = format!("{base}/update");
        let required = usize::try_from(started.required).unwrap_or(usize::MAX);
        if required == 0 {
            return Err(Error::Decode {
                method: "PUT".into(),
                path: attempt,
                reason: "the root generation attempt does not say how many shares it requires".into(),
            });
        }
        for share in shares.into_iter().take(required) {
            let body = json!({"key": STANDARD.encode(share), "nonce": started.nonce});
            let status: GenerateRootStatus =
                unwrap_data(self.call(Method::PUT, &update, token, Some(&body), Retry::Once).await?, &update)?;
            if status.complete {
                let encoded =
                    if status.encoded_token.is_empty() { status.encoded_root_token } else { status.encoded_token };
                return decode_root_token(&encoded, &otp).ok_or_else(|| Error::Decode {
                    method: "PUT".into(),
                    path: update.clone(),
                    reason: "the encoded root token does not decode with the one-time password".into(),
                });
            }
        }
        let _ = self.call_empty(Method::DELETE, &attempt, token, None::<&()>, Retry::Idempotent).await;
        Err(Error::Decode {
            method: "PUT".into(),
            path: update,
            reason: "the required number of shares was given but root generation did not complete (a share is not valid, or someone else fed or cancelled the attempt)".into(),
        })
    }

    /// `GET sys/mounts`: secrets engines by path (with the trailing `/`).
    pub async fn mounts(&self, token: &Token) -> Result<BTreeMap<String, Mount>, Error> {
        let data: Data<BTreeMap<String, Mount>> =
            self.call(Method::GET, "sys/mounts", Some(token), None::<&()>, Retry::Idempotent).await?;
        Ok(data.data)
    }

    /// `POST sys/mounts/<path>`.
    pub async fn enable_mount(&self, token: &Token, path: &str, kind: &str, options: Value) -> Result<(), Error> {
        let body = json!({"type": kind, "options": options});
        self.call_empty(Method::POST, &format!("sys/mounts/{path}"), Some(token), Some(&body), Retry::Once).await
    }

    /// `GET sys/auth`: auth methods by path (with the trailing `/`).
    pub async fn auth_mounts(&self, token: &Token) -> Result<BTreeMap<String, Mount>, Error> {
        let data: Data<BTreeMap<String, Mount>> =
            self.call(Method::GET, "sys/auth", Some(token), None::<&()>, Retry::Idempotent).await?;
        Ok(data.data)
    }

    /// `POST sys/auth/<path>`.
    pub async fn enable_auth(&self, token: &Token, path: &str, kind: &str) -> Result<(), Error> {
        let body = json!({"type": kind});
        self.call_empty(Method::POST, &format!("sys/auth/{path}"), Some(token), Some(&body), Retry::Once).await
    }

    /// `GET sys/policies/acl/<name>`: the policy text, or `None`.
    pub async fn read_policy(&self, token: &Token, name: &str) -> Result<Option<String>, Error> {
        #[derive(Deserialize)]
        struct Policy {
            policy: String,
        }
        let path = format!("sys/policies/acl/{}", segment(name));
        let data: Option<Data<Policy>> =
            self.call_opt(Method::GET, &path, Some(token), None::<&()>, Retry::Idempotent).await?;
        Ok(data.map(|d| d.data.policy))
    }

    /// `PUT sys/policies/acl/<name>`.
    pub async fn write_policy(&self, token: &Token, name: &str, policy: &str) -> Result<(), Error> {
        let path = format!("sys/policies/acl/{}", segment(name));
        self.call_empty(Method::PUT, &path, Some(token), Some(&json!({"policy": policy})), Retry::Idempotent).await
    }

    /// `DELETE sys/policies/acl/<name>`.
    pub async fn delete_policy(&self, token: &Token, name: &str) -> Result<(), Error> {
        let path = format!("sys/policies/acl/{}", segment(name));
        self.call_empty(Method::DELETE, &path, Some(token), None::<&()>, Retry::Idempotent).await
    }

    /// `LIST sys/policies/acl`.
    pub async fn list_policies(&self, token: &Token) -> Result<Vec<String>, Error> {
        let data: Option<Data<Keys>> = self
            .call_opt(Method::GET, "sys/policies/acl?list=true", Some(token), None::<&()>, Retry::Idempotent)
            .await?;
        Ok(data.map(|d| d.data.keys).unwrap_or_default())
    }
}

/// Responses of `sys/generate-root-token/*` are wrapped in `data`; those of `sys/generate-root/*` are not.
fn unwrap_data(value: Value, path: &str) -> Result<GenerateRootStatus, Error> {
    let inner = match value.get("data") {
        Some(data) if data.is_object() => data.clone(),
        _ => value,
    };
    serde_json::from_value(inner).map_err(|e| Error::Decode {
        method: "PUT".into(),
        path: path.to_string(),
        reason: format!("generate-root status: {e}"),
    })
}

/// `base64(encoded) XOR otp`, as OpenBao encodes a generated root token.
pub fn decode_root_token(encoded: &str, otp: &str) -> Option<Token> {
    let raw = Zeroizing::new(STANDARD_NO_PAD.decode(encoded.trim_end_matches('=')).ok()?);
    if raw.len() != otp.len() {
        return None;
    }
    let plain: Zeroizing<Vec<u8>> = Zeroizing::new(raw.iter().zip(otp.as_bytes()).map(|(a, b)| a ^ b).collect());
    let text = std::str::from_utf8(&plain).ok()?;
    Some(Token::new(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_token_decoding_is_xor_with_the_otp() {
        let otp = "abcdefghijklmnopqrstuvwxyz";
        let token = "s.0123456789ABCDEFGHIJKLMN";
        let xored: Vec<u8> = token.bytes().zip(otp.bytes()).map(|(a, b)| a ^ b).collect();
        let encoded = STANDARD_NO_PAD.encode(xored);
        assert_eq!(decode_root_token(&encoded, otp).unwrap().expose(), token);
        assert!(decode_root_token(&encoded, "short").is_none());
        assert!(decode_root_token("***", otp).is_none());
    }

    #[test]
    fn init_answer_never_prints_its_shares_or_token() {
        let raw: RawInit =
            serde_json::from_str(r#"{"keys_base64":["c2hhcmVzZWNyZXQ="],"root_token":"s.rootsecret"}"#).unwrap();
        let init = InitResponse {
            shares: raw.keys_base64.iter().map(|k| UnsealKey::new(STANDARD.decode(k.expose()).unwrap())).collect(),
            root_token: raw.root_token,
        };
        assert_eq!(init.shares[0].expose(), b"sharesecret");
        assert_eq!(
            format!("{init:?}"),
            "InitResponse { shares: [UnsealKey([REDACTED; 11 bytes])], root_token: Token([REDACTED]) }"
        );
    }
}
