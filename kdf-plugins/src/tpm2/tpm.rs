//! One in-process conversation with the TPM: the transport, the deadline, and the handles to flush.
//!
//! Every command runs within the time left (at most [`STEP_LIMIT`]); a command without an answer in
//! time ends the conversation (its state on the wire is unknown), and is reported as a timeout naming
//! the command. Objects and sessions the plug-in creates are remembered and flushed when the
//! conversation ends, however it ends — success, error, early return — within a reserved slice of the
//! budget, because swtpm and `/dev/tpm0` have no resource manager and the TPM would keep them.

use std::time::{Duration, Instant};

use super::commands;
use super::error::Tpm2Error;
use super::explain::{from_response_code, unreachable_hint, whole_millis, Subject};
use super::params::Tcti;
use super::rc;
use super::transport::{Transport, TransportError};
use super::wire::{Malformed, Response};

/// The longest any single command may take; a healthy TPM answers these in milliseconds.
const STEP_LIMIT: Duration = Duration::from_secs(10);
/// The longest the final flush may take (it must not push the plug-in past edgeseal's timeout).
const CLEANUP_LIMIT: Duration = Duration::from_secs(2);
/// Handle types flushed when the TPM is out of memory: transient objects, loaded HMAC and policy sessions.
const FLUSHABLE: [u32; 3] = [0x8000_0000, 0x0200_0000, 0x0300_0000];
/// Most pages of a handle list followed (256 handles each: far more than any TPM holds).
const MAX_HANDLE_PAGES: usize = 8;

/// A failed command, before it is turned into an error: callers that act on particular TPM codes
/// (a PCR policy refusal) look at [`Failure::Code`].
#[derive(Debug)]
pub(crate) enum Failure {
    /// The TPM answered with this response code.
    Code(u32),
    /// Anything else, already explained.
    Error(Tpm2Error),
}

/// An open conversation.
#[derive(Debug)]
pub(crate) struct Tpm {
    /// `None` once a transaction failed mid-way: nothing more is sent.
    transport: Option<Transport>,
    tcti: Tcti,
    /// Commands must end by then.
    deadline: Instant,
    /// The cleanup must end by then (the caller's whole budget).
    end: Instant,
    /// Objects and sessions created and not yet flushed or consumed.
    loaded: Vec<u32>,
}

impl Tpm {
    /// Connects to the TPM; the conversation must be over by `end` (a slice of it is kept for the
    /// final flush).
    pub(crate) fn open(tcti: &Tcti, budget: Duration, end: Instant) -> Result<Self, Tpm2Error> {
        let reserve = CLEANUP_LIMIT.min(budget / 4);
        let deadline = end.checked_sub(reserve).unwrap_or(end);
        let limit = deadline.saturating_duration_since(Instant::now()).min(STEP_LIMIT);
        let transport = Transport::open(tcti.endpoint(), Instant::now() + limit)
            .map_err(|e| transport_error("connecting to the TPM", tcti, e, limit))?;
        Ok(Self { transport: Some(transport), tcti: tcti.clone(), deadline, end, loaded: Vec::new() })
    }

    /// The TCTI in use.
    pub(crate) fn tcti(&self) -> &Tcti {
        &self.tcti
    }

    /// Time left for commands.
    pub(crate) fn time_left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Sends `command` (named `step` in errors) and parses a successful response with `parse`.
    pub(crate) fn call<T>(
        &mut self,
        step: &'static str,
        command: &[u8],
        parse: impl FnOnce(&Response<'_>) -> Result<T, Malformed>,
    ) -> Result<T, Failure> {
        let now = Instant::now();
        let limit = self.deadline.saturating_duration_since(now).min(STEP_LIMIT);
        if limit.is_zero() {
            return Err(Failure::Error(Tpm2Error::Timeout { tool: step, tcti: self.tcti.clone(), limit }));
        }
        let Some(transport) = self.transport.as_mut() else {
            return Err(Failure::Error(Tpm2Error::Unreachable {
                tcti: self.tcti.clone(),
                reason: format!("the connection was given up after an earlier failure, before {step}"),
                hint: unreachable_hint(&self.tcti, ""),
            }));
        };
        let bytes = match transport.transact(command, now + limit) {
            Ok(bytes) => bytes,
            Err(e) => {
                self.transport = None;
                return Err(Failure::Error(transport_error(step, &self.tcti, e, limit)));
            }
        };
        let bad = |m: Malformed| Failure::Error(Tpm2Error::BadAnswer { tool: step, what: m.0 });
        let response = Response::parse(&bytes).map_err(bad)?;
        if response.code != 0 {
            return Err(Failure::Code(response.code));
        }
        parse(&response).map_err(bad)
    }

    /// [`Tpm::call`], with a TPM code turned into the error for a step that used `subject`.
    pub(crate) fn run<T>(
        &mut self,
        step: &'static str,
        subject: Subject<'_>,
        command: &[u8],
        parse: impl FnOnce(&Response<'_>) -> Result<T, Malformed>,
    ) -> Result<T, Tpm2Error> {
        self.call(step, command, parse).map_err(|f| self.explain(step, subject, f))
    }

    /// The error for a failed step.
    pub(crate) fn explain(&self, step: &'static str, subject: Subject<'_>, failure: Failure) -> Tpm2Error {
        match failure {
            Failure::Code(code) => from_response_code(step, subject, &self.tcti, code, rc::describe(code)),
            Failure::Error(e) => e,
        }
    }

    /// Remembers an object or session to flush.
    pub(crate) fn loaded(&mut self, handle: u32) {
        self.loaded.push(handle);
    }

    /// Forgets a handle the TPM freed itself (a policy session used without continueSession).
    pub(crate) fn forget(&mut self, handle: u32) {
        self.loaded.retain(|&h| h != handle);
    }

    /// TPM2_FlushContext of a handle this conversation created.
    pub(crate) fn flush(&mut self, handle: u32) -> Result<(), Tpm2Error> {
        self.run("TPM2_FlushContext", Subject::None, &commands::flush_context(handle), |_| Ok(()))?;
        self.forget(handle);
        Ok(())
    }

    /// Flushes every transient object and loaded session in the TPM, ours or not (the recovery from
    /// `TPM_RC_OBJECT_MEMORY` and friends when another client left them).
    ///
    /// The TPM lists sessions under their own type whatever range was asked (a loaded policy session is
    /// `0x03…` in the `0x02…` list; a saved one `0x02…` in the `0x03…` list), and FlushContext takes a
    /// session loaded or saved: every session handle of either type is flushed. Pages are followed
    /// while the TPM says there is more (bounded). Only handles actually flushed are forgotten.
    pub(crate) fn flush_all(&mut self) -> Result<(), Tpm2Error> {
        let mut flushed = Vec::new();
        for first in FLUSHABLE {
            let wanted = |h: u32| match first >> 24 {
                0x80 => h >> 24 == 0x80,
                _ => matches!(h >> 24, 0x02 | 0x03),
            };
            let mut next = first;
            for _page in 0..MAX_HANDLE_PAGES {
                let command = commands::get_handles(next, 256);
                let (handles, more) =
                    self.run("TPM2_GetCapability", Subject::None, &command, commands::parse_get_handles)?;
                for &handle in &handles {
                    if !wanted(handle) || flushed.contains(&handle) {
                        continue;
                    }
                    // One that vanished meanwhile is fine; a failing connection shows on the next command.
                    if self.call("TPM2_FlushContext", &commands::flush_context(handle), |_| Ok(())).is_ok() {
                        flushed.push(handle);
                    }
                }
                match handles.last() {
                    Some(&last) if more && last < u32::MAX => next = last + 1,
                    _ => break,
                }
            }
        }
        self.loaded.retain(|h| !flushed.contains(h));
        Ok(())
    }
}

impl Drop for Tpm {
    fn drop(&mut self) {
        // What remains here was left by an error path: flush it within the reserved slice.
        self.deadline = self.end.min(Instant::now() + CLEANUP_LIMIT);
        for handle in std::mem::take(&mut self.loaded) {
            let _ = self.call("TPM2_FlushContext", &commands::flush_context(handle), |_| Ok(()));
        }
    }
}

/// The error for a transport failure during `step`.
fn transport_error(step: &'static str, tcti: &Tcti, e: TransportError, limit: Duration) -> Tpm2Error {
    let tcti = tcti.clone();
    match e {
        TransportError::Unreachable(reason) => {
            Tpm2Error::Unreachable { hint: unreachable_hint(&tcti, &reason), tcti, reason }
        }
        TransportError::TimedOut => Tpm2Error::Timeout { tool: step, tcti, limit: whole_millis(limit) },
        TransportError::Broken(why) => {
            let reason = format!("the connection failed during {step}: {why}");
            Tpm2Error::Unreachable { hint: unreachable_hint(&tcti, &reason), tcti, reason }
        }
        TransportError::Malformed(m) => Tpm2Error::BadAnswer { tool: step, what: m.0 },
    }
}
