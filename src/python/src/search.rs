//! `ghost.starts_with` / `ghost.ends_with` / `ghost.contains` over the `search` facet
//! (`ghostpii_core::search`). Search tokens share the match-token cache and its fetch paths
//! (`equality.rs`): `lf.ghost.collect` prefetches them in its one request; a plain `.collect()`
//! fetches the missing ones once through the Rust resolver.

use ghostpii_core::meta::{ColumnMeta, Facet};
use ghostpii_core::search::{SearchParams, SearchToken};
use polars::prelude::*;
use polars_arrow::array::BooleanArray;
use polars_arrow::bitmap::Bitmap;
use polars_arrow::datatypes::ArrowDataType;
use rayon::prelude::*;
use serde::Deserialize;

use crate::columns::{meta_of, rids_and_binary_facet, values, SEARCH};
use crate::equality::{note, resolve, MatchNeed};
use ghostpii_proto::descriptor::SearchKind;

#[derive(Debug, Clone, Deserialize)]
pub struct SearchKwargs {
    /// "starts_with", "ends_with" or "contains".
    pub op: String,
    pub constant: String,
}

struct Plan {
    meta: ColumnMeta,
    params: SearchParams,
    /// `None`: the empty constant (every non-null row matches, as in Polars).
    need: Option<MatchNeed>,
    anchored: bool,
}

fn declared(p: &SearchParams) -> String {
    let mut parts = Vec::new();
    if !p.prefix.is_empty() {
        parts.push(format!("prefix={:?}", p.prefix));
    }
    if !p.suffix.is_empty() {
        parts.push(format!("suffix={:?}", p.suffix));
    }
    if let Some(q) = p.substring {
        parts.push(format!("substring={q}"));
    }
    parts.push(format!("max_length={}", p.max_length));
    parts.join(", ")
}

fn plan(name: &str, dtype: &DataType, kw: &SearchKwargs) -> PolarsResult<Plan> {
    let what = format!("ghost.{}({:?})", kw.op, kw.constant);
    let meta = meta_of(name, dtype, &what)?;
    let params = match (&meta.search, meta.has(Facet::Search)) {
        (Some(p), true) => p.clone(),
        _ => polars_bail!(InvalidOperation:
            "ghostpii: {what} needs the 'search' facet, but column '{name}' was encrypted without it; encrypt it \
             with e.g. gp.text(prefix=(1, 2, 3), suffix=(1, 2, 3), substring=3)"),
    };
    let n = kw.constant.chars().count() as u32;
    let sub = |anchored: bool| -> Option<(SearchKind, u32, bool)> {
        let q = params.substring?;
        (q <= n).then_some((SearchKind::Substring, q, anchored))
    };
    let choice = match kw.op.as_str() {
        "starts_with" if params.prefix.contains(&n) => Some((SearchKind::Prefix, 0, false)),
        "starts_with" => sub(true),
        "ends_with" if params.suffix.contains(&n) => Some((SearchKind::Suffix, 0, false)),
        "ends_with" => None,
        "contains" => sub(false),
        op => polars_bail!(InvalidOperation: "ghostpii: unknown search operation {op:?}"),
    };
    if n == 0 {
        return Ok(Plan {
            meta,
            params,
            need: None,
            anchored: false,
        });
    }
    let Some((kind, q, anchored)) = choice else {
        let how = match kw.op.as_str() {
            "starts_with" => format!(
                "a declared prefix length ({n} is not among {:?}) or substring search with q ≤ {n}",
                params.prefix
            ),
            "ends_with" => format!("a declared suffix length ({n} is not among {:?})", params.suffix),
            _ => match params.substring {
                Some(q) => format!("a constant of at least q = {q} characters"),
                None => "substring search, which the column was not encrypted with".into(),
            },
        };
        polars_bail!(InvalidOperation:
            "ghostpii: {what} on column '{name}' needs {how}; the column declares {}. Query a declared length, or \
             encrypt the column with the lengths you need (gp.text(prefix=..., suffix=..., substring=...))",
            declared(&params));
    };
    let need = MatchNeed::text(&meta, &kw.constant, kind, q);
    Ok(Plan {
        meta,
        params,
        need: Some(need),
        anchored,
    })
}

pub fn field(inputs: &[Field], kw: &SearchKwargs) -> PolarsResult<Field> {
    let f = inputs
        .first()
        .ok_or_else(|| polars_err!(ComputeError: "ghostpii: ghost.{} takes one column", kw.op))?;
    let p = plan(f.name(), f.dtype(), kw)?;
    if let Some(n) = &p.need {
        note(std::slice::from_ref(n));
    }
    Ok(Field::new(f.name().clone(), DataType::Boolean))
}

pub fn kernel(s: &Series, kw: &SearchKwargs) -> PolarsResult<Series> {
    let p = plan(s.name(), s.dtype(), kw)?;
    let token = match &p.need {
        None => None,
        Some(n) => {
            let t = resolve(std::slice::from_ref(n)).map_err(|e| polars_err!(ComputeError: "ghostpii: {e}"))?;
            Some(SearchToken::parse(&t[0], &p.meta.binding()).map_err(|e| polars_err!(ComputeError: "ghostpii: {e}"))?)
        }
    };
    let (rid, cells, valid) = rids_and_binary_facet(s, SEARCH)?;
    let cells = cells.downcast_as_array();
    let rids = values(&rid);
    let n = rids.len();
    let bits: Vec<bool> = (0..n)
        .into_par_iter()
        .with_min_len(1 << 10)
        .map(|i| {
            if !valid.get_bit(i) {
                return Ok(false);
            }
            match &token {
                None => Ok(true),
                Some(t) => t.matches(&p.params, rids[i], cells.value(i), p.anchored).ok_or_else(
                    || polars_err!(ComputeError: "ghostpii: the search token does not fit column '{}'", s.name()),
                ),
            }
        })
        .collect::<PolarsResult<_>>()?;
    let bits: Bitmap = bits.into_iter().collect();
    let validity = (valid.unset_bits() > 0).then_some(valid);
    let arr = BooleanArray::new(ArrowDataType::Boolean, bits, validity);
    Ok(BooleanChunked::with_chunk(s.name().clone(), arr).into_series())
}
