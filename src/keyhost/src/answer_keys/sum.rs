//! `sum` descriptors: `Σ_t w_t · Σ_{rid} k_rid · PRF(k_t, rid)` over the requested rows, each
//! counted with its multiplicity `k_rid` (the answer key of a masked linear combination), minus
//! DP noise where a grant asks for it. Exact sums under grants go through the linear audit.

use std::sync::Arc;

use ghostpii_core::mask_blocks::MaskBlocks;
use ghostpii_core::{ColumnKeys, Facet, Repeat, RidMultiset, RidSet};
use num_bigint::BigUint;
use num_traits::ToPrimitive;
use serde_json::{json, Value};

use super::wire::WireRids;
use super::{authorize, check_rids, column_epoch, dataset, note, set_authority, Ctx, Effect};
use crate::domain::audit::NewEntry;
use crate::domain::columns::Column;
use crate::domain::datasets::Dataset;
use crate::domain::dp::{Mechanism, NoisePlan};
use crate::domain::grants::Operation;
use crate::domain::policy::Authority;
use crate::error::{reason, ApiError, ApiResult};

pub(super) use ghostpii_proto::descriptor::Term;

/// A class of rows counted more than once: `k` times each.
pub(super) type RepeatSpec = ghostpii_proto::descriptor::Repeat<WireRids>;

/// The rows of a sum descriptor with their multiplicities, checked. Each repeat class is a
/// subset of the support, so it is decoded only if it names at most as many rids.
pub(super) fn with_repeats(support: RidSet, repeats: &[RepeatSpec]) -> ApiResult<RidMultiset> {
    let bad = |e: ghostpii_core::CoreError| ApiError::invalid(e.to_string());
    let max = support.len();
    let repeats = repeats
        .iter()
        .map(|r| {
            Ok(Repeat {
                k: r.k,
                rids: r.rids.to_set_bounded(max).map_err(bad)?,
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    RidMultiset::checked(support, repeats).map_err(bad)
}

/// The rows of a descriptor with their repeats (a support refused at intake stays empty;
/// `check_rids` gives that refusal).
pub(super) fn rows_of(cx: &Ctx<'_>, rids: RidSet, repeats: &[RepeatSpec]) -> ApiResult<RidMultiset> {
    if cx.rid_refusal.is_none() && !repeats.is_empty() {
        with_repeats(rids, repeats)
    } else {
        Ok(RidMultiset {
            support: rids,
            repeats: Vec::new(),
        })
    }
}

pub(super) struct SumWork {
    rows: Arc<RidMultiset>,
    /// Each term's keys, weight and cached block sums of its masks.
    terms: Vec<MaskedTerm>,
    noise: Option<NoisePlan>,
}

/// `min_rows` counts distinct rows: a row repeated by a join is still one person.
pub(super) fn check_min_rows(auth: &Authority, col: &Column, rows: &RidMultiset) -> ApiResult<()> {
    match auth.min_rows() {
        Some(min) if rows.distinct() < min => Err(ApiError::refused(
            reason::MIN_ROWS,
            format!(
                "the aggregate covers {} distinct rows; the grant on column '{}' requires at least {min}",
                rows.distinct(),
                col.name
            ),
        )),
        _ => Ok(()),
    }
}

/// The `min_rows` an exact answer under `auths` is audited with: the largest over its terms of
/// what each term's grants allow (a grant without `min_rows` allows the floor,
/// [`crate::domain::linear_audit::MIN_EXACT_ROWS`]).
pub(super) fn audit_min_rows(auths: &[Authority]) -> u64 {
    auths
        .iter()
        .map(|a| a.min_rows().unwrap_or(0))
        .max()
        .unwrap_or(0)
        .max(crate::domain::linear_audit::MIN_EXACT_ROWS)
}

/// A sum's terms, resolved: its dataset, each term's column, keys and weight, and the
/// authority for each (audit entry filled in: params, dataset, columns, grants).
pub(super) struct Resolved {
    pub(super) ds: Dataset,
    pub(super) terms: Vec<(Column, ColumnKeys, i64)>,
    pub(super) auths: Vec<Authority>,
}

pub(super) fn resolve(cx: &mut Ctx<'_>, entry: &mut NewEntry, dataset_id: i64, terms: &[Term]) -> ApiResult<Resolved> {
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
    for t in terms {
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
        auths.push(authorize(cx, &ds, &col.name, Operation::Aggregate)?);
    }
    set_authority(entry, &auths);
    Ok(Resolved {
        ds,
        terms: resolved,
        auths,
    })
}

pub(super) fn plan(
    cx: &mut Ctx<'_>,
    entry: &mut NewEntry,
    effects: &mut Vec<Effect>,
    dataset_id: i64,
    terms: Vec<Term>,
    rids: RidSet,
    repeats: &[RepeatSpec],
) -> ApiResult<SumWork> {
    let rows = rows_of(cx, rids, repeats)?;
    let Resolved {
        ds,
        terms: resolved,
        auths,
    } = resolve(cx, entry, dataset_id, &terms)?;
    for (col, _, _) in &resolved {
        check_rids(cx, col, &rows.support)?;
    }
    for ((col, _, _), auth) in resolved.iter().zip(&auths) {
        check_min_rows(auth, col, &rows)?;
    }
    super::recheck::check_no_wrap(
        &resolved.iter().map(|(c, _, w)| (c, *w)).collect::<Vec<_>>(),
        u64::try_from(rows.weighted_len()).unwrap_or(u64::MAX),
    )?;
    if !rows.repeats.is_empty() {
        note(entry, "max_multiplicity", json!(rows.max_multiplicity()));
        note(entry, "weighted_rows", json!(rows.weighted_len().to_string()));
    }
    let rows = Arc::new(rows);
    let cols: Vec<(&Column, i64)> = resolved.iter().map(|(c, _, w)| (c, *w)).collect();
    let noise = plan_noise(cx, entry, effects, &ds, &cols, &auths, &rows)?;
    // Exact answers under grants: the linear audit decides (last effect: it remembers what it
    // accepts). Admins and owners are not audited; DP answers are bounded by their budget.
    let granted = auths.iter().all(|a| matches!(a, Authority::Grant { .. }));
    if granted && noise.is_none() {
        let names: Vec<&str> = resolved.iter().map(|(c, _, _)| c.name.as_str()).collect();
        crate::domain::populations::check_exact(cx.conn, &ds, &names)?;
        effects.push(Effect::LinearAudit {
            identity_id: cx.caller.id,
            dataset_id: ds.id,
            query: Arc::new(crate::domain::linear_audit::Query {
                terms: resolved.iter().map(|(c, _, w)| (c.id, *w)).collect(),
                classes: rows.classes(),
                min_rows: audit_min_rows(&auths),
            }),
        });
    }
    Ok(SumWork {
        rows,
        terms: masked_terms(cx, resolved),
        noise,
    })
}

/// A term's keys, weight and the cached block sums of its masks.
pub(super) type MaskedTerm = (ColumnKeys, i64, Arc<MaskBlocks>);

/// The resolved terms with the cached block sums of their masks (what computing a key needs).
pub(super) fn masked_terms(cx: &Ctx<'_>, resolved: Vec<(Column, ColumnKeys, i64)>) -> Vec<MaskedTerm> {
    resolved
        .into_iter()
        .map(|(_, k, w)| {
            let blocks = cx.st.mask_cache().blocks(&k.num);
            (k, w, blocks)
        })
        .collect()
}

/// The DP noise of the sum, if any term's grant asks for it: ε the smallest among the DP
/// grants, δ the smallest if all of them have one (else discrete Laplace), sensitivity
/// `k_max · Σ |w|·(hi − lo)` over all terms: row ids and null positions are public, so
/// neighbouring tables differ by *replacing* one row's value, and a row counted `k_max`
/// times moves the sum `k_max` times as far. Adds the budget charge to `effects`.
fn plan_noise(
    cx: &Ctx<'_>,
    entry: &mut NewEntry,
    effects: &mut Vec<Effect>,
    ds: &Dataset,
    cols: &[(&Column, i64)],
    auths: &[Authority],
    rows: &RidMultiset,
) -> ApiResult<Option<NoisePlan>> {
    let Some(plan) = noise_plan(cx, ds, &entry.params["terms"], cols, auths, rows)? else {
        return Ok(None);
    };
    let mut dp_note = plan.mechanism.describe(&plan.sensitivity);
    dp_note["request"] = json!(plan.request);
    note(entry, "dp", dp_note);
    effects.push(Effect::Budget {
        identity_id: cx.caller.id,
        dataset_id: ds.id,
        dataset: ds.name.clone(),
        request: plan.request.clone(),
        cost: plan.mechanism.cost(),
        rows: Some(Arc::new(rows.support.clone())),
    });
    Ok(Some(plan))
}

/// The noise plan of a sum over `rows` (see [`plan_noise`]), without charging it.
pub(super) fn noise_plan(
    cx: &Ctx<'_>,
    ds: &Dataset,
    terms_json: &Value,
    cols: &[(&Column, i64)],
    auths: &[Authority],
    rows: &RidMultiset,
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
        let range = u128::try_from(i128::from(hi) - i128::from(lo)).unwrap_or(0);
        sensitivity += BigUint::from(w.unsigned_abs()) * BigUint::from(range);
    }
    sensitivity *= BigUint::from(rows.max_multiplicity().max(1));
    let mechanism = Mechanism::new(epsilon, delta);
    let terms = crate::domain::dp::canonical_terms(terms_json);
    let mut canonical = format!("{}|{}|{terms}|{}", cx.caller.id, ds.id, rows.support.digest_hex());
    for r in &rows.repeats {
        canonical.push_str(&format!("|{}x{}", r.k, r.rids.digest_hex()));
    }
    Ok(Some(NoisePlan::new(
        cx.st.noise_key(),
        &canonical,
        mechanism,
        sensitivity,
    )))
}

/// The answer key of `Σ_t w_t · Σ_rows mask_t` over `rows`, minus the plan's noise.
pub(super) fn key_of(
    rows: &RidMultiset,
    terms: &[(ColumnKeys, i64, Arc<MaskBlocks>)],
    noise: Option<&NoisePlan>,
) -> ApiResult<u128> {
    // O(blocks of 2^16 rids), not O(rids): full blocks add cached block sums (`mask_blocks`)
    let key = terms.iter().fold(0u128, |acc, (keys, wt, blocks)| {
        // every row once, plus (k − 1) more times for the rows counted k times
        let s = rows
            .repeats
            .iter()
            .fold(keys.num.sum_masks_cached(&rows.support, blocks), |s, r| {
                s.wrapping_add(u128::from(r.k - 1).wrapping_mul(keys.num.sum_masks_cached(&r.rids, blocks)))
            });
        acc.wrapping_add((*wt as i128 as u128).wrapping_mul(s))
    });
    let Some(plan) = noise else {
        return Ok(key);
    };
    // key − η: the analyst's unmasked sum is sum + η
    let eta = plan
        .sample()
        .to_i128()
        .ok_or_else(|| ApiError::internal("dp noise", &"noise outside 128 bits"))?;
    Ok(key.wrapping_sub(eta as u128))
}

pub(super) fn compute(w: SumWork) -> Result<Value, ApiError> {
    let key = key_of(&w.rows, &w.terms, w.noise.as_ref())?;
    Ok(match &w.noise {
        None => json!({"key": key.to_string()}),
        Some(plan) => json!({"key": key.to_string(), "dp": plan.mechanism.describe(&plan.sensitivity)}),
    })
}
