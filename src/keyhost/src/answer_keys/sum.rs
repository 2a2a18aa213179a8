//! `sum` descriptors: `Σ_t w_t · Σ_{rid} PRF(k_t, rid)` over the requested rows (the answer key
//! of a masked linear combination), minus DP noise where a grant asks for it.

use std::sync::Arc;

use ghostpii_core::{ColumnKeys, Facet, RidSet};
use num_bigint::BigUint;
use num_traits::ToPrimitive;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{check_rids, column_epoch, dataset, note, set_authority, Ctx, Effect};
use crate::audit::NewEntry;
use crate::columns::Column;
use crate::datasets::Dataset;
use crate::dp::{Mechanism, NoisePlan};
use crate::error::{reason, ApiError, ApiResult};
use crate::grants::Operation;
use crate::policy::{self, Authority};

#[derive(Debug, Deserialize)]
pub(super) struct Term {
    pub(super) column_id: i64,
    epoch: u32,
    weight: i64,
}

pub(super) struct SumWork {
    rids: Arc<RidSet>,
    terms: Vec<(ColumnKeys, i64)>,
    noise: Option<NoisePlan>,
}

fn check_min_rows(auth: &Authority, col: &Column, rids: &RidSet) -> ApiResult<()> {
    match auth.min_rows() {
        Some(min) if rids.len() < min => Err(ApiError::refused(
            reason::MIN_ROWS,
            format!(
                "the aggregate covers {} rows; the grant on column '{}' requires at least {min}",
                rids.len(),
                col.name
            ),
        )),
        _ => Ok(()),
    }
}

pub(super) fn plan(
    cx: &mut Ctx<'_>,
    entry: &mut NewEntry,
    effects: &mut Vec<Effect>,
    dataset_id: i64,
    terms: Vec<Term>,
    rids: RidSet,
) -> ApiResult<SumWork> {
    entry.params = json!({
        "dataset_id": dataset_id,
        "terms": terms.iter().map(|t| json!({"column_id": t.column_id, "epoch": t.epoch, "weight": t.weight}))
            .collect::<Vec<_>>(),
    });
    let ds = dataset(cx, dataset_id)?;
    entry.dataset = Some(ds.name.clone());
    if terms.is_empty() {
        return Err(ApiError::invalid("a sum needs at least one term"));
    }
    let mut resolved = Vec::with_capacity(terms.len());
    for t in &terms {
        let (col, keys) = column_epoch(cx, &ds, t.column_id, t.epoch)?;
        resolved.push((col, keys, t.weight));
    }
    let mut names: Vec<&str> = resolved.iter().map(|(c, _, _)| c.name.as_str()).collect();
    names.dedup();
    entry.column = Some(names.join(","));
    for (col, _, _) in &resolved {
        if !col.spec.has(Facet::Num) {
            return Err(ApiError::invalid(format!(
                "column '{}' has no 'num' facet, so it cannot be summed",
                col.name
            )));
        }
    }
    let mut auths = Vec::with_capacity(resolved.len());
    for (col, _, _) in &resolved {
        auths.push(policy::authorize(
            cx.conn,
            cx.caller,
            &ds,
            &col.name,
            Operation::Aggregate,
        )?);
    }
    set_authority(entry, &auths);
    for (col, _, _) in &resolved {
        check_rids(cx, col, &rids)?;
    }
    for ((col, _, _), auth) in resolved.iter().zip(&auths) {
        check_min_rows(auth, col, &rids)?;
    }
    super::recheck::check_no_wrap(
        &resolved.iter().map(|(c, _, w)| (c, *w)).collect::<Vec<_>>(),
        rids.len(),
    )?;
    let rids = Arc::new(rids);
    let cols: Vec<(&Column, i64)> = resolved.iter().map(|(c, _, w)| (c, *w)).collect();
    let noise = plan_noise(cx, entry, effects, &ds, &cols, &auths, &rids)?;
    // Query-set overlap control for exact answers under grants with min_rows.
    for ((col, _, _), auth) in resolved.iter().zip(&auths) {
        if let (Authority::Grant { .. }, None, Some(min_rows)) = (auth, auth.dp_grant(), auth.min_rows()) {
            effects.push(Effect::Overlap {
                identity_id: cx.caller.id,
                column_id: col.id,
                column: col.name.clone(),
                rids: rids.clone(),
                digest: rids.digest_hex(),
                min_rows,
            });
        }
    }
    Ok(SumWork {
        rids,
        terms: resolved.into_iter().map(|(_, k, w)| (k, w)).collect(),
        noise,
    })
}

/// The DP noise of the sum, if any term's grant asks for it: ε the smallest among the DP
/// grants, δ the smallest if all of them have one (else discrete Laplace), sensitivity
/// `Σ |w|·max(|lo|, |hi|)` over all terms. Adds the budget charge to `effects`.
fn plan_noise(
    cx: &Ctx<'_>,
    entry: &mut NewEntry,
    effects: &mut Vec<Effect>,
    ds: &Dataset,
    cols: &[(&Column, i64)],
    auths: &[Authority],
    rids: &RidSet,
) -> ApiResult<Option<NoisePlan>> {
    let dp: Vec<_> = auths.iter().filter_map(|a| a.dp_grant()).collect();
    if dp.is_empty() {
        return Ok(None);
    }
    let epsilon = dp.iter().filter_map(|g| g.epsilon).fold(f64::INFINITY, f64::min);
    let delta = if dp.iter().all(|g| g.delta.is_some()) {
        dp.iter().filter_map(|g| g.delta).reduce(f64::min)
    } else {
        None
    };
    let mut sensitivity = BigUint::from(0u32);
    for (col, w) in cols {
        let Some((lo, hi)) = col.spec.bounds else {
            return Err(ApiError::invalid(format!(
                "column '{}' has no declared bounds, so this sum has no bounded sensitivity and cannot be answered with differential privacy as the grant requires; encrypt it with bounds=(lo, hi)",
                col.name
            )));
        };
        let m = lo.unsigned_abs().max(hi.unsigned_abs());
        sensitivity += BigUint::from(w.unsigned_abs()) * BigUint::from(m);
    }
    let mechanism = Mechanism::new(epsilon, delta);
    let mut terms: Vec<String> = cols.iter().map(|(c, w)| format!("{}:{}", c.id, w)).collect();
    terms.sort();
    let canonical = format!("{}|{}|{}|{}", cx.caller.id, ds.id, terms.join(","), rids.digest_hex());
    let plan = NoisePlan::new(cx.st.noise_key(), &canonical, mechanism, sensitivity);
    let (unit, cost) = mechanism.cost();
    let mut dp_note = mechanism.describe(&plan.sensitivity);
    dp_note["request"] = json!(plan.request);
    note(entry, "dp", dp_note);
    effects.push(Effect::Budget {
        identity_id: cx.caller.id,
        dataset_id: ds.id,
        dataset: ds.name.clone(),
        request: plan.request.clone(),
        unit,
        cost,
    });
    Ok(Some(plan))
}

pub(super) fn compute(w: SumWork) -> Result<Value, ApiError> {
    let v = w.rids.to_vec();
    let key = w.terms.iter().fold(0u128, |acc, (keys, wt)| {
        let s = keys.num.sum_masks(&v);
        acc.wrapping_add((*wt as i128 as u128).wrapping_mul(s))
    });
    match w.noise {
        None => Ok(json!({"key": key.to_string()})),
        Some(plan) => {
            // key − η: the analyst's unmasked sum is sum + η
            let eta = plan
                .sample()
                .to_i128()
                .ok_or_else(|| ApiError::internal("dp noise", &"noise outside 128 bits"))?;
            let noisy = key.wrapping_sub(eta as u128);
            Ok(json!({
                "key": noisy.to_string(),
                "dp": plan.mechanism.describe(&plan.sensitivity),
            }))
        }
    }
}
