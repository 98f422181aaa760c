//! `security-bootstrap gate`: the entrypoint of a service, for apps that cannot speak OpenBao. Waits
//! (bounded) for the token socket, fetches what the app needs as the attested caller, hands it over,
//! and runs the app:
//!
//! - `--token-file`/`--token-env`: the service's own token;
//! - `--secret-env VAR=NAME[:KEY]`, `--secret-file PATH=NAME[:KEY]`: the values of the service's own
//!   secrets (`GET /v1/secrets/<name>`), in environment variables or in 0600 files on a tmpfs
//!   ([`files`]); what the flags mean is [`spec`].
//!
//! With only a token and environment variables and `--on-change none`, gate execs the app: the
//! process becomes the app. With files, or with `--on-change restart|signal:NAME`, gate stays as the
//! app's parent ([`supervise`]): it forwards the signals it gets, checks the secrets' versions every
//! `--check-interval`, rewrites the files atomically when one changes and restarts or signals the
//! app, and removes the files when the app exits, then exits with the app's status.

pub mod files;
pub mod spec;
mod supervise;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use self::spec::{Deliveries, OnChange};
use super::token::{exit_code_for, may_succeed_later, request, Answer, TokenFailure};
use crate::UsageError;

/// Where the token goes.
#[derive(Debug)]
pub enum Sink {
    /// A file (mode 0600), e.g. on a tmpfs.
    File(PathBuf),
    /// An environment variable of the app.
    Env(String),
}

/// Everything `gate` was asked to do.
#[derive(Debug)]
pub struct Gate {
    /// The token server's socket.
    pub socket: PathBuf,
    /// The service, asserted to the token server.
    pub service: String,
    /// How long to keep asking while the token server is unavailable or rate-limits.
    pub wait: Duration,
    /// Where the token goes, if the app wants one.
    pub token: Option<Sink>,
    /// The secrets' values the app is given.
    pub deliveries: Deliveries,
    /// Files may be on a persistent filesystem.
    pub allow_disk: bool,
    /// The files' owner (default: gate's own user, which is the app's).
    pub file_owner: Option<(u32, u32)>,
    /// What a new version of a secret does to the app.
    pub on_change: OnChange,
    /// How often the secrets' versions are checked.
    pub check_interval: Duration,
    /// How long a restarted app has between SIGTERM and SIGKILL.
    pub grace: Duration,
}

/// The app exited with a non-zero status (or was killed: 128 + the signal); gate exits with it.
#[derive(Debug, thiserror::Error)]
#[error("the app exited with status {0}")]
pub struct AppExited(pub u8);

/// A secret as read from the token server: its version and data (values never in `Debug`).
pub struct Fetched {
    /// The version read.
    pub version: u64,
    /// The data (`{"value": …}` for a single value).
    pub data: Map<String, Value>,
}

impl std::fmt::Debug for Fetched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<&String> = self.data.keys().collect();
        f.debug_struct("Fetched").field("version", &self.version).field("keys", &keys).finish_non_exhaustive()
    }
}

/// The texts the app is given, rendered from the secrets read ([`spec::render`]).
#[derive(Default)]
struct Values {
    env: Vec<(String, Zeroizing<String>)>,
    files: Vec<(PathBuf, Zeroizing<String>)>,
}

impl Values {
    fn render(deliveries: &Deliveries, secrets: &BTreeMap<String, Fetched>) -> anyhow::Result<Self> {
        let text = |source: &spec::Source| -> anyhow::Result<Zeroizing<String>> {
            let fetched = secrets.get(&source.name).context("internal: a secret was not read")?;
            spec::render(source, &fetched.data).map_err(|why| anyhow::anyhow!(UsageError(why)))
        };
        let mut values = Self::default();
        for e in &deliveries.env {
            let value = text(&e.source)?;
            if value.contains('\0') {
                bail!(UsageError(format!(
                    "secret {:?} holds a NUL byte, which an environment variable cannot: deliver it with --secret-file",
                    e.source.name
                )));
            }
            values.env.push((e.var.clone(), value));
        }
        for f in &deliveries.files {
            values.files.push((f.path.clone(), text(&f.source)?));
        }
        Ok(values)
    }
}

/// Runs the command; only returns on failure, or when a supervised app has exited.
pub fn run(gate: Gate, command: &[OsString]) -> anyhow::Result<()> {
    let Some((program, args)) = command.split_first() else {
        bail!(UsageError("give the service's command after --".into()));
    };
    for file in &gate.deliveries.files {
        files::check_place(&file.path, gate.allow_disk)?;
    }
    if let Some(Sink::File(path)) = &gate.token {
        if gate.deliveries.files.iter().any(|f| f.path == *path) {
            bail!(UsageError(format!("{} is both --token-file and a --secret-file", path.display())));
        }
    }
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")?;
    let deadline = Instant::now() + gate.wait;
    let token = match &gate.token {
        Some(_) => Some(runtime.block_on(fetch_token(&gate.socket, &gate.service, deadline))?),
        None => None,
    };
    let mut secrets = BTreeMap::new();
    for name in gate.deliveries.names() {
        let fetched = runtime.block_on(fetch_secret(&gate.socket, &gate.service, name, deadline))?;
        secrets.insert(name.to_string(), fetched);
    }
    let values = Values::render(&gate.deliveries, &secrets)?;
    let mut token_env = None;
    match (&gate.token, &token) {
        (Some(Sink::File(path)), Some(token)) => write_token(path, token)?,
        (Some(Sink::Env(var)), Some(token)) => token_env = Some((var.clone(), token.clone())),
        _ => {}
    }
    let supervised = !gate.deliveries.files.is_empty() || gate.on_change != OnChange::None;
    if !supervised {
        drop(runtime);
        let mut exec = std::process::Command::new(program);
        exec.args(args);
        for (var, value) in values.env.iter().chain(token_env.iter()) {
            exec.env(var, value.as_str());
        }
        let error = exec.exec();
        bail!("cannot start {}: {error}", program.to_string_lossy())
    }
    let app = supervise::App { program: program.clone(), args: args.to_vec(), token_env };
    let status = runtime.block_on(supervise::run(&gate, &app, secrets, values))?;
    if status != 0 {
        return Err(AppExited(status).into());
    }
    Ok(())
}

/// How long one request to the token socket may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One request, asked again every 250 ms while the server is unavailable (69) or rate-limits (75),
/// until `deadline`; then the answer (2xx) or the failure, with [`exit_code_for`]'s code.
async fn ask(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<String>,
    deadline: Instant,
) -> anyhow::Result<Bytes> {
    loop {
        // A server that accepts and never answers (stopped, wedged) must not hold gate: its app's
        // signals and exit are handled between requests.
        let answer = match tokio::time::timeout(REQUEST_TIMEOUT, request(socket, method.clone(), path, body.clone()))
            .await
        {
            Ok(answer) => answer,
            Err(_) => Err(TokenFailure {
                message: format!("the token server at {} did not answer within {REQUEST_TIMEOUT:?}", socket.display()),
                code: crate::cli::EXIT_UNAVAILABLE,
            }),
        };
        let code = match &answer {
            Err(failure) => failure.code,
            Ok((status, _)) => exit_code_for(Answer::Status(*status)),
        };
        if !may_succeed_later(code) || Instant::now() >= deadline {
            let (status, bytes) = answer?;
            if status == StatusCode::NOT_FOUND && path.starts_with("/v1/secrets/") {
                // The server names the secret and says how to set it: a missing secret, not another protocol.
                let said = serde_json::from_slice::<Value>(&bytes).ok();
                let said = said.as_ref().and_then(|v| v["error"].as_str()).unwrap_or("no such secret");
                bail!(UsageError(format!("the token server answered 404: {said}")));
            }
            if !status.is_success() {
                return Err(TokenFailure::answered("token server answered", status, &bytes).into());
            }
            return Ok(bytes);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn protocol(message: String) -> TokenFailure {
    TokenFailure { message, code: crate::cli::EXIT_PROTOCOL }
}

/// The caller's own token (`POST /v1/token`).
async fn fetch_token(socket: &Path, service: &str, deadline: Instant) -> anyhow::Result<Zeroizing<String>> {
    let body = serde_json::json!({ "service": service }).to_string();
    let bytes = ask(socket, Method::POST, "/v1/token", Some(body), deadline).await?;
    let json: Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let Some(token) = json["auth"]["client_token"].as_str().filter(|t| !t.is_empty()) else {
        bail!(protocol("the token server answered 200 without auth.client_token".into()));
    };
    Ok(Zeroizing::new(token.to_string()))
}

/// The current version of one of the caller's own secrets (`GET /v1/secrets/<name>`).
async fn fetch_secret(socket: &Path, service: &str, name: &str, deadline: Instant) -> anyhow::Result<Fetched> {
    let path = format!("/v1/secrets/{name}?service={service}");
    let bytes = Zeroizing::new(ask(socket, Method::GET, &path, None, deadline).await?.to_vec());
    let mut json: Value = serde_json::from_slice(&bytes)
        .map_err(|e| protocol(format!("the token server's answer for secret {name:?} is not JSON: {e}")))?;
    let (Some(version), Value::Object(data)) = (json["version"].as_u64(), json["data"].take()) else {
        bail!(protocol(format!("the token server's answer for secret {name:?} has no version and data")));
    };
    Ok(Fetched { version, data })
}

/// The versions of the caller's own secrets (`GET /v1/secrets`), asked once.
async fn fetch_versions(socket: &Path, service: &str) -> anyhow::Result<BTreeMap<String, u64>> {
    let path = format!("/v1/secrets?service={service}");
    let bytes = ask(socket, Method::GET, &path, None, Instant::now()).await?;
    let json: Value = serde_json::from_slice(&bytes)
        .map_err(|e| protocol(format!("the token server's list of secrets is not JSON: {e}")))?;
    let Some(list) = json["secrets"].as_array() else {
        bail!(protocol("the token server's list of secrets has no \"secrets\"".into()));
    };
    Ok(list
        .iter()
        .filter_map(|entry| Some((entry["name"].as_str()?.to_string(), entry["version"].as_u64()?)))
        .collect())
}

/// Writes a fresh 0600 file atomically ([`files::write`]): a new temp file is renamed over whatever
/// was at `path` (a stale token, a symlink — replaced, never followed), so no other file is ever
/// opened or truncated, and the service never sees a half-written token.
fn write_token(path: &Path, token: &str) -> anyhow::Result<()> {
    files::write(path, token, None).context("writing the token")
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use serde_json::json;

    use super::spec::{EnvDelivery, FileDelivery};
    use super::*;

    fn secrets(value: &str) -> BTreeMap<String, Fetched> {
        let data = json!({ "value": value }).as_object().cloned().unwrap_or_default();
        BTreeMap::from([("db".to_string(), Fetched { version: 1, data })])
    }

    #[test]
    fn a_nul_byte_goes_to_a_file_but_never_into_the_environment() {
        let env = Deliveries::new(vec![EnvDelivery::from_str("DB=db").unwrap()], vec![], None, None).unwrap();
        let file = Deliveries::new(vec![], vec![FileDelivery::from_str("/run/s/db=db").unwrap()], None, None).unwrap();
        let refused = Values::render(&env, &secrets("a\0b")).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(refused.contains("NUL byte") && refused.contains("--secret-file"), "{refused}");
        assert_eq!(Values::render(&file, &secrets("a\0b")).unwrap().files[0].1.as_str(), "a\0b");
        assert_eq!(Values::render(&env, &secrets("ab")).unwrap().env[0].1.as_str(), "ab");
    }
}
