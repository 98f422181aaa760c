//! `security-bootstrap secrets …`: an operator's secrets, through the admin socket (SPEC §12).
//!
//! Values come from stdin or `--from-file`, never from argv (argv is world-readable in `/proc`).
//! One trailing newline of a value is dropped (`echo pass | secrets set …`); `--json` takes an object
//! of string keys and values (EdgeX's multi-key secrets) instead of one string.
//!
//! Exit codes: 0 done; 1 failure (no such secret, `--cas` mismatch, the store failed); 64 bad usage
//! (a malformed SERVICE/NAME, an empty or too large value, invalid JSON; nothing is sent); 77 refused
//! (not an admin uid); 69 the admin socket is unavailable.

use std::io::{IsTerminal, Read, Write};
use std::path::Path;

use anyhow::Context;
use hyper::{Method, StatusCode};
use serde_json::{json, Map, Value};
use token_server::admin::routes::{check_data, valid_name, MAX_VALUE};

use super::token::{request, TokenFailure};
use crate::cli::{SecretsCommand, EXIT_FAILURE, EXIT_NOPERM, EXIT_UNAVAILABLE, EXIT_USAGE};
use crate::UsageError;

/// Runs a `secrets` command.
pub fn run(command: &SecretsCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")?;
    match command {
        SecretsCommand::Export { to, selectors, output, socket } => {
            return super::bundles::export(to, selectors, output, socket, out)
        }
        SecretsCommand::Import { file, from, allow_any_signer, allow_unsigned, dry_run, json, socket } => {
            let options = super::bundles::ImportOptions {
                allow_any_signer: *allow_any_signer,
                allow_unsigned: *allow_unsigned,
                dry_run: *dry_run,
                json: *json,
            };
            return super::bundles::import(file, from, options, socket, out);
        }
        SecretsCommand::Seal { to, output } => return super::bundles::seal(to, output.as_deref(), out),
        SecretsCommand::Set { target, value, cas, socket } => {
            let (service, name) = split(target)?;
            let data = read_value(value.from_file.as_deref(), value.json, false)?.unwrap_or_default();
            let body = json!({"data": data, "cas": cas});
            let answer =
                runtime.block_on(call(socket, Method::PUT, &format!("/v1/secrets/{service}/{name}"), Some(body)))?;
            writeln!(out, "{service}/{name} is at version {}", answer["version"])?;
        }
        SecretsCommand::Rotate { target, value, socket } => {
            let (service, name) = split(target)?;
            let body = match read_value(value.from_file.as_deref(), value.json, true)? {
                Some(data) => json!({"data": data}),
                None => json!({}),
            };
            let path = format!("/v1/secrets/{service}/{name}/rotate");
            let answer = runtime.block_on(call(socket, Method::POST, &path, Some(body)))?;
            writeln!(
                out,
                "{service}/{name} rotated to version {} (earlier versions stay readable with --version)",
                answer["version"]
            )?;
        }
        SecretsCommand::Get { target, version, json, socket } => {
            let (service, name) = split(target)?;
            let path = match version {
                Some(v) => format!("/v1/secrets/{service}/{name}?version={v}"),
                None => format!("/v1/secrets/{service}/{name}"),
            };
            let answer = runtime.block_on(call(socket, Method::GET, &path, None))?;
            let data = answer["data"].as_object().cloned().unwrap_or_default();
            match (data.get("value").and_then(Value::as_str), data.len(), json) {
                (Some(value), 1, false) => {
                    out.write_all(value.as_bytes())?;
                    if std::io::stdout().is_terminal() {
                        writeln!(out)?;
                    }
                }
                _ => writeln!(out, "{}", Value::Object(data))?,
            }
        }
        SecretsCommand::Rm { target, destroy, socket } => {
            let (service, name) = split(target)?;
            let path = format!("/v1/secrets/{service}/{name}{}", if *destroy { "?destroy=true" } else { "" });
            runtime.block_on(call(socket, Method::DELETE, &path, None))?;
            let what = if *destroy {
                "destroyed (every version)"
            } else {
                "deleted (earlier versions stay readable with --version)"
            };
            writeln!(out, "{service}/{name} {what}")?;
        }
        SecretsCommand::List { service, json, socket } => {
            if let Some(service) = service {
                if !valid_name(service) {
                    return Err(UsageError(format!("{service:?} is not a service name")).into());
                }
            }
            let path = match service {
                Some(service) => format!("/v1/secrets?service={service}"),
                None => "/v1/secrets".to_string(),
            };
            let answer = runtime.block_on(call(socket, Method::GET, &path, None))?;
            let secrets = answer["secrets"].as_array().cloned().unwrap_or_default();
            if *json {
                writeln!(out, "{}", Value::Array(secrets))?;
            } else {
                writeln!(out, "{:<20} {:<28} {:>7}  {:<32} SOURCE", "SERVICE", "NAME", "VERSION", "UPDATED")?;
                for s in secrets {
                    let text = |k: &str| s[k].as_str().unwrap_or_default().to_string();
                    writeln!(
                        out,
                        "{:<20} {:<28} {:>7}  {:<32} {}",
                        text("service"),
                        text("name"),
                        s["version"],
                        text("updated"),
                        text("source")
                    )?;
                }
            }
        }
        SecretsCommand::History { target, json, socket } => {
            let (service, name) = split(target)?;
            let answer =
                runtime.block_on(call(socket, Method::GET, &format!("/v1/secrets/{service}/{name}/history"), None))?;
            let versions = answer["versions"].as_array().cloned().unwrap_or_default();
            if *json {
                writeln!(out, "{}", Value::Array(versions))?;
            } else {
                writeln!(out, "{:>7}  {:<32} {:<10} SOURCE", "VERSION", "CREATED", "STATE")?;
                for v in versions {
                    let state = match (v["destroyed"].as_bool(), v["deletion_time"].as_str()) {
                        (Some(true), _) => "destroyed",
                        (_, Some(t)) if !t.is_empty() => "deleted",
                        _ => "",
                    };
                    writeln!(
                        out,
                        "{:>7}  {:<32} {:<10} {}",
                        v["version"],
                        v["created_time"].as_str().unwrap_or_default(),
                        state,
                        v["source"].as_str().unwrap_or_default()
                    )?;
                }
            }
        }
    }
    Ok(())
}

/// `SERVICE/NAME`, each a valid segment.
fn split(target: &str) -> Result<(&str, &str), UsageError> {
    match target.split_once('/') {
        Some((service, name)) if valid_name(service) && valid_name(name) => Ok((service, name)),
        _ => Err(UsageError(format!(
            "{target:?} is not SERVICE/NAME (each 1-128 of [A-Za-z0-9._-]; no other '/', no '..')"
        ))),
    }
}

/// The value: from `file`, or stdin. `None` when `optional` and none was given (stdin a terminal, or
/// empty).
fn read_value(file: Option<&Path>, json: bool, optional: bool) -> Result<Option<Map<String, Value>>, anyhow::Error> {
    let mut bytes = Vec::new();
    let limit = u64::try_from(MAX_VALUE + 1).unwrap_or(u64::MAX);
    match file {
        Some(path) => {
            std::fs::File::open(path)
                .and_then(|f| f.take(limit).read_to_end(&mut bytes))
                .map_err(|e| UsageError(format!("reading {}: {e}", path.display())))?;
        }
        None if optional && std::io::stdin().is_terminal() => return Ok(None),
        None => {
            std::io::stdin().lock().take(limit).read_to_end(&mut bytes).context("reading the value from stdin")?;
        }
    }
    let bytes = zeroize::Zeroizing::new(bytes);
    if optional && bytes.is_empty() {
        return Ok(None);
    }
    if bytes.len() > MAX_VALUE {
        return Err(UsageError("the value is larger than 1 MiB".into()).into());
    }
    let data = if json {
        let value: Value =
            serde_json::from_slice(&bytes).map_err(|e| UsageError(format!("--json: the value is not JSON ({e})")))?;
        value
            .as_object()
            .cloned()
            .ok_or_else(|| UsageError("--json: the value must be a JSON object of strings".into()))?
    } else {
        let text = std::str::from_utf8(&bytes).map_err(|_| UsageError("the value is not UTF-8 text".into()))?;
        let text = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(text);
        Map::from_iter([("value".to_string(), Value::String(text.to_string()))])
    };
    check_data(&data).map_err(|e| UsageError(format!("{e}: nothing was sent")))?;
    Ok(Some(data))
}

/// One admin request; the answer's JSON, or a failure with its exit code (`status` uses it too).
pub(crate) async fn call(socket: &Path, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
    let (status, bytes) = request(socket, method, path, body.map(|b| b.to_string())).await.map_err(|failure| {
        TokenFailure { message: failure.message.replace("token socket", "admin socket"), code: EXIT_UNAVAILABLE }
    })?;
    if status.is_success() {
        return serde_json::from_slice(&bytes).context("the admin socket answered something that is not JSON");
    }
    let said = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
    let code = match status {
        StatusCode::FORBIDDEN => EXIT_NOPERM,
        StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => EXIT_USAGE,
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_GATEWAY => EXIT_UNAVAILABLE,
        _ => EXIT_FAILURE,
    };
    Err(TokenFailure { message: format!("admin socket {} ({status}): {said}", socket.display()), code }.into())
}
