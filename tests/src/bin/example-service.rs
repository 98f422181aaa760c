//! `example-service`: the service of the compose example (docker/docker-compose.yml).
//!
//! Reads its OpenBao token (a file written by `security-bootstrap gate`, an EdgeX-style
//! `secrets-token.json` file token, or an environment variable), reads its own KV secret
//! `<mount>/data/<prefix>/<service>/<secret>` over TLS trusting only `--ca`, then tries another
//! service's and expects OpenBao to refuse. One line per outcome on stdout, never a secret or a token:
//!
//! ```text
//! example-service alpha: token from file /tmp/token
//! example-service alpha: read own secret secret/data/edgeseal/alpha/db-password: ok (43 chars, digest 0123456789abcdef)
//! example-service alpha: other service's secret secret/data/edgeseal/beta/db-password: denied (403)
//! example-service alpha: all checks passed; sleeping until SIGTERM
//! ```
//!
//! The digest is the first 8 bytes of HKDF-SHA256 over the value (salt and info fixed below): it tells
//! two values apart (the compose test compares it across restarts) and reveals nothing about them.
//! Then it sleeps until SIGTERM/SIGINT (exit 0), or exits at once with `--exit`.
//! Exit codes: 0 all checks passed, 1 a check failed, 64 bad usage.

#![forbid(unsafe_code)]
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use openbao_client::{Client, Token};
use tokio::signal::unix::{signal, SignalKind};

const USAGE: &str = "usage: example-service --service NAME --other NAME --address https://127.0.0.1:PORT --ca CA.pem \
                     (--token-file PATH | --token-env VAR) [--secret NAME] [--mount secret] [--prefix edgeseal] [--exit]";

/// Fixed HKDF salt and info of the printed digest.
const DIGEST_SALT: &[u8] = b"edgeseal example-service digest";
const DIGEST_INFO: &[u8] = b"v1";

#[derive(Debug)]
enum TokenSource {
    File(PathBuf),
    Env(String),
}

#[derive(Debug)]
struct Args {
    service: String,
    other: String,
    address: String,
    ca: PathBuf,
    token: TokenSource,
    secret: String,
    mount: String,
    prefix: String,
    exit: bool,
}

fn parse_args() -> Result<Args, String> {
    let (mut service, mut other, mut address, mut ca, mut token) = (None, None, None, None, None);
    let (mut secret, mut mount, mut prefix, mut exit) =
        ("db-password".to_string(), "secret".to_string(), "edgeseal".to_string(), false);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--exit" {
            exit = true;
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--service" => service = Some(value),
            "--other" => other = Some(value),
            "--address" => address = Some(value),
            "--ca" => ca = Some(PathBuf::from(value)),
            "--token-file" => token = Some(TokenSource::File(PathBuf::from(value))),
            "--token-env" => token = Some(TokenSource::Env(value)),
            "--secret" => secret = value,
            "--mount" => mount = value,
            "--prefix" => prefix = value,
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    let missing = |what: &str| format!("{what} is required");
    Ok(Args {
        service: service.ok_or_else(|| missing("--service"))?,
        other: other.ok_or_else(|| missing("--other"))?,
        address: address.ok_or_else(|| missing("--address"))?,
        ca: ca.ok_or_else(|| missing("--ca"))?,
        token: token.ok_or_else(|| missing("--token-file or --token-env"))?,
        secret,
        mount,
        prefix,
        exit,
    })
}

/// The token: a raw token (gate's file, an environment variable) or the `auth.client_token` of a
/// JSON token file (the file-token fallback, EdgeX's `secrets-token.json`).
fn read_token(source: &TokenSource) -> Result<(Token, String), String> {
    let (text, origin) = match source {
        TokenSource::File(path) => (
            std::fs::read_to_string(path).map_err(|e| format!("cannot read token file {}: {e}", path.display()))?,
            format!("file {}", path.display()),
        ),
        TokenSource::Env(var) => {
            (std::env::var(var).map_err(|e| format!("token variable {var}: {e}"))?, format!("environment {var}"))
        }
    };
    let text = text.trim();
    if text.starts_with('{') {
        let json: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("token {origin}: not a token file ({e})"))?;
        let token =
            json["auth"]["client_token"].as_str().ok_or_else(|| format!("token {origin}: no auth.client_token"))?;
        return Ok((Token::new(token), format!("{origin} (file token)")));
    }
    if text.is_empty() {
        return Err(format!("token {origin} is empty"));
    }
    Ok((Token::new(text), origin))
}

/// `(chars, digest)` of a secret's `value` (or of the whole data object when it has no `value`).
fn describe(data: &serde_json::Map<String, serde_json::Value>) -> (usize, String) {
    let value = match data.get("value").and_then(serde_json::Value::as_str) {
        Some(value) => value.to_string(),
        None => serde_json::Value::Object(data.clone()).to_string(),
    };
    let mut okm = [0u8; 8];
    // 8 bytes is far below HKDF-SHA256's limit: expand cannot fail.
    let _ = kdf_plugins::kek::hkdf_sha256(value.as_bytes(), DIGEST_SALT, DIGEST_INFO, &mut okm);
    (value.chars().count(), hex::encode(okm))
}

async fn checks(args: &Args) -> Result<(), String> {
    let name = &args.service;
    let (token, origin) = read_token(&args.token)?;
    println!("example-service {name}: token from {origin}");
    // A service checks OpenBao's certificate against the device CA, as EdgeX services do.
    let client = Client::new(&args.address, &args.ca, &openbao_client::Pin::CaOnly, Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    let path = |service: &str| format!("{}/{service}/{}", args.prefix, args.secret);
    let shown = |service: &str| format!("{}/data/{}", args.mount, path(service));

    let own = client.kv_read(&token, &args.mount, &path(name)).await;
    let own_ok = match own {
        Ok(Some(data)) => {
            let (chars, digest) = describe(&data);
            println!("example-service {name}: read own secret {}: ok ({chars} chars, digest {digest})", shown(name));
            true
        }
        Ok(None) => {
            println!("example-service {name}: read own secret {}: FAILED (no such secret)", shown(name));
            false
        }
        Err(e) => {
            println!("example-service {name}: read own secret {}: FAILED ({e})", shown(name));
            false
        }
    };
    let other = client.kv_read(&token, &args.mount, &path(&args.other)).await;
    let other_ok = match other {
        Err(e) if e.status() == Some(403) => {
            println!("example-service {name}: other service's secret {}: denied (403)", shown(&args.other));
            true
        }
        Err(e) => {
            println!("example-service {name}: other service's secret {}: FAILED ({e})", shown(&args.other));
            false
        }
        Ok(_) => {
            println!("example-service {name}: other service's secret {}: FAILED (allowed)", shown(&args.other));
            false
        }
    };
    if own_ok && other_ok {
        Ok(())
    } else {
        Err("a check failed".into())
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("example-service: {message}\n{USAGE}");
            return ExitCode::from(64);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("example-service: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        if let Err(message) = checks(&args).await {
            println!("example-service {}: {message}", args.service);
            return ExitCode::FAILURE;
        }
        if args.exit {
            println!("example-service {}: all checks passed", args.service);
            return ExitCode::SUCCESS;
        }
        println!("example-service {}: all checks passed; sleeping until SIGTERM", args.service);
        // PID 1 of a container: without handlers SIGTERM would be ignored and `docker stop` would wait.
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            eprintln!("example-service: cannot install signal handlers");
            return ExitCode::FAILURE;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        ExitCode::SUCCESS
    })
}
