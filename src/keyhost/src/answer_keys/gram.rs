//! `gram` descriptors: the answer keys of every entry of a Gram matrix `[X 1]ᵀ[X 1]` over one
//! row multiset, in ONE descriptor (`ghostpii_core::sealed_gram`). Entry `e` is a masked sum of
//! one keyhost column (a base column, or a product column of the `deg2` facet), each row
//! counted with its multiplicity `k_r` or with a public per-row weight `u_r` (a plaintext
//! feature, which the keyhost therefore learns):
//! `key_e = Σ_r m_r · PRF(k_e, rid_r)`, `m_r ∈ {k_r, u_r}`.
//!
//! Exact answers under grants go through the linear audit with every entry a further sum
//! (products are columns of their own), all accepted or all refused. Under DP grants the whole
//! matrix is perturbed once — each of the `m` entries with its share of the grant's privacy
//! (ε/m for discrete Laplace, ρ/m of zCDP for the discrete Gaussian), replace-one sensitivity
//! `Δ_e = m_max · (hi_e − lo_e)` from the declared bounds — and charged once to the ledger.

use std::collections::BTreeMap;
use std::sync::Arc;

use ghostpii_core::sealed_gram::decode_weights;
use ghostpii_core::{ColumnKeys, Facet, RidSet};
use num_bigint::BigUint;
use num_traits::ToPrimitive;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::sum::{check_min_rows, rows_of, RepeatSpec};
use super::{check_rids, column_epoch, dataset, note, set_authority, Ctx, Effect};
use crate::domain::audit::NewEntry;
use crate::domain::columns::Column;
use crate::domain::dp::{rho_for, Mechanism, NoisePlan};
use crate::domain::linear_audit::Query;
use crate::domain::policy::Authority;
use crate::error::{reason, ApiError, ApiResult};

/// Most entries in one Gram descriptor (d = 30 features and a target with intercept).
pub const MAX_ENTRIES: usize = 528;

/// One entry: a column and the index of its per-row weights in the descriptor's `weights`.
pub(super) type EntrySpec = ghostpii_proto::descriptor::GramEntry;
/// Per-row weights, base64 of little-endian i64.
pub(super) type WeightSpec = ghostpii_proto::descriptor::Weights;

/// One entry a column answers: its index and the per-row weights it uses, if any.
type Answers = (usize, Option<usize>);

pub(super) struct GramWork {
    support: Vec<u64>,
    /// Rows counted k ≥ 2 times: (k, rids).
    repeats: Vec<(u64, Vec<u64>)>,
    weights: Vec<Vec<i64>>,
    /// Per distinct keyhost column: its keys and the entries (index, weight) it answers.
    columns: Vec<(ColumnKeys, Vec<Answers>)>,
    n_entries: usize,
    noise: Option<Vec<NoisePlan>>,
    dp_note: Option<Value>,
}

/// Audit classes of a weighted entry: rows by weight value (positive part; `negative` for the
/// negative part, with `|u|`). Zero weights are left out.
fn weight_classes(support: &[u64], u: &[i64], negative: bool) -> Vec<(u64, RidSet)> {
    let mut by: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for (&rid, &w) in support.iter().zip(u) {
        if (w > 0 && !negative) || (w < 0 && negative) {
            by.entry(w.unsigned_abs()).or_default().push(rid);
        }
    }
    by.into_iter().map(|(k, r)| (k, RidSet::from_sorted(&r))).collect()
}

/// ε' whose Gaussian ρ (at the same δ) is `rho`: `ε' = (√ρ + √ln(1/δ))² − ln(1/δ)`.
fn epsilon_for_rho(rho: f64, delta: f64) -> f64 {
    let l = (1.0 / delta).ln();
    (rho.sqrt() + l.sqrt()).powi(2) - l
}

#[allow(clippy::too_many_arguments)]
pub(super) fn plan(
    cx: &mut Ctx<'_>,
    entry: &mut NewEntry,
    effects: &mut Vec<Effect>,
    dataset_id: i64,
    rids: RidSet,
    repeats: &[RepeatSpec],
    weights: &[WeightSpec],
    entries: &[EntrySpec],
) -> ApiResult<GramWork> {
    let rows = rows_of(cx, rids, repeats)?;
    entry.params = json!({
        "dataset_id": dataset_id,
        "entries": entries.iter().map(|e| json!({"column_id": e.column_id, "epoch": e.epoch, "weight": e.weight}))
            .collect::<Vec<_>>(),
        "weights": weights.len(),
    });
    let ds = dataset(cx, dataset_id)?;
    entry.dataset = Some(ds.name.clone());
    if entries.is_empty() || entries.len() > MAX_ENTRIES {
        return Err(ApiError::invalid(format!(
            "a gram descriptor has 1 to {MAX_ENTRIES} entries, got {}",
            entries.len()
        )));
    }
    // columns, once each
    type Resolved = (Column, u32, ColumnKeys, Vec<Answers>);
    let mut cols: Vec<Resolved> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if let Some(w) = e.weight {
            if w >= weights.len() {
                return Err(ApiError::invalid(format!(
                    "entry {i} names weights {w}, which are not given"
                )));
            }
        }
        match cols
            .iter_mut()
            .find(|(c, ep, _, _)| c.id == e.column_id && *ep == e.epoch)
        {
            Some((_, _, _, list)) => list.push((i, e.weight)),
            None => {
                let (c, k) = column_epoch(cx, &ds, e.column_id, e.epoch)?;
                cols.push((c, e.epoch, k, vec![(i, e.weight)]));
            }
        }
    }
    let mut names: Vec<&str> = cols.iter().map(|(c, _, _, _)| c.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    entry.column = Some(names.join(","));
    let mut auths: Vec<Authority> = Vec::new();
    let mut per_column: Vec<(&Column, Vec<Authority>)> = Vec::new();
    for (col, _, _, _) in &cols {
        if !col.spec.has(Facet::Num) {
            return Err(ApiError::invalid(format!(
                "column '{}' has no 'num' facet, so it has no moments",
                col.name
            )));
        }
        let a = crate::domain::moments::authorize_term(cx.conn, cx.caller, &ds, &col.name)?;
        auths.extend(a.iter().cloned());
        per_column.push((col, a));
    }
    set_authority(entry, &auths);
    for (col, _, _, _) in &cols {
        check_rids(cx, col, &rows.support)?;
    }
    let support = rows.support.to_vec();
    let decoded: Vec<Vec<i64>> = weights
        .iter()
        .map(|w| decode_weights(&w.values, support.len() as u64).map_err(|e| ApiError::invalid(e.to_string())))
        .collect::<ApiResult<_>>()?;
    for (i, w) in decoded.iter().enumerate() {
        if w.len() != support.len() {
            return Err(ApiError::invalid(format!(
                "weights {i} give {} values for {} rows (one per distinct row, in rid order)",
                w.len(),
                support.len()
            )));
        }
    }
    // min_rows: distinct rows, and for weighted entries the rows with a non-zero weight
    for (col, list) in &per_column {
        for auth in list {
            check_min_rows(auth, col, &rows)?;
        }
    }
    for (w, d) in decoded.iter().enumerate() {
        let nonzero = d.iter().filter(|&&x| x != 0).count() as u64;
        if let Some(min) = auths.iter().filter_map(Authority::min_rows).max() {
            if nonzero < min && entries.iter().any(|e| e.weight == Some(w)) {
                return Err(ApiError::refused(
                    reason::MIN_ROWS,
                    format!(
                        "a plaintext feature of this Gram matrix is non-zero on {nonzero} distinct rows; the moments \
                         grant requires at least {min}"
                    ),
                ));
            }
        }
    }
    // wrap checks: |m_r| · max|x| · rows < 2^127 for every entry
    let kmax = rows.max_multiplicity().max(1);
    let multiplier = |e: &EntrySpec| -> u64 {
        match e.weight {
            Some(w) => decoded[w].iter().map(|x| x.unsigned_abs()).max().unwrap_or(0),
            None => kmax,
        }
    };
    for e in entries {
        let (col, _, _, _) = cols
            .iter()
            .find(|(c, ep, _, _)| c.id == e.column_id && *ep == e.epoch)
            .expect("resolved");
        let m = i64::try_from(multiplier(e)).map_err(|_| ApiError::invalid("a per-row weight does not fit 63 bits"))?;
        super::recheck::check_no_wrap(&[(col, m)], support.len() as u64)?;
    }
    if !rows.repeats.is_empty() {
        note(entry, "max_multiplicity", json!(kmax));
    }
    // DP: the whole matrix once
    let dp: Vec<_> = auths.iter().filter_map(|a| a.dp_grant()).collect();
    let granted = auths.iter().all(|a| matches!(a, Authority::Grant { .. }));
    let mut noise = None;
    let mut dp_note = None;
    if !dp.is_empty() {
        let epsilon = dp.iter().filter_map(|g| g.epsilon).fold(f64::INFINITY, f64::min);
        let delta = if dp.iter().all(|g| g.delta.is_some()) {
            dp.iter().filter_map(|g| g.delta).reduce(f64::min)
        } else {
            None
        };
        let m = entries.len() as f64;
        let whole = Mechanism::new(epsilon, delta);
        let share = match delta {
            None => Mechanism::new(epsilon / m, None),
            Some(d) => Mechanism::new(epsilon_for_rho(rho_for(epsilon, d) / m, d), Some(d)),
        };
        let mut canonical = format!("gram|{}|{}|{}", cx.caller.id, ds.id, rows.support.digest_hex());
        for r in &rows.repeats {
            canonical.push_str(&format!("|{}x{}", r.k, r.rids.digest_hex()));
        }
        for e in entries {
            canonical.push_str(&format!("|{}:{}:{:?}", e.column_id, e.epoch, e.weight));
        }
        for w in weights {
            canonical.push_str(&format!("|w{}", hex::encode(Sha256::digest(w.values.as_bytes()))));
        }
        let mut plans = Vec::with_capacity(entries.len());
        let mut described = Vec::with_capacity(entries.len());
        let mut total = BigUint::from(0u32);
        for (i, e) in entries.iter().enumerate() {
            let (col, _, _, _) = cols
                .iter()
                .find(|(c, ep, _, _)| c.id == e.column_id && *ep == e.epoch)
                .expect("resolved");
            let Some((lo, hi)) = col.spec.bounds else {
                return Err(ApiError::invalid(format!(
                    "column '{}' has no declared bounds, so its moments have no bounded sensitivity for the \
                     differential privacy the grant requires; encrypt with bounds=(lo, hi)",
                    col.name
                )));
            };
            let range = u128::try_from(i128::from(hi) - i128::from(lo)).unwrap_or(0);
            let sens = BigUint::from(range) * BigUint::from(multiplier(e));
            total += &sens;
            let p = NoisePlan::new(cx.st.noise_key(), &format!("{canonical}|entry{i}"), share, sens);
            described.push(share.describe(&p.sensitivity));
            plans.push(p);
        }
        let whole_plan = NoisePlan::new(cx.st.noise_key(), &canonical, whole, total);
        let mut d = whole.describe(&whole_plan.sensitivity);
        d["entries"] = json!(described);
        d["request"] = json!(whole_plan.request);
        note(
            entry,
            "dp",
            json!({"mechanism": d["mechanism"], "epsilon": epsilon, "delta": delta, "entries": entries.len(), "request": whole_plan.request}),
        );
        effects.push(Effect::Budget {
            identity_id: cx.caller.id,
            dataset_id: ds.id,
            dataset: ds.name.clone(),
            request: whole_plan.request.clone(),
            cost: whole.cost(),
            rows: Some(Arc::new(rows.support.clone())),
        });
        noise = Some(plans);
        dp_note = Some(d);
    } else if granted {
        let names: Vec<&str> = cols.iter().map(|(c, _, _, _)| c.name.as_str()).collect();
        crate::domain::populations::check_exact(cx.conn, &ds, &names)?;
        let mut queries = Vec::new();
        let min_rows = super::sum::audit_min_rows(&auths);
        for e in entries {
            let terms = vec![(e.column_id, 1)];
            match e.weight {
                None => queries.push(Query {
                    terms,
                    classes: rows.classes(),
                    min_rows,
                }),
                Some(w) => {
                    for neg in [false, true] {
                        let classes = weight_classes(&support, &decoded[w], neg);
                        if !classes.is_empty() {
                            queries.push(Query {
                                terms: terms.clone(),
                                classes,
                                min_rows,
                            });
                        }
                    }
                }
            }
        }
        effects.push(Effect::LinearAuditMany {
            identity_id: cx.caller.id,
            dataset_id: ds.id,
            queries: Arc::new(queries),
        });
    }
    Ok(GramWork {
        support,
        repeats: rows.repeats.iter().map(|r| (r.k, r.rids.to_vec())).collect(),
        weights: decoded,
        columns: cols.into_iter().map(|(_, _, k, l)| (k, l)).collect(),
        n_entries: entries.len(),
        noise,
        dp_note,
    })
}

pub(super) fn compute(w: GramWork) -> Result<Value, ApiError> {
    let mut keys = vec![0u128; w.n_entries];
    for (k, list) in &w.columns {
        // unweighted entries: Σ masks over the support plus (k − 1)·Σ masks of each repeat class
        if list.iter().any(|(_, weight)| weight.is_none()) {
            let plain = w.repeats.iter().fold(k.num.sum_masks(&w.support), |s, (m, r)| {
                s.wrapping_add(u128::from(m - 1).wrapping_mul(k.num.sum_masks(r)))
            });
            for &(i, weight) in list {
                if weight.is_none() {
                    keys[i] = plain;
                }
            }
        }
        // weighted entries need each row's mask
        if list.iter().any(|(_, weight)| weight.is_some()) {
            let masks = k.num.masks(&w.support);
            for &(i, weight) in list {
                if let Some(j) = weight {
                    keys[i] = masks
                        .iter()
                        .zip(&w.weights[j])
                        .fold(0u128, |a, (&x, &u)| a.wrapping_add(x.wrapping_mul(u as i128 as u128)));
                }
            }
        }
    }
    if let Some(plans) = &w.noise {
        for (key, plan) in keys.iter_mut().zip(plans) {
            let eta = plan
                .sample()
                .to_i128()
                .ok_or_else(|| ApiError::internal("dp noise", &"noise outside 128 bits"))?;
            *key = key.wrapping_sub(eta as u128);
        }
    }
    let mut out = json!({"keys": keys.iter().map(|k| k.to_string()).collect::<Vec<_>>()});
    if let Some(d) = w.dp_note {
        out["dp"] = d;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_entry_gaussian_shares_compose_to_the_grant() {
        for (e, d, m) in [(1.0, 1e-6, 15.0), (0.5, 1e-5, 45.0)] {
            let share = epsilon_for_rho(rho_for(e, d) / m, d);
            assert!((rho_for(share, d) * m - rho_for(e, d)).abs() < 1e-12 * rho_for(e, d).max(1.0));
        }
    }

    #[test]
    fn weight_classes_split_by_sign_and_value() {
        let support = [1, 2, 3, 4, 5];
        let u = [1, 0, -2, 1, 3];
        let pos = weight_classes(&support, &u, false);
        assert_eq!(pos.len(), 2);
        assert_eq!(pos[0].0, 1);
        assert_eq!(pos[0].1.to_vec(), vec![1, 4]);
        let neg = weight_classes(&support, &u, true);
        assert_eq!(neg, vec![(2, RidSet::from_sorted(&[3]))]);
    }
}
