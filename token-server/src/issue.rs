//! Issuing tokens with the token-issuing token: one per request, or, with `reuse: true`, one shared
//! token per service, replaced by a new one once half its TTL has passed (the old one stays valid
//! until it expires, so holders are not cut off). Store down or sealed → an error the server turns into 503 quickly.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use openbao_client::api::auth::Auth;
use openbao_client::{Client, Token};
use serde_json::{Map, Value};
use thiserror::Error;
use tokio::sync::{Mutex, RwLock};

use crate::attest::facts::Facts;
use crate::config::ServiceRule;

/// OpenBao could not issue a token.
#[derive(Debug, Error)]
#[error("the secret store cannot issue tokens right now: {0}")]
pub struct Unavailable(pub String);

/// Issues tokens for attested callers.
#[derive(Debug)]
pub struct Issuer {
    client: Client,
    token: RwLock<Token>,
    shared: Mutex<HashMap<String, (Auth, Instant)>>,
}

impl Issuer {
    /// An issuer using `token` (policy `edgeseal-token-issuer`) against `client`.
    pub fn new(client: Client, token: Token) -> Self {
        Self { client, token: RwLock::new(token), shared: Mutex::default() }
    }

    /// A token for `rule`'s service, created for the caller described by `facts`.
    pub async fn issue(&self, rule: &ServiceRule, facts: &Facts) -> Result<Auth, Unavailable> {
        if rule.reuse {
            let mut shared = self.shared.lock().await;
            if let Some((auth, at)) = shared.get(&rule.name) {
                if at.elapsed() < Duration::from_secs(auth.lease_duration / 2) {
                    return Ok(auth.clone());
                }
            }
            let meta = Map::from_iter([
                ("service".to_string(), Value::String(rule.name.clone())),
                ("attestation".to_string(), Value::String("shared".into())),
            ]);
            let auth = self.create(rule, meta).await?;
            shared.insert(rule.name.clone(), (auth.clone(), Instant::now()));
            return Ok(auth);
        }
        let mut meta = Map::from_iter([
            ("service".to_string(), Value::String(rule.name.clone())),
            ("pid".to_string(), Value::String(facts.pid.to_string())),
        ]);
        match &facts.container_id {
            Some(id) => {
                meta.insert("attestation".into(), Value::String("docker".into()));
                meta.insert("container_id".into(), Value::String(id.clone()));
            }
            None => {
                meta.insert("attestation".into(), Value::String("unix".into()));
            }
        }
        self.create(rule, meta).await
    }

    async fn create(&self, rule: &ServiceRule, meta: Map<String, Value>) -> Result<Auth, Unavailable> {
        let token = self.token.read().await.clone();
        self.client
            .create_token(&token, &rule.role, &meta, rule.ttl.map(|t| t.as_secs()))
            .await
            .map_err(|e| Unavailable(e.to_string()))
    }

    /// The OpenBao client tokens are issued through (reads made with an issued token go through it too).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Revokes the token with `accessor` (one edgeseal created only to read a secret for its caller).
    pub async fn revoke(&self, accessor: &str) -> Result<(), Unavailable> {
        let token = self.token.read().await.clone();
        self.client.revoke_accessor(&token, accessor).await.map_err(|e| Unavailable(e.to_string()))
    }

    /// Healthy when OpenBao is unsealed and the issuing token is valid.
    pub async fn health(&self) -> Result<(), Unavailable> {
        let health = self.client.health().await.map_err(|e| Unavailable(e.to_string()))?;
        if !health.initialized || health.sealed {
            return Err(Unavailable(format!(
                "OpenBao is {}",
                if health.sealed { "sealed" } else { "not initialized" }
            )));
        }
        let token = self.token.read().await.clone();
        self.client
            .lookup_self(&token)
            .await
            .map_err(|e| Unavailable(format!("the issuing token does not work: {e}")))?;
        Ok(())
    }

    /// Replaces the issuing token (after setup made a new one).
    pub async fn set_token(&self, token: Token) {
        *self.token.write().await = token;
        self.shared.lock().await.clear();
    }

    /// Renews the issuing token; the server calls this periodically.
    pub async fn renew(&self) -> Result<(), Unavailable> {
        let token = self.token.read().await.clone();
        self.client.renew_self(&token).await.map(|_| ()).map_err(|e| Unavailable(e.to_string()))
    }
}
