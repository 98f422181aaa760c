//! The token server's request path: the `POST /v1/token` body and the `/proc` texts attestation
//! parses (`cgroup`, `stat`, `status`). No input may panic; a container id, when found, is 64
//! lowercase hex; a parsed request round-trips; from `status`, the pid-namespace depth is the number
//! of fields on the first `NSpid:` line (at least 1) and the effective uid is the second field of the
//! first `Uid:` line.

#![no_main]

use libfuzzer_sys::fuzz_target;
use token_server::api::TokenRequest;
use token_server::attest::cgroup::{container_id, systemd_unit};
use token_server::attest::kernel::{parse_effective_uid, parse_nspid_depth, parse_start_time, parse_state};

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
    match parse_nspid_depth(text) {
        Some(depth) => {
            assert!(depth >= 1);
            assert_eq!(first("NSpid:").map(|l| l.split_whitespace().count()), Some(depth));
        }
        None => assert!(first("NSpid:").is_none_or(|l| l.split_whitespace().count() == 0)),
    }
});
