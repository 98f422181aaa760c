//! The node's cache of fetched records (SPEC §14): the [`Fetched`] ciphertexts of the last sync, in
//! one file (0600, replaced atomically), so a boot without the network installs and serves from it.
//! It holds no K and no V: reading it back goes through the same [`crate::node::plan`] as a fetch.

use std::path::{Path, PathBuf};

use crate::node::{Fetched, FETCHED_FORMAT};

/// The cache file's name in its directory (e.g. the keystore directory).
pub const FILE: &str = "fleet-cache.json";
/// Largest cache file read.
const MAX_CACHE: u64 = 64 * 1024 * 1024;

/// Why the cache could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Writing failed.
    #[error("writing the fleet cache {path}: {reason}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Reading failed.
    #[error("reading the fleet cache {path}: {reason} (remove it; the next sync writes it again)")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// The cache file in `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Replaces the cache in `dir` with `fetched`.
pub fn save(dir: &Path, fetched: &Fetched) -> Result<(), CacheError> {
    let path = path(dir);
    let bytes =
        serde_json::to_vec(fetched).map_err(|e| CacheError::Write { path: path.clone(), reason: e.to_string() })?;
    durable_file::write(&path, &bytes, &durable_file::Options::private())
        .map(|_| ())
        .map_err(|e| CacheError::Write { path, reason: e.to_string() })
}

/// The cache in `dir`, or `None` when there is none. Nothing in it is trusted until [`crate::node::plan`]
/// has verified it.
pub fn load(dir: &Path) -> Result<Option<Fetched>, CacheError> {
    let path = path(dir);
    let read_err = |reason: String| CacheError::Read { path: path.clone(), reason };
    let meta = match std::fs::metadata(&path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_err(e.to_string())),
    };
    if meta.len() > MAX_CACHE {
        return Err(read_err(format!("larger than {MAX_CACHE} bytes")));
    }
    let bytes = std::fs::read(&path).map_err(|e| read_err(e.to_string()))?;
    let fetched: Fetched = serde_json::from_slice(&bytes).map_err(|e| read_err(e.to_string()))?;
    if fetched.format != FETCHED_FORMAT {
        return Err(read_err(format!("format {:?} is not {FETCHED_FORMAT:?}", fetched.format)));
    }
    Ok(Some(fetched))
}
