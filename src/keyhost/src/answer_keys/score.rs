//! `score` descriptors: per-row keys `K_rid = Σ_j a_j · PRF(k_j, rid)` for the requested rows,
//! so that the analyst, who holds the cells `c_{j,rid} = x_{j,rid} + PRF(k_j, rid)`, obtains
//! exactly `Σ_j a_j · x_{j,rid}` per row (a per-row linear combination with public integer
//! weights `a_j`) and nothing else.
//!
//! Checks: a `score` grant on every column (owner/admin implicit), the `num` facet, allocated
//! rids, no wrap of the 128-bit ring (`Σ |a_j|·max(|lo_j|, |hi_j|) < 2^127` for one row), and,
//! when recorded, the span rule of `score_span.rs`: the weight vectors answered to the identity
//! on the dataset never span a unit vector (which would let it decrypt a column row by row).

use ghostpii_core::{ColumnKeys, Facet, RidSet};
use serde_json::json;
use zeroize::Zeroizing;

use super::payload::Computed;
use super::{authorize, check_rids, column_epoch, dataset, set_authority, Ctx, Effect};
use crate::audit::NewEntry;
use crate::error::{ApiError, ApiResult};
use crate::grants::Operation;
use crate::policy::Authority;

/// One weighted column of a score.
pub(super) use ghostpii_proto::descriptor::Term;

pub(super) struct ScoreWork {
    rids: RidSet,
    terms: Vec<(ColumnKeys, i64)>,
}

#[allow(clippy::too_many_arguments)]
pub(super) fn plan(
    cx: &mut Ctx<'_>,
    entry: &mut NewEntry,
    effects: &mut Vec<Effect>,
    dataset_id: i64,
    terms: Vec<Term>,
    scale_bits: Option<i32>,
    rids: RidSet,
) -> ApiResult<ScoreWork> {
    entry.params = json!({
        "dataset_id": dataset_id,
        "terms": terms.iter().map(|t| json!({"column_id": t.column_id, "epoch": t.epoch, "weight": t.weight}))
            .collect::<Vec<_>>(),
    });
    if let Some(b) = scale_bits {
        super::note(entry, "scale_bits", json!(b));
    }
    let ds = dataset(cx, dataset_id)?;
    entry.dataset = Some(ds.name.clone());
    if terms.is_empty() {
        return Err(ApiError::invalid("a score needs at least one weighted column"));
    }
    if let Some(t) = terms.iter().find(|t| t.weight == 0) {
        return Err(ApiError::invalid(format!(
            "the weight of column id {} is 0; leave columns with weight 0 out of a score",
            t.column_id
        )));
    }
    let mut resolved = Vec::with_capacity(terms.len());
    for t in &terms {
        let (col, keys) = column_epoch(cx, &ds, t.column_id, t.epoch)?;
        resolved.push((col, keys, t.weight));
    }
    entry.column = Some(
        resolved
            .iter()
            .map(|(c, _, _)| c.name.as_str())
            .collect::<Vec<_>>()
            .join(","),
    );
    let mut ids: Vec<i64> = resolved.iter().map(|(c, _, _)| c.id).collect();
    ids.sort_unstable();
    if ids.windows(2).any(|w| w[0] == w[1]) {
        return Err(ApiError::invalid(
            "a column appears twice in the score; give each column one weight",
        ));
    }
    for (col, _, _) in &resolved {
        if !col.spec.has(Facet::Num) {
            return Err(ApiError::invalid(format!(
                "column '{}' has no 'num' facet, so it cannot be scored",
                col.name
            )));
        }
    }
    let mut auths = Vec::with_capacity(resolved.len());
    for (col, _, _) in &resolved {
        auths.push(authorize(cx, &ds, &col.name, Operation::Score)?);
    }
    set_authority(entry, &auths);
    for (col, _, _) in &resolved {
        check_rids(cx, col, &rids)?;
    }
    super::recheck::check_no_wrap(&resolved.iter().map(|(c, _, w)| (c, *w)).collect::<Vec<_>>(), 1)?;
    if auths.iter().all(|a| matches!(a, Authority::Grant { .. })) {
        let mut vector: Vec<(i64, i64)> = resolved.iter().map(|(c, _, w)| (c.id, *w)).collect();
        vector.sort_unstable();
        // the smallest limit among the columns' grants (each column's grants: the largest)
        let max = auths.iter().filter_map(Authority::max_vectors).min();
        effects.push(Effect::ScoreSpan {
            identity_id: cx.caller.id,
            dataset_id: ds.id,
            dataset: ds.name.clone(),
            vector,
            max,
            names: resolved.iter().map(|(c, _, _)| (c.id, c.name.clone())).collect(),
        });
    }
    Ok(ScoreWork {
        rids,
        terms: resolved.into_iter().map(|(_, k, w)| (k, w)).collect(),
    })
}

/// The per-row keys, 16 bytes each (little endian), in ascending rid order.
pub(super) fn compute(w: ScoreWork) -> Computed {
    let v = w.rids.to_vec();
    let mut acc: Zeroizing<Vec<u128>> = Zeroizing::new(vec![0u128; v.len()]);
    for (keys, weight) in &w.terms {
        let masks = Zeroizing::new(keys.num.masks(&v));
        let a = *weight as i128 as u128;
        for (k, m) in acc.iter_mut().zip(masks.iter()) {
            *k = k.wrapping_add(a.wrapping_mul(*m));
        }
    }
    let mut bytes: Zeroizing<Vec<u8>> = Zeroizing::new(Vec::with_capacity(acc.len() * 16));
    for k in acc.iter() {
        bytes.extend_from_slice(&k.to_le_bytes());
    }
    Computed::deterministic_bytes("keys", bytes)
}
