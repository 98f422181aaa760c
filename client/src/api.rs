//! The token socket's endpoints (SPEC §7) as pure functions: the [`Request`] for each, and the
//! decoding of its answer. No I/O here.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::value::RawValue;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::secret::{SecretInfo, Token, Value};
use crate::wire::{Request, Response};

/// Whether edgeseal can have a secret of this name: 1-128 of `[A-Za-z0-9._-]`, not `.` or `..`
/// (the server's rule; checked here so that a name can never change the request's path or query).
pub fn valid_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// `GET /v1/secrets[?service=S]`.
pub(crate) fn list(service: Option<&str>) -> Request {
    Request { method: "GET", target: with_query("/v1/secrets".into(), None, service), body: None }
}

/// `GET /v1/secrets/<name>[?version=N][&service=S]`; `name` must be [`valid_name`].
pub(crate) fn read(name: &str, version: Option<u64>, service: Option<&str>) -> Request {
    Request { method: "GET", target: with_query(format!("/v1/secrets/{name}"), version, service), body: None }
}

/// `POST /v1/token` with `{"service": S}`, or an empty body.
pub(crate) fn token(service: Option<&str>) -> Request {
    let body = service.map(|s| serde_json::json!({ "service": s }).to_string()).unwrap_or_default();
    Request { method: "POST", target: "/v1/token".into(), body: Some(body) }
}

fn with_query(path: String, version: Option<u64>, service: Option<&str>) -> String {
    let mut query = Vec::new();
    if let Some(version) = version {
        query.push(format!("version={version}"));
    }
    if let Some(service) = service {
        query.push(format!("service={}", percent_encode(service)));
    }
    if query.is_empty() {
        path
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

/// Everything but RFC 3986's unreserved characters as `%XX`.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The body of a 2xx answer, else the error the status means ([`Error::from_answer`]).
pub(crate) fn success(socket: &Path, response: Response, name: Option<&str>) -> Result<Zeroizing<Vec<u8>>> {
    if (200..300).contains(&response.status) {
        Ok(response.body)
    } else {
        Err(Error::from_answer(socket, response.status, &response.body, name))
    }
}

/// `{"secrets": [{"name", "version"}]}`.
pub(crate) fn decode_list(socket: &Path, body: &[u8]) -> Result<Vec<SecretInfo>> {
    #[derive(Deserialize)]
    struct Listed {
        secrets: Vec<SecretInfo>,
    }
    serde_json::from_slice::<Listed>(body)
        .map(|l| l.secrets)
        .map_err(|e| Error::protocol(socket, format!("the list of secrets is not the JSON expected ({e})")))
}

/// `{"name", "version", "data": {k: v}}` of the secret `name`. The data is copied out of the body
/// into zeroizing buffers only; serde's error messages (which could quote a value) are not kept.
pub(crate) fn decode_read(socket: &Path, name: &str, body: &[u8]) -> Result<Value> {
    #[derive(Deserialize)]
    struct Read<'a> {
        name: String,
        version: u64,
        #[serde(borrow)]
        data: &'a RawValue,
    }
    let read: Read<'_> = serde_json::from_slice(body).map_err(|e| {
        Error::protocol(socket, format!("the secret's answer is not the JSON expected ({})", position(&e)))
    })?;
    if read.name != name {
        return Err(Error::protocol(socket, format!("asked for secret {name:?}, the answer is for {:?}", read.name)));
    }
    let keys: BTreeMap<String, &RawValue> = serde_json::from_str(read.data.get())
        .map_err(|e| Error::protocol(socket, format!("the secret's data is not a JSON object ({})", position(&e))))?;
    let single = match keys.get("value") {
        Some(raw) if keys.len() == 1 => serde_json::from_str::<String>(raw.get()).map(Zeroizing::new).ok(),
        _ => None,
    };
    let single = single.ok_or_else(|| keys.keys().cloned().collect());
    Ok(Value { version: read.version, json: Zeroizing::new(read.data.get().to_string()), single })
}

/// OpenBao's token-create `auth`, as the server passes it on (other fields ignored).
#[derive(Deserialize)]
pub(crate) struct Auth {
    #[serde(deserialize_with = "zeroizing")]
    pub(crate) client_token: Zeroizing<String>,
    #[serde(default)]
    pub(crate) accessor: String,
    #[serde(default)]
    pub(crate) lease_duration: u64,
    #[serde(default)]
    pub(crate) renewable: bool,
    #[serde(default)]
    pub(crate) policies: Vec<String>,
}

fn zeroizing<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Zeroizing<String>, D::Error> {
    String::deserialize(d).map(Zeroizing::new)
}

/// `{"service", "auth": {...}}`.
pub(crate) fn decode_token(socket: &Path, body: &[u8]) -> Result<Token> {
    #[derive(Deserialize)]
    struct Issued {
        #[serde(default)]
        service: String,
        auth: Auth,
    }
    let issued: Issued = serde_json::from_slice(body).map_err(|e| {
        Error::protocol(socket, format!("the token answer is not the JSON expected ({})", position(&e)))
    })?;
    Ok(Token::from_auth(issued.service, issued.auth))
}

/// Deserializes a secret's data into the caller's type; a mismatch is reported by kind and position
/// only (serde's message could quote the value).
pub(crate) fn decode_json<T: serde::de::DeserializeOwned>(name: &str, value: &Value) -> Result<T> {
    serde_json::from_str(&value.json).map_err(|e| Error::Decode { name: name.to_string(), reason: position(&e) })
}

/// What kind of JSON error, and where; never its text.
fn position(error: &serde_json::Error) -> String {
    let kind = match error.classify() {
        serde_json::error::Category::Data => "a value or key does not fit",
        serde_json::error::Category::Syntax => "not valid JSON",
        serde_json::error::Category::Eof => "cut off",
        serde_json::error::Category::Io => "unreadable",
    };
    format!("{kind} at line {} column {}", error.line(), error.column())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOCKET: &str = "/run/edgeseal/token.sock";

    #[test]
    fn names_that_could_change_the_path_or_query_are_refused() {
        for good in ["db", "db.url", "MQTT_password-2", &"a".repeat(128), "..."] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "../token", "x?service=other", "a b", "a%2Fb", "é", &"a".repeat(129), "a#b"]
        {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn requests_name_the_secret_version_and_asserted_service() {
        assert_eq!(list(None).target, "/v1/secrets");
        assert_eq!(list(Some("svc-a")).target, "/v1/secrets?service=svc-a");
        assert_eq!(read("db", None, None).target, "/v1/secrets/db");
        assert_eq!(read("db", Some(2), Some("a b&c")).target, "/v1/secrets/db?version=2&service=a%20b%26c");
        assert_eq!(token(None).body.as_deref(), Some(""));
        assert_eq!(token(Some("svc")).body.as_deref(), Some(r#"{"service":"svc"}"#));
        assert_eq!((token(None).method, list(None).method), ("POST", "GET"));
    }

    #[test]
    fn answers_decode_to_values_without_quoting_them_in_errors() {
        let socket = Path::new(SOCKET);
        let single = decode_read(socket, "db", br#"{"name":"db","version":3,"data":{"value":"s3cr\"et"}}"#).unwrap();
        assert_eq!((single.version, single.single.as_deref().map(|s| s.as_str())), (3, Ok("s3cr\"et")));
        let multi =
            decode_read(socket, "db", br#"{"name":"db","version":1,"data":{"username":"u","password":"p-VAL"}}"#)
                .unwrap();
        assert_eq!(multi.single.clone().err(), Some(vec!["password".to_string(), "username".to_string()]));
        assert_eq!(&*multi.json, r#"{"username":"u","password":"p-VAL"}"#);
        // A single key that is not a string is not a single value.
        let number = decode_read(socket, "n", br#"{"name":"n","version":1,"data":{"value":5}}"#).unwrap();
        assert_eq!(number.single.err(), Some(vec!["value".to_string()]));

        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct Port {
            port: u16,
        }
        let wrong = decode_read(socket, "p", br#"{"name":"p","version":1,"data":{"port":"VALUE-70000"}}"#).unwrap();
        let error = decode_json::<Port>("p", &wrong).unwrap_err();
        assert!(matches!(error, Error::Decode { .. }) && !error.to_string().contains("VALUE-70000"), "{error}");

        let bad: &[&[u8]] = &[
            b"",
            b"not json",
            br#"{"name":"other","version":1,"data":{"value":"x"}}"#,
            br#"{"name":"db","version":1,"data":["VALUE-x"]}"#,
            br#"{"name":"db","version":"1","data":{"value":"VALUE-x"}}"#,
            br#"{"name":"db","data":{"value":"VALUE-x"}}"#,
        ];
        for body in bad {
            let error = decode_read(socket, "db", body).unwrap_err();
            assert!(matches!(error, Error::Protocol { .. }), "{error:?}");
            assert!(!error.to_string().contains("VALUE-x"), "{error}");
        }

        let listed = decode_list(socket, br#"{"secrets":[{"name":"a","version":2}]}"#).unwrap();
        assert_eq!(listed, vec![SecretInfo { name: "a".into(), version: 2 }]);
        assert!(decode_list(socket, br#"{"secrets":{}}"#).is_err());

        let token = decode_token(
            socket,
            br#"{"service":"svc","auth":{"client_token":"s.T","accessor":"acc","lease_duration":90,"renewable":true,"policies":["p"],"metadata":{}}}"#,
        )
        .unwrap();
        assert_eq!(
            (token.expose(), token.accessor(), token.ttl().as_secs(), token.service()),
            ("s.T", "acc", 90, "svc")
        );
        assert!(decode_token(socket, br#"{"service":"svc","auth":{}}"#).is_err());
    }
}
