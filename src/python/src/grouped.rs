//! Sealed aggregates of every group in ONE kernel call: `ghost.sum()` is the elementwise kernel
//! below over `expr.implode()`, so Polars groups natively (its hash group-by and list gather) and
//! the kernel sees one list of cells per group — no per-group FFI call, no per-group Series.
//! Groups are sealed in parallel (rayon) and written column-wise.

use ghostpii_core::meta::ColumnMeta;
use ghostpii_core::num::from_limbs;
use ghostpii_core::rid_blocks::{distinct_sorted, encode_sorted};
use ghostpii_core::sealed::SealedOp;
use ghostpii_core::sealed_format::{self as fmt, SealedTerm, SEALED_FORMAT};
use ghostpii_core::RidMultiset;
use polars::prelude::*;
use polars_arrow::bitmap::Bitmap;
use pyo3_polars::derive::polars_expr;
use rayon::prelude::*;

use crate::aggregate::{check_aggregable, check_linear, check_no_wrap, sealed_storage_dtype};
use crate::columns::{meta_of, values, EncryptedCells};

/// The encrypted element type of a list column, with its metadata JSON.
fn list_meta(name: &str, dtype: &DataType, what: &str) -> PolarsResult<(ColumnMeta, String)> {
    let inner = match dtype {
        DataType::List(inner) => inner.as_ref(),
        other => other,
    };
    let meta = meta_of(name, inner, what)?;
    let json = match inner {
        DataType::Extension(typ, _) => typ.serialize_metadata().map(|m| m.into_owned()),
        _ => None,
    }
    .unwrap_or_else(|| meta.to_json());
    Ok((meta, json))
}

/// A list column's flat cells and group offsets.
struct Groups {
    cells: EncryptedCells,
    offsets: Vec<usize>,
}

fn groups(s: &Series, what: &str) -> PolarsResult<(Groups, String)> {
    let (meta, json) = list_meta(s.name(), s.dtype(), what)?;
    let ca = s.list()?.rechunk();
    let arr = ca
        .downcast_iter()
        .next()
        .ok_or_else(|| polars_err!(ComputeError: "ghostpii: {what}: empty list column"))?;
    let offsets: Vec<usize> = arr.offsets().iter().map(|&o| o as usize).collect();
    let inner = ca.get_inner();
    let cells = EncryptedCells::from_storage(s.name(), meta, inner.to_storage())?;
    Ok((Groups { cells, offsets }, json))
}

/// Rows per parallel chunk of one large group.
const CHUNK: usize = 1 << 16;

/// Σ cells over `start..end` and the rids of the non-null rows there (in parallel chunks for a
/// large group; borrowed, not copied, when no row is null).
fn group_sum<'a>(
    lo: &[u64],
    hi: &[u64],
    rid: &'a [u64],
    valid: &Bitmap,
    start: usize,
    end: usize,
) -> (u128, std::borrow::Cow<'a, [u64]>) {
    let all_valid = valid.unset_bits() == 0;
    let chunk = |s: usize, e: usize| -> (u128, Vec<u64>) {
        let mut acc = 0u128;
        let mut rids = Vec::new();
        for i in s..e {
            if all_valid || valid.get_bit(i) {
                acc = acc.wrapping_add(from_limbs(lo[i], hi[i]));
                if !all_valid {
                    rids.push(rid[i]);
                }
            }
        }
        (acc, rids)
    };
    let parts: Vec<(u128, Vec<u64>)> = if end - start <= CHUNK {
        vec![chunk(start, end)]
    } else {
        (start..end)
            .step_by(CHUNK)
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|s| chunk(s, (s + CHUNK).min(end)))
            .collect()
    };
    let acc = parts.iter().fold(0u128, |a, (s, _)| a.wrapping_add(*s));
    if all_valid {
        return (acc, std::borrow::Cow::Borrowed(&rid[start..end]));
    }
    (
        acc,
        std::borrow::Cow::Owned(parts.into_iter().flat_map(|(_, r)| r).collect()),
    )
}

/// One sealed value, column-wise parts.
struct Out {
    label: String,
    masked: [u8; 16],
    n: u64,
    rids: Vec<u8>,
    repeats: Vec<u8>,
}

fn seal_rows(op: SealedOp, expression: &str, masked: u128, rids: std::borrow::Cow<'_, [u64]>) -> Out {
    let n = rids.len() as u64;
    let increasing = if rids.len() > 1 << 18 {
        rids.par_windows(2).all(|w| w[0] < w[1])
    } else {
        rids.windows(2).all(|w| w[0] < w[1])
    };
    if increasing {
        // the common case: each row once, in rid order
        return Out {
            label: fmt::label(op, expression, n, None),
            masked: masked.to_le_bytes(),
            n,
            rids: encode_sorted(&rids),
            repeats: Vec::new(),
        };
    }
    let mut rids = rids.into_owned();
    rids.par_sort_unstable();
    let (n, support, repeats, distinct) = if distinct_sorted(&rids) == n {
        (n, encode_sorted(&rids), Vec::new(), None)
    } else {
        let m = RidMultiset::from_rids(&mut rids);
        let repeats: Vec<(u64, Vec<u8>)> = m.repeats.iter().map(|r| (r.k, r.rids.to_bytes())).collect();
        let n = u64::try_from(m.weighted_len()).unwrap_or(u64::MAX);
        (n, m.support.to_bytes(), fmt::pack_repeats(&repeats), Some(m.distinct()))
    };
    Out {
        label: fmt::label(op, expression, n, distinct),
        masked: masked.to_le_bytes(),
        n,
        rids: support,
        repeats,
    }
}

/// The sealed struct column of all groups.
fn write(
    name: PlSmallStr,
    op: SealedOp,
    meta_json: &str,
    terms: &[SealedTerm],
    outs: Vec<Out>,
) -> PolarsResult<Series> {
    let len = outs.len();
    let terms = fmt::pack_terms(terms);
    let mut label = Vec::with_capacity(len);
    let mut masked = Vec::with_capacity(len);
    let mut n = Vec::with_capacity(len);
    let mut rids = Vec::with_capacity(len);
    let mut repeats = Vec::with_capacity(len);
    for o in outs {
        label.push(o.label);
        masked.push(o.masked);
        n.push(o.n);
        rids.push(o.rids);
        repeats.push(o.repeats);
    }
    let bin = |name: &str, v: Vec<Vec<u8>>| {
        BinaryChunked::from_iter_values(name.into(), v.iter().map(|b| b.as_slice())).into_series()
    };
    let fields = [
        StringChunked::from_iter_values("label".into(), label.iter().map(String::as_str)).into_series(),
        UInt8Chunked::full("format".into(), SEALED_FORMAT, len).into_series(),
        StringChunked::full("op".into(), op.as_str(), len).into_series(),
        StringChunked::full("meta".into(), meta_json, len).into_series(),
        BinaryChunked::full("terms".into(), &terms, len).into_series(),
        BinaryChunked::from_iter_values("masked".into(), masked.iter().map(|m| m.as_slice())).into_series(),
        UInt64Chunked::from_vec("n".into(), n).into_series(),
        bin("rids", rids),
        bin("repeats", repeats),
        BinaryChunked::full("params".into(), &[], len).into_series(),
    ];
    Ok(StructChunked::from_series(name, len, fields.iter())?.into_series())
}

fn seal_groups(s: &Series, op: SealedOp) -> PolarsResult<Series> {
    let what = format!("ghost.{}()", op.as_str());
    let (g, json) = groups(s, &what)?;
    check_aggregable(&g.cells.meta, op)?;
    let (lo, hi) = g.cells.num.as_ref().expect("num facet checked");
    let (lo, hi, rid) = (values(lo), values(hi), values(&g.cells.rid));
    let valid = g.cells.valid.downcast_as_array().values().clone();
    let column = g.cells.meta.column.as_str();
    let outs: Vec<Out> = g
        .offsets
        .par_windows(2)
        .map(|w| {
            let (masked, rids) = group_sum(lo, hi, rid, &valid, w[0], w[1]);
            seal_rows(op, column, masked, rids)
        })
        .collect();
    let term = SealedTerm {
        column_id: g.cells.meta.column_id,
        epoch: g.cells.meta.epoch,
        weight: 1,
    };
    write(s.name().clone(), op, &json, &[term], outs)
}

fn groups_field(inputs: &[Field], op: SealedOp) -> PolarsResult<Field> {
    let f = inputs
        .first()
        .ok_or_else(|| polars_err!(ComputeError: "ghostpii: {} takes one column", op.as_str()))?;
    let (meta, _) = list_meta(f.name(), f.dtype(), &format!("ghost.{}()", op.as_str()))?;
    check_aggregable(&meta, op)?;
    Ok(Field::new(f.name().clone(), sealed_storage_dtype()))
}

fn sum_groups_field(inputs: &[Field]) -> PolarsResult<Field> {
    groups_field(inputs, SealedOp::Sum)
}

fn mean_groups_field(inputs: &[Field]) -> PolarsResult<Field> {
    groups_field(inputs, SealedOp::Mean)
}

/// `ghost.sum()` of every group: the input is `expr.implode()` (one list of cells per group).
#[polars_expr(output_type_func=sum_groups_field)]
fn ghost_sum_groups(inputs: &[Series]) -> PolarsResult<Series> {
    seal_groups(&inputs[0], SealedOp::Sum)
}

/// `ghost.mean()` of every group.
#[polars_expr(output_type_func=mean_groups_field)]
fn ghost_mean_groups(inputs: &[Series]) -> PolarsResult<Series> {
    seal_groups(&inputs[0], SealedOp::Mean)
}

#[derive(serde::Deserialize)]
struct LinearKwargs {
    weights: Vec<i64>,
}

fn linear_groups_field(inputs: &[Field], kwargs: LinearKwargs) -> PolarsResult<Field> {
    let metas = inputs
        .iter()
        .map(|f| list_meta(f.name(), f.dtype(), "gp.linear_sum()").map(|(m, _)| m))
        .collect::<PolarsResult<Vec<_>>>()?;
    check_linear(&metas.iter().collect::<Vec<_>>(), &kwargs.weights)?;
    Ok(Field::new(inputs[0].name().clone(), sealed_storage_dtype()))
}

/// `gp.linear_sum(...)` of every group: one imploded list per column.
#[polars_expr(output_type_func_with_kwargs=linear_groups_field)]
fn ghost_linear_sum_groups(inputs: &[Series], kwargs: LinearKwargs) -> PolarsResult<Series> {
    let weights = &kwargs.weights;
    let parts: Vec<(Groups, String)> = inputs
        .iter()
        .map(|s| groups(s, "gp.linear_sum()"))
        .collect::<PolarsResult<_>>()?;
    check_linear(&parts.iter().map(|(g, _)| &g.cells.meta).collect::<Vec<_>>(), weights)?;
    let first = &parts[0].0;
    let rows = first.cells.len() as u64;
    check_no_wrap(
        &parts.iter().map(|(g, _)| &g.cells.meta).collect::<Vec<_>>(),
        weights,
        rows,
    )?;
    let rid0 = values(&first.cells.rid);
    for (g, _) in &parts[1..] {
        if g.offsets != first.offsets || values(&g.cells.rid) != rid0 {
            polars_bail!(InvalidOperation:
                "ghostpii: gp.linear_sum(): columns '{}' and '{}' were encrypted in different gp.encrypt calls \
                 (their row ids differ), so they cannot be combined row by row", first.cells.meta.column, g.cells.meta.column);
        }
    }
    let limbs: Vec<(&[u64], &[u64])> = parts
        .iter()
        .map(|(g, _)| {
            let (lo, hi) = g.cells.num.as_ref().expect("num facet checked");
            (values(lo), values(hi))
        })
        .collect();
    let valid: Vec<Bitmap> = parts
        .iter()
        .map(|(g, _)| g.cells.valid.downcast_as_array().values().clone())
        .collect();
    let named: Vec<(String, i64)> = parts
        .iter()
        .zip(weights)
        .map(|((g, _), &w)| (g.cells.meta.column.clone(), w))
        .collect();
    let expression = fmt::expression(&first.cells.meta.column, &named);
    let outs: Vec<Out> = first
        .offsets
        .par_windows(2)
        .map(|w| {
            let mut masked = 0u128;
            let mut rids = Vec::with_capacity(w[1] - w[0]);
            for i in w[0]..w[1] {
                if valid.iter().all(|v| v.get_bit(i)) {
                    for ((lo, hi), &wt) in limbs.iter().zip(weights) {
                        masked = masked.wrapping_add(from_limbs(lo[i], hi[i]).wrapping_mul(wt as i128 as u128));
                    }
                    rids.push(rid0[i]);
                }
            }
            seal_rows(SealedOp::Sum, &expression, masked, std::borrow::Cow::Owned(rids))
        })
        .collect();
    let terms: Vec<SealedTerm> = parts
        .iter()
        .zip(weights)
        .map(|((g, _), &w)| SealedTerm {
            column_id: g.cells.meta.column_id,
            epoch: g.cells.meta.epoch,
            weight: w,
        })
        .collect();
    write(inputs[0].name().clone(), SealedOp::Sum, &parts[0].1, &terms, outs)
}
