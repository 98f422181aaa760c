//! `security-bootstrap keystore rewrap`: moves the keystore to another KDF plug-in's KEK
//! ([`secretstore_setup::rewrap`]) and tells the operator how to change `kdf:` in edgeseal.yaml,
//! which is the operator's file and is never edited here.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::Context;
use kdf_plugins::KdfConfig;
use secretstore_setup::rewrap::{rewrap, Rewrapped};
use secretstore_setup::KeystoreDir;

use super::plugin_config;
use crate::cli::RewrapArgs;
use crate::config::Config;

/// Runs the command. Flags are checked (exit 64) before anything runs or is read.
pub fn run(args: &RewrapArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let new = plugin_config(&args.to_plugin, args.to_protocol, args.to_timeout, args.to_args.clone())?;
    let config = Config::load(&args.config)?;
    let store = KeystoreDir::new(&config.keystore.dir);
    let outcome = rewrap(&store, &config.kdf, &new)?;
    report(&outcome, &store, &config.kdf, &new, &args.config, out).context("writing the report")
}

fn report(
    outcome: &Rewrapped,
    store: &KeystoreDir,
    old: &KdfConfig,
    new: &KdfConfig,
    config_path: &std::path::Path,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let path = store.path().display();
    match outcome {
        Rewrapped::Now { shares, items, fingerprint } => writeln!(
            out,
            "rewrapped    keystore {path}: {shares} unseal shares and {items} items re-encrypted under the KEK of {} (fingerprint {fingerprint}, fresh salt)",
            new.plugin.display()
        )?,
        Rewrapped::Already { fingerprint } => writeln!(
            out,
            "rewrapped    already under the new KEK: keystore {path} opens with {} (fingerprint {fingerprint}); nothing to do",
            new.plugin.display()
        )?,
    }
    if old == new {
        writeln!(out, "config       the kdf: section of {} already names this plug-in", config_path.display())?;
        return Ok(());
    }
    let section = serde_yaml_ng::to_string(&BTreeMap::from([("kdf", new)]))
        .unwrap_or_else(|e| format!("(cannot render the kdf: section: {e})\n"));
    writeln!(out, "next         1. replace the kdf: section of {} with:", config_path.display())?;
    for line in section.lines() {
        writeln!(out, "               {line}")?;
    }
    writeln!(
        out,
        "             2. restart edgeseal (`security-bootstrap run`). Until the kdf: section names {}, every boot,",
        new.plugin.display()
    )?;
    writeln!(
        out,
        "                `setup` and `keystore inspect --config` fail with \"the KEK does not open keystore\"."
    )?;
    writeln!(
        out,
        "             The old plug-in ({}) no longer opens the keystore; it is not needed any more.",
        old.plugin.display()
    )
}
