//! `fleet …` (SPEC §14): the admin side of a fleet, from a workstation, against the central OpenBao.
//!
//! The central store's address, CA and token come from `--address`/`--ca-cert`/`--token-file` or
//! `BAO_ADDR`/`BAO_CACERT`/`BAO_TOKEN` (a token is never taken from the command line). Every command
//! that needs K or the org signing key takes `--org-key FILE`. Values come from stdin only. Exit
//! codes: 0 done, 1 failure, 64 bad usage, 77 refused by the central store (403), 69 central store
//! unreachable.

use std::io::{IsTerminal as _, Read as _, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use edgeseal_bundle::NodePublic;
use edgeseal_fleet::admin::{self, secrets::Window, AdminError, Central, Targets};
use edgeseal_fleet::{Layout, OrgKey, SecretRef, SecretValue};
use openbao_client::{Client, Pin, Token};
use serde::Serialize;
use zeroize::Zeroizing;

use super::token::TokenFailure;
use crate::cli::{EXIT_NOPERM, EXIT_UNAVAILABLE};
use crate::UsageError;

const EXAMPLES: &str = "\
Exit codes: 0 done, 1 failure, 64 bad usage, 77 refused by the central store (403: the token may not
do this), 69 the central store is unreachable.

Examples:
  export BAO_ADDR=https://vault.example:8200 BAO_CACERT=/etc/fleet/ca.pem BAO_TOKEN=…
  security-bootstrap fleet org-key new -o ~/fleet/org.key
  security-bootstrap node show --json > gw-17.json          # on the device
  security-bootstrap fleet enroll node-… --identity gw-17.json --org-key ~/fleet/org.key
  printf %s \"$PASSWORD\" | security-bootstrap fleet secret set db/password --all --org-key ~/fleet/org.key
  security-bootstrap fleet status
  security-bootstrap fleet revoke node-…
  security-bootstrap fleet org-key rotate --org-key ~/fleet/org.key
  security-bootstrap fleet sync                             # on the device: sync now";

/// `fleet` arguments: the central store, then what to do.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct FleetArgs {
    /// The central store.
    #[command(flatten)]
    pub central: CentralArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: FleetCommand,
}

/// Where the central OpenBao is and how the admin authenticates.
#[derive(Debug, Args)]
pub struct CentralArgs {
    /// The central OpenBao (`https://HOST:PORT`; default: $BAO_ADDR).
    #[arg(long, global = true, value_name = "URL")]
    pub address: Option<String>,
    /// The CA certificate(s) its TLS certificate chains to (default: $BAO_CACERT).
    #[arg(long = "ca-cert", global = true, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// A file holding the admin's token (default: $BAO_TOKEN; never on the command line).
    #[arg(long = "token-file", global = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// The fleet's KV v2 mount.
    #[arg(long, global = true, default_value = edgeseal_fleet::layout::DEFAULT_MOUNT)]
    pub mount: String,
    /// The `cert` auth mount nodes log in with.
    #[arg(long = "cert-mount", global = true, default_value = edgeseal_fleet::layout::DEFAULT_CERT_MOUNT)]
    pub cert_mount: String,
}

/// `fleet` subcommands.
#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// The org key: K and the org signing key, in a file only the admin holds.
    #[command(subcommand, name = "org-key")]
    OrgKey(OrgKeyCommand),
    /// Enroll a node from its `security-bootstrap node show --json`: its identity, its certificate
    /// login, its policy (its own subtree, read-only) and K encrypted to it.
    Enroll {
        /// The node id (`node-…`).
        node: String,
        /// The node's `node show --json` output.
        #[arg(long, value_name = "FILE")]
        identity: PathBuf,
        /// The org key file.
        #[arg(long = "org-key", value_name = "FILE")]
        org_key: PathBuf,
    },
    /// Secrets sent to nodes.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Per node: last seen, installed versions, errors, stale (never a value).
    Status {
        /// Only this node.
        #[arg(long, value_name = "NODE")]
        node: Option<String>,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// A node not seen for this long is stale.
        #[arg(long = "stale-after", value_name = "DURATION", default_value = "15m", value_parser = humantime::parse_duration)]
        stale_after: Duration,
    },
    /// Revoke a node: no more login, its policy, K entry and secrets deleted. Run `org-key rotate`
    /// afterwards so that the K it may have kept decrypts nothing new.
    Revoke {
        /// The node id.
        node: String,
    },
    /// On a device: run one sync of this node now, through the admin socket of `run` (which also
    /// syncs at boot and every fleet.sync_interval). Prints what changed, never a value. Exit 0
    /// synced, 1 failed or a record was refused, 69 the central store is unreachable (the cache was
    /// used) or no admin socket, 77 not an admin.
    Sync {
        /// The admin socket.
        #[arg(long = "admin-socket", value_name = "PATH", default_value = token_server::admin::DEFAULT_SOCKET)]
        socket: PathBuf,
        /// The device's edgeseal.yaml: its `admin.socket` is used (instead of --admin-socket).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `fleet org-key` subcommands.
#[derive(Debug, Subcommand)]
pub enum OrgKeyCommand {
    /// Make the org key (written once, 0600) and set the central store up; prints the org public
    /// key each node's `fleet.org_public_key` names.
    New {
        /// The new org key file (never overwritten).
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: PathBuf,
    },
    /// Print the org public key again.
    Show {
        /// The org key file.
        #[arg(long = "org-key", value_name = "FILE")]
        org_key: PathBuf,
    },
    /// A new K and generation for the remaining nodes; every secret re-encrypted. Crash-safe: run it
    /// again to finish an interrupted rotation.
    Rotate {
        /// The org key file (rewritten atomically).
        #[arg(long = "org-key", value_name = "FILE")]
        org_key: PathBuf,
    },
}

/// Which nodes.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct TargetArgs {
    /// These nodes (repeatable).
    #[arg(long = "node", value_name = "NODE")]
    pub nodes: Vec<String>,
    /// Every enrolled, unrevoked node.
    #[arg(long)]
    pub all: bool,
}

/// `fleet secret` subcommands.
#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Set SERVICE/NAME on the nodes to the value on stdin: the next version on each.
    Set {
        /// `SERVICE/NAME`.
        target: String,
        /// Which nodes.
        #[command(flatten)]
        targets: TargetArgs,
        /// Not installed before this time (RFC 3339, e.g. 2026-12-24T00:00:00Z).
        #[arg(long = "not-before", value_name = "TIME")]
        not_before: Option<String>,
        /// Removed from the nodes at this time (RFC 3339).
        #[arg(long, value_name = "TIME")]
        expires: Option<String>,
        /// The value on stdin is a JSON object of string keys and values (a multi-key secret).
        #[arg(long)]
        json: bool,
        /// The org key file.
        #[arg(long = "org-key", value_name = "FILE")]
        org_key: PathBuf,
    },
    /// Remove SERVICE/NAME from the nodes (at their next sync).
    Rm {
        /// `SERVICE/NAME`.
        target: String,
        /// Which nodes.
        #[command(flatten)]
        targets: TargetArgs,
    },
}

impl TargetArgs {
    fn targets(&self) -> Targets {
        match self.all {
            true => Targets::All,
            false => Targets::Nodes(self.nodes.clone()),
        }
    }
}

/// Runs a `fleet` command.
pub fn run(args: &FleetArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    if let FleetCommand::OrgKey(OrgKeyCommand::Show { org_key }) = &args.command {
        let org = OrgKey::load(org_key).map_err(|e| UsageError(e.to_string()))?;
        writeln!(out, "{}", org.public())?;
        return Ok(());
    }
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")?;
    if let FleetCommand::Sync { socket, json, config } = &args.command {
        let socket = match config {
            Some(path) => crate::config::Config::load(path)?.admin.socket,
            None => socket.clone(),
        };
        let report = runtime.block_on(super::secrets::call(&socket, hyper::Method::POST, "/v1/fleet/sync", None))?;
        return print_sync(&report, *json, out);
    }
    let central = central(&args.central)?;
    runtime.block_on(dispatch(&central, &args.command, out)).map_err(classify)
}

async fn dispatch(central: &Central, command: &FleetCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match command {
        FleetCommand::OrgKey(OrgKeyCommand::Show { .. }) | FleetCommand::Sync { .. } => Ok(()),
        FleetCommand::OrgKey(OrgKeyCommand::New { output }) => {
            let org = admin::org_key_new(central, output).await?;
            writeln!(out, "{}", org.public())?;
            eprintln!(
                "org key written to {} (keep it offline; it is the only place K exists at rest). Put the line above in each node's fleet.org_public_key.",
                output.display()
            );
            Ok(())
        }
        FleetCommand::OrgKey(OrgKeyCommand::Rotate { org_key }) => {
            let mut org = load_org(org_key)?;
            let done = admin::org_key_rotate(central, &mut org, org_key).await?;
            writeln!(
                out,
                "org key at generation {}: {} node(s) given the new K, {} secret record(s) re-encrypted",
                done.generation, done.nodes, done.secrets
            )?;
            Ok(())
        }
        FleetCommand::Enroll { node, identity, org_key } => {
            let org = load_org(org_key)?;
            let text =
                std::fs::read(identity).map_err(|e| UsageError(format!("reading {}: {e}", identity.display())))?;
            let public: NodePublic = serde_json::from_slice(&text).map_err(|e| {
                UsageError(format!("{} is not a node's `node show --json` output: {e}", identity.display()))
            })?;
            admin::enroll(central, &org, node, &public).await?;
            writeln!(out, "{node} enrolled")?;
            Ok(())
        }
        FleetCommand::Secret(SecretCommand::Set { target, targets, not_before, expires, json, org_key }) => {
            let secret = SecretRef::parse(target).map_err(|e| UsageError(e.to_string()))?;
            let window =
                Window { not_before: time_arg(not_before.as_deref())?, expires: time_arg(expires.as_deref())? };
            let org = load_org(org_key)?;
            let value = read_value(*json)?;
            let written = admin::secret_set(central, &org, &secret, &targets.targets(), &value, window).await?;
            for (node, version) in written {
                writeln!(out, "{secret} for {node}: version {version}")?;
            }
            Ok(())
        }
        FleetCommand::Secret(SecretCommand::Rm { target, targets }) => {
            let secret = SecretRef::parse(target).map_err(|e| UsageError(e.to_string()))?;
            let removed = admin::secret_rm(central, &secret, &targets.targets()).await?;
            if removed.is_empty() {
                writeln!(out, "{secret}: no target node had it")?;
            }
            for node in removed {
                writeln!(out, "{secret} removed for {node} (at its next sync)")?;
            }
            Ok(())
        }
        FleetCommand::Status { node, json, stale_after } => {
            let stale = i64::try_from(stale_after.as_secs()).unwrap_or(i64::MAX);
            let reports = admin::status(central, node.as_deref(), stale).await?;
            print_status(&reports, *json, out)
        }
        FleetCommand::Revoke { node } => {
            admin::revoke(central, node).await?;
            writeln!(out, "{node} revoked: run `security-bootstrap fleet org-key rotate` so that the K it may have kept decrypts nothing new")?;
            Ok(())
        }
    }
}

/// Prints a sync's report (names and versions only) and maps its result to the exit code.
fn print_sync(report: &serde_json::Value, json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let result = report["result"].as_str().unwrap_or("failed");
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(report)?)?;
    } else {
        let offline = if report["offline"].as_bool() == Some(true) { " (from the cache)" } else { "" };
        writeln!(out, "fleet sync: {result}{offline}, org key generation {}", report["generation"])?;
        for change in report["changes"].as_array().into_iter().flatten() {
            let local = change["local_version"].as_u64().map(|v| format!(", local version {v}")).unwrap_or_default();
            writeln!(
                out,
                "  {} {}: fleet version {}{local}",
                change["action"].as_str().unwrap_or_default(),
                change["secret"].as_str().unwrap_or_default(),
                change["version"]
            )?;
        }
        for (secret, at) in report["waiting"].as_object().into_iter().flatten() {
            writeln!(out, "  waiting {secret}: not before {}", at.as_i64().map(format_time).unwrap_or_default())?;
        }
        for refused in report["refused"].as_array().into_iter().flatten() {
            writeln!(
                out,
                "  refused {}: {}",
                refused["secret"].as_str().unwrap_or_default(),
                refused["reason"].as_str().unwrap_or_default()
            )?;
        }
        for skipped in report["skipped"].as_array().into_iter().flatten() {
            writeln!(out, "  skipped {}: service not configured on this device", skipped.as_str().unwrap_or_default())?;
        }
        writeln!(out, "  {} unchanged", report["unchanged"])?;
    }
    let error = report["error"].as_str().unwrap_or_default();
    match result {
        "ok" => Ok(()),
        "offline" => {
            Err(TokenFailure { message: format!("fleet sync used the cache: {error}"), code: EXIT_UNAVAILABLE }.into())
        }
        "refused" => Err(TokenFailure {
            message: "fleet sync refused records (see above)".into(),
            code: crate::cli::EXIT_FAILURE,
        }
        .into()),
        _ => {
            Err(TokenFailure { message: format!("fleet sync failed: {error}"), code: crate::cli::EXIT_FAILURE }.into())
        }
    }
}

fn print_status(reports: &[admin::NodeReport], json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    #[derive(Serialize)]
    struct All<'a> {
        nodes: &'a [admin::NodeReport],
    }
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&All { nodes: reports })?)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<26} {:<10} {:>4} {:<20} {:>7} {:>6} ERRORS",
        "NODE", "STATE", "GEN", "LAST SEEN", "SECRETS", "BEHIND"
    )?;
    for r in reports {
        let state = match (r.revoked, r.stale) {
            (Some(_), _) => "revoked",
            (None, true) => "stale",
            (None, false) => "ok",
        };
        let seen = r.last_seen.map(format_time).unwrap_or_else(|| "never".into());
        let generation = r.generation.map(|g| g.to_string()).unwrap_or_else(|| "-".into());
        writeln!(
            out,
            "{:<26} {:<10} {:>4} {:<20} {:>7} {:>6} {}",
            r.node,
            state,
            generation,
            seen,
            r.central.len(),
            r.behind.len(),
            r.errors.join("; ")
        )?;
    }
    Ok(())
}

fn format_time(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}

fn time_arg(value: Option<&str>) -> Result<Option<i64>, UsageError> {
    value
        .map(|v| {
            time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
                .map(|t| t.unix_timestamp())
                .map_err(|e| UsageError(format!("{v:?} is not an RFC 3339 time (e.g. 2026-12-24T00:00:00Z): {e}")))
        })
        .transpose()
}

fn load_org(path: &Path) -> Result<OrgKey, UsageError> {
    OrgKey::load(path).map_err(|e| UsageError(e.to_string()))
}

/// V from stdin: one string (`{"value": …}`; one trailing newline dropped), or with `--json` a JSON
/// object of strings. Kept in wiped buffers.
fn read_value(json: bool) -> anyhow::Result<SecretValue> {
    let max = edgeseal_fleet::record::MAX_VALUE;
    if std::io::stdin().is_terminal() {
        return Err(UsageError(
            "the value comes from stdin (e.g. `printf %s \"$VALUE\" | …`): nothing was sent".into(),
        )
        .into());
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(4096));
    std::io::stdin().lock().take(max as u64 + 1).read_to_end(&mut bytes).context("reading the value from stdin")?;
    if bytes.len() > max {
        return Err(UsageError("the value is larger than 1 MiB: nothing was sent".into()).into());
    }
    let mut encoded = Zeroizing::new(Vec::with_capacity(bytes.len() * 2 + 16));
    if json {
        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&bytes)
            .map_err(|e| UsageError(format!("--json: the value is not a JSON object ({e}): nothing was sent")))?;
        if map.is_empty() || map.iter().any(|(k, v)| k.is_empty() || v.as_str().is_none_or(str::is_empty)) {
            return Err(UsageError(
                "--json: the value must be a JSON object of non-empty strings: nothing was sent".into(),
            )
            .into());
        }
        serde_json::to_writer(&mut *encoded, &map).context("encoding the value")?;
    } else {
        #[derive(Serialize)]
        struct Single<'a> {
            value: &'a str,
        }
        let text = std::str::from_utf8(&bytes).map_err(|_| UsageError("the value is not UTF-8 text".into()))?;
        let text = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(text);
        if text.is_empty() {
            return Err(UsageError("the value on stdin is empty: nothing was sent".into()).into());
        }
        serde_json::to_writer(&mut *encoded, &Single { value: text }).context("encoding the value")?;
    }
    Ok(SecretValue::from_zeroizing(encoded))
}

/// The central client from flags or `BAO_ADDR`/`BAO_CACERT`/`BAO_TOKEN`.
fn central(args: &CentralArgs) -> anyhow::Result<Central> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let address = args
        .address
        .clone()
        .or_else(|| env("BAO_ADDR"))
        .ok_or_else(|| UsageError("no central store: pass --address or set BAO_ADDR".into()))?;
    let ca = args
        .ca_cert
        .clone()
        .or_else(|| env("BAO_CACERT").map(PathBuf::from))
        .ok_or_else(|| UsageError("no CA for the central store: pass --ca-cert or set BAO_CACERT".into()))?;
    let token = match &args.token_file {
        Some(path) => {
            let text = Zeroizing::new(
                std::fs::read_to_string(path).map_err(|e| UsageError(format!("reading {}: {e}", path.display())))?,
            );
            Token::new(text.trim())
        }
        None => Token::new(
            env("BAO_TOKEN").ok_or_else(|| UsageError("no admin token: pass --token-file or set BAO_TOKEN".into()))?,
        ),
    };
    let layout = Layout::new(&args.mount, &args.cert_mount).map_err(|e| UsageError(e.to_string()))?;
    let client =
        Client::new(&address, &ca, &Pin::CaOnly, Duration::from_secs(30)).map_err(|e| UsageError(e.to_string()))?;
    Ok(Central { client, token, layout })
}

/// Maps bad input to 64, the central store's refusals and outages to 77 and 69.
fn classify(error: anyhow::Error) -> anyhow::Error {
    let usage = error.chain().any(|e| {
        matches!(
            e.downcast_ref::<AdminError>(),
            Some(
                AdminError::Name(_)
                    | AdminError::Identity(_)
                    | AdminError::OrgKey(_)
                    | AdminError::NotEnrolled(_)
                    | AdminError::NoNodes
            )
        )
    });
    if usage {
        return UsageError(format!("{error:#}")).into();
    }
    let bao = error.chain().find_map(|e| match e.downcast_ref::<AdminError>() {
        Some(AdminError::Bao(bao)) => Some(bao),
        _ => e.downcast_ref::<openbao_client::Error>(),
    });
    let code = match bao {
        Some(e) if e.status() == Some(403) => EXIT_NOPERM,
        Some(e) if e.is_unreachable() => EXIT_UNAVAILABLE,
        _ => return error,
    };
    let message = format!("{error:#}");
    TokenFailure { message, code }.into()
}
