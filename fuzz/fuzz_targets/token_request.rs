//! The token server's request path: the `POST /v1/token` body and the `/proc` texts attestation
//! parses (`cgroup`, `stat`, `status`). No input may panic; a container id, when found, is 64
//! lowercase hex; a parsed request round-trips; from `status`, the `NSpid:` pids are those of the one
//! `NSpid:` line (all positive, at least one; none when the line is missing, repeated or has anything
//! else) and the effective uid is the second field of the first `Uid:` line.

#![no_main]

use libfuzzer_sys::fuzz_target;
use token_server::api::TokenRequest;
use token_server::attest::cgroup::{container_id, systemd_unit};
use token_server::attest::kernel::{
    is_kernel_thread, parse_effective_uid, parse_nspid, parse_nspid_depth, parse_start_time, parse_state,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = serde_json::from_slice::<TokenRequest>(data) {
        if let Some(service) = &request.service {
            let again: TokenRequest = serde_json::from_value(serde_json::json!({ "service": service })).unwrap();
            assert_eq!(again.service.as_deref(), Some(service.as_str()));
        }
    }
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(Some(id)) = container_id(text) {
        assert_eq!(id.len(), 64);
        assert!(id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert!(text.contains(&id));
    }
    let _ = systemd_unit(text);
    let _ = parse_start_time(text);
    let _ = parse_state(text);
    let first = |key: &str| text.lines().find_map(|l| l.strip_prefix(key));
    if let Some(uid) = parse_effective_uid(text) {
        let field = first("Uid:").and_then(|l| l.split_whitespace().nth(1));
        assert_eq!(field.and_then(|f| f.parse().ok()), Some(uid), "uid not from the Uid: line");
    }
    let nspid_lines: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("NSpid:")).collect();
    match parse_nspid(text) {
        Some(pids) => {
            assert_eq!(nspid_lines.len(), 1, "pids from a missing or repeated NSpid: line");
            let fields: Vec<&str> = nspid_lines[0].split_whitespace().collect();
            assert!(!pids.is_empty() && pids.iter().all(|p| *p > 0));
            assert_eq!(fields.iter().map(|f| f.parse::<u32>().ok()).collect::<Vec<_>>(), pids.iter().map(|p| Some(*p)).collect::<Vec<_>>());
            assert_eq!(parse_nspid_depth(text), Some(pids.len()));
        }
        None => {
            let well_formed = nspid_lines.len() == 1 && {
                let fields: Vec<&str> = nspid_lines[0].split_whitespace().collect();
                !fields.is_empty() && fields.iter().all(|f| f.parse::<u32>().is_ok_and(|p| p > 0))
            };
            assert!(!well_formed, "a well-formed NSpid: line was refused");
            assert_eq!(parse_nspid_depth(text), None);
        }
    }
    let _ = is_kernel_thread(text);
});
