//! `security-bootstrap setup`: initialize (first boot), unseal and configure OpenBao.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use secretstore_setup::setup::Setup;

use crate::config::Config;

/// Builds the setup from a configuration file.
pub fn from_config(path: &Path) -> anyhow::Result<Setup> {
    let config = Config::load(path)?;
    Ok(Setup {
        ca_cert: config.ca_cert(),
        server_pin: config.server_pin()?,
        services: config.service_setups(),
        store: config.secret_store,
        keystore: config.keystore,
        kdf: config.kdf,
        file_tokens: config.file_tokens,
    })
}

/// Runs the command.
pub fn run(config: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    let setup = from_config(config)?;
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")?;
    let report = runtime.block_on(setup.run())?;
    writeln!(
        out,
        "openbao      {} ({})",
        setup.store.address,
        match (report.initialized, report.unsealed) {
            (true, _) => "initialized and unsealed",
            (false, true) => "unsealed",
            (false, false) => "already unsealed",
        }
    )?;
    if report.changes.is_empty() {
        writeln!(out, "config       unchanged (already converged)")?;
    }
    for change in &report.changes {
        writeln!(out, "changed      {change}")?;
    }
    for refreshed in &report.refreshed {
        writeln!(out, "refreshed    {refreshed}")?;
    }
    for problem in &report.problems {
        writeln!(out, "problem      {problem}")?;
    }
    Ok(())
}
