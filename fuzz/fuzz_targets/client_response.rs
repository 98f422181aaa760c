//! `edgeseal_client::wire::parse_response`: the answer a service's client reads from the token
//! socket (status line, headers, Content-Length / chunked / to-end-of-stream body). No input may
//! panic; a complete answer has a status 200-599 and a body of at most `MAX_BODY`; an answer complete
//! before the end of the stream stays the same answer whatever follows it (so the client may stop
//! reading there), and a refused prefix is not accepted once more bytes arrive.

#![no_main]

use edgeseal_client::wire::{parse_response, Parsed, MAX_ANSWER, MAX_BODY};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let whole = parse_response(data, true);
    if let Ok(Parsed::Complete(response)) = &whole {
        assert!((200..=599).contains(&response.status));
        assert!(response.body.len() <= MAX_BODY);
    }
    assert!(!matches!(whole, Ok(Parsed::Incomplete)), "at end of stream an answer is complete or refused");
    // The first byte picks a split point: the bytes received so far, then all of them.
    let Some((&split, rest)) = data.split_first() else { return };
    let cut = usize::from(split).min(rest.len()) * rest.len().max(1) / 255;
    let cut = cut.min(rest.len());
    match parse_response(&rest[..cut], false) {
        Ok(Parsed::Complete(early)) => match parse_response(rest, false) {
            Ok(Parsed::Complete(later)) => assert_eq!(early, later, "more bytes changed a complete answer"),
            other => panic!("complete on a prefix, then {other:?}"),
        },
        // (Past MAX_ANSWER an incomplete answer is refused for its size alone.)
        Err(_) if rest.len() <= MAX_ANSWER => {
            assert!(parse_response(rest, false).is_err(), "a refused prefix was accepted later")
        }
        Err(_) => {}
        Ok(Parsed::Incomplete) => {}
    }
});
