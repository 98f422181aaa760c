//! TPM 2.0 response codes the plug-in acts on (TPM 2.0 Part 2, §6.6), in their base form, how to
//! reduce a code (as the TPM answers it, or as a tool prints it) to that form, and how to name it in a
//! message (pure).

/// The TPM has not been started (TPM2_Startup).
pub(crate) const INITIALIZE: u32 = 0x100;
/// Authorization by password is not allowed for the object (userWithAuth clear).
pub(crate) const AUTH_UNAVAILABLE: u32 = 0x12F;
/// A value is out of range or not correct for the context (format 1): PolicyPCR's digest mismatch.
pub(crate) const VALUE: u32 = 0x084;
/// The policy session's digest does not match the object's authPolicy (format 1).
pub(crate) const POLICY_FAIL: u32 = 0x09D;
/// The handle is not correct for the use (format 1, per handle).
pub(crate) const HANDLE: u32 = 0x08B;
/// The authorization HMAC check failed and the DA counter was incremented (format 1).
pub(crate) const AUTH_FAIL: u32 = 0x08E;
/// Authorization failure without DA implications (format 1).
pub(crate) const BAD_AUTH: u32 = 0x0A2;
/// A persistent object or NV index is already defined at the handle.
pub(crate) const NV_DEFINED: u32 = 0x14C;
/// Out of memory for object contexts.
pub(crate) const OBJECT_MEMORY: u32 = 0x902;
/// Out of memory for session contexts.
pub(crate) const SESSION_MEMORY: u32 = 0x903;
/// Out of shared object/session memory.
pub(crate) const MEMORY: u32 = 0x904;
/// Out of session handles.
pub(crate) const SESSION_HANDLES: u32 = 0x905;
/// Out of object handles.
pub(crate) const OBJECT_HANDLES: u32 = 0x906;
/// The TPM yielded (it has more work to do).
pub(crate) const YIELDED: u32 = 0x908;
/// The command was canceled.
pub(crate) const CANCELED: u32 = 0x909;
/// The TPM is running self-tests.
pub(crate) const TESTING: u32 = 0x90A;
/// NV writes are rate-limited right now.
pub(crate) const NV_RATE: u32 = 0x920;
/// Dictionary-attack lockout.
pub(crate) const LOCKOUT: u32 = 0x921;
/// The TPM was not able to start the command; retry.
pub(crate) const RETRY: u32 = 0x922;
/// NV is not available right now.
pub(crate) const NV_UNAVAILABLE: u32 = 0x923;
/// A PCR changed while a policy session was in use.
pub(crate) const PCR_CHANGED: u32 = 0x128;

/// Names and meanings of the codes above (base form).
const KNOWN: &[(u32, &str, &str)] = &[
    (INITIALIZE, "TPM_RC_INITIALIZE", "the TPM has not been started"),
    (AUTH_UNAVAILABLE, "TPM_RC_AUTH_UNAVAILABLE", "the object cannot be used with a password"),
    (VALUE, "TPM_RC_VALUE", "a value is not correct for the context"),
    (POLICY_FAIL, "TPM_RC_POLICY_FAIL", "the policy does not match the object's"),
    (HANDLE, "TPM_RC_HANDLE", "the handle is not correct for the use"),
    (AUTH_FAIL, "TPM_RC_AUTH_FAIL", "the authorization failed"),
    (BAD_AUTH, "TPM_RC_BAD_AUTH", "the authorization failed"),
    (NV_DEFINED, "TPM_RC_NV_DEFINED", "the handle is already in use"),
    (OBJECT_MEMORY, "TPM_RC_OBJECT_MEMORY", "out of memory for object contexts"),
    (SESSION_MEMORY, "TPM_RC_SESSION_MEMORY", "out of memory for session contexts"),
    (MEMORY, "TPM_RC_MEMORY", "out of shared object/session memory"),
    (SESSION_HANDLES, "TPM_RC_SESSION_HANDLES", "out of session handles"),
    (OBJECT_HANDLES, "TPM_RC_OBJECT_HANDLES", "out of object handles"),
    (YIELDED, "TPM_RC_YIELDED", "the TPM has suspended the operation"),
    (CANCELED, "TPM_RC_CANCELED", "the command was canceled"),
    (TESTING, "TPM_RC_TESTING", "the TPM is running self-tests"),
    (NV_RATE, "TPM_RC_NV_RATE", "NV writes are rate-limited right now"),
    (LOCKOUT, "TPM_RC_LOCKOUT", "the TPM is in dictionary-attack lockout"),
    (RETRY, "TPM_RC_RETRY", "the TPM was not able to start the command"),
    (NV_UNAVAILABLE, "TPM_RC_NV_UNAVAILABLE", "NV is not available right now"),
    (PCR_CHANGED, "TPM_RC_PCR_CHANGED", "a PCR changed while the policy session was in use"),
];

/// A TPM-layer code for a message: `TPM_RC_RETRY (0x922): the TPM was not able to start the command`,
/// or `response code 0x2c3` for one the plug-in has no name for.
pub(crate) fn describe(code: u32) -> String {
    match base(code).and_then(|b| KNOWN.iter().find(|(c, _, _)| *c == b)) {
        Some((_, name, text)) => format!("{name} ({code:#x}): {text}"),
        None => format!("response code {code:#x}"),
    }
}

/// The TPM-layer code without its handle/parameter/session number, or `None` for TSS-layer codes.
pub(crate) fn base(code: u32) -> Option<u32> {
    if code >> 16 != 0 {
        return None;
    }
    if code & 0x080 != 0 {
        Some(0x080 | (code & 0x03F))
    } else {
        Some(code & 0xFFF)
    }
}

/// Whether the TSS code comes from the TCTI layer (the transport to the TPM).
pub(crate) fn is_tcti_layer(code: u32) -> bool {
    code >> 16 == 0x0A
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_codes_drop_handle_session_and_parameter_numbers() {
        assert_eq!(base(0x18B), Some(HANDLE));
        assert_eq!(base(0x98E), Some(AUTH_FAIL));
        assert_eq!(base(0x9A2), Some(BAD_AUTH));
        assert_eq!(base(0x921), Some(LOCKOUT));
        assert_eq!(base(0x902), Some(OBJECT_MEMORY));
        assert_eq!(base(0x14C), Some(NV_DEFINED));
        assert_eq!(base(0xA000A), None);
        assert!(is_tcti_layer(0xA000A));
        assert!(!is_tcti_layer(0x921));
        assert_eq!(base(0x1C4), Some(VALUE), "PolicyPCR's digest mismatch, parameter 1");
        assert_eq!(base(0x99D), Some(POLICY_FAIL), "session 1");
        assert_eq!(base(0x12F), Some(AUTH_UNAVAILABLE));
    }

    #[test]
    fn codes_are_described_by_name_and_number() {
        assert_eq!(describe(0x922), "TPM_RC_RETRY (0x922): the TPM was not able to start the command");
        assert_eq!(describe(0x18B), "TPM_RC_HANDLE (0x18b): the handle is not correct for the use");
        assert_eq!(describe(0x2C3), "response code 0x2c3");
        assert_eq!(describe(0xA000A), "response code 0xa000a");
    }
}
