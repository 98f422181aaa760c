//! [`Tpm2Error`]: what the plug-in reports when a derivation or provisioning fails — one line each,
//! saying what to do. No variant ever carries tool stdout, which is where the IKM travels.
//!
//! Which variant a failed tool becomes is decided by `diagnose` (reading its stderr) and `explain`
//! (the cause, for the step that hit it).

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use super::params::{KeySource, PersistentHandle, Tcti};
use super::policy::PcrSelection;

/// A failed derivation or provisioning. Every message is one line; none contains keying material.
#[derive(Debug, Error)]
pub enum Tpm2Error {
    /// A tpm2-tools executable is not in `PATH`.
    #[error("tpm2-tools not found: {tool} is not in PATH ({path}); install tpm2-tools (Debian/Ubuntu: apt-get install tpm2-tools)")]
    ToolsMissing {
        /// The first missing tool.
        tool: &'static str,
        /// The directories searched.
        path: String,
    },
    /// A tool could not be started.
    #[error("could not start {tool}: {source}")]
    Spawn {
        /// The tool.
        tool: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The private working directory could not be made (or removed).
    #[error("cannot create a private working directory in {dir}: {source}")]
    WorkDir {
        /// Where it was attempted.
        dir: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Nothing answers at the TCTI: no TPM, wrong TCTI, simulator not running, no permission.
    #[error("no TPM reachable through TCTI {tcti}: {reason}; {hint}")]
    Unreachable {
        /// The TCTI used.
        tcti: Tcti,
        /// What the TCTI reported (connection refused, no such device, …).
        reason: String,
        /// What to check.
        hint: &'static str,
    },
    /// The TSS has no library for the TCTI's name.
    #[error("TCTI {tcti} cannot be loaded: no TSS library for the TCTI named {name:?} (libtss2-tcti-{name}.so.0); use device:/dev/tpmrm0 or swtpm:host=HOST,port=PORT, or install that TCTI")]
    TctiNotFound {
        /// The TCTI used.
        tcti: Tcti,
        /// Its name.
        name: String,
    },
    /// The TCTI library refused its configuration string.
    #[error("TCTI {tcti} rejected its configuration ({detail}); check --tcti")]
    TctiConfig {
        /// The TCTI used.
        tcti: Tcti,
        /// The TSS's own words.
        detail: String,
    },
    /// TPM_RC_LOCKOUT: the TPM refuses DA-protected authorizations for now.
    #[error("the TPM is in dictionary-attack lockout (TPM_RC_LOCKOUT 0x921) and {key} is DA-protected (no noda attribute): clear it with `tpm2_dictionarylockout --clear-lockout` (add -p LOCKOUT-PASSWORD if one is set) or wait for the TPM's lockout recovery time; keys made by `edgeseal-kdf-tpm2 provision` and the default primary key have noda and keep working")]
    DaLockout {
        /// The key that was refused.
        key: KeySource,
    },
    /// TPM_RC_HANDLE on a persistent handle: nothing is stored there.
    #[error("no key at persistent handle {handle} (TPM_RC_HANDLE): provision one with `edgeseal-kdf-tpm2 provision --handle {handle}`, or check --handle and --tcti (another TPM has other keys)")]
    HandleMissing {
        /// The handle asked for.
        handle: PersistentHandle,
    },
    /// The persistent object is not an HMAC-SHA256 signing key.
    #[error("the object at persistent handle {handle} is {found}, not an HMAC-SHA256 signing key; point --handle at a key made by `edgeseal-kdf-tpm2 provision`")]
    NotHmacKey {
        /// The handle asked for.
        handle: PersistentHandle,
        /// What it holds.
        found: String,
    },
    /// `provision` found the handle in use by another object and leaves it alone.
    #[error("persistent handle {handle} already holds {found}; refusing to replace it (something may depend on it): pick another --handle, or evict it yourself with `tpm2_evictcontrol -C o -c {handle}` if you are sure")]
    HandleTaken {
        /// The handle asked for.
        handle: PersistentHandle,
        /// What it holds.
        found: String,
    },
    /// The TPM ran out of object or session memory, and still was after the plug-in flushed it.
    #[error("the TPM is out of memory for objects or sessions ({code}) even after the plug-in flushed all transient objects and sessions: another client keeps filling it; stop that client, or use the kernel resource manager (--tcti device:/dev/tpmrm0)")]
    OutOfMemory {
        /// The response code.
        code: ResponseCode,
    },
    /// The TPM kept answering "busy" (retry, yielded, testing, NV rate) until the deadline.
    #[error("the TPM stayed busy ({text}) until the plug-in's deadline; try again later")]
    Busy {
        /// The response code.
        code: ResponseCode,
        /// The code and its meaning.
        text: String,
    },
    /// TPM_RC_INITIALIZE: nobody sent TPM2_Startup.
    #[error("the TPM behind TCTI {tcti} has not been started (TPM_RC_INITIALIZE 0x100): firmware normally starts it at boot; a simulator must be started with it (swtpm --flags startup-clear, or `tpm2_startup -c` once)")]
    NotStarted {
        /// The TCTI used.
        tcti: Tcti,
    },
    /// The PCR policy refused the key: PCRs hold other values than the policy expects. The PCRs and
    /// their values come last, so that edgeseal's runner, which quotes the end of a plug-in's stderr,
    /// shows them along with the recovery commands.
    #[error("the TPM refuses the PCR-bound key (TPM response {code}): the boot chain measured into the PCRs changed, or was tampered with; restore from backup (`security-bootstrap restore`) and rebind (`edgeseal-kdf-tpm2 provision --pcrs {selection}`), or undo the change; next time, before a planned firmware update, run `security-bootstrap keystore rewrap` to the key without --pcrs; {changes}")]
    PcrMismatch {
        /// `PCR sha256:7 is …, expected …`, for each PCR that differs.
        changes: String,
        /// The selection, for the command to run.
        selection: PcrSelection,
        /// The TPM's answer.
        code: ResponseCode,
    },
    /// A tool (or a command sent in-process) got no answer in time.
    #[error("{tool} got no answer from the TPM through TCTI {tcti} within {}: the TPM is busy (another client may hold its connection) or hung; gave up", humantime::format_duration(*.limit))]
    Timeout {
        /// The tool.
        tool: &'static str,
        /// The TCTI used.
        tcti: Tcti,
        /// How long it was given.
        limit: Duration,
    },
    /// TPM_RC_AUTH_FAIL / TPM_RC_BAD_AUTH: the object or hierarchy has an authorization value.
    #[error("the TPM refused the empty authorization for {what} ({code}); edgeseal-kdf-tpm2 only uses keys and the owner hierarchy with an empty authorization value{}", if *.counts_for_da { " (this failure counts towards dictionary-attack lockout)" } else { "" })]
    AuthFailed {
        /// The key, or "the owner hierarchy".
        what: String,
        /// The response code.
        code: ResponseCode,
        /// Whether the TPM incremented its DA failure counter.
        counts_for_da: bool,
    },
    /// Any other TPM or TSS failure: the command or tool, and the code or the tool's words.
    #[error("{tool} failed: {detail}")]
    Tool {
        /// The tool.
        tool: &'static str,
        /// Its error line, or its exit status.
        detail: String,
    },
    /// A tool succeeded but printed something unexpected, or a TPM response does not parse (never quoted).
    #[error("{tool} gave an unexpected answer: {what}")]
    BadAnswer {
        /// The tool.
        tool: &'static str,
        /// What was wrong with it.
        what: &'static str,
    },
}

/// A TSS2 response code, shown as `0x921`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseCode(pub u32);

impl fmt::Display for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_single_lines_that_say_what_to_do() {
        let tcti: Tcti = "swtpm:host=127.0.0.1,port=1".parse().unwrap();
        let handle: PersistentHandle = "0x81000101".parse().unwrap();
        let errors = [
            Tpm2Error::DaLockout { key: KeySource::Persistent(handle) },
            Tpm2Error::HandleMissing { handle },
            Tpm2Error::OutOfMemory { code: ResponseCode(0x902) },
            Tpm2Error::Timeout { tool: "tpm2_hmac", tcti, limit: Duration::from_millis(1500) },
            Tpm2Error::ToolsMissing { tool: "tpm2_hmac", path: "/usr/bin:/bin".into() },
        ];
        for err in &errors {
            let text = err.to_string();
            assert!(!text.contains('\n'), "{text}");
        }
        assert!(errors[0].to_string().contains("tpm2_dictionarylockout --clear-lockout"));
        assert!(errors[0].to_string().contains("0x81000101"));
        assert!(errors[1].to_string().contains("edgeseal-kdf-tpm2 provision --handle 0x81000101"));
        assert!(errors[2].to_string().contains("(0x902)"));
        assert!(errors[3].to_string().contains("within 1s 500ms"));
        assert!(errors[4].to_string().contains("apt-get install tpm2-tools"));
    }
}
