//! Merging sealed partials: `gp.merge_sealed(col)` aggregates the sealed values of a group (e.g.
//! one per worker of a distributed query) into one, adding masked sums mod 2^128, row counts and
//! row multisets. Nothing is revealed; the merged value is revealed with one answer key.

use ghostpii_core::rid_encoding::cardinality;
use ghostpii_core::sealed_format::{self as fmt, SealedParts};
use polars::prelude::*;
use pyo3_polars::derive::polars_expr;

use ghostpii_core::sealed_gram::SealedGram;

use crate::sealed_column::{null_row, one_row, params_row, sealed_storage_dtype, NewSealed, SealedColumn};

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

/// The merged sealed Gram of the group, if its values are sealed Grams (op `gram`, layout in
/// `params`); `None` for sealed sums.
fn merge_grams(s: &Series) -> PolarsResult<Option<Series>> {
    let storage = s.to_storage();
    let st = storage.struct_()?;
    let ops = st.field_by_name("op")?;
    let ops = ops.str()?;
    if !ops.iter().flatten().any(|o| o == "gram") {
        return Ok(None);
    }
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

/// One merged sealed value per group.
#[polars_expr(output_type_func=merge_field)]
fn ghost_merge(inputs: &[Series]) -> PolarsResult<Series> {
    let s = &inputs[0];
    if let Some(g) = merge_grams(s)? {
        return Ok(g);
    }
    let col = SealedColumn::read(s)?;
    let labels = s.to_storage().struct_()?.field_by_name("label")?;
    let labels = labels.str()?;
    let mut merged: Option<SealedParts> = None;
    for (i, row) in col.rows.iter().enumerate() {
        let Some(row) = row else { continue };
        let mut parts = col.parts(row);
        if row.expression.is_none() {
            if let Some(e) = labels.get(i).and_then(|l| expression_of(l, row.op.as_str())) {
                parts.expression = e;
            }
        }
        match &mut merged {
            None => merged = Some(parts),
            Some(m) => m
                .merge(&parts)
                .map_err(|e| polars_err!(ComputeError: "ghostpii: {e}"))?,
        }
    }
    let Some(m) = merged else {
        return Ok(null_row(s.name().clone()));
    };
    let distinct = if m.repeats.is_empty() {
        None
    } else {
        Some(cardinality(&m.rids).map_err(|e| polars_err!(ComputeError: "ghostpii: {e}"))?)
    };
    let meta_json = m.meta.to_json();
    one_row(
        s.name().clone(),
        NewSealed {
            label: m.label(distinct),
            op: m.op,
            meta_json: &meta_json,
            terms: fmt::pack_terms(&m.terms),
            masked: fmt::pack_masked(&m.masked),
            n: m.n,
            rids: m.rids,
            repeats: fmt::pack_repeats(&m.repeats),
            params: m.params,
        },
    )
}
