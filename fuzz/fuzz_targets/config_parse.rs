//! `edgeseal.yaml` loading (`security_bootstrap::config::Config::parse`) on arbitrary text: the YAML
//! parser, every section's `Deserialize` and validation, and the cross-section checks.
//!
//! Properties besides "no panic":
//! - an error's line:column, when given, lies inside the text (line 1..=breaks+1 counting line breaks
//!   as YAML does: CR LF, LF, a lone CR, and one implied at the end; column >= 1), so the operator is
//!   sent to a real place;
//! - an accepted configuration can be turned into what the commands use (token-server rules, setup's
//!   service plans, the CA path) without panicking.

#![no_main]

use libfuzzer_sys::fuzz_target;
use security_bootstrap::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Config::parse(text) {
        Ok(config) => {
            let _ = config.service_rules();
            let _ = config.service_setups();
            let _ = config.ca_cert();
        }
        Err((Some((line, column)), message)) => {
            // YAML counts CR LF, LF and a lone CR as line breaks (YAML 1.2 §5.4), and the scanner reads
            // a text that does not end with one as if it did: the end of the text is on the line after
            // the last (possibly implied) break.
            let breaks = text.replace("\r\n", "\n").chars().filter(|c| matches!(c, '\n' | '\r')).count();
            let implied = usize::from(!text.is_empty() && !text.ends_with(['\n', '\r']));
            let lines = breaks + implied + 1;
            assert!((1..=lines).contains(&line), "line {line} of {lines}: {message}");
            assert!(column >= 1, "column {column}: {message}");
        }
        Err((None, message)) => assert!(!message.is_empty(), "an error without a message"),
    }
});
