//! The audit sequencer and receipts, on real `ghostpii-keyhost` processes over one SQLite data
//! directory: a sequencer killed mid-batch (the process aborts after writing part of a batch,
//! before the commit) leaves the log and the queue as they were, and the next keyhost
//! integrates everything; a receipt whose entry is not in the log after the promised delay
//! fails verification.

#[allow(dead_code)]
#[path = "api/client.rs"]
mod client;
#[path = "api/process.rs"]
mod process;

mod backend {
    pub fn new_database() -> Option<String> {
        None
    }
}

use std::path::Path;

use ghostpii_core::RidSet;
use serde_json::{json, Value};

use client::try_raw;
use process::KeyhostProcess;

/// A keyhost process on the test's data directory (SQLite), with `env` set.
fn start_keyhost(dir: &Path, env: &[(&str, &str)]) -> KeyhostProcess {
    KeyhostProcess::start(dir, &[], env)
}

fn call(url: &str, token: &str, method: &str, path: &str, body: Value) -> Value {
    let r = try_raw(url, method, path, Some(token), Some(&body.to_string()), &[]).unwrap();
    assert!(r.status < 300, "{method} {path}: {} {}", r.status, r.body);
    r.body
}

fn admin_token(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("admin.token"))
        .unwrap()
        .trim()
        .to_owned()
}

/// A dataset with one column and 100 rows; `n` sums answered to the admin in one request (so
/// `n` entries are queued in one transaction). Returns the receipts and the requests.
fn answered(kh: &KeyhostProcess, admin: &str, n: usize) -> (Vec<Value>, Vec<Value>) {
    let ds = call(&kh.url, admin, "POST", "/v1/datasets", json!({"name": "patrons"}))["id"]
        .as_i64()
        .unwrap();
    let col = call(
        &kh.url,
        admin,
        "POST",
        "/v1/datasets/patrons/columns",
        json!({"name": "age", "dtype": "int64", "scale": 0, "bounds": [0, 150], "facets": ["num"]}),
    );
    let (column, epoch) = (col["column_id"].as_i64().unwrap(), col["epoch"].as_u64().unwrap());
    let start = call(
        &kh.url,
        admin,
        "POST",
        "/v1/datasets/patrons/rids",
        json!({"count": 100, "columns": [column]}),
    )["start"]
        .as_u64()
        .unwrap();
    let requests: Vec<Value> = (0..n as u64)
        .map(|i| {
            let rids = RidSet::from_sorted(&(start..start + 10 + i).collect::<Vec<_>>());
            json!({"op": "sum", "dataset_id": ds, "rids": rids.to_base64(),
                   "terms": [{"column_id": column, "epoch": epoch, "weight": 1}]})
        })
        .collect();
    let r = call(&kh.url, admin, "POST", "/v1/answer-keys", json!({"requests": requests}));
    let results = r["results"].as_array().unwrap();
    assert!(results.iter().all(|v| v["ok"] == true), "{r}");
    (results.iter().map(|v| v["receipt"].clone()).collect(), requests)
}

fn counts(dir: &Path) -> (i64, i64) {
    let conn =
        ghostpii_keyhost::db::open_read_only(&ghostpii_keyhost::db::Database::Sqlite(dir.join("keyhost.db"))).unwrap();
    let log: i64 = conn.query_row("SELECT COUNT(*) FROM audit", (), |r| r.get(0)).unwrap();
    let queued: i64 = conn
        .query_row("SELECT COUNT(*) FROM audit_queue", (), |r| r.get(0))
        .unwrap();
    (log, queued)
}

#[test]
fn a_sequencer_killed_mid_batch_loses_nothing_and_integrates_on_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("kh");
    // 1. No background sequencer: the bootstrap, the set-up and 12 answers stay queued; the
    //    keyhost is killed, so it does not integrate them at a clean stop either.
    let mut first = start_keyhost(&dir, &[("GHOSTPII_AUDIT_BATCH_MS", "0")]);
    let admin = admin_token(&dir);
    let (receipts, _) = answered(&first, &admin, 12);
    first.kill();
    let (log, queued) = counts(&dir);
    assert_eq!(log, 0, "nothing was integrated yet");
    assert!(queued >= 12 + 4, "{queued} entries queued");

    // 2. A sequencer that aborts (SIGABRT, like kill -9) after writing 5 entries of its batch.
    let mut crashing = start_keyhost(&dir, &[("GHOSTPII_TEST_SEQUENCER_ABORT_AFTER", "5")]);
    let status = crashing.child.wait().unwrap();
    assert!(!status.success(), "the sequencer did not abort: {status:?}");
    assert_eq!(counts(&dir), (0, queued), "a killed batch wrote part of itself");

    // 3. Restarted: the queue is integrated; every receipt's promise holds, each entry once.
    let again = start_keyhost(&dir, &[]);
    let mut indices = Vec::new();
    for r in &receipts {
        let c = call(&again.url, &admin, "POST", "/v1/audit/receipt", r.clone());
        assert_eq!(
            (c["ok"].clone(), c["status"].clone()),
            (json!(true), json!("included")),
            "{c}"
        );
        indices.push(c["audit_index"].as_i64().unwrap());
    }
    indices.sort_unstable();
    indices.dedup();
    assert_eq!(indices.len(), receipts.len());
    let v = call(&again.url, &admin, "GET", "/v1/audit/verify", json!({}));
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["pending"], 0, "{v}");
    let (log, left) = counts(&dir);
    assert_eq!((log, left), (queued, 0));
    assert_eq!(v["entries"], json!(queued));
}

#[test]
fn a_receipt_whose_entry_is_missing_after_the_promised_delay_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("kh");
    let kh = start_keyhost(
        &dir,
        &[("GHOSTPII_AUDIT_BATCH_MS", "0"), ("GHOSTPII_AUDIT_MAX_DELAY_MS", "300")],
    );
    let admin = admin_token(&dir);
    let (receipts, requests) = answered(&kh, &admin, 3);
    // The entry of the second answer disappears from the queue before it is integrated (a
    // broken or dishonest keyhost: its answer left with a promise it does not keep).
    let lost = receipts[1]["queue_id"].as_i64().unwrap();
    let conn = ghostpii_keyhost::db::open_sqlite(&dir.join("keyhost.db")).unwrap();
    assert_eq!(
        conn.execute("DELETE FROM audit_queue WHERE id = ?1", [lost]).unwrap(),
        1
    );
    drop(conn);
    let check = |r: &Value| call(&kh.url, &admin, "POST", "/v1/audit/receipt", r.clone());
    // the others are kept (integrated by this read, within their delay)
    for r in [&receipts[0], &receipts[2]] {
        let c = check(r);
        assert_eq!(
            (c["ok"].clone(), c["status"].clone()),
            (json!(true), json!("included")),
            "{c}"
        );
    }
    let include_by = ghostpii_keyhost::clock::parse_rfc3339(receipts[1]["include_by"].as_str().unwrap()).unwrap();
    while ghostpii_keyhost::clock::now_micros() <= include_by {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let c = check(&receipts[1]);
    assert_eq!(
        (c["ok"].clone(), c["status"].clone()),
        (json!(false), json!("missing")),
        "{c}"
    );
    for r in [&receipts[0], &receipts[2]] {
        assert_eq!(check(r)["status"], "included");
    }
    // A receipt altered to name another entry fails its signature.
    let mut forged = receipts[0].clone();
    forged["queue_id"] = receipts[2]["queue_id"].clone();
    let c = check(&forged);
    assert_eq!(
        (c["ok"].clone(), c["status"].clone()),
        (json!(false), json!("invalid")),
        "{c}"
    );
    // An entry edited in the log after integration no longer matches its receipt.
    let index = check(&receipts[2])["audit_index"].as_i64().unwrap();
    let conn = ghostpii_keyhost::db::open_sqlite(&dir.join("keyhost.db")).unwrap();
    conn.execute("UPDATE audit SET rid_count = rid_count + 1 WHERE idx = ?1", [index])
        .unwrap();
    drop(conn);
    let c = check(&receipts[2]);
    assert_eq!(
        (c["ok"].clone(), c["status"].clone()),
        (json!(false), json!("mismatch")),
        "{c}"
    );
    // An entry integrated only after its promised time (no sequencer ran, no read came in
    // time) is reported as late.
    let again = call(
        &kh.url,
        &admin,
        "POST",
        "/v1/answer-keys",
        json!({"requests": [requests[0].clone()]}),
    );
    let late = again["results"][0]["receipt"].clone();
    let include_by = ghostpii_keyhost::clock::parse_rfc3339(late["include_by"].as_str().unwrap()).unwrap();
    while ghostpii_keyhost::clock::now_micros() <= include_by {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let c = check(&late);
    assert_eq!(
        (c["ok"].clone(), c["status"].clone()),
        (json!(false), json!("late")),
        "{c}"
    );
    assert!(c["audit_index"].as_i64().unwrap() > index);
}
