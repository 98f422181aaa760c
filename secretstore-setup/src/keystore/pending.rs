//! A pending generation of unseal shares: the new shares of a Shamir rekey, kept KEK-encrypted in the
//! keystore *before* OpenBao switches to them (it switches only when the rekey is verified), and
//! promoted to the current shares once it has.
//!
//! The generation is one named item, [`ITEM_PENDING_SHARES`], so the file format (version 1) does not
//! change: like every item it is AES-256-GCM under the KEK with its purpose bound as associated data.
//! Its plaintext is a small binary encoding ([`PendingShares::encode`], pure and unit-tested):
//!
//! ```text
//! "edgeseal-pending-shares/v1" ‖ threshold:u8 ‖ count:u8 ‖ nonce_len:u8 ‖ nonce ‖ (len:u16be ‖ share)×count
//! ```
//! The nonce is OpenBao's verification nonce of the rekey that made the shares (public, not secret):
//! a rerun of `rekey` uses it to recognise the rekey still waiting for verification.

use zeroize::Zeroizing;

use super::format::MAX_SHARES;
use super::{check_shares, BuildError, Keystore};
use crate::secret::{SecretBytes, UnsealShare};

/// Keystore item holding the pending generation.
pub const ITEM_PENDING_SHARES: &str = "unseal-shares-pending";

const MAGIC: &[u8] = b"edgeseal-pending-shares/v1";

/// New unseal shares that OpenBao may or may not have switched to yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingShares {
    /// The new shares.
    pub shares: Vec<UnsealShare>,
    /// How many of them unseal.
    pub threshold: u64,
    /// OpenBao's verification nonce of the rekey that made them.
    pub nonce: String,
}

impl PendingShares {
    /// Checks the shares as [`Keystore::new`] would.
    pub fn new(shares: Vec<UnsealShare>, threshold: u64, nonce: String) -> Result<Self, BuildError> {
        check_shares(&shares, threshold)?;
        if nonce.len() > 255 {
            return Err(BuildError::Purpose(ITEM_PENDING_SHARES.into()));
        }
        Ok(Self { shares, threshold, nonce })
    }

    /// The item's plaintext (wiped on drop).
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(64 + self.shares.len() * 40));
        out.extend_from_slice(MAGIC);
        // `new` bounds all three to a byte (MAX_SHARES = 255).
        out.push(u8::try_from(self.threshold).unwrap_or(u8::MAX));
        out.push(u8::try_from(self.shares.len()).unwrap_or(u8::MAX));
        out.push(u8::try_from(self.nonce.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(self.nonce.as_bytes());
        for share in &self.shares {
            let share = share.expose();
            out.extend_from_slice(&u16::try_from(share.len()).unwrap_or(u16::MAX).to_be_bytes());
            out.extend_from_slice(share);
        }
        out
    }

    /// Parses an item's plaintext; `None` when it is not exactly what [`PendingShares::encode`] makes.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let rest = bytes.strip_prefix(MAGIC)?;
        let (&[threshold, count, nonce_len], rest) = rest.split_first_chunk::<3>()?;
        let (nonce, mut rest) = rest.split_at_checked(usize::from(nonce_len))?;
        let nonce = std::str::from_utf8(nonce).ok()?.to_string();
        let mut shares = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let (len, tail) = rest.split_first_chunk::<2>()?;
            let (share, tail) = tail.split_at_checked(usize::from(u16::from_be_bytes(*len)))?;
            shares.push(UnsealShare::new(share.to_vec()));
            rest = tail;
        }
        if !rest.is_empty() || u64::from(count) > MAX_SHARES {
            return None;
        }
        Self::new(shares, u64::from(threshold), nonce).ok()
    }
}

impl Keystore {
    /// The pending generation, if the keystore holds one. An item that does not decode is an error:
    /// it was authenticated under the KEK, so only a bug could have written it.
    pub fn pending_shares(&self) -> Result<Option<PendingShares>, BuildError> {
        match self.item(ITEM_PENDING_SHARES) {
            None => Ok(None),
            Some(item) => PendingShares::decode(item.expose())
                .map(Some)
                .ok_or_else(|| BuildError::Purpose(ITEM_PENDING_SHARES.into())),
        }
    }

    /// Records `pending` as the pending generation (replacing an earlier one).
    pub fn set_pending_shares(&mut self, pending: &PendingShares) -> Result<(), BuildError> {
        if pending.shares.iter().any(|s| self.shares.contains(s)) {
            return Err(BuildError::DuplicateShare(0, 0));
        }
        let encoded = pending.encode();
        self.set_item(ITEM_PENDING_SHARES, SecretBytes::new(encoded.to_vec()))
    }

    /// Forgets the pending generation; returns whether there was one.
    pub fn discard_pending_shares(&mut self) -> bool {
        self.remove_item(ITEM_PENDING_SHARES)
    }

    /// Makes the pending generation the current shares and forgets the old ones (only once OpenBao
    /// opens with the new ones). Errors, changing nothing, when there is none.
    pub fn promote_pending_shares(&mut self) -> Result<(), BuildError> {
        let pending = self.pending_shares()?.ok_or_else(|| BuildError::Purpose(ITEM_PENDING_SHARES.into()))?;
        check_shares(&pending.shares, pending.threshold)?;
        self.shares = pending.shares;
        self.threshold = pending.threshold;
        self.remove_item(ITEM_PENDING_SHARES);
        Ok(())
    }

    /// A copy of this keystore with the pending generation as its shares (to try them on OpenBao);
    /// `None` when there is none.
    pub fn as_pending(&self) -> Result<Option<Keystore>, BuildError> {
        if self.pending_shares()?.is_none() {
            return Ok(None);
        }
        let mut copy = self.clone();
        copy.promote_pending_shares()?;
        Ok(Some(copy))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending() -> PendingShares {
        let shares = (10..15u8).map(|i| UnsealShare::new(vec![i; 33])).collect();
        PendingShares::new(shares, 3, "7754356a-fc8d-fe09-7892-1c20dd05c5a6".into()).unwrap()
    }

    #[test]
    fn encoding_round_trips_and_rejects_every_truncation_and_extension() {
        let p = pending();
        let bytes = p.encode();
        assert_eq!(PendingShares::decode(&bytes), Some(p));
        for cut in 0..bytes.len() {
            assert_eq!(PendingShares::decode(&bytes[..cut]), None, "truncated at {cut}");
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert_eq!(PendingShares::decode(&longer), None);
    }

    #[test]
    fn decoding_refuses_what_a_keystore_would_not_hold() {
        // (description, mutation of a valid encoding)
        type Mutation = Box<dyn Fn(&mut Vec<u8>)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("wrong magic", Box::new(|b| b[0] ^= 1)),
            ("threshold 0", Box::new(|b| b[MAGIC.len()] = 0)),
            ("threshold above the count", Box::new(|b| b[MAGIC.len()] = 6)),
            ("count above the shares present", Box::new(|b| b[MAGIC.len() + 1] = 6)),
            ("nonce not UTF-8", Box::new(|b| b[MAGIC.len() + 3] = 0xff)),
        ];
        for (what, mutate) in cases {
            let mut bytes = pending().encode().to_vec();
            mutate(&mut bytes);
            assert_eq!(PendingShares::decode(&bytes), None, "{what}");
        }
        let same = (0..3).map(|_| UnsealShare::new(vec![1; 33])).collect();
        assert!(PendingShares::new(same, 2, String::new()).is_err(), "duplicate shares");
    }

    #[test]
    fn promotion_replaces_the_shares_and_survives_sealing() {
        let old: Vec<UnsealShare> = (1..=3u8).map(|i| UnsealShare::new(vec![i; 33])).collect();
        let mut keystore = Keystore::new(old.clone(), 2).unwrap();
        assert_eq!(keystore.pending_shares().unwrap(), None);
        assert!(keystore.promote_pending_shares().is_err(), "nothing to promote");
        keystore.set_pending_shares(&pending()).unwrap();

        let kek = kdf_plugins::Kek::from_bytes([9; 32]);
        let reopened = super::super::open(&keystore.seal(&kek).unwrap(), &kek).unwrap();
        assert_eq!(reopened.pending_shares().unwrap(), Some(pending()), "the pending generation is kept");
        assert_eq!(reopened.shares(), old.as_slice(), "the current shares are untouched until promotion");
        let tried = reopened.as_pending().unwrap().unwrap();
        assert_eq!((tried.shares(), tried.threshold()), (pending().shares.as_slice(), 3));

        let mut promoted = reopened.clone();
        promoted.promote_pending_shares().unwrap();
        assert_eq!((promoted.shares(), promoted.threshold()), (pending().shares.as_slice(), 3));
        assert_eq!(promoted.pending_shares().unwrap(), None);
        let mut discarded = reopened;
        assert!(discarded.discard_pending_shares());
        assert_eq!((discarded.shares(), discarded.threshold()), (old.as_slice(), 2));
    }

    #[test]
    fn a_pending_generation_reusing_a_current_share_is_refused() {
        let current: Vec<UnsealShare> = (10..13u8).map(|i| UnsealShare::new(vec![i; 33])).collect();
        let mut keystore = Keystore::new(current, 2).unwrap();
        assert!(keystore.set_pending_shares(&pending()).is_err());
    }
}
