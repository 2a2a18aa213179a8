//! `sums` descriptors: the answer keys of ONE linear combination over many row sets (the
//! groups of a `group_by`), in one descriptor and one audit entry, instead of one `sum`
//! descriptor (and audit row, and result object) per group.
//!
//! Each group is checked as a `sum` would be: allocated rids, `min_rows` (distinct rows), no
//! wrap of the ring, its own DP noise. The batch is all or nothing: a group that fails refuses
//! the descriptor, and exact answers under grants go through the linear audit together
//! ([`Effect::LinearAuditMany`]). Under DP each group gets its own noise; the batch is charged
//! once: one group's cost when the groups are disjoint (parallel composition: under
//! replace-one neighbours a row's value moves only its own group's sum, so the release of all
//! groups is as private as one of them, for pure DP and zCDP alike), else the sum of the
//! groups' costs (sequential composition). The audit entry records the number of
//! groups, their row counts (`group_rows`), the total rows and the digest of all group digests.
//! Groups whose rows repeat (joins, concats) keep using `sum` descriptors.
//!
//! The keys come back as one byte field, `keys`: 16 bytes a group (little-endian u128), in
//! group order.

use std::sync::Arc;

use ghostpii_core::{RidMultiset, RidSet};
use rayon::prelude::*;
use serde_json::json;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::payload::Computed;
use super::sum::{self, Resolved, Term};
use super::wire::WireRids;
use super::{check_rids, note, Ctx, Effect};
use crate::domain::audit::NewEntry;
use crate::domain::dp::NoisePlan;
use crate::domain::policy::Authority;
use crate::error::{ApiError, ApiResult};

pub(super) struct SumsWork {
    groups: Vec<(RidMultiset, Option<NoisePlan>)>,
    terms: Vec<sum::MaskedTerm>,
    dp: Option<serde_json::Value>,
}

pub(super) fn plan(
    cx: &mut Ctx<'_>,
    entry: &mut NewEntry,
    effects: &mut Vec<Effect>,
    dataset_id: i64,
    terms: Vec<Term>,
    groups: Vec<WireRids>,
) -> ApiResult<SumsWork> {
    let Resolved { ds, terms, auths } = sum::resolve(cx, entry, dataset_id, &terms)?;
    if groups.is_empty() {
        return Err(ApiError::invalid("a sums descriptor needs at least one group"));
    }
    // bound before materialising: each group by the smallest allocated count, all together by
    // the request limit
    let allocated = terms
        .iter()
        .map(|(c, _, _)| cx.cache.allocated(cx.conn, c.id).map(|a| a.len()))
        .collect::<ApiResult<Vec<u64>>>()?
        .into_iter()
        .min()
        .unwrap_or(0);
    let mut total = 0u64;
    let mut sets = Vec::with_capacity(groups.len());
    for g in &groups {
        let set = g
            .to_set_bounded(allocated)
            .map_err(|e| ApiError::invalid(e.to_string()))?;
        total = total.saturating_add(set.len());
        cx.st.limits().check_rids(total)?;
        sets.push(set);
    }
    let cols: Vec<(&crate::domain::columns::Column, i64)> = terms.iter().map(|(c, _, w)| (c, *w)).collect();
    let largest = sets.iter().map(RidSet::len).max().unwrap_or(0);
    super::recheck::check_no_wrap(&cols, largest)?;
    let mut digest = Sha256::new();
    let mut group_rows = Vec::with_capacity(sets.len());
    let mut prepared = Vec::with_capacity(sets.len());
    let granted = auths.iter().all(|a| matches!(a, Authority::Grant { .. }));
    let mut queries = Vec::new();
    let mut cost: Option<crate::domain::dp::Cost> = None;
    let mut one_cost: Option<crate::domain::dp::Cost> = None;
    let mut requests = Sha256::new();
    let mut dp = None;
    for (i, set) in sets.into_iter().enumerate() {
        let at = |e: ApiError| ApiError {
            message: format!("group {i} of {}: {}", groups.len(), e.message),
            ..e
        };
        for (col, _, _) in &terms {
            check_rids(cx, col, &set).map_err(at)?;
        }
        let rows = RidMultiset {
            support: set,
            repeats: Vec::new(),
        };
        for ((col, _, _), auth) in terms.iter().zip(&auths) {
            sum::check_min_rows(auth, col, &rows).map_err(at)?;
        }
        digest.update(rows.support.digest_hex().as_bytes());
        group_rows.push(rows.support.len());
        let noise = sum::noise_plan(cx, &ds, &entry.params["terms"], &cols, &auths, &rows).map_err(at)?;
        match &noise {
            Some(plan) => {
                let c = plan.mechanism.cost();
                // sequential unless the groups turn out disjoint (below); every group costs the same
                cost = Some(cost.map_or(c, |t| crate::domain::dp::Cost {
                    epsilon: t.epsilon + c.epsilon,
                    delta: t.delta + c.delta,
                    rho: t.rho + c.rho,
                }));
                one_cost.get_or_insert(c);
                requests.update(plan.request.as_bytes());
                dp.get_or_insert_with(|| plan.mechanism.describe(&plan.sensitivity));
            }
            None if granted => queries.push(crate::domain::linear_audit::Query {
                terms: terms.iter().map(|(c, _, w)| (c.id, *w)).collect(),
                classes: rows.classes(),
                min_rows: sum::audit_min_rows(&auths),
            }),
            None => {}
        }
        prepared.push((rows, noise));
    }
    entry.rid_count = Some(total);
    entry.rid_digest = Some(hex::encode(digest.finalize()));
    note(entry, "groups", json!(prepared.len()));
    note(entry, "group_rows", json!(group_rows));
    if let Some(mut cost) = cost {
        // disjoint: no rid in two groups (checked only where it changes the charge)
        let mut all: Vec<u64> = prepared.iter().flat_map(|(r, _)| r.support.0.iter()).collect();
        all.par_sort_unstable();
        let disjoint = all.windows(2).all(|w| w[0] != w[1]);
        if disjoint {
            cost = one_cost.unwrap_or(cost);
        }
        let request = hex::encode(requests.finalize());
        if let Some(d) = &mut dp {
            d["request"] = json!(request);
            d["composition"] = json!(if disjoint { "parallel" } else { "sequential" });
        }
        note(entry, "dp", dp.clone().unwrap_or_default());
        effects.push(Effect::Budget {
            identity_id: cx.caller.id,
            dataset_id: ds.id,
            dataset: ds.name.clone(),
            request,
            cost,
            rows: None,
        });
    }
    if !queries.is_empty() {
        let names: Vec<&str> = terms.iter().map(|(c, _, _)| c.name.as_str()).collect();
        crate::domain::populations::check_exact(cx.conn, &ds, &names)?;
        effects.push(Effect::LinearAuditMany {
            identity_id: cx.caller.id,
            dataset_id: ds.id,
            queries: Arc::new(queries),
        });
    }
    Ok(SumsWork {
        groups: prepared,
        terms: sum::masked_terms(cx, terms),
        dp,
    })
}

pub(super) fn compute(w: SumsWork) -> ApiResult<Computed> {
    let keys: Vec<u128> = w
        .groups
        .par_iter()
        .map(|(rows, noise)| sum::key_of(rows, &w.terms, noise.as_ref()))
        .collect::<ApiResult<_>>()?;
    let mut bytes = Zeroizing::new(Vec::with_capacity(16 * keys.len()));
    for k in &keys {
        bytes.extend_from_slice(&k.to_le_bytes());
    }
    // the noise is seeded by the request, so the keys are a function of the descriptor
    let mut out = Computed::deterministic_bytes("keys", bytes);
    if let Some(d) = w.dp {
        out.fields.insert("dp".into(), d);
    }
    Ok(out)
}
