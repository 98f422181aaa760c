//! The TPM 2.0 behind the `edgeseal-kdf-tpm2` plug-in (SPEC §4): the IKM is an HMAC-SHA256 computed
//! inside the TPM, with a key that never leaves it, over a fixed, versioned label ([`LABEL`]).
//!
//! Two places for the key ([`KeySource`]):
//! - **primary** (default): `TPM2_CreatePrimary` in the owner hierarchy with a fixed keyedhash template
//!   (HMAC-SHA256, attributes [`KEY_ATTRIBUTES`]). The TPM derives the key from its owner seed and the
//!   template, so every call yields the same key; nothing is stored in the TPM. Another TPM (another seed),
//!   or a TPM whose owner hierarchy was cleared, yields another IKM.
//! - **persistent**: a random HMAC-SHA256 key generated inside the TPM once by [`provision`] and made
//!   persistent at an owner handle (e.g. `0x81000101`). It survives `tpm2_changeauth` but not
//!   `tpm2_clear`; it costs one persistent slot.
//!
//! Both keys are `noda`: a device that loses power three times in a row trips the TPM's
//! dictionary-attack counter on its next boots (no orderly `TPM2_Shutdown`), and a DA-protected key
//! would then be refused for the recovery time (`TPM_RC_LOCKOUT`). Both use an empty authorization.
//!
//! **Why tpm2-tools processes and not the `tss-esapi` crate:** no C bindings to build (no bindgen,
//! libclang or `libtss2-dev` on the build host), a lean dependency tree, and the same tools an operator
//! uses to inspect or repair the TPM (and that RECIPES.md §3 verified), so errors read the same. The cost
//! is a few process starts per derivation (measured in the integration tests, tens of milliseconds).
//!
//! How the tools are run (`tool`): found in `PATH` up front; a cleared environment (`PATH` and
//! `TPM2TOOLS_TCTI` only); a per-step time limit inside the whole `--timeout`; a private 0700 working
//! directory for context files, removed afterwards. The IKM is read from `tpm2_hmac --hex` through a
//! pipe into a buffer that is wiped: it never touches the disk. The label goes in on stdin.
//!
//! Transient objects are flushed (`tpm2_flushcontext -t`) after each step that leaves one and, always,
//! when the `session` ends — on success and on every error — because the `swtpm:` and `mssim:` TCTIs
//! and `/dev/tpm0` have no resource manager and the TPM keeps every object a tool loaded. If the TPM
//! is nonetheless out of object memory (`0x902`, objects some other client left), the plug-in flushes
//! all transient objects and sessions, retries once, and says so on stderr. "Busy" answers (`0x922`
//! retry, `0x90a` testing, …) are retried with back-off until the deadline.
//!
//! Layout:
//! - [`params`]: the TCTI, persistent handles, timeouts (pure).
//! - [`cli`]: the plug-in's command line (pure).
//! - [`error`]: [`Tpm2Error`], one line per failure saying what to do.
//! - `rc`: the TPM response codes the plug-in acts on (pure).
//! - [`diagnose`]: reading a failed tool's stderr into a cause (pure).
//! - `explain`: the cause, for the step that hit it, as a [`Tpm2Error`] (pure).
//! - [`public`]: reading `tpm2_readpublic` output (pure).
//! - `tool`: locating tpm2-tools and running one through the crate's bounded child runner; the
//!   private working directory.
//! - `session`: a conversation with the TPM, its deadline, and the always-run flush.
//! - this module: the derivation and provisioning steps.

pub mod cli;
pub mod diagnose;
pub mod error;
mod explain;
pub mod params;
pub mod public;
mod rc;
mod session;
mod tool;

use std::ffi::{OsStr, OsString};
use std::thread;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::secret::Ikm;

pub use error::Tpm2Error;
pub use params::{KeySource, PersistentHandle, Tcti, DEFAULT_TCTI, DEFAULT_TIMEOUT};

use explain::Subject;
use session::Session;
use tool::Tool;

/// The HMAC input. Versioned: changing it changes every device's IKM, hence its KEK.
pub const LABEL: &[u8] = b"edgeseal-kdf-tpm2 ikm v1";

/// The HMAC key's attributes, for the primary template and for provisioned keys. Part of the primary
/// template: changing them changes the primary key, hence the IKM.
pub const KEY_ATTRIBUTES: &str = "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|sign";

/// [`KEY_ATTRIBUTES`] as TPMA_OBJECT bits, as `tpm2_readpublic` shows them.
const KEY_ATTRIBUTES_RAW: u32 = 0x0004_0472;

/// The transient storage parent used while provisioning (noda, so provisioning works during lockout).
const PARENT_ATTRIBUTES: &str = "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|restricted|decrypt";

/// Which TPM to use and how long the plug-in may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The TCTI passed to tpm2-tools in `TPM2TOOLS_TCTI`.
    pub tcti: Tcti,
    /// The deadline for the whole derivation (or provisioning), cleanup included.
    pub timeout: Duration,
    /// Where to look for tpm2-tools; `None` means `/usr/bin:/bin`.
    pub path: Option<OsString>,
}

impl Default for Options {
    fn default() -> Self {
        Self { tcti: Tcti::default(), timeout: DEFAULT_TIMEOUT, path: None }
    }
}

/// A derived IKM, and what the plug-in had to do to get it (for stderr; never secret).
#[derive(Debug)]
pub struct Derivation {
    /// The IKM: 32 bytes of HMAC-SHA256.
    pub ikm: Ikm,
    /// Recoveries worth telling the operator about (e.g. a flush after `0x902`).
    pub notes: Vec<String>,
}

/// What [`provision`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provisioned {
    /// A new key was generated in the TPM and persisted at the handle.
    Created,
    /// The handle already held a key of exactly the provisioned kind; nothing changed.
    AlreadyPresent,
}

/// Computes the IKM: HMAC-SHA256 over [`LABEL`] inside the TPM with the key from `key`.
pub fn derive_ikm(options: &Options, key: KeySource) -> Result<Derivation, Tpm2Error> {
    let mut session = Session::open(options)?;
    let mut notes = Vec::new();
    let ikm = with_recovery(&mut session, &mut notes, |s| derive_once(s, key))?;
    Ok(Derivation { ikm, notes })
}

/// Generates a random HMAC-SHA256 key inside the TPM and persists it at `handle`, then checks that it
/// answers. Never replaces what is already there: a handle holding exactly such a key is reported as
/// [`Provisioned::AlreadyPresent`] (so provisioning is idempotent), anything else is
/// [`Tpm2Error::HandleTaken`]. Evicting a key that a keystore depends on would lose that keystore, so
/// there is deliberately no `--force`: an operator who means it runs `tpm2_evictcontrol` by hand.
pub fn provision(options: &Options, handle: PersistentHandle) -> Result<(Provisioned, Vec<String>), Tpm2Error> {
    let mut session = Session::open(options)?;
    let mut notes = Vec::new();
    let outcome = with_recovery(&mut session, &mut notes, |s| provision_once(s, handle))?;
    // Prove the key works; the HMAC is wiped at once.
    drop(with_recovery(&mut session, &mut notes, |s| derive_once(s, KeySource::Persistent(handle)))?);
    Ok((outcome, notes))
}

/// Retries `attempt` once after flushing if the TPM is out of object memory, and with back-off while it
/// is busy and time remains.
fn with_recovery<T>(
    session: &mut Session,
    notes: &mut Vec<String>,
    mut attempt: impl FnMut(&mut Session) -> Result<T, Tpm2Error>,
) -> Result<T, Tpm2Error> {
    let mut flushed = false;
    let mut pause = Duration::from_millis(50);
    loop {
        match attempt(session) {
            Err(Tpm2Error::OutOfMemory { code }) if !flushed => {
                session.flush(true)?;
                flushed = true;
                let tcti = session.tcti();
                let cause = if tcti.is_raw() {
                    format!("most likely left loaded by another client (TCTI {tcti} has no resource manager)")
                } else {
                    format!("through TCTI {tcti}")
                };
                notes.push(format!(
                    "the TPM was out of memory for objects or sessions ({code}), {cause}: flushed all transient \
                     objects and sessions and retried"
                ));
            }
            Err(Tpm2Error::Busy { .. }) if session.time_left() > pause * 2 => {
                thread::sleep(pause);
                pause *= 2;
            }
            other => return other,
        }
    }
}

/// Tool arguments from a mix of `&str` and paths.
macro_rules! args {
    ($($arg:expr),* $(,)?) => { [$(AsRef::<OsStr>::as_ref(&$arg)),*] };
}

/// One derivation: (create the primary, flush its slot,) HMAC the label, read the hex answer.
fn derive_once(s: &mut Session, key: KeySource) -> Result<Ikm, Tpm2Error> {
    let output = match key {
        KeySource::Primary => {
            let ctx = s.file("primary.ctx");
            let create = args!["-Q", "-C", "o", "-G", "hmac", "-g", "sha256", "-a", KEY_ATTRIBUTES, "-c", ctx];
            s.step(Tool::CreatePrimary, Subject::Owner, &create, None)?;
            // createprimary leaves the key loaded; its saved context stays usable after the flush.
            s.flush(false)?;
            s.step(Tool::Hmac, Subject::Key(key), &args!["-c", ctx, "-g", "sha256", "--hex"], Some(LABEL))?
        }
        KeySource::Persistent(handle) => {
            let public = read_public(s, handle)?;
            if !public.is_hmac_sha256_key() {
                return Err(Tpm2Error::NotHmacKey { handle, found: public.describe() });
            }
            let handle = handle.to_string();
            s.step(Tool::Hmac, Subject::Key(key), &args!["-c", handle, "-g", "sha256", "--hex"], Some(LABEL))?
        }
    };
    parse_hmac_hex(output.stdout())
}

/// What is stored at `handle` (`HandleMissing` if nothing).
fn read_public(s: &mut Session, handle: PersistentHandle) -> Result<public::PublicArea, Tpm2Error> {
    let subject = Subject::Key(KeySource::Persistent(handle));
    let output = s.step(Tool::ReadPublic, subject, &args!["-c", handle.to_string()], None)?;
    let text = String::from_utf8_lossy(output.stdout());
    public::parse_readpublic(&text)
        .ok_or(Tpm2Error::BadAnswer { tool: Tool::ReadPublic.name(), what: "no object type or attributes" })
}

/// One provisioning attempt, after checking the handle is free (recipe B of RECIPES.md §3, flushing
/// after each step so no more than one object is loaded at a time).
fn provision_once(s: &mut Session, handle: PersistentHandle) -> Result<Provisioned, Tpm2Error> {
    match read_public(s, handle) {
        Ok(public) if public.is_hmac_sha256_key() && public.attributes == KEY_ATTRIBUTES_RAW => {
            return Ok(Provisioned::AlreadyPresent)
        }
        Ok(public) => return Err(Tpm2Error::HandleTaken { handle, found: public.describe() }),
        Err(Tpm2Error::HandleMissing { .. }) => {}
        Err(e) => return Err(e),
    }
    let (parent, public, private, key) =
        (s.file("parent.ctx"), s.file("key.pub"), s.file("key.priv"), s.file("key.ctx"));

    let create_parent = args!["-Q", "-C", "o", "-G", "ecc256", "-g", "sha256", "-a", PARENT_ATTRIBUTES, "-c", parent];
    s.step(Tool::CreatePrimary, Subject::Owner, &create_parent, None)?;
    s.flush(false)?;
    let create_key =
        args!["-Q", "-C", parent, "-G", "hmac", "-g", "sha256", "-a", KEY_ATTRIBUTES, "-u", public, "-r", private];
    s.step(Tool::Create, Subject::Parent, &create_key, None)?;
    s.flush(false)?;
    let load = args!["-Q", "-C", parent, "-u", public, "-r", private, "-c", key];
    s.step(Tool::Load, Subject::Parent, &load, None)?;
    s.flush(false)?;
    let handle_arg = handle.to_string();
    let persist = args!["-Q", "-C", "o", "-c", key, handle_arg];
    s.step(Tool::EvictControl, Subject::Persist(handle), &persist, None)?;
    s.flush(false)?;
    Ok(Provisioned::Created)
}

/// Reads what `tpm2_hmac --hex` prints: the 32-byte HMAC as 64 hex digits (no newline; surrounding
/// whitespace is tolerated). Anything else is [`Tpm2Error::BadAnswer`], which never quotes the output.
pub fn parse_hmac_hex(stdout: &[u8]) -> Result<Ikm, Tpm2Error> {
    let bad = || Tpm2Error::BadAnswer { tool: Tool::Hmac.name(), what: "not 64 hex digits" };
    let digits = stdout.trim_ascii();
    if digits.len() != 64 {
        return Err(bad());
    }
    let mut bytes = Zeroizing::new(vec![0u8; 32]);
    hex::decode_to_slice(digits, &mut bytes).map_err(|_| bad())?;
    Ok(Ikm::from_zeroizing(bytes))
}

#[cfg(test)]
mod tests;
