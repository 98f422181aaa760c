//! edgeseal's fleet (SPEC §14): secrets delivered end-to-end encrypted to many nodes through a
//! central OpenBao that never sees a plaintext K or V.
//!
//! The admin holds an org key file ([`org`]): K (32 random bytes) and an org Ed25519 signing key.
//! Each enrolled node receives K age-encrypted to its recipient; each secret is stored once per node
//! as AES-256-GCM(V, K), signed by the org key ([`record`]). Nodes log in with their TLS client
//! certificate and may read only their own subtree and write only their own status ([`layout`]).
//!
//! Layout:
//! - [`org`]: the org key file (K, the signing key, the generation; a rotation's next K).
//! - [`layout`]: the central paths, name rules and each node's policy.
//! - [`record`]: the signed records, pure: seal, verify, open (table-tested).
//! - [`admin`]: the admin operations against the central store (`security-bootstrap fleet …`).
//! - [`node`]: the node's side: fetch, verify, decrypt, decide what to install or remove; its status.
//! - [`cache`]: the fetched ciphertext records on disk, for a boot without the network.
//! - [`config`]: the node's `fleet:` section of edgeseal.yaml.
//! - [`sync`]: one sync of a node against its local store (what `run` does at boot and every interval).

#![forbid(unsafe_code)]

pub mod admin;
pub mod cache;
pub mod config;
pub mod layout;
pub mod node;
pub mod org;
pub mod record;
pub mod sync;

pub use layout::{Layout, SecretRef};
pub use org::{FleetKey, OrgKey};
pub use record::{SecretValue, VerifyError};

/// Now, in unix seconds.
pub fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
