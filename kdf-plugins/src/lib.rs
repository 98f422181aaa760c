//! Key derivation for edgeseal: KDF plug-in executables and the key-encryption key (KEK).
//!
//! A KDF plug-in is an executable that prints initial keying material (IKM) bound to the device
//! (SPEC §4). This crate runs one safely — trust checks on the file and its directories, a cleared
//! environment, `/` as working directory, stdin from `/dev/null`, a hard timeout, stdout validated and
//! stderr quoted in errors — and turns its IKM into a 32-byte KEK with HKDF-SHA256.
//!
//! Layout:
//! - [`config`]: the `kdf:` section of `edgeseal.yaml` ([`KdfConfig`]).
//! - [`trust`]: who may own and write a plug-in and the directories above it.
//! - `child`: the one bounded child runner behind plug-ins and tpm2-tools (cleared environment, fixed
//!   cwd, own process group killed at the deadline, stdout in a pre-sized wiped buffer).
//! - [`run`]: running a plug-in under the `ikm-v1` or EdgeX protocol.
//! - [`output`]: validating what a plug-in printed (pure).
//! - [`plugin_main`]: what the plug-in binaries' `main` functions share.
//! - [`kek`]: HKDF-SHA256 and the KEK fingerprint.
//! - [`secret`]: [`Ikm`] and [`Kek`], which wipe themselves and never print their bytes.
//! - [`hwfp`]: the hardware-fingerprint sources behind the `edgeseal-kdf-hwfp` plug-in.
//! - [`tpm2`]: the TPM 2.0 HMAC (via tpm2-tools) behind the `edgeseal-kdf-tpm2` plug-in.
//!
//! Binaries: `edgeseal-kdf-hwfp` (the default plug-in), `edgeseal-kdf-tpm2` (IKM from an HMAC computed
//! inside a TPM 2.0) and `edgeseal-kdf-test` (a plug-in for tests that misbehaves on request).

#![forbid(unsafe_code)]

mod child;
pub mod config;
pub mod hwfp;
pub mod kek;
pub mod output;
pub mod plugin_main;
pub mod run;
pub mod secret;
pub mod tpm2;
pub mod trust;

pub use config::{KdfConfig, Protocol};
pub use kek::{derive_kek, KEYSTORE_KEK_INFO};
pub use run::{run_plugin, PluginError};
pub use secret::{Ikm, Kek};
