//! `security-bootstrap keystore inspect`: what is in a keystore, and does this device's KEK open it?

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::Context;
use kdf_plugins::kek::fingerprint;
use kdf_plugins::run_plugin;
use secretstore_setup::keystore::{derive_file_kek, kek_matches, open};
use secretstore_setup::{KeystoreDir, KeystoreError};

use super::Settings;
use crate::cli::InspectArgs;

/// Runs the command.
pub fn run(args: &InspectArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let settings = match &args.config {
        Some(path) => Settings::from_config(path)?,
        None => Settings::from_flags(args.dir.as_ref(), args.kdf_plugin.as_ref(), args.kdf_protocol)?,
    };
    let store = KeystoreDir::new(&settings.keystore.dir);
    let file = store.read()?.ok_or_else(|| KeystoreError::Missing(store.path().to_path_buf()))?;

    let mut purposes: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for item in &file.items {
        purposes.entry(&item.purpose).or_default().push(item.index);
    }
    let items: Vec<String> = purposes
        .iter()
        .map(|(purpose, indexes)| match indexes.as_slice() {
            [0] => purpose.to_string(),
            [first, .., last] => format!("{purpose} {first}..={last}"),
            [one] => format!("{purpose} {one}"),
            [] => String::new(),
        })
        .collect();
    let report = |out: &mut dyn Write| -> std::io::Result<()> {
        writeln!(out, "keystore     {}", store.path().display())?;
        writeln!(
            out,
            "format       {} v{} ({}, {} info {:?})",
            file.format, file.version, file.aead, file.kdf.algorithm, file.kdf.info
        )?;
        writeln!(out, "shares       {} (threshold {})", file.secret_shares, file.secret_threshold)?;
        writeln!(out, "items        {} ({})", file.items.len(), items.join(", "))
    };
    report(out).context("writing the report")?;

    let Some(kdf) = &settings.kdf else {
        writeln!(out, "kek          not checked (give --kdf-plugin or --config)").context("writing the report")?;
        return Ok(());
    };
    let ikm = run_plugin(kdf)?;
    let kek = derive_file_kek(&file, &ikm)
        .map_err(|reason| KeystoreError::Corrupt { path: store.path().to_path_buf(), reason })?;
    if !kek_matches(&file, &kek) {
        writeln!(out, "kek          does NOT open this keystore (fingerprint {})", fingerprint(&kek))
            .context("writing the report")?;
        return Err(KeystoreError::WrongKek { path: store.path().to_path_buf() }.into());
    }
    let keystore = open(&file, &kek).map_err(|e| store.open_error(e))?;
    writeln!(
        out,
        "kek          opens this keystore: key check and all {} items authenticate (fingerprint {})",
        keystore.shares().len() + keystore.item_names().count(),
        fingerprint(&kek)
    )
    .context("writing the report")?;
    Ok(())
}
