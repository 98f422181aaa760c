//! secretstore-setup: initializes, unseals and configures OpenBao, and owns the encrypted keystore.
//!
//! Layout:
//! - [`keystore`]: `keystore.json` — unseal shares and other long-lived secrets, AES-256-GCM under the
//!   KEK from a KDF plug-in; atomic, durable, never overwritten by a different keystore (SPEC §5).
//! - [`cluster`]: raft clusters of gateways: `secret_store.cluster`, membership, join bundles.
//! - [`backup`]: what a backup carries (snapshot, seal key or shares, travelling keystore items).
//! - [`edgex_import`]: converting an EdgeX `resp-init.json` (plain or `EDGEX_IKM_HOOK`-encrypted).
//! - [`identity`]: the node identity (age recipient, signing key, TLS client key), keystore items.
//! - [`seed`]: EdgeX seed files (`services.<svc>.seed_file`): the SecretsFile JSON checked into typed
//!   seeds, and its scrubbed form; imported at setup by [`setup::seed_files`].
//! - [`secret`]: [`UnsealShare`] and [`SecretBytes`], which wipe themselves and never print.
//! - [`config`]: the `keystore:` section of `edgeseal.yaml`.
//! - [`seal`]: the static seal of a supervised OpenBao: seal key and client identity in the keystore,
//!   self-initialization, the boot that converges from any crash.
//! - [`rekey`]: new unseal shares for a Shamir store (OpenBao's verified rekey), crash-safe through a
//!   pending generation in the keystore that every unseal path can fall back to.
//! - [`setup`]: initialize, unseal and configure OpenBao, converging on every run (SPEC §6, §8).
//! - [`supervise`]: run a local OpenBao as a child, restarted when it dies, with a private Unix
//!   listener for setup and a TCP listener locked until the first boot stored the shares.
//! - [`watchdog`]: re-unseal an OpenBao that comes back sealed.
//! - [`rewrap`]: `keystore rewrap`, moving the keystore to another KDF plug-in's KEK.
//! - [`crash`]: named crash points for the crash-safety tests (cargo feature `crash-points`, off by
//!   default: without it a crash point is nothing).
//! - [`server_config`]: the OpenBao `config.hcl` edgeseal writes for an OpenBao it starts.

#![forbid(unsafe_code)]

pub mod backup;
pub mod cluster;
pub mod config;
pub mod crash;
pub mod edgex_import;
pub mod identity;
pub mod keystore;
pub mod rekey;
pub mod rewrap;
pub mod seal;
pub mod secret;
pub mod seed;
pub mod server_config;
pub mod setup;
pub mod supervise;
pub mod watchdog;

pub use config::KeystoreConfig;
pub use keystore::{Keystore, KeystoreDir, KeystoreError, KeystoreFile};
pub use secret::{SecretBytes, UnsealShare};
