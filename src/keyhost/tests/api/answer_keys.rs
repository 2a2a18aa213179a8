use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ghostpii_core::{num, RidSet};
use serde_json::{json, Value};

use crate::client::{try_raw, World};

#[test]
fn members_are_denied_by_default_and_told_which_grant_is_missing() {
    let w = World::new();
    let rids = w.rids(50);
    let res = w.kh.answer(
        &w.analyst,
        json!([w.sum(&rids, &[(&w.income, 1)]), w.decrypt(&rids, &w.income, "val")]),
    );
    assert_eq!(res[0]["ok"], false);
    assert_eq!(res[0]["reason"], "permission_denied");
    // no grant on the dataset at all: it is not described (no enumeration)
    let msg = res[0]["message"].as_str().unwrap();
    assert!(
        msg.starts_with(&format!(
            "identity 'analyst' holds no grant on dataset id {}, or no such dataset exists",
            w.dataset_id
        )) && msg.ends_with("ask its owner for a grant (operation 'aggregate')"),
        "{msg}"
    );
    assert_eq!(
        res[0]["missing_grant"],
        json!({"operation": "aggregate", "dataset": format!("id {}", w.dataset_id), "column": null})
    );
    assert!(res[1]["message"].as_str().unwrap().ends_with("(operation 'decrypt')"));
    assert!(w.kh.audit_index(&w.analyst, &res[0]) > 0);
    // An aggregate grant does not allow decryption; now the dataset is visible, and the
    // refusal names the missing grant precisely.
    w.grant("income", "aggregate", json!({"min_rows": null}));
    let res = w.kh.answer(
        &w.analyst,
        json!([w.sum(&rids, &[(&w.income, 1)]), w.decrypt(&rids, &w.income, "val")]),
    );
    assert_eq!(
        res[1]["message"],
        "identity 'analyst' has no 'decrypt' grant on column 'income' of dataset 'patrons'"
    );
    assert_eq!(
        res[1]["missing_grant"],
        json!({"operation": "decrypt", "dataset": "patrons", "column": "income"})
    );
    assert_eq!(
        (res[0]["ok"].clone(), res[1]["reason"].clone()),
        (json!(true), json!("permission_denied"))
    );
}

#[test]
fn members_cannot_manage_grants() {
    let w = World::new();
    let r = w.kh.post(
        &w.analyst,
        "/v1/grants",
        json!({"identity": "analyst", "dataset": "patrons", "column": "income", "operation": "decrypt"}),
    );
    assert_eq!((r.status, r.reason()), (403, "permission_denied"));
    let g = w.grant("income", "decrypt", json!({}));
    let id = g["grant_id"].as_i64().unwrap();
    assert_eq!(g["operation"], "decrypt");
    let r = w.kh.delete(&w.analyst, &format!("/v1/grants/{id}"));
    assert_eq!((r.status, r.reason()), (403, "permission_denied"));
    // Grants name existing identities; unknown parameters are refused, not ignored.
    let r = w.kh.post(
        &w.owner,
        "/v1/grants",
        json!({"identity": "ghost", "dataset": "patrons", "column": "income", "operation": "decrypt"}),
    );
    assert_eq!((r.status, r.reason()), (404, "not_found"));
    let r = w.kh.post(
        &w.owner,
        "/v1/grants",
        json!({"identity": "analyst", "dataset": "patrons", "column": "income", "operation": "aggregate",
               "params": {"constants": [1]}}),
    );
    assert_eq!((r.status, r.reason()), (400, "invalid_request"));
    // Listing and revocation by the owner; revocation takes effect at once.
    let list = w.kh.get(&w.owner, "/v1/grants?dataset=patrons&identity=analyst").ok();
    assert_eq!(list["grants"].as_array().unwrap().len(), 1);
    let rids = w.rids(3);
    assert_eq!(
        w.kh.answer(&w.analyst, json!([w.decrypt(&rids, &w.income, "val")]))[0]["ok"],
        true
    );
    assert_eq!(
        w.kh.delete(&w.owner, &format!("/v1/grants/{id}")).ok(),
        json!({"revoked": true})
    );
    assert_eq!(
        w.kh.answer(&w.analyst, json!([w.decrypt(&rids, &w.income, "val")]))[0]["ok"],
        false
    );
    assert_eq!(
        w.kh.get(&w.owner, "/v1/grants?dataset=patrons").ok()["grants"],
        json!([])
    );
}

#[test]
fn sum_answer_keys_open_masked_sums_exactly() {
    let w = World::new();
    w.grant("income", "aggregate", json!({}));
    w.grant("age", "aggregate", json!({}));
    // A scattered selection of rows.
    let rid_list: Vec<u64> = (w.start..w.start + 1000).filter(|r| r % 3 != 0).collect();
    let rids = RidSet::from_sorted(&rid_list);
    let income: Vec<i64> = rid_list.iter().map(|&r| (r as i64 * 7919) % 10_000_000).collect();
    let age: Vec<i64> = rid_list.iter().map(|&r| 18 + (r as i64 % 70)).collect();
    // The owner's encryption: cell = x + mask(rid).
    let cells = |k: &ghostpii_core::NumKey, xs: &[i64]| -> Vec<u128> {
        rid_list
            .iter()
            .zip(xs)
            .map(|(&r, &x)| num::seal(k.mask(r), x))
            .collect()
    };
    let (ci, ca) = (cells(&w.income.num, &income), cells(&w.age.num, &age));
    let masked = |cs: &[u128], wgt: i64| {
        cs.iter()
            .fold(0u128, |a, &c| a.wrapping_add((wgt as i128 as u128).wrapping_mul(c)))
    };

    for token in [&w.analyst, &w.owner, &w.kh.admin] {
        let res = w.kh.answer(
            token,
            json!([
                w.sum(&rids, &[(&w.income, 1)]),
                w.sum(&rids, &[(&w.income, 3), (&w.age, -2)])
            ]),
        );
        assert_eq!(res[0]["ok"], true, "{}", res[0]);
        let k0: u128 = res[0]["key"].as_str().unwrap().parse().unwrap();
        let expected_key = rid_list
            .iter()
            .fold(0u128, |a, &r| a.wrapping_add(w.income.num.mask(r)));
        assert_eq!(k0, expected_key);
        assert_eq!(
            num::unmask_sum(masked(&ci, 1), k0),
            income.iter().map(|&x| x as i128).sum::<i128>()
        );

        let k1: u128 = res[1]["key"].as_str().unwrap().parse().unwrap();
        let m = masked(&ci, 3).wrapping_add(masked(&ca, -2));
        let exact: i128 = income
            .iter()
            .zip(&age)
            .map(|(&i, &a)| 3 * i as i128 - 2 * a as i128)
            .sum();
        assert_eq!(num::unmask_sum(m, k1), exact);
    }
}

#[test]
fn min_rows_and_empty_sets_are_refused() {
    let w = World::new();
    w.grant("income", "aggregate", json!({"min_rows": 10}));
    let res = w.kh.answer(
        &w.analyst,
        json!([
            w.sum(&w.rids(9), &[(&w.income, 1)]),
            w.sum(&w.rids(10), &[(&w.income, 1)]),
            w.sum(&RidSet::new(), &[(&w.income, 1)])
        ]),
    );
    assert_eq!(res[0]["reason"], "min_rows");
    assert!(res[0]["message"].as_str().unwrap().contains("at least 10"));
    assert_eq!(res[1]["ok"], true);
    assert_eq!(res[2]["reason"], "invalid_request");
    // The owner is not bound by the analyst's constraint.
    assert_eq!(
        w.kh.answer(&w.owner, json!([w.sum(&w.rids(2), &[(&w.income, 1)])]))[0]["ok"],
        true
    );
}

#[test]
fn rids_never_allocated_are_refused() {
    let w = World::new();
    w.grant("income", "aggregate", json!({}));
    let beyond = RidSet::from_sorted(&(w.start + 990..w.start + 1010).collect::<Vec<_>>());
    let zero = RidSet::from_sorted(&[0, w.start]);
    // Rows allocated to another column only.
    let other =
        w.kh.post(
            &w.owner,
            "/v1/datasets/patrons/rids",
            json!({"count": 5, "columns": [w.age.id]}),
        )
        .ok();
    let s = other["start"].as_u64().unwrap();
    let age_only = RidSet::from_sorted(&(s..s + 5).collect::<Vec<_>>());
    let res = w.kh.answer(
        &w.analyst,
        json!([
            w.sum(&beyond, &[(&w.income, 1)]),
            w.sum(&zero, &[(&w.income, 1)]),
            w.sum(&age_only, &[(&w.income, 1)])
        ]),
    );
    for (r, n) in res.iter().zip([10, 1, 5]) {
        assert_eq!(r["reason"], "unknown_rids", "{r}");
        assert!(
            r["message"].as_str().unwrap().starts_with(&format!("{n} of the")),
            "{r}"
        );
    }
    let res = w.kh.answer(
        &w.owner,
        json!([w.sum(&age_only, &[(&w.age, 1)]), w.sum(&beyond, &[(&w.age, 1)])]),
    );
    assert_eq!(
        (res[0]["ok"].clone(), res[1]["reason"].clone()),
        (json!(true), json!("unknown_rids"))
    );
}

#[test]
fn decrypt_keys_match_the_column_keys() {
    let w = World::new();
    w.grant("income", "decrypt", json!({}));
    let rid_list = vec![w.start + 5, w.start + 1, w.start + 999, w.start + 42];
    let rids = RidSet::from_unsorted(&rid_list);
    let sorted = rids.to_vec();
    let res = w.kh.answer(
        &w.analyst,
        json!([w.decrypt(&rids, &w.income, "num"), w.decrypt(&rids, &w.income, "val")]),
    );
    let num_keys = B64.decode(res[0]["keys"].as_str().unwrap()).unwrap();
    let val_keys = B64.decode(res[1]["keys"].as_str().unwrap()).unwrap();
    assert_eq!((num_keys.len(), val_keys.len()), (4 * 16, 4 * 32));
    let val = w.income.val.as_ref().unwrap();
    for (i, &r) in sorted.iter().enumerate() {
        assert_eq!(num_keys[i * 16..(i + 1) * 16], w.income.num.mask(r).to_le_bytes());
        assert_eq!(val_keys[i * 32..(i + 1) * 32], val.row_key(r));
    }
    assert!(w.kh.audit_index(&w.analyst, &res[0]) < w.kh.audit_index(&w.analyst, &res[1]));
}

/// `Accept: application/vnd.ghostpii.answers`: the same answers, byte fields raw in a frame;
/// an idempotent retry gets the same bytes in either form (recomputed, not stored), audited
/// once; after the grant is revoked the retry is refused rather than answered again.
#[test]
fn binary_frames_carry_the_same_row_keys_raw() {
    use ghostpii_keyhost::answer_keys::payload::MEDIA_TYPE;
    let w = World::new();
    let grant_id = w.grant("income", "decrypt", json!({}))["grant_id"].as_i64().unwrap();
    let rids = RidSet::from_unsorted(&[w.start + 3, w.start + 7, w.start + 8]);
    let body = json!({"requests": [w.decrypt(&rids, &w.income, "num"), {"op": "nope"}]}).to_string();
    let key = "frame-test-0123456789";
    let send = |accept: &str| {
        try_raw(
            &w.kh.url(),
            "POST",
            "/v1/answer-keys",
            Some(&w.analyst),
            Some(&body),
            &[("Accept", accept), ("Idempotency-Key", key)],
        )
        .unwrap()
    };
    let framed = send(MEDIA_TYPE);
    assert_eq!(framed.status, 200);
    assert!(framed.head.to_ascii_lowercase().contains(MEDIA_TYPE));
    let f = &framed.bytes;
    assert_eq!(&f[..5], b"GPAK\x01");
    let json_len = u32::from_le_bytes(f[5..9].try_into().unwrap()) as usize;
    let head: Value = serde_json::from_slice(&f[9..9 + json_len]).unwrap();
    let r = &head["results"];
    assert_eq!(r[0]["keys"], json!({"$blob": 0, "len": 48}));
    assert_eq!(r[1]["ok"], json!(false));
    let raw_keys = &f[9 + json_len..];
    assert_eq!(raw_keys.len(), 48);
    for (i, rid) in rids.to_vec().into_iter().enumerate() {
        assert_eq!(raw_keys[16 * i..16 * (i + 1)], w.income.num.mask(rid).to_le_bytes());
    }
    // the retry in JSON: the recorded answer, base64, with the same receipt
    let retried = send("application/json").ok();
    let b64 = B64.decode(retried["results"][0]["keys"].as_str().unwrap()).unwrap();
    assert_eq!(b64, raw_keys);
    assert_eq!(retried["results"][0]["receipt"], r[0]["receipt"]);
    let log = w.kh.get(&w.kh.admin, "/v1/audit?identity=analyst").ok();
    let ops: Vec<&str> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["operation"].as_str().unwrap())
        .collect();
    assert_eq!(ops.iter().filter(|o| **o == "decrypt").count(), 1, "{ops:?}");
    w.kh.delete(&w.owner, &format!("/v1/grants/{grant_id}")).ok();
    let after = send(MEDIA_TYPE);
    assert_eq!((after.status, after.reason()), (409, "conflict"), "{:?}", after.head);
}

#[test]
fn wrong_epoch_column_facet_and_dataset_are_refused() {
    let w = World::new();
    w.grant("income", "decrypt", json!({}));
    w.grant("age", "decrypt", json!({}));
    let rids = w.rids(4);
    let mut bad_epoch = w.decrypt(&rids, &w.income, "num");
    bad_epoch["epoch"] = json!(2);
    let mut bad_column = w.decrypt(&rids, &w.income, "num");
    bad_column["column_id"] = json!(9999);
    let mut bad_dataset = w.decrypt(&rids, &w.income, "num");
    bad_dataset["dataset_id"] = json!(w.dataset_id + 1);
    // A column of another dataset, addressed through this one.
    w.kh.post(&w.owner, "/v1/datasets", json!({"name": "other"})).ok();
    let other = crate::client::register(
        &w.kh,
        &w.owner,
        "other",
        json!({"name": "x", "dtype": "int64", "facets": ["num"]}),
    );
    let foreign = w.decrypt(&rids, &other, "num");
    let no_facet = w.decrypt(&rids, &w.age, "val");
    let garbage = json!({"op": "decrypt", "dataset_id": w.dataset_id, "rids": "!!!"});
    let unknown_op = json!({"op": "median"});
    let res = w.kh.answer(
        &w.analyst,
        json!([
            bad_epoch,
            bad_column,
            bad_dataset,
            foreign,
            no_facet,
            garbage,
            unknown_op
        ]),
    );
    let reasons: Vec<_> = res.iter().map(|r| r["reason"].as_str().unwrap().to_owned()).collect();
    assert_eq!(
        reasons,
        [
            // the analyst holds grants on this dataset: precise errors
            "not_found",
            "not_found",
            // a dataset it holds no grant on: the refusal of an unknown one (no enumeration)
            "permission_denied",
            "not_found",
            "invalid_request",
            "invalid_request",
            "invalid_request"
        ]
    );
    assert!(!res[2]["message"].as_str().unwrap().contains("other"), "{}", res[2]);
    let msg = res[0]["message"].as_str().unwrap();
    assert!(
        msg.contains("epoch 2") && msg.contains("unknown to this keyhost"),
        "{msg}"
    );
    // Every result has its own receipt.
    let idx: Vec<i64> = res.iter().map(|r| w.kh.audit_index(&w.analyst, r)).collect();
    assert!(idx.windows(2).all(|p| p[1] == p[0] + 1));
}

#[test]
fn large_sums_are_fast() {
    let w = World::new();
    let n = 10_000_000u64;
    let alloc =
        w.kh.post(
            &w.owner,
            "/v1/datasets/patrons/rids",
            json!({"count": n, "columns": [w.income.id]}),
        )
        .ok();
    let s = alloc["start"].as_u64().unwrap();
    let mut t = roaring::RoaringTreemap::new();
    t.insert_range(s..s + n);
    let rids = RidSet(t);
    let req = json!([w.sum(&rids, &[(&w.income, 1)])]);
    let t0 = std::time::Instant::now();
    let res = w.kh.answer(&w.owner, req);
    let dt = t0.elapsed();
    assert_eq!(res[0]["ok"], true);
    eprintln!(
        "sum answer key over {n} rids: {dt:?} ({:.1} M rids/s)",
        n as f64 / dt.as_secs_f64() / 1e6
    );
    assert!(dt.as_secs_f64() < 2.0, "sum over 10M rids took {dt:?}");
}

/// `sums`: the keys of many groups in one descriptor equal their `sum` keys; one audit entry
/// with the group count and row counts; a group under `min_rows` refuses the whole batch.
#[test]
fn sums_answer_every_group_in_one_descriptor_and_one_audit_entry() {
    let w = World::new();
    w.grant("income", "aggregate", json!({"min_rows": 3}));
    let groups: Vec<RidSet> = (0..50u64)
        .map(|g| RidSet::from_sorted(&(0..10).map(|i| w.start + g * 10 + i).collect::<Vec<_>>()))
        .collect();
    let term = json!([{"column_id": w.income.id, "epoch": w.income.epoch, "weight": 1}]);
    let sums = |gs: &[RidSet]| {
        json!({"op": "sums", "dataset_id": w.dataset_id, "terms": term,
               "groups": gs.iter().map(|g| B64.encode(g.to_bytes())).collect::<Vec<_>>()})
    };
    let singles: Vec<Value> = groups.iter().map(|g| w.sum(g, &[(&w.income, 1)])).collect();
    let want = w.kh.answer(&w.owner, json!(singles));
    let got = w.kh.answer(&w.analyst, json!([sums(&groups)]));
    assert_eq!(got[0]["ok"], json!(true), "{:?}", got[0]);
    let keys = B64.decode(got[0]["keys"].as_str().unwrap()).unwrap();
    assert_eq!(keys.len(), 16 * groups.len());
    for (i, r) in want.iter().enumerate() {
        let k = u128::from_le_bytes(keys[16 * i..16 * (i + 1)].try_into().unwrap());
        assert_eq!(k.to_string(), r["key"].as_str().unwrap(), "group {i}");
    }
    let log = w.kh.get(&w.kh.admin, "/v1/audit?identity=analyst").ok();
    let entries: Vec<&Value> = log["entries"].as_array().unwrap().iter().collect();
    let batch: Vec<&&Value> = entries.iter().filter(|e| e["operation"] == "sums").collect();
    assert_eq!(batch.len(), 1, "{entries:?}");
    assert_eq!(batch[0]["rid_count"], json!(500));
    let params = &batch[0]["params"];
    assert_eq!(params["groups"], json!(50), "{params}");
    assert_eq!(params["group_rows"][7], json!(10));
    // one group of 2 rows: the whole batch is refused, naming the group
    let mut small = groups[..5].to_vec();
    small.push(RidSet::from_sorted(&[w.start + 900, w.start + 901]));
    let r = w.kh.answer(&w.analyst, json!([sums(&small)]));
    assert_eq!(r[0]["reason"], json!("min_rows"), "{:?}", r[0]);
    assert!(
        r[0]["message"].as_str().unwrap().starts_with("group 5 of 6"),
        "{:?}",
        r[0]
    );
    assert!(r[0].get("keys").is_none());
}
