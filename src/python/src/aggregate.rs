//! Aggregation kernels: masked sums over ciphertext, sealed with their computation descriptor.

use ghostpii_core::meta::{Facet, LogicalType};
use ghostpii_core::num::from_limbs;
use ghostpii_core::sealed::{SealedAggregate, SealedOp, Term};
use ghostpii_core::RidMultiset;
use polars::prelude::*;
use rayon::prelude::*;

use crate::columns::{require_facet, values, EncryptedCells};

/// Storage of a sealed value: a label that prints, and the payload that reveals.
pub fn sealed_storage_dtype() -> DataType {
    DataType::Struct(vec![
        Field::new("label".into(), DataType::String),
        Field::new("payload".into(), DataType::Binary),
    ])
}

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

/// Σ cells and the rids of the non-null rows (a repeated row's rid appears once per repeat).
fn masked_sum(cells: &EncryptedCells) -> (u128, Vec<u64>) {
    let (lo, hi) = cells.num.as_ref().expect("num facet checked");
    let (lo, hi, rid) = (values(lo), values(hi), values(&cells.rid));
    let valid = cells.valid.downcast_as_array().values().clone();
    let n = rid.len();
    let parts: Vec<(u128, Vec<u64>)> = (0..n.div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| {
            let (start, end) = (c * CHUNK, ((c + 1) * CHUNK).min(n));
            let mut acc = 0u128;
            let mut rids = Vec::with_capacity(end - start);
            for i in start..end {
                // SAFETY: i < n == valid.len()
                if unsafe { valid.get_bit_unchecked(i) } {
                    acc = acc.wrapping_add(from_limbs(lo[i], hi[i]));
                    rids.push(rid[i]);
                }
            }
            (acc, rids)
        })
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
/// k times too.
pub(crate) fn rid_multiset(mut rids: Vec<u64>) -> RidMultiset {
    if !rids.windows(2).all(|w| w[0] <= w[1]) {
        rids.par_sort_unstable();
    }
    RidMultiset::from_rids(&mut rids)
}

/// Seal the sum or mean of an encrypted column (one group).
pub fn seal(s: &Series, op: SealedOp) -> PolarsResult<Series> {
    let cells = EncryptedCells::from_series(s, &format!("ghost.{}()", op.as_str()))?;
    check_aggregable(&cells.meta, op)?;
    let (masked, rids) = masked_sum(&cells);
    let sealed = SealedAggregate::new(op, cells.meta, masked, &rid_multiset(rids));
    let label = Series::new("label".into(), [sealed.label()]);
    let payload = Series::new("payload".into(), [sealed.to_bytes()]);
    let st = StructChunked::from_series(s.name().clone(), 1, [label, payload].iter())?;
    Ok(st.into_series())
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
    let mut sealed = SealedAggregate::new(SealedOp::Sum, cells[0].meta.clone(), masked, &rid_multiset(rids));
    sealed.terms = cells
        .iter()
        .zip(weights)
        .map(|(c, &w)| Term {
            column: c.meta.column.clone(),
            column_id: c.meta.column_id,
            epoch: c.meta.epoch,
            weight: w,
        })
        .collect();
    let label = Series::new("label".into(), [sealed.label()]);
    let payload = Series::new("payload".into(), [sealed.to_bytes()]);
    let st = StructChunked::from_series(inputs[0].name().clone(), 1, [label, payload].iter())?;
    Ok(st.into_series())
}

/// Number of non-null rows (public: null positions are part of the column format).
pub fn count(s: &Series) -> PolarsResult<Series> {
    let cells = EncryptedCells::from_series(s, "ghost.count()")?;
    let n = cells.valid.sum().unwrap_or(0);
    Ok(Series::new(s.name().clone(), [n]))
}
