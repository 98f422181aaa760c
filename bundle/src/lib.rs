//! edgeseal's node keys and bundles (SPEC §13).
//!
//! - [`keys`]: a node's age identity and Ed25519 signing key ([`NodeKeys`]), the public halves others
//!   use ([`Recipient`], [`SignerKey`]), and operators' age identity files ([`Identities`]).
//! - [`envelope`]: sealing a JSON payload into a signed, age-encrypted, armored bundle, and opening
//!   one with a stated [`Trust`].
//! - [`canonical`]: canonical JSON, what signatures and the keystore checksum are computed over.

#![forbid(unsafe_code)]

pub mod canonical;
pub mod envelope;
pub mod keys;

pub use envelope::{open, seal, to_armored, BundleError, Opened, Sender, Trust};
pub use keys::{Identities, KeyError, NodeKeys, NodePublic, Recipient, SignerKey};

/// Bundle kinds edgeseal makes.
pub mod kind {
    /// A set of secrets (`secrets export`, `secrets seal`).
    pub const SECRETS: &str = "secrets";
    /// A device backup (`backup`).
    pub const BACKUP: &str = "backup";
}
