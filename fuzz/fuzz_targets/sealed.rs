//! Sealed aggregates from untrusted bytes: `SealedAggregate::from_bytes` never panics, and what
//! it accepts re-encodes to something it accepts again.
#![no_main]
use ghostpii_core::sealed::SealedAggregate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = SealedAggregate::from_bytes(data) {
        let again = SealedAggregate::from_bytes(&s.to_bytes()).expect("a decoded aggregate re-decodes");
        assert_eq!(again.to_bytes(), s.to_bytes());
    }
});
