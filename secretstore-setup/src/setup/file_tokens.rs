//! The file-token fallback (SPEC §8): `<file_tokens.dir>/<service>/secrets-token.json`, the OpenBao
//! token-create response exactly as EdgeX's go-mod-secrets reads it, directory 0700 and file 0600
//! owned by the service's uid/gid, written atomically, refreshed on every boot with the superseded
//! token revoked. Files of services no longer configured are revoked and removed.
//!
//! **A service owns its directory, and nothing it puts there can stop the boot or reach outside it**
//! (SPEC §11). `file_tokens.dir` belongs to root; each `<service>/` is opened once without following
//! a symlink and everything after that — owner, mode, reading the old file, displacing what is in the
//! way, writing, fsync — goes through that one directory handle, so swapping entries between checks
//! gains nothing. An entry at `secrets-token.json` that is not a regular file is replaced: a symlink
//! or fifo by the rename itself (never followed or opened), a directory by first moving it aside. When a
//! service's file cannot be written at all (e.g. its directory is a symlink), that service is reported
//! in [`Report::problems`] and a warning; the other services still get theirs.
//!
//! A token file's content is the service's to edit, so the accessor found in it is not trusted: the
//! superseded token is revoked only if OpenBao says it is a file token edgeseal made for this very
//! service ([`is_file_token_of`]).

use std::fs::File;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use durable_file::{Dir, Options};
use openbao_client::api::auth::{Auth, TokenInfo};
use openbao_client::{Client, Token};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;
use zeroize::Zeroizing;

use super::policy::service_policy_name;
use super::{concurrently, Doing, Report, Setup, SetupError};
use crate::config::FileTokenOwner;

/// The file name EdgeX services read.
pub const FILE_NAME: &str = "secrets-token.json";
/// Temp files of a token write: `.secrets-token.<random>.tmp`.
const TEMP_PREFIX: &str = ".secrets-token.";
/// Where an entry in the way of the token file is moved: `.secrets-token.json.displaced-<random>`.
const DISPLACED_PREFIX: &str = ".secrets-token.json.displaced-";
/// Metadata edgeseal puts on file tokens: `attestation: file`.
const ATTESTATION_FILE: &str = "file";
/// How often a write is retried when the service keeps putting a directory in the way.
const WRITE_ATTEMPTS: usize = 3;
/// Largest token file read back (a token-create response is about 1 KiB).
const MAX_FILE_LEN: u64 = 64 * 1024;

/// The file's content: `{"auth": {...}}`.
#[derive(Serialize, Deserialize)]
struct TokenFile {
    auth: Auth,
}

/// Why one service's token file could not be written. Only that service is affected.
#[derive(Debug, Error)]
pub enum FileTokenError {
    /// The service's directory is a symlink or not a directory.
    #[error("{path} is not a directory (a symlink or another kind of file is in its place); edgeseal writes nothing through it: remove it, and the next boot creates the directory")]
    NotADirectory {
        /// The service's directory.
        path: PathBuf,
    },
    /// The service keeps putting a directory where the file goes.
    #[error("a directory keeps appearing at {path} while edgeseal replaces it; stop the process of this service that creates it")]
    InTheWay {
        /// The token file.
        path: PathBuf,
    },
    /// A filesystem operation failed.
    #[error(transparent)]
    Io(#[from] durable_file::Error),
}

/// Issues a fresh token for every service with `file_token` and replaces its file.
pub async fn refresh(setup: &Setup, client: &Client, issuer: &Token, report: &mut Report) -> Result<(), SetupError> {
    let base_path = &setup.file_tokens.dir;
    let wanted: Vec<_> = setup.services.iter().filter_map(|s| Some((s, s.file_token?))).collect();
    if wanted.is_empty() && !base_path.exists() {
        return Ok(());
    }
    let base = open_base(base_path)?;
    // Tokens are created concurrently (OpenBao commits concurrent raft writes together), files are
    // written one by one, then the superseded tokens are revoked concurrently.
    let issued = concurrently(wanted.iter().map(|&(service, _)| async move {
        let name = &service.name;
        let meta = Map::from_iter([
            ("service".to_string(), Value::String(name.clone())),
            ("attestation".to_string(), Value::String(ATTESTATION_FILE.into())),
        ]);
        client
            .create_token(issuer, &service_policy_name(name), &meta, super::policy::token_ttl(service))
            .await
            .doing(|| format!("issuing the file token of service {name}"))
    }))
    .await?;
    let mut superseded = Vec::new();
    let mut failed = Vec::new();
    for (&(service, owner), auth) in wanted.iter().zip(issued) {
        let name = service.name.as_str();
        let accessor = auth.accessor.clone();
        let bytes = Zeroizing::new(serde_json::to_vec_pretty(&TokenFile { auth }).unwrap_or_default());
        match write_service_file(&base, name, owner, &bytes) {
            Ok(previous) => {
                superseded.extend(previous.map(|old| (name, old)));
                report.refreshed.push(format!("file token of {name} refreshed"));
            }
            Err(e) => {
                tracing::warn!(service = name, error = %e, "file token not written; the other services are not affected");
                report.problems.push(format!("file token of {name} not written: {e}"));
                failed.push(accessor);
            }
        }
        crate::crash::point("mid-file-tokens");
    }
    // A token nobody received is of no use to anyone: revoke it now rather than at its TTL.
    for accessor in &failed {
        let _ = client.revoke_accessor(issuer, accessor).await;
    }
    let outcomes = concurrently(superseded.iter().map(|&(name, ref old)| async move {
        Ok::<_, SetupError>(revoke_if_file_token_of(client, issuer, name, old).await)
    }))
    .await?;
    for ((name, _), outcome) in superseded.iter().zip(outcomes) {
        if let Err(problem) = outcome {
            tracing::warn!(service = name, problem = %problem, "superseded file token not revoked");
            report.problems.push(format!("superseded file token of {name} not revoked: {problem}"));
        }
    }
    remove_stale(setup, &base, client, issuer, report).await;
    Ok(())
}

/// Whether OpenBao's description of a token says it is a file token edgeseal made for `service`:
/// created against the service's token role, with edgeseal's metadata naming the service and the
/// file attestation. Only the issuing token (edgeseal) can set that metadata on that role.
pub fn is_file_token_of(info: &TokenInfo, service: &str) -> bool {
    let meta = |key: &str| info.meta.as_ref().and_then(|m| m.get(key)).and_then(Value::as_str);
    info.role.as_deref() == Some(service_policy_name(service).as_str())
        && meta("service") == Some(service)
        && meta("attestation") == Some(ATTESTATION_FILE)
}

/// Why a superseded file token was left alone.
#[derive(Debug, Error)]
enum NotRevoked {
    /// The file named a token that is not this service's file token (the service edited its file).
    #[error("the file named accessor {accessor}, which is not a file token of {service}; left alone (the service's previous file token expires at its TTL)")]
    Foreign {
        /// The accessor found in the file (not a secret: it only looks up, renews or revokes).
        accessor: String,
        /// The service whose file it was.
        service: String,
    },
    /// OpenBao could not be asked, or refused.
    #[error("{doing}: {source}")]
    OpenBao {
        /// What was being done.
        doing: &'static str,
        /// The client error.
        source: openbao_client::Error,
    },
}

/// Revokes the token behind `accessor` if it is `service`'s file token; otherwise says why not.
async fn revoke_if_file_token_of(
    client: &Client,
    issuer: &Token,
    service: &str,
    accessor: &str,
) -> Result<(), NotRevoked> {
    match client.lookup_accessor(issuer, accessor).await {
        Ok(None) => Ok(()), // already expired or revoked
        Ok(Some(info)) if is_file_token_of(&info, service) => client
            .revoke_accessor(issuer, accessor)
            .await
            .map_err(|source| NotRevoked::OpenBao { doing: "revoking its accessor", source }),
        Ok(Some(_)) => Err(NotRevoked::Foreign { accessor: accessor.to_string(), service: service.to_string() }),
        Err(source) => Err(NotRevoked::OpenBao { doing: "looking up its accessor", source }),
    }
}

/// Creates `file_tokens.dir` (root's, 0711: services reach only their own directory) and opens it.
fn open_base(path: &Path) -> Result<Dir, SetupError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let io = |source| SetupError::Io { doing: "creating token directory", path: path.to_path_buf(), source };
    std::fs::DirBuilder::new().recursive(true).mode(0o711).create(path).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o711)).map_err(io)?;
    Dir::open(path).map_err(|e| SetupError::Io { doing: "opening token directory", path: e.path, source: e.source })
}

/// Opens (creating it if needed) a service's directory inside `base` without following a symlink,
/// and gives it to the service, 0700 — through the handle, never the path.
fn open_service_dir(base: &Dir, name: &str, owner: Option<FileTokenOwner>) -> Result<Dir, FileTokenError> {
    let path = base.path().join(name);
    match rustix::fs::mkdirat(base, name, Mode::from_raw_mode(0o700)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(durable_file::Error { op: "creating directory", path, source: e.into() }.into()),
    }
    let dir = base.open_child_nofollow(name).map_err(|e| match e.raw_os_error() {
        Some(code) if code == Errno::LOOP.raw_os_error() || code == Errno::NOTDIR.raw_os_error() => {
            FileTokenError::NotADirectory { path: path.clone() }
        }
        _ => e.into(),
    })?;
    let io = |op: &'static str| {
        let path = path.clone();
        move |e: Errno| durable_file::Error { op, path, source: e.into() }
    };
    if let Some(owner) = owner {
        let (uid, gid) =
            (rustix::fs::Uid::from_raw_unchecked(owner.uid), rustix::fs::Gid::from_raw_unchecked(owner.gid));
        rustix::fs::fchown(&dir, Some(uid), Some(gid)).map_err(io("changing the owner of"))?;
    }
    rustix::fs::fchmod(&dir, Mode::from_raw_mode(0o700)).map_err(io("setting the mode of"))?;
    Ok(dir)
}

/// Writes one service's token file; returns the accessor found in the file it replaced, if any.
fn write_service_file(
    base: &Dir,
    name: &str,
    owner: FileTokenOwner,
    bytes: &[u8],
) -> Result<Option<String>, FileTokenError> {
    let dir = open_service_dir(base, name, Some(owner))?;
    let previous = read_accessor(&dir);
    let options = Options::private().owner(owner.uid, owner.gid).temp_prefix(TEMP_PREFIX);
    for _ in 0..WRITE_ATTEMPTS {
        displace_directory(&dir)?;
        match durable_file::write_in(&dir, FILE_NAME, bytes, &options) {
            Ok(_) => {
                dir.sync()?;
                return Ok(previous);
            }
            // A directory appeared again between the move and the rename: try again.
            Err(e) if directory_in_the_way(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(FileTokenError::InTheWay { path: dir.path().join(FILE_NAME) })
}

/// Whether a rename failed because a directory is at the target name.
fn directory_in_the_way(e: &durable_file::Error) -> bool {
    let code = e.raw_os_error();
    [Errno::ISDIR, Errno::NOTEMPTY, Errno::EXIST].iter().any(|errno| Some(errno.raw_os_error()) == code)
}

/// A directory at the token file's name cannot be renamed over: move it aside inside the service's own
/// directory (a rename moves the entry itself, whatever it holds or points to), then remove it if it
/// is empty. A non-empty one stays as `.secrets-token.json.displaced-<random>` for the service to clean.
fn displace_directory(dir: &Dir) -> Result<(), FileTokenError> {
    let io =
        |op: &'static str, e: Errno| durable_file::Error { op, path: dir.path().join(FILE_NAME), source: e.into() };
    match rustix::fs::statat(dir, FILE_NAME, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Directory => {}
        Ok(_) | Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(io("inspecting", e).into()),
    }
    let mut random = [0u8; 8];
    getrandom::getrandom(&mut random).map_err(|e| durable_file::Error {
        op: "moving aside",
        path: dir.path().join(FILE_NAME),
        source: std::io::Error::other(e.to_string()),
    })?;
    let aside = format!("{DISPLACED_PREFIX}{}", hex::encode(random));
    match rustix::fs::renameat_with(dir, FILE_NAME, dir, aside.as_str(), rustix::fs::RenameFlags::NOREPLACE) {
        Ok(()) => {}
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(io("moving aside", e).into()),
    }
    if rustix::fs::unlinkat(dir, aside.as_str(), AtFlags::REMOVEDIR).is_err() {
        tracing::warn!(dir = %dir.path().display(), moved_to = aside, "a non-empty directory was in the way of the token file; moved aside");
    }
    Ok(())
}

/// The accessor in the token file inside `dir`: opened without following a symlink and without
/// blocking on a fifo, and only read if it is a regular file.
fn read_accessor(dir: &Dir) -> Option<String> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let file = File::from(rustix::fs::openat(dir, FILE_NAME, flags, Mode::empty()).ok()?);
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_FILE_LEN).read_to_end(&mut bytes).ok()?;
    let file: TokenFile = serde_json::from_slice(&bytes).ok()?;
    Some(file.auth.accessor.clone())
}

/// Revokes and removes the token files of services that no longer have `file_token`.
async fn remove_stale(setup: &Setup, base: &Dir, client: &Client, issuer: &Token, report: &mut Report) {
    let Ok(entries) = std::fs::read_dir(base.path()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let keep = setup.services.iter().any(|s| s.name == name && s.file_token.is_some());
        if keep || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let Ok(dir) = base.open_child_nofollow(&name) else { continue };
        let Some(accessor) = read_accessor(&dir) else { continue };
        if let Err(problem) = revoke_if_file_token_of(client, issuer, &name, &accessor).await {
            tracing::warn!(service = name, problem = %problem, "file token of a removed service not revoked");
            report.problems.push(format!("file token of removed service {name} not revoked: {problem}"));
        }
        if let Err(e) = rustix::fs::unlinkat(&dir, FILE_NAME, AtFlags::empty()) {
            let path = dir.path().join(FILE_NAME);
            tracing::warn!(service = name, path = %path.display(), error = %e, "stale token file not removed");
            report.problems.push(format!("stale token file {} not removed: {e}; remove it", path.display()));
            continue;
        }
        drop(dir);
        let _ = rustix::fs::unlinkat(base, name.as_str(), AtFlags::REMOVEDIR);
        report.changes.push(format!("file token of {name} revoked and removed (no longer configured)"));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn info(role: Option<&str>, meta: &[(&str, &str)]) -> TokenInfo {
        let meta: Map<String, Value> =
            meta.iter().map(|(k, v)| (k.to_string(), Value::String(v.to_string()))).collect();
        serde_json::from_value(serde_json::json!({"accessor": "a", "role": role, "meta": meta})).unwrap()
    }

    #[test]
    fn only_a_file_token_edgeseal_made_for_this_service_is_revoked() {
        let file_a = [("service", "alpha"), ("attestation", "file")];
        for (role, meta, service, revoke) in [
            (Some("edgeseal-svc-alpha"), &file_a[..], "alpha", true),
            // Another service's file token, written into alpha's file.
            (Some("edgeseal-svc-beta"), &[("service", "beta"), ("attestation", "file")][..], "alpha", false),
            (Some("edgeseal-svc-alpha"), &file_a[..], "beta", false),
            // The token server's tokens of the same service are not file tokens.
            (Some("edgeseal-svc-alpha"), &[("service", "alpha"), ("attestation", "unix")][..], "alpha", false),
            // Right metadata, wrong role (or none: e.g. the issuing token, a root token).
            (Some("edgeseal-token-issuer"), &file_a[..], "alpha", false),
            (None, &file_a[..], "alpha", false),
            (Some("edgeseal-svc-alpha"), &[][..], "alpha", false),
            (Some("edgeseal-svc-alpha"), &[("service", "alpha")][..], "alpha", false),
        ] {
            assert_eq!(is_file_token_of(&info(role, meta), service), revoke, "{role:?} {meta:?} {service}");
        }
    }
}
