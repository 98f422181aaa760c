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
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::Path;

use kdf_plugins::Kek;
use openbao_client::api::kv::Written;
use openbao_client::{Client, Token};
use zeroize::Zeroizing;

use super::configure::secret_path;
use super::{Doing, Report, Setup, SetupError};
use crate::config::ServiceSetup;
use crate::crash;
use crate::seed::{SecretsFile, Seed, MAX_FILE_LEN};

/// The custom metadata key of a secret imported from a seed file: [`Seed::marker`].
const SEED_MARKER: &str = "seed";

/// Imports and scrubs every configured seed file (see the module documentation).
pub async fn import(
    setup: &Setup,
    client: &Client,
    token: &Token,
    kek: &Kek,
    report: &mut Report,
) -> Result<(), SetupError> {
    for service in &setup.services {
        let Some(path) = &service.seed_file else { continue };
        let file = match read(path) {
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
            import_one(setup, client, token, kek, service, path, seed, report).await?;
        }
        if !file.needs_scrub() {
            continue;
        }
        crash::point("before-seed-scrub");
        match scrub(path, &file) {
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

/// Reads and checks the file, or says why not (naming the configured path). The path must name a
/// regular file itself, with one link: not a symbolic link (another service's seed file would be
/// imported into this service's folder, and scrubbed), not a FIFO or a device (which would stop
/// setup, and every service's boot, on an open that never returns).
fn read(path: &Path) -> Result<SecretsFile, String> {
    let shown = path.display();
    let unreadable = |e: std::io::Error| format!("seed file {shown} cannot be read: {e}");
    if std::fs::symlink_metadata(path).map_err(unreadable)?.file_type().is_symlink() {
        return Err(format!("seed file {shown} is a symbolic link: name the file itself"));
    }
    let handle = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(unreadable)?;
    let meta = handle.metadata().map_err(unreadable)?;
    if !meta.is_file() {
        return Err(format!("seed file {shown} is not a regular file"));
    }
    if meta.nlink() != 1 {
        return Err(format!("seed file {shown} has {} hard links: give each service a file of its own", meta.nlink()));
    }
    let mut bytes = Zeroizing::new(Vec::new());
    handle.take(MAX_FILE_LEN as u64 + 1).read_to_end(&mut bytes).map_err(unreadable)?;
    SecretsFile::parse(path, &bytes).map_err(|e| e.to_string())
}

/// Imports one seed, once: a seed whose marker (see [`Seed::marker`]) the secret carries was
/// imported by an earlier run and is never written again, even if the secret changed since (an
/// admin's version is not overwritten by a file that could not be scrubbed). Otherwise it is written
/// unless the secret's current version already holds exactly it (a run killed between its write and
/// its marker), and the version gets its provenance and the marker in one metadata write.
#[allow(clippy::too_many_arguments)]
async fn import_one(
    setup: &Setup,
    client: &Client,
    token: &Token,
    kek: &Kek,
    service: &ServiceSetup,
    file: &Path,
    seed: &Seed,
    report: &mut Report,
) -> Result<(), SetupError> {
    let mount = &setup.store.kv_mount;
    let kv_path = secret_path(setup, &service.name, &seed.name);
    let marker = seed.marker(file, kek);
    let metadata =
        client.kv_metadata(token, mount, &kv_path).await.doing(|| format!("reading metadata of {kv_path}"))?;
    let imported = metadata
        .and_then(|m| m.custom_metadata)
        .and_then(|custom| custom.get(SEED_MARKER).and_then(|v| v.as_str()).map(|v| v == marker))
        .unwrap_or(false);
    if imported {
        return Ok(());
    }
    let current =
        client.kv_read_version(token, mount, &kv_path, None).await.doing(|| format!("reading secret {kv_path}"))?;
    let version = match current {
        Some(current) if seed.matches(&current.data) => current.version,
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
    let source = format!("seeded from {}", file.display());
    client
        .kv_record_source(token, mount, &kv_path, version, &source, &[(SEED_MARKER, &marker)])
        .await
        .doing(|| format!("recording the provenance of {kv_path}"))
}

/// Rewrites the file scrubbed, atomically and durably, keeping its mode and owner. A file that is a
/// mount point of its own (Docker's `-v file:file`) cannot be renamed over (EBUSY): it is then
/// rewritten in place (truncated, written, fsynced). Either way it never holds a value afterwards:
/// a crash midway leaves a scrubbed prefix, which the next run reports as malformed.
fn scrub(path: &Path, file: &SecretsFile) -> Result<(), durable_file::Error> {
    let error = |op, source| durable_file::Error { op, path: path.to_path_buf(), source };
    let meta = std::fs::symlink_metadata(path).map_err(|e| error("reading the mode and owner of", e))?;
    let options = durable_file::Options::with_mode(meta.mode()).owner(meta.uid(), meta.gid());
    let scrubbed = file.scrubbed();
    match durable_file::write(path, &scrubbed, &options) {
        Err(e) if e.source.raw_os_error() == Some(libc::EBUSY) => {
            use std::io::Write as _;
            let mut handle = std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(path)
                .map_err(|e| error("opening to rewrite in place", e))?;
            handle.write_all(&scrubbed).map_err(|e| error("rewriting in place", e))?;
            handle.sync_all().map_err(|e| error("syncing", e))
        }
        outcome => outcome.map(|_| ()),
    }
}
