//! The `edgeseal-kdf-tpm2` command line (pure): arguments in, a [`Command`] or a usage error out.

use std::ffi::OsString;
use std::fmt;

use super::params::{parse_timeout, KeySource, PersistentHandle, Tcti};
use super::policy::{PcrPolicy, PcrSelection};
use super::Options;

/// The plug-in's name, prefixed to every stderr line.
pub const NAME: &str = "edgeseal-kdf-tpm2";

/// `--help`.
pub const USAGE: &str = "\
edgeseal-kdf-tpm2: an edgeseal KDF plug-in that derives the IKM inside a TPM 2.0

Usage:
  edgeseal-kdf-tpm2 ikm-v1 [--tcti TCTI] [--handle HANDLE | --pcrs PCRS --pcr-values VALUES] [--timeout DURATION]
      print the IKM as 64 lowercase hex digits on one line
  edgeseal-kdf-tpm2 provision --handle HANDLE [--tcti TCTI] [--timeout DURATION]
      generate a random HMAC key inside the TPM and persist it at HANDLE (once per device)
  edgeseal-kdf-tpm2 provision --pcrs PCRS [--tcti TCTI] [--timeout DURATION]
      read the PCRs' current values and print the --pcrs/--pcr-values arguments that bind the key to them
  edgeseal-kdf-tpm2
      ikm-v1 with the defaults, for EdgeX's EDGEX_IKM_HOOK (no arguments)
  edgeseal-kdf-tpm2 --help

The IKM is HMAC-SHA256 over the label \"edgeseal-kdf-tpm2 ikm v1\", computed inside the TPM with a key
that never leaves it: by default a primary key the TPM re-derives from its owner seed and a fixed
template (nothing is stored in the TPM), or with --handle a key made by `provision`. The same TPM gives
the same IKM across reboots; another TPM, or a cleared owner hierarchy, gives another one.

With --pcrs the primary key is bound to PCR values (a PCR policy): the TPM computes the HMAC only while
the PCRs hold --pcr-values, so a changed boot chain (firmware, bootloader, Secure Boot settings) gets an
error naming the PCR instead of the IKM. It is another key, so another IKM: move a keystore to it with
`security-bootstrap keystore rewrap`, and back to the key without --pcrs before a planned firmware update.

`provision` never replaces an existing object: if HANDLE holds a key of the kind it makes, it says so and
exits 0; anything else is refused (evict it yourself with tpm2_evictcontrol if you are sure).

Options:
  --tcti TCTI          the TPM: device:PATH (default device:/dev/tpmrm0, the kernel resource manager)
                       or swtpm:host=HOST,port=PORT (a simulator's command port)
  --handle HANDLE      a persistent handle in the owner hierarchy, e.g. 0x81000101
  --pcrs PCRS          PCRs of the sha256 bank the key is bound to, e.g. sha256:7 or sha256:0,7 (at most 8)
  --pcr-values VALUES  their expected values, 64 hex digits each, comma-separated, in ascending PCR
                       order (what `provision --pcrs` prints)
  --timeout DURATION   give up after this long, cleanup included (default 20s; keep it below kdf.timeout)

The plug-in talks to the TPM itself; only `provision --handle` needs tpm2-tools in PATH (edgeseal passes
/usr/bin:/bin; Debian/Ubuntu: apt-get install tpm2-tools). The environment is not read: only --tcti
chooses the TPM.
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
    /// Read PCRs and print the arguments binding the key to their values.
    ProvisionPcrs {
        /// Which TPM, how long.
        options: Options,
        /// Which PCRs.
        selection: PcrSelection,
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
#[allow(clippy::too_many_lines)]
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
    let (mut tcti, mut handle, mut timeout, mut pcrs, mut pcr_values) = (None, None, None, None, None);
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
            "--pcrs" => &mut pcrs,
            "--pcr-values" => &mut pcr_values,
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
    let pcrs = pcrs.map(|p| p.parse::<PcrSelection>()).transpose().map_err(|e| usage(e.to_string()))?;
    if handle.is_some() && pcrs.is_some() {
        return Err(usage("--pcrs binds the primary key; it cannot be combined with --handle"));
    }
    match (provisioning, handle, pcrs, pcr_values) {
        (false, None, None, None) => Ok(Command::Ikm { options, key: KeySource::Primary }),
        (false, Some(handle), None, None) => Ok(Command::Ikm { options, key: KeySource::Persistent(handle) }),
        (false, None, Some(selection), Some(values)) => {
            let policy = PcrPolicy::parse_values(selection, &values).map_err(|e| usage(e.to_string()))?;
            Ok(Command::Ikm { options, key: KeySource::PcrBound(policy) })
        }
        (false, None, Some(selection), None) => Err(usage(format!(
            "--pcrs {selection} needs --pcr-values (the values the PCRs must hold; `{NAME} provision --pcrs \
             {selection}` prints them)"
        ))),
        (_, _, None, Some(_)) => Err(usage("--pcr-values needs --pcrs")),
        (true, Some(handle), None, None) => Ok(Command::Provision { options, handle }),
        (true, None, Some(selection), None) => Ok(Command::ProvisionPcrs { options, selection }),
        (true, None, Some(_), Some(_)) => {
            Err(usage("provision --pcrs reads the values itself; --pcr-values is for ikm-v1"))
        }
        (true, None, None, None) => {
            Err(usage("provision needs --handle HANDLE (e.g. 0x81000101) or --pcrs PCRS (e.g. sha256:7)"))
        }
        (_, Some(_), Some(_), _) => Err(usage("--pcrs binds the primary key; it cannot be combined with --handle")),
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
        let values = "ab".repeat(32);
        let pcr_args = ["ikm-v1", "--pcrs", "sha256:7", "--pcr-values", values.as_str()];
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
            (
                &pcr_args,
                Command::Ikm {
                    options: defaults.clone(),
                    key: KeySource::PcrBound(PcrPolicy::new("sha256:7".parse().unwrap(), &[[0xab; 32]]).unwrap()),
                },
            ),
            (
                &["provision", "--pcrs", "sha256:8,7"],
                Command::ProvisionPcrs { options: defaults.clone(), selection: "sha256:7,8".parse().unwrap() },
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
            (&["provision"], "provision needs --handle HANDLE (e.g. 0x81000101) or --pcrs PCRS"),
            (
                &["ikm-v1", "--tcti", "tabrmd"],
                "--tcti \"tabrmd\" is not supported: the plug-in talks to the TPM itself",
            ),
            (&["ikm-v1", "--tcti", "mssim:port=2321"], "through device:PATH (e.g. device:/dev/tpmrm0) or swtpm:"),
            (&["ikm-v1", "--pcrs", "sha256:7"], "--pcrs sha256:7 needs --pcr-values"),
            (&["ikm-v1", "--pcrs", "sha1:7", "--pcr-values", "00"], "only the sha256 PCR bank"),
            (&["ikm-v1", "--pcrs", "sha256:24"], "is not a PCR selection"),
            (&["ikm-v1", "--pcr-values", "00"], "--pcr-values needs --pcrs"),
            (&["ikm-v1", "--pcrs", "sha256:7", "--pcr-values", "00"], "one SHA-256 value (64 hex digits) per PCR"),
            (&["ikm-v1", "--pcrs", "sha256:7", "--handle", "0x81000101"], "cannot be combined with --handle"),
            (&["provision", "--pcrs", "sha256:7", "--pcr-values", "00"], "reads the values itself"),
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
