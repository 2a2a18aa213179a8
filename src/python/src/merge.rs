//! Merging sealed partials: `gp.dask.merge_sealed(col)` aggregates the sealed values of a group (e.g.
//! one per worker of a distributed query) into one, adding masked sums mod 2^128, row counts and
//! row multisets. Nothing is revealed; the merged value is revealed with one answer key.

use ghostpii_core::rid_encoding::cardinality;
use ghostpii_core::sealed_format::{self as fmt, SealedParts};
use polars::prelude::*;
use pyo3_polars::derive::polars_expr;
use rayon::prelude::*;

use ghostpii_core::sealed_gram::SealedGram;

use crate::sealed_column::{many_rows, null_row, params_row, sealed_storage_dtype, NewSealed, SealedColumn};

fn merge_field(inputs: &[Field]) -> PolarsResult<Field> {
    let f = inputs
        .first()
        .ok_or_else(|| polars_err!(ComputeError: "ghostpii: merge_sealed takes one column"))?;
    Ok(Field::new(f.name().clone(), sealed_storage_dtype()))
}

/// The expression of a format-2 label `<sealed op(EXPR) over …>` (column names of the other terms
/// of a linear sum are only in the label).
fn expression_of(label: &str, op: &str) -> Option<String> {
    let rest = label.strip_prefix(&format!("<sealed {op}("))?;
    let end = rest.rfind(") over ")?;
    Some(rest[..end].to_owned())
}

/// A column of `implode()`d groups: the flat values, each group's `offsets` window into them,
/// and whether the group's list is valid.
pub struct Imploded {
    pub offsets: Vec<usize>,
    pub valid: Vec<bool>,
    pub inner: Series,
}

/// The groups of an imploded column (`None`: no groups).
pub fn imploded(s: &Series) -> PolarsResult<Option<Imploded>> {
    let lists = s.list()?.rechunk();
    let Some(arr) = lists.downcast_iter().next() else {
        return Ok(None);
    };
    Ok(Some(Imploded {
        offsets: arr.offsets().iter().map(|&o| o as usize).collect(),
        valid: lists.is_not_null().iter().map(|v| v == Some(true)).collect(),
        inner: lists.get_inner(),
    }))
}

/// Whether the sealed values include sealed Grams (op `gram`).
fn has_grams(s: &Series) -> PolarsResult<bool> {
    let storage = s.to_storage();
    let ops = storage.struct_()?.field_by_name("op")?;
    let found = ops.str()?.iter().flatten().any(|o| o == "gram");
    Ok(found)
}

/// The merged sealed Gram of the group, if its values are sealed Grams (op `gram`, layout in
/// `params`); `None` for sealed sums.
fn merge_grams(s: &Series) -> PolarsResult<Option<Series>> {
    if !has_grams(s)? {
        return Ok(None);
    }
    let storage = s.to_storage();
    let st = storage.struct_()?;
    let ops = st.field_by_name("op")?;
    let ops = ops.str()?;
    let params = st.field_by_name("params")?;
    let params = params.binary()?;
    let mut merged: Option<SealedGram> = None;
    for (op, p) in ops.iter().zip(params.iter()) {
        let (Some(op), Some(p)) = (op, p) else { continue };
        if op != "gram" {
            polars_bail!(ComputeError: "ghostpii: cannot merge a sealed Gram with a sealed {op}");
        }
        let g = SealedGram::from_bytes(p).map_err(|e| polars_err!(ComputeError: "ghostpii: {e}"))?;
        match &mut merged {
            None => merged = Some(g),
            Some(m) => m.merge(&g).map_err(|e| polars_err!(ComputeError: "ghostpii: {e}"))?,
        }
    }
    Ok(Some(match merged {
        Some(m) => params_row(s.name().clone(), m.label(), "gram", m.n, m.to_bytes())?,
        None => null_row(s.name().clone()),
    }))
}

/// The merged sealed values of every group in ONE kernel call: the input is `expr.implode()`
/// (one list of partials per group). The partials are read once, flat (metadata decoded once),
/// the groups merged in parallel and written column-wise; no Series per group. Sealed Grams
/// (rare, one per row set) are merged group by group.
#[polars_expr(output_type_func=merge_field)]
fn ghost_merge_groups(inputs: &[Series]) -> PolarsResult<Series> {
    let s = &inputs[0];
    let Some(Imploded { offsets, valid, inner }) = imploded(s)? else {
        return Ok(Series::new_empty(s.name().clone(), &sealed_storage_dtype()));
    };
    if has_grams(&inner)? {
        let mut out = Series::new_empty(s.name().clone(), &sealed_storage_dtype());
        for (g, w) in offsets.windows(2).enumerate() {
            let one = match valid[g] {
                true => merge_grams(&inner.slice(w[0] as i64, w[1] - w[0]))?,
                false => None,
            };
            out.append(&one.unwrap_or_else(|| null_row(s.name().clone())))?;
        }
        return Ok(out);
    }
    let col = SealedColumn::read(&inner)?;
    let storage = inner.to_storage();
    let labels = storage.struct_()?.field_by_name("label")?;
    let labels = labels.str()?;
    let merged: Vec<Option<(SealedParts, usize)>> = offsets
        .par_windows(2)
        .zip(valid.par_iter())
        .map(|(w, &ok)| {
            if ok {
                merge_range(&col, labels, w[0], w[1])
            } else {
                Ok(None)
            }
        })
        .collect::<PolarsResult<_>>()?;
    let rows = merged
        .into_iter()
        .map(|m| {
            m.map(|(parts, meta)| new_sealed(parts, &col.meta_json[meta]))
                .transpose()
        })
        .collect::<PolarsResult<Vec<_>>>()?;
    many_rows(s.name().clone(), rows)
}

/// The partials `start..end` of the flat column merged (with the metadata index of the first);
/// `None` if all are null.
fn merge_range(
    col: &SealedColumn,
    labels: &StringChunked,
    start: usize,
    end: usize,
) -> PolarsResult<Option<(SealedParts, usize)>> {
    let mut merged: Option<(SealedParts, usize)> = None;
    for i in start..end {
        let Some(row) = &col.rows[i] else { continue };
        let mut parts = col.parts(row);
        if row.expression.is_none() {
            if let Some(e) = labels.get(i).and_then(|l| expression_of(l, row.op.as_str())) {
                parts.expression = e;
            }
        }
        match &mut merged {
            None => merged = Some((parts, row.meta)),
            Some((m, _)) => m
                .merge(&parts)
                .map_err(|e| polars_err!(ComputeError: "ghostpii: {e}"))?,
        }
    }
    Ok(merged)
}

/// The sealed value of merged parts.
fn new_sealed(m: SealedParts, meta_json: &str) -> PolarsResult<NewSealed<'_>> {
    let distinct = if m.repeats.is_empty() {
        None
    } else {
        Some(cardinality(&m.rids).map_err(|e| polars_err!(ComputeError: "ghostpii: {e}"))?)
    };
    Ok(NewSealed {
        label: m.label(distinct),
        op: m.op,
        meta_json,
        terms: fmt::pack_terms(&m.terms),
        masked: fmt::pack_masked(&m.masked),
        n: m.n,
        rids: m.rids,
        repeats: fmt::pack_repeats(&m.repeats),
        params: m.params,
    })
}
