//! Token rotation, grant revocation and column key rotation.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ghostpii_core::{num, NumKey};
use serde_json::json;

use crate::client::{Column, World};

#[test]
fn token_rotation_revokes_the_old_token_at_once() {
    let w = World::new();
    let r = w.kh.post(&w.analyst, "/v1/tokens/rotate", json!({})).ok();
    let new = r["token"].as_str().unwrap().to_owned();
    assert_ne!(new, w.analyst);
    let old = w.kh.get(&w.analyst, "/v1/whoami");
    assert_eq!((old.status, old.reason()), (401, "token_revoked"));
    assert_eq!(w.kh.get(&new, "/v1/whoami").ok()["identity"], "analyst");
    // Replaying the old token to rotate again fails too.
    let again = w.kh.post(&w.analyst, "/v1/tokens/rotate", json!({}));
    assert_eq!(again.status, 401);
    let log = w.kh.get(&w.kh.admin, "/v1/audit?identity=analyst").ok();
    assert!(log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["operation"] == "token.rotate"));
}

#[test]
fn column_key_rotation_keeps_older_epochs_answering() {
    let w = World::new();
    w.grant("income", "aggregate", json!({}));
    let r =
        w.kh.post(&w.analyst, "/v1/datasets/patrons/columns/income/rotate", json!({}));
    assert_eq!(r.status, 403);
    let r =
        w.kh.post(&w.owner, "/v1/datasets/patrons/columns/income/rotate", json!({}))
            .ok();
    assert_eq!((r["epoch"].clone(), r["previous_epoch"].clone()), (json!(2), json!(1)));
    let reg =
        w.kh.post(
            &w.owner,
            "/v1/datasets/patrons/columns",
            json!({"name": "income", "dtype": "float64", "scale": 2, "bounds": [0, 100_000_000],
                   "facets": ["num", "val"]}),
        )
        .ok();
    assert_eq!(reg["epoch"], 2);
    let k2: [u8; 16] = B64
        .decode(reg["keys"]["num"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    assert_ne!(&k2, w.income.num.expose_bytes());
    let e2 = Column {
        id: w.income.id,
        epoch: 2,
        num: NumKey::from_bytes(&k2),
        val: None,
    };
    // Data encrypted under both epochs: each answers with its own keys.
    let rids = w.rids(10);
    let v = rids.to_vec();
    let vals: Vec<Option<i64>> = (0..10).map(|i| Some(i * 100)).collect();
    for col in [&w.income, &e2] {
        let cells = num::encrypt(&col.num, &v, &vals);
        let masked = cells.iter().fold(0u128, |a, &c| a.wrapping_add(c));
        let res = w.kh.answer(&w.analyst, json!([w.sum(&rids, &[(col, 1)])]));
        let key: u128 = res[0]["key"].as_str().unwrap().parse().unwrap();
        assert_eq!(num::unmask_sum(masked, key), 4500, "epoch {}", col.epoch);
    }
}

#[test]
fn revoked_grants_deny_at_once() {
    let w = World::new();
    let g = w.grant("income", "aggregate", json!({}));
    let req = json!([w.sum(&w.rids(10), &[(&w.income, 1)])]);
    assert_eq!(w.kh.answer(&w.analyst, req.clone())[0]["ok"], true);
    w.kh.delete(&w.owner, &format!("/v1/grants/{}", g["grant_id"])).ok();
    assert_eq!(w.kh.answer(&w.analyst, req)[0]["reason"], "permission_denied");
}
