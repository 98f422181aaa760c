//! `password-app`: an off-the-shelf-style service for the compose example (docker/docker-compose.yml)
//! that knows nothing of edgeseal. Like the postgres image it takes its password from the file named
//! by `APP_PASSWORD_FILE` (the `*_FILE` convention), or from `APP_PASSWORD`, never both; `gate
//! --secret-file` writes that file and sends SIGHUP when the value changes.
//!
//! It listens on `127.0.0.1:$APP_PORT` and answers one line per connection: the client sends a
//! password line and gets `ok` or `denied`. On stdout, never the value:
//!
//! ```text
//! password-app: listening on 127.0.0.1:5432
//! password-app: ready: password sha256 0123456789ab
//! ```
//!
//! The `ready` line comes at start and again each time SIGHUP made it read the file again (a failed
//! read keeps the old password and says so). SIGTERM or SIGINT: exit 0.
//! Exit codes: 0 stopped by a signal, 1 failure (cannot listen, cannot read the password), 64 bad usage.

#![forbid(unsafe_code)]
#![allow(clippy::print_stdout)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use nix::sys::signal::{SigSet, Signal};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The longest password line read from a client.
const MAX_LINE: u64 = 4096;
/// How long a client has to send its line.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the password comes from.
#[derive(Debug)]
enum Source {
    /// `APP_PASSWORD_FILE`: read at start and on SIGHUP.
    File(PathBuf),
    /// `APP_PASSWORD`: fixed for the life of the process.
    Env,
}

/// The password: compared by its SHA-256, never printed (`Debug` is redacted), wiped when dropped.
struct Password {
    value: Zeroizing<String>,
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl Password {
    /// A file's or variable's text without one trailing newline (how `*_FILE` images read it).
    fn new(text: Zeroizing<String>) -> Self {
        let trimmed = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
        Self { value: Zeroizing::new(trimmed.to_string()) }
    }

    fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.value.as_bytes()).into()
    }

    /// The first 12 hex digits of the SHA-256: what the log shows.
    fn short_digest(&self) -> String {
        hex::encode(self.digest())[..12].to_string()
    }

    fn matches(&self, given: &Password) -> bool {
        self.digest() == given.digest()
    }
}

fn read_password(source: &Source) -> Result<Password, String> {
    match source {
        Source::File(path) => std::fs::read_to_string(path)
            .map(|text| Password::new(Zeroizing::new(text)))
            .map_err(|e| format!("cannot read APP_PASSWORD_FILE {}: {e}", path.display())),
        Source::Env => std::env::var("APP_PASSWORD")
            .map(|text| Password::new(Zeroizing::new(text)))
            .map_err(|e| format!("APP_PASSWORD: {e}")),
    }
}

/// The password source and the port, from the environment; a usage message when they are wrong.
fn settings() -> Result<(Source, u16), String> {
    let source = match (std::env::var_os("APP_PASSWORD_FILE"), std::env::var_os("APP_PASSWORD")) {
        (Some(_), Some(_)) => return Err("both APP_PASSWORD_FILE and APP_PASSWORD are set: give one".into()),
        (Some(file), None) => Source::File(PathBuf::from(file)),
        (None, Some(_)) => Source::Env,
        (None, None) => return Err("set APP_PASSWORD_FILE (a file holding the password) or APP_PASSWORD".into()),
    };
    let port = std::env::var("APP_PORT").map_err(|_| "set APP_PORT (the TCP port on 127.0.0.1)".to_string())?;
    let port = port.parse().map_err(|e| format!("APP_PORT={port:?}: {e}"))?;
    Ok((source, port))
}

/// One client: reads a line (bounded in size and time), answers `ok` or `denied`.
fn serve(stream: TcpStream, password: &RwLock<Password>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    let mut line = Zeroizing::new(String::new());
    BufReader::new((&stream).take(MAX_LINE)).read_line(&mut line)?;
    let given = Password::new(line);
    let ok = password.read().unwrap_or_else(PoisonError::into_inner).matches(&given);
    (&stream).write_all(if ok { b"ok\n" } else { b"denied\n" })
}

/// Waits for SIGHUP (read the password again), SIGTERM and SIGINT (exit 0); `signals` are blocked
/// in every thread, so they arrive only here.
fn handle_signals(signals: SigSet, source: &Source, password: &RwLock<Password>) -> ExitCode {
    loop {
        match signals.wait() {
            Ok(Signal::SIGHUP) => match (source, read_password(source)) {
                (Source::File(_), Ok(fresh)) => {
                    // In use before it is announced: a client that saw the line gets the new answer.
                    let digest = fresh.short_digest();
                    *password.write().unwrap_or_else(PoisonError::into_inner) = fresh;
                    println!("password-app: ready: password sha256 {digest}");
                }
                (Source::Env, _) => {
                    println!("password-app: SIGHUP: the password is from APP_PASSWORD, nothing to read")
                }
                (_, Err(e)) => eprintln!("password-app: SIGHUP: {e}; keeping the old password"),
            },
            Ok(sig) => {
                println!("password-app: {sig}: stopping");
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                eprintln!("password-app: waiting for signals: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
}

fn main() -> ExitCode {
    let (source, port) = match settings() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("password-app: {e}");
            return ExitCode::from(64);
        }
    };
    // Blocked before any thread starts, so every thread inherits the mask and only `wait` sees them.
    let mut signals = SigSet::empty();
    for sig in [Signal::SIGHUP, Signal::SIGTERM, Signal::SIGINT] {
        signals.add(sig);
    }
    if let Err(e) = signals.thread_block() {
        eprintln!("password-app: blocking signals: {e}");
        return ExitCode::FAILURE;
    }
    let password = match read_password(&source) {
        Ok(password) => Arc::new(RwLock::new(password)),
        Err(e) => {
            eprintln!("password-app: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("password-app: cannot listen on 127.0.0.1:{port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("password-app: listening on 127.0.0.1:{port}");
    println!(
        "password-app: ready: password sha256 {}",
        password.read().unwrap_or_else(PoisonError::into_inner).short_digest()
    );
    let shared = Arc::clone(&password);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let served = stream.and_then(|stream| serve(stream, &shared));
            if let Err(e) = served {
                eprintln!("password-app: a client: {e}");
            }
        }
    });
    handle_signals(signals, &source, &password)
}
