//! The device PKI of edgeseal: a root CA, an intermediate CA and one leaf certificate per configured
//! name, generated with rcgen (ECDSA P-256 by default, P-384 selectable) and kept converged on every boot.
//!
//! [`run`] reads `pki.dir`, decides what must be (re)issued, issues it in memory, and only then writes,
//! atomically. A rerun with the same configuration writes nothing (same bytes, same mtimes). [`check`]
//! reads only and reports each certificate's subject, SANs, expiry and chain status, and what a run would do.
//!
//! ```text
//! pki.dir/                0755  (created so; an existing one must belong to pki-init, not group/other-writable)
//!   ca/                   0755
//!     ca.pem              0644  root CA certificate: what clients trust
//!     intermediate.pem    0644  intermediate CA certificate
//!   <name>/               0700  owner: pki.certs.<name>.owner, if set
//!     cert.pem            0644  leaf certificate followed by the intermediate
//!     key.pem             0600  leaf private key, PKCS#8
//! ```
//!
//! CA private keys are never written to disk in plaintext. With `ca_keys: destroy` they are wiped when
//! the run ends, so anything issued later (a new name, changed SANs, a renewal) comes with a new CA and
//! every leaf reissued — EdgeX's behaviour. With `ca_keys: keystore` each CA's key and certificate are
//! handed to a [`CaKeyStore`] (the KEK-encrypted keystore): later runs renew and add leaves under the
//! same CA, and restore `ca/*.pem` from there when `pki.dir` is a tmpfs that a reboot emptied.
//!
//! Layout, in dependency order (each module imports only those above it; no cycles):
//! - [`layout`]: where each file lives under `pki.dir` (for pki-init and its users).
//! - `secret`, `action`, [`config`]: key types that wipe themselves, the [`Action`] decided per
//!   certificate, the `pki:` section ([`PkiConfig`]).
//! - [`pem`], `x509`, [`keystore`]: strict PEM, certificate facts, the [`CaKeyStore`] interface and
//!   [`MemoryKeyStore`].
//! - `error`: [`PkiError`].
//! - [`covers`]: which leaves a TLS client would accept for a host (pure).
//! - `scan`: reading and checking the directory; anything foreign or corrupted is an error.
//! - `plan`: deciding, as a pure function, what to issue and why.
//! - `ca_keys`: loading the CAs from the keystore and saving new ones.
//! - `issue`: building certificates with rcgen, in memory.
//! - `write`: atomic, durable writes with exact modes and owners, batched: one sync per phase, not
//!   one fsync per file; [`crash`]: the named points between those phases (tests only).
//! - [`report`]: the [`Report`] both entry points return, and how it is built.

#![forbid(unsafe_code)]

mod action;
mod ca_keys;
pub mod config;
pub mod covers;
pub mod crash;
mod error;
mod issue;
pub mod keystore;
pub mod layout;
pub mod pem;
mod plan;
pub mod report;
mod scan;
pub mod secret;
mod write;
mod x509;

use time::{OffsetDateTime, UtcOffset};

pub use config::{CaKeys, CertConfig, CertName, KeyAlgorithm, Owner, PkiConfig, PkiConfigError, San, Usage};
pub use covers::{leaves_covering, san_covers};
pub use error::PkiError;
pub use keystore::{CaKeyStore, KeyStoreError, MemoryKeyStore, INTERMEDIATE_CA_ITEM, ROOT_CA_ITEM};
pub use report::{Action, CertKind, CertReport, CertSummary, ChainStatus, Report, INTERMEDIATE_NAME, ROOT_NAME};
pub use secret::SecretPem;

use ca_keys::Loaded;
use issue::Issued;
use plan::KeyAccess;

/// Brings `config.dir` in line with `config` at time `now`: creates, renews and reissues what is needed
/// and removes leaves no longer configured. The whole configuration and everything on disk are checked
/// before anything is written; certificates are issued in memory, new CA keys are saved to `keys`
/// (`ca_keys: keystore`, where `keys` is required), and then files are replaced atomically.
///
/// `now` is the start of validity of whatever is issued and the instant renewal is judged at (tests pass
/// a fake clock; production passes `OffsetDateTime::now_utc()`). With `ca_keys: destroy`, `keys` is
/// not used. With `ca_keys: keystore`, CA certificates missing from `pki.dir` (a tmpfs after a reboot)
/// are restored from the keystore, byte for byte.
pub fn run(config: &PkiConfig, keys: Option<&mut dyn CaKeyStore>, now: OffsetDateTime) -> Result<Report, PkiError> {
    config.validate()?;
    let now = whole_seconds(now);
    let euid = nix::unistd::geteuid().as_raw();
    check_owners(config, euid)?;
    let mut disk = scan::scan(config, euid)?;
    let (store, loaded) = match config.ca_keys {
        CaKeys::Destroy => (None, Loaded::destroyed()),
        CaKeys::Keystore => {
            let store = keys.ok_or(PkiError::KeystoreMissing)?;
            let loaded = ca_keys::load_cas(store, &mut disk)?;
            (Some(store), loaded)
        }
    };
    let mut plan = plan::plan(config, &disk, &loaded.access, now, euid);
    for (restored, step, item, file) in [
        (loaded.restored_root, &mut plan.root, ROOT_CA_ITEM, "ca/ca.pem"),
        (loaded.restored_intermediate, &mut plan.intermediate, INTERMEDIATE_CA_ITEM, "ca/intermediate.pem"),
    ] {
        if restored && step.action == Action::Unchanged {
            *step =
                plan::Step::new(Action::Restored, format!("{file} was missing; restored from keystore item {item}"));
        }
    }
    if !plan.changes() && disk.temps.is_empty() {
        return Ok(report::build(config, &disk, &plan, None, now, true));
    }
    let fresh = issue::issue_all(config, &disk, &plan, &loaded, now)?;
    if let Some(store) = store {
        ca_keys::save_cas(
            store,
            fresh.root.as_ref().map(Issued::signer),
            fresh.intermediate.as_ref().map(Issued::signer),
        )?;
    }
    write::apply(config, &disk, &plan, &fresh)?;
    let report = report::build(config, &disk, &plan, Some(&fresh), now, true);
    for cert in report.certs.iter().filter(|c| c.action.changes()) {
        tracing::info!(cert = %cert.name, action = ?cert.action, reason = %cert.reason, "pki-init");
    }
    Ok(report)
}

/// Reads `config.dir` and reports, for each certificate, its subject, SANs, expiry and chain status at
/// `now`, and what [`run`] would do. Changes nothing. With `ca_keys: keystore` it assumes the CA keys
/// are in the keystore (it does not open it).
pub fn check(config: &PkiConfig, now: OffsetDateTime) -> Result<Report, PkiError> {
    config.validate()?;
    let now = whole_seconds(now);
    let euid = nix::unistd::geteuid().as_raw();
    let disk = scan::scan(config, euid)?;
    let access = match config.ca_keys {
        CaKeys::Destroy => KeyAccess::destroyed(),
        CaKeys::Keystore => KeyAccess::available(),
    };
    let plan = plan::plan(config, &disk, &access, now, euid);
    Ok(report::build(config, &disk, &plan, None, now, false))
}

/// X.509 times have whole seconds; comparing and issuing at the same precision keeps reruns stable.
fn whole_seconds(now: OffsetDateTime) -> OffsetDateTime {
    let now = now.to_offset(UtcOffset::UTC);
    now.replace_nanosecond(0).unwrap_or(now)
}

/// Only root can give files away; find that out before writing anything.
fn check_owners(config: &PkiConfig, euid: u32) -> Result<(), PkiError> {
    if euid == 0 {
        return Ok(());
    }
    let egid = nix::unistd::getegid().as_raw();
    let groups = nix::unistd::getgroups().unwrap_or_default();
    for (name, cert) in &config.certs {
        if let Some(o) = cert.owner {
            let gid_ok = o.gid == egid || groups.iter().any(|g| g.as_raw() == o.gid);
            if o.uid != euid || !gid_ok {
                return Err(PkiError::Owner { name: name.to_string(), uid: o.uid, gid: o.gid, euid });
            }
        }
    }
    Ok(())
}
