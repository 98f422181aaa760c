//! `security-bootstrap restore` (SPEC §13): see [`secretstore_setup::seal::restore`].

use std::io::Write;

use anyhow::Context;
use edgeseal_bundle::{kind, Identities, SignerKey, Trust};
use secretstore_setup::backup::Backup;

use crate::cli::RestoreArgs;
use crate::config::Config;
use crate::UsageError;

/// Runs the command.
pub fn run(args: &RestoreArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    // A cluster member is refused before anything is read or asked for.
    let setup = super::setup::from_config(&args.config)?;
    secretstore_setup::seal::restore::refuse_cluster_member(&setup)?;
    let senders = args
        .from
        .iter()
        .map(|k| k.parse::<SignerKey>().map_err(|e| UsageError(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let identity = zeroize::Zeroizing::new(
        std::fs::read_to_string(&args.identity)
            .map_err(|e| UsageError(format!("reading the identity file {}: {e}", args.identity.display())))?,
    );
    let identities =
        Identities::parse(&identity).map_err(|e| UsageError(format!("{}: {e}", args.identity.display())))?;
    drop(identity);
    let bundle = std::fs::read(&args.file).map_err(|e| UsageError(format!("reading {}: {e}", args.file.display())))?;
    // A backup is always signed by the node that made it: --from names it, or --allow-any-signer
    // accepts any (reported below).
    let trust = Trust { senders, any_signer: args.allow_any_signer, allow_unsigned: false };
    let whom = format!("the identity in {}", args.identity.display());
    let opened = edgeseal_bundle::open(&bundle, &identities, &whom, &trust, kind::BACKUP)
        .with_context(|| format!("{}: nothing was changed", args.file.display()))?;
    let backup = Backup::from_payload(&opened.payload)
        .map_err(|e| anyhow::anyhow!("{}: {e}; nothing was changed", args.file.display()))?;
    drop(opened.payload);
    let sender = opened.sender.as_ref().map(|s| format!("{} (signed by {})", s.node, s.key)).unwrap_or_default();

    let config = Config::load(&args.config)?;
    let Some(supervise) = config.secret_store.supervise.clone() else {
        return Err(UsageError("restore needs a supervised OpenBao (secret_store.supervise)".into()).into());
    };
    let server = super::run::supervised_openbao(&config, &supervise, false)?;
    let report = super::pki::converge(&config.pki, &config.kdf, &config.keystore.dir)?;
    tracing::info!(changed = report.changed(), "pki-init done");
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    let restored = runtime.block_on(secretstore_setup::seal::restore::restore(&setup, server, &backup, args.force))?;
    let same_config = backup.config_sha256 == secretstore_setup::backup::digest(&serde_json::to_vec(&config)?);
    writeln!(
        out,
        "restored the backup of {sender} (made {}){}: {} token(s) issued before the backup revoked; the store opens with the backup's seal key, now under this device's KEK",
        opened.created.as_deref().unwrap_or("at an unknown time"),
        if restored.resumed { ", finishing an interrupted restore" } else { "" },
        restored.revoked
    )?;
    if !same_config {
        writeln!(out, "note: this device's edgeseal.yaml differs from the one the backup was made with; the store was converged to this one")?;
    }
    writeln!(out, "start edgeseal (`security-bootstrap run`) to serve it")?;
    Ok(())
}
