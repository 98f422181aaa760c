//! `edgeseal-kdf-hwfp`: the software-only hardware-fingerprint KDF plug-in (SPEC §4).
//!
//! Parses its arguments, calls [`kdf_plugins::hwfp::collect`] and prints the IKM or the explanation.
//! The logic lives in the library; see `--help` for usage and exit codes.

use kdf_plugins::plugin_main::write_stdout;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use kdf_plugins::hwfp;
use zeroize::Zeroizing;

const NAME: &str = "edgeseal-kdf-hwfp";

const USAGE: &str = "\
edgeseal-kdf-hwfp: an edgeseal KDF plug-in that derives the IKM from this device's hardware identifiers

Usage:
  edgeseal-kdf-hwfp ikm-v1 [--root DIR]    print the IKM as 64 lowercase hex digits on one line
  edgeseal-kdf-hwfp                        the same, for EdgeX's EDGEX_IKM_HOOK (no arguments)
  edgeseal-kdf-hwfp --explain [--root DIR] list the sources used and skipped, and why (no values)
  edgeseal-kdf-hwfp --help

The IKM is SHA-256 over the DMI product UUID and serials, the machine-id, the CPU model, a cpuinfo
Serial (Raspberry Pi) and the MAC addresses of physical, non-USB NICs. The CPU model alone is shared
by every device of the model, so the plug-in refuses when nothing else is found. DMI serials are
readable by root only: run it as the same user every time, or the IKM changes.

Options:
  --root DIR   read sys/, proc/, etc/ and var/ under DIR instead of / (e.g. a mounted image)

Exit status: 0 ok; 1 no stable identifier found, or stdout failed; 2 bad usage.
--explain exits 1 when ikm-v1 would refuse.

Example:
  edgeseal-kdf-hwfp --explain
";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    /// Print the IKM (protocol `ikm-v1`, or no arguments for EdgeX).
    Ikm(PathBuf),
    /// Print which sources were used and skipped.
    Explain(PathBuf),
    /// Print usage.
    Help,
}

fn main() -> ExitCode {
    let command = match parse_args(std::env::args_os().skip(1).collect()) {
        Ok(command) => command,
        Err(message) => {
            eprintln!("{NAME}: {message}\nrun `{NAME} --help` for usage");
            return ExitCode::from(2);
        }
    };
    let root = match &command {
        Command::Help => return write_stdout(NAME, USAGE.as_bytes()),
        Command::Ikm(root) | Command::Explain(root) => root,
    };
    if !root.is_dir() {
        eprintln!("{NAME}: --root {}: not a directory", root.display());
        return ExitCode::from(2);
    }
    let fingerprint = hwfp::collect(root);
    match command {
        Command::Explain(_) => {
            let code = write_stdout(NAME, fingerprint.explain().as_bytes());
            if fingerprint.stable_count() == 0 {
                ExitCode::FAILURE
            } else {
                code
            }
        }
        _ => match fingerprint.ikm() {
            Ok(ikm) => {
                let mut line = Zeroizing::new(hex::encode(ikm.expose()));
                line.push('\n');
                write_stdout(NAME, line.as_bytes())
            }
            Err(err) => {
                let root = fingerprint.root().display();
                eprintln!("{NAME}: {err}\nrun `{NAME} --explain --root {root}` to see why each source was skipped");
                ExitCode::FAILURE
            }
        },
    }
}

/// Parses the arguments after the program name. No arguments is the EdgeX hook convention.
fn parse_args(args: Vec<OsString>) -> Result<Command, String> {
    let mut ikm = false;
    let mut explain = false;
    let mut root: Option<PathBuf> = None;
    let mut args = args.into_iter().enumerate();
    if args.len() == 0 {
        return Ok(Command::Ikm(PathBuf::from(hwfp::DEFAULT_ROOT)));
    }
    while let Some((index, arg)) = args.next() {
        match arg.to_str() {
            Some("ikm-v1") if index == 0 => ikm = true,
            Some("--explain") if !explain => explain = true,
            Some("--help" | "-h") => return Ok(Command::Help),
            Some("--root") if root.is_none() => {
                let (_, dir) = args.next().ok_or("--root needs a directory")?;
                root = Some(PathBuf::from(dir));
            }
            Some(flag) if flag.starts_with("--root=") && root.is_none() => {
                root = flag.strip_prefix("--root=").map(PathBuf::from);
            }
            Some(word) if index == 0 && !word.starts_with('-') => {
                return Err(format!("unknown protocol {word:?}; this plug-in speaks ikm-v1"));
            }
            _ => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    let root = root.unwrap_or_else(|| PathBuf::from(hwfp::DEFAULT_ROOT));
    match (ikm, explain) {
        (true, false) => Ok(Command::Ikm(root)),
        (false, true) => Ok(Command::Explain(root)),
        (true, true) => Err("ikm-v1 and --explain cannot be combined".to_owned()),
        (false, false) => Err("say ikm-v1 or --explain".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_map_to_commands_or_usage_errors() {
        let root = |dir: &str| PathBuf::from(dir);
        let cases: &[(&[&str], Result<Command, ()>)] = &[
            (&[], Ok(Command::Ikm(root("/")))),
            (&["ikm-v1"], Ok(Command::Ikm(root("/")))),
            (&["ikm-v1", "--root", "/mnt"], Ok(Command::Ikm(root("/mnt")))),
            (&["ikm-v1", "--root=/mnt"], Ok(Command::Ikm(root("/mnt")))),
            (&["--explain"], Ok(Command::Explain(root("/")))),
            (&["--explain", "--root", "/mnt"], Ok(Command::Explain(root("/mnt")))),
            (&["--root", "/mnt", "--explain"], Ok(Command::Explain(root("/mnt")))),
            (&["--help"], Ok(Command::Help)),
            (&["ikm-v1", "-h"], Ok(Command::Help)),
            (&["ikm-v2"], Err(())),
            (&["hello"], Err(())),
            (&["--version"], Err(())),
            (&["ikm-v1", "--tcti", "swtpm:port=2321"], Err(())),
            (&["ikm-v1", "ikm-v1"], Err(())),
            (&["ikm-v1", "--explain"], Err(())),
            (&["--explain", "--explain"], Err(())),
            (&["ikm-v1", "--root"], Err(())),
            (&["ikm-v1", "--root", "/a", "--root", "/b"], Err(())),
            (&["--root", "/mnt"], Err(())),
        ];
        for (args, expected) in cases {
            let got = parse_args(args.iter().map(OsString::from).collect());
            assert_eq!(got.as_ref().map_err(|_| ()), expected.as_ref().map_err(|_| ()), "{args:?}: {got:?}");
        }
    }
}
