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
//! - **PCR-bound primary** (`--pcrs sha256:7 --pcr-values …`): the primary key's template also
//!   carries a TPM2_PolicyPCR policy over the expected PCR values and clears `userWithAuth`, so the TPM
//!   computes the HMAC only in a policy session in which the PCRs matched ([`policy`]). Another key,
//!   hence another IKM: moving to it is a `keystore rewrap`.
//!
//! All keys are `noda`: a device that loses power three times in a row trips the TPM's
//! dictionary-attack counter on its next boots (no orderly `TPM2_Shutdown`), and a DA-protected key
//! would then be refused for the recovery time (`TPM_RC_LOCKOUT`). All use an empty authorization.
//!
//! **In-process, through a small pure-Rust marshaller, not tpm2-tools or the `tss-esapi` crate.** A
//! derivation is three commands (CreatePrimary, HMAC, FlushContext; two for a persistent key), each a
//! fixed layout marshalled in [`commands`] and framed in [`wire`], with every response length checked and
//! the parsers fuzzed (`fuzz/fuzz_targets/tpm2_response.rs`). That is a few milliseconds instead of a
//! few process starts (tens of milliseconds), and unlike `tss-esapi` it needs no C libraries, bindgen
//! or libclang on the build host, links statically, and is not pinned to Debian 12's tpm2-tss 3.2
//! (which only tss-esapi 7.x builds against). The primary template is byte for byte the one
//! `tpm2_createprimary -G hmac -g sha256 -a …` sends, so the IKM is the same as with the tools
//! (tested against swtpm). `provision` still runs tpm2-tools for its once-per-device steps (ECC parent,
//! create, load, evictcontrol); its checks and its final derivation are in-process.
//!
//! Transports (`transport`): `device:/dev/tpmrm0` (default) or any TPM device, and swtpm's TCP
//! command port (`swtpm:host=…,port=…`); `tabrmd` is refused (use the kernel resource manager).
//!
//! Objects and sessions the plug-in creates are flushed (TPM2_FlushContext) on every exit path,
//! success or error, because swtpm and `/dev/tpm0` have no resource manager and the TPM keeps them. If
//! the TPM is nonetheless out of object memory (`0x902`, objects some other client left), the plug-in
//! flushes all transient objects and loaded sessions, retries once, and says so on stderr. "Busy"
//! answers (`0x922` retry, `0x90a` testing, `0x128` a PCR changed mid-policy, …) are retried with
//! back-off until the deadline. Errors are built from the TPM's response codes (`rc`).
//!
//! Layout:
//! - [`params`]: the TCTI, persistent handles, timeouts (pure).
//! - [`policy`]: the PCR selection, expected values and policy digests (pure).
//! - [`cli`]: the plug-in's command line (pure).
//! - [`error`]: [`Tpm2Error`], one line per failure saying what to do.
//! - `rc`: the TPM response codes the plug-in acts on (pure).
//! - [`wire`]: command framing and bounded response reading (pure).
//! - [`commands`]: the commands, marshalled, and their response parsers (pure).
//! - `transport`: the device and swtpm transports, with deadlines.
//! - `tpm`: an in-process conversation: deadline, errors from codes, the always-run flush.
//! - `explain`: a TPM code or a failed tool, for the step that hit it, as a [`Tpm2Error`] (pure).
//! - [`public`]: judging and describing a TPM2_ReadPublic answer (pure).
//! - [`diagnose`]: reading a failed tool's stderr into a cause (pure; provisioning).
//! - `tool`, `session`: locating and running tpm2-tools for provisioning, the private working
//!   directory, the tool session's flush.
//! - this module: the derivation and provisioning steps.

pub mod cli;
pub mod commands;
pub mod diagnose;
pub mod error;
mod explain;
pub mod params;
pub mod policy;
pub mod public;
mod rc;
mod session;
mod tool;
mod tpm;
mod transport;
pub mod wire;

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Read;
use std::thread;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use crate::secret::Ikm;

pub use error::Tpm2Error;
pub use params::{Endpoint, KeySource, PersistentHandle, Tcti, DEFAULT_TCTI, DEFAULT_TIMEOUT};
pub use policy::{PcrPolicy, PcrSelection};

use commands::KEY_ATTRIBUTES;
use error::ResponseCode;
use explain::Subject;
use session::Session;
use tool::Tool;
use tpm::{Failure, Tpm};

/// The HMAC input. Versioned: changing it changes every device's IKM, hence its KEK.
pub const LABEL: &[u8] = b"edgeseal-kdf-tpm2 ikm v1";

/// [`KEY_ATTRIBUTES`] as tpm2-tools names them, for `provision`'s `tpm2_create`.
pub const KEY_ATTRIBUTE_NAMES: &str = "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|sign";

/// The transient storage parent used while provisioning (noda, so provisioning works during lockout).
const PARENT_ATTRIBUTES: &str = "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|restricted|decrypt";

/// Which TPM to use and how long the plug-in may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The TPM (also passed to provisioning's tpm2-tools in `TPM2TOOLS_TCTI`).
    pub tcti: Tcti,
    /// The deadline for the whole derivation (or provisioning), cleanup included.
    pub timeout: Duration,
    /// Where `provision` looks for tpm2-tools; `None` means `/usr/bin:/bin`.
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

/// What [`provision_pcrs`] found: the policy binding the PCRs to their current values.
#[derive(Debug)]
pub struct PcrBinding {
    /// The selection with the values read.
    pub policy: PcrPolicy,
    /// Recoveries worth telling the operator about.
    pub notes: Vec<String>,
}

/// Computes the IKM: HMAC-SHA256 over [`LABEL`] inside the TPM with the key from `key`.
pub fn derive_ikm(options: &Options, key: KeySource) -> Result<Derivation, Tpm2Error> {
    let end = Instant::now() + options.timeout;
    let mut tpm = Tpm::open(&options.tcti, options.timeout, end)?;
    let mut notes = Vec::new();
    let ikm = with_recovery(&mut tpm, &mut notes, |t| derive_once(t, &key))?;
    Ok(Derivation { ikm: Ikm::from_zeroizing(ikm), notes })
}

/// Generates a random HMAC-SHA256 key inside the TPM and persists it at `handle`, then checks that it
/// answers. Never replaces what is already there: a handle holding exactly such a key is reported as
/// [`Provisioned::AlreadyPresent`] (so provisioning is idempotent), anything else is
/// [`Tpm2Error::HandleTaken`]. Evicting a key that a keystore depends on would lose that keystore, so
/// there is deliberately no `--force`: an operator who means it runs `tpm2_evictcontrol` by hand.
///
/// The checks run in-process; the once-per-device creation runs tpm2-tools, with the TPM connection
/// closed meanwhile (swtpm serves one client at a time).
pub fn provision(options: &Options, handle: PersistentHandle) -> Result<(Provisioned, Vec<String>), Tpm2Error> {
    let end = Instant::now() + options.timeout;
    let mut notes = Vec::new();
    let found = {
        let mut tpm = Tpm::open(&options.tcti, options.timeout, end)?;
        with_recovery(&mut tpm, &mut notes, |t| check_handle(t, handle))?
    };
    let outcome = match found {
        Some(outcome) => outcome,
        None => {
            let mut session = Session::open(options, end)?;
            with_recovery(&mut session, &mut notes, |s| create_persistent_key(s, handle))?
        }
    };
    // Prove the key works; the HMAC is wiped at once.
    let mut tpm = Tpm::open(&options.tcti, options.timeout, end)?;
    drop(with_recovery(&mut tpm, &mut notes, |t| derive_once(t, &KeySource::Persistent(handle)))?);
    Ok((outcome, notes))
}

/// Reads the current values of the `selection` PCRs, and checks that the PCR-bound key they give
/// answers: what `--pcr-values` must say for the plug-in to derive while the PCRs stay as they are.
/// Nothing is stored in the TPM.
pub fn provision_pcrs(options: &Options, selection: PcrSelection) -> Result<PcrBinding, Tpm2Error> {
    let end = Instant::now() + options.timeout;
    let mut tpm = Tpm::open(&options.tcti, options.timeout, end)?;
    let mut notes = Vec::new();
    let policy = with_recovery(&mut tpm, &mut notes, |t| {
        let values = read_pcrs(t, selection)?;
        PcrPolicy::new(selection, &values).ok_or(Tpm2Error::BadAnswer { tool: "TPM2_PCR_Read", what: "wrong count" })
    })?;
    let key = KeySource::PcrBound(policy.clone());
    drop(with_recovery(&mut tpm, &mut notes, |t| derive_once(t, &key))?);
    Ok(PcrBinding { policy, notes })
}

/// What [`with_recovery`] needs from a conversation with the TPM (in-process or through tools).
trait Recover {
    /// Flushes every transient object and loaded session in the TPM.
    fn flush_all(&mut self) -> Result<(), Tpm2Error>;
    /// Time left for steps.
    fn time_left(&self) -> Duration;
    /// The TCTI, for the note.
    fn tcti(&self) -> &Tcti;
}

impl Recover for Tpm {
    fn flush_all(&mut self) -> Result<(), Tpm2Error> {
        Tpm::flush_all(self)
    }
    fn time_left(&self) -> Duration {
        Tpm::time_left(self)
    }
    fn tcti(&self) -> &Tcti {
        Tpm::tcti(self)
    }
}

impl Recover for Session {
    fn flush_all(&mut self) -> Result<(), Tpm2Error> {
        self.flush(true)
    }
    fn time_left(&self) -> Duration {
        Session::time_left(self)
    }
    fn tcti(&self) -> &Tcti {
        Session::tcti(self)
    }
}

/// Retries `attempt` once after flushing if the TPM is out of object memory, and with back-off while it
/// is busy and time remains.
fn with_recovery<S: Recover, T>(
    session: &mut S,
    notes: &mut Vec<String>,
    mut attempt: impl FnMut(&mut S) -> Result<T, Tpm2Error>,
) -> Result<T, Tpm2Error> {
    let mut flushed = false;
    let mut pause = Duration::from_millis(50);
    loop {
        match attempt(session) {
            Err(Tpm2Error::OutOfMemory { code }) if !flushed => {
                session.flush_all()?;
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

/// One derivation: the HMAC of [`LABEL`] by the key, with every object and session it created flushed.
fn derive_once(tpm: &mut Tpm, key: &KeySource) -> Result<Zeroizing<Vec<u8>>, Tpm2Error> {
    let subject = Subject::Key(key);
    match key {
        KeySource::Primary => {
            let object = create_primary(tpm, None)?;
            let mac = tpm.run("TPM2_HMAC", subject, &commands::hmac(object, None, LABEL), commands::parse_hmac);
            let flushed = tpm.flush(object);
            let mac = mac?;
            flushed.map(|()| mac)
        }
        &KeySource::Persistent(handle) => {
            let public = read_public(tpm, handle)?;
            if !public::is_hmac_sha256_key(&public) {
                return Err(Tpm2Error::NotHmacKey { handle, found: public::describe(&public) });
            }
            tpm.run("TPM2_HMAC", subject, &commands::hmac(handle.value(), None, LABEL), commands::parse_hmac)
        }
        KeySource::PcrBound(policy) => {
            let object = create_primary(tpm, Some(&policy.auth_policy()))?;
            let mac = hmac_under_policy(tpm, object, key, policy);
            let flushed = tpm.flush(object);
            let mac = mac?;
            flushed.map(|()| mac)
        }
    }
}

/// TPM2_CreatePrimary of the HMAC key (with the policy's digest, if any); the object is remembered for
/// the flush.
fn create_primary(tpm: &mut Tpm, auth_policy: Option<&policy::Digest32>) -> Result<u32, Tpm2Error> {
    let command = commands::create_primary(auth_policy);
    let object = tpm.run("TPM2_CreatePrimary", Subject::Owner, &command, commands::parse_create_primary)?;
    tpm.loaded(object);
    Ok(object)
}

/// A policy session, TPM2_PolicyPCR with the expected values, TPM2_HMAC in that session (which ends it).
/// A refusal because of the PCRs becomes [`Tpm2Error::PcrMismatch`], naming each PCR that changed.
fn hmac_under_policy(
    tpm: &mut Tpm,
    object: u32,
    key: &KeySource,
    policy: &PcrPolicy,
) -> Result<Zeroizing<Vec<u8>>, Tpm2Error> {
    let subject = Subject::Key(key);
    let nonce = session_nonce()?;
    let start = commands::start_policy_session(&nonce);
    let session = tpm.run("TPM2_StartAuthSession", subject, &start, commands::parse_start_auth_session)?;
    tpm.loaded(session);
    let policy_pcr = commands::policy_pcr(session, &policy.pcr_digest(), policy.selection());
    let step = match tpm.call("TPM2_PolicyPCR", &policy_pcr, |_| Ok(())) {
        Ok(()) => "TPM2_HMAC",
        Err(failure) => {
            // A failed command does not end its session: flush it now, so that a retry (busy, PCR
            // changed) does not start a new one beside it on a TPM without a resource manager.
            let _ = tpm.flush(session);
            return Err(policy_failure(tpm, "TPM2_PolicyPCR", subject, policy, failure));
        }
    };
    match tpm.call(step, &commands::hmac(object, Some(session), LABEL), commands::parse_hmac) {
        Ok(mac) => {
            tpm.forget(session); // continueSession was clear: the TPM ended it
            Ok(mac)
        }
        Err(failure) => {
            let _ = tpm.flush(session);
            Err(policy_failure(tpm, step, subject, policy, failure))
        }
    }
}

/// The error for a failed policy step: a PCR refusal (TPM_RC_VALUE on PolicyPCR's digest, or
/// TPM_RC_POLICY_FAIL on the HMAC) names the PCRs that differ, read now; anything else as usual.
fn policy_failure(
    tpm: &mut Tpm,
    step: &'static str,
    subject: Subject<'_>,
    policy: &PcrPolicy,
    failure: Failure,
) -> Tpm2Error {
    let code = match failure {
        Failure::Code(code) if matches!(rc::base(code), Some(rc::VALUE | rc::POLICY_FAIL)) => code,
        other => return tpm.explain(step, subject, other),
    };
    let current = match read_pcrs(tpm, policy.selection()) {
        Ok(current) => current,
        Err(e) => return e,
    };
    let changes: Vec<String> = policy
        .changed(&current)
        .into_iter()
        .map(|(index, now, want)| format!("PCR sha256:{index} is {}, expected {}", hex::encode(now), hex::encode(want)))
        .collect();
    if changes.is_empty() {
        return Tpm2Error::Tool {
            tool: step,
            detail: format!("{} although the PCRs {} hold the expected values", rc::describe(code), policy.selection()),
        };
    }
    Tpm2Error::PcrMismatch { changes: changes.join("; "), selection: policy.selection(), code: ResponseCode(code) }
}

/// The current values of the selected sha256 PCRs, ascending.
fn read_pcrs(tpm: &mut Tpm, selection: PcrSelection) -> Result<Vec<policy::Digest32>, Tpm2Error> {
    tpm.run("TPM2_PCR_Read", Subject::None, &commands::pcr_read(selection), |r| commands::parse_pcr_read(r, selection))
}

/// nonceCaller for the policy session. The TPM requires one of at least 16 bytes; in an unsalted,
/// unbound session without HMACs it protects nothing, but it is random anyway.
fn session_nonce() -> Result<[u8; 16], Tpm2Error> {
    let mut nonce = [0u8; 16];
    File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut nonce)).map_err(|e| Tpm2Error::Tool {
        tool: "TPM2_StartAuthSession",
        detail: format!("cannot read /dev/urandom for the session nonce: {e}"),
    })?;
    Ok(nonce)
}

/// What is stored at `handle` (`HandleMissing` if nothing).
fn read_public(tpm: &mut Tpm, handle: PersistentHandle) -> Result<commands::Public, Tpm2Error> {
    let key = KeySource::Persistent(handle);
    tpm.run("TPM2_ReadPublic", Subject::Key(&key), &commands::read_public(handle.value()), commands::parse_read_public)
}

/// `Some` if `handle` already holds exactly the key provisioning makes; `None` if it is free; an error
/// if it holds anything else.
fn check_handle(tpm: &mut Tpm, handle: PersistentHandle) -> Result<Option<Provisioned>, Tpm2Error> {
    match read_public(tpm, handle) {
        Ok(public) if public::is_hmac_sha256_key(&public) && public.attributes == KEY_ATTRIBUTES => {
            Ok(Some(Provisioned::AlreadyPresent))
        }
        Ok(public) => Err(Tpm2Error::HandleTaken { handle, found: public::describe(&public) }),
        Err(Tpm2Error::HandleMissing { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Tool arguments from a mix of `&str` and paths.
macro_rules! args {
    ($($arg:expr),* $(,)?) => { [$(AsRef::<OsStr>::as_ref(&$arg)),*] };
}

/// Creates the key and persists it (recipe B of RECIPES.md §3, flushing after each step so no more
/// than one object is loaded at a time).
fn create_persistent_key(s: &mut Session, handle: PersistentHandle) -> Result<Provisioned, Tpm2Error> {
    let (parent, public, private, key) =
        (s.file("parent.ctx"), s.file("key.pub"), s.file("key.priv"), s.file("key.ctx"));

    let create_parent = args!["-Q", "-C", "o", "-G", "ecc256", "-g", "sha256", "-a", PARENT_ATTRIBUTES, "-c", parent];
    s.step(Tool::CreatePrimary, Subject::Owner, &create_parent, None)?;
    s.flush(false)?;
    let create_key =
        args!["-Q", "-C", parent, "-G", "hmac", "-g", "sha256", "-a", KEY_ATTRIBUTE_NAMES, "-u", public, "-r", private];
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

#[cfg(test)]
mod tests;
