//! security-bootstrap: edgeseal's entry point.
//!
//! Today it checks KDF plug-ins and manages the encrypted keystore; later stages (pki-init, setup,
//! token server, run) grow here. Logic lives in the libraries (`kdf-plugins`, `secretstore-setup`);
//! this crate composes their config sections into `edgeseal.yaml` and turns commands into calls.
//!
//! Layout:
//! - [`cli`]: clap definitions and exit codes.
//! - [`config`]: `edgeseal.yaml`, checked in one place when loaded, with file:line:column errors.
//! - [`commands`]: one module per command.

#![forbid(unsafe_code)]

pub mod cli;
pub mod commands;
pub mod config;

use std::io::Write;

use thiserror::Error;

pub use cli::Cli;

/// A usage error found after argument parsing (exit code 64).
#[derive(Debug, Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Runs a parsed command line, writing its report to `out`.
pub fn run(cli: Cli, out: &mut dyn Write) -> anyhow::Result<()> {
    match cli.command {
        cli::Command::Kdf(cli::KdfCommand::Check(args)) => commands::kdf_check::run(&args, out),
        cli::Command::Keystore(cli::KeystoreCommand::Inspect(args)) => commands::inspect::run(&args, out),
        cli::Command::Keystore(cli::KeystoreCommand::ImportEdgex(args)) => commands::import_edgex::run(&args, out),
        cli::Command::Keystore(cli::KeystoreCommand::Rewrap(args)) => commands::rewrap::run(&args, out),
        cli::Command::Run(args) => commands::run::run(&args.config, args.ready_file.as_deref()),
        cli::Command::PkiInit(args) => commands::pki::run(&args.config, args.check, out),
        cli::Command::Setup(args) => commands::setup::run(&args.config, out),
        cli::Command::Secrets(command) => commands::secrets::run(&command, out),
        cli::Command::Node(cli::NodeCommand::Show(args)) => commands::bundles::node_show(&args, out),
        cli::Command::Fleet(args) => commands::fleet::run(&args, out),
        cli::Command::Backup(args) => commands::bundles::backup(&args, out),
        cli::Command::Cluster(command) => commands::cluster::run(&command, out),
        cli::Command::Restore(args) => commands::restore::run(&args, out),
        cli::Command::Audit(args) => commands::audit::run(&args, out),
        cli::Command::Status(args) => commands::status::run(&args, out),
        cli::Command::RotateSealKey(args) => commands::seal::rotate(&args.config, out),
        cli::Command::Rekey(args) => commands::rekey::run(&args, out),
        cli::Command::MigrateSeal(args) => commands::seal::migrate(&args.config, out),
        cli::Command::TokenServer(args) => commands::token_server::run(&args.config),
        cli::Command::Health(args) => commands::token::health(&args.socket, out),
        cli::Command::Gate(args) => {
            use commands::gate::{spec::Deliveries, Gate, Sink};
            let deliveries = Deliveries::new(
                args.secret_env,
                args.secret_file,
                args.token_env.as_deref(),
                args.token_file.as_deref(),
            )
            .map_err(UsageError)?;
            let token = match (args.token_file, args.token_env) {
                (Some(path), _) => Some(Sink::File(path)),
                (None, Some(var)) => Some(Sink::Env(var)),
                (None, None) => None,
            };
            let gate = Gate {
                socket: args.socket,
                service: args.service,
                wait: args.wait,
                token,
                deliveries,
                allow_disk: args.allow_disk,
                file_owner: args.file_owner,
                on_change: args.on_change,
                check_interval: args.check_interval,
                grace: args.grace,
            };
            commands::gate::run(gate, &args.command)
        }
        cli::Command::Token(args) => match &args.secret {
            Some(name) => {
                commands::token::secret(&args.socket, args.service.as_deref(), name, args.version, args.json, out)
            }
            None => commands::token::run(&args.socket, args.service.as_deref(), args.whoami, out),
        },
    }
}

/// The exit code for an error: a token-socket client's own code (69, 75, 76, 77: see
/// [`commands::token::exit_code_for`]), 64 for usage and configuration errors, 1 for everything else.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    if let Some(failure) = error.chain().find_map(|e| e.downcast_ref::<commands::token::TokenFailure>()) {
        return failure.code;
    }
    if let Some(commands::gate::AppExited(status)) = error.chain().find_map(|e| e.downcast_ref()) {
        return *status;
    }
    let usage = error.chain().any(|e| {
        e.is::<UsageError>()
            || e.is::<config::ConfigError>()
            || e.is::<config::StoreIdentityError>()
            || e.is::<kdf_plugins::config::KdfConfigError>()
            || e.is::<pki_init::PkiConfigError>()
    });
    if usage {
        cli::EXIT_USAGE
    } else {
        cli::EXIT_FAILURE
    }
}
