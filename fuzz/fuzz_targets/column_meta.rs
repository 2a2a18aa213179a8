//! Column metadata (Arrow extension metadata, JSON) from untrusted bytes: never a panic, and
//! accepted metadata round-trips through its JSON.
#![no_main]
use ghostpii_core::ColumnMeta;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(m) = ColumnMeta::from_json(s) {
            let again = ColumnMeta::from_json(&m.to_json()).expect("metadata re-parses");
            assert_eq!(again.to_json(), m.to_json());
        }
    }
});
