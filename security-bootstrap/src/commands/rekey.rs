//! `security-bootstrap rekey`: new unseal shares (Shamir) or a new seal key (static seal).

use std::io::Write;

use anyhow::{bail, Context};
use secretstore_setup::rekey::{self, Rekeyed};
use secretstore_setup::seal::SealMode;

use crate::cli::RekeyArgs;
use crate::config::Config;
use crate::UsageError;

/// Runs `rekey`: the static seal's key rotation, or OpenBao's verified rekey of a Shamir store.
pub fn run(args: &RekeyArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let supervise = config.secret_store.supervise.as_ref();
    let want = args.shares.zip(args.threshold);
    if supervise.is_some_and(|s| s.seal == SealMode::Static) {
        if want.is_some() {
            bail!(UsageError(
                "--shares/--threshold are for a Shamir-sealed store: this OpenBao uses the static seal (one seal key edgeseal keeps, no unseal shares). Run `security-bootstrap rekey` without them to rotate its seal key".into()
            ));
        }
        return super::seal::rotate(&args.config, out);
    }
    if let Some((shares, threshold)) = want {
        rekey::check_request(shares, threshold).map_err(UsageError)?;
    }
    if let Some(supervise) = supervise {
        // The rekey talks to the OpenBao that `run` supervises (over its private socket): the data
        // directory's lock tells whether one runs.
        match secretstore_setup::supervise::DataDirLock::acquire(&supervise.data_dir) {
            Ok(_free) => bail!(
                "the supervised OpenBao in {} is not running: start `security-bootstrap run` and rekey while it runs",
                supervise.data_dir.display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => {
                return Err(e).with_context(|| format!("checking whether `run` holds {}", supervise.data_dir.display()))
            }
        }
    }
    let setup = super::setup::from_config(&args.config)?;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    match runtime.block_on(rekey::rekey(&setup, want))? {
        Rekeyed::New { shares, threshold } => writeln!(
            out,
            "rekeyed       {shares} new unseal shares, threshold {threshold}, are in the keystore; the old shares no longer open the store"
        )?,
        Rekeyed::Finished { shares, threshold } => writeln!(
            out,
            "rekeyed       an interrupted rekey was completed: {shares} unseal shares, threshold {threshold}, are in the keystore"
        )?,
    }
    writeln!(out, "backups       made before this keep the old shares, which open only those backups")?;
    Ok(())
}
