//! The `edgeseal-kdf-tpm2` command line (pure): arguments in, a [`Command`] or a usage error out.

use std::ffi::OsString;
use std::fmt;

use super::params::{parse_timeout, KeySource, PersistentHandle, Tcti};
use super::Options;

/// The plug-in's name, prefixed to every stderr line.
pub const NAME: &str = "edgeseal-kdf-tpm2";

/// `--help`.
pub const USAGE: &str = "\
edgeseal-kdf-tpm2: an edgeseal KDF plug-in that derives the IKM inside a TPM 2.0

Usage:
  edgeseal-kdf-tpm2 ikm-v1 [--tcti TCTI] [--handle HANDLE] [--timeout DURATION]
      print the IKM as 64 lowercase hex digits on one line
  edgeseal-kdf-tpm2 provision --handle HANDLE [--tcti TCTI] [--timeout DURATION]
      generate a random HMAC key inside the TPM and persist it at HANDLE (once per device)
  edgeseal-kdf-tpm2
      ikm-v1 with the defaults, for EdgeX's EDGEX_IKM_HOOK (no arguments)
  edgeseal-kdf-tpm2 --help

The IKM is HMAC-SHA256 over the label \"edgeseal-kdf-tpm2 ikm v1\", computed inside the TPM with a key
that never leaves it: by default a primary key the TPM re-derives from its owner seed and a fixed
template (nothing is stored in the TPM), or with --handle a key made by `provision`. The same TPM gives
the same IKM across reboots; another TPM, or a cleared owner hierarchy, gives another one.

`provision` never replaces an existing object: if HANDLE holds a key of the kind it makes, it says so and
exits 0; anything else is refused (evict it yourself with tpm2_evictcontrol if you are sure).

Options:
  --tcti TCTI         the TPM to use, as for tpm2-tools (default device:/dev/tpmrm0;
                      a simulator: swtpm:host=127.0.0.1,port=2321)
  --handle HANDLE     a persistent handle in the owner hierarchy, e.g. 0x81000101
  --timeout DURATION  give up after this long, cleanup included (default 20s; keep it below kdf.timeout)

Needs tpm2-tools in PATH (edgeseal passes /usr/bin:/bin; Debian/Ubuntu: apt-get install tpm2-tools).
TPM2TOOLS_TCTI and the rest of the environment are not passed on: only --tcti chooses the TPM.
Exit status: 0 ok; 1 the TPM could not give the IKM (one line on stderr says why); 2 bad usage.

Example (edgeseal.yaml):
  kdf:
    plugin: /usr/libexec/edgeseal/edgeseal-kdf-tpm2
    args: [--handle, \"0x81000101\"]
";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Print the IKM (protocol `ikm-v1`, or no arguments for EdgeX).
    Ikm {
        /// Which TPM, how long.
        options: Options,
        /// Which key.
        key: KeySource,
    },
    /// Provision a persistent key.
    Provision {
        /// Which TPM, how long.
        options: Options,
        /// Where to persist it.
        handle: PersistentHandle,
    },
    /// Print usage.
    Help,
}

/// A command line that cannot be run; exit status 2.
#[derive(Debug, PartialEq, Eq)]
pub struct UsageError(String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (run `{NAME} --help` for usage)", self.0)
    }
}

impl std::error::Error for UsageError {}

fn usage(message: impl Into<String>) -> UsageError {
    UsageError(message.into())
}

/// Parses the arguments after the program name. `path` is where tpm2-tools are looked for (`$PATH`).
pub fn parse_args(args: Vec<OsString>, path: Option<OsString>) -> Result<Command, UsageError> {
    let mut options = Options { path, ..Options::default() };
    let mut args = args.into_iter();
    let provisioning = match args.next() {
        None => return Ok(Command::Ikm { options, key: KeySource::Primary }),
        Some(first) => match first.to_str() {
            Some("ikm-v1") => false,
            Some("provision") => true,
            Some("--help" | "-h") => return Ok(Command::Help),
            Some(word) if !word.starts_with('-') => {
                return Err(usage(format!("unknown protocol or command {word:?}; this plug-in speaks ikm-v1")))
            }
            _ => return Err(usage(format!("{first:?} must follow ikm-v1 or provision"))),
        },
    };
    let (mut tcti, mut handle, mut timeout) = (None, None, None);
    while let Some(arg) = args.next() {
        let arg = arg.into_string().map_err(|a| usage(format!("argument {a:?} is not UTF-8")))?;
        if arg == "--help" || arg == "-h" {
            return Ok(Command::Help);
        }
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name.to_owned(), Some(value.to_owned())),
            _ => (arg.clone(), None),
        };
        let slot = match name.as_str() {
            "--tcti" => &mut tcti,
            "--handle" => &mut handle,
            "--timeout" => &mut timeout,
            _ => return Err(usage(format!("unexpected argument {arg:?}"))),
        };
        if slot.is_some() {
            return Err(usage(format!("{name} given twice")));
        }
        let value = match inline {
            Some(value) => value,
            None => {
                args.next().and_then(|v| v.into_string().ok()).ok_or_else(|| usage(format!("{name} needs a value")))?
            }
        };
        *slot = Some(value);
    }
    if let Some(tcti) = tcti {
        options.tcti = tcti.parse::<Tcti>().map_err(|e| usage(e.to_string()))?;
    }
    if let Some(timeout) = timeout {
        options.timeout = parse_timeout(&timeout).map_err(|e| usage(e.to_string()))?;
    }
    let handle = handle.map(|h| h.parse::<PersistentHandle>()).transpose().map_err(|e| usage(e.to_string()))?;
    match (provisioning, handle) {
        (false, None) => Ok(Command::Ikm { options, key: KeySource::Primary }),
        (false, Some(handle)) => Ok(Command::Ikm { options, key: KeySource::Persistent(handle) }),
        (true, Some(handle)) => Ok(Command::Provision { options, handle }),
        (true, None) => Err(usage("provision needs --handle HANDLE (e.g. 0x81000101)")),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn parse(args: &[&str]) -> Result<Command, UsageError> {
        parse_args(args.iter().map(OsString::from).collect(), None)
    }

    #[test]
    fn arguments_map_to_commands() {
        let swtpm: Tcti = "swtpm:host=127.0.0.1,port=2321".parse().unwrap();
        let handle: PersistentHandle = "0x81000101".parse().unwrap();
        let defaults = Options::default();
        let with_tcti = Options { tcti: swtpm.clone(), ..Options::default() };
        let cases: Vec<(&[&str], Command)> = vec![
            (&[], Command::Ikm { options: defaults.clone(), key: KeySource::Primary }),
            (&["ikm-v1"], Command::Ikm { options: defaults.clone(), key: KeySource::Primary }),
            (
                &["ikm-v1", "--tcti", "swtpm:host=127.0.0.1,port=2321"],
                Command::Ikm { options: with_tcti.clone(), key: KeySource::Primary },
            ),
            (
                &["ikm-v1", "--handle=0x81000101", "--tcti=swtpm:host=127.0.0.1,port=2321"],
                Command::Ikm { options: with_tcti.clone(), key: KeySource::Persistent(handle) },
            ),
            (
                &["ikm-v1", "--timeout", "3s"],
                Command::Ikm {
                    options: Options { timeout: Duration::from_secs(3), ..Options::default() },
                    key: KeySource::Primary,
                },
            ),
            (&["provision", "--handle", "0x81000101"], Command::Provision { options: defaults.clone(), handle }),
            (
                &["provision", "--tcti", "swtpm:host=127.0.0.1,port=2321", "--handle", "0x81000101"],
                Command::Provision { options: with_tcti, handle },
            ),
            (&["--help"], Command::Help),
            (&["ikm-v1", "-h"], Command::Help),
        ];
        for (args, want) in cases {
            assert_eq!(parse(args).unwrap(), want, "{args:?}");
        }
    }

    #[test]
    fn bad_command_lines_are_usage_errors_that_say_why() {
        let cases: &[(&[&str], &str)] = &[
            (&["ikm-v2"], "unknown protocol or command \"ikm-v2\""),
            (&["hello"], "unknown protocol or command"),
            (&["--tcti", "swtpm"], "must follow ikm-v1 or provision"),
            (&["ikm-v1", "--root", "/"], "unexpected argument \"--root\""),
            (&["ikm-v1", "ikm-v1"], "unexpected argument \"ikm-v1\""),
            (&["ikm-v1", "--tcti"], "--tcti needs a value"),
            (&["ikm-v1", "--tcti", "a", "--tcti", "b"], "--tcti given twice"),
            (&["ikm-v1", "--tcti", "/lib/x.so"], "not a library path"),
            (&["ikm-v1", "--handle", "81000101"], "is not a handle"),
            (&["ikm-v1", "--handle", "0x80000000"], "not an owner-hierarchy persistent handle"),
            (&["ikm-v1", "--timeout", "forever"], "--timeout"),
            (&["provision"], "provision needs --handle"),
        ];
        for (args, want) in cases {
            let err = parse(args).unwrap_err().to_string();
            assert!(err.contains(want), "{args:?}: {err}");
            assert!(err.ends_with("(run `edgeseal-kdf-tpm2 --help` for usage)"), "{err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn the_search_path_is_passed_through() {
        match parse_args(vec!["ikm-v1".into()], Some("/opt/bin".into())).unwrap() {
            Command::Ikm { options, .. } => assert_eq!(options.path, Some("/opt/bin".into())),
            other => panic!("{other:?}"),
        }
    }
}
