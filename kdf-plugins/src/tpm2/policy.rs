//! The optional PCR policy (pure): which PCRs (`--pcrs sha256:7,8`), the values they must hold
//! (`--pcr-values HEX,HEX`), and the digests the TPM checks them against.
//!
//! With a policy, the primary key's template carries `authPolicy` = the TPM2_PolicyPCR digest over the
//! *expected* values and has `userWithAuth` clear, so the key can be used only through a policy session
//! in which TPM2_PolicyPCR succeeded, i.e. only while the PCRs hold those values. The values are given,
//! never read at derivation time: a policy built from whatever the PCRs hold now would just give
//! another key (a wrong KEK with an unclear error) after a change, instead of a refusal that names the
//! PCR. `edgeseal-kdf-tpm2 provision --pcrs …` reads the current values once and prints the arguments.
//!
//! Only the sha256 bank, at most [`MAX_PCRS`] PCRs of 0–23 (one TPM2_PCR_Read answers up to 8).

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};
use thiserror::Error;

/// TPM_ALG_SHA256.
pub const ALG_SHA256: u16 = 0x000B;
/// TPM_CC_PolicyPCR, part of the policy digest.
const CC_POLICY_PCR: u32 = 0x0000_017F;
/// The most PCRs a policy may name.
pub const MAX_PCRS: usize = 8;
/// PCRs 0–23: three bytes of selection bits (PCR_SELECT_MIN).
const SELECT_BYTES: u8 = 3;
/// A SHA-256 PCR value or digest.
pub type Digest32 = [u8; 32];

/// A bad `--pcrs` or `--pcr-values`.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PolicyError {
    /// Not `sha256:N[,N…]`.
    #[error(
        "--pcrs {0:?} is not a PCR selection (expected sha256:N[,N…] with PCRs 0 to 23, at most 8, e.g. sha256:7)"
    )]
    Selection(String),
    /// Another bank than sha256.
    #[error("--pcrs {0:?}: only the sha256 PCR bank is supported (e.g. sha256:7)")]
    Bank(String),
    /// Not one 64-hex-digit value per selected PCR.
    #[error("--pcr-values must be one SHA-256 value (64 hex digits) per PCR of --pcrs {selection}, in that order, separated by commas; got {got}")]
    Values {
        /// The selection.
        selection: PcrSelection,
        /// What was wrong.
        got: String,
    },
}

/// PCRs of the sha256 bank, ascending, without repeats; 1 to [`MAX_PCRS`] of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PcrSelection {
    /// Bit n set: PCR n.
    mask: u32,
}

impl PcrSelection {
    /// The selected PCR indices, ascending.
    pub fn indices(self) -> impl Iterator<Item = u8> {
        (0u8..24).filter(move |i| self.mask & (1 << i) != 0)
    }

    /// How many PCRs are selected.
    pub fn len(self) -> usize {
        self.mask.count_ones() as usize
    }

    /// Never true for a parsed selection; here for clippy's `len_without_is_empty`.
    pub fn is_empty(self) -> bool {
        self.mask == 0
    }

    /// A selection from bits (PCR n = bit n), if it has 1 to [`MAX_PCRS`] PCRs of 0–23.
    pub fn from_mask(mask: u32) -> Option<Self> {
        let n = mask.count_ones() as usize;
        (mask >> 24 == 0 && (1..=MAX_PCRS).contains(&n)).then_some(Self { mask })
    }

    /// The three selection bytes: bit (n mod 8) of byte n/8.
    fn select_bytes(self) -> [u8; 3] {
        let b = self.mask.to_le_bytes();
        [b[0], b[1], b[2]]
    }

    /// TPML_PCR_SELECTION: `count u32 = 1 | hash u16 | sizeofSelect u8 = 3 | pcrSelect[3]`.
    pub fn marshal(self) -> [u8; 10] {
        let mut out = [0u8; 10];
        out[..4].copy_from_slice(&1u32.to_be_bytes());
        out[4..6].copy_from_slice(&ALG_SHA256.to_be_bytes());
        out[6] = SELECT_BYTES;
        out[7..].copy_from_slice(&self.select_bytes());
        out
    }
}

impl FromStr for PcrSelection {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || PolicyError::Selection(s.to_owned());
        let (bank, list) = s.split_once(':').ok_or_else(bad)?;
        if bank != "sha256" {
            return Err(if bank.is_empty() || list.is_empty() { bad() } else { PolicyError::Bank(s.to_owned()) });
        }
        let mut mask = 0u32;
        for item in list.split(',') {
            let index: u8 = item.parse().map_err(|_| bad())?;
            if index > 23 || item.len() > 2 || mask & (1 << index) != 0 {
                return Err(bad());
            }
            mask |= 1 << index;
        }
        Self::from_mask(mask).ok_or_else(bad)
    }
}

impl fmt::Display for PcrSelection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list: Vec<String> = self.indices().map(|i| i.to_string()).collect();
        write!(f, "sha256:{}", list.join(","))
    }
}

/// The PCRs and the values they must hold for the key to be usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrPolicy {
    selection: PcrSelection,
    /// The expected values, one per selected PCR, in ascending PCR order.
    expected: Vec<Digest32>,
}

impl PcrPolicy {
    /// A policy from a selection and its values (ascending PCR order); `None` if the counts differ.
    pub fn new(selection: PcrSelection, values: &[Digest32]) -> Option<Self> {
        if values.len() != selection.len() {
            return None;
        }
        Some(Self { selection, expected: values.to_vec() })
    }

    /// Parses `--pcr-values`: comma-separated hex, one per selected PCR.
    pub fn parse_values(selection: PcrSelection, text: &str) -> Result<Self, PolicyError> {
        let bad = |got: String| PolicyError::Values { selection, got };
        let mut values = Vec::with_capacity(selection.len());
        for (n, item) in text.split(',').enumerate() {
            let mut value = [0u8; 32];
            hex::decode_to_slice(item.trim(), &mut value)
                .map_err(|_| bad(format!("value {} is not 64 hex digits", n + 1)))?;
            values.push(value);
        }
        Self::new(selection, &values).ok_or_else(|| bad(format!("{} values", values.len())))
    }

    /// The PCRs.
    pub fn selection(&self) -> PcrSelection {
        self.selection
    }

    /// The expected values, ascending PCR order.
    pub fn expected(&self) -> &[Digest32] {
        &self.expected
    }

    /// `--pcr-values` for these values.
    pub fn values_arg(&self) -> String {
        self.expected().iter().map(hex::encode).collect::<Vec<_>>().join(",")
    }

    /// PolicyPCR's `pcrDigest`: SHA-256 over the expected values, concatenated in selection order.
    pub fn pcr_digest(&self) -> Digest32 {
        let mut h = Sha256::new();
        for value in self.expected() {
            h.update(value);
        }
        h.finalize().into()
    }

    /// The key's `authPolicy`: the digest a fresh policy session holds after a successful
    /// TPM2_PolicyPCR, SHA-256(0³² ‖ TPM_CC_PolicyPCR ‖ TPML_PCR_SELECTION ‖ pcrDigest) (Part 3 §23.7).
    pub fn auth_policy(&self) -> Digest32 {
        let mut h = Sha256::new();
        h.update([0u8; 32]);
        h.update(CC_POLICY_PCR.to_be_bytes());
        h.update(self.selection.marshal());
        h.update(self.pcr_digest());
        h.finalize().into()
    }

    /// The PCRs whose `current` value (ascending order, as TPM2_PCR_Read gives them) differs from the
    /// expected one: `(index, current, expected)`.
    pub fn changed(&self, current: &[Digest32]) -> Vec<(u8, Digest32, Digest32)> {
        self.selection
            .indices()
            .zip(self.expected())
            .zip(current)
            .filter(|((_, want), got)| want != got)
            .map(|((index, want), got)| (index, *got, *want))
            .collect()
    }
}

impl fmt::Display for PcrPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.selection)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selections_parse_strictly_and_marshal_as_tpml_pcr_selection() {
        let cases: &[(&str, &str, &str)] = &[
            ("sha256:7", "sha256:7", "00000001000b03800000"),
            ("sha256:0", "sha256:0", "00000001000b03010000"),
            ("sha256:8,7", "sha256:7,8", "00000001000b03800100"),
            ("sha256:23,0,16", "sha256:0,16,23", "00000001000b03010081"),
        ];
        for (text, shown, marshalled) in cases {
            let selection: PcrSelection = text.parse().unwrap();
            assert_eq!(selection.to_string(), *shown);
            assert_eq!(hex::encode(selection.marshal()), *marshalled, "{text}");
        }
        for bad in [
            "",
            "7",
            "sha256:",
            "sha256:24",
            "sha256:7,7",
            "sha256:-1",
            "sha256:007",
            "sha256:0,1,2,3,4,5,6,7,8",
            "sha256:7,",
        ] {
            assert_eq!(bad.parse::<PcrSelection>(), Err(PolicyError::Selection(bad.to_owned())), "{bad}");
        }
        assert_eq!("sha1:7".parse::<PcrSelection>(), Err(PolicyError::Bank("sha1:7".to_owned())));
    }

    #[test]
    fn the_policy_digest_is_policypcr_over_the_expected_values() {
        // PCR 7 all zero (a fresh TPM): pcrDigest = sha256(00 × 32).
        let selection: PcrSelection = "sha256:7".parse().unwrap();
        let policy = PcrPolicy::new(selection, &[[0u8; 32]]).unwrap();
        assert_eq!(
            hex::encode(policy.pcr_digest()),
            "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
        );
        // What swtpm's trial session gives: `tpm2_startauthsession -S s.ctx; tpm2_policypcr -S s.ctx -l sha256:7`
        // with PCR 7 at zero.
        assert_eq!(
            hex::encode(policy.auth_policy()),
            "8b5682d81b29435d08d79278150611dc7e5923b2fefcce684a09577b40130a8b"
        );
    }

    #[test]
    fn values_are_one_per_pcr_and_mismatches_are_named() {
        let selection: PcrSelection = "sha256:7,8".parse().unwrap();
        let (a, b) = ("aa".repeat(32), "bb".repeat(32));
        let policy = PcrPolicy::parse_values(selection, &format!("{a},{b}")).unwrap();
        assert_eq!(policy.values_arg(), format!("{a},{b}"));
        for bad in [a.clone(), format!("{a},{b},{a}"), format!("{a},xyz"), String::new()] {
            let err = PcrPolicy::parse_values(selection, &bad).unwrap_err().to_string();
            assert!(err.contains("one SHA-256 value (64 hex digits) per PCR of --pcrs sha256:7,8"), "{err}");
        }
        let current = [[0xaa; 32], [0xcc; 32]];
        assert_eq!(policy.changed(&current), vec![(8, [0xcc; 32], [0xbb; 32])]);
        assert!(policy.changed(&[[0xaa; 32], [0xbb; 32]]).is_empty());
    }
}
