//! The disclosure rule over raw HTTP: the four attacks of issue 18 are refused before any key
//! leaves the keyhost, a refusal changes nothing, and ordinary work is answered.

use ghostpii_core::sealed_gram::encode_weights;
use ghostpii_core::RidSet;
use serde_json::{json, Value};

use crate::client::{register, World};

fn set(w: &World, offsets: &[u64]) -> RidSet {
    RidSet::from_unsorted(&offsets.iter().map(|o| w.start + o).collect::<Vec<_>>())
}

fn refused_as(r: &Value, reason: &str) {
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(r["reason"], reason, "{r}");
}

/// Attack 1: multiplicities 721·121^j on 4 of 10 rows pack their values into one sum.
#[test]
fn multiplicities_that_pack_rows_are_refused() {
    let w = World::new();
    w.grant("age", "aggregate", json!({"min_rows": 10}));
    let rows = w.rids(10);
    let mut d = w.sum(&rows, &[(&w.age, 1)]);
    d["repeats"] = json!((0..4u32)
        .map(|j| json!({"k": 721 * 121u64.pow(j), "rids": set(&w, &[u64::from(j)]).to_base64()}))
        .collect::<Vec<_>>());
    let r = w.kh.answer(&w.analyst, json!([d.clone()]));
    refused_as(&r[0], "audit_disclosure");
    assert!(r[0].get("key").is_none());
    // nothing half-written: the plain sum over the same rows is answered, the packing still not
    assert_eq!(
        w.kh.answer(&w.analyst, json!([w.sum(&rows, &[(&w.age, 1)])]))[0]["ok"],
        true
    );
    refused_as(&w.kh.answer(&w.analyst, json!([d]))[0], "audit_disclosure");
    // a repeat on a whole group of 10 (a join that doubles a group) is fine
    let twenty = w.rids(20);
    let mut d = w.sum(&twenty, &[(&w.age, 1)]);
    d["repeats"] = json!([{"k": 2, "rids": w.rids(10).to_base64()}]);
    assert_eq!(w.kh.answer(&w.analyst, json!([d]))[0]["ok"], true);
}

/// Attack 2: per-row weights in a Gram entry (`dot` with a plaintext feature) that separate the
/// rows' digits (8^i here: `age` has no declared bounds, so 121^i would fail the wrap check).
#[test]
fn per_row_weights_that_pack_rows_are_refused() {
    let w = World::new();
    w.grant("age", "moments", json!({"min_rows": 10, "columns": ["age"]}));
    let rows = w.rids(10);
    let gram = |weights: Vec<i64>| {
        json!({"op": "gram", "dataset_id": w.dataset_id, "rids": rows.to_base64(),
               "weights": [{"values": encode_weights(&weights)}],
               "entries": [{"column_id": w.age.id, "epoch": w.age.epoch, "weight": 0},
                           {"column_id": w.age.id, "epoch": w.age.epoch}]})
    };
    let r =
        w.kh.answer(&w.analyst, json!([gram((0..10u32).map(|i| 8i64.pow(i)).collect())]));
    refused_as(&r[0], "audit_disclosure");
    // a feature constant over the rows treats them alike: answered
    let r = w.kh.answer(&w.analyst, json!([gram(vec![3; 10])]));
    assert_eq!(r[0]["ok"], true, "{}", r[0]);
}

/// Attack 3: Gram(A), then Gram(A ∪ {r, r'}) would give the pair's Σx and Σx².
#[test]
fn pairs_added_to_an_answered_set_are_refused() {
    let w = World::new();
    w.grant("age", "moments", json!({"min_rows": 10, "columns": ["age"]}));
    let gram = |rows: &RidSet| {
        json!({"op": "gram", "dataset_id": w.dataset_id, "rids": rows.to_base64(),
               "entries": [{"column_id": w.age.id, "epoch": w.age.epoch}]})
    };
    let a: Vec<u64> = (100..110).collect();
    assert_eq!(w.kh.answer(&w.analyst, json!([gram(&set(&w, &a))]))[0]["ok"], true);
    let with_pair: Vec<u64> = a.iter().copied().chain([0, 1]).collect();
    refused_as(
        &w.kh.answer(&w.analyst, json!([gram(&set(&w, &with_pair))]))[0],
        "audit_disclosure",
    );
    // ten more rows at once are a group of their own
    let with_ten: Vec<u64> = a.iter().copied().chain(0..10).collect();
    assert_eq!(
        w.kh.answer(&w.analyst, json!([gram(&set(&w, &with_ten))]))[0]["ok"],
        true
    );
}

/// Attack 4: one owner's two datasets hold the same people; scores on each would give every
/// row's two values. Refused unless the owner declared the datasets hold different people.
#[test]
fn namesake_columns_of_one_owner_are_refused_unless_declared_disjoint() {
    let w = World::new();
    let second = |name: &str, population: Option<&str>| {
        let mut body = json!({"name": name});
        if let Some(p) = population {
            body["population"] = json!(p);
        }
        let d = w.kh.post(&w.owner, "/v1/datasets", body).ok();
        let col = register(
            &w.kh,
            &w.owner,
            name,
            json!({"name": "age", "dtype": "int64", "scale": 0, "bounds": [0, 120], "facets": ["num"]}),
        );
        let other = register(
            &w.kh,
            &w.owner,
            name,
            json!({"name": "income", "dtype": "int64", "scale": 0, "bounds": [0, 1000], "facets": ["num"]}),
        );
        let start =
            w.kh.post(
                &w.owner,
                &format!("/v1/datasets/{name}/rids"),
                json!({"count": 100, "columns": [col.id, other.id]}),
            )
            .ok()["start"]
                .as_u64()
                .unwrap();
        for c in ["age", "income"] {
            w.kh.post(
                &w.owner,
                "/v1/grants",
                json!({"identity": "analyst", "dataset": name, "column": c, "operation": "score",
                       "params": {"max_vectors": 1}}),
            )
            .ok();
            w.kh.post(
                &w.owner,
                "/v1/grants",
                json!({"identity": "analyst", "dataset": name, "column": c, "operation": "aggregate",
                       "params": {"min_rows": 10}}),
            )
            .ok();
        }
        (d["id"].as_i64().unwrap(), col, other, start)
    };
    let score = |ds: i64, cols: &[(&crate::client::Column, i64)], start: u64| {
        json!({"op": "score", "dataset_id": ds,
               "rids": RidSet::from_sorted(&(start..start + 100).collect::<Vec<_>>()).to_base64(),
               "terms": cols.iter().map(|(c, wt)| json!({"column_id": c.id, "epoch": c.epoch, "weight": wt}))
                   .collect::<Vec<_>>()})
    };
    // two undeclared datasets with columns age and income: scores (1, 1) and (2, 1)
    let (d1, age1, inc1, s1) = second("one", None);
    let (d2, age2, inc2, s2) = second("two", None);
    let r = w.kh.answer(
        &w.analyst,
        json!([
            score(d1, &[(&age1, 1), (&inc1, 1)], s1),
            score(d2, &[(&age2, 2), (&inc2, 1)], s2)
        ]),
    );
    for x in &r {
        refused_as(x, "population_overlap");
        assert!(x["message"].as_str().unwrap().contains("population"), "{x}");
    }
    // exact sums too (the dataset `patrons` of the same owner also has `income` and `age`)
    let rows = RidSet::from_sorted(&(s1..s1 + 20).collect::<Vec<_>>());
    let sum = json!({"op": "sum", "dataset_id": d1, "rids": rows.to_base64(),
                     "terms": [{"column_id": age1.id, "epoch": age1.epoch, "weight": 1}]});
    refused_as(&w.kh.answer(&w.analyst, json!([sum]))[0], "population_overlap");
    // a label cannot change after creation
    let again = w.kh.post(
        &w.owner,
        "/v1/datasets",
        json!({"name": "one", "exist_ok": true, "population": "b"}),
    );
    assert_eq!(again.reason(), "conflict");
}

/// Datasets declared to hold different people answer exact questions on namesake columns.
#[test]
fn declared_populations_answer() {
    let w = World::new();
    let mk = |name: &str, pop: &str| {
        let d =
            w.kh.post(&w.owner, "/v1/datasets", json!({"name": name, "population": pop}))
                .ok();
        assert_eq!(d["population"], pop);
        let col = register(
            &w.kh,
            &w.owner,
            name,
            json!({"name": "visits", "dtype": "int64", "scale": 0, "bounds": [0, 50], "facets": ["num"]}),
        );
        let start =
            w.kh.post(
                &w.owner,
                &format!("/v1/datasets/{name}/rids"),
                json!({"count": 40, "columns": [col.id]}),
            )
            .ok()["start"]
                .as_u64()
                .unwrap();
        w.kh.post(
            &w.owner,
            "/v1/grants",
            json!({"identity": "analyst", "dataset": name, "column": "visits", "operation": "aggregate",
                   "params": {"min_rows": 10}}),
        )
        .ok();
        (d["id"].as_i64().unwrap(), col, start)
    };
    let (d1, c1, s1) = mk("north", "north-clinic");
    let (d2, c2, s2) = mk("south", "south-clinic");
    for (d, c, s) in [(d1, &c1, s1), (d2, &c2, s2)] {
        let rows = RidSet::from_sorted(&(s..s + 20).collect::<Vec<_>>());
        let sum = json!({"op": "sum", "dataset_id": d, "rids": rows.to_base64(),
                         "terms": [{"column_id": c.id, "epoch": c.epoch, "weight": 1}]});
        let r = w.kh.answer(&w.analyst, json!([sum]));
        assert_eq!(r[0]["ok"], true, "{}", r[0]);
    }
    // the same label on a third dataset ties it to the first
    let (d3, c3, s3) = mk("north2", "north-clinic");
    let rows = RidSet::from_sorted(&(s3..s3 + 20).collect::<Vec<_>>());
    let sum = json!({"op": "sum", "dataset_id": d3, "rids": rows.to_base64(),
                     "terms": [{"column_id": c3.id, "epoch": c3.epoch, "weight": 1}]});
    refused_as(&w.kh.answer(&w.analyst, json!([sum]))[0], "population_overlap");
}

/// `sums` (group_by): disjoint groups plus the total, a group_by after a filter, repeats.
#[test]
fn grouped_work_is_answered() {
    let w = World::new();
    w.grant("income", "aggregate", json!({"min_rows": 10}));
    let groups = |n_groups: u64, rows: u64| {
        let gs: Vec<String> = (0..n_groups)
            .map(|g| {
                RidSet::from_sorted(
                    &(0..rows)
                        .filter(|r| r % n_groups == g)
                        .map(|r| w.start + r)
                        .collect::<Vec<_>>(),
                )
                .to_base64()
            })
            .collect();
        json!({"op": "sums", "dataset_id": w.dataset_id, "groups": gs,
               "terms": [{"column_id": w.income.id, "epoch": w.income.epoch, "weight": 1}]})
    };
    let ok = |d: Value| {
        let r = w.kh.answer(&w.analyst, json!([d]));
        assert_eq!(r[0]["ok"], true, "{}", r[0]);
    };
    ok(groups(20, 1000));
    ok(w.sum(&w.rids(1000), &[(&w.income, 1)]));
    ok(groups(20, 1000));
    // after a filter keeping rows 0..600: 20 groups of 30
    ok(groups(20, 600));
    // a sum over 995 rows would leave row 995 alone in its group's part: refused, nothing kept
    refused_as(
        &w.kh.answer(&w.analyst, json!([w.sum(&w.rids(995), &[(&w.income, 1)])]))[0],
        "audit_disclosure",
    );
    // a group_by of 40 groups over the filtered rows cuts every part in two of 15: answered
    ok(groups(40, 600));
    ok(groups(20, 1000));
}

fn spent(w: &World) -> Value {
    w.kh.get(&w.analyst, "/v1/budget?dataset=patrons").ok()
}

/// A batch of DP answers that does not fit the budget is refused whole, and charges nothing.
#[test]
fn a_dp_batch_over_budget_is_refused_whole_and_charges_nothing() {
    let w = World::new();
    w.grant("income", "aggregate", json!({"epsilon": 1.0, "budget": 3.0}));
    // five overlapping row sets (sequential composition): 5ε > 3ε
    let batch: Vec<Value> = (0..5u64).map(|i| w.sum(&w.rids(100 + i), &[(&w.income, 1)])).collect();
    let r = w.kh.answer(&w.analyst, json!(batch));
    assert!(
        r.iter().all(|x| x["ok"] == false && x["reason"] == "budget_exhausted"),
        "{r:?}"
    );
    assert!(
        r[0]["message"].as_str().unwrap().contains("nothing was charged"),
        "{}",
        r[0]
    );
    let b = spent(&w);
    assert_eq!(b["epsilon_spent"].as_f64().unwrap(), 0.0, "{b}");
    // three fit: answered, charged 3
    let r = w.kh.answer(&w.analyst, json!(batch[..3].to_vec()));
    assert!(r.iter().all(|x| x["ok"] == true), "{r:?}");
    assert!((spent(&w)["epsilon_spent"].as_f64().unwrap() - 3.0).abs() < 1e-9);
}

/// Grouped DP moments over 19 disjoint singleton groups cost ε once (parallel composition).
#[test]
fn dp_moments_over_disjoint_groups_compose_in_parallel() {
    let w = World::new();
    w.grant(
        "income",
        "moments",
        json!({"epsilon": 0.5, "budget": 2.0, "columns": ["income"]}),
    );
    let gram = |rows: &RidSet| {
        json!({"op": "gram", "dataset_id": w.dataset_id, "rids": rows.to_base64(),
               "entries": [{"column_id": w.income.id, "epoch": w.income.epoch}]})
    };
    let groups: Vec<Value> = (0..19u64).map(|g| gram(&set(&w, &[g]))).collect();
    let r = w.kh.answer(&w.analyst, json!(groups));
    assert!(r.iter().all(|x| x["ok"] == true), "{r:?}");
    let b = spent(&w);
    assert!((b["epsilon_spent"].as_f64().unwrap() - 0.5).abs() < 1e-9, "{b}");
    // the same batch again: already charged, free
    let r = w.kh.answer(&w.analyst, json!(groups));
    assert!(r.iter().all(|x| x["ok"] == true));
    assert!((spent(&w)["epsilon_spent"].as_f64().unwrap() - 0.5).abs() < 1e-9);
    // overlapping groups compose sequentially: 2 × 0.5
    let overlapping = vec![gram(&set(&w, &[100, 101])), gram(&set(&w, &[101, 102]))];
    let r = w.kh.answer(&w.analyst, json!(overlapping));
    assert!(r.iter().all(|x| x["ok"] == true), "{r:?}");
    assert!((spent(&w)["epsilon_spent"].as_f64().unwrap() - 1.5).abs() < 1e-9);
}
