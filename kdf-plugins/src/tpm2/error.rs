//! What can go wrong, and how a failed tool's stderr is read to tell which.
//!
//! `diagnose` is pure: it reads the TSS log lines and `ERROR:` lines that tpm2-tools 5.x print (the TSS
//! writes errors and warnings to stderr by default) and returns the TCTI failure or the TPM response
//! code. [`Tpm2Error`] is what the plug-in reports: one line each, saying what to do. No variant ever
//! carries tool stdout, which is where the IKM travels.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use super::params::{KeySource, PersistentHandle, Tcti};

/// How much of a tool's error line is quoted.
const QUOTE_LEN: usize = 240;

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
    #[error("the TPM stayed busy ({code}: {text}) until the plug-in's deadline; try again later")]
    Busy {
        /// The response code.
        code: ResponseCode,
        /// The TSS's description.
        text: String,
    },
    /// A tool got no answer in time and was killed.
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
    /// Any other TPM or TSS failure, quoted.
    #[error("{tool} failed: {detail}")]
    Tool {
        /// The tool.
        tool: &'static str,
        /// Its error line, or its exit status.
        detail: String,
    },
    /// A tool succeeded but printed something unexpected (never quoted).
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

/// TPM 2.0 response codes the plug-in acts on (TPM 2.0 Part 2, §6.6), in their base form.
pub(crate) mod rc {
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
}

/// What a failed tool's stderr says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Diagnosis {
    /// The TCTI could not reach a TPM (connect or open failed).
    Unreachable(String),
    /// The TCTI library for the name could not be loaded.
    TctiNotFound,
    /// The TCTI library refused its configuration.
    TctiConfig(String),
    /// A response code, and the tool's line describing it.
    Code {
        /// The code as printed.
        code: u32,
        /// The `ERROR: Esys_…(0x…) - …` line, sanitized.
        line: String,
    },
    /// Something else: the last error line, sanitized (may be empty).
    Other(String),
}

/// Reads a failed tool's stderr.
pub(crate) fn diagnose(stderr: &str) -> Diagnosis {
    let lines: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    for line in &lines {
        if let Some(reason) = connect_failure(line) {
            return Diagnosis::Unreachable(reason);
        }
    }
    if let Some((code, line)) = response_code(&lines) {
        if rc::is_tcti_layer(code) {
            return Diagnosis::Unreachable(format!("the connection to the TPM failed ({line})"));
        }
        return Diagnosis::Code { code, line };
    }
    if lines.iter().any(|l| l.contains("Could not initialize TCTI file")) {
        // The TCTI's own complaint, if it made one before the loader's generic lines.
        let own = lines
            .iter()
            .find(|l| l.contains(":tcti:") && !l.contains("tctildr") && !l.contains("Could not initialize TCTI file"));
        let detail =
            own.map_or_else(|| "the TCTI library did not accept it".to_owned(), |l| quote(strip_log_prefix(l)));
        return Diagnosis::TctiConfig(detail);
    }
    if lines.iter().any(|l| l.contains("Failed to instantiate TCTI") || l.contains("Could not load tcti")) {
        return Diagnosis::TctiNotFound;
    }
    let last = lines.iter().rev().find(|l| l.starts_with("ERROR")).or(lines.last()).map_or("", |l| l);
    Diagnosis::Other(quote(strip_log_prefix(last)))
}

/// A TCTI's "cannot connect/open" log line, as a short reason.
fn connect_failure(line: &str) -> Option<String> {
    // tcti-swtpm / tcti-mssim: "socket_connect() Failed to connect to host 127.0.0.1, port 2321: errno 111: Connection refused"
    if let Some(rest) = line.split_once("Failed to connect to host ").map(|(_, r)| r) {
        let (target, why) = rest.split_once(": errno ").unwrap_or((rest, ""));
        let why = why.split_once(": ").map_or(why, |(_, text)| text).trim();
        let target = target.replace(", port ", ":");
        return Some(quote(&if why.is_empty() {
            format!("cannot connect to {target}")
        } else {
            format!("cannot connect to {target}: {}", why.to_lowercase())
        }));
    }
    // tcti-device: "Failed to open specified TCTI device file /dev/tpmrm0: No such file or directory"
    if let Some(rest) = line.split_once("Failed to open specified TCTI device file ").map(|(_, r)| r) {
        return Some(quote(&format!("cannot open {}", lowercase_reason(rest))));
    }
    // tcti-tabrmd: "Failed to connect to tabrmd …"
    if line.contains("Failed to connect to tabrmd") || line.contains("Failed to get D-Bus connection") {
        return Some(quote(strip_log_prefix(line)));
    }
    None
}

/// `path: Reason` → `path: reason`.
fn lowercase_reason(text: &str) -> String {
    match text.rsplit_once(": ") {
        Some((what, why)) => format!("{what}: {}", why.to_lowercase()),
        None => text.to_owned(),
    }
}

/// The first response code on an error line: `Esys_HMAC(0x921) - …` or `ErrorCode (0x00000921)`.
fn response_code(lines: &[&str]) -> Option<(u32, String)> {
    let mut found: Option<u32> = None;
    for line in lines.iter().filter(|l| l.starts_with("ERROR")) {
        let Some(code) = hex_in_parens(line) else { continue };
        let code = *found.get_or_insert(code);
        // Prefer the tool's own summary line for the quote: `ERROR: Esys_HMAC(0x921) - tpm:warn(2.0): …`.
        if line.starts_with("ERROR: ") && line.contains(") - ") && hex_in_parens(line) == Some(code) {
            return Some((code, quote(strip_log_prefix(line))));
        }
    }
    found.map(|code| (code, format!("TSS response code {code:#x}")))
}

/// The first `(0x…)` in a line, parsed.
fn hex_in_parens(line: &str) -> Option<u32> {
    let mut rest = line;
    while let Some(start) = rest.find("(0x") {
        let after = &rest[start + 3..];
        if let Some(end) = after.find(')') {
            if let Ok(code) = u32::from_str_radix(&after[..end], 16) {
                return Some(code);
            }
        }
        rest = after;
    }
    None
}

/// Drops `ERROR: ` or the TSS's `ERROR:tcti:src/…:123:function() ` prefix.
fn strip_log_prefix(line: &str) -> &str {
    let line = line.strip_prefix("ERROR: ").unwrap_or(line);
    match line.find("() ") {
        Some(i) if line.starts_with("ERROR:") || line.starts_with("WARNING:") => &line[i + 3..],
        _ => line,
    }
    .trim()
}

/// A bounded, single-line, control-character-free quote.
pub(crate) fn quote(text: &str) -> String {
    let mut out: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).take(QUOTE_LEN).collect();
    if text.chars().count() > QUOTE_LEN {
        out.push('…');
    }
    out.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFUSED: &str = "\
WARNING:tcti:src/util/io.c:262:socket_connect() Failed to connect to host 127.0.0.1, port 18350: errno 111: Connection refused
ERROR:tcti:src/tss2-tcti/tcti-swtpm.c:614:Tss2_Tcti_Swtpm_Init() Cannot connect to swtpm TPM socket
ERROR:tcti:src/tss2-tcti/tctildr-dl.c:154:tcti_from_file() Could not initialize TCTI file: swtpm
ERROR:tcti:src/tss2-tcti/tctildr.c:428:Tss2_TctiLdr_Initialize_Ex() Failed to instantiate TCTI
ERROR: Could not load tcti, got: \"swtpm:host=127.0.0.1,port=18350\"
";
    const NO_DEVICE: &str = "\
ERROR:tcti:src/tss2-tcti/tcti-device.c:452:Tss2_Tcti_Device_Init() Failed to open specified TCTI device file /dev/tpmrm0: No such file or directory
ERROR:tcti:src/tss2-tcti/tctildr-dl.c:154:tcti_from_file() Could not initialize TCTI file: device
ERROR:tcti:src/tss2-tcti/tctildr.c:428:Tss2_TctiLdr_Initialize_Ex() Failed to instantiate TCTI
ERROR: Could not load tcti, got: \"device:/dev/tpmrm0\"
";
    const UNKNOWN_TCTI: &str = "\
ERROR:tcti:src/tss2-tcti/tctildr.c:428:Tss2_TctiLdr_Initialize_Ex() Failed to instantiate TCTI
ERROR: Could not load tcti, got: \"bogus:x\"
";
    const BAD_CONFIG: &str = "\
ERROR:tcti:src/tss2-tcti/tctildr-dl.c:154:tcti_from_file() Could not initialize TCTI file: swtpm
ERROR:tcti:src/tss2-tcti/tctildr.c:428:Tss2_TctiLdr_Initialize_Ex() Failed to instantiate TCTI
ERROR: Could not load tcti, got: \"swtpm:host=127.0.0.1,port=abc\"
";
    const LOCKOUT: &str = "\
WARNING:esys:src/tss2-esys/api/Esys_HMAC_Start.c:319:Esys_HMAC_Start_Finish() Received TPM Error
ERROR:esys:src/tss2-esys/api/Esys_HMAC_Start.c:114:Esys_HMAC_Start() Esys Finish ErrorCode (0x00000921)
ERROR: Esys_HMAC(0x921) - tpm:warn(2.0): authorizations for objects subject to DA protection are not allowed at this time because the TPM is in DA lockout mode
ERROR: Unable to run tpm2_hmac
";
    const NO_HANDLE: &str = "\
WARNING:esys:src/tss2-esys/api/Esys_ReadPublic.c:320:Esys_ReadPublic_Finish() Received TPM Error
ERROR:esys:src/tss2-esys/esys_tr.c:278:Esys_TR_FromTPMPublic_Finish() Error ReadPublic ErrorCode (0x0000018b)
ERROR:esys:src/tss2-esys/esys_tr.c:398:Esys_TR_FromTPMPublic() Error TR FromTPMPublic ErrorCode (0x0000018b)
ERROR: Esys_TR_FromTPMPublic(0x18B) - tpm:handle(1):the handle is not correct for the use
ERROR: Invalid key handle authorization
ERROR: Unable to run tpm2_hmac
";
    const OBJECT_MEMORY: &str = "\
WARNING:esys:src/tss2-esys/api/Esys_ContextLoad.c:279:Esys_ContextLoad_Finish() Received TPM Error
ERROR:esys:src/tss2-esys/api/Esys_ContextLoad.c:93:Esys_ContextLoad() Esys Finish ErrorCode (0x00000902)
ERROR: Esys_ContextLoad(0x902) - tpm:warn(2.0): out of memory for object contexts
ERROR: Incorrect handle value, got: \"k1.ctx\", expected expected [o|p|e|n|l] or a handle number
ERROR: Cannot make sense of object context \"k1.ctx\"
ERROR: Unable to run tpm2_hmac
";
    const LOST: &str = "\
ERROR:tcti:src/tss2-tcti/tcti-swtpm.c:141:tcti_swtpm_receive() Failed to get response size fd 3, got errno 104: Connection reset by peer
ERROR:esys:src/tss2-esys/api/Esys_HMAC.c:100:Esys_HMAC() Esys Finish ErrorCode (0x000a000a)
ERROR: Esys_HMAC(0xA000A) - tcti:IO failure
ERROR: Unable to run tpm2_hmac
";

    #[test]
    fn tcti_failures_are_told_apart() {
        assert_eq!(
            diagnose(REFUSED),
            Diagnosis::Unreachable("cannot connect to 127.0.0.1:18350: connection refused".into())
        );
        assert_eq!(
            diagnose(NO_DEVICE),
            Diagnosis::Unreachable("cannot open /dev/tpmrm0: no such file or directory".into())
        );
        assert_eq!(diagnose(UNKNOWN_TCTI), Diagnosis::TctiNotFound);
        assert_eq!(diagnose(BAD_CONFIG), Diagnosis::TctiConfig("the TCTI library did not accept it".into()));
        match diagnose(LOST) {
            Diagnosis::Unreachable(reason) => assert!(reason.contains("tcti:IO failure"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn response_codes_are_read_from_the_error_lines() {
        let cases: &[(&str, u32, &str)] = &[
            (LOCKOUT, 0x921, "Esys_HMAC(0x921) - tpm:warn(2.0): authorizations"),
            (NO_HANDLE, 0x18B, "Esys_TR_FromTPMPublic(0x18B) - tpm:handle(1)"),
            (OBJECT_MEMORY, 0x902, "Esys_ContextLoad(0x902) - tpm:warn(2.0): out of memory"),
        ];
        for (stderr, want_code, want_line) in cases {
            match diagnose(stderr) {
                Diagnosis::Code { code, line } => {
                    assert_eq!(code, *want_code);
                    assert!(line.starts_with(want_line), "{line}");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn base_codes_drop_handle_session_and_parameter_numbers() {
        assert_eq!(rc::base(0x18B), Some(rc::HANDLE));
        assert_eq!(rc::base(0x98E), Some(rc::AUTH_FAIL));
        assert_eq!(rc::base(0x9A2), Some(rc::BAD_AUTH));
        assert_eq!(rc::base(0x921), Some(rc::LOCKOUT));
        assert_eq!(rc::base(0x902), Some(rc::OBJECT_MEMORY));
        assert_eq!(rc::base(0x14C), Some(rc::NV_DEFINED));
        assert_eq!(rc::base(0xA000A), None);
        assert!(rc::is_tcti_layer(0xA000A));
        assert!(!rc::is_tcti_layer(0x921));
    }

    #[test]
    fn anything_else_quotes_the_last_error_line_on_one_bounded_line() {
        let long = format!("ERROR: something odd\x1b[31m {}\n", "x".repeat(1000));
        match diagnose(&long) {
            Diagnosis::Other(text) => {
                assert!(text.starts_with("something odd"), "{text}");
                assert!(!text.contains('\x1b') && !text.contains('\n'));
                assert!(text.chars().count() <= QUOTE_LEN + 1);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(diagnose(""), Diagnosis::Other(String::new()));
    }

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
