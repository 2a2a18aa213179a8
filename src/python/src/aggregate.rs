//! Aggregation kernels: masked sums over ciphertext, sealed with their computation descriptor.

use ghostpii_core::meta::{Facet, LogicalType};
use ghostpii_core::num::from_limbs;
use ghostpii_core::rid_blocks::{distinct_sorted, encode_sorted};
use ghostpii_core::sealed::SealedOp;
use ghostpii_core::sealed_format::{self as fmt, SealedTerm};
use ghostpii_core::RidMultiset;
use polars::prelude::*;
use polars_arrow::bitmap::Bitmap;
use rayon::prelude::*;

use crate::columns::{require_facet, values, EncryptedCells};
use crate::sealed_column::{cached_meta, one_row, NewSealed};

pub use crate::sealed_column::sealed_storage_dtype;

/// Which dtypes an aggregate accepts; checked when the plan is built.
pub fn check_aggregable(meta: &ghostpii_core::ColumnMeta, op: SealedOp) -> PolarsResult<()> {
    let what = format!("ghost.{}()", op.as_str());
    require_facet(meta, Facet::Num, &what)?;
    match (meta.dtype, op) {
        (LogicalType::String, _) => polars_bail!(InvalidOperation:
            "ghostpii: {what} is not defined for text column '{}'", meta.column),
        (LogicalType::Date | LogicalType::Datetime, SealedOp::Sum) => polars_bail!(InvalidOperation:
            "ghostpii: ghost.sum() is not defined for the temporal column '{}' (use ghost.mean())", meta.column),
        _ => Ok(()),
    }
}

const CHUNK: usize = 1 << 16;

/// Σ cells over `start..end` and the rids of the non-null rows there.
fn masked_range(lo: &[u64], hi: &[u64], rid: &[u64], valid: &Bitmap, start: usize, end: usize) -> (u128, Vec<u64>) {
    let mut acc = 0u128;
    let mut rids = Vec::with_capacity(end - start);
    if valid.unset_bits() == 0 {
        for i in start..end {
            acc = acc.wrapping_add(from_limbs(lo[i], hi[i]));
        }
        rids.extend_from_slice(&rid[start..end]);
        return (acc, rids);
    }
    for i in start..end {
        // SAFETY: i < end <= valid.len()
        if unsafe { valid.get_bit_unchecked(i) } {
            acc = acc.wrapping_add(from_limbs(lo[i], hi[i]));
            rids.push(rid[i]);
        }
    }
    (acc, rids)
}

/// Σ cells and the rids of the non-null rows (a repeated row's rid appears once per repeat):
/// in parallel chunks for large inputs, on this thread for a group's few rows.
fn masked_sum(cells: &EncryptedCells) -> (u128, Vec<u64>) {
    let (lo, hi) = cells.num.as_ref().expect("num facet checked");
    let (lo, hi, rid) = (values(lo), values(hi), values(&cells.rid));
    let valid = cells.valid.downcast_as_array().values().clone();
    let n = rid.len();
    if n <= CHUNK {
        return masked_range(lo, hi, rid, &valid, 0, n);
    }
    let parts: Vec<(u128, Vec<u64>)> = (0..n.div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| masked_range(lo, hi, rid, &valid, c * CHUNK, ((c + 1) * CHUNK).min(n)))
        .collect();
    let mut total = 0u128;
    let mut rids = Vec::with_capacity(n);
    for (acc, r) in parts {
        total = total.wrapping_add(acc);
        rids.extend_from_slice(&r);
    }
    (total, rids)
}

/// The rows summed with how often each was summed: a row repeated by a join, a concat or a
/// sample with replacement contributed its cell k times, so its answer key counts its mask
/// k times too. Returns `n`, the support's encoding, the packed repeat classes and the
/// distinct count where rows repeat.
fn encode_rows(mut rids: Vec<u64>) -> (u64, Vec<u8>, Vec<u8>, Option<u64>) {
    if !rids.windows(2).all(|w| w[0] <= w[1]) {
        rids.par_sort_unstable();
    }
    let n = rids.len() as u64;
    if distinct_sorted(&rids) == n {
        return (n, encode_sorted(&rids), Vec::new(), None);
    }
    let m = RidMultiset::from_rids(&mut rids);
    let repeats: Vec<(u64, Vec<u8>)> = m.repeats.iter().map(|r| (r.k, r.rids.to_bytes())).collect();
    let n = u64::try_from(m.weighted_len()).unwrap_or(u64::MAX);
    (n, m.support.to_bytes(), fmt::pack_repeats(&repeats), Some(m.distinct()))
}

/// A sealed value of `terms` over the rows `rids`.
fn sealed_series(
    name: PlSmallStr,
    op: SealedOp,
    meta_json: &str,
    expression: &str,
    terms: &[SealedTerm],
    masked: u128,
    rids: Vec<u64>,
) -> PolarsResult<Series> {
    let (n, rids, repeats, distinct) = encode_rows(rids);
    one_row(
        name,
        NewSealed {
            label: fmt::label(op, expression, n, distinct),
            op,
            meta_json,
            terms: fmt::pack_terms(terms),
            masked: fmt::pack_masked(&[masked]),
            n,
            rids,
            repeats,
            params: Vec::new(),
        },
    )
}

/// Seal the sum or mean of an encrypted column (one group).
pub fn seal(s: &Series, op: SealedOp) -> PolarsResult<Series> {
    let what = format!("ghost.{}()", op.as_str());
    let (json, meta) = cached_meta(s, &what)?;
    check_aggregable(&meta, op)?;
    let cells = EncryptedCells::from_storage(s.name(), meta, s.to_storage())?;
    let (masked, rids) = masked_sum(&cells);
    let term = SealedTerm {
        column_id: cells.meta.column_id,
        epoch: cells.meta.epoch,
        weight: 1,
    };
    sealed_series(s.name().clone(), op, &json, &cells.meta.column, &[term], masked, rids)
}

/// Inputs of a linear combination: encrypted `num` columns of one dataset, one scale, one
/// encryption (same row ids).
pub fn check_linear(metas: &[&ghostpii_core::ColumnMeta], weights: &[i64]) -> PolarsResult<()> {
    if metas.is_empty() || metas.len() != weights.len() {
        polars_bail!(InvalidOperation: "ghostpii: gp.linear_sum() needs one integer weight per column");
    }
    for m in metas {
        check_aggregable(m, SealedOp::Sum)?;
        let first = metas[0];
        if m.keyhost != first.keyhost || m.dataset_id != first.dataset_id {
            polars_bail!(InvalidOperation:
                "ghostpii: gp.linear_sum() combines columns of one dataset; '{}' and '{}' differ", first.column, m.column);
        }
        if m.scale != first.scale {
            polars_bail!(InvalidOperation:
                "ghostpii: gp.linear_sum() needs one fixed-point scale; '{}' has {} decimals and '{}' has {}",
                first.column, first.scale, m.column, m.scale);
        }
    }
    check_no_wrap(metas, weights, 1)
}

/// Refuse weights whose products with the columns' bounds (or the i64 range) over `rows` rows
/// could wrap the 128-bit masked sum (`ghostpii_core::num::linear_sum_fits`).
fn check_no_wrap(metas: &[&ghostpii_core::ColumnMeta], weights: &[i64], rows: u64) -> PolarsResult<()> {
    let terms: Vec<_> = weights.iter().zip(metas).map(|(&w, m)| (w, m.bounds)).collect();
    if !ghostpii_core::num::linear_sum_fits(&terms, rows) {
        polars_bail!(InvalidOperation:
            "ghostpii: gp.linear_sum(): weights {weights:?} times the columns' bounds over {rows} rows could \
             exceed the 128-bit sum (Σ|w|·max(|lo|,|hi|)·rows ≥ 2^127), so the sum could wrap; use smaller \
             weights or encrypt with tighter bounds");
    }
    Ok(())
}

/// Seal `Σ_t w_t · column_t` over the rows where every column is non-null.
pub fn seal_linear(inputs: &[Series], weights: &[i64]) -> PolarsResult<Series> {
    let cells: Vec<EncryptedCells> = inputs
        .iter()
        .map(|s| EncryptedCells::from_series(s, "gp.linear_sum()"))
        .collect::<PolarsResult<_>>()?;
    check_linear(&cells.iter().map(|c| &c.meta).collect::<Vec<_>>(), weights)?;
    let rid0 = values(&cells[0].rid);
    check_no_wrap(
        &cells.iter().map(|c| &c.meta).collect::<Vec<_>>(),
        weights,
        rid0.len() as u64,
    )?;
    for c in &cells[1..] {
        if values(&c.rid) != rid0 {
            polars_bail!(InvalidOperation:
                "ghostpii: gp.linear_sum(): columns '{}' and '{}' were encrypted in different gp.encrypt calls \
                 (their row ids differ), so they cannot be combined row by row", cells[0].meta.column, c.meta.column);
        }
    }
    let limbs: Vec<(&[u64], &[u64])> = cells
        .iter()
        .map(|c| {
            let (lo, hi) = c.num.as_ref().expect("num facet checked");
            (values(lo), values(hi))
        })
        .collect();
    let valid: Vec<_> = cells
        .iter()
        .map(|c| c.valid.downcast_as_array().values().clone())
        .collect();
    let mut masked = 0u128;
    let mut rids = Vec::with_capacity(rid0.len());
    for i in 0..rid0.len() {
        if valid.iter().all(|v| v.get_bit(i)) {
            for ((lo, hi), &w) in limbs.iter().zip(weights) {
                masked = masked.wrapping_add(from_limbs(lo[i], hi[i]).wrapping_mul(w as i128 as u128));
            }
            rids.push(rid0[i]);
        }
    }
    let terms: Vec<SealedTerm> = cells
        .iter()
        .zip(weights)
        .map(|(c, &w)| SealedTerm {
            column_id: c.meta.column_id,
            epoch: c.meta.epoch,
            weight: w,
        })
        .collect();
    let named: Vec<(String, i64)> = cells
        .iter()
        .zip(weights)
        .map(|(c, &w)| (c.meta.column.clone(), w))
        .collect();
    let expression = fmt::expression(&cells[0].meta.column, &named);
    let (json, _) = cached_meta(&inputs[0], "gp.linear_sum()")?;
    sealed_series(
        inputs[0].name().clone(),
        SealedOp::Sum,
        &json,
        &expression,
        &terms,
        masked,
        rids,
    )
}

/// Number of non-null rows (public: null positions are part of the column format).
pub fn count(s: &Series) -> PolarsResult<Series> {
    let cells = EncryptedCells::from_series(s, "ghost.count()")?;
    let n = cells.valid.sum().unwrap_or(0);
    Ok(Series::new(s.name().clone(), [n]))
}
