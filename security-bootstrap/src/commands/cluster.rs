//! `security-bootstrap cluster invite|join|status|leave` (SPEC §15): see
//! [`secretstore_setup::cluster`]. Invite, join and leave read the keystore (`--config`); status asks
//! the running member through the admin socket.

use std::io::Write;

use anyhow::Context;
use edgeseal_bundle::{SignerKey, Trust};
use secretstore_setup::cluster::ops;
use serde_json::Value;

use super::bundles::{check_recipients, runtime, write_new};
use super::status::text;
use crate::cli::{ClusterCommand, ClusterInviteArgs, ClusterJoinArgs, ClusterLeaveArgs, StatusArgs};
use crate::UsageError;

/// Runs a `cluster` command.
pub fn run(command: &ClusterCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Invite(args) => invite(args, out),
        ClusterCommand::Join(args) => join(args, out),
        ClusterCommand::Status(args) => status(args, out),
        ClusterCommand::Leave(args) => leave(args, out),
    }
}

fn invite(args: &ClusterInviteArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let recipients = check_recipients(&args.to)?;
    if args.output.exists() {
        return Err(UsageError(format!("{} already exists: not overwritten", args.output.display())).into());
    }
    let setup = super::setup::from_config(&args.config)?;
    let invitation = runtime()?.block_on(ops::invite(&setup, &args.node_id, &recipients, args.valid))?;
    write_new(&args.output, &invitation.bundle)?;
    writeln!(
        out,
        "join bundle for member {} of cluster {} written to {} (valid {}); it holds the cluster's seal key: move it like a backup.\n\
         On the new gateway:\n  security-bootstrap cluster join {} --from {} --config <its edgeseal.yaml>",
        args.node_id,
        invitation.cluster_id,
        args.output.display(),
        humantime::format_duration(args.valid),
        args.output.display(),
        invitation.signer
    )?;
    Ok(())
}

fn join(args: &ClusterJoinArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let senders = args
        .from
        .iter()
        .map(|k| k.parse::<SignerKey>().map_err(|e| UsageError(format!("--from {k}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let bundle = std::fs::read(&args.file).map_err(|e| UsageError(format!("reading {}: {e}", args.file.display())))?;
    let setup = super::setup::from_config(&args.config)?;
    let joined = runtime()?
        .block_on(ops::join(&setup, &bundle, &Trust::senders(senders)))
        .with_context(|| format!("{}: nothing was changed", args.file.display()))?;
    writeln!(
        out,
        "stored the join bundle from {}: this gateway joins cluster {} as {} through {} at its next `run`",
        joined.from,
        joined.cluster_id,
        joined.node_id,
        joined.members.join(", ")
    )?;
    Ok(())
}

fn leave(args: &ClusterLeaveArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let setup = super::setup::from_config(&args.config)?;
    let removed = runtime()?.block_on(ops::leave(&setup, args.node.as_deref()))?;
    writeln!(
        out,
        "{removed} left the cluster and its login is deleted. Stop its edgeseal and wipe its OpenBao data and keystore before it is used again (or join it again with a new bundle)"
    )?;
    Ok(())
}

fn status(args: &StatusArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    super::status::report(args, "/v1/cluster", write_table, out)
}

/// The human report of `GET /v1/cluster`.
pub fn write_table(status: &Value, out: &mut dyn Write) -> std::io::Result<()> {
    let this = &status["this_member"];
    let role = if this["active"].as_bool() == Some(true) { "active" } else { "standby" };
    writeln!(out, "cluster    {}", text(&status["cluster_id"]))?;
    writeln!(out, "this       {role} (leader at {})", text(&this["leader_address"]))?;
    let autopilot = &status["autopilot"];
    if autopilot.is_object() {
        writeln!(
            out,
            "autopilot  {} (failure tolerance {})",
            if autopilot["healthy"].as_bool() == Some(true) { "healthy" } else { "UNHEALTHY" },
            text(&autopilot["failure_tolerance"])
        )?;
    }
    writeln!(
        out,
        "{:<24} {:<24} {:<8} {:<10} {:<8} last contact",
        "member", "cluster address", "voter", "status", "healthy"
    )?;
    for server in status["servers"].as_array().into_iter().flatten() {
        let id = text(&server["node_id"]);
        let seen = &autopilot["servers"][&id];
        writeln!(
            out,
            "{:<24} {:<24} {:<8} {:<10} {:<8} {}",
            id,
            text(&server["address"]),
            server["voter"].as_bool().unwrap_or(false),
            text(&seen["status"]),
            text(&seen["healthy"]),
            text(&seen["last_contact"])
        )?;
    }
    Ok(())
}
