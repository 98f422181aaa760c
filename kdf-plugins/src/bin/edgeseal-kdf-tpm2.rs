//! `edgeseal-kdf-tpm2`: the TPM 2.0 KDF plug-in (SPEC §4).
//!
//! Parses its arguments with [`kdf_plugins::tpm2::cli`], calls [`kdf_plugins::tpm2`] and prints the IKM
//! (or the provisioning result). The logic lives in the library; see `--help` for usage and exit codes.

use kdf_plugins::plugin_main::write_stdout;
use std::process::ExitCode;

use kdf_plugins::tpm2::cli::{self, Command, NAME};
use kdf_plugins::tpm2::{self, Provisioned};
use zeroize::Zeroizing;

/// Exit status for a bad command line.
const USAGE_EXIT: u8 = 2;

/// The IKM line: 32 bytes as 64 hex digits, and a newline.
const IKM_LINE_LEN: usize = 65;

fn main() -> ExitCode {
    let args = std::env::args_os().skip(1).collect();
    let command = match cli::parse_args(args, std::env::var_os("PATH")) {
        Ok(command) => command,
        Err(err) => {
            eprintln!("{NAME}: {err}");
            return ExitCode::from(USAGE_EXIT);
        }
    };
    match command {
        Command::Help => write_stdout(NAME, cli::USAGE.as_bytes()),
        Command::Ikm { options, key } => match tpm2::derive_ikm(&options, key) {
            Ok(derivation) => {
                for note in &derivation.notes {
                    eprintln!("{NAME}: note: {note}");
                }
                // Hex and newline built in place in a wiped buffer: no unwiped copy left by a reallocation.
                let mut line = Zeroizing::new([0u8; IKM_LINE_LEN]);
                let (digits, newline) = line.split_at_mut(IKM_LINE_LEN - 1);
                if hex::encode_to_slice(derivation.ikm.expose(), digits).is_err() {
                    eprintln!("{NAME}: the TPM returned {} bytes instead of 32", derivation.ikm.len());
                    return ExitCode::FAILURE;
                }
                newline[0] = b'\n';
                write_stdout(NAME, &line[..])
            }
            Err(err) => fail(&err),
        },
        Command::Provision { options, handle } => match tpm2::provision(&options, handle) {
            Ok((outcome, notes)) => {
                for note in &notes {
                    eprintln!("{NAME}: note: {note}");
                }
                let tcti = &options.tcti;
                let message = match outcome {
                    Provisioned::Created => format!(
                        "{NAME}: provisioned a new HMAC-SHA256 key at persistent handle {handle} (TCTI {tcti}); \
                         derive with: {NAME} ikm-v1 --handle {handle}\n"
                    ),
                    Provisioned::AlreadyPresent => format!(
                        "{NAME}: persistent handle {handle} already holds an HMAC-SHA256 key of the kind provision \
                         makes (TCTI {tcti}); nothing changed\n"
                    ),
                };
                write_stdout(NAME, message.as_bytes())
            }
            Err(err) => fail(&err),
        },
        Command::ProvisionPcrs { options, selection } => match tpm2::provision_pcrs(&options, selection) {
            Ok(binding) => {
                for note in &binding.notes {
                    eprintln!("{NAME}: note: {note}");
                }
                write_stdout(NAME, pcr_instructions(&options.tcti, &binding.policy).as_bytes())
            }
            Err(err) => fail(&err),
        },
    }
}

/// What to do with the values `provision --pcrs` read: the rewrap command and the `kdf.args`.
fn pcr_instructions(tcti: &tpm2::Tcti, policy: &tpm2::PcrPolicy) -> String {
    let mut args = Vec::new();
    if tcti != &tpm2::Tcti::default() {
        args.extend(["--tcti".to_owned(), tcti.to_string()]);
    }
    args.extend(["--pcrs".to_owned(), policy.selection().to_string(), "--pcr-values".to_owned(), policy.values_arg()]);
    let to_args: Vec<String> = args.iter().map(|a| format!("--to-arg {a}")).collect();
    let yaml: Vec<String> = args.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "{NAME}: the key bound to PCRs {selection} answers with their current values (TCTI {tcti}).\n\
         It is another key than the one without --pcrs: move the keystore to it with\n  \
         security-bootstrap keystore rewrap --config /etc/edgeseal/edgeseal.yaml \\\n      \
         --to-plugin /usr/libexec/edgeseal/edgeseal-kdf-tpm2 {to_args}\n\
         then set in edgeseal.yaml:\n  kdf:\n    args: [{yaml}]\n\
         Plug-in arguments: {args}\n",
        selection = policy.selection(),
        to_args = to_args.join(" "),
        yaml = yaml.join(", "),
        args = args.join(" "),
    )
}

/// One line on stderr, exit status 1. Errors never carry keying material.
fn fail(err: &tpm2::Tpm2Error) -> ExitCode {
    eprintln!("{NAME}: {err}");
    ExitCode::FAILURE
}
