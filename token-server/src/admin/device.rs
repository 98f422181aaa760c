//! What the admin server asks of the device itself: its node keys and backups, which need the
//! keystore (and so the KEK). The server does not hold them: each request runs the KDF plug-in and
//! opens the keystore again, so no private key or seal key stays in its memory between requests.
//! `security-bootstrap` implements [`Device`] with the keystore; these calls block (a plug-in runs):
//! the routes call them off the async workers.

pub use edgeseal_bundle::NodePublic;
use edgeseal_bundle::{NodeKeys, Recipient};

/// The device's keystore, as the admin routes need it.
pub trait Device: Send + Sync + std::fmt::Debug {
    /// The node's keys and public face (made first if the keystore has none). Blocks.
    fn node(&self) -> Result<(NodeKeys, NodePublic), String>;

    /// A backup bundle of the store whose raft `snapshot` is given, encrypted to `recipients` and
    /// signed by the node; and the node's id. Blocks.
    fn backup(&self, snapshot: Vec<u8>, recipients: &[Recipient]) -> Result<(String, String), String>;
}
