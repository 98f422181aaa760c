//! A KDF plug-in's stdout through `parse_ikm_line` (ikm-v1) and `parse_edgex_output` (EdgeX hook).
//!
//! Properties:
//! - neither parser panics;
//! - an accepted IKM is `Ikm::MIN_LEN..=Ikm::MAX_LEN` bytes and is exactly the hex that was printed
//!   (ikm-v1: the whole output less one trailing newline; edgex: the first line, either case);
//! - ikm-v1 is stricter than edgex: whatever ikm-v1 accepts, edgex accepts with the same bytes.

#![no_main]

use kdf_plugins::output::{parse_edgex_output, parse_ikm_line};
use kdf_plugins::Ikm;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let v1 = parse_ikm_line(data);
    let edgex = parse_edgex_output(data);

    if let Ok(ikm) = &v1 {
        assert!((Ikm::MIN_LEN..=Ikm::MAX_LEN).contains(&ikm.len()), "ikm-v1 IKM of {} bytes", ikm.len());
        let line = data.strip_suffix(b"\n").unwrap_or(data);
        assert_eq!(hex::encode(ikm.expose()).as_bytes(), line, "ikm-v1 IKM is not the printed hex");
        match &edgex {
            Ok(other) => assert_eq!(other.expose(), ikm.expose(), "edgex and ikm-v1 disagree"),
            Err(e) => panic!("ikm-v1 accepted but edgex refused: {e}"),
        }
    }

    if let Ok(ikm) = &edgex {
        assert!((Ikm::MIN_LEN..=Ikm::MAX_LEN).contains(&ikm.len()), "edgex IKM of {} bytes", ikm.len());
        let line = data.split(|&b| b == b'\n').next().unwrap_or_default();
        assert_eq!(hex::encode(ikm.expose()).as_bytes(), line.to_ascii_lowercase(), "edgex IKM is not the first line");
    }
});
