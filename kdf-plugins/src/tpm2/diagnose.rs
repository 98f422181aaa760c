//! Reading a failed tpm2-tools run's stderr (pure): the TSS log lines and `ERROR:` lines that
//! tpm2-tools 5.x print (the TSS writes errors and warnings to stderr by default) name either a TCTI
//! failure or a TPM response code. [`diagnose`] returns which, with the tool's own words quoted
//! sanitized; `explain` turns that into the [`super::Tpm2Error`] an operator reads. Stdout, where the
//! IKM travels, is never read here.

use super::rc;

/// How much of a tool's error line is quoted.
pub(crate) const QUOTE_LEN: usize = 240;

/// What a failed tool's stderr says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Diagnosis {
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
pub fn diagnose(stderr: &str) -> Diagnosis {
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
}
