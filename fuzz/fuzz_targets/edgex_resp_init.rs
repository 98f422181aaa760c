//! An EdgeX `resp-init.json` through `RespInit::parse`, then `shares` with a hook (IKM `[1; 32]`, salt
//! `[2; 32]`) and without one.
//!
//! Properties:
//! - nothing panics;
//! - the hook only matters for encrypted files: when `shares(Some(..))` gives plaintext shares,
//!   `shares(None)` gives the same; when the file `is_encrypted`, `shares(None)` is `NeedsHook`.

#![no_main]

use edgeseal_fuzz::{EDGEX_IKM, EDGEX_SALT};
use kdf_plugins::Ikm;
use libfuzzer_sys::fuzz_target;
use secretstore_setup::edgex_import::{EdgexError, Layout, RespInit};

fuzz_target!(|data: &[u8]| {
    let Ok(resp) = RespInit::parse(data) else {
        return;
    };
    let ikm = Ikm::new(vec![EDGEX_IKM; 32]);
    let with_hook = resp.shares(Some((&ikm, &EDGEX_SALT)));
    let without = resp.shares(None);

    if resp.is_encrypted() {
        assert_eq!(without.as_ref().err(), Some(&EdgexError::NeedsHook), "encrypted file without a hook");
    }
    if let Ok((shares, Layout::Plain)) = &with_hook {
        match &without {
            Ok((same, Layout::Plain)) => assert_eq!(same, shares, "plain shares depend on the hook"),
            other => panic!("plain shares with a hook, but without one: {:?}", other.as_ref().map(|r| r.1)),
        }
    }
});
