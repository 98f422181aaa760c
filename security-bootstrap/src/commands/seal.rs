//! `security-bootstrap rotate-seal-key` and `migrate-seal`: the static seal of a supervised OpenBao.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context};
use secretstore_setup::seal::material::SealMaterial;
use secretstore_setup::seal::migrate::{self, Migrated};
use secretstore_setup::seal::SealMode;

use crate::config::Config;

/// Records a new seal key as the next one; the running (or next) `run` boot completes the rotation.
pub fn rotate(config_path: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    if config.secret_store.supervise.as_ref().map(|s| s.seal) != Some(SealMode::Static) {
        bail!(
            "rotate-seal-key is for a supervised OpenBao with the static seal (secret_store.supervise, seal: static)"
        );
    }
    if config.secret_store.cluster.is_some() {
        bail!(
            "this OpenBao is a cluster member (secret_store.cluster): every member opens with the cluster's one seal key, so no member may rotate it alone; nothing was changed"
        );
    }
    let ikm = kdf_plugins::run_plugin(&config.kdf)?;
    let store = secretstore_setup::KeystoreDir::new(&config.keystore.dir);
    let (_, kek) = store.open_with_ikm(&ikm)?;
    drop(ikm);
    let mut began = None;
    store.update(&kek, |keystore| {
        began = SealMaterial::begin_rotation(keystore)?;
        Ok(())
    })?;
    let keystore = store.open(&kek)?;
    let material = SealMaterial::from_keystore(&keystore)?.with_context(|| {
        format!(
            "keystore {} holds no static seal key yet: start `security-bootstrap run` once first",
            store.path().display()
        )
    })?;
    match (began, &material.next) {
        (Some(id), _) => writeln!(out, "next seal key {id} stored in the keystore")?,
        (None, Some(next)) => writeln!(out, "a rotation to {} is already pending", next.id)?,
        (None, None) => bail!("the keystore holds no seal key to rotate"),
    }
    writeln!(
        out,
        "the rotation completes on the next start of `security-bootstrap run` (restart edgeseal): OpenBao opens with either key, rewraps to the new one, and the old one is forgotten once the new one alone opens it"
    )?;
    Ok(())
}

/// Moves a supervised Shamir-sealed store to the static seal (stop edgeseal first).
pub fn migrate(config_path: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    let config = Config::load(config_path)?;
    let Some(supervise) = config.secret_store.supervise.clone() else {
        bail!("migrate-seal moves a supervised OpenBao (secret_store.supervise) to the static seal; an external store keeps its own seal");
    };
    let mut setup = super::setup::from_config(config_path)?;
    if let Some(s) = setup.store.supervise.as_mut() {
        // The migration itself talks Shamir (the private socket); the result is static.
        s.seal = SealMode::Static;
    }
    let server = super::run::supervised_openbao(&config, &supervise, false)?;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    let (pki, kdf, keystore) = (config.pki.clone(), config.kdf.clone(), config.keystore.dir.clone());
    super::pki::converge(&pki, &kdf, &keystore)?;
    match runtime.block_on(migrate::migrate(&setup, server))? {
        Migrated::Now { key_id } => writeln!(out, "migrated      the store is sealed with static key {key_id}; the unseal shares in the keystore are its recovery keys now")?,
        Migrated::Already => writeln!(out, "migrated      already (nothing to do)")?,
    }
    if supervise.seal != SealMode::Static {
        writeln!(out, "next          set secret_store.supervise.seal: static (or remove the line) and start `security-bootstrap run`")?;
    }
    Ok(())
}
