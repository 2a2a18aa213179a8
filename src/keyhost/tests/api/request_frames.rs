//! Request frames (`Content-Type: application/vnd.ghostpii.answers`): rid sets as raw blobs
//! answer exactly as their base64 in JSON, may be mixed with base64 in one request, are bounded
//! as JSON is, are idempotent over their bytes, and malformed frames are 400.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ghostpii_core::frame::{self, MEDIA_TYPE};
use ghostpii_core::RidSet;
use ghostpii_keyhost::Limits;
use serde_json::{json, Value};

use crate::client::{send, Resp, World};

const PATH: &str = "/v1/answer-keys";

/// POST `body` as a request frame, with extra headers.
fn post_frame(w: &World, token: &str, body: &[u8], headers: &[(&str, &str)]) -> Resp {
    send(&w.kh.url(), "POST", PATH, Some(token), Some(MEDIA_TYPE), body, headers).unwrap()
}

/// POST a JSON request with extra headers.
fn post_json(w: &World, token: &str, requests: &Value, headers: &[(&str, &str)]) -> Resp {
    let body = json!({ "requests": requests }).to_string();
    send(
        &w.kh.url(),
        "POST",
        PATH,
        Some(token),
        Some("application/json"),
        body.as_bytes(),
        headers,
    )
    .unwrap()
}

/// A request frame of `requests` and `blobs` (blob i is the i-th).
fn frame_of(requests: &Value, blobs: &[Vec<u8>]) -> Vec<u8> {
    let blobs: Vec<&[u8]> = blobs.iter().map(Vec::as_slice).collect();
    frame::encode(&json!({ "requests": requests }), &blobs).unwrap()
}

/// The blob marker of blob `i`, of `bytes`.
fn marker(i: usize, bytes: &[u8]) -> Value {
    json!({"$blob": i, "len": bytes.len()})
}

/// Results with their receipts removed (two requests get different audit entries), each
/// checked to be issued.
fn issued(results: &Value) -> Vec<Value> {
    results
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["ok"], json!(true), "{r}");
            let mut r = r.clone();
            r.as_object_mut().unwrap().remove("receipt");
            r
        })
        .collect()
}

fn audit_ops(w: &World) -> Vec<String> {
    let log = w.kh.get(&w.kh.admin, "/v1/audit?identity=analyst").ok();
    log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["operation"].as_str().unwrap().to_owned())
        .collect()
}

/// A world with a `name` column (group facet) and 1000 rows allocated to it and to `income`;
/// the analyst may group `name` and aggregate `income`. Returns the column id and the first rid.
fn with_group_column(w: &World) -> (i64, u64) {
    let r =
        w.kh.post(
            &w.owner,
            "/v1/datasets/patrons/columns",
            json!({"name": "name", "dtype": "string", "facets": ["group"]}),
        )
        .ok();
    let name = r["column_id"].as_i64().unwrap();
    let alloc =
        w.kh.post(
            &w.owner,
            "/v1/datasets/patrons/rids",
            json!({"count": 1000, "columns": [w.income.id, name]}),
        )
        .ok();
    w.grant("name", "group", json!({}));
    w.grant("income", "aggregate", json!({}));
    (name, alloc["start"].as_u64().unwrap())
}

fn pads(w: &World, column_id: i64, rids: Value) -> Value {
    json!({"op": "pads", "dataset_id": w.dataset_id, "column_id": column_id, "epoch": 1,
           "facet": "group", "rids": rids})
}

fn sums(w: &World, groups: Vec<Value>) -> Value {
    json!({"op": "sums", "dataset_id": w.dataset_id,
           "terms": [{"column_id": w.income.id, "epoch": w.income.epoch, "weight": 1}],
           "groups": groups})
}

/// Disjoint groups of different sizes, scattered (so their encodings differ in length).
fn groups_from(start: u64, n: usize) -> Vec<RidSet> {
    (0..n as u64)
        .map(|g| {
            let base = start + 100 * g;
            RidSet::from_sorted(&(base..base + 20 + 7 * g).filter(|r| r % 3 != 1).collect::<Vec<_>>())
        })
        .collect()
}

fn b64(s: &RidSet) -> Value {
    json!(s.to_base64())
}

#[test]
fn framed_pads_and_sums_answer_exactly_as_their_json_requests() {
    let w = World::new();
    let (name, start) = with_group_column(&w);
    let scattered = RidSet::from_sorted(&(start..start + 600).filter(|r| r % 5 != 2).collect::<Vec<_>>());
    let groups = groups_from(start, 4);
    let json_requests = json!([
        pads(&w, name, b64(&scattered)),
        sums(&w, groups.iter().map(b64).collect())
    ]);
    let want = post_json(&w, &w.analyst, &json_requests, &[]).ok();
    // blob 0 is the last group, blob 4 the pads' rids: markers out of tree order
    let mut blobs: Vec<Vec<u8>> = vec![groups[3].to_bytes()];
    blobs.extend(groups[..3].iter().map(RidSet::to_bytes));
    blobs.push(scattered.to_bytes());
    let framed_requests = json!([
        pads(&w, name, marker(4, &blobs[4])),
        sums(
            &w,
            vec![
                marker(1, &blobs[1]),
                marker(2, &blobs[2]),
                marker(3, &blobs[3]),
                marker(0, &blobs[0])
            ]
        )
    ]);
    let body = frame_of(&framed_requests, &blobs);
    let got = post_frame(&w, &w.analyst, &body, &[]).ok();
    assert_eq!(issued(&got["results"]), issued(&want["results"]));
    let pads_bytes = B64.decode(got["results"][0]["pads"].as_str().unwrap()).unwrap();
    assert_eq!(pads_bytes.len(), 16 * scattered.len() as usize);
    let keys = B64.decode(got["results"][1]["keys"].as_str().unwrap()).unwrap();
    let per_group: Vec<&[u8]> = keys.chunks(16).collect();
    assert_eq!(per_group.len(), 4);
    assert!(
        per_group
            .iter()
            .enumerate()
            .all(|(i, k)| per_group[..i].iter().all(|o| o != k)),
        "the groups' keys differ, so an order mix-up would show"
    );
    // the same request framed, answered framed: the same bytes, raw
    let raw = post_frame(&w, &w.analyst, &body, &[("Accept", MEDIA_TYPE)]);
    assert_eq!(raw.status, 200);
    let (head, answer_blobs) = frame::decode(&raw.bytes).unwrap();
    assert_eq!(head["results"][0]["pads"], json!({"$blob": 0, "len": pads_bytes.len()}));
    assert_eq!((answer_blobs[0], answer_blobs[1]), (&pads_bytes[..], &keys[..]));
}

#[test]
fn one_request_mixes_base64_and_blobs() {
    let w = World::new();
    w.grant("income", "decrypt", json!({}));
    let a = RidSet::from_sorted(&(w.start..w.start + 300).filter(|r| r % 4 != 0).collect::<Vec<_>>());
    let twice = RidSet::from_sorted(&(w.start + 10..w.start + 40).filter(|r| r % 4 != 0).collect::<Vec<_>>());
    let d = RidSet::from_unsorted(&[w.start + 999, w.start + 5, w.start + 500]);
    let groups = groups_from(w.start, 4);
    let sum = |rids: Value, repeat: Value| {
        let mut s = w.sum(&a, &[(&w.income, 3), (&w.age, -1)]);
        s["rids"] = rids;
        s["repeats"] = json!([{"k": 2, "rids": repeat}]);
        s
    };
    let gram = |rids: Value, repeat: Value| {
        json!({"op": "gram", "dataset_id": w.dataset_id, "rids": rids, "repeats": [{"k": 3, "rids": repeat}],
               "entries": [{"column_id": w.income.id, "epoch": w.income.epoch},
                           {"column_id": w.age.id, "epoch": w.age.epoch}]})
    };
    let score = |rids: Value| {
        json!({"op": "score", "dataset_id": w.dataset_id, "rids": rids,
               "terms": [{"column_id": w.income.id, "epoch": w.income.epoch, "weight": 2},
                         {"column_id": w.age.id, "epoch": w.age.epoch, "weight": -3}]})
    };
    let mut decrypt = w.decrypt(&d, &w.income, "val");
    let json_requests = json!([
        sum(b64(&a), b64(&twice)),
        sum(b64(&a), b64(&twice)),
        decrypt.clone(),
        sums(&w, groups.iter().map(b64).collect()),
        gram(b64(&a), b64(&twice)),
        score(b64(&d))
    ]);
    let want = post_json(&w, &w.owner, &json_requests, &[]).ok();
    let blobs = vec![
        a.to_bytes(),
        twice.to_bytes(),
        d.to_bytes(),
        groups[1].to_bytes(),
        groups[3].to_bytes(),
        a.to_bytes(),
        d.to_bytes(),
    ];
    decrypt["rids"] = marker(2, &blobs[2]);
    let framed_requests = json!([
        sum(marker(0, &blobs[0]), b64(&twice)),
        sum(b64(&a), marker(1, &blobs[1])),
        decrypt,
        sums(
            &w,
            vec![
                b64(&groups[0]),
                marker(3, &blobs[3]),
                b64(&groups[2]),
                marker(4, &blobs[4])
            ]
        ),
        gram(marker(5, &blobs[5]), b64(&twice)),
        score(marker(6, &blobs[6]))
    ]);
    let got = post_frame(&w, &w.owner, &frame_of(&framed_requests, &blobs), &[]).ok();
    let (got, want) = (issued(&got["results"]), issued(&want["results"]));
    assert_eq!(got, want);
    assert_eq!(
        got[0], got[1],
        "blob support, base64 repeats = base64 support, blob repeats"
    );
    assert_eq!(B64.decode(got[2]["keys"].as_str().unwrap()).unwrap().len(), 3 * 32);
    assert_eq!(B64.decode(got[5]["keys"].as_str().unwrap()).unwrap().len(), 3 * 16);
    // the audit entries name the same rid sets either way
    let log = w.kh.get(&w.kh.admin, "/v1/audit?identity=olivia").ok();
    let digests = |op: &str| -> Vec<Value> {
        log["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["operation"] == op)
            .map(|e| e["rid_digest"].clone())
            .collect()
    };
    let sums_digests = digests("sums");
    assert_eq!(sums_digests.len(), 2);
    assert_eq!(sums_digests[0], sums_digests[1]);
    assert_eq!(digests("decrypt"), vec![json!(d.digest_hex()); 2]);
}

/// One valid request frame (a `sum` over a blob) and the offset of its blob.
fn valid_frame(w: &World) -> (Vec<u8>, usize) {
    let rids = w.rids(10).to_bytes();
    let mut sum = w.sum(&w.rids(10), &[(&w.income, 1)]);
    sum["rids"] = marker(0, &rids);
    let f = frame_of(&json!([sum]), std::slice::from_ref(&rids));
    let at = f.len() - rids.len();
    (f, at)
}

/// A frame of raw JSON text and the bytes after it, with a correct header.
fn raw_frame(json: &str, rest: &[u8]) -> Vec<u8> {
    let mut f = frame::header(json.len() as u32).to_vec();
    f.extend_from_slice(json.as_bytes());
    f.extend_from_slice(rest);
    f
}

#[test]
fn malformed_frames_are_refused_with_400_naming_the_problem() {
    let w = World::new();
    w.grant("income", "aggregate", json!({}));
    let (good, at) = valid_frame(&w);
    let rid_bytes = good[at..].to_vec();
    let sum_with = |rids: Value| {
        let mut s = w.sum(&w.rids(10), &[(&w.income, 1)]);
        s["rids"] = rids;
        json!({ "requests": [s] }).to_string()
    };
    let missing = format!(
        "blob 0 ({} bytes, from byte 0 after the JSON) runs past the end",
        rid_bytes.len()
    );
    let mut cases: Vec<(&str, Vec<u8>, &str)> = Vec::new();
    let mut bad_magic = good.clone();
    bad_magic[..4].copy_from_slice(b"GPAQ");
    cases.push(("bad magic", bad_magic, "magic bytes"));
    let mut version = good.clone();
    version[4] = 2;
    cases.push(("wrong version", version, "frame version 2 is not supported"));
    let mut past_end = good.clone();
    let too_long = (good.len() as u32).to_le_bytes();
    past_end[5..9].copy_from_slice(&too_long);
    cases.push(("json_len past the end", past_end, "runs past the end of the frame"));
    cases.push((
        "short header",
        b"GPAK\x01\x00".to_vec(),
        "shorter than its 9-byte header",
    ));
    cases.push(("missing blob bytes", good[..at].to_vec(), &missing));
    let two = format!(
        r#"{{"requests":[{}],"more":[{{"$blob":0,"len":{n}}},{{"$blob":2,"len":{n}}}]}}"#,
        sum_with(json!(null)),
        n = rid_bytes.len()
    );
    cases.push((
        "missing blob index",
        raw_frame(&two, &[rid_bytes.clone(), rid_bytes.clone()].concat()),
        "blob index 2 is out of range",
    ));
    let mut trailing = good.clone();
    trailing.push(0);
    cases.push(("trailing bytes", trailing, "1 bytes follow the last blob"));
    let dup = format!(
        r#"{{"requests":[{}],"again":{{"$blob":0,"len":{}}}}}"#,
        sum_with(marker(0, &rid_bytes)),
        rid_bytes.len()
    );
    cases.push((
        "duplicate index",
        raw_frame(&dup, &[rid_bytes.clone(), rid_bytes.clone()].concat()),
        "blob 0 is marked more than once",
    ));
    let shorter = sum_with(json!({"$blob": 0, "len": rid_bytes.len() - 1}));
    cases.push((
        "len shorter than the blob",
        raw_frame(&shorter, &rid_bytes),
        "1 bytes follow the last blob",
    ));
    let longer = sum_with(json!({"$blob": 0, "len": rid_bytes.len() + 1}));
    cases.push((
        "len longer than the blob",
        raw_frame(&longer, &rid_bytes),
        "runs past the end of the frame",
    ));
    let huge = sum_with(json!({"$blob": 0, "len": u64::MAX}));
    cases.push((
        "len beyond any frame",
        raw_frame(&huge, &rid_bytes),
        "runs past the end of the frame",
    ));
    cases.push((
        "JSON that does not parse",
        raw_frame("{\"requests\": [", b""),
        "does not parse",
    ));
    cases.push((
        "JSON without requests",
        raw_frame("{\"descriptors\": []}", b""),
        "its JSON is not {\"requests\"",
    ));
    let bad_marker = sum_with(json!({"$blob": 0, "len": rid_bytes.len(), "extra": 1}));
    cases.push((
        "malformed marker",
        raw_frame(&bad_marker, &rid_bytes),
        "malformed blob marker",
    ));
    let before = audit_ops(&w).len();
    for (what, body, says) in &cases {
        let r = post_frame(&w, &w.analyst, body, &[]);
        assert_eq!((r.status, r.reason()), (400, "invalid_request"), "{what}: {}", r.body);
        let msg = r.body["error"]["message"].as_str().unwrap();
        assert!(msg.starts_with("malformed request frame: "), "{what}: {msg}");
        assert!(msg.contains(says), "{what}: {msg}");
    }
    // a blob marker in a JSON body
    let mut sum = w.sum(&w.rids(10), &[(&w.income, 1)]);
    sum["rids"] = marker(0, &rid_bytes);
    let r = post_json(&w, &w.analyst, &json!([sum]), &[]);
    assert_eq!((r.status, r.reason()), (400, "invalid_request"), "{}", r.body);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("blob markers are read only in a request frame"),
        "{}",
        r.body
    );
    assert_eq!(audit_ops(&w).len(), before, "a 400 is not an answer: nothing audited");
    // the valid frame is answered, and a sum over its blob equals the same sum in JSON
    let ok = post_frame(&w, &w.analyst, &good, &[]).ok();
    let json_sum = w.kh.answer(&w.analyst, json!([w.sum(&w.rids(10), &[(&w.income, 1)])]));
    assert_eq!(ok["results"][0]["key"], json_sum[0]["key"]);
    assert_eq!(ok["results"][0]["ok"], json!(true), "{}", ok["results"][0]);
}

#[test]
fn framed_retries_are_answered_from_the_record_and_other_blob_bytes_conflict() {
    let w = World::new();
    let (name, start) = with_group_column(&w);
    // two rid sets whose run encodings have the same length: only the blob bytes differ
    let first = RidSet::from_sorted(&(start + 1..start + 41).collect::<Vec<_>>());
    let other = RidSet::from_sorted(&(start + 2..start + 42).collect::<Vec<_>>());
    assert_eq!(first.to_bytes().len(), other.to_bytes().len());
    assert_ne!(first.to_bytes(), other.to_bytes());
    let groups = groups_from(start + 100, 2);
    let requests = |pads_rids: &RidSet| {
        let blobs = vec![pads_rids.to_bytes(), groups[0].to_bytes(), groups[1].to_bytes()];
        let r = json!([
            pads(&w, name, marker(0, &blobs[0])),
            sums(&w, vec![marker(1, &blobs[1]), marker(2, &blobs[2])])
        ]);
        frame_of(&r, &blobs)
    };
    let key = ("Idempotency-Key", "framed-retry-0123456789");
    let body = requests(&first);
    let answered = post_frame(&w, &w.analyst, &body, &[key]).ok();
    assert_eq!(issued(&answered["results"]).len(), 2);
    let ops_after_first = audit_ops(&w);
    let retried = post_frame(&w, &w.analyst, &body, &[key]).ok();
    // same receipts, and the pads and keys (recomputed from the frame's blobs) byte for byte
    assert_eq!(retried, answered);
    let count = |ops: &[String], op: &str| ops.iter().filter(|o| *o == op).count();
    let ops = audit_ops(&w);
    assert_eq!(ops, ops_after_first, "the retry is not audited");
    assert_eq!((count(&ops, "pads"), count(&ops, "sums")), (1, 1), "{ops:?}");
    // the retry answered framed: the same bytes
    let raw = post_frame(&w, &w.analyst, &body, &[key, ("Accept", MEDIA_TYPE)]);
    let (_, blobs) = frame::decode(&raw.bytes).unwrap();
    let pads_b64 = answered["results"][0]["pads"].as_str().unwrap();
    assert_eq!(blobs[0], &B64.decode(pads_b64).unwrap()[..]);
    // the same key with other blob bytes (the JSON identical): a conflict, nothing audited
    let changed = requests(&other);
    assert_eq!(changed.len(), body.len());
    let r = post_frame(&w, &w.analyst, &changed, &[key]);
    assert_eq!((r.status, r.reason()), (409, "conflict"), "{}", r.body);
    assert_eq!(audit_ops(&w), ops_after_first);
    // with a new key the changed frame is answered, and its pads are others
    let fresh = post_frame(
        &w,
        &w.analyst,
        &changed,
        &[("Idempotency-Key", "framed-retry-other-0123")],
    )
    .ok();
    assert_ne!(fresh["results"][0]["pads"], answered["results"][0]["pads"]);
}

#[test]
fn frames_are_bounded_as_json_bodies_are() {
    let w = World::new_with(Limits {
        max_body_bytes: 20_000,
        max_rids_per_request: 5_000,
        ..Limits::default()
    });
    w.grant("income", "aggregate", json!({}));
    let one = w.rids(10).to_bytes();
    let mut sum = w.sum(&w.rids(10), &[(&w.income, 1)]);
    sum["rids"] = marker(0, &one);
    // the body limit: 30,000 bytes of blob
    let pad = vec![0u8; 30_000];
    let big = frame_of(&json!([sum, {"pad": marker(1, &pad)}]), &[one.clone(), pad]);
    let r = post_frame(&w, &w.analyst, &big, &[]);
    assert_eq!((r.status, r.reason()), (413, "request_too_large"), "{}", r.body);
    // rid sets counted from their encoding: over the per-request limit (413), over the
    // allocated rows (unknown_rids), neither built
    let mut run = vec![1u8, 0];
    let mut n = 1u64 << 20;
    while n >= 0x80 {
        run.push((n as u8) | 0x80);
        n >>= 7;
    }
    run.push(n as u8);
    sum["rids"] = marker(0, &run);
    let huge = frame_of(&json!([sum]), &[run]);
    let r = post_frame(&w, &w.analyst, &huge, &[]);
    assert_eq!((r.status, r.reason()), (413, "request_too_large"), "{}", r.body);
    let over = RidSet::from_sorted(&(w.start..w.start + 2_000).collect::<Vec<_>>()).to_bytes();
    sum["rids"] = marker(0, &over);
    let r = post_frame(&w, &w.analyst, &frame_of(&json!([sum]), &[over]), &[]).ok();
    assert_eq!(r["results"][0]["reason"], json!("unknown_rids"), "{}", r["results"][0]);
    let msg = r["results"][0]["message"].as_str().unwrap();
    assert!(msg.contains("names 2000 row ids but only 1000"), "{msg}");
    // a malformed rid set in a blob is refused as in base64
    let junk = vec![7u8, 1, 2];
    sum["rids"] = marker(0, &junk);
    let r = post_frame(&w, &w.analyst, &frame_of(&json!([sum]), &[junk]), &[]).ok();
    assert_eq!(
        r["results"][0]["reason"],
        json!("invalid_request"),
        "{}",
        r["results"][0]
    );
    assert!(r["results"][0]["message"]
        .as_str()
        .unwrap()
        .contains("unknown rid set encoding 7"));
}
