//! Answer-key batches from untrusted bytes, decoded as `POST /v1/answer-keys` does up to the
//! gate (JSON or a request frame, descriptors, blob markers resolved, rid sets counted and
//! materialised when small): never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ghostpii_keyhost::answer_keys::decode_untrusted(data, 1 << 12);
});
