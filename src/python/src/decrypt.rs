//! Opening rows marked by `ghost.decrypt()` with per-row keys issued by the keyhost.

use ghostpii_core::meta::{ColumnMeta, Facet, LogicalType, SEALED_ROWS_EXT_NAME};
use ghostpii_core::num::{from_limbs, open};
use ghostpii_core::{val, CoreError, RidSet};
use polars::prelude::*;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3_polars::PySeries;

use crate::columns::{values, EncryptedCells};
use crate::errors::{core_err, polars_err, CiphertextError, GhostError};

fn rows_meta(s: &Series) -> PyResult<ColumnMeta> {
    if let DataType::Extension(typ, _) = s.dtype() {
        if typ.name() == SEALED_ROWS_EXT_NAME {
            let md = typ
                .serialize_metadata()
                .ok_or_else(|| CiphertextError::new_err(format!("column '{}' has no ghostpii metadata", s.name())))?;
            return ColumnMeta::from_json(&md).map_err(core_err);
        }
    }
    Err(GhostError::new_err(format!(
        "column '{}' is not marked for decryption",
        s.name()
    )))
}

/// The storage of a sealed-rows column, seen as an encrypted column.
fn cells_of(s: &Series) -> PyResult<EncryptedCells> {
    EncryptedCells::from_storage(s.name(), rows_meta(s)?, s.to_storage()).map_err(polars_err)
}

fn sorted_unique_rids(cells: &EncryptedCells) -> Vec<u64> {
    let rid = values(&cells.rid);
    let valid = cells.valid.downcast_as_array().values();
    let mut v: Vec<u64> = rid
        .iter()
        .enumerate()
        .filter(|(i, _)| valid.get_bit(*i))
        .map(|(_, r)| *r)
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// `(metadata JSON, rid set bytes)` of the non-null rows of a sealed-rows column.
#[pyfunction]
pub fn pending_rids<'py>(py: Python<'py>, series: PySeries) -> PyResult<(String, Bound<'py, PyBytes>)> {
    let cells = cells_of(&series.0)?;
    let rids = RidSet::from_sorted(&sorted_unique_rids(&cells));
    Ok((cells.meta.to_json(), PyBytes::new(py, &rids.to_bytes())))
}

fn unscale_ints(vals: Vec<Option<i64>>, meta: &ColumnMeta) -> PyResult<Series> {
    let name: PlSmallStr = meta.column.as_str().into();
    let p = 10i64.pow(meta.scale);
    let as_f64 = || {
        Series::new(
            name.clone(),
            vals.iter().map(|v| v.map(|x| x as f64 / p as f64)).collect::<Vec<_>>(),
        )
    };
    let ints = || Series::new(name.clone(), vals.iter().map(|v| v.map(|x| x / p)).collect::<Vec<_>>());
    let tu = |u: Option<&str>| match u {
        Some("ns") => TimeUnit::Nanoseconds,
        Some("ms") => TimeUnit::Milliseconds,
        _ => TimeUnit::Microseconds,
    };
    use LogicalType as L;
    let target = match meta.dtype {
        L::Float32 => return as_f64().cast(&DataType::Float32).map_err(polars_err),
        L::Float64 => return Ok(as_f64()),
        L::Boolean => {
            return Ok(Series::new(
                name,
                vals.iter().map(|v| v.map(|x| x != 0)).collect::<Vec<_>>(),
            ));
        }
        L::Int8 => DataType::Int8,
        L::Int16 => DataType::Int16,
        L::Int32 => DataType::Int32,
        L::Int64 => DataType::Int64,
        L::UInt8 => DataType::UInt8,
        L::UInt16 => DataType::UInt16,
        L::UInt32 => DataType::UInt32,
        L::Date => {
            return ints()
                .cast(&DataType::Int32)
                .and_then(|s| s.cast(&DataType::Date))
                .map_err(polars_err);
        }
        L::Datetime => DataType::Datetime(
            tu(meta.time_unit.as_deref()),
            meta.time_zone
                .as_deref()
                .and_then(|z| TimeZone::opt_try_new(Some(z)).ok().flatten()),
        ),
        L::String => return Err(GhostError::new_err("text has no num facet")),
    };
    ints().cast(&target).map_err(polars_err)
}

/// Decrypt the rows of a sealed-rows column with the keys of its non-null rows (ascending
/// rid order, as returned by the keyhost: 16 bytes a row for `num`, 32 for `val`).
#[pyfunction]
pub fn open_rows(py: Python<'_>, series: PySeries, facet: &str, keys: Vec<u8>) -> PyResult<PySeries> {
    let cells = cells_of(&series.0)?;
    let out = py.detach(move || -> PyResult<Series> {
        let rids = sorted_unique_rids(&cells);
        let width = if facet == "num" { 16 } else { 32 };
        if keys.len() != rids.len() * width {
            return Err(CiphertextError::new_err(format!(
                "the keyhost returned {} bytes of keys for {} rows of column '{}'",
                keys.len(),
                rids.len(),
                cells.meta.column
            )));
        }
        let key_of = |rid: u64| -> &[u8] {
            let i = rids.binary_search(&rid).expect("rid of a valid row is in the set");
            &keys[i * width..(i + 1) * width]
        };
        let rid = values(&cells.rid);
        let valid = cells.valid.downcast_as_array().values().clone();
        let meta = &cells.meta;
        let n = cells.len();
        match facet {
            "num" if meta.has(Facet::Num) => {
                let (lo, hi) = cells.num.as_ref().expect("num facet present");
                let (lo, hi) = (values(lo), values(hi));
                let vals: Vec<Option<i64>> = (0..n)
                    .map(|i| {
                        valid.get_bit(i).then(|| {
                            let mask = u128::from_le_bytes(key_of(rid[i]).try_into().expect("16-byte key"));
                            open(from_limbs(lo[i], hi[i]), mask)
                        })
                    })
                    .collect();
                unscale_ints(vals, meta)
            }
            "val" if meta.has(Facet::Val) => {
                let cts = cells.val.as_ref().expect("val facet present");
                let binding = meta.binding();
                let mut plain: Vec<Option<Vec<u8>>> = Vec::with_capacity(n);
                for (i, ct) in cts.iter().enumerate() {
                    plain.push(match (valid.get_bit(i), ct) {
                        (true, Some(ct)) => {
                            let k: [u8; 32] = key_of(rid[i]).try_into().expect("32-byte key");
                            Some(val::open(&k, &binding, rid[i], ct).map_err(core_err)?)
                        }
                        (true, None) => {
                            return Err(core_err(CoreError::CorruptCiphertext(format!(
                                "row {i} of column '{}' has no val cell",
                                meta.column
                            ))))
                        }
                        _ => None,
                    });
                }
                if meta.dtype == LogicalType::String {
                    let strings: Vec<Option<String>> = plain
                        .into_iter()
                        .map(|b| b.map(String::from_utf8).transpose())
                        .collect::<Result<_, _>>()
                        .map_err(|_| CiphertextError::new_err("decrypted text is not UTF-8"))?;
                    Ok(Series::new(meta.column.as_str().into(), strings))
                } else {
                    let ints: Vec<Option<i64>> = plain
                        .into_iter()
                        .map(|b| b.map(|b| b.try_into().map(i64::from_le_bytes)).transpose())
                        .collect::<Result<_, _>>()
                        .map_err(|_| CiphertextError::new_err("decrypted value is not 8 bytes"))?;
                    unscale_ints(ints, meta)
                }
            }
            other => Err(GhostError::new_err(format!(
                "column '{}' cannot be decrypted with facet '{other}' (it has {:?})",
                meta.column, meta.facets
            ))),
        }
    })?;
    Ok(PySeries(out.with_name(series.0.name().clone())))
}
