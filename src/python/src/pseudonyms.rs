//! `ghost.key()`: per-query pseudonyms of the `group` facet for group_by, join and n_unique.
//!
//! The kernel collects the rids of its non-null rows, asks the keyhost (Rust resolver) for
//! their pads in ONE request (`pads` descriptor, a `group` grant), unmasks `DET(v) = cell ⊕ pad`
//! and outputs `AES_q(DET(v))` as Int128 under a random key `q` of this process (never stored,
//! never sent). Equal values of columns of one join domain give equal pseudonyms within the
//! process; other columns never do.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use ghostpii_core::det::{PseudonymKey, GROUP_LEN};
use ghostpii_core::meta::{ColumnMeta, Facet, LogicalType};
use ghostpii_core::RidSet;
use ghostpii_proto::Descriptor;
use polars::prelude::*;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3_polars::PySeries;
use zeroize::Zeroizing;

use crate::errors::GhostError;
use rayon::prelude::*;

use crate::columns::{meta_of, rids_and_binary_facet, values, GROUP, RID};

/// The pseudonym key of this process: random, unless a distributed query installed its own.
fn query_key() -> Arc<PseudonymKey> {
    static K: OnceLock<Arc<PseudonymKey>> = OnceLock::new();
    if let Some(k) = shipped().lock().ok().and_then(|s| s.key.clone()) {
        return k;
    }
    K.get_or_init(|| Arc::new(PseudonymKey::generate())).clone()
}

/// What a distributed query shipped to this worker: one pseudonym key for all its workers and,
/// per column, the pads of the rows of this worker's files (fetched once, by the client).
#[derive(Default)]
struct Shipped {
    key: Option<Arc<PseudonymKey>>,
    pads: HashMap<ColumnEpoch, ShippedPads>,
}

/// A column epoch: keyhost, dataset id, column id, epoch.
type ColumnEpoch = (String, i64, i64, u32);

/// The sorted rids of a task's rows and their pads, in the same order.
type ShippedPads = (Vec<u64>, Zeroizing<Vec<u8>>);

fn shipped() -> &'static Mutex<Shipped> {
    static S: OnceLock<Mutex<Shipped>> = OnceLock::new();
    S.get_or_init(Default::default)
}

fn column_key(meta: &ColumnMeta) -> (String, i64, i64, u32) {
    (meta.keyhost.clone(), meta.dataset_id, meta.column_id, meta.epoch)
}

/// Install the pseudonym key and the pads of a column's rows for the kernels of this process
/// (a Dask worker: `gp.dask.collect`); `clear_shipped_pads` forgets them after the task.
#[pyfunction]
pub fn install_shipped_pads(meta_json: &str, rids: &[u8], pads: &[u8], key: &[u8]) -> PyResult<()> {
    let err = |m: String| GhostError::new_err(format!("shipped pads: {m}"));
    let meta = ColumnMeta::from_json(meta_json).map_err(|e| err(e.to_string()))?;
    let rids = RidSet::from_bytes(rids).map_err(|e| err(e.to_string()))?.to_vec();
    if pads.len() != GROUP_LEN * rids.len() {
        return Err(err(format!("{} bytes of pads for {} rows", pads.len(), rids.len())));
    }
    let key: [u8; 16] = key
        .try_into()
        .map_err(|_| err("the pseudonym key is not 16 bytes".into()))?;
    let mut s = shipped().lock().map_err(|_| err("lock poisoned".into()))?;
    s.key = Some(Arc::new(PseudonymKey::from_bytes(&key)));
    s.pads.insert(column_key(&meta), (rids, Zeroizing::new(pads.to_vec())));
    Ok(())
}

/// Forget what [`install_shipped_pads`] installed.
#[pyfunction]
pub fn clear_shipped_pads() -> PyResult<()> {
    let mut s = shipped()
        .lock()
        .map_err(|_| GhostError::new_err("shipped pads: lock poisoned"))?;
    *s = Shipped::default();
    Ok(())
}

/// The shipped pads of `wanted` (sorted, unique), if pads were shipped for the column.
fn shipped_pads(meta: &ColumnMeta, wanted: &[u64]) -> Option<Result<Vec<u8>, String>> {
    let s = shipped().lock().ok()?;
    let (rids, pads) = s.pads.get(&column_key(meta))?;
    Some(
        pads_of(rids, pads, wanted)
            .map_err(|r| format!("the pads shipped for column '{}' do not cover row id {r}", meta.column)),
    )
}

/// The pads of `wanted` out of the pads of `rids` (both sorted, unique); `Err(rid)` for a rid
/// that `rids` lacks.
fn pads_of(rids: &[u64], pads: &[u8], wanted: &[u64]) -> Result<Vec<u8>, u64> {
    let mut out = Vec::with_capacity(GROUP_LEN * wanted.len());
    let mut j = 0usize;
    for &r in wanted {
        while j < rids.len() && rids[j] < r {
            j += 1;
        }
        if j == rids.len() || rids[j] != r {
            return Err(r);
        }
        out.extend_from_slice(&pads[GROUP_LEN * j..GROUP_LEN * (j + 1)]);
    }
    Ok(out)
}

/// The pads of the rid set `subset` out of the pads of the rid set `rids` (for shipping each
/// worker only the pads of its files).
#[pyfunction]
pub fn slice_pads<'py>(py: Python<'py>, rids: &[u8], pads: &[u8], subset: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    let err = |m: String| GhostError::new_err(format!("pads: {m}"));
    let all = RidSet::from_bytes(rids).map_err(|e| err(e.to_string()))?.to_vec();
    let want = RidSet::from_bytes(subset).map_err(|e| err(e.to_string()))?.to_vec();
    if pads.len() != GROUP_LEN * all.len() {
        return Err(err(format!("{} bytes of pads for {} rows", pads.len(), all.len())));
    }
    let out = pads_of(&all, pads, &want).map_err(|r| err(format!("row id {r} has no pad")))?;
    Ok(PyBytes::new(py, &out))
}

/// The rid set of the non-null rows of an encrypted column with the group facet, and its
/// metadata (what `gp.dask.collect` asks pads for).
#[pyfunction]
pub fn key_rids<'py>(py: Python<'py>, series: PySeries) -> PyResult<(String, Bound<'py, PyBytes>)> {
    let s = series.0;
    let meta = key_meta(s.name(), s.dtype()).map_err(|e| GhostError::new_err(e.to_string()))?;
    let (rids, valid) = rids_and_validity(&s).map_err(|e| GhostError::new_err(e.to_string()))?;
    let wanted = wanted_rids(&rids, &valid);
    Ok((
        meta.to_json(),
        PyBytes::new(py, &RidSet::from_sorted(&wanted).to_bytes()),
    ))
}

/// Pads (or seeds) of `facet` for the sorted unique `rids` of the column, in one request
/// through the Rust resolver; the rid set travels raw, in a request frame.
pub fn fetch_pads(meta: &ColumnMeta, facet: Facet, rids: &RidSet) -> Result<Vec<u8>, String> {
    let wire = rids.to_bytes();
    let d = Descriptor::Pads {
        dataset_id: meta.dataset_id,
        column_id: meta.column_id,
        epoch: meta.epoch,
        facet,
        rids: crate::resolver::blob_marker(0, &wire),
    };
    let mut answers =
        crate::resolver::answer_keys(&meta.keyhost, vec![d], &[wire.as_slice()]).map_err(|r| r.to_string())?;
    let a = answers.pop().ok_or("the keyhost returned no pads")?;
    match a.blob {
        Some(p) => Ok(p),
        None => a.b64("pads").map_err(|r| r.to_string()),
    }
}

/// The sorted distinct rids of the valid rows.
fn wanted_rids(rids: &[u64], valid: &polars_arrow::bitmap::Bitmap) -> Vec<u64> {
    let mut wanted: Vec<u64> = (0..rids.len()).filter(|&i| valid.get_bit(i)).map(|i| rids[i]).collect();
    wanted.par_sort_unstable();
    wanted.dedup();
    wanted
}

/// The rid field and the validity of an encrypted column.
fn rids_and_validity(s: &Series) -> PolarsResult<(Vec<u64>, polars_arrow::bitmap::Bitmap)> {
    let storage = s.to_storage();
    let st = storage.struct_().map_err(
        |_| polars_err!(ComputeError: "ghostpii: column '{}' is corrupt: its storage is not a struct", s.name()),
    )?;
    let rid = st.field_by_name(RID)?;
    let rid = rid.u64()?.rechunk().into_owned();
    let valid = storage.is_not_null().rechunk().into_owned();
    Ok((values(&rid).to_vec(), valid.downcast_as_array().values().clone()))
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
    let (rid, cells, valid) = rids_and_binary_facet(s, GROUP)?;
    let corrupt = |w: &str| polars_err!(ComputeError: "ghostpii: column '{}' is corrupt: {w}", s.name());
    let cells = cells.downcast_as_array();
    let rids = values(&rid);
    let wanted = wanted_rids(rids, &valid);
    let mut out = vec![0i128; rids.len()];
    if !wanted.is_empty() {
        let pads = match shipped_pads(&meta, &wanted) {
            Some(p) => p,
            None => fetch_pads(&meta, Facet::Group, &RidSet::from_sorted(&wanted)),
        }
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
