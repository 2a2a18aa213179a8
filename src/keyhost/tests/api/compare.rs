//! Comparison tokens (`ord` facet): registration with an order domain, compare grants with
//! constants / ranges / max_constants in the logical domain, and audited issuance.

use std::cmp::Ordering;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ghostpii_core::meta::key_binding;
use ghostpii_core::{OreKey, OreParams, OreToken};
use serde_json::{json, Value};

use crate::client::{Kh, World};

const DOB_ORD: OreParams = OreParams {
    offset: -40_000,
    bits: 17,
};

struct Dob {
    id: i64,
    epoch: u32,
    ord: OreKey,
}

fn register_dob(w: &World) -> Dob {
    let body = json!({"name": "dob", "dtype": "date", "scale": 0, "bounds": null,
                      "facets": ["ord", "val"], "ord": {"offset": DOB_ORD.offset, "bits": DOB_ORD.bits}});
    let r = w.kh.post(&w.owner, "/v1/datasets/patrons/columns", body.clone()).ok();
    assert_eq!(r["ord"], json!({"offset": -40_000, "bits": 17}));
    let key: [u8; 16] = B64
        .decode(r["keys"]["ord"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    // Registering again with the same settings returns the same keys; another domain is a 409.
    let again = w.kh.post(&w.owner, "/v1/datasets/patrons/columns", body.clone()).ok();
    assert_eq!(again["keys"]["ord"], r["keys"]["ord"]);
    let mut other = body;
    other["ord"]["bits"] = json!(20);
    let c = w.kh.post(&w.owner, "/v1/datasets/patrons/columns", other);
    assert_eq!((c.status, c.reason()), (409, "conflict"));
    assert!(c.body["error"]["message"].as_str().unwrap().contains("ord domain"));
    Dob {
        id: r["column_id"].as_i64().unwrap(),
        epoch: r["epoch"].as_u64().unwrap() as u32,
        ord: OreKey::from_bytes(&key),
    }
}

fn compare(w: &World, col: &Dob, constant: i64) -> Value {
    json!({"op": "compare", "dataset_id": w.dataset_id, "column_id": col.id, "epoch": col.epoch,
           "constant": constant})
}

fn grant_compare(w: &World, column: &str, params: Value) -> crate::client::Resp {
    w.kh.post(
        &w.owner,
        "/v1/grants",
        json!({"identity": "analyst", "dataset": "patrons", "column": column, "operation": "compare",
               "params": params}),
    )
}

#[test]
fn registration_validates_the_order_domain() {
    let w = World::new();
    let reg = |body: Value| w.kh.post(&w.owner, "/v1/datasets/patrons/columns", body);
    let r = reg(json!({"name": "a", "dtype": "int64", "facets": ["ord"]}));
    assert_eq!((r.status, r.reason()), (400, "invalid_request"));
    assert!(r.body["error"]["message"].as_str().unwrap().contains("order domain"));
    let r = reg(json!({"name": "a", "dtype": "int64", "facets": ["num"], "ord": {"offset": 0, "bits": 8}}));
    assert_eq!(r.status, 400);
    let r = reg(json!({"name": "a", "dtype": "int64", "facets": ["ord"], "ord": {"offset": 0, "bits": 65}}));
    assert_eq!(r.status, 400);
    let r = reg(
        json!({"name": "a", "dtype": "datetime", "facets": ["ord"], "ord": {"offset": 0, "bits": 64},
                       "meta": {"time_unit": "fortnights"}}),
    );
    assert_eq!(r.status, 400);
}

#[test]
fn tokens_compare_correctly_and_are_bound_to_the_column_epoch() {
    let w = World::new();
    let dob = register_dob(&w);
    // Owner: implicit permission. The token compares with right ciphertexts of the column.
    let day = 11_016; // 2000-02-29
    let res = w.kh.answer(&w.owner, json!([compare(&w, &dob, day)]));
    assert_eq!(res[0]["ok"], true, "{}", res[0]);
    assert!(w.kh.audit_index(&w.owner, &res[0]) > 0);
    assert!(res[0]["receipt"]["entry_hash"].is_string());
    let token = B64.decode(res[0]["token"].as_str().unwrap()).unwrap();
    let binding = key_binding(w.dataset_id, dob.id, dob.epoch);
    assert_eq!(token, dob.ord.token(&DOB_ORD, &binding, day).unwrap());
    let t = OreToken::parse(&token, &binding).unwrap();
    let cts = dob
        .ord
        .encrypt_many(&DOB_ORD, &[Some(day - 1), Some(day), Some(day + 400)])
        .unwrap();
    let got: Vec<Ordering> = cts.iter().map(|c| t.compare(c.as_ref().unwrap()).unwrap()).collect();
    assert_eq!(got, vec![Ordering::Greater, Ordering::Equal, Ordering::Less]);
    assert!(OreToken::parse(&token, &key_binding(w.dataset_id, dob.id, dob.epoch + 1)).is_err());
    // Outside the order domain: invalid, audited.
    let res = w.kh.answer(&w.owner, json!([compare(&w, &dob, -50_000)]));
    assert_eq!(
        (res[0]["ok"].clone(), res[0]["reason"].clone()),
        (json!(false), json!("invalid_request"))
    );
    // A column without the ord facet says how to encrypt it.
    let res = w.kh.answer(
        &w.owner,
        json!([{"op": "compare", "dataset_id": w.dataset_id, "column_id": w.age.id, "epoch": 1, "constant": 3}]),
    );
    assert!(
        res[0]["message"].as_str().unwrap().contains("compare=True"),
        "{}",
        res[0]
    );
}

#[test]
fn compare_grants_limit_constants_ranges_and_distinct_counts() {
    let w = World::new();
    // Members need a compare grant.
    let dob = register_dob(&w);
    let res = w.kh.answer(&w.analyst, json!([compare(&w, &dob, 0)]));
    assert_eq!(res[0]["reason"], "permission_denied");
    assert_eq!(res[0]["missing_grant"]["operation"], "compare");
    // A grant with constants on an unregistered column is a 404 naming the column.
    let r = grant_compare(&w, "nope", json!({"constants": ["2000-01-01"]}));
    assert_eq!((r.status, r.reason()), (404, "not_found"));
    assert!(r.body["error"]["message"].as_str().unwrap().contains("'nope'"));
    // Wrong type of constant for a date column.
    let r = grant_compare(&w, "dob", json!({"constants": [5]}));
    assert_eq!((r.status, r.reason()), (400, "invalid_request"));
    // Aggregate params on a compare grant are refused.
    let r = grant_compare(&w, "dob", json!({"min_rows": 5}));
    assert_eq!(r.status, 400);
    let g = grant_compare(
        &w,
        "dob",
        json!({"constants": ["2000-02-29", "1970-01-01"], "range": null, "max_constants": null}),
    )
    .ok();
    assert_eq!(g["params"]["constants"], json!([0, 11_016]));
    let res = w.kh.answer(
        &w.analyst,
        json!([compare(&w, &dob, 11_016), compare(&w, &dob, 11_017)]),
    );
    assert_eq!(res[0]["ok"], true);
    assert_eq!(res[1]["reason"], "constant_not_allowed");
    let msg = res[1]["message"].as_str().unwrap();
    assert!(msg.contains("11017") && msg.contains("2000-02-29"), "{msg}");
    // A second grant with a range and max_constants: the least restrictive grant applies.
    grant_compare(
        &w,
        "dob",
        json!({"range": ["2010-01-01", "2010-12-31"], "max_constants": 3}),
    )
    .ok();
    let base = 14_610; // 2010-01-01
    let res = w.kh.answer(
        &w.analyst,
        json!([
            compare(&w, &dob, base),
            compare(&w, &dob, base + 1),
            compare(&w, &dob, base + 1)
        ]),
    );
    assert!(res.iter().all(|r| r["ok"] == true), "{res:?}");
    // Distinct constants so far: 11016, base, base+1 = 3; the range grant allows 3 → a fourth
    // distinct one in the range is refused; re-issuing is fine; listed constants have no limit.
    let res = w.kh.answer(
        &w.analyst,
        json!([
            compare(&w, &dob, base + 2),
            compare(&w, &dob, base),
            compare(&w, &dob, 0)
        ]),
    );
    assert_eq!(res[0]["reason"], "max_constants", "{}", res[0]);
    assert_eq!(res[1]["ok"], true);
    assert_eq!(res[2]["ok"], true);
    // Every issuance and refusal is audited with its constant.
    let log = w.kh.get(&w.owner, "/v1/audit?dataset=patrons").ok();
    let compares: Vec<&Value> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["operation"] == "compare" && e["identity"] == "analyst")
        .collect();
    assert_eq!(compares.len(), 9);
    assert!(compares
        .iter()
        .all(|e| e["params"]["constant"].is_i64() && e["rid_count"] == 0));
    let refused: Vec<_> = compares.iter().filter(|e| e["decision"] == "refused").collect();
    assert_eq!(refused.len(), 3);
    assert!(refused
        .iter()
        .any(|e| e["reason"] == "max_constants" && e["params"]["constant"] == base + 2));
}

#[test]
fn logical_constants_of_numbers_and_datetimes() {
    let kh = Kh::start();
    let owner = kh.identity("o", "owner");
    kh.identity("analyst", "member");
    kh.post(&owner, "/v1/datasets", json!({"name": "d"})).ok();
    let reg = |body: Value| kh.post(&owner, "/v1/datasets/d/columns", body).ok();
    reg(
        json!({"name": "price", "dtype": "float64", "scale": 2, "bounds": [0, 100_000],
               "facets": ["num", "ord"], "ord": {"offset": 0, "bits": 17}}),
    );
    reg(
        json!({"name": "at", "dtype": "datetime", "facets": ["ord"], "ord": {"offset": 0, "bits": 64},
               "meta": {"time_unit": "ms", "time_zone": null}}),
    );
    let g = |column: &str, params: Value| {
        kh.post(
            &owner,
            "/v1/grants",
            json!({"identity": "analyst", "dataset": "d", "column": column, "operation": "compare",
                   "params": params}),
        )
    };
    let r = g("price", json!({"constants": [1.5, 2, 0.125]})).ok();
    assert_eq!(r["params"]["constants"], json!([12, 150, 200]));
    let r = g(
        "at",
        json!({"range": ["1970-01-01T00:00:01", "1970-01-02T00:00:00+01:00"]}),
    )
    .ok();
    assert_eq!(r["params"]["range"], json!([1000, 82_800_000]));
    assert_eq!(g("at", json!({"constants": ["1970-01-01T00:00:00.0001"]})).status, 400);
    assert_eq!(g("at", json!({"range": ["1970-01-02", "1970-01-01"]})).status, 400);
}
