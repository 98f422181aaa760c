//! `edgeseal.yaml` loading (`security_bootstrap::config::Config::parse`) on arbitrary text: the YAML
//! parser, every section's `Deserialize` and validation, and the cross-section checks.
//!
//! Properties besides "no panic":
//! - an error's line:column lies inside the text: line 1..=the last line (counting line breaks as
//!   YAML does: CR LF, LF and a lone CR; a text without a final break still ends on its last line),
//!   column >= 1, so the operator is sent to a real place;
//! - an accepted configuration can be turned into what the commands use (token-server rules, setup's
//!   service plans, the CA path) without panicking, and serializes to YAML that parses to it again.

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
            if let Ok(yaml) = serde_yaml_ng::to_string(&config) {
                assert_eq!(Config::parse(&yaml).ok().as_ref(), Some(&config), "{yaml}");
            }
        }
        Err(error) => {
            let (line, column) = (error.location.line, error.location.column);
            let breaks = text.replace("\r\n", "\n").chars().filter(|c| matches!(c, '\n' | '\r')).count();
            let last = breaks + usize::from(!text.ends_with(['\n', '\r'])).max(usize::from(breaks == 0));
            assert!((1..=last.max(1)).contains(&line), "line {line} of {last}: {error}");
            assert!(column >= 1, "column {column}: {error}");
            assert!(!error.to_string().is_empty(), "an error without a message");
        }
    }
});
