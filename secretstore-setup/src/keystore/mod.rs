//! The encrypted keystore (SPEC §5): everything needed to unseal OpenBao, usable only with the KEK.
//!
//! - [`format`]: the versioned JSON file and its pure parser ([`KeystoreFile`]).
//! - [`canonical`]: canonical JSON and the checksum that tells corruption from a wrong KEK.
//! - [`store`]: the directory on disk — atomic, durable, never overwriting a different keystore.
//!
//! [`Keystore`] is the decrypted form, held in memory only: unseal shares plus named secret items.
//! [`Keystore::seal`] turns it into a [`KeystoreFile`] under a KEK; [`open`] reverses that.

pub mod canonical;
pub mod format;
pub mod pending;
pub mod store;

use std::collections::BTreeMap;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use kdf_plugins::kek::{derive_kek, SALT_LEN};
use kdf_plugins::{Ikm, Kek, KEYSTORE_KEK_INFO};
use thiserror::Error;
use zeroize::Zeroizing;

pub use format::{FormatError, KeystoreFile};
pub use pending::{PendingShares, ITEM_PENDING_SHARES};
pub use store::{KeystoreDir, KeystoreError};

use crate::secret::{SecretBytes, UnsealShare};
use format::{
    associated_data, decode_b64, encode_b64, valid_purpose, Item, KdfParams, Sealed, AEAD, FORMAT_NAME, KDF_ALGORITHM,
    MAX_ITEMS, MAX_SHARES, NONCE_LEN, PURPOSE_KEY_CHECK, PURPOSE_UNSEAL_SHARE, VERSION,
};

/// The plaintext of the key-check item.
const KEY_CHECK_PLAINTEXT: &[u8] = b"edgeseal keystore key check v1";
/// Largest share accepted (OpenBao's are 33 bytes).
const MAX_SHARE_LEN: usize = 1024;
/// Largest secret item accepted.
const MAX_ITEM_LEN: usize = 64 * 1024;

/// Why a keystore could not be built or decrypted (the path is added by [`store`]).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum OpenError {
    /// The key-check item does not decrypt: a different KEK than the one that wrote the file.
    #[error("wrong KEK")]
    WrongKek,
    /// The key check passed but an item did not: the file was altered.
    #[error("item {purpose}/{index} failed authentication")]
    ItemTampered {
        /// The item's purpose.
        purpose: String,
        /// The item's index.
        index: u32,
    },
    /// The file's structure is fine but its content is not (e.g. a bad salt).
    #[error(transparent)]
    Format(#[from] FormatError),
}

/// A keystore that cannot be built from these inputs.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BuildError {
    /// Share count or threshold out of range.
    #[error("{shares} shares with threshold {threshold}: need 1 ≤ threshold ≤ shares ≤ {MAX_SHARES}")]
    Shares {
        /// Number of shares given.
        shares: usize,
        /// Threshold given.
        threshold: u64,
    },
    /// A share that is empty or absurdly long.
    #[error("unseal share {index} is {len} bytes; expected 1 to {MAX_SHARE_LEN}")]
    ShareLength {
        /// Which share.
        index: usize,
        /// Its length.
        len: usize,
    },
    /// Two shares are the same.
    #[error("unseal shares {0} and {1} are identical")]
    DuplicateShare(usize, usize),
    /// An item name that is not `[a-z0-9-]{1,64}` or is reserved.
    #[error("{0:?} is not a usable item purpose (1-64 of [a-z0-9-], not reserved)")]
    Purpose(String),
    /// An item that is too large, or too many items.
    #[error("item {purpose:?} is too large or there are too many items")]
    ItemSize {
        /// The item's purpose.
        purpose: String,
    },
    /// The keystore already holds unseal shares; they are never replaced.
    #[error("the keystore already holds unseal shares; they are never replaced")]
    SharesAlreadySet,
    /// The OS random generator failed.
    #[error("the system random generator failed: {0}")]
    Random(String),
}

/// The decrypted keystore: unseal shares, threshold, salt, and named secret items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keystore {
    salt: [u8; SALT_LEN],
    shares: Vec<UnsealShare>,
    threshold: u64,
    items: BTreeMap<String, SecretBytes>,
}

impl Keystore {
    /// A new keystore with a fresh random salt.
    pub fn new(shares: Vec<UnsealShare>, threshold: u64) -> Result<Self, BuildError> {
        check_shares(&shares, threshold)?;
        let mut keystore = Self::without_shares()?;
        keystore.shares = shares;
        keystore.threshold = threshold;
        Ok(keystore)
    }

    /// A new keystore that holds no unseal shares yet (made before OpenBao is initialized, e.g. to keep
    /// the PKI's CA keys). [`Keystore::set_shares`] fills it in once.
    pub fn without_shares() -> Result<Self, BuildError> {
        let mut salt = [0u8; SALT_LEN];
        random(&mut salt)?;
        Ok(Self { salt, shares: Vec::new(), threshold: 0, items: BTreeMap::new() })
    }

    /// Whether the unseal shares are present.
    pub fn has_shares(&self) -> bool {
        !self.shares.is_empty()
    }

    /// Records the unseal shares of a keystore that has none. Shares are never replaced.
    pub fn set_shares(&mut self, shares: Vec<UnsealShare>, threshold: u64) -> Result<(), BuildError> {
        if self.has_shares() {
            return Err(BuildError::SharesAlreadySet);
        }
        check_shares(&shares, threshold)?;
        self.shares = shares;
        self.threshold = threshold;
        Ok(())
    }

    /// The same shares and items with a fresh random salt: what `keystore rewrap` seals under the new
    /// plug-in's KEK (derive it with [`Keystore::derive_kek`] of the copy), so that no KEK is ever
    /// derived twice from one salt by two plug-ins.
    pub fn resalted(&self) -> Result<Self, BuildError> {
        let mut salt = [0u8; SALT_LEN];
        random(&mut salt)?;
        Ok(Self { salt, ..self.clone() })
    }

    /// Whether `other` holds the same shares, threshold and items (the salt aside).
    pub fn same_contents(&self, other: &Self) -> bool {
        self.shares == other.shares && self.threshold == other.threshold && self.items == other.items
    }

    /// The salt the KEK is derived with.
    pub fn salt(&self) -> &[u8; SALT_LEN] {
        &self.salt
    }

    /// Derives this keystore's KEK from the plug-in's IKM.
    pub fn derive_kek(&self, ikm: &Ikm) -> Kek {
        derive_kek(ikm, &self.salt, KEYSTORE_KEK_INFO.as_bytes())
    }

    /// The unseal shares, in order.
    pub fn shares(&self) -> &[UnsealShare] {
        &self.shares
    }

    /// How many shares unseal OpenBao.
    pub fn threshold(&self) -> u64 {
        self.threshold
    }

    /// A named secret item.
    pub fn item(&self, purpose: &str) -> Option<&SecretBytes> {
        self.items.get(purpose)
    }

    /// Names of the secret items (not the shares).
    pub fn item_names(&self) -> impl Iterator<Item = &str> {
        self.items.keys().map(String::as_str)
    }

    /// Adds or replaces a named secret item. The unseal shares cannot be changed this way.
    pub fn set_item(&mut self, purpose: &str, value: SecretBytes) -> Result<(), BuildError> {
        if !valid_purpose(purpose) || purpose == PURPOSE_UNSEAL_SHARE || purpose == PURPOSE_KEY_CHECK {
            return Err(BuildError::Purpose(purpose.to_string()));
        }
        let too_many = !self.items.contains_key(purpose) && self.items.len() + self.shares.len() >= MAX_ITEMS;
        if value.expose().len() > MAX_ITEM_LEN || too_many {
            return Err(BuildError::ItemSize { purpose: purpose.to_string() });
        }
        self.items.insert(purpose.to_string(), value);
        Ok(())
    }

    /// Removes a named secret item, returning whether it existed.
    pub fn remove_item(&mut self, purpose: &str) -> bool {
        self.items.remove(purpose).is_some()
    }

    /// Encrypts everything under `kek` with fresh nonces.
    pub fn seal(&self, kek: &Kek) -> Result<KeystoreFile, BuildError> {
        let cipher = Aes256Gcm::new(kek.expose().into());
        let (nonce, ciphertext) = encrypt(&cipher, PURPOSE_KEY_CHECK, 0, KEY_CHECK_PLAINTEXT)?;
        let key_check = Sealed { nonce, ciphertext };
        let mut items = Vec::with_capacity(self.shares.len() + self.items.len());
        for (index, share) in (0u32..).zip(&self.shares) {
            let (nonce, ciphertext) = encrypt(&cipher, PURPOSE_UNSEAL_SHARE, index, share.expose())?;
            items.push(Item { purpose: PURPOSE_UNSEAL_SHARE.into(), index, nonce, ciphertext });
        }
        for (purpose, value) in &self.items {
            let (nonce, ciphertext) = encrypt(&cipher, purpose, 0, value.expose())?;
            items.push(Item { purpose: purpose.clone(), index: 0, nonce, ciphertext });
        }
        Ok(KeystoreFile {
            format: FORMAT_NAME.into(),
            version: VERSION,
            aead: AEAD.into(),
            kdf: KdfParams {
                algorithm: KDF_ALGORITHM.into(),
                salt: encode_b64(&self.salt),
                info: KEYSTORE_KEK_INFO.into(),
            },
            secret_shares: self.shares.len() as u64,
            secret_threshold: self.threshold,
            key_check,
            items,
        })
    }
}

/// The salt recorded in a keystore file, needed to derive its KEK before opening it.
pub fn file_salt(file: &KeystoreFile) -> Result<[u8; SALT_LEN], FormatError> {
    let salt = decode_b64("kdf.salt", &file.kdf.salt)?;
    salt.try_into().map_err(|_| FormatError::Invalid(format!("kdf.salt must be {SALT_LEN} bytes")))
}

/// Derives the KEK for a keystore file from the plug-in's IKM, with the file's own salt and info.
pub fn derive_file_kek(file: &KeystoreFile, ikm: &Ikm) -> Result<Kek, FormatError> {
    Ok(derive_kek(ikm, &file_salt(file)?, file.kdf.info.as_bytes()))
}

/// Whether `kek` opens the file's key-check item, without decrypting anything else.
pub fn kek_matches(file: &KeystoreFile, kek: &Kek) -> bool {
    let cipher = Aes256Gcm::new(kek.expose().into());
    decrypt(&cipher, PURPOSE_KEY_CHECK, 0, &file.key_check.nonce, &file.key_check.ciphertext)
        .is_ok_and(|plain| plain.as_slice() == KEY_CHECK_PLAINTEXT)
}

/// Decrypts a keystore file with `kek`.
pub fn open(file: &KeystoreFile, kek: &Kek) -> Result<Keystore, OpenError> {
    if !kek_matches(file, kek) {
        return Err(OpenError::WrongKek);
    }
    let cipher = Aes256Gcm::new(kek.expose().into());
    let mut shares = Vec::new();
    let mut items = BTreeMap::new();
    for item in &file.items {
        let plain = decrypt(&cipher, &item.purpose, item.index, &item.nonce, &item.ciphertext)
            .map_err(|()| OpenError::ItemTampered { purpose: item.purpose.clone(), index: item.index })?;
        if item.purpose == PURPOSE_UNSEAL_SHARE {
            shares.push(UnsealShare::new(std::mem::take(&mut *Zeroizing::new(plain))));
        } else {
            items.insert(item.purpose.clone(), SecretBytes::new(std::mem::take(&mut *Zeroizing::new(plain))));
        }
    }
    if !shares.is_empty() {
        // Authenticated, but still what `Keystore::new` would accept: non-empty, distinct shares.
        check_shares(&shares, file.secret_threshold)
            .map_err(|e| OpenError::Format(FormatError::Invalid(format!("unseal shares: {e}"))))?;
    }
    Ok(Keystore { salt: file_salt(file)?, shares, threshold: file.secret_threshold, items })
}

fn check_shares(shares: &[UnsealShare], threshold: u64) -> Result<(), BuildError> {
    if shares.is_empty() || shares.len() as u64 > MAX_SHARES || threshold == 0 || threshold > shares.len() as u64 {
        return Err(BuildError::Shares { shares: shares.len(), threshold });
    }
    for (index, share) in shares.iter().enumerate() {
        let len = share.expose().len();
        if len == 0 || len > MAX_SHARE_LEN {
            return Err(BuildError::ShareLength { index, len });
        }
        if let Some(first) = shares[..index].iter().position(|s| s == share) {
            return Err(BuildError::DuplicateShare(first, index));
        }
    }
    Ok(())
}

fn random(buf: &mut [u8]) -> Result<(), BuildError> {
    getrandom::getrandom(buf).map_err(|e| BuildError::Random(e.to_string()))
}

fn encrypt(cipher: &Aes256Gcm, purpose: &str, index: u32, plain: &[u8]) -> Result<(String, String), BuildError> {
    let mut nonce = [0u8; NONCE_LEN];
    random(&mut nonce)?;
    let aad = associated_data(purpose, index);
    let ciphertext = cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plain, aad: &aad })
        .map_err(|_| BuildError::ItemSize { purpose: purpose.to_string() })?;
    Ok((encode_b64(&nonce), encode_b64(&ciphertext)))
}

fn decrypt(cipher: &Aes256Gcm, purpose: &str, index: u32, nonce: &str, ciphertext: &str) -> Result<Vec<u8>, ()> {
    let nonce = decode_b64("nonce", nonce).map_err(|_| ())?;
    let ciphertext = decode_b64("ciphertext", ciphertext).map_err(|_| ())?;
    if nonce.len() != NONCE_LEN {
        return Err(());
    }
    let aad = associated_data(purpose, index);
    cipher.decrypt(Nonce::from_slice(&nonce), Payload { msg: &ciphertext, aad: &aad }).map_err(|_| ())
}

#[cfg(test)]
mod tests;
