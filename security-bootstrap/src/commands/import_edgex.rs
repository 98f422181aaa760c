//! `security-bootstrap keystore import-edgex`: move an EdgeX device's unseal keys into edgeseal.

use std::io::{Read, Write};
use std::path::Path;

use anyhow::{bail, Context};
use kdf_plugins::run_plugin;
use kdf_plugins::KdfConfig;
use kdf_plugins::Protocol;
use secretstore_setup::edgex_import::{RespInit, EDGEX_SALT_LEN};
use secretstore_setup::keystore::store::Created;
use secretstore_setup::{Keystore, KeystoreDir};
use zeroize::Zeroizing;

use super::Settings;
use crate::cli::ImportArgs;
use crate::UsageError;

/// EdgeX's default `SecretThreshold`.
const EDGEX_DEFAULT_THRESHOLD: u64 = 3;
/// Largest input file read.
const MAX_INPUT: u64 = 1024 * 1024;

/// Runs the command.
pub fn run(args: &ImportArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let settings = match &args.config {
        Some(path) => Settings::from_config(path)?,
        None => Settings::from_flags(args.dir.as_ref(), args.kdf_plugin.as_ref(), args.kdf_protocol)?,
    };
    let Some(kdf) = settings.kdf else {
        bail!(UsageError("give --kdf-plugin PATH or --config FILE".into()));
    };
    let store = KeystoreDir::new(&settings.keystore.dir);
    if store.read()?.is_some() {
        bail!(
            "keystore {} already exists; refusing to import over it (edgeseal never replaces a keystore)",
            store.path().display()
        );
    }

    let resp_bytes = read_bounded(&args.resp_init)?;
    let resp =
        RespInit::parse(&resp_bytes).with_context(|| format!("reading EdgeX file {}", args.resp_init.display()))?;
    drop(resp_bytes);

    let hook_material = if resp.is_encrypted() {
        let Some(salt_path) = &args.salt else {
            bail!(UsageError(format!(
                "{} holds EDGEX_IKM_HOOK-encrypted keys: give --salt with EdgeX's kdf-salt.dat",
                args.resp_init.display()
            )));
        };
        let salt = read_bounded(salt_path)?;
        if salt.len() != EDGEX_SALT_LEN {
            bail!(
                "EdgeX salt file {} is {} bytes; kdf-salt.dat holds exactly {EDGEX_SALT_LEN}",
                salt_path.display(),
                salt.len()
            );
        }
        let hook = KdfConfig {
            plugin: args.edgex_ikm_hook.clone().unwrap_or_else(|| kdf.plugin.clone()),
            args: Vec::new(),
            protocol: Protocol::Edgex,
            timeout: kdf.timeout,
        };
        let ikm = run_plugin(&hook).context("running the EdgeX IKM hook")?;
        Some((ikm, salt))
    } else {
        None
    };
    let (shares, layout) = resp
        .shares(hook_material.as_ref().map(|(ikm, salt)| (ikm, salt.as_slice())))
        .with_context(|| format!("EdgeX file {}", args.resp_init.display()))?;
    drop(hook_material);

    let count = shares.len() as u64;
    let threshold = args.threshold.unwrap_or(EDGEX_DEFAULT_THRESHOLD.min(count));
    let keystore = Keystore::new(shares, threshold)
        .map_err(|e| UsageError(format!("cannot import {}: {e}", args.resp_init.display())))?;
    let ikm = run_plugin(&kdf).context("running edgeseal's KDF plug-in")?;
    let kek = keystore.derive_kek(&ikm);
    let sealed = keystore.seal(&kek).context("encrypting the keystore")?;
    // Prove the new file opens before it exists on disk.
    secretstore_setup::keystore::open(&sealed, &kek).context("verifying the new keystore")?;
    let created = store.create(&sealed)?;

    let verb = match created {
        Created::Written => "wrote",
        Created::AlreadyPresent => "found identical",
    };
    writeln!(
        out,
        "imported     {count} unseal shares (threshold {threshold}) from {} ({layout})",
        args.resp_init.display()
    )?;
    writeln!(out, "keystore     {verb} {} under this device's KEK ({})", store.path().display(), kdf.plugin.display())?;
    writeln!(out, "root token   not imported: edgeseal keeps no root token")?;
    writeln!(
        out,
        "next         once edgeseal has unsealed this device, delete {} (it is no longer needed)",
        args.resp_init.display()
    )?;
    Ok(())
}

fn read_bounded(path: &Path) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_INPUT + 1).read_to_end(&mut bytes).with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() as u64 > MAX_INPUT {
        bail!("{} is larger than {MAX_INPUT} bytes; it is not an EdgeX file", path.display());
    }
    Ok(bytes)
}
