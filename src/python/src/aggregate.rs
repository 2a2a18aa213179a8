//! Checks shared by the sealed aggregates (`grouped.rs` seals every group in one call) and
//! `ghost.count()`.

use ghostpii_core::meta::{Facet, LogicalType};
use ghostpii_core::sealed::SealedOp;
use ghostpii_core::RidMultiset;
use polars::prelude::*;
use rayon::prelude::*;

use crate::columns::{require_facet, EncryptedCells};

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
pub fn check_no_wrap(metas: &[&ghostpii_core::ColumnMeta], weights: &[i64], rows: u64) -> PolarsResult<()> {
    let terms: Vec<_> = weights.iter().zip(metas).map(|(&w, m)| (w, m.bounds)).collect();
    if !ghostpii_core::num::linear_sum_fits(&terms, rows) {
        polars_bail!(InvalidOperation:
            "ghostpii: gp.linear_sum(): weights {weights:?} times the columns' bounds over {rows} rows could \
             exceed the 128-bit sum (Σ|w|·max(|lo|,|hi|)·rows ≥ 2^127), so the sum could wrap; use smaller \
             weights or encrypt with tighter bounds");
    }
    Ok(())
}

/// The rows as a multiset (sorted first if needed), for kernels that build their own sealed
/// values (second moments).
pub(crate) fn rid_multiset(mut rids: Vec<u64>) -> RidMultiset {
    if !rids.windows(2).all(|w| w[0] <= w[1]) {
        rids.par_sort_unstable();
    }
    RidMultiset::from_rids(&mut rids)
}

/// Number of non-null rows (public: null positions are part of the column format).
pub fn count(s: &Series) -> PolarsResult<Series> {
    let cells = EncryptedCells::from_series(s, "ghost.count()")?;
    let n = cells.valid.sum().unwrap_or(0);
    Ok(Series::new(s.name().clone(), [n]))
}
