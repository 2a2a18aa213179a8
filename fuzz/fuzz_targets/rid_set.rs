//! Rid sets from untrusted bytes: `RidSet::from_bytes` / `from_base64` never panic; where they
//! accept, the count read from the encoding is the set's size and the set round-trips.
#![no_main]
use ghostpii_core::{rid_encoding, RidSet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let counted = rid_encoding::cardinality(data);
    // materialise only what a keyhost would (the gate bounds the count first)
    if counted.as_ref().is_ok_and(|n| *n <= 1 << 12) {
        let set = RidSet::from_bytes(data).expect("a counted encoding decodes");
        assert_eq!(Some(set.len()), counted.ok(), "the count from the encoding is the set's size");
        let canonical = set.to_bytes();
        assert_eq!(RidSet::from_bytes(&canonical).expect("canonical decodes"), set);
        assert_eq!(rid_encoding::cardinality(&canonical).ok(), Some(set.len()));
    } else if counted.is_err() {
        assert!(RidSet::from_bytes(data).is_err(), "what cannot be counted is refused");
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if s.len() < 64 {
            let _ = RidSet::from_base64(s);
        }
    }
});
