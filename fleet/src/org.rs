//! The organisation key file (SPEC §14): what only the admin holds.
//!
//! - K, 32 random bytes: every secret is AES-256-GCM(V, K); each node receives K age-encrypted to
//!   its recipient. Only the current generation's K is kept, and while a rotation is unfinished
//!   (see [`crate::admin::org_key_rotate`]) the next one beside it.
//! - The org Ed25519 signing key: it signs every org-key entry and every secret record; nodes trust
//!   its public half (`fleet.org_public_key`, printed as `ed25519:…`).
//!
//! The file is JSON, mode 0600, written once (no-clobber) by `fleet org-key new` and replaced
//! atomically (temp file, fsync, rename) by a rotation:
//!
//! ```json
//! {"format": "edgeseal-fleet-org-key-v1", "signing_key": "<base64 Ed25519 seed>",
//!  "generation": 1, "k": "<base64 K>", "pending": null}
//! ```
//!
//! `pending` is `{"generation": N+1, "k": "<base64>"}` between the two steps of a rotation.
//! In memory the keys are wiped on drop and `Debug` shows only the public key and generations.

use std::fmt;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use edgeseal_bundle::SignerKey;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

/// The file's `format`.
pub const FORMAT: &str = "edgeseal-fleet-org-key-v1";
/// Generations stay below 2^53, so every JSON reader sees them exactly.
const MAX_GENERATION: u64 = 1 << 53;
/// Largest org key file read.
const MAX_FILE: u64 = 64 * 1024;

secret_types::secret_array! {
    /// K: the organisation's 32-byte secret-encryption key of one generation.
    pub struct FleetKey([u8; 32]);
}

impl FleetKey {
    /// A new random K.
    pub fn generate() -> Result<Self, OrgKeyError> {
        let mut bytes = [0u8; 32];
        getrandom::getrandom(&mut bytes).map_err(|e| OrgKeyError::Random(e.to_string()))?;
        Ok(Self::from_bytes(bytes))
    }

    fn from_slice(bytes: &[u8]) -> Option<Self> {
        let array: [u8; 32] = bytes.try_into().ok()?;
        Some(Self::from_bytes(array))
    }
}

/// One generation of K.
#[derive(Debug)]
pub struct Generation {
    /// Its number (1 for the first K; +1 per rotation).
    pub number: u64,
    /// K.
    pub key: FleetKey,
}

/// Why the org key file could not be made, read or written.
#[derive(Debug, thiserror::Error)]
pub enum OrgKeyError {
    /// `org-key new` never replaces a file.
    #[error("{0} already exists: not overwritten (an org key is made once; choose another -o)")]
    Exists(PathBuf),
    /// Reading failed.
    #[error("reading the org key file {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file may be read by others.
    #[error("the org key file {path} is readable or writable by others (mode {mode:o}): run chmod 600 {path}")]
    Mode {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Writing failed.
    #[error("writing the org key file {path}: {reason}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Not what `fleet org-key new` writes.
    #[error("the org key file is malformed: {0}")]
    Malformed(String),
    /// The OS random generator failed.
    #[error("the random generator failed: {0}")]
    Random(String),
}

/// The org key: the signing key, the current K, and (mid-rotation) the next K.
pub struct OrgKey {
    signing: SigningKey,
    current: Generation,
    pending: Option<Generation>,
}

impl fmt::Debug for OrgKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrgKey")
            .field("public", &self.public())
            .field("generation", &self.current.number)
            .field("pending", &self.pending.as_ref().map(|g| g.number))
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredGeneration {
    generation: u64,
    k: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    format: String,
    signing_key: String,
    generation: u64,
    k: String,
    pending: Option<StoredGeneration>,
}

impl Drop for Stored {
    fn drop(&mut self) {
        self.signing_key.zeroize();
        self.k.zeroize();
        if let Some(p) = &mut self.pending {
            p.k.zeroize();
        }
    }
}

impl OrgKey {
    /// A new org key: a random signing key and a random K of generation 1.
    pub fn generate() -> Result<Self, OrgKeyError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::getrandom(seed.as_mut()).map_err(|e| OrgKeyError::Random(e.to_string()))?;
        Ok(Self {
            signing: SigningKey::from_bytes(&seed),
            current: Generation { number: 1, key: FleetKey::generate()? },
            pending: None,
        })
    }

    /// The org public key nodes trust (`ed25519:…`).
    pub fn public(&self) -> SignerKey {
        SignerKey::from(self.signing.verifying_key())
    }

    /// Signs `message` (callers put a context string in front).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    /// The current generation.
    pub fn current(&self) -> &Generation {
        &self.current
    }

    /// The next generation while a rotation is unfinished.
    pub fn pending(&self) -> Option<&Generation> {
        self.pending.as_ref()
    }

    /// K of `generation`, if this file holds it (the current or the pending one).
    pub fn key_for(&self, generation: u64) -> Option<&FleetKey> {
        std::iter::once(&self.current).chain(self.pending.as_ref()).find(|g| g.number == generation).map(|g| &g.key)
    }

    /// Starts a rotation: a new random K as the pending generation (kept if one is already pending,
    /// so a re-run continues with the same K). Returns the pending generation's number.
    pub fn begin_rotation(&mut self) -> Result<u64, OrgKeyError> {
        if self.pending.is_none() {
            self.pending = Some(Generation { number: self.current.number + 1, key: FleetKey::generate()? });
        }
        Ok(self.current.number + 1)
    }

    /// Ends a rotation: the pending K becomes the current one; the old K is forgotten.
    pub fn finish_rotation(&mut self) {
        if let Some(next) = self.pending.take() {
            self.current = next;
        }
    }

    /// The file's bytes (JSON, in a wiped buffer).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let stored = Stored {
            format: FORMAT.into(),
            signing_key: B64.encode(self.signing.to_bytes()),
            generation: self.current.number,
            k: B64.encode(self.current.key.expose()),
            pending: self
                .pending
                .as_ref()
                .map(|g| StoredGeneration { generation: g.number, k: B64.encode(g.key.expose()) }),
        };
        Zeroizing::new(serde_json::to_vec_pretty(&stored).unwrap_or_default())
    }

    /// Reads what [`OrgKey::to_bytes`] wrote.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, OrgKeyError> {
        let bad = |what: &str| OrgKeyError::Malformed(what.to_string());
        let stored: Stored = serde_json::from_slice(bytes).map_err(|e| {
            OrgKeyError::Malformed(format!(
                "not the JSON `fleet org-key new` writes (line {} column {})",
                e.line(),
                e.column()
            ))
        })?;
        if stored.format != FORMAT {
            return Err(OrgKeyError::Malformed(format!("format {:?} is not {FORMAT:?}", stored.format)));
        }
        let key = |b64: &str| -> Result<FleetKey, OrgKeyError> {
            let raw = Zeroizing::new(B64.decode(b64).map_err(|_| bad("k is not base64"))?);
            FleetKey::from_slice(&raw).ok_or_else(|| bad("k is not 32 bytes"))
        };
        let seed = Zeroizing::new(B64.decode(&stored.signing_key).map_err(|_| bad("signing_key is not base64"))?);
        let seed: &[u8; 32] = seed.as_slice().try_into().map_err(|_| bad("signing_key is not 32 bytes"))?;
        if stored.generation == 0 || stored.generation >= MAX_GENERATION {
            return Err(bad("generation 0 or beyond 2^53 (generations start at 1)"));
        }
        let pending = match &stored.pending {
            None => None,
            Some(p) if p.generation == stored.generation + 1 => {
                Some(Generation { number: p.generation, key: key(&p.k)? })
            }
            Some(_) => return Err(bad("the pending generation is not the next one")),
        };
        Ok(Self {
            signing: SigningKey::from_bytes(seed),
            current: Generation { number: stored.generation, key: key(&stored.k)? },
            pending,
        })
    }

    /// Writes a new org key file at `path`, 0600; never replaces an existing file.
    pub fn create(&self, path: &Path) -> Result<(), OrgKeyError> {
        let options = durable_file::Options::private().no_clobber();
        match durable_file::write(path, &self.to_bytes(), &options) {
            Ok(durable_file::Outcome::Written) => Ok(()),
            Ok(durable_file::Outcome::Exists) => Err(OrgKeyError::Exists(path.to_path_buf())),
            Err(e) => Err(OrgKeyError::Write { path: path.to_path_buf(), reason: e.to_string() }),
        }
    }

    /// Replaces the file at `path` atomically (temp file 0600, fsync, rename, fsync the directory):
    /// after a crash it holds either the old or the new content, never a mix.
    pub fn save(&self, path: &Path) -> Result<(), OrgKeyError> {
        durable_file::write(path, &self.to_bytes(), &durable_file::Options::private())
            .map(|_| ())
            .map_err(|e| OrgKeyError::Write { path: path.to_path_buf(), reason: e.to_string() })
    }

    /// Reads the org key file at `path`; refuses one that others may read.
    pub fn load(path: &Path) -> Result<Self, OrgKeyError> {
        let read_err = |reason: String| OrgKeyError::Read { path: path.to_path_buf(), reason };
        let meta = std::fs::metadata(path).map_err(|e| read_err(e.to_string()))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(OrgKeyError::Mode { path: path.to_path_buf(), mode });
        }
        if meta.len() > MAX_FILE {
            return Err(read_err(format!("larger than {MAX_FILE} bytes: not an org key file")));
        }
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| read_err(e.to_string()))?);
        Self::from_bytes(&bytes)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_file_round_trips_through_a_rotation_and_never_prints_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("org.key");
        let mut org = OrgKey::generate().unwrap();
        org.create(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(matches!(org.create(&path), Err(OrgKeyError::Exists(_))));
        let k1 = *org.current().key.expose();
        let back = OrgKey::load(&path).unwrap();
        assert_eq!(back.public(), org.public());
        assert_eq!(back.current().key.expose(), &k1);
        assert_eq!(org.begin_rotation().unwrap(), 2);
        let k2 = *org.pending().unwrap().key.expose();
        assert_eq!(org.begin_rotation().unwrap(), 2, "a re-run keeps the pending K");
        assert_eq!(org.pending().unwrap().key.expose(), &k2);
        org.save(&path).unwrap();
        let mut back = OrgKey::load(&path).unwrap();
        assert_eq!((back.key_for(1).unwrap().expose(), back.key_for(2).unwrap().expose()), (&k1, &k2));
        back.finish_rotation();
        assert_eq!((back.current().number, back.key_for(1).is_none()), (2, true));
        let shown = format!("{back:?}");
        assert!(shown.contains("ed25519:") && !shown.contains(&B64.encode(k2)), "{shown}");
    }

    #[test]
    fn malformed_files_and_loose_modes_are_named() {
        let org = OrgKey::generate().unwrap();
        let good: serde_json::Value = serde_json::from_slice(&org.to_bytes()).unwrap();
        // (mutation, error mentions)
        type Mutate<'a> = &'a dyn Fn(&mut serde_json::Value);
        let cases: [(Mutate<'_>, &str); 5] = [
            (&|v| v["format"] = "x".into(), "format"),
            (&|v| v["k"] = "AAAA".into(), "32 bytes"),
            (&|v| v["signing_key"] = "!".into(), "base64"),
            (&|v| v["generation"] = 0.into(), "generation 0"),
            (&|v| v["pending"] = serde_json::json!({"generation": 5, "k": v["k"].clone()}), "next one"),
        ];
        for (mutate, says) in cases {
            let mut v = good.clone();
            mutate(&mut v);
            let err = OrgKey::from_bytes(&serde_json::to_vec(&v).unwrap()).unwrap_err().to_string();
            assert!(err.contains(says), "{says}: {err}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("org.key");
        org.create(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(OrgKey::load(&path).unwrap_err().to_string().contains("chmod 600"));
    }
}
