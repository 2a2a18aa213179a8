//! Rid sets from untrusted bytes: `RidSet::from_bytes` / `from_base64` never panic; what cannot
//! be counted is refused; where a set decodes, the count read from its encoding is its size and
//! it round-trips through its canonical encoding.
#![no_main]
use ghostpii_core::{rid_encoding, RidSet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match rid_encoding::cardinality(data) {
        // materialise only what a keyhost would (the gate bounds the count first)
        Ok(n) if n <= 1 << 12 => {
            if let Ok(set) = RidSet::from_bytes(data) {
                assert_eq!(set.len(), n, "the count from the encoding is the set's size");
                let canonical = set.to_bytes();
                assert_eq!(RidSet::from_bytes(&canonical).expect("canonical decodes"), set);
                assert_eq!(rid_encoding::cardinality(&canonical).ok(), Some(n));
            }
        }
        Ok(_) => {}
        Err(_) => assert!(RidSet::from_bytes(data).is_err(), "what cannot be counted is refused"),
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(set) = RidSet::from_base64_bounded(s, 1 << 12) {
            assert!(set.len() <= 1 << 12);
        }
    }
});
