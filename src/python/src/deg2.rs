//! Encryption of the `deg2` facet: products (and squares) of one column with the others of its
//! products group, appended to that column's storage struct as two u64 limbs each.

use ghostpii_core::deg2::{encrypt_products as seal_products, field_names};
use ghostpii_core::meta::ColumnMeta;
use ghostpii_core::num::to_limbs;
use ghostpii_core::NumKey;
use polars::prelude::*;
use pyo3::prelude::*;
use pyo3_polars::PySeries;

use crate::encrypt::{enforce_bounds, scaled_ints};
use crate::errors::{core_err, polars_err, EncryptionError};

fn plain(s: &Series, meta: &ColumnMeta, clip: bool, row_offset: usize) -> PyResult<Vec<Option<i64>>> {
    let mut v = scaled_ints(s, meta, row_offset)?;
    enforce_bounds(&mut v, meta, clip, row_offset)?;
    Ok(v)
}

/// Append the product cells of column `a` with each `(series, meta_json, clip, key)` of
/// `others` (the same column for its square) to `storage`, the storage struct `encrypt_column`
/// returned for `a` with rids `rid_start..`. The products are named in `a`'s metadata.
#[pyfunction]
#[pyo3(signature = (storage, series, meta_json, clip, others, rid_start, row_offset=0))]
#[allow(clippy::too_many_arguments)]
pub fn encrypt_products(
    py: Python<'_>,
    storage: PySeries,
    series: PySeries,
    meta_json: &str,
    clip: bool,
    others: Vec<(PySeries, String, bool, Vec<u8>)>,
    rid_start: u64,
    row_offset: usize,
) -> PyResult<PySeries> {
    let meta = ColumnMeta::from_json(meta_json).map_err(core_err)?;
    let others = others
        .into_iter()
        .map(|(s, m, c, k)| {
            Ok((
                s.0,
                ColumnMeta::from_json(&m).map_err(core_err)?,
                c,
                NumKey::try_from_slice(&k).map_err(core_err)?,
            ))
        })
        .collect::<PyResult<Vec<_>>>()?;
    let (storage, s) = (storage.0, series.0);
    let out = py.detach(move || -> PyResult<Series> {
        let st = storage.struct_().map_err(polars_err)?;
        let n = st.len();
        let x = plain(&s, &meta, clip, row_offset)?;
        let rids: Vec<u64> = (rid_start..rid_start + n as u64).collect();
        let mut fields: Vec<Series> = st.fields_as_series();
        for (ys, ymeta, yclip, key) in &others {
            let y = plain(ys, ymeta, *yclip, row_offset)?;
            let cells = seal_products(key, &rids, &x, &y).map_err(|i| {
                EncryptionError::new_err(format!(
                    "columns '{}' and '{}': the product at row {} leaves the 64-bit range; declare tighter \
                     bounds or fewer decimals",
                    meta.column,
                    ymeta.column,
                    row_offset + i
                ))
            })?;
            let (mut lo, mut hi) = (Vec::with_capacity(n), Vec::with_capacity(n));
            for c in cells {
                let (l, h) = to_limbs(c);
                lo.push(l);
                hi.push(h);
            }
            let (lo_name, hi_name) = field_names(&ymeta.column);
            fields.push(Series::new(lo_name.into(), lo));
            fields.push(Series::new(hi_name.into(), hi));
        }
        let validity = storage.is_not_null();
        let out = StructChunked::from_series(storage.name().clone(), n, fields.iter()).map_err(polars_err)?;
        let validity = validity.rechunk().downcast_as_array().values().clone();
        Ok(out.with_outer_validity(Some(validity)).into_series())
    })?;
    Ok(PySeries(out))
}
