//! Differential privacy in sum answer keys, budgets, the linear audit of exact sums, and
//! repeated rows.

use ghostpii_core::RidSet;
use serde_json::{json, Value};

use crate::client::World;

/// η = exact key − noisy key (the analyst reveals sum + η).
fn noise(exact: &Value, noisy: &Value) -> i128 {
    let e: u128 = exact["key"].as_str().unwrap().parse().unwrap();
    let n: u128 = noisy["key"].as_str().unwrap().parse().unwrap();
    e.wrapping_sub(n) as i128
}

fn budget(w: &World) -> Value {
    w.kh.get(&w.analyst, "/v1/budget?dataset=patrons").ok()
}

#[test]
fn dp_grants_need_bounded_columns() {
    let w = World::new();
    let r = w.kh.post(
        &w.owner,
        "/v1/grants",
        json!({"identity": "analyst", "dataset": "patrons", "column": "age", "operation": "aggregate",
               "params": {"epsilon": 1.0}}),
    );
    assert_eq!((r.status, r.reason()), (400, "invalid_request"));
    assert!(r.body["error"]["message"].as_str().unwrap().contains("bounds"));
    for bad in [
        json!({"epsilon": -1.0}),
        json!({"delta": 1e-6}),
        json!({"epsilon": 1.0, "delta": 0.7}),
    ] {
        let r = w.kh.post(
            &w.owner,
            "/v1/grants",
            json!({"identity": "analyst", "dataset": "patrons", "column": "income", "operation": "aggregate",
                   "params": bad}),
        );
        assert_eq!(r.status, 400, "{}", r.body);
    }
}

#[test]
fn laplace_noise_is_deterministic_per_request_and_budgeted() {
    let w = World::new();
    w.grant(
        "income",
        "aggregate",
        json!({"min_rows": 10, "epsilon": 1.0, "budget": 2.5}),
    );
    let (a, b, c) = (w.rids(100), w.rids(200), w.rids(300));
    let exact = w.kh.answer(&w.owner, json!([w.sum(&a, &[(&w.income, 1)])]));
    let first = w.kh.answer(&w.analyst, json!([w.sum(&a, &[(&w.income, 1)])]));
    assert_eq!(first[0]["ok"], true, "{}", first[0]);
    assert_eq!(first[0]["dp"]["mechanism"], "discrete_laplace");
    assert_eq!(first[0]["dp"]["sensitivity"], 100_000_000.0);
    let eta = noise(&exact[0], &first[0]);
    assert_ne!(eta, 0, "noise of scale 1e8 is never exactly zero in practice");
    // The same request again: the same noisy key, no extra cost.
    let again = w.kh.answer(&w.analyst, json!([w.sum(&a, &[(&w.income, 1)])]));
    assert_eq!(again[0]["key"], first[0]["key"]);
    assert_eq!(budget(&w)["epsilon_spent"], 1.0);
    // min_rows still applies.
    let small = w.kh.answer(&w.analyst, json!([w.sum(&w.rids(5), &[(&w.income, 1)])]));
    assert_eq!(small[0]["reason"], "min_rows");
    let second = w.kh.answer(&w.analyst, json!([w.sum(&b, &[(&w.income, 1)])]));
    assert_eq!(second[0]["ok"], true);
    let st = budget(&w);
    assert_eq!(
        (st["epsilon_spent"].clone(), st["epsilon_total"].clone()),
        (json!(2.0), json!(2.5))
    );
    assert_eq!(st["remaining"], 0.5);
    // The third distinct request would overspend.
    let third = w.kh.answer(&w.analyst, json!([w.sum(&c, &[(&w.income, 1)])]));
    assert_eq!(third[0]["reason"], "budget_exhausted");
    let msg = third[0]["message"].as_str().unwrap();
    assert!(msg.contains("spent 2 of 2.5 (remaining 0.5)"), "{msg}");
    // Analysts cannot raise their own budget; the owner can, and can reset it.
    let r = w.kh.put(
        &w.analyst,
        "/v1/budget",
        json!({"identity": "analyst", "dataset": "patrons", "total": 99.0}),
    );
    assert_eq!(r.status, 403);
    let st =
        w.kh.put(
            &w.owner,
            "/v1/budget",
            json!({"identity": "analyst", "dataset": "patrons", "total": 3.0}),
        )
        .ok();
    assert_eq!(st["epsilon_total"], 3.0);
    let third = w.kh.answer(&w.analyst, json!([w.sum(&c, &[(&w.income, 1)])]));
    assert_eq!(third[0]["ok"], true);
    let st =
        w.kh.post(
            &w.owner,
            "/v1/budget/reset",
            json!({"identity": "analyst", "dataset": "patrons"}),
        )
        .ok();
    assert_eq!(
        (st["epsilon_spent"].clone(), st["remaining"].clone()),
        (json!(0.0), json!(3.0))
    );
    let other = w.kh.get(&w.owner, "/v1/budget?dataset=patrons&identity=analyst").ok();
    assert_eq!(other["identity"], "analyst");
    // Every DP answer and refusal is in the audit log with its mechanism.
    let log = w.kh.get(&w.owner, "/v1/audit?dataset=patrons&identity=analyst").ok();
    let sums: Vec<&Value> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["operation"] == "sum")
        .collect();
    assert_eq!(sums.len(), 6);
    assert!(sums
        .iter()
        .filter(|e| e["decision"] == "issued")
        .all(|e| e["params"]["dp"]["mechanism"] == "discrete_laplace"));
    assert!(sums.iter().any(|e| e["reason"] == "budget_exhausted"));
}

#[test]
fn gaussian_and_laplace_answers_share_one_total() {
    let w = World::new();
    let g = w.grant("income", "aggregate", json!({"epsilon": 1.0, "delta": 1e-6}));
    let st =
        w.kh.put(
            &w.owner,
            "/v1/budget",
            json!({"identity": "analyst", "dataset": "patrons", "total": 2.0}),
        )
        .ok();
    assert_eq!(st["total_source"], "set");
    let r = w.kh.answer(&w.analyst, json!([w.sum(&w.rids(100), &[(&w.income, 1)])]));
    assert_eq!(r[0]["dp"]["mechanism"], "discrete_gaussian", "{}", r[0]);
    let st = budget(&w);
    let rho = st["accounting"]["zcdp"]["rho"].as_f64().unwrap();
    assert!((rho - r[0]["dp"]["rho"].as_f64().unwrap()).abs() < 1e-12);
    assert_eq!(st["accounting"]["basic"]["epsilon"], 1.0);
    assert_eq!(
        (st["epsilon_total"].clone(), st["delta"].clone()),
        (json!(2.0), json!(1e-5))
    );
    // One Gaussian answer: zCDP at δ_T/2 (0.94) is tighter than its nominal ε = 1.
    let zcdp = st["accounting"]["zcdp"]["epsilon"].as_f64().unwrap();
    assert!(zcdp < 1.0 && st["epsilon_spent"].as_f64() == Some(zcdp), "{st}");
    // Now Laplace answers at ε = 0.5: two fit (basic composition: 1 + 0.5 + 0.5 = 2), a third not, as the
    // Gaussian answer counts in the same total.
    let id = g["grant_id"].as_i64().unwrap();
    w.kh.delete(&w.owner, &format!("/v1/grants/{id}")).ok();
    w.grant("income", "aggregate", json!({"epsilon": 0.5}));
    for n in [90, 80] {
        let r = w.kh.answer(&w.analyst, json!([w.sum(&w.rids(n), &[(&w.income, 1)])]));
        assert_eq!(r[0]["dp"]["mechanism"], "discrete_laplace", "{}", r[0]);
    }
    let r = w.kh.answer(&w.analyst, json!([w.sum(&w.rids(70), &[(&w.income, 1)])]));
    assert_eq!(r[0]["reason"], "budget_exhausted", "{}", r[0]);
    // One total for every mechanism, with its δ; there are no separate units any more.
    let r = w.kh.put(
        &w.owner,
        "/v1/budget",
        json!({"identity": "analyst", "dataset": "patrons", "total": 1.0, "unit": "rho"}),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let st =
        w.kh.put(
            &w.owner,
            "/v1/budget",
            json!({"identity": "analyst", "dataset": "patrons", "total": 50.0, "delta": 1e-6}),
        )
        .ok();
    assert_eq!(
        (st["total_source"].clone(), st["delta"].clone()),
        (json!("set"), json!(1e-6))
    );
}

#[test]
fn dp_grants_without_budget_get_the_keyhost_default_and_show_it() {
    let w = World::new();
    w.grant("income", "aggregate", json!({"epsilon": 0.5}));
    let g = w.kh.get(&w.owner, "/v1/grants?dataset=patrons&identity=analyst").ok();
    assert_eq!(
        g["grants"][0]["effective_budget"],
        json!({"epsilon": 1.0, "delta": 1e-5, "source": "keyhost_default"})
    );
    let ok = |n| w.kh.answer(&w.analyst, json!([w.sum(&w.rids(n), &[(&w.income, 1)])]))[0].clone();
    assert_eq!(ok(100)["ok"], true);
    assert_eq!(ok(90)["ok"], true);
    let r = ok(80);
    assert_eq!(r["reason"], "budget_exhausted", "{r}");
    assert!(r["message"].as_str().unwrap().contains("keyhost_default"), "{r}");
    // A grant with its own budget: that budget is the total (and listed as such).
    w.grant("income", "aggregate", json!({"epsilon": 0.5, "budget": 0.75}));
    let g = w.kh.get(&w.analyst, "/v1/grants?dataset=patrons").ok();
    for gr in g["grants"].as_array().unwrap() {
        assert_eq!(gr["effective_budget"]["epsilon"], 0.75, "{gr}");
        assert_eq!(gr["effective_budget"]["source"], "grant");
    }
}

#[test]
fn a_missing_noise_key_stops_the_keyhost_once_dp_answers_were_charged() {
    let mut w = World::new();
    w.grant("income", "aggregate", json!({"epsilon": 0.1, "budget": 5.0}));
    let a = w.rids(100);
    let first = w.kh.answer(&w.analyst, json!([w.sum(&a, &[(&w.income, 1)])]));
    assert_eq!(first[0]["ok"], true);
    w.kh.restart();
    let same = w.kh.answer(&w.analyst, json!([w.sum(&a, &[(&w.income, 1)])]));
    assert_eq!(
        same[0]["key"], first[0]["key"],
        "the noise key persists across restarts"
    );
    if let Some(k) = w.kh.kh.take() {
        k.shutdown();
    }
    let dir = w.kh.data_dir();
    std::fs::remove_file(dir.join("noise.key")).unwrap();
    let err = match ghostpii_keyhost::spawn(w.kh.config()) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a keyhost started with a fresh noise key over charged DP answers"),
    };
    assert!(
        err.contains("noise.key is missing") && err.contains("--new-noise-key"),
        "{err}"
    );
    assert!(!dir.join("noise.key").exists(), "nothing written");
    let mut cfg = w.kh.config();
    cfg.privacy.new_noise_key = true;
    w.kh.kh = Some(ghostpii_keyhost::spawn(cfg).unwrap());
    let spent = budget(&w)["epsilon_spent"].as_f64().unwrap();
    let again = w.kh.answer(&w.analyst, json!([w.sum(&a, &[(&w.income, 1)])]));
    assert_eq!(again[0]["ok"], true);
    assert!((budget(&w)["epsilon_spent"].as_f64().unwrap() - spent - 0.1).abs() < 1e-9);
}

#[test]
fn the_noise_request_names_the_column_epoch() {
    let w = World::new();
    w.grant("income", "aggregate", json!({"epsilon": 0.5, "budget": 5.0}));
    let a = w.rids(100);
    let r1 = w.kh.answer(&w.analyst, json!([w.sum(&a, &[(&w.income, 1)])]));
    let mut d = w.sum(&a, &[(&w.income, 1)]);
    let other_epoch =
        w.kh.post(&w.owner, "/v1/datasets/patrons/columns/income/rotate", json!({}))
            .ok();
    d["terms"][0]["epoch"] = other_epoch["epoch"].clone();
    let r2 = w.kh.answer(&w.analyst, json!([d]));
    assert_eq!(r2[0]["ok"], true, "{}", r2[0]);
    assert_eq!(r1[0]["ok"], true);
    let log = w.kh.get(&w.owner, "/v1/audit?dataset=patrons&identity=analyst").ok();
    let reqs: Vec<&Value> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["operation"] == "sum")
        .map(|e| &e["params"]["dp"]["request"])
        .collect();
    assert_eq!(reqs.len(), 2);
    assert_ne!(
        reqs[0], reqs[1],
        "another epoch is another request (own noise, own charge)"
    );
}

#[test]
fn the_linear_audit_refuses_differencing_without_dp() {
    let w = World::new();
    w.grant("income", "aggregate", json!({"min_rows": 10}));
    let s = |r: &RidSet| w.kh.answer(&w.analyst, json!([w.sum(r, &[(&w.income, 1)])]))[0].clone();
    assert_eq!(s(&w.rids(100))["ok"], true);
    // 99 rows: with the 100-row sum it would determine the 100th row → refused.
    let r = s(&w.rids(99));
    assert_eq!(r["reason"], "audit_disclosure", "{r}");
    assert!(r["message"].as_str().unwrap().contains("linear audit"));
    // The same set again and sets that leave groups of at least min_rows are fine.
    assert_eq!(s(&w.rids(100))["ok"], true);
    assert_eq!(s(&w.rids(90))["ok"], true);
    // 95 would leave rows 91..95 and 96..100 as sums of 5 < min_rows 10 (the disclosure
    // rule; the former rank test allowed it)
    assert_eq!(s(&w.rids(95))["reason"], "audit_disclosure");
    // 96 rows would isolate the 96th.
    assert_eq!(s(&w.rids(96))["reason"], "audit_disclosure");
    assert_eq!(s(&w.rids(80))["ok"], true);
    // Counting row 1 twice on top of the 100-row set isolates row 1.
    let mut twice = w.sum(&w.rids(100), &[(&w.income, 1)]);
    twice["repeats"] = json!([{"k": 2, "rids": w.rids(1).to_base64()}]);
    let r = w.kh.answer(&w.analyst, json!([twice]));
    assert_eq!(r[0]["reason"], "audit_disclosure", "{}", r[0]);
    // The owner is not limited.
    let r = w.kh.answer(&w.owner, json!([w.sum(&w.rids(99), &[(&w.income, 1)])]));
    assert_eq!(r[0]["ok"], true);
}

#[test]
fn repeated_rows_count_their_masks_k_times() {
    let w = World::new();
    let key = |d: Value| -> u128 {
        let r = w.kh.answer(&w.owner, json!([d]));
        assert_eq!(r[0]["ok"], true, "{}", r[0]);
        r[0]["key"].as_str().unwrap().parse().unwrap()
    };
    let all = key(w.sum(&w.rids(10), &[(&w.income, 1)]));
    let two = key(w.sum(&w.rids(2), &[(&w.income, 1)]));
    for k in [2u128, 3, 7] {
        let mut d = w.sum(&w.rids(10), &[(&w.income, 1)]);
        d["repeats"] = json!([{"k": k, "rids": w.rids(2).to_base64()}]);
        assert_eq!(key(d), all.wrapping_add((k - 1).wrapping_mul(two)));
    }
    // malformed classes are refused
    for bad in [
        json!([{"k": 1, "rids": w.rids(2).to_base64()}]),
        json!([{"k": 2, "rids": RidSet::from_sorted(&[w.start + 50]).to_base64()}]),
        json!([{"k": 2, "rids": w.rids(2).to_base64()}, {"k": 3, "rids": w.rids(1).to_base64()}]),
    ] {
        let mut d = w.sum(&w.rids(10), &[(&w.income, 1)]);
        d["repeats"] = bad;
        let r = w.kh.answer(&w.owner, json!([d]));
        assert_eq!(r[0]["reason"], "invalid_request", "{}", r[0]);
    }
}

#[test]
fn sensitivity_is_replace_one_with_signed_bounds() {
    let w = World::new();
    let temp = crate::client::register(
        &w.kh,
        &w.owner,
        "patrons",
        json!({"name": "temp", "dtype": "int64", "scale": 0, "bounds": [-100, 100], "facets": ["num"]}),
    );
    let alloc =
        w.kh.post(
            &w.owner,
            "/v1/datasets/patrons/rids",
            json!({"count": 50, "columns": [temp.id]}),
        )
        .ok();
    let start = alloc["start"].as_u64().unwrap();
    let rids = RidSet::from_sorted(&(start..start + 50).collect::<Vec<_>>());
    w.grant("temp", "aggregate", json!({"epsilon": 1.0, "budget": 100.0}));
    let ask = |weight: i64, repeats: Option<Value>| {
        let mut d = w.sum(&rids, &[(&temp, weight)]);
        if let Some(r) = repeats {
            d["repeats"] = r;
        }
        let r = w.kh.answer(&w.analyst, json!([d]));
        assert_eq!(r[0]["ok"], true, "{}", r[0]);
        r[0]["dp"]["sensitivity"].as_f64().unwrap()
    };
    // one value can move from −100 to 100: Δ = 200, not max(|lo|, |hi|) = 100
    assert_eq!(ask(1, None), 200.0);
    assert_eq!(ask(-3, None), 600.0);
    let twice = RidSet::from_sorted(&[start, start + 1]);
    assert_eq!(ask(1, Some(json!([{"k": 2, "rids": twice.to_base64()}]))), 400.0);
}

#[test]
fn an_audit_state_beyond_its_limit_refuses_exact_sums() {
    let w = World::new_with(ghostpii_keyhost::Limits {
        audit_max_entries: 1_027, // one dense chunk of the atom map (1,024) and three atoms
        ..Default::default()
    });
    w.grant("income", "aggregate", json!({}));
    let s = |from: u64| {
        let r = RidSet::from_sorted(&(w.start + from..w.start + from + 10).collect::<Vec<_>>());
        w.kh.answer(&w.analyst, json!([w.sum(&r, &[(&w.income, 1)])]))[0].clone()
    };
    let mut reasons = Vec::new();
    for g in 0..8 {
        let r = s(g * 10);
        reasons.push(r["reason"].as_str().unwrap_or("ok").to_owned());
    }
    assert_eq!(reasons[0], "ok");
    let first_limit = reasons
        .iter()
        .position(|r| r == "audit_limit")
        .expect("the limit is reached");
    assert!(reasons[first_limit..].iter().all(|r| r == "audit_limit"), "{reasons:?}");
    let r = s(500);
    assert!(
        r["message"].as_str().unwrap().contains("GHOSTPII_AUDIT_MAX_ENTRIES"),
        "{r}"
    );
}

/// `sums` under DP: disjoint groups cost one group's ε (parallel composition), overlapping
/// groups the sum of theirs (sequential composition), each charged once for the batch.
#[test]
fn dp_sums_compose_in_parallel_only_over_disjoint_groups() {
    use base64::Engine;
    let w = World::new();
    w.grant(
        "income",
        "aggregate",
        json!({"min_rows": 10, "epsilon": 0.5, "budget": 5.0}),
    );
    let group = |lo: u64, n: u64| RidSet::from_sorted(&(w.start + lo..w.start + lo + n).collect::<Vec<_>>());
    let sums = |gs: &[RidSet]| {
        json!([{"op": "sums", "dataset_id": w.dataset_id,
                "terms": [{"column_id": w.income.id, "epoch": w.income.epoch, "weight": 1}],
                "groups": gs.iter().map(|g| base64::engine::general_purpose::STANDARD.encode(g.to_bytes()))
                    .collect::<Vec<_>>()}])
    };
    let disjoint =
        w.kh.answer(&w.analyst, sums(&[group(0, 20), group(20, 20), group(40, 20)]));
    assert_eq!(disjoint[0]["dp"]["composition"], "parallel", "{}", disjoint[0]);
    assert_eq!(budget(&w)["epsilon_spent"], 0.5);
    let overlapping =
        w.kh.answer(&w.analyst, sums(&[group(100, 20), group(110, 20), group(200, 20)]));
    assert_eq!(overlapping[0]["dp"]["composition"], "sequential", "{}", overlapping[0]);
    assert_eq!(budget(&w)["epsilon_spent"], 2.0);
}
