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
    // The clients of the token and admin sockets stay as they are: the servers look at them through
    // /proc (a non-dumpable process hides it from a server without CAP_SYS_PTRACE, as in a container),
    // and `gate` execs the service, which would inherit the core limit.
    if !cli.command.is_socket_client() {
        no_core_dumps();
    }
    // Long-running commands (and a restore, whose steps an operator follows; and gate, which says
    // when it rewrote an app's secret files) log their progress; one-shot tools only warnings.
    let long_running =
        matches!(cli.command, Command::Run(_) | Command::TokenServer(_) | Command::Restore(_) | Command::Gate(_));
    init_logging(cli.log_format, if long_running { "info" } else { "warn" });
    let mut stdout = std::io::stdout().lock();
    match security_bootstrap::run(cli, &mut stdout) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // A supervised app's own exit status is not gate's error: the app has said what it had to.
            if !error.is::<security_bootstrap::commands::gate::AppExited>() {
                eprintln!("error: {error:#}");
            }
            ExitCode::from(security_bootstrap::exit_code(&error))
        }
    }
}

/// A crash must not write the KEK, the seal key, the client key or a token to disk: no core file for
/// this process or the OpenBao it starts (the limit is inherited across fork and exec), and no
/// ptrace or /proc/<pid>/mem by other processes of the same user. Best effort: refused only where the
/// kernel forbids lowering them, which it never does.
fn no_core_dumps() {
    use nix::sys::resource::{setrlimit, Resource};
    if let Err(e) = setrlimit(Resource::RLIMIT_CORE, 0, 0) {
        eprintln!("warning: cannot disable core dumps (RLIMIT_CORE): {e}");
    }
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        eprintln!("warning: cannot mark the process non-dumpable: {e}");
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
