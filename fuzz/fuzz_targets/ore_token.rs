//! Comparison (ORE) tokens from untrusted bytes: `OreToken::parse` never panics.
#![no_main]
use ghostpii_core::OreToken;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = OreToken::parse(data, &ghostpii_core::meta::key_binding(1, 2, 1));
});
