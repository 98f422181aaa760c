//! KV version 2: read a secret, create one only if it does not exist.

use hyper::Method;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::{Client, Error, Retry, Token};

#[derive(Deserialize)]
struct KvData {
    data: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
struct KvEnvelope {
    data: KvData,
}

/// Whether [`Client::kv_create`] wrote the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// It was written now.
    Written,
    /// It already existed; nothing was changed.
    Existed,
}

impl Client {
    /// `GET <mount>/data/<path>`: the latest version's data, or `None`.
    pub async fn kv_read(&self, token: &Token, mount: &str, path: &str) -> Result<Option<Map<String, Value>>, Error> {
        let api = format!("{mount}/data/{path}");
        let envelope: Option<KvEnvelope> =
            self.call_opt(Method::GET, &api, Some(token), None::<&()>, Retry::Idempotent).await?;
        Ok(envelope.and_then(|e| e.data.data))
    }

    /// `POST <mount>/data/<path>` with `cas: 0`: creates the secret only if it has never been written.
    pub async fn kv_create(
        &self,
        token: &Token,
        mount: &str,
        path: &str,
        data: &Map<String, Value>,
    ) -> Result<Created, Error> {
        let api = format!("{mount}/data/{path}");
        let body = json!({"data": data, "options": {"cas": 0}});
        match self.call_empty(Method::POST, &api, Some(token), Some(&body), Retry::Idempotent).await {
            Ok(()) => Ok(Created::Written),
            Err(Error::Api { status: 400, ref message, .. }) if message.contains("check-and-set") => {
                Ok(Created::Existed)
            }
            Err(e) => Err(e),
        }
    }
}
