//! `security-bootstrap`: parses arguments, sets up logging, runs the command, maps errors to exit codes.

use std::process::ExitCode;

use clap::Parser;
use security_bootstrap::cli::{Cli, Command, LogFormat, EXIT_USAGE};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(EXIT_USAGE) } else { ExitCode::SUCCESS };
        }
    };
    // Long-running commands log their progress; one-shot tools only warnings.
    let long_running = matches!(cli.command, Command::Run(_) | Command::TokenServer(_));
    init_logging(cli.log_format, if long_running { "info" } else { "warn" });
    let mut stdout = std::io::stdout().lock();
    match security_bootstrap::run(cli, &mut stdout) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(security_bootstrap::exit_code(&error))
        }
    }
}

fn init_logging(format: LogFormat, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("EDGESEAL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
