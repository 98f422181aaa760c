//! TPM 2.0 response codes the plug-in acts on (TPM 2.0 Part 2, §6.6), in their base form, and how to
//! reduce a code as a tool prints it to that form (pure).

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
    }
}
