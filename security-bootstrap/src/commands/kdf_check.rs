//! `security-bootstrap kdf check`: is this plug-in usable, and stable?

use std::io::Write;
use std::time::Instant;

use anyhow::{bail, Context};
use kdf_plugins::kek::{derive_kek, fingerprint, SALT_LEN};
use kdf_plugins::{run_plugin, KdfConfig, KEYSTORE_KEK_INFO};

use super::{plugin_config, Settings};
use crate::cli::PluginArgs;

/// Runs the command.
pub fn run(args: &PluginArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let config = match (&args.config, &args.plugin) {
        (Some(path), _) => Settings::from_config(path)?.kdf.unwrap_or_default(),
        (None, Some(plugin)) => plugin_config(plugin, args.protocol, args.timeout, args.args.clone())?,
        (None, None) => bail!(crate::UsageError("give --plugin PATH or --config FILE".into())),
    };
    check(&config, out)
}

/// Runs the plug-in twice and reports; fails if it fails or answers differently.
pub fn check(config: &KdfConfig, out: &mut dyn Write) -> anyhow::Result<()> {
    let started = Instant::now();
    let first = run_plugin(config)?;
    let took = started.elapsed();
    let second = run_plugin(config)?;
    if first.expose() != second.expose() {
        bail!(
            "kdf plug-in {} gave two different answers in a row; the KEK would change on every boot and the keystore could never be opened again",
            config.plugin.display()
        );
    }
    let kek = derive_kek(&first, &[0u8; SALT_LEN], KEYSTORE_KEK_INFO.as_bytes());
    let timeout = humantime::format_duration(config.timeout);
    (|| -> std::io::Result<()> {
        writeln!(out, "plug-in      {} ({}, timeout {timeout})", config.plugin.display(), config.protocol)?;
        writeln!(out, "answer       valid: {}-byte IKM, identical on two runs ({} ms)", first.len(), took.as_millis())?;
        writeln!(out, "fingerprint  {} (KEK under a zero salt; compare across boots — not a secret)", fingerprint(&kek))
    })()
    .context("writing the report")?;
    Ok(())
}
