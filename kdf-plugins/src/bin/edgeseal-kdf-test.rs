//! `edgeseal-kdf-test`: a KDF plug-in for tests that answers well or misbehaves on request.
//!
//! `edgeseal-kdf-test ikm-v1 MODE [VALUE]`, where MODE is one of:
//! `good [HEX]`, `bad-hex`, `uppercase`, `no-output`, `extra-lines`, `short`, `hang`, `crash`,
//! `fail [CODE]`, `huge`, `slow-start MILLIS`, `sandbox` (answers only if run with the environment,
//! working directory and stdin SPEC §4 promises), `orphan` (leaves a child holding stdout open).
//! With no arguments (EdgeX hook convention) it behaves like `good`. Not installed on devices.

#![allow(clippy::print_stdout)]

use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

/// The IKM `good` prints by default.
const DEFAULT_IKM: &str = "5eed0fedcba9876543210123456789abcdef0123456789abcdef0123456789ab";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        [] => say(&format!("{DEFAULT_IKM}\n")),
        ["ikm-v1", rest @ ..] => misbehave(rest),
        [other, ..] => {
            eprintln!("edgeseal-kdf-test: unknown protocol {other:?}; this plug-in speaks ikm-v1");
            ExitCode::from(2)
        }
    }
}

fn misbehave(args: &[&str]) -> ExitCode {
    match args {
        [] | ["good"] => say(&format!("{DEFAULT_IKM}\n")),
        ["good", hex] => say(&format!("{hex}\n")),
        ["bad-hex"] => say("this is not hex\n"),
        ["uppercase"] => say(&format!("{}\n", DEFAULT_IKM.to_uppercase())),
        ["no-output"] => ExitCode::SUCCESS,
        ["extra-lines"] => say(&format!("{DEFAULT_IKM}\n{DEFAULT_IKM}\n")),
        ["short"] => say("00112233\n"),
        ["hang"] => {
            eprintln!("edgeseal-kdf-test: hanging on purpose");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        ["crash"] => {
            eprintln!("edgeseal-kdf-test: crashing on purpose");
            std::process::abort()
        }
        ["fail"] => fail(1),
        ["fail", code] => fail(code.parse().unwrap_or(1)),
        ["huge"] => {
            let chunk = "ab".repeat(32 * 1024);
            let mut out = std::io::stdout().lock();
            for _ in 0..1024 {
                if out.write_all(chunk.as_bytes()).is_err() {
                    break;
                }
            }
            ExitCode::SUCCESS
        }
        ["slow-start", millis] => {
            std::thread::sleep(Duration::from_millis(millis.parse().unwrap_or(1000)));
            say(&format!("{DEFAULT_IKM}\n"))
        }
        ["sandbox"] => sandbox(),
        ["orphan"] => {
            // A grandchild inherits stdout and outlives us: the runner must not wait for it forever.
            let spawned = std::process::Command::new("/bin/sleep").arg("3600").spawn();
            if spawned.is_err() {
                return fail(3);
            }
            say(&format!("{DEFAULT_IKM}\n"))
        }
        _ => {
            eprintln!("edgeseal-kdf-test: unknown mode {args:?}");
            ExitCode::from(2)
        }
    }
}

fn say(text: &str) -> ExitCode {
    print!("{text}");
    ExitCode::SUCCESS
}

fn fail(code: u8) -> ExitCode {
    eprintln!("edgeseal-kdf-test: failing on purpose with exit code {code}");
    ExitCode::from(code)
}

/// Answers only when the environment is exactly `PATH=/usr/bin:/bin`, cwd is `/`, stdin is empty.
fn sandbox() -> ExitCode {
    let env: Vec<(String, String)> = std::env::vars().collect();
    if env != [("PATH".to_string(), "/usr/bin:/bin".to_string())] {
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        eprintln!("edgeseal-kdf-test: environment is not cleared: {names:?}");
        return ExitCode::from(4);
    }
    match std::env::current_dir() {
        Ok(dir) if dir == std::path::Path::new("/") => {}
        other => {
            eprintln!("edgeseal-kdf-test: working directory is {other:?}, not /");
            return ExitCode::from(5);
        }
    }
    let mut stdin = Vec::new();
    if std::io::stdin().read_to_end(&mut stdin).map(|n| n != 0).unwrap_or(true) {
        eprintln!("edgeseal-kdf-test: stdin is not /dev/null");
        return ExitCode::from(6);
    }
    say(&format!("{DEFAULT_IKM}\n"))
}
