//! Command-line interface (clap derive). `--help` is written for the operator of a device.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::commands::gate;

/// Exit codes, documented in `--help`.
pub const EXIT_OK: u8 = 0;
/// A runtime failure: a plug-in failed, a keystore cannot be opened, a file cannot be written.
pub const EXIT_FAILURE: u8 = 1;
/// Bad usage or configuration (EX_USAGE).
pub const EXIT_USAGE: u8 = 64;
/// `token`, `health`, `gate`: the token server or the store behind it is unavailable: nothing
/// listens on the socket, the connection failed, or it answered 503 (EX_UNAVAILABLE).
pub const EXIT_UNAVAILABLE: u8 = 69;
/// `token`, `health`, `gate`: try again later, the server rate-limited the caller (429) or timed
/// out reading the request (408) (EX_TEMPFAIL).
pub const EXIT_TEMPFAIL: u8 = 75;
/// `token`, `health`, `gate`: the server did not understand the request (400, 404, 405, 413): another
/// edgeseal version, or `--socket` is not edgeseal's token server (EX_PROTOCOL).
pub const EXIT_PROTOCOL: u8 = 76;
/// `token`, `gate`: the server denied the caller (403): not a configured service (EX_NOPERM).
pub const EXIT_NOPERM: u8 = 77;

/// The exit codes of the clients of the token socket (`token`, `health`, `gate`), for their `--help`
/// (a macro so that `concat!` can put it in front of each command's example). One mapping for all
/// three: `commands::token::exit_code_for`.
macro_rules! socket_exit_codes {
    () => {
        "Exit codes: 0 success, 77 denied (403: the caller is not a configured service), 69 unavailable
(no server on the socket, or the store is sealed or down: 503), 75 try again later (429
rate-limited, 408), 76 the server did not understand the request (400/404/405/413: another
edgeseal version, or --socket is not the token server), 64 bad usage, 1 other failures.

"
    };
}

const AFTER_HELP: &str = "\
Exit codes: 0 success, 1 runtime failure, 64 bad usage or configuration; token, health and gate also
use 69 unavailable, 75 try again later, 76 protocol mismatch and 77 denied (see their --help).

Examples:
  security-bootstrap kdf check --plugin /usr/libexec/edgeseal/edgeseal-kdf-hwfp
  security-bootstrap keystore inspect --config /etc/edgeseal/edgeseal.yaml
  security-bootstrap keystore import-edgex --config /etc/edgeseal/edgeseal.yaml \\
      --resp-init /vault/config/assets/resp-init.json --salt /vault/config/assets/kdf-salt.dat
  security-bootstrap keystore rewrap --config /etc/edgeseal/edgeseal.yaml \\
      --to-plugin /usr/libexec/edgeseal/edgeseal-kdf-tpm2";

/// edgeseal's security bootstrapper for edge devices.
#[derive(Debug, Parser)]
#[command(name = "security-bootstrap", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with KDF plug-ins.
    #[command(subcommand)]
    Kdf(KdfCommand),
    /// Work with the encrypted keystore.
    #[command(subcommand)]
    Keystore(KeystoreCommand),
    /// An operator's secrets on this device, through the admin socket (`run` serves it).
    ///
    /// Values come from stdin or --from-file, never from the command line. Exit 0 done, 1 failure (no
    /// such secret, --cas mismatch), 64 bad usage (nothing sent), 77 not an admin, 69 no admin socket.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Who read what: the services' reads of their secrets (with the process or container each token
    /// was issued to) and the admins' changes, oldest first.
    ///
    /// Joins edgeseal's audit log (tokens issued, admin actions) with OpenBao's (the requests each
    /// token made) through the admin socket. Never shows a value or a token.
    #[command(after_help = "Example:\n  security-bootstrap audit --service core-data --since 1h")]
    Audit(AuditArgs),
    /// The device at a glance, through the admin socket: store state, certificate expiry, and per
    /// service its selectors, secrets and tokens issued/denied since boot (never a value).
    ///
    /// Exit 0 reported, 1 failure, 77 not an admin, 69 no admin socket (is `run` running?).
    #[command(
        after_help = "Example:\n  security-bootstrap status\n  security-bootstrap status --json | jq .store.state"
    )]
    Status(StatusArgs),
    /// Generate or renew the device PKI (root CA, intermediate CA, one leaf per `pki.certs` entry).
    ///
    /// Idempotent: a rerun with the same config changes nothing. `--check` reports each certificate's
    /// subject, SANs, expiry and chain status without changing anything (exit 1 if one is not valid).
    #[command(
        name = "pki-init",
        after_help = "Example:\n  security-bootstrap pki-init --config /etc/edgeseal/edgeseal.yaml --check"
    )]
    PkiInit(PkiArgs),
    /// Initialize (first boot), unseal and configure OpenBao; converges on every run.
    ///
    /// First boot: sys/init, the unseal shares go KEK-encrypted into the keystore before anything
    /// else. Every boot: unseal from the keystore, generate a root token for this run from the shares,
    /// converge mounts, policies, token roles, secrets, the token-issuing token and file tokens, then
    /// revoke the root token. No root token is ever stored.
    #[command(after_help = "Example:\n  security-bootstrap setup --config /etc/edgeseal/edgeseal.yaml")]
    Setup(ConfigArg),
    /// This node's identity (SPEC §13).
    #[command(subcommand)]
    Node(NodeCommand),
    /// Several gateways as one highly available store (SPEC §15): invite a gateway, join, status, leave.
    ///
    /// Exit 0 done, 1 failure (nothing changed), 64 bad usage or configuration, 77 refused, 69 no
    /// admin socket (status).
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// A fleet's admin side (SPEC §14): org key, enrollment, secrets sent end-to-end encrypted to
    /// nodes through a central OpenBao, status, revocation.
    Fleet(crate::commands::fleet::FleetArgs),
    /// Back up this device's store to one file, encrypted to an offline recovery key (through the
    /// admin socket): the raft snapshot and the keys that open it. Never the IKM, the KEK or a token.
    #[command(
        after_help = "Example:\n  age-keygen -o recovery.key   # once, kept offline; prints its recipient age1…\n  security-bootstrap backup --to age1… -o /media/usb/gw-17.backup"
    )]
    Backup(BackupArgs),
    /// Restore a backup onto this device (stop edgeseal first): the store, opened with the backup's
    /// key, re-encrypted under this device's KEK, converged; every token issued before the backup is
    /// revoked. Refuses to replace a store this device holds unless --force. Crash-safe: rerun it.
    #[command(
        after_help = "Example:\n  security-bootstrap restore --identity recovery.key /media/usb/gw-17.backup \\\n      --from ed25519:… --config /etc/edgeseal/edgeseal.yaml"
    )]
    Restore(RestoreArgs),
    /// Start a rotation of the static seal key of the supervised OpenBao.
    ///
    /// Stores a new random key in the keystore as the next one; the next start of `run` completes the
    /// rotation (OpenBao opens with either key and rewraps to the new one; the old key is forgotten
    /// only once the new one alone opens the store). Crash-safe at every step.
    #[command(
        hide = true,
        after_help = "Example:\n  security-bootstrap rotate-seal-key --config /etc/edgeseal/edgeseal.yaml && systemctl restart edgeseal"
    )]
    RotateSealKey(ConfigArg),
    /// New unseal shares (Shamir store) or a new seal key (static seal); crash-safe at every step.
    ///
    /// Static seal (supervised, the default): stores a new random seal key as the next one; the next
    /// start of `run` completes the rotation (what `rotate-seal-key` did). --shares/--threshold make no
    /// sense there and are refused (exit 64).
    ///
    /// Shamir store (not started by edgeseal, or `seal: shamir`; OpenBao must be running, e.g. under
    /// `run`): OpenBao's verified rekey. The new shares go KEK-encrypted into the keystore as a pending
    /// generation before OpenBao switches to them; after verification they replace the old ones. Killed
    /// at any step, the store still opens (every unseal tries both generations); run `rekey` again to
    /// finish or discard the interrupted one. Default: the current number of shares and threshold.
    #[command(
        after_help = "Examples:\n  security-bootstrap rekey --config /etc/edgeseal/edgeseal.yaml --shares 5 --threshold 3\n  security-bootstrap rekey --config /etc/edgeseal/edgeseal.yaml && systemctl restart edgeseal   # static seal\n\nExit codes: 0 done, 1 failure (the store still opens; run it again), 64 bad usage or configuration."
    )]
    Rekey(RekeyArgs),
    /// Move a supervised Shamir-sealed store to the static seal (stop edgeseal first).
    ///
    /// Copies the raft storage aside, stores a seal key and edgeseal's client identity in the
    /// keystore, runs OpenBao's seal migration with the unseal shares over the private socket, and
    /// registers edgeseal's client certificate. Killed at any step, a rerun starts again from the
    /// copy: the store is always either still Shamir-sealed with its shares or migrated.
    #[command(after_help = "Example:\n  security-bootstrap migrate-seal --config /etc/edgeseal/edgeseal.yaml")]
    MigrateSeal(ConfigArg),
    /// The whole boot: pki-init, (optionally) a supervised OpenBao, setup, then the token server and
    /// the unseal watchdog, until SIGTERM/SIGINT.
    ///
    /// With `secret_store.supervise: {binary, data_dir}` edgeseal starts OpenBao itself (raft, TLS from
    /// its PKI, a file audit device) and restarts it if it dies. Readiness: `--ready-file` appears, and
    /// `GET /v1/health` on the socket answers 200.
    #[command(
        after_help = "Example:\n  security-bootstrap run --config /etc/edgeseal/edgeseal.yaml --ready-file /run/edgeseal/ready"
    )]
    Run(RunArgs),
    /// Serve per-service tokens on the Unix socket, attesting each caller (SO_PEERCRED, /proc, Docker).
    ///
    /// Needs a keystore and a token-issuing token made by `setup`. Stops cleanly on SIGTERM/SIGINT.
    #[command(
        name = "token-server",
        after_help = "Example:\n  security-bootstrap token-server --config /etc/edgeseal/edgeseal.yaml"
    )]
    TokenServer(ConfigArg),
    /// Fetch this process's token from the token server and print it (JSON).
    ///
    /// Exit 0 when the token (or, with --whoami, what the server sees) is printed; see below for the
    /// others.
    #[command(after_help = concat!(
        socket_exit_codes!(),
        "Example:\n  security-bootstrap token --socket /run/edgeseal/token.sock | jq -r .auth.client_token"
    ))]
    Token(TokenArgs),
    /// Ask the token server whether it can issue tokens (OpenBao unsealed, issuing token valid).
    ///
    /// Exit 0 healthy, 69 not (store sealed or down, or no server; the reason on stderr). For container
    /// healthchecks and monitoring.
    #[command(after_help = concat!(
        socket_exit_codes!(),
        "Example:\n  security-bootstrap health --socket /run/edgeseal/token.sock"
    ))]
    Health(SocketArg),
    /// A service's entrypoint: wait for the socket, fetch the service's token or its secrets' values,
    /// hand them to the app, run it.
    ///
    /// While the server is unavailable (69) or rate-limits (75) it asks again every 250 ms until
    /// --wait has passed; any other answer is final, and then gate exits with the codes below (a
    /// secret that is not set: 64, with the command that sets it). With only --token-* and
    /// --secret-env and `--on-change none`, gate becomes the app (exec). With --secret-file or another
    /// --on-change, gate stays the app's parent: it forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1
    /// and SIGUSR2, checks the secrets' versions every --check-interval (a failed check changes
    /// nothing), rewrites the files and restarts or signals the app on a new version, removes the
    /// files when the app exits, and exits with the app's status (128 + N if killed by signal N).
    #[command(after_help = concat!(
        socket_exit_codes!(),
        "Examples:\n  security-bootstrap gate --service core-data --token-file /tmp/token -- /core-data --config x\n",
        "  security-bootstrap gate --service db --secret-file /run/secrets/db-password=db-password \\\n",
        "      --on-change restart -- docker-entrypoint.sh postgres   # with POSTGRES_PASSWORD_FILE=/run/secrets/db-password\n",
        "  security-bootstrap gate --service broker --secret-env MQTT_PASSWORD=mqtt:password \\\n",
        "      --secret-file /run/secrets/tls.key=broker-tls:key --on-change signal:HUP -- mosquitto -c /etc/mosquitto.conf"
    ))]
    Gate(GateArgs),
}

/// `status` arguments.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// The admin socket.
    #[arg(long = "admin-socket", value_name = "PATH", default_value = token_server::admin::DEFAULT_SOCKET)]
    pub socket: PathBuf,
}

/// `--socket PATH`.
#[derive(Debug, Args)]
pub struct SocketArg {
    /// The token server's socket.
    #[arg(long, value_name = "PATH", default_value = token_server::config::DEFAULT_SOCKET)]
    pub socket: PathBuf,
}

/// `gate` arguments.
#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("deliver")
        .required(true)
        .multiple(true)
        .args(["token_file", "token_env", "secret_env", "secret_file"])
))]
pub struct GateArgs {
    /// The service this container runs (asserted to the token server).
    #[arg(long, value_name = "NAME")]
    pub service: String,
    /// The token server's socket.
    #[arg(long, value_name = "PATH", default_value = token_server::config::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// How long to keep asking while the token server is unavailable or rate-limits.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    pub wait: std::time::Duration,
    /// Write the token to this file (mode 0600; use a tmpfs).
    #[arg(long, value_name = "PATH", conflicts_with = "token_env")]
    pub token_file: Option<PathBuf>,
    /// Put the token in this environment variable of the service.
    #[arg(long, value_name = "VAR")]
    pub token_env: Option<String>,
    /// Put the value of the service's own secret NAME (its KEY, for a multi-key secret; without, a
    /// single value as is, else the JSON object) in environment variable VAR of the app. Repeatable.
    #[arg(long, value_name = "VAR=NAME[:KEY]")]
    pub secret_env: Vec<gate::spec::EnvDelivery>,
    /// Write the value of the service's own secret NAME (or its KEY) to file PATH: mode 0600, owned by
    /// the app's user (or --file-owner), on a tmpfs (a persistent filesystem is refused unless
    /// --allow-disk), replaced atomically when the secret changes, removed when the app exits. Repeatable.
    #[arg(long, value_name = "PATH=NAME[:KEY]")]
    pub secret_file: Vec<gate::spec::FileDelivery>,
    /// Allow --secret-file on a persistent filesystem (the value then stays on disk until the app exits,
    /// and after a power cut).
    #[arg(long)]
    pub allow_disk: bool,
    /// The owner of the --secret-file files, for an app that drops privileges after start (default:
    /// gate's own user, which is the app's).
    #[arg(long, value_name = "UID[:GID]", value_parser = parse_owner)]
    pub file_owner: Option<(u32, u32)>,
    /// When a secret the app was given gets a new version: `restart` the app (SIGTERM, then SIGKILL
    /// after --grace) with the new values, `signal:NAME` it (e.g. signal:HUP) after rewriting the
    /// files, or `none` (files are still rewritten; the environment keeps its values).
    #[arg(long, value_name = "restart|signal:NAME|none", default_value = "none")]
    pub on_change: gate::spec::OnChange,
    /// How often the secrets' versions are checked (one request to the token socket) while the app runs.
    #[arg(long, value_parser = parse_interval, default_value = "30s")]
    pub check_interval: std::time::Duration,
    /// How long a restarted app has to exit after SIGTERM before it is killed.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub grace: std::time::Duration,
    /// The service's command and arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<std::ffi::OsString>,
}

/// A duration of at least 100 ms (a check is a request to the token socket).
fn parse_interval(text: &str) -> Result<std::time::Duration, String> {
    let interval = humantime::parse_duration(text).map_err(|e| format!("{text:?}: {e}"))?;
    if interval < std::time::Duration::from_millis(100) {
        return Err(format!("{text:?}: give at least 100ms"));
    }
    Ok(interval)
}

/// `UID[:GID]` (the group defaults to the uid).
fn parse_owner(text: &str) -> Result<(u32, u32), String> {
    let (uid, gid) = text.split_once(':').unwrap_or((text, text));
    match (uid.parse(), gid.parse()) {
        (Ok(uid), Ok(gid)) => Ok((uid, gid)),
        _ => Err(format!("{text:?}: give UID or UID:GID (numbers)")),
    }
}

/// `token` arguments.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The token server's socket.
    #[arg(long, value_name = "PATH", default_value = token_server::config::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Assert the service this process should be attested as (denied if it is not).
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,
    /// Show what the server sees about this process instead of fetching a token.
    #[arg(long, conflicts_with = "secret")]
    pub whoami: bool,
    /// Print this process's own secret NAME (read by the server with its service's token) instead of
    /// a token: a single-value secret as its value, a multi-key one as a JSON object.
    #[arg(long, value_name = "NAME")]
    pub secret: Option<String>,
    /// With --secret: that version instead of the current one.
    #[arg(long, value_name = "N", requires = "secret")]
    pub version: Option<u64>,
    /// With --secret: print the data as a JSON object even when it has a single value.
    #[arg(long, requires = "secret")]
    pub json: bool,
}

/// `run` arguments.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// edgeseal.yaml.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Written (with the pid) once the token server is serving; removed on shutdown.
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
}

/// `pki-init` arguments.
#[derive(Debug, Args)]
pub struct PkiArgs {
    /// edgeseal.yaml.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Report only; change nothing.
    #[arg(long)]
    pub check: bool,
}

/// `rekey --config FILE [--shares N --threshold T]`.
#[derive(Debug, Args)]
pub struct RekeyArgs {
    /// edgeseal.yaml.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// New number of unseal shares (Shamir store only; 1-255).
    #[arg(long, value_name = "N", requires = "threshold")]
    pub shares: Option<u64>,
    /// Shares needed to unseal (Shamir store only; 2..=N when N > 1).
    #[arg(long, value_name = "T", requires = "shares")]
    pub threshold: Option<u64>,
}

/// `--config FILE` (required).
#[derive(Debug, Args)]
pub struct ConfigArg {
    /// edgeseal.yaml.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
}

/// `kdf …`
#[derive(Debug, Subcommand)]
pub enum KdfCommand {
    /// Run a KDF plug-in twice, validate its answer and print the IKM length and a KEK fingerprint.
    ///
    /// Never prints the IKM or the KEK. The fingerprint changes when the plug-in's answer changes, so
    /// comparing it before and after a hardware change tells whether the keystore will still open.
    #[command(
        after_help = "Example:\n  security-bootstrap kdf check --plugin /usr/libexec/edgeseal/edgeseal-kdf-hwfp"
    )]
    Check(PluginArgs),
}

/// `--from-file F` and `--json`: where a secret's value comes from.
#[derive(Debug, Args)]
pub struct ValueArgs {
    /// Read the value from this file instead of stdin.
    #[arg(long, value_name = "FILE")]
    pub from_file: Option<PathBuf>,
    /// The value is a JSON object of string keys and values (EdgeX's multi-key secrets).
    #[arg(long)]
    pub json: bool,
}

/// `audit`
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only this service's events.
    #[arg(long)]
    pub service: Option<String>,
    /// Only events of the last DURATION (e.g. 30m, 1h, 7d).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub since: Option<std::time::Duration>,
    /// Only the newest N events.
    #[arg(long, value_name = "N", default_value_t = token_server::admin::routes::AUDIT_DEFAULT_LIMIT)]
    pub limit: usize,
    /// One JSON object per event, one per line, instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The admin socket.
    #[arg(long = "admin-socket", value_name = "PATH", default_value = token_server::admin::DEFAULT_SOCKET)]
    pub socket: PathBuf,
}

/// `secrets …`
#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Set SERVICE/NAME to the value on stdin (or --from-file): a new version.
    #[command(
        after_help = "Example:\n  printf '%s' \"$MQTT_PASSWORD\" | security-bootstrap secrets set core-data/mqtt-password"
    )]
    Set {
        /// SERVICE/NAME.
        target: String,
        /// Where the value comes from.
        #[command(flatten)]
        value: ValueArgs,
        /// Write only if the current version is N (0: only if it does not exist yet).
        #[arg(long, value_name = "N")]
        cas: Option<u64>,
        /// The admin socket.
        #[arg(long = "admin-socket", value_name = "PATH", default_value = token_server::admin::DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// Print SERVICE/NAME's value (a JSON object for multi-key secrets or with --json).
    Get {
        /// SERVICE/NAME.
        target: String,
        /// That version instead of the newest.
        #[arg(long, value_name = "N")]
        version: Option<u64>,
        /// Print the data as a JSON object.
        #[arg(long)]
        json: bool,
        /// The admin socket.
        #[arg(long = "admin-socket", value_name = "PATH", default_value = token_server::admin::DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// List secrets (never values): service, name, version, updated, source.
    List {
        /// Only this service's.
        service: Option<String>,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// The admin socket.
        #[arg(long = "admin-socket", value_name = "PATH", default_value = token_server::admin::DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// Delete SERVICE/NAME's newest version (or, with --destroy, every version).
    Rm {
        /// SERVICE/NAME.
        target: String,
        /// Destroy every version and the metadata.
        #[arg(long)]
        destroy: bool,
        /// The admin socket.
        #[arg(long = "admin-socket", value_name = "PATH", default_value = token_server::admin::DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// A new version: a new random value for a secret edgeseal generates, else the value on stdin.
    Rotate {
        /// SERVICE/NAME.
        target: String,
        /// Where the new value comes from (not needed for a generated secret).
        #[command(flatten)]
        value: ValueArgs,
        /// The admin socket.
        #[arg(long = "admin-socket", value_name = "PATH", default_value = token_server::admin::DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// SERVICE/NAME's versions: time, state and who wrote each (never values).
    History {
        /// SERVICE/NAME.
        target: String,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// The admin socket.
        #[arg(long = "admin-socket", value_name = "PATH", default_value = token_server::admin::DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// Export secrets as a bundle for another device or person: age-encrypted to --to, signed by this
    /// node.
    #[command(
        after_help = "Example:\n  security-bootstrap secrets export --to age1qy… core-data/* app/api-key -o secrets.age\n\nSelectors: SERVICE/NAME or SERVICE/*. The receiver imports it with\n  security-bootstrap secrets import secrets.age --from <this node's signing key>"
    )]
    Export {
        /// Whom the bundle is encrypted to (age recipients, age1…; repeatable).
        #[arg(long = "to", value_name = "AGE_RECIPIENT", required = true)]
        to: Vec<String>,
        /// SERVICE/NAME or SERVICE/*.
        #[arg(required = true)]
        selectors: Vec<String>,
        /// Where the bundle goes (a new file; never overwritten).
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: PathBuf,
        /// The admin socket.
        #[arg(long = "admin-socket", value_name = "PATH", default_value = token_server::admin::DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// Import a bundle made for this node: all of it or nothing; reports what changes.
    #[command(
        after_help = "Example:\n  security-bootstrap secrets import secrets.age --from ed25519:Qk… --dry-run\n\nA signed bundle needs its signer named with --from (or --allow-any-signer). A bundle made with\nthe plain `age` CLI (a JSON object \"service/name\": value, encrypted to this node's recipient)\nis unsigned: it needs --allow-unsigned."
    )]
    Import {
        /// The bundle.
        file: PathBuf,
        /// Accept bundles signed by this key (ed25519:…, from the sender's `node show`; repeatable).
        #[arg(long = "from", value_name = "SIGNING_KEY")]
        from: Vec<String>,
        /// Accept a bundle signed by any key (the signer is reported): you trust how it reached you.
        #[arg(long)]
        allow_any_signer: bool,
        /// Accept a bundle with no signature (made with `age` or `secrets seal`), or signed by any key.
        #[arg(long)]
        allow_unsigned: bool,
        /// Report what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// The admin socket.
        #[arg(long = "admin-socket", value_name = "PATH", default_value = token_server::admin::DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// Make a bundle from a JSON object on stdin ({"service/name": "value" or {…}}), with no device:
    /// encrypted to --to, unsigned (the receiver imports it with --allow-unsigned).
    #[command(after_help = "Example:\n  security-bootstrap secrets seal --to age1qy… < secrets.json > secrets.age")]
    Seal {
        /// Whom the bundle is encrypted to (age1…; repeatable).
        #[arg(long = "to", value_name = "AGE_RECIPIENT", required = true)]
        to: Vec<String>,
        /// Write the bundle here (a new file) instead of stdout.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

/// `node …`
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// This node's identity: node id, age recipient, signing key, TLS certificate SHA-256 (public
    /// values only).
    #[command(
        after_help = "Examples:\n  security-bootstrap node show                      # a running device (admin socket)\n  security-bootstrap node show --config edgeseal.yaml  # offline; makes the identity if there is none yet"
    )]
    Show(NodeShowArgs),
}

impl Command {
    /// Whether the command only talks to the token or the admin socket (no keystore, no KEK): the
    /// servers attest it through `/proc`, which a non-dumpable process hides from a server without
    /// CAP_SYS_PTRACE (the bootstrapper in a container).
    pub fn is_socket_client(&self) -> bool {
        match self {
            Self::Token(_)
            | Self::Health(_)
            | Self::Gate(_)
            | Self::Secrets(_)
            | Self::Status(_)
            | Self::Audit(_)
            | Self::Backup(_)
            | Self::Cluster(ClusterCommand::Status(_)) => true,
            Self::Fleet(args) => matches!(args.command, crate::commands::fleet::FleetCommand::Sync { .. }),
            Self::Node(NodeCommand::Show(args)) => args.config.is_none(),
            _ => false,
        }
    }
}

/// `cluster …`
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// On a member: a join bundle for a new gateway, encrypted to its node recipient and signed by this
    /// node. It carries the cluster's seal key and a login registered for the new member's node id:
    /// keep it as you would a backup. Reads this gateway's keystore (root; `run` may be running).
    #[command(after_help = "Example (on gateway 1, with gateway 2's `node show --config` recipient):
  security-bootstrap cluster invite --node-id gw2 --to age1… -o gw2.join --config /etc/edgeseal/edgeseal.yaml")]
    Invite(ClusterInviteArgs),
    /// On the new gateway (edgeseal stopped, no store yet): checks the bundle (this gateway's
    /// recipient, signed by --from, not expired, for this node_id) and stores its keys under this
    /// gateway's KEK. The next `run` joins the cluster and opens its member by itself.
    #[command(after_help = "Example:
  security-bootstrap cluster join gw2.join --from ed25519:… --config /etc/edgeseal/edgeseal.yaml
  security-bootstrap run --config /etc/edgeseal/edgeseal.yaml")]
    Join(ClusterJoinArgs),
    /// The cluster as this member sees it (through the admin socket): members, leader, voters,
    /// autopilot's health.
    #[command(after_help = "Example:
  security-bootstrap cluster status --json | jq .autopilot.healthy")]
    Status(StatusArgs),
    /// Remove a member from the cluster (this one, or --node for a dead one being replaced), and
    /// delete its login. Stop the removed gateway's edgeseal and wipe its data afterwards.
    #[command(after_help = "Example (gateway 3 is dead, from gateway 1):
  security-bootstrap cluster leave --node gw3 --config /etc/edgeseal/edgeseal.yaml")]
    Leave(ClusterLeaveArgs),
}

/// `cluster invite`
#[derive(Debug, Args)]
pub struct ClusterInviteArgs {
    /// The node id the new member will have (its `secret_store.cluster.node_id`).
    #[arg(long = "node-id", value_name = "ID")]
    pub node_id: String,
    /// The new gateway's node recipient (age1…, from its `node show --config`).
    #[arg(long = "to", value_name = "AGE_RECIPIENT", required = true)]
    pub to: Vec<String>,
    /// Where the bundle goes (a new file; never overwritten).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
    /// How long the bundle may be used.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = humantime::parse_duration)]
    pub valid: std::time::Duration,
    /// edgeseal.yaml of this member.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
}

/// `cluster join`
#[derive(Debug, Args)]
pub struct ClusterJoinArgs {
    /// The join bundle.
    pub file: PathBuf,
    /// The inviting member's signing key (ed25519:…, printed by `cluster invite`; repeatable).
    #[arg(long = "from", value_name = "SIGNING_KEY", required = true)]
    pub from: Vec<String>,
    /// edgeseal.yaml of this gateway (with secret_store.cluster).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
}

/// `cluster leave`
#[derive(Debug, Args)]
pub struct ClusterLeaveArgs {
    /// The member to remove (default: this one).
    #[arg(long = "node", value_name = "ID")]
    pub node: Option<String>,
    /// edgeseal.yaml of this member.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
}

/// `node show`
#[derive(Debug, Args)]
pub struct NodeShowArgs {
    /// JSON (with the TLS certificate's PEM).
    #[arg(long)]
    pub json: bool,
    /// Read the keystore directly (edgeseal stopped, or before the first boot) instead of asking `run`.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The admin socket.
    #[arg(long = "admin-socket", value_name = "PATH", default_value = token_server::admin::DEFAULT_SOCKET)]
    pub socket: PathBuf,
}

/// `backup`
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The recovery recipient(s) the backup is encrypted to (age1…, an offline key you keep; repeatable).
    #[arg(long = "to", value_name = "AGE_RECIPIENT", required = true)]
    pub to: Vec<String>,
    /// Where the backup goes (a new file; never overwritten).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
    /// The admin socket.
    #[arg(long = "admin-socket", value_name = "PATH", default_value = token_server::admin::DEFAULT_SOCKET)]
    pub socket: PathBuf,
}

/// `restore`
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup file.
    pub file: PathBuf,
    /// The recovery identity file (age-keygen output) the backup was encrypted to.
    #[arg(long, value_name = "KEYFILE")]
    pub identity: PathBuf,
    /// edgeseal.yaml of this device.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Accept the backup if signed by this node key (ed25519:…, the backed-up device's `node show`;
    /// repeatable). One of --from and --allow-any-signer is required.
    #[arg(long = "from", value_name = "SIGNING_KEY", required_unless_present = "allow_any_signer")]
    pub from: Vec<String>,
    /// Accept a backup signed by any node key (reported): you trust how the file reached you.
    #[arg(long)]
    pub allow_any_signer: bool,
    /// Replace the store this device already holds.
    #[arg(long)]
    pub force: bool,
}

/// `keystore …`
#[derive(Debug, Subcommand)]
pub enum KeystoreCommand {
    /// Show a keystore's format, shares and items, and whether this device's KEK opens it.
    ///
    /// Never prints a share or an item's value.
    #[command(
        after_help = "Example:\n  security-bootstrap keystore inspect --dir /var/lib/edgeseal \\\n      --kdf-plugin /usr/libexec/edgeseal/edgeseal-kdf-hwfp"
    )]
    Inspect(InspectArgs),
    /// Convert an EdgeX resp-init.json into an edgeseal keystore, without re-initializing the store.
    ///
    /// Reads plaintext keys, or EDGEX_IKM_HOOK-encrypted keys (info vault<i> or secretstore<i>, with
    /// the salt file), then re-encrypts the unseal shares under this device's edgeseal KEK. The root
    /// token in the file is not imported. An existing keystore is never overwritten.
    #[command(
        name = "import-edgex",
        after_help = "Example:\n  security-bootstrap keystore import-edgex --resp-init /vault/config/assets/resp-init.json \\\n      --salt /vault/config/assets/kdf-salt.dat --dir /var/lib/edgeseal \\\n      --kdf-plugin /usr/libexec/edgeseal/edgeseal-kdf-hwfp --edgex-ikm-hook /usr/local/bin/ikm-hook"
    )]
    ImportEdgex(ImportArgs),
    /// Move the keystore to another KDF plug-in's KEK (hardware fingerprint → TPM, a planned board swap).
    ///
    /// The old plug-in (the config's `kdf:` section) must still answer. Every unseal share and item is
    /// re-encrypted under the new plug-in's KEK with a fresh salt, in one atomic write under the
    /// keystore's lock; the new plug-in must answer the same twice first. Crash-safe and idempotent: a
    /// rerun after a kill finishes the move, or says the keystore is already under the new KEK (exit 0).
    /// Then edit the `kdf:` section as printed and restart edgeseal: a boot with the old section fails
    /// with "the KEK does not open keystore". Safe while `run` runs: it read the keystore at boot and
    /// keeps serving (a supervised static-sealed OpenBao is restarted with the seal key it holds in
    /// memory); a Shamir-sealed store sealed again before the restart is unsealed only after it.
    /// Exit 0 done or already done, 1 neither plug-in opens the keystore (nothing changed), 64 bad flags.
    #[command(after_help = "Example:
  security-bootstrap keystore rewrap --config /etc/edgeseal/edgeseal.yaml \\\n      --to-plugin /usr/libexec/edgeseal/edgeseal-kdf-tpm2 --to-arg --tcti --to-arg device:/dev/tpmrm0")]
    Rewrap(RewrapArgs),
}

/// `keystore rewrap` arguments.
#[derive(Debug, Args)]
pub struct RewrapArgs {
    /// edgeseal.yaml: `keystore.dir`, and the old plug-in in `kdf:`.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Absolute path of the new KDF plug-in.
    #[arg(long, value_name = "PATH")]
    pub to_plugin: PathBuf,
    /// An argument of the new plug-in, after `ikm-v1` (repeatable).
    #[arg(long = "to-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub to_args: Vec<String>,
    /// Protocol of the new plug-in: ikm-v1 (default) or edgex.
    #[arg(long, value_enum)]
    pub to_protocol: Option<ProtocolArg>,
    /// Kill the new plug-in after this long (default 30s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub to_timeout: Option<Duration>,
}

/// Which plug-in to run: flags, or the `kdf:` section of a config file.
#[derive(Debug, Args)]
pub struct PluginArgs {
    /// edgeseal.yaml to take the `kdf:` section from (instead of the flags).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["plugin", "protocol", "timeout", "args"])]
    pub config: Option<PathBuf>,
    /// Absolute path of the plug-in executable.
    #[arg(long, value_name = "PATH", required_unless_present = "config")]
    pub plugin: Option<PathBuf>,
    /// ikm-v1 (edgeseal) or edgex (EDGEX_IKM_HOOK: no arguments).
    #[arg(long, value_enum)]
    pub protocol: Option<ProtocolArg>,
    /// Kill the plug-in after this long (e.g. 30s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    /// An argument appended after `ikm-v1` (repeatable).
    #[arg(long = "arg", value_name = "ARG", allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// `keystore inspect` arguments.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// edgeseal.yaml to take `keystore.dir` and `kdf:` from (instead of the flags).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["dir", "kdf_plugin", "kdf_protocol"])]
    pub config: Option<PathBuf>,
    /// Keystore directory (holding keystore.json).
    #[arg(long, value_name = "DIR", required_unless_present = "config")]
    pub dir: Option<PathBuf>,
    /// KDF plug-in to check the keystore against; without it, only the file is checked.
    #[arg(long, value_name = "PATH")]
    pub kdf_plugin: Option<PathBuf>,
    /// Protocol of --kdf-plugin.
    #[arg(long, value_enum)]
    pub kdf_protocol: Option<ProtocolArg>,
}

/// `keystore import-edgex` arguments.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// EdgeX's resp-init.json.
    #[arg(long, value_name = "FILE")]
    pub resp_init: PathBuf,
    /// EdgeX's kdf-salt.dat (needed when the keys are encrypted).
    #[arg(long, value_name = "FILE")]
    pub salt: Option<PathBuf>,
    /// edgeseal.yaml to take `keystore.dir` and `kdf:` from (instead of --dir/--kdf-plugin).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["dir", "kdf_plugin", "kdf_protocol"])]
    pub config: Option<PathBuf>,
    /// Keystore directory to create keystore.json in.
    #[arg(long, value_name = "DIR", required_unless_present = "config")]
    pub dir: Option<PathBuf>,
    /// edgeseal's KDF plug-in: the new keystore is encrypted under its KEK.
    #[arg(long, value_name = "PATH", required_unless_present = "config")]
    pub kdf_plugin: Option<PathBuf>,
    /// Protocol of --kdf-plugin.
    #[arg(long, value_enum)]
    pub kdf_protocol: Option<ProtocolArg>,
    /// The EDGEX_IKM_HOOK executable that encrypted the keys (default: the KDF plug-in, run the EdgeX way).
    #[arg(long, value_name = "PATH")]
    pub edgex_ikm_hook: Option<PathBuf>,
    /// Shares needed to unseal (EdgeX's default is 3); recorded for information.
    #[arg(long, value_name = "N")]
    pub threshold: Option<u64>,
}

/// Plug-in protocol on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProtocolArg {
    /// `PLUGIN ikm-v1 [ARGS…]`.
    #[value(name = "ikm-v1")]
    IkmV1,
    /// `PLUGIN` with no arguments (EDGEX_IKM_HOOK).
    Edgex,
}

impl From<ProtocolArg> for kdf_plugins::Protocol {
    fn from(p: ProtocolArg) -> Self {
        match p {
            ProtocolArg::IkmV1 => kdf_plugins::Protocol::IkmV1,
            ProtocolArg::Edgex => kdf_plugins::Protocol::Edgex,
        }
    }
}

#[cfg(test)]
mod socket_client_tests {
    #![allow(clippy::unwrap_used)]

    use clap::Parser as _;

    use super::Cli;

    /// The admin and token sockets' clients stay dumpable (their servers read their /proc entries,
    /// which a non-dumpable process hides from a server without CAP_SYS_PTRACE, e.g. in a
    /// container: `cluster status` through `docker exec` was refused); everything that opens the
    /// keystore is not.
    #[test]
    fn only_socket_clients_stay_dumpable() {
        // (arguments, a socket client)
        let cases: [(&[&str], bool); 14] = [
            (&["token"], true),
            (&["health"], true),
            (&["secrets", "list"], true),
            (&["status"], true),
            (&["audit"], true),
            (&["backup", "--to", "age1x", "-o", "/b"], true),
            (&["node", "show"], true),
            (&["cluster", "status"], true),
            (&["fleet", "sync"], true),
            (&["fleet", "sync", "--config", "/c"], true),
            (&["node", "show", "--config", "/c"], false),
            (&["cluster", "join", "/f", "--from", "k", "--config", "/c"], false),
            (&["cluster", "invite", "--node-id", "gw2", "--to", "age1x", "-o", "/b", "--config", "/c"], false),
            (&["run", "--config", "/c"], false),
        ];
        for (args, socket) in cases {
            let cli = Cli::try_parse_from(std::iter::once("security-bootstrap").chain(args.iter().copied())).unwrap();
            assert_eq!(cli.command.is_socket_client(), socket, "{args:?}");
        }
    }
}
