//! Binding the token socket defensively: inside a directory we create and own, replacing a stale
//! path only when it is a socket, with an explicit mode.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::Path;

use tokio::net::UnixListener;

/// Binds `path` with mode 0666 (attestation, not file modes, decides who gets what).
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    bind_with_mode(path, 0o666)
}

/// Binds `path` with `mode` (the admin socket: 0600 or 0660).
pub fn bind_with_mode(path: &Path, mode: u32) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        fs::DirBuilder::new().recursive(true).mode(0o755).create(dir)?;
    }
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => fs::remove_file(path)?,
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket; refusing to replace it", path.display()),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    Ok(listener)
}

/// The next connection on `listener`. A failed accept (EMFILE and friends) is logged and retried
/// after a short pause instead of spinning. Cancel-safe: for use in a `select!` with shutdown.
pub async fn accept(listener: &UnixListener, what: &str) -> tokio::net::UnixStream {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => return stream,
            Err(e) => {
                tracing::warn!(error = %e, "{what}: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}
