//! Encryption of one column: plaintext Series → storage struct of the encrypted column.

use ghostpii_core::meta::{ColumnMeta, Facet, LogicalType};
use ghostpii_core::num::{show_scaled, to_limbs};
use ghostpii_core::{num, val, NumKey, OreKey, ValKey};
use polars::prelude::*;
use pyo3::prelude::*;
use pyo3_polars::PySeries;

use crate::columns::{NUM, NUM_HI, ORD, RID, VAL};
use crate::errors::{core_err, polars_err, EncryptionError};

struct Plain {
    ints: Option<Vec<Option<i64>>>,
    bytes: Option<Vec<Option<Vec<u8>>>>,
}

fn err(msg: String) -> PyErr {
    EncryptionError::new_err(msg)
}

fn expected_dtype(t: LogicalType, d: &DataType) -> bool {
    use LogicalType as L;
    matches!(
        (t, d),
        (L::Int8, DataType::Int8)
            | (L::Int16, DataType::Int16)
            | (L::Int32, DataType::Int32)
            | (L::Int64, DataType::Int64)
            | (L::UInt8, DataType::UInt8)
            | (L::UInt16, DataType::UInt16)
            | (L::UInt32, DataType::UInt32)
            | (L::Float32, DataType::Float32)
            | (L::Float64, DataType::Float64)
            | (L::Boolean, DataType::Boolean)
            | (L::Date, DataType::Date)
            | (L::Datetime, DataType::Datetime(_, _))
            | (L::String, DataType::String)
    )
}

/// Scaled 64-bit integers of a numeric-like column, with the first offending row named.
pub(crate) fn scaled_ints(s: &Series, meta: &ColumnMeta, row_offset: usize) -> PyResult<Vec<Option<i64>>> {
    let col = &meta.column;
    let factor = 10i64
        .checked_pow(meta.scale)
        .ok_or_else(|| err(format!("column '{col}': decimals={} is too large", meta.scale)))?;
    match s.dtype() {
        DataType::Float32 | DataType::Float64 => {
            let f = s.cast(&DataType::Float64).map_err(polars_err)?;
            let f = f.f64().map_err(polars_err)?;
            let mut out = Vec::with_capacity(f.len());
            for (i, v) in f.iter().enumerate() {
                out.push(match v {
                    None => None,
                    Some(x) => {
                        let y = (x * factor as f64).round_ties_even();
                        if !y.is_finite() || !(-9.223_372_036_854_775e18..9.223_372_036_854_775e18).contains(&y) {
                            return Err(err(format!(
                                "column '{col}': value {x} at row {} cannot be encrypted with {} decimals \
                                 (not finite, or too large for 64-bit fixed point)",
                                row_offset + i,
                                meta.scale
                            )));
                        }
                        Some(y as i64)
                    }
                });
            }
            Ok(out)
        }
        _ => {
            let phys = s.to_physical_repr();
            let ints = phys.cast(&DataType::Int64).map_err(polars_err)?;
            let ints = ints.i64().map_err(polars_err)?;
            let mut out = Vec::with_capacity(ints.len());
            for (i, v) in ints.iter().enumerate() {
                out.push(match v {
                    None => None,
                    Some(x) => Some(x.checked_mul(factor).ok_or_else(|| {
                        err(format!(
                            "column '{col}': value {x} at row {} overflows 64 bits with {} decimals",
                            row_offset + i,
                            meta.scale
                        ))
                    })?),
                });
            }
            Ok(out)
        }
    }
}

pub(crate) fn enforce_bounds(
    vals: &mut [Option<i64>],
    meta: &ColumnMeta,
    clip: bool,
    row_offset: usize,
) -> PyResult<()> {
    let Some((lo, hi)) = meta.bounds else { return Ok(()) };
    for (i, v) in vals.iter_mut().enumerate() {
        if let Some(x) = v {
            if *x < lo || *x > hi {
                if clip {
                    *x = (*x).clamp(lo, hi);
                } else {
                    return Err(err(format!(
                        "column '{}': value {} at row {} is outside the declared bounds [{}, {}] \
                         (pass clip=True to clip instead)",
                        meta.column,
                        show_scaled(*x, meta.scale),
                        row_offset + i,
                        show_scaled(lo, meta.scale),
                        show_scaled(hi, meta.scale)
                    )));
                }
            }
        }
    }
    Ok(())
}

fn plaintext(s: &Series, meta: &ColumnMeta, clip: bool, row_offset: usize) -> PyResult<Plain> {
    if meta.dtype == LogicalType::String {
        if meta.has(Facet::Num) {
            return Err(err(format!("column '{}': text cannot have the num facet", meta.column)));
        }
        let ca = s.str().map_err(polars_err)?;
        let bytes = ca.iter().map(|v| v.map(|t| t.as_bytes().to_vec())).collect();
        return Ok(Plain {
            ints: None,
            bytes: Some(bytes),
        });
    }
    let mut ints = scaled_ints(s, meta, row_offset)?;
    enforce_bounds(&mut ints, meta, clip, row_offset)?;
    let bytes = meta
        .has(Facet::Val)
        .then(|| ints.iter().map(|v| v.map(|x| x.to_le_bytes().to_vec())).collect());
    Ok(Plain {
        ints: Some(ints),
        bytes,
    })
}

/// Encrypt `series` as the column described by `meta_json`, with rids `rid_start..`.
/// Returns the storage struct; Python wraps it in the `ghostpii.encrypted` extension type.
#[pyfunction]
#[pyo3(signature = (series, meta_json, num_key, val_key, rid_start, clip=false, row_offset=0, ord_key=None, max_length=None))]
#[allow(clippy::too_many_arguments)]
pub fn encrypt_column(
    py: Python<'_>,
    series: PySeries,
    meta_json: &str,
    num_key: Option<Vec<u8>>,
    val_key: Option<Vec<u8>>,
    rid_start: u64,
    clip: bool,
    row_offset: usize,
    ord_key: Option<Vec<u8>>,
    max_length: Option<usize>,
) -> PyResult<PySeries> {
    let padding = max_length.map_or(val::Padding::PowersOfTwo, val::Padding::Max);
    let s = series.0;
    let meta = ColumnMeta::from_json(meta_json).map_err(core_err)?;
    if !expected_dtype(meta.dtype, s.dtype()) {
        return Err(err(format!(
            "column '{}' has dtype {}, which does not match the declared type {:?}",
            meta.column,
            s.dtype(),
            meta.dtype
        )));
    }
    let num_key = match (&num_key, meta.has(Facet::Num)) {
        (Some(k), true) => Some(NumKey::try_from_slice(k).map_err(core_err)?),
        (None, true) => return Err(err("num facet requested without a num key".into())),
        _ => None,
    };
    let val_key = match (&val_key, meta.has(Facet::Val)) {
        (Some(k), true) => Some(ValKey::try_from_slice(k).map_err(core_err)?),
        (None, true) => return Err(err("val facet requested without a val key".into())),
        _ => None,
    };
    let ord = match (&ord_key, meta.has(Facet::Ord), meta.ord) {
        (Some(k), true, Some(params)) => Some((OreKey::try_from_slice(k).map_err(core_err)?, params)),
        (_, true, None) => return Err(err("ord facet requested without an order domain".into())),
        (None, true, _) => return Err(err("ord facet requested without an ord key".into())),
        _ => None,
    };
    let name = s.name().clone();
    let out = py.detach(move || -> PyResult<Series> {
        let plain = plaintext(&s, &meta, clip, row_offset)?;
        let n = s.len();
        let rids: Vec<u64> = (rid_start..rid_start + n as u64).collect();
        let mut fields = vec![Series::new(RID.into(), &rids)];
        if let (Some(k), Some(ints)) = (&num_key, &plain.ints) {
            let cells = num::encrypt(k, &rids, ints);
            let (mut lo, mut hi) = (Vec::with_capacity(n), Vec::with_capacity(n));
            for (c, v) in cells.iter().zip(ints) {
                let (l, h) = to_limbs(*c);
                lo.push(v.map(|_| l));
                hi.push(v.map(|_| h));
            }
            fields.push(Series::new(NUM.into(), lo));
            fields.push(Series::new(NUM_HI.into(), hi));
        }
        if let (Some((k, params)), Some(ints)) = (&ord, &plain.ints) {
            let cells = k.encrypt_many(params, ints).map_err(|i| {
                err(format!(
                    "column '{}': value at row {} is outside the order domain of the ord facet \
                     (declare bounds that include it)",
                    meta.column,
                    row_offset + i
                ))
            })?;
            fields.push(Series::new(ORD.into(), cells));
        }
        if let (Some(k), Some(bytes)) = (&val_key, &plain.bytes) {
            let refs: Vec<Option<&[u8]>> = bytes.iter().map(|b| b.as_deref()).collect();
            let cells = val::encrypt(k, &meta.binding(), &rids, &refs, padding).map_err(|i| {
                let len = refs[i].map_or(0, <[u8]>::len);
                err(format!(
                    "column '{}': the value at row {} is {len} bytes (UTF-8), longer than max_length = {} \
                     declared for the column; raise max_length or shorten the value",
                    meta.column,
                    row_offset + i,
                    max_length.unwrap_or(0)
                ))
            })?;
            fields.push(Series::new(VAL.into(), cells));
        }
        let validity = s.is_not_null();
        let st = StructChunked::from_series(name, n, fields.iter()).map_err(polars_err)?;
        let validity = validity.rechunk().downcast_as_array().values().clone();
        let st = st.with_outer_validity(Some(validity));
        Ok(st.into_series())
    })?;
    Ok(PySeries(out))
}
