use ghostpii_keyhost::audit::{entry_hash, Entry};
use ghostpii_keyhost::db::Connection;
use serde_json::json;

use crate::client::World;

fn world_with_history() -> World {
    let w = World::new();
    w.grant("income", "aggregate", json!({"min_rows": 5}));
    let rids = w.rids(20);
    w.kh.answer(
        &w.analyst,
        json!([w.sum(&rids, &[(&w.income, 1)]), w.sum(&w.rids(2), &[(&w.income, 1)])]),
    );
    w.kh.answer(&w.analyst, json!([w.decrypt(&rids, &w.income, "val")]));
    w.kh.verify(); // integrates the queue (a read of the log does)
    w
}

#[test]
fn issuances_and_refusals_are_in_the_log() {
    let w = World::new();
    w.grant("income", "aggregate", json!({"min_rows": 5}));
    let rids = w.rids(20);
    let res = w.kh.answer(
        &w.analyst,
        json!([
            w.sum(&rids, &[(&w.income, 2)]),
            w.sum(&w.rids(2), &[(&w.income, 1)]),
            w.decrypt(&rids, &w.income, "val")
        ]),
    );
    let log = w.kh.get(&w.owner, "/v1/audit?dataset=patrons&identity=analyst").ok();
    let entries = log["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    let by_index = |i: &serde_json::Value| {
        let index = w.kh.audit_index(&w.analyst, i);
        entries.iter().find(|e| e["index"] == index).unwrap().clone()
    };
    let e0 = by_index(&res[0]);
    assert_eq!(
        (e0["decision"].clone(), e0["reason"].clone()),
        (json!("issued"), json!("grant"))
    );
    assert_eq!(
        (e0["operation"].clone(), e0["column"].clone()),
        (json!("sum"), json!("income"))
    );
    assert_eq!(e0["rid_count"], 20);
    assert_eq!(e0["rid_digest"], rids.digest_hex());
    assert_eq!(e0["params"]["terms"][0]["weight"], 2);
    assert!(e0["time"].as_str().unwrap().ends_with('Z'));
    let e1 = by_index(&res[1]);
    assert_eq!(
        (e1["decision"].clone(), e1["reason"].clone()),
        (json!("refused"), json!("min_rows"))
    );
    let e2 = by_index(&res[2]);
    assert_eq!(
        (e2["decision"].clone(), e2["reason"].clone()),
        (json!("refused"), json!("permission_denied"))
    );
    assert_eq!(e2["params"]["facet"], "val");

    // The owner's own keys are audited as such; management refusals are audited too.
    let r = w.kh.answer(&w.owner, json!([w.sum(&rids, &[(&w.income, 1)])]));
    let log =
        w.kh.get(&w.kh.admin, "/v1/audit?identity=olivia&since=2000-01-01T00:00:00Z")
            .ok();
    let last = log["entries"].as_array().unwrap().first().unwrap().clone();
    assert_eq!(last["index"], w.kh.audit_index(&w.owner, &r[0]));
    assert_eq!(last["reason"], "owner");
    w.kh.post(
        &w.analyst,
        "/v1/grants",
        json!({"identity": "analyst", "dataset": "patrons", "column": "income", "operation": "decrypt"}),
    );
    let log = w.kh.get(&w.kh.admin, "/v1/audit?identity=analyst").ok();
    let last = log["entries"].as_array().unwrap().first().unwrap().clone();
    assert_eq!(
        (last["operation"].clone(), last["decision"].clone()),
        (json!("grant.create"), json!("refused"))
    );
    // Analysts cannot read the log; owners only with a dataset.
    assert_eq!(w.kh.get(&w.analyst, "/v1/audit?dataset=patrons").status, 403);
    assert_eq!(w.kh.get(&w.owner, "/v1/audit").status, 403);
    assert_eq!(
        w.kh.get(&w.owner, "/v1/audit?dataset=patrons&since=yesterday").status,
        400
    );
    let v = w.kh.get(&w.kh.admin, "/v1/audit/verify").ok();
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["problems"], json!([]));
    assert_eq!(v["head"].as_str().unwrap().len(), 64);
    assert_eq!(w.kh.get(&w.owner, "/v1/audit/verify").status, 403);
}

fn problems(w: &World) -> Vec<(i64, String)> {
    let v = w.kh.get(&w.kh.admin, "/v1/audit/verify").ok();
    let offline = w.kh.verify();
    assert_eq!(v["ok"], offline.ok);
    assert_eq!(v["problems"].as_array().unwrap().len(), offline.problems.len());
    offline.problems.into_iter().map(|p| (p.index, p.problem)).collect()
}

fn db(w: &World) -> Connection {
    w.kh.db()
}

#[test]
fn verify_detects_an_edited_row() {
    let w = world_with_history();
    assert!(problems(&w).is_empty());
    let conn = db(&w);
    let n: i64 = conn.query_row("SELECT MAX(idx) FROM audit", (), |r| r.get(0)).unwrap();
    conn.execute(
        "UPDATE audit SET decision = 'issued', reason = 'grant' WHERE decision = 'refused' AND idx = ?1",
        [n],
    )
    .unwrap();
    let p = problems(&w);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].0, n);
    assert!(p[0].1.contains("edited"));
}

#[test]
fn verify_detects_an_inserted_row() {
    let w = world_with_history();
    let conn = db(&w);
    let k = 3i64;
    conn.execute_batch(&format!(
        "UPDATE audit SET idx = -(idx + 1) WHERE idx > {k}; UPDATE audit SET idx = -idx WHERE idx < 0;"
    ))
    .unwrap();
    // A forged row with a self-consistent hash, chained to row k.
    let prev: String = conn
        .query_row("SELECT hash FROM audit WHERE idx = ?1", [k], |r| r.get(0))
        .unwrap();
    let mut e = Entry {
        index: k + 1,
        time: 1,
        identity: Some("analyst".into()),
        dataset: Some("patrons".into()),
        column: Some("income".into()),
        operation: "decrypt".into(),
        params: "{}".into(),
        rid_count: Some(1),
        rid_digest: None,
        decision: "issued".into(),
        reason: Some("grant".into()),
        prev_hash: prev,
        hash: String::new(),
        salt: String::new(),
    };
    e.hash = entry_hash(&e);
    conn.execute(
        "INSERT INTO audit (idx, time, identity, dataset, \"column\", operation, params, rid_count,
         rid_digest, decision, reason, prev_hash, hash) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13)",
        ghostpii_keyhost::params![
            e.index,
            e.time,
            e.identity,
            e.dataset,
            e.column,
            e.operation,
            e.params,
            e.rid_count,
            e.rid_digest,
            e.decision,
            e.reason,
            e.prev_hash,
            e.hash
        ],
    )
    .unwrap();
    let p = problems(&w);
    assert!(p.iter().any(|(i, m)| *i == k + 2 && m.contains("prev_hash")), "{p:?}");
}

#[test]
fn verify_detects_a_deleted_row() {
    let w = world_with_history();
    let conn = db(&w);
    conn.execute("DELETE FROM audit WHERE idx = 4", ()).unwrap();
    let p = problems(&w);
    assert!(p.iter().any(|(i, m)| *i == 5 && m.contains("index gap")), "{p:?}");
    assert!(p.iter().any(|(i, m)| *i == 5 && m.contains("prev_hash")), "{p:?}");
    // Cutting off the end is reported too.
    let w = world_with_history();
    db(&w)
        .execute("DELETE FROM audit WHERE idx = (SELECT MAX(idx) FROM audit)", ())
        .unwrap();
    let p = problems(&w);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].1.contains("recorded"));
}

#[test]
fn concurrent_requests_keep_the_chain_dense_and_valid() {
    let w = World::new();
    w.grant("income", "aggregate", json!({}));
    let before = w.kh.verify().entries;
    let req = json!([
        w.sum(&w.rids(100), &[(&w.income, 1)]),
        w.decrypt(&w.rids(3), &w.income, "val")
    ]);
    std::thread::scope(|s| {
        for _ in 0..6 {
            s.spawn(|| {
                for _ in 0..10 {
                    let r = w.kh.answer(&w.analyst, req.clone());
                    assert_eq!((r[0]["ok"].clone(), r[1]["ok"].clone()), (json!(true), json!(false)));
                }
            });
        }
    });
    let v = w.kh.verify();
    assert!(v.ok, "{:?}", v.problems);
    assert_eq!(v.entries, before + 6 * 10 * 2);
}
