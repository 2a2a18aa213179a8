//! Resource limits: rid sets counted before they are built, request-size limits, the
//! failed-authentication rate limit, and sums that could wrap.

use std::time::Instant;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ghostpii_keyhost::Limits;
use serde_json::json;

use crate::client::{raw, World};

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// `count` consecutive rids from `start`, in the run encoding.
fn run(start: u64, count: u64) -> String {
    let mut b = vec![1u8];
    varint(start, &mut b);
    varint(count - 1, &mut b);
    B64.encode(b)
}

#[test]
fn huge_rid_sets_are_refused_before_anything_is_built() {
    let w = World::new();
    w.grant("income", "aggregate", json!({}));
    let stranger = w.kh.identity("stranger", "member");
    let mut sum = w.sum(&w.rids(1), &[(&w.income, 1)]);
    sum["rids"] = json!(run(0, 1 << 33));
    let t = Instant::now();
    let r = w.kh.post(&stranger, "/v1/answer-keys", json!({"requests": [sum]}));
    assert_eq!((r.status, r.reason()), (413, "request_too_large"), "{}", r.body);
    assert!(t.elapsed().as_millis() < 100, "{:?}", t.elapsed());
    // under the per-request limit, over the 1,000 allocated rows: never materialised
    sum["rids"] = json!(run(w.start, 1 << 27));
    let t = Instant::now();
    let res = w.kh.answer(&stranger, json!([sum.clone()]));
    assert_eq!(res[0]["reason"], "permission_denied", "{}", res[0]);
    let res = w.kh.answer(&w.analyst, json!([sum]));
    assert_eq!(res[0]["reason"], "unknown_rids", "{}", res[0]);
    assert!(
        res[0]["message"]
            .as_str()
            .unwrap()
            .contains("names 134217728 row ids but only 1000"),
        "{}",
        res[0]
    );
    assert!(t.elapsed().as_millis() < 200, "{:?}", t.elapsed());
    // all descriptors together count
    let mut part = w.sum(&w.rids(1), &[(&w.income, 1)]);
    part["rids"] = json!(run(w.start, 1 << 27));
    let r = w.kh.post(
        &w.analyst,
        "/v1/answer-keys",
        json!({"requests": [part.clone(), part.clone(), part]}),
    );
    assert_eq!((r.status, r.reason()), (413, "request_too_large"));
}

#[test]
fn request_limits_and_failed_authentication_are_bounded() {
    let w = World::new_with(Limits {
        max_body_bytes: 20_000,
        max_descriptors: 3,
        auth_failures_per_minute: 3,
        ..Limits::default()
    });
    w.grant("income", "aggregate", json!({}));
    let d = w.sum(&w.rids(5), &[(&w.income, 1)]);
    let r =
        w.kh.post(&w.analyst, "/v1/answer-keys", json!({"requests": [d, d, d, d]}));
    assert_eq!((r.status, r.reason()), (413, "request_too_large"));
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("GHOSTPII_MAX_DESCRIPTORS"));
    let r = w.kh.post(
        &w.analyst,
        "/v1/answer-keys",
        json!({"requests": [d], "pad": "x".repeat(30_000)}),
    );
    assert_eq!((r.status, r.reason()), (413, "request_too_large"), "{}", r.body);
    assert_eq!(w.kh.answer(&w.analyst, json!([d, d, d])).len(), 3);
    let url = w.kh.url();
    for _ in 0..3 {
        assert_eq!(raw(&url, "GET", "/v1/whoami", Some("gpt_guess"), None).status, 401);
    }
    let r = raw(&url, "GET", "/v1/whoami", Some("gpt_guess"), None);
    assert_eq!((r.status, r.reason()), (429, "rate_limited"));
    assert!(r.head.to_ascii_lowercase().contains("retry-after: "), "{}", r.head);
}

#[test]
fn sums_that_could_wrap_are_refused() {
    let w = World::new();
    // age has no bounds: values anywhere in i64
    let res = w.kh.answer(
        &w.owner,
        json!([
            w.sum(&w.rids(3), &[(&w.age, i64::MAX)]),
            w.sum(&w.rids(1000), &[(&w.income, i64::MAX)]),
            w.sum(&w.rids(2), &[(&w.age, 1), (&w.age, -1)])
        ]),
    );
    assert_eq!(res[0]["reason"], "invalid_request", "{}", res[0]);
    assert!(res[0]["message"].as_str().unwrap().contains("wrap"));
    assert_eq!(res[1]["ok"], true, "income is bounded: 2^63 · 10^8 · 1000 < 2^127");
    assert_eq!(res[2]["ok"], true);
}
