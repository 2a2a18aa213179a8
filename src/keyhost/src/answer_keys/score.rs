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
use crate::domain::audit::NewEntry;
use crate::domain::grants::Operation;
use crate::domain::policy::Authority;
use crate::error::{reason, ApiError, ApiResult};

/// Largest `scale_bits` of a score (the weights' binary fixed-point scale, `2^-scale_bits`): the
/// f64 exponent range (`gp.score` uses at most 960).
const MAX_SCALE_BITS: i32 = 1023;

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
    if let Some(b) = scale_bits {
        if !(0..=MAX_SCALE_BITS).contains(&b) {
            return Err(ApiError::invalid(format!(
                "scale_bits must be in 0..={MAX_SCALE_BITS} (the weights' binary fixed-point scale), not {b}"
            )));
        }
    }
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
    // the weights in the user's units: a_j · 10^decimals_j · 2^-scale_bits (the analyst's
    // float weight w_j, as `gp.score` scaled it), for the audit log
    let user: Vec<_> = resolved
        .iter()
        .map(|(c, _, w)| {
            let v = (*w as f64) * 10f64.powi(c.spec.scale as i32) * 2f64.powi(-scale_bits.unwrap_or(0));
            json!({"column": c.name, "weight": v})
        })
        .collect();
    super::note(entry, "weights", json!(user));
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
        let ranges: Vec<Option<u128>> = resolved
            .iter()
            .map(|(c, _, _)| {
                c.spec
                    .bounds
                    .map(|(lo, hi)| (i128::from(hi) - i128::from(lo)).unsigned_abs())
            })
            .collect();
        let weights: Vec<i64> = resolved.iter().map(|(_, _, w)| *w).collect();
        if let Some(j) = separated_digit(&weights, &ranges) {
            return Err(ApiError::refused(
                reason::SCORE_SPAN,
                format!(
                    "this weight vector separates column '{}' like a digit (its weight outweighs the other \
                     columns over their declared ranges, or the other weights share a factor larger than its \
                     own range), so each row's score would reveal its value; use weights of comparable size \
                     over the columns' ranges",
                    resolved[j].0.name
                ),
            ));
        }
        let names: Vec<&str> = resolved.iter().map(|(c, _, _)| c.name.as_str()).collect();
        crate::domain::populations::check_exact(cx.conn, &ds, &names)?;
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

/// A column whose value one exact score would decode like a digit, over the declared ranges
/// `ranges` (`hi − lo` in the column's integer units; `None`: unbounded): column `j` when
/// - its weight outweighs all the others over their ranges, `|a_j| > Σ_{k≠j} |a_k|·R_k` (then
///   `x_j` is the score's leading "digit"), or
/// - the other weights share a factor `g` (their gcd) with `g > |a_j|·R_j` (then
///   `a_j·(x_j − lo_j) ≡ score − const (mod g)` has one solution in range: the trailing digit).
///
/// These are the digit separations over small declared ranges; a generic vector whose map from
/// the box of rows to scores is injective for other reasons is not detected (threat model).
pub(super) fn separated_digit(weights: &[i64], ranges: &[Option<u128>]) -> Option<usize> {
    if weights.len() < 2 {
        return None; // a single column is the span rule's (a unit vector)
    }
    fn gcd(a: u128, b: u128) -> u128 {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    (0..weights.len()).find(|&j| {
        let aj = u128::from(weights[j].unsigned_abs());
        let mut others: Option<u128> = Some(0);
        let mut g: u128 = 0;
        for (k, (&w, r)) in weights.iter().zip(ranges).enumerate() {
            if k == j {
                continue;
            }
            g = gcd(g, u128::from(w.unsigned_abs()));
            others = match (others, r) {
                (Some(s), Some(r)) => u128::from(w.unsigned_abs())
                    .checked_mul(*r)
                    .and_then(|x| s.checked_add(x)),
                _ => None,
            };
        }
        let leading = others.is_some_and(|s| aj > s);
        let trailing = ranges[j].is_some_and(|r| aj.checked_mul(r).is_some_and(|x| g > x));
        leading || trailing
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

#[cfg(test)]
mod tests {
    use super::separated_digit;

    #[test]
    fn digit_separation_over_declared_ranges_is_found() {
        let r = |v: &[u128]| v.iter().map(|&x| Some(x)).collect::<Vec<_>>();
        // 1000·age + kids (age 0..120, kids 0..10): both digits
        assert_eq!(separated_digit(&[1000, 1], &r(&[120, 10])), Some(0));
        // trailing digit: x + 1000·y + 1000·z
        assert_eq!(separated_digit(&[1, 1000, 1000], &r(&[120, 10, 10])), Some(0));
        // comparable weights over the ranges: no digit
        assert_eq!(separated_digit(&[1, 1], &r(&[120, 100])), None);
        assert_eq!(
            separated_digit(&[25, -150, 1, 300], &r(&[120, 10_000, 10_000_000, 10])),
            None
        );
        // unbounded columns never make another a leading digit
        assert_eq!(separated_digit(&[1000, 1], &[None, None]), None);
        assert_eq!(separated_digit(&[7], &r(&[10])), None);
    }
}
