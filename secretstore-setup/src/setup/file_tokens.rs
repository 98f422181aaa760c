//! The file-token fallback (SPEC §8): `<file_tokens.dir>/<service>/secrets-token.json`, the OpenBao
//! token-create response exactly as EdgeX's go-mod-secrets reads it, directory 0700 and file 0600
//! owned by the service's uid/gid, written atomically, refreshed on every boot with the superseded
//! token revoked. Files of services no longer configured are revoked and removed.

use std::fs::{self, DirBuilder};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use openbao_client::api::auth::Auth;
use openbao_client::{Client, Token};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::policy::service_policy_name;
use super::{concurrently, init::sync_parent, Doing, Report, Setup, SetupError};

/// The file name EdgeX services read.
pub const FILE_NAME: &str = "secrets-token.json";

/// The file's content: `{"auth": {...}}`.
#[derive(Serialize, Deserialize)]
struct TokenFile {
    auth: Auth,
}

/// Issues a fresh token for every service with `file_token` and replaces its file.
pub async fn refresh(setup: &Setup, client: &Client, issuer: &Token, report: &mut Report) -> Result<(), SetupError> {
    let base = &setup.file_tokens.dir;
    let wanted: Vec<_> = setup.services.iter().filter(|s| s.file_token.is_some()).collect();
    if wanted.is_empty() && !base.exists() {
        return Ok(());
    }
    create_dir(base, 0o711, None)?;
    // Tokens are created concurrently (OpenBao commits concurrent raft writes together), files are
    // written one by one, then the superseded tokens are revoked concurrently.
    let issued = concurrently(wanted.iter().map(|service| async move {
        let meta = Map::from_iter([
            ("service".to_string(), Value::String(service.name.clone())),
            ("attestation".to_string(), Value::String("file".into())),
        ]);
        client
            .create_token(issuer, &service_policy_name(&service.name), &meta, super::policy::token_ttl(service))
            .await
            .doing(|| format!("issuing the file token of service {}", service.name))
    }))
    .await?;
    let mut superseded = Vec::new();
    for (service, auth) in wanted.iter().zip(issued) {
        let Some(owner) = service.file_token else { continue };
        let dir = base.join(&service.name);
        let path = dir.join(FILE_NAME);
        if let Some(old) = read_accessor(&path) {
            superseded.push((service.name.as_str(), old));
        }
        create_dir(&dir, 0o700, Some((owner.uid, owner.gid)))?;
        let bytes = Zeroizing::new(serde_json::to_vec_pretty(&TokenFile { auth }).unwrap_or_default());
        write_atomic(&path, &bytes, owner.uid, owner.gid)?;
        crate::crash::point("mid-file-tokens");
        report.refreshed.push(format!("file token of {} refreshed", service.name));
    }
    concurrently(superseded.iter().map(|(name, old)| async move {
        client.revoke_accessor(issuer, old).await.doing(|| format!("revoking the superseded file token of {name}"))
    }))
    .await?;
    remove_stale(setup, client, issuer, report).await
}

/// Revokes and removes the token files of services that no longer have `file_token`.
async fn remove_stale(setup: &Setup, client: &Client, issuer: &Token, report: &mut Report) -> Result<(), SetupError> {
    let base = &setup.file_tokens.dir;
    let Ok(entries) = fs::read_dir(base) else { return Ok(()) };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let keep = setup.services.iter().any(|s| s.name == name && s.file_token.is_some());
        let path = entry.path().join(FILE_NAME);
        if keep || !path.is_file() {
            continue;
        }
        if let Some(accessor) = read_accessor(&path) {
            client
                .revoke_accessor(issuer, &accessor)
                .await
                .doing(|| format!("revoking the file token of removed service {name}"))?;
        }
        let io = |source| SetupError::Io { doing: "removing a stale token file", path: path.clone(), source };
        fs::remove_file(&path).map_err(io)?;
        let _ = fs::remove_dir(entry.path());
        report.changes.push(format!("file token of {name} revoked and removed (no longer configured)"));
    }
    Ok(())
}

/// The accessor of the token in an existing token file. The directory belongs to the service, so the
/// file is opened without following symlinks and must be a regular file: a service must not be able
/// to point edgeseal at another service's token and have it revoked.
fn read_accessor(path: &Path) -> Option<String> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = fs::OpenOptions::new().read(true).custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits()).open(path).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(64 * 1024).read_to_end(&mut bytes).ok()?;
    let file: TokenFile = serde_json::from_slice(&bytes).ok()?;
    Some(file.auth.accessor.clone())
}

fn create_dir(dir: &Path, mode: u32, owner: Option<(u32, u32)>) -> Result<(), SetupError> {
    let io = |source| SetupError::Io { doing: "creating token directory", path: dir.to_path_buf(), source };
    match DirBuilder::new().recursive(true).mode(mode).create(dir) {
        Ok(()) => {}
        Err(e) => return Err(io(e)),
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(mode)).map_err(io)?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(dir, Some(uid), Some(gid)).map_err(io)?;
    }
    Ok(())
}

fn write_atomic(path: &Path, bytes: &[u8], uid: u32, gid: u32) -> Result<(), SetupError> {
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"));
    let io = |source| SetupError::Io { doing: "writing token file", path: path.to_path_buf(), source };
    let mut temp = tempfile::Builder::new()
        .prefix(".secrets-token.")
        .suffix(".tmp")
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(&dir)
        .map_err(io)?;
    temp.write_all(bytes).map_err(io)?;
    temp.as_file().sync_all().map_err(io)?;
    std::os::unix::fs::fchown(temp.as_file(), Some(uid), Some(gid)).map_err(io)?;
    temp.persist(path).map_err(|e| io(e.error))?;
    sync_parent(path)
}
