//! Turning a failed step into the [`Tpm2Error`] an operator can act on (pure): the TPM's response code
//! (in-process commands), or the cause `diagnose` read from a tpm2-tools step's stderr (provisioning),
//! with the step's [`Subject`] (which key or hierarchy it used) and the TCTI, decide the variant and
//! the hint.

use std::time::Duration;

use super::diagnose::{diagnose, quote, Diagnosis};
use super::error::{ResponseCode, Tpm2Error};
use super::params::{KeySource, PersistentHandle, Tcti};
use super::rc;
use super::tool::{Tool, ToolFailure};

/// Which key a step uses, for naming it in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Subject<'a> {
    /// The owner hierarchy (creating primaries, persisting).
    Owner,
    /// A key the plug-in derives from.
    Key(&'a KeySource),
    /// A transient parent created during provisioning.
    Parent,
    /// Making a key persistent at this handle.
    Persist(PersistentHandle),
    /// Nothing needing authorization (flush, readpublic).
    None,
}

/// The error for a failed step, and whether the tool reached the TPM (so there may be something
/// to flush).
pub(crate) fn explain(tool: Tool, subject: Subject<'_>, tcti: &Tcti, failure: ToolFailure) -> (Tpm2Error, bool) {
    let tcti = tcti.clone();
    let (status, stderr) = match failure {
        ToolFailure::Spawn(source) => return (Tpm2Error::Spawn { tool: tool.name(), source }, false),
        ToolFailure::TimedOut(limit) => {
            // It may have loaded something before hanging; the cleanup will try (briefly).
            return (Tpm2Error::Timeout { tool: tool.name(), tcti, limit: whole_millis(limit) }, true);
        }
        ToolFailure::Failed { status, stderr } => (status, stderr),
    };
    match diagnose(&stderr) {
        Diagnosis::Unreachable(reason) => {
            (Tpm2Error::Unreachable { hint: unreachable_hint(&tcti, &reason), tcti, reason }, false)
        }
        Diagnosis::TctiNotFound => (Tpm2Error::TctiNotFound { name: tcti.name().to_owned(), tcti }, false),
        Diagnosis::TctiConfig(detail) => (Tpm2Error::TctiConfig { tcti, detail }, false),
        Diagnosis::Code { code, line } => (from_response_code(tool.name(), subject, &tcti, code, line), true),
        Diagnosis::Other(line) => {
            let detail = match (line.is_empty(), status.and_then(|s| s.code())) {
                (false, _) => line,
                (true, Some(code)) => format!("exit status {code}, no error message"),
                (true, None) => "killed by a signal, no error message".to_owned(),
            };
            (Tpm2Error::Tool { tool: tool.name(), detail }, true)
        }
    }
}

/// `limit` rounded to the millisecond, for messages (`1s 500ms`, not `1s 499ms 858us 628ns`).
pub(crate) fn whole_millis(limit: Duration) -> Duration {
    Duration::from_millis(u64::try_from(limit.as_micros().saturating_add(500) / 1000).unwrap_or(u64::MAX))
}

/// What to check when nothing answers.
pub(crate) fn unreachable_hint(tcti: &Tcti, reason: &str) -> &'static str {
    let reason = reason.to_lowercase();
    if reason.contains("permission denied") {
        "run the plug-in as root or as a member of the group that owns the TPM device (usually tss)"
    } else if tcti.name() == "device" {
        "check that this machine has a TPM 2.0 (ls /dev/tpm*; the tpm_crb or tpm_tis driver) or pass --tcti"
    } else {
        "check that the TPM or simulator is running there and that --tcti is right"
    }
}

/// Turns a TPM response code into the error for the step (a command or tool name) that got it; `line`
/// describes the code (the tool's error line, or [`rc::describe`]).
pub(crate) fn from_response_code(
    step: &'static str,
    subject: Subject<'_>,
    tcti: &Tcti,
    code: u32,
    line: String,
) -> Tpm2Error {
    let response = ResponseCode(code);
    match (rc::base(code), subject) {
        (Some(rc::INITIALIZE), _) => Tpm2Error::NotStarted { tcti: tcti.clone() },
        (Some(rc::LOCKOUT), Subject::Key(key)) => Tpm2Error::DaLockout { key: key.clone() },
        (Some(rc::LOCKOUT), _) => Tpm2Error::Tool {
            tool: step,
            detail: format!("{line} (clear it with `tpm2_dictionarylockout --clear-lockout`)"),
        },
        (Some(rc::HANDLE), Subject::Key(KeySource::Persistent(handle))) => Tpm2Error::HandleMissing { handle: *handle },
        (Some(rc::NV_DEFINED), Subject::Persist(handle)) => Tpm2Error::HandleTaken {
            handle,
            found: "an object persisted there by another client a moment ago".to_owned(),
        },
        (Some(rc::OBJECT_MEMORY | rc::SESSION_MEMORY | rc::MEMORY | rc::OBJECT_HANDLES | rc::SESSION_HANDLES), _) => {
            Tpm2Error::OutOfMemory { code: response }
        }
        (
            Some(
                rc::RETRY
                | rc::YIELDED
                | rc::CANCELED
                | rc::TESTING
                | rc::NV_RATE
                | rc::NV_UNAVAILABLE
                | rc::PCR_CHANGED,
            ),
            _,
        ) => {
            // A tool's line `Esys_X(0x922) - tpm:warn(2.0): text` becomes `0x922: tpm:warn(2.0): text`.
            let text = match line.split_once(" - ") {
                Some((_, text)) => format!("{response}: {}", quote(text)),
                None => quote(&line),
            };
            Tpm2Error::Busy { code: response, text }
        }
        (Some(base @ (rc::AUTH_FAIL | rc::BAD_AUTH)), subject) => Tpm2Error::AuthFailed {
            what: match subject {
                Subject::Key(key) => key.to_string(),
                Subject::Owner | Subject::Persist(_) => "the owner hierarchy".to_owned(),
                Subject::Parent => "the provisioning parent key".to_owned(),
                Subject::None => "an object".to_owned(),
            },
            code: response,
            counts_for_da: base == rc::AUTH_FAIL,
        },
        _ => Tpm2Error::Tool { tool: step, detail: line },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_codes_become_the_error_for_the_step() {
        let handle: PersistentHandle = "0x81000101".parse().unwrap();
        let (persistent, primary_key) = (KeySource::Persistent(handle), KeySource::Primary);
        let key = Subject::Key(&persistent);
        let primary = Subject::Key(&primary_key);
        let line = || "Esys_X(0x1) - text".to_owned();
        let tcti = Tcti::default();
        let map = |tool: Tool, subject, code| from_response_code(tool.name(), subject, &tcti, code, line());
        assert!(matches!(map(Tool::Load, key, 0x921), Tpm2Error::DaLockout { key: KeySource::Persistent(_) }));
        assert!(matches!(map(Tool::EvictControl, key, 0x18B), Tpm2Error::HandleMissing { .. }));
        assert!(matches!(map(Tool::Load, primary, 0x18B), Tpm2Error::Tool { .. }));
        assert!(matches!(map(Tool::Load, primary, 0x902), Tpm2Error::OutOfMemory { code: ResponseCode(0x902) }));
        assert!(matches!(map(Tool::Load, Subject::Parent, 0x903), Tpm2Error::OutOfMemory { .. }));
        assert!(matches!(map(Tool::Load, key, 0x922), Tpm2Error::Busy { .. }));
        match map(Tool::Load, key, 0x98E) {
            Tpm2Error::AuthFailed { what, counts_for_da: true, .. } => assert!(what.contains("0x81000101")),
            other => panic!("{other:?}"),
        }
        match map(Tool::CreatePrimary, Subject::Owner, 0x9A2) {
            e @ Tpm2Error::AuthFailed { counts_for_da: false, .. } => {
                assert!(e.to_string().contains("the owner hierarchy (0x9a2)"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(map(Tool::EvictControl, Subject::Persist(handle), 0x14C), Tpm2Error::HandleTaken { .. }));
        assert!(matches!(map(Tool::Load, key, 0x2C3), Tpm2Error::Tool { tool: "tpm2_load", .. }));
        assert!(matches!(map(Tool::Load, Subject::Parent, 0x100), Tpm2Error::NotStarted { .. }));

        // In-process commands: the code described by rc::describe.
        let busy = from_response_code("TPM2_HMAC", primary, &tcti, 0x922, rc::describe(0x922));
        assert_eq!(
            busy.to_string(),
            "the TPM stayed busy (TPM_RC_RETRY (0x922): the TPM was not able to start the command) until the \
             plug-in's deadline; try again later"
        );
        let changed = from_response_code("TPM2_HMAC", primary, &tcti, 0x128, rc::describe(0x128));
        assert!(matches!(changed, Tpm2Error::Busy { .. }), "a PCR extended mid-derivation: retried");
        let other = from_response_code("TPM2_HMAC", primary, &tcti, 0x2C3, rc::describe(0x2C3));
        assert_eq!(other.to_string(), "TPM2_HMAC failed: response code 0x2c3");
    }

    #[test]
    fn time_limits_are_shown_to_the_millisecond() {
        assert_eq!(whole_millis(Duration::from_nanos(1_499_858_628)), Duration::from_millis(1500));
        assert_eq!(whole_millis(Duration::from_micros(2_000_400)), Duration::from_secs(2));
    }

    #[test]
    fn hints_fit_the_tcti() {
        let device: Tcti = "device:/dev/tpmrm0".parse().unwrap();
        let swtpm: Tcti = "swtpm:port=1".parse().unwrap();
        assert!(unreachable_hint(&device, "cannot open /dev/tpmrm0: no such file").contains("ls /dev/tpm*"));
        assert!(unreachable_hint(&device, "cannot open /dev/tpmrm0: permission denied").contains("tss"));
        assert!(unreachable_hint(&swtpm, "cannot connect to 127.0.0.1:1").contains("simulator is running"));
    }
}
