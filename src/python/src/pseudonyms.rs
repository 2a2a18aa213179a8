//! `ghost.key()`: per-query pseudonyms of the `group` facet for group_by, join and n_unique.
//!
//! The kernel collects the rids of its non-null rows, asks the registered Python fetcher for
//! their pads in ONE request (`pads` descriptor, a `group` grant), unmasks `DET(v) = cell ⊕ pad`
//! and outputs `AES_q(DET(v))` as Int128 under a random key `q` of this process (never stored,
//! never sent). Equal values of columns of one join domain give equal pseudonyms within the
//! process; other columns never do.

use std::sync::{Mutex, OnceLock};

use ghostpii_core::det::{PseudonymKey, GROUP_LEN};
use ghostpii_core::meta::{ColumnMeta, Facet, LogicalType};
use ghostpii_core::RidSet;
use polars::prelude::*;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use rayon::prelude::*;

use crate::columns::{meta_of, values, GROUP, RID};

fn fetcher() -> &'static Mutex<Option<Py<PyAny>>> {
    static F: OnceLock<Mutex<Option<Py<PyAny>>>> = OnceLock::new();
    F.get_or_init(Default::default)
}

fn query_key() -> &'static PseudonymKey {
    static K: OnceLock<PseudonymKey> = OnceLock::new();
    K.get_or_init(PseudonymKey::generate)
}

/// `"Name: message"` of a Python exception, so the Python layer can re-raise its type.
pub fn py_error_text(py: Python<'_>, e: &PyErr) -> String {
    let name = e
        .get_type(py)
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "error".into());
    format!("{name}: {}", e.value(py))
}

/// Register the Python callable `(need: dict, rids: bytes) -> bytes` that fetches pads.
#[pyfunction]
pub fn set_pad_fetcher(f: Py<PyAny>) -> PyResult<()> {
    *fetcher()
        .lock()
        .map_err(|_| pyo3::exceptions::PyRuntimeError::new_err("lock poisoned"))? = Some(f);
    Ok(())
}

/// Pads (or seeds) of `facet` for the sorted unique `rids` of the column, in one request.
pub fn fetch_pads(meta: &ColumnMeta, facet: &str, rids: &RidSet) -> Result<Vec<u8>, String> {
    Python::attach(|py| {
        let f = fetcher()
            .lock()
            .map_err(|_| "pad fetcher lock poisoned".to_string())?
            .as_ref()
            .map(|f| f.clone_ref(py))
            .ok_or_else(|| "no keyhost session is active to fetch pseudonym pads; use gp.connect(...)".to_string())?;
        let d = PyDict::new(py);
        let set = |k: &str, v: Bound<'_, PyAny>| d.set_item(k, v).map_err(|e| e.to_string());
        set(
            "keyhost",
            meta.keyhost
                .clone()
                .into_pyobject(py)
                .map_err(|e| e.to_string())?
                .into_any(),
        )?;
        set(
            "dataset_id",
            meta.dataset_id.into_pyobject(py).map_err(|e| e.to_string())?.into_any(),
        )?;
        set(
            "column_id",
            meta.column_id.into_pyobject(py).map_err(|e| e.to_string())?.into_any(),
        )?;
        set(
            "epoch",
            meta.epoch.into_pyobject(py).map_err(|e| e.to_string())?.into_any(),
        )?;
        set("facet", facet.into_pyobject(py).map_err(|e| e.to_string())?.into_any())?;
        let bytes = PyBytes::new(py, &rids.to_bytes());
        let r = f.call1(py, (d, bytes)).map_err(|e| py_error_text(py, &e))?;
        r.extract::<Vec<u8>>(py).map_err(|e| e.to_string())
    })
}

fn key_meta(name: &str, dtype: &DataType) -> PolarsResult<ColumnMeta> {
    let meta = meta_of(name, dtype, "ghost.key()")?;
    if !meta.has(Facet::Group) {
        let hint = match meta.dtype {
            LogicalType::String => "gp.text(group=True)",
            LogicalType::Date => "gp.date(group=True)",
            _ => "gp.integer(group=True)",
        };
        polars_bail!(InvalidOperation:
            "ghostpii: ghost.key() needs the 'group' facet, but column '{name}' was encrypted without it; \
             encrypt it with {hint}");
    }
    Ok(meta)
}

pub fn field(inputs: &[Field]) -> PolarsResult<Field> {
    let f = inputs
        .first()
        .ok_or_else(|| polars_err!(ComputeError: "ghostpii: ghost.key() takes one column"))?;
    key_meta(f.name(), f.dtype())?;
    Ok(Field::new(f.name().clone(), DataType::Int128))
}

pub fn kernel(s: &Series) -> PolarsResult<Series> {
    let meta = key_meta(s.name(), s.dtype())?;
    let storage = s.to_storage();
    let corrupt = |w: &str| polars_err!(ComputeError: "ghostpii: column '{}' is corrupt: {w}", s.name());
    let st = storage.struct_().map_err(|_| corrupt("its storage is not a struct"))?;
    let rid = st.field_by_name(RID).map_err(|_| corrupt("no rid field"))?;
    let rid = rid.u64().map_err(|_| corrupt("rid is not u64"))?.rechunk().into_owned();
    let cells = st.field_by_name(GROUP).map_err(|_| corrupt("no group field"))?;
    let cells = cells
        .binary()
        .map_err(|_| corrupt("group is not binary"))?
        .rechunk()
        .into_owned();
    let cells = cells.downcast_as_array();
    let rids = values(&rid);
    let valid = storage.is_not_null().rechunk().into_owned();
    let valid = valid.downcast_as_array().values().clone();
    let mut wanted: Vec<u64> = (0..rids.len()).filter(|&i| valid.get_bit(i)).map(|i| rids[i]).collect();
    wanted.par_sort_unstable();
    wanted.dedup();
    let mut out = vec![0i128; rids.len()];
    if !wanted.is_empty() {
        let pads = fetch_pads(&meta, "group", &RidSet::from_sorted(&wanted))
            .map_err(|e| polars_err!(ComputeError: "ghostpii: {e}"))?;
        if pads.len() != wanted.len() * GROUP_LEN {
            polars_bail!(ComputeError: "ghostpii: the keyhost returned {} bytes of pads for {} rows", pads.len(), wanted.len());
        }
        let key = query_key();
        const CHUNK: usize = 1 << 14;
        let res: PolarsResult<()> = out.par_chunks_mut(CHUNK).enumerate().try_for_each(|(c, chunk)| {
            let lo = c * CHUNK;
            let mut dets: Vec<[u8; 16]> = Vec::with_capacity(chunk.len());
            for (i, &rid) in rids.iter().enumerate().skip(lo).take(chunk.len()) {
                let mut d = [0u8; 16];
                if valid.get_bit(i) {
                    let cell = cells.value(i);
                    if cell.len() != GROUP_LEN {
                        return Err(corrupt(&format!("row {i} has a malformed group cell")));
                    }
                    let j = wanted.binary_search(&rid).expect("every valid rid was requested");
                    for (k, x) in d.iter_mut().enumerate() {
                        *x = cell[k] ^ pads[GROUP_LEN * j + k];
                    }
                }
                dets.push(d);
            }
            chunk.copy_from_slice(&key.pseudonyms(&mut dets));
            Ok(())
        });
        res?;
    }
    let validity = (valid.unset_bits() > 0).then_some(valid);
    let arr = polars_arrow::array::PrimitiveArray::<i128>::new(
        polars_arrow::datatypes::ArrowDataType::Int128,
        out.into(),
        validity,
    );
    Ok(Int128Chunked::with_chunk(s.name().clone(), arr).into_series())
}
