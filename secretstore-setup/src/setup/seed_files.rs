//! Importing EdgeX seed files (`services.<svc>.seed_file`) at setup, then scrubbing them.
//!
//! For each service with a seed file, on every run:
//! 1. The whole file is read and checked ([`crate::seed`]) before anything is written. A missing or
//!    malformed file is a *problem* of that service (reported by `setup`, logged by `run`): none of
//!    its entries is imported, and the other services and the rest of setup go on — one service's bad
//!    file must not stop the device's boot (SPEC §11). The file is left as it is.
//! 2. Each entry not yet `imported` is written to `<kv_mount>/data/<prefix>/<svc>/<secretName>`,
//!    unless the secret's current version already holds exactly the seed's keys and values (a run
//!    killed between these writes and the scrub converges without duplicate versions). The version
//!    gets the provenance "seeded from <file>" in its custom metadata, as the admin API records its
//!    writes, so `secrets list/history` show where it came from.
//! 3. The file is rewritten as EdgeX scrubs it (every entry `imported: true`, no values), atomically
//!    and durably, with its mode and owner kept. A file that cannot be rewritten is a problem that says
//!    the values were imported but the file still holds them; the next run tries again (and, the
//!    values being in the store already, writes no new version).
//!
//! A store error while importing stops setup like any other step; what was written stays, and the
//! next run completes the import from the same, still unscrubbed, file.

use std::io::Read as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use openbao_client::api::kv::{provenance_key, Written};
use openbao_client::{Client, Token};
use zeroize::Zeroizing;

use super::configure::secret_path;
use super::{Doing, Report, Setup, SetupError};
use crate::config::ServiceSetup;
use crate::crash;
use crate::seed::{SecretsFile, Seed, MAX_FILE_LEN};

/// Imports and scrubs every configured seed file (see the module documentation).
pub async fn import(setup: &Setup, client: &Client, token: &Token, report: &mut Report) -> Result<(), SetupError> {
    for service in &setup.services {
        let Some(path) = &service.seed_file else { continue };
        let (real, file) = match read(path) {
            Ok(read) => read,
            Err(problem) => {
                report.problems.push(format!(
                    "{problem}; nothing was imported for service {}. Fix it (EdgeX's SecretsFile JSON) and restart edgeseal, or remove services.{}.seed_file",
                    service.name, service.name
                ));
                continue;
            }
        };
        for seed in file.pending() {
            import_one(setup, client, token, service, path, seed, report).await?;
        }
        if !file.needs_scrub() {
            continue;
        }
        crash::point("before-seed-scrub");
        match scrub(&real, &file) {
            Ok(()) => report.changes.push(format!("seed file {} scrubbed (entries imported, values removed)", path.display())),
            Err(e) => report.problems.push(format!(
                "the values of seed file {} (service {}) are in the store, but the file could not be rewritten without them ({e}): it still holds them in clear. Make it writable (a writable mount, chattr -i) so that the next setup scrubs it, or delete it",
                path.display(),
                service.name
            )),
        }
    }
    Ok(())
}

/// Reads and checks the file. Returns the path it resolves to (a symlink is followed: the file that
/// holds the values is the one scrubbed) and its seeds, or a problem naming the configured path.
fn read(path: &Path) -> Result<(PathBuf, SecretsFile), String> {
    let shown = path.display();
    let real = std::fs::canonicalize(path).map_err(|e| format!("seed file {shown} cannot be read: {e}"))?;
    let handle = std::fs::File::open(&real).map_err(|e| format!("seed file {shown} cannot be read: {e}"))?;
    let meta = handle.metadata().map_err(|e| format!("seed file {shown} cannot be read: {e}"))?;
    if !meta.is_file() {
        return Err(format!("seed file {shown} is not a regular file"));
    }
    let mut bytes = Zeroizing::new(Vec::new());
    handle
        .take(MAX_FILE_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("seed file {shown} cannot be read: {e}"))?;
    let file = SecretsFile::parse(path, &bytes).map_err(|e| e.to_string())?;
    Ok((real, file))
}

/// Writes one seed unless the store already holds it, and records where the version came from.
async fn import_one(
    setup: &Setup,
    client: &Client,
    token: &Token,
    service: &ServiceSetup,
    file: &Path,
    seed: &Seed,
    report: &mut Report,
) -> Result<(), SetupError> {
    let mount = &setup.store.kv_mount;
    let kv_path = secret_path(setup, &service.name, &seed.name);
    let current =
        client.kv_read_version(token, mount, &kv_path, None).await.doing(|| format!("reading secret {kv_path}"))?;
    let source = format!("seeded from {}", file.display());
    let version = match current {
        Some(current) if seed.matches(&current.data) => {
            // Imported by a run that died before the scrub: record the provenance if it did not.
            let metadata =
                client.kv_metadata(token, mount, &kv_path).await.doing(|| format!("reading metadata of {kv_path}"))?;
            let recorded = metadata
                .and_then(|m| m.custom_metadata)
                .is_some_and(|custom| custom.contains_key(&provenance_key(current.version)));
            if recorded {
                return Ok(());
            }
            current.version
        }
        _ => match client
            .kv_write(token, mount, &kv_path, &seed.kv_data(), None)
            .await
            .doing(|| format!("writing secret {kv_path} from seed file {}", file.display()))?
        {
            Written::Version(version) => {
                report
                    .changes
                    .push(format!("seeded secret {mount}/{kv_path} (version {version}) from {}", file.display()));
                version
            }
            Written::CasMismatch => {
                return Err(SetupError::Config(format!(
                    "writing secret {kv_path}: OpenBao refused a write without cas"
                )))
            }
        },
    };
    client
        .kv_record_source(token, mount, &kv_path, version, &source)
        .await
        .doing(|| format!("recording the provenance of {kv_path}"))
}

/// Rewrites the file scrubbed, atomically and durably, keeping its mode and owner.
fn scrub(real: &Path, file: &SecretsFile) -> Result<(), durable_file::Error> {
    let meta = std::fs::metadata(real).map_err(|source| durable_file::Error {
        op: "reading the mode and owner of",
        path: real.to_path_buf(),
        source,
    })?;
    let options = durable_file::Options::with_mode(meta.mode()).owner(meta.uid(), meta.gid());
    durable_file::write(real, &file.scrubbed(), &options).map(|_| ())
}
