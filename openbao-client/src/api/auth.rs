//! `auth/token/*` (tokens and token roles) and `auth/<approle>/*`.

use hyper::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{segment, Data, Keys};
use crate::{Client, Error, Retry, SecretString, Token};

/// The `auth` object of a login or token-create response — exactly what EdgeX's token file holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Auth {
    /// The token.
    pub client_token: Token,
    /// Its accessor (not a secret: it can only look up, renew or revoke).
    pub accessor: String,
    /// All policies attached.
    #[serde(default)]
    pub policies: Vec<String>,
    /// TTL in seconds.
    #[serde(default)]
    pub lease_duration: u64,
    /// Whether it can be renewed.
    #[serde(default)]
    pub renewable: bool,
    /// Every other field OpenBao returned (token_policies, metadata, entity_id, orphan, …), kept as is.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[derive(Deserialize)]
struct AuthEnvelope {
    auth: Auth,
}

/// What `auth/token/lookup-self` or `lookup-accessor` says about a token.
#[derive(Debug, Clone, Deserialize)]
pub struct TokenInfo {
    /// The accessor.
    #[serde(default)]
    pub accessor: String,
    /// Policies.
    #[serde(default)]
    pub policies: Vec<String>,
    /// Remaining TTL in seconds (0 = never expires, e.g. root).
    #[serde(default)]
    pub ttl: u64,
    /// Metadata.
    #[serde(default)]
    pub meta: Option<Map<String, Value>>,
    /// Token role it was created against.
    #[serde(default)]
    pub role: Option<String>,
}

/// An AppRole secret-id just created.
#[derive(Debug, Clone, Deserialize)]
pub struct SecretId {
    /// The secret.
    pub secret_id: SecretString,
    /// Its accessor.
    pub secret_id_accessor: String,
}

impl Client {
    /// `POST auth/token/create/<role>` with metadata and, optionally, a TTL in seconds (token roles
    /// have no TTL of their own; without one the mount's default applies).
    pub async fn create_token(
        &self,
        token: &Token,
        role: &str,
        meta: &Map<String, Value>,
        ttl_secs: Option<u64>,
    ) -> Result<Auth, Error> {
        let path = format!("auth/token/create/{}", segment(role));
        let mut body = json!({"meta": meta});
        if let Some(ttl) = ttl_secs {
            body["ttl"] = json!(format!("{ttl}s"));
        }
        let envelope: AuthEnvelope = self.call(Method::POST, &path, Some(token), Some(&body), Retry::Once).await?;
        Ok(envelope.auth)
    }

    /// `GET auth/token/lookup-self`.
    pub async fn lookup_self(&self, token: &Token) -> Result<TokenInfo, Error> {
        let data: Data<TokenInfo> =
            self.call(Method::GET, "auth/token/lookup-self", Some(token), None::<&()>, Retry::Idempotent).await?;
        Ok(data.data)
    }

    /// `POST auth/token/renew-self`.
    pub async fn renew_self(&self, token: &Token) -> Result<Auth, Error> {
        let envelope: AuthEnvelope =
            self.call(Method::POST, "auth/token/renew-self", Some(token), Some(&json!({})), Retry::Idempotent).await?;
        Ok(envelope.auth)
    }

    /// `POST auth/token/revoke-self`.
    pub async fn revoke_self(&self, token: &Token) -> Result<(), Error> {
        self.call_empty(Method::POST, "auth/token/revoke-self", Some(token), Some(&json!({})), Retry::Idempotent).await
    }

    /// `POST auth/token/lookup-accessor`; `None` when the accessor is unknown (revoked or expired).
    pub async fn lookup_accessor(&self, token: &Token, accessor: &str) -> Result<Option<TokenInfo>, Error> {
        let body = json!({"accessor": accessor});
        match self
            .call::<Data<TokenInfo>>(
                Method::POST,
                "auth/token/lookup-accessor",
                Some(token),
                Some(&body),
                Retry::Idempotent,
            )
            .await
        {
            Ok(data) => Ok(Some(data.data)),
            Err(Error::Api { status: 400 | 403 | 404, ref message, .. })
                if message.contains("invalid accessor") || message.contains("invalid token") =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// `POST auth/token/revoke-accessor`. Revoking an unknown accessor is not an error.
    pub async fn revoke_accessor(&self, token: &Token, accessor: &str) -> Result<(), Error> {
        let body = json!({"accessor": accessor});
        match self
            .call_empty(Method::POST, "auth/token/revoke-accessor", Some(token), Some(&body), Retry::Idempotent)
            .await
        {
            Err(Error::Api { status: 400, ref message, .. })
                if message.contains("invalid accessor") || message.contains("invalid token") =>
            {
                Ok(())
            }
            other => other,
        }
    }

    /// `GET auth/token/roles/<name>`.
    pub async fn read_token_role(&self, token: &Token, name: &str) -> Result<Option<Map<String, Value>>, Error> {
        let path = format!("auth/token/roles/{}", segment(name));
        let data: Option<Data<Map<String, Value>>> =
            self.call_opt(Method::GET, &path, Some(token), None::<&()>, Retry::Idempotent).await?;
        Ok(data.map(|d| d.data))
    }

    /// `POST auth/token/roles/<name>`.
    pub async fn write_token_role(&self, token: &Token, name: &str, role: &Value) -> Result<(), Error> {
        let path = format!("auth/token/roles/{}", segment(name));
        self.call_empty(Method::POST, &path, Some(token), Some(role), Retry::Idempotent).await
    }

    /// `DELETE auth/token/roles/<name>`.
    pub async fn delete_token_role(&self, token: &Token, name: &str) -> Result<(), Error> {
        let path = format!("auth/token/roles/{}", segment(name));
        self.call_empty(Method::DELETE, &path, Some(token), None::<&()>, Retry::Idempotent).await
    }

    /// `LIST auth/token/roles`.
    pub async fn list_token_roles(&self, token: &Token) -> Result<Vec<String>, Error> {
        let data: Option<Data<Keys>> = self
            .call_opt(Method::GET, "auth/token/roles?list=true", Some(token), None::<&()>, Retry::Idempotent)
            .await?;
        Ok(data.map(|d| d.data.keys).unwrap_or_default())
    }

    /// `GET auth/<mount>/role/<role>`.
    pub async fn read_approle(
        &self,
        token: &Token,
        mount: &str,
        role: &str,
    ) -> Result<Option<Map<String, Value>>, Error> {
        let path = format!("auth/{mount}/role/{}", segment(role));
        let data: Option<Data<Map<String, Value>>> =
            self.call_opt(Method::GET, &path, Some(token), None::<&()>, Retry::Idempotent).await?;
        Ok(data.map(|d| d.data))
    }

    /// `POST auth/<mount>/role/<role>`.
    pub async fn write_approle(&self, token: &Token, mount: &str, role: &str, body: &Value) -> Result<(), Error> {
        let path = format!("auth/{mount}/role/{}", segment(role));
        self.call_empty(Method::POST, &path, Some(token), Some(body), Retry::Idempotent).await
    }

    /// `GET auth/<mount>/role/<role>/role-id`.
    pub async fn approle_role_id(&self, token: &Token, mount: &str, role: &str) -> Result<String, Error> {
        #[derive(Deserialize)]
        struct RoleId {
            role_id: String,
        }
        let path = format!("auth/{mount}/role/{}/role-id", segment(role));
        let data: Data<RoleId> = self.call(Method::GET, &path, Some(token), None::<&()>, Retry::Idempotent).await?;
        Ok(data.data.role_id)
    }

    /// `POST auth/<mount>/role/<role>/secret-id`.
    pub async fn create_secret_id(&self, token: &Token, mount: &str, role: &str) -> Result<SecretId, Error> {
        let path = format!("auth/{mount}/role/{}/secret-id", segment(role));
        let data: Data<SecretId> = self.call(Method::POST, &path, Some(token), Some(&json!({})), Retry::Once).await?;
        Ok(data.data)
    }

    /// `LIST auth/<mount>/role/<role>/secret-id`: the accessors of existing secret-ids.
    pub async fn list_secret_id_accessors(&self, token: &Token, mount: &str, role: &str) -> Result<Vec<String>, Error> {
        let path = format!("auth/{mount}/role/{}/secret-id?list=true", segment(role));
        let data: Option<Data<Keys>> =
            self.call_opt(Method::GET, &path, Some(token), None::<&()>, Retry::Idempotent).await?;
        Ok(data.map(|d| d.data.keys).unwrap_or_default())
    }

    /// `POST auth/<mount>/role/<role>/secret-id-accessor/destroy`.
    pub async fn destroy_secret_id(&self, token: &Token, mount: &str, role: &str, accessor: &str) -> Result<(), Error> {
        let path = format!("auth/{mount}/role/{}/secret-id-accessor/destroy", segment(role));
        let body = json!({"secret_id_accessor": accessor});
        self.call_empty(Method::POST, &path, Some(token), Some(&body), Retry::Idempotent).await
    }

    /// `POST auth/<mount>/login`.
    pub async fn approle_login(&self, mount: &str, role_id: &str, secret_id: &SecretString) -> Result<Auth, Error> {
        let path = format!("auth/{mount}/login");
        let body = json!({"role_id": role_id, "secret_id": secret_id.expose()});
        let envelope: AuthEnvelope = self.call(Method::POST, &path, None, Some(&body), Retry::Idempotent).await?;
        Ok(envelope.auth)
    }

    /// `POST auth/<mount>/login {"name": <name>}` of the `cert` auth method: OpenBao authenticates the
    /// TLS client certificate of this connection (see [`Client::with_identity`]). Retried on a failed
    /// connection: a repeated login only makes another short-lived token.
    pub async fn cert_login(&self, mount: &str, name: &str) -> Result<Auth, Error> {
        let path = format!("auth/{}/login", segment(mount));
        let body = json!({"name": name});
        let envelope: AuthEnvelope = self.call(Method::POST, &path, None, Some(&body), Retry::Idempotent).await?;
        Ok(envelope.auth)
    }

    /// `POST auth/<mount>/certs/<name>`: registers a client certificate (PEM) of the `cert` auth
    /// method; a login with its key gets `policies` for `ttl_secs`.
    pub async fn write_cert_entry(
        &self,
        token: &Token,
        mount: &str,
        name: &str,
        certificate: &str,
        policies: &[&str],
        ttl_secs: u64,
    ) -> Result<(), Error> {
        let path = format!("auth/{}/certs/{}", segment(mount), segment(name));
        let body = json!({
            "certificate": certificate,
            "token_policies": policies,
            "token_ttl": ttl_secs,
            "token_max_ttl": ttl_secs,
        });
        self.call_empty(Method::POST, &path, Some(token), Some(&body), Retry::Idempotent).await
    }

    /// `DELETE auth/<mount>/certs/<name>`: removes a certificate entry of the `cert` auth method (no
    /// new login with it). A missing entry is not an error; retried: a repeated delete changes nothing.
    pub async fn delete_cert_entry(&self, token: &Token, mount: &str, name: &str) -> Result<(), Error> {
        let path = format!("auth/{}/certs/{}", segment(mount), segment(name));
        match self.call_empty(Method::DELETE, &path, Some(token), None::<&()>, Retry::Idempotent).await {
            Err(Error::Api { status: 404, .. }) => Ok(()),
            other => other,
        }
    }
}
