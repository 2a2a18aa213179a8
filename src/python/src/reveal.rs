//! Revealing sealed columns in Rust: the answer-key request body of every sealed value of a frame
//! (deduplicated), and the plaintext columns from the keyhost's answers. Python only sends the
//! bytes: no per-group Python, no JSON of groups in Python.

use std::collections::HashMap;

use ghostpii_core::frame;
use ghostpii_core::meta::{ColumnMeta, LogicalType};
use ghostpii_core::sealed::SealedOp;
use ghostpii_core::sealed_format::{pack_terms, SealedTerm};
use ghostpii_proto::descriptor::{Descriptor, Repeat, Requests, Rids, Term};
use polars::prelude::*;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3_polars::PySeries;
use serde::Deserialize;

use crate::errors::{polars_err, CiphertextError, GhostError};
use crate::sealed_column::{Row, SealedColumn};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

/// Where a value's answer key comes from: a descriptor, and its group if it is a `sums` batch.
#[derive(Clone, Copy)]
struct Slot {
    descriptor: usize,
    group: Option<usize>,
}

/// One sealed column to reveal: its values and, per row, where its key comes from.
struct Pending {
    name: PlSmallStr,
    column: SealedColumn,
    descriptor: Vec<Option<Slot>>,
}

/// The groups of one `sums` descriptor: one linear combination over many row sets.
struct Batch {
    dataset_id: i64,
    terms: Vec<SealedTerm>,
    /// Each distinct rid set (wire encoding) once, in first-seen order.
    groups: PlIndexSet<Vec<u8>>,
}

/// A descriptor of the request: typed, its rid sets as wire encodings (written raw in the
/// request frame when large, see [`Body`]), or a `sums` batch (built last).
enum Desc {
    One(Descriptor<Vec<u8>>),
    Batch(Batch),
}

/// Rid sets from this size (wire encoding) travel as raw blobs; smaller ones as base64, whose
/// few bytes cost less than a blob marker.
const BLOB_MIN: usize = 256;

/// The blobs of a request body being written: the raw rid sets its markers name.
#[derive(Default)]
struct Body {
    blobs: Vec<Vec<u8>>,
}

impl Body {
    /// How a rid set travels: a blob marker (large) or a base64 string (small).
    fn rids(&mut self, rids: &[u8]) -> Rids {
        if rids.len() >= BLOB_MIN {
            self.blobs.push(rids.to_vec());
            Rids::Blob {
                blob: self.blobs.len() - 1,
                len: rids.len(),
            }
        } else {
            Rids::Base64(B64.encode(rids))
        }
    }

    /// The body of `requests`: JSON (no blobs) or the binary request frame, with its content type.
    fn finish(self, requests: Vec<Descriptor<Rids>>) -> PyResult<(Vec<u8>, &'static str)> {
        let json = serde_json::to_vec(&Requests { requests })
            .map_err(|e| GhostError::new_err(format!("cannot encode the answer-key request: {e}")))?;
        if self.blobs.is_empty() {
            return Ok((json, "application/json"));
        }
        let len = u32::try_from(json.len())
            .map_err(|_| GhostError::new_err("the answer-key request is too large (JSON over 4 GiB)"))?;
        let total: usize = self.blobs.iter().map(Vec::len).sum();
        let mut out = Vec::with_capacity(frame::HEADER_LEN + json.len() + total);
        out.extend_from_slice(&frame::header(len));
        out.extend_from_slice(&json);
        for b in &self.blobs {
            out.extend_from_slice(b);
        }
        Ok((out, frame::MEDIA_TYPE))
    }
}

/// Every answer key a frame needs, asked for in one request.
#[pyclass(module = "ghostpii._internal")]
pub struct RevealPlan {
    keyhost_id: String,
    columns: Vec<Pending>,
    /// One entry per distinct descriptor.
    descriptors: Vec<Desc>,
    index: PlHashMap<Vec<u8>, usize>,
    /// The batch the previous value went to (consecutive values share dataset and terms).
    last_batch: Option<usize>,
}

#[derive(Deserialize)]
struct Answers {
    results: Vec<Answer>,
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    ok: bool,
    key: Option<String>,
    /// base64 per-row keys (decrypt), or a list of decimal keys (a Gram matrix's entries)
    keys: Option<serde_json::Value>,
    /// the noise of each entry of a DP answer with several keys
    dp: Option<serde_json::Value>,
    reason: Option<String>,
    message: Option<String>,
    missing_grant: Option<serde_json::Value>,
}

fn terms(terms: &[SealedTerm]) -> Vec<Term> {
    terms
        .iter()
        .map(|t| Term {
            column_id: t.column_id,
            epoch: t.epoch,
            weight: t.weight,
        })
        .collect()
}

/// The `sum` descriptor of a value, its rid sets as wire encodings.
fn sum_descriptor(meta: &ColumnMeta, row: &Row) -> Descriptor<Vec<u8>> {
    Descriptor::Sum {
        dataset_id: meta.dataset_id,
        rids: row.rids.clone(),
        terms: terms(&row.terms),
        repeats: row
            .repeats
            .iter()
            .map(|(k, r)| Repeat { k: *k, rids: r.clone() })
            .collect(),
    }
}

impl RevealPlan {
    fn want(&mut self, key: Vec<u8>, desc: impl FnOnce() -> Desc) -> usize {
        if let Some(&i) = self.index.get(&key) {
            return i;
        }
        let i = self.descriptors.len();
        self.descriptors.push(desc());
        self.index.insert(key, i);
        i
    }

    /// The slot of a value without repeats, in the `sums` batch of its dataset and terms.
    fn want_group(&mut self, meta: &ColumnMeta, row: &Row) -> Slot {
        let same = |d: &Desc| matches!(d, Desc::Batch(b) if b.dataset_id == meta.dataset_id && b.terms == row.terms);
        let descriptor = match self.last_batch.filter(|&i| same(&self.descriptors[i])) {
            Some(i) => i,
            None => self.batch_of(meta, row),
        };
        self.last_batch = Some(descriptor);
        let Desc::Batch(b) = &mut self.descriptors[descriptor] else {
            unreachable!("sums keys name batches")
        };
        let group = match b.groups.get_index_of(&row.rids) {
            Some(g) => g,
            None => b.groups.insert_full(row.rids.clone()).0,
        };
        Slot {
            descriptor,
            group: Some(group),
        }
    }

    /// The `sums` batch of the value's dataset and terms (made if new).
    fn batch_of(&mut self, meta: &ColumnMeta, row: &Row) -> usize {
        let mut key = b"sums:".to_vec();
        key.extend_from_slice(&meta.dataset_id.to_le_bytes());
        key.extend_from_slice(&pack_terms(&row.terms));
        if let Some(&i) = self.index.get(&key) {
            return i;
        }
        let i = self.descriptors.len();
        self.descriptors.push(Desc::Batch(Batch {
            dataset_id: meta.dataset_id,
            terms: row.terms.clone(),
            groups: PlIndexSet::default(),
        }));
        self.index.insert(key, i);
        i
    }
}

/// The bytes of a byte field of an answer: base64 (JSON answers) or a blob of the answer frame.
fn key_bytes(v: &serde_json::Value, blobs: &[&[u8]]) -> Option<Result<Vec<u8>, String>> {
    match v {
        serde_json::Value::String(k) => Some(B64.decode(k).map_err(|e| format!("not base64: {e}"))),
        other => Some(match frame::marker(other)? {
            Ok(m) => usize::try_from(m.index)
                .ok()
                .and_then(|i| blobs.get(i))
                .map(|b| b.to_vec())
                .ok_or_else(|| "a blob the answer frame lacks".to_string()),
            Err(e) => Err(e.to_string()),
        }),
    }
}

fn signed(masked: u128, key: u128) -> i128 {
    masked.wrapping_sub(key) as i128
}

fn int_like(d: LogicalType) -> bool {
    use LogicalType as L;
    matches!(
        d,
        L::Int8 | L::Int16 | L::Int32 | L::Int64 | L::UInt8 | L::UInt16 | L::UInt32 | L::Boolean
    )
}

fn time_unit(u: Option<&str>) -> (TimeUnit, f64) {
    match u {
        Some("ns") => (TimeUnit::Nanoseconds, 1e9),
        Some("ms") => (TimeUnit::Milliseconds, 1e3),
        _ => (TimeUnit::Microseconds, 1e6),
    }
}

/// The plaintext column of revealed totals (`None`: null value), typed like `gp.reveal` always did.
fn plaintext(name: PlSmallStr, col: &SealedColumn, totals: &[Option<(i128, u64)>]) -> PolarsResult<Series> {
    let first = col.rows.iter().flatten().next();
    let Some(first) = first else {
        return Ok(Series::full_null(name, totals.len(), &DataType::Float64));
    };
    let meta = &col.metas[first.meta];
    let scale = 10f64.powi(meta.scale as i32);
    match first.op {
        SealedOp::Sum if int_like(meta.dtype) && meta.scale == 0 => {
            let fits = totals.iter().flatten().all(|(t, _)| i64::try_from(*t).is_ok());
            if fits {
                let v: Vec<Option<i64>> = totals.iter().map(|t| t.map(|(t, _)| t as i64)).collect();
                Ok(Series::new(name, v))
            } else {
                // an exact sum beyond 64 bits is kept exact, never wrapped
                let v: Vec<Option<i128>> = totals.iter().map(|t| t.map(|(t, _)| t)).collect();
                Ok(Int128Chunked::from_iter_options(name, v.into_iter()).into_series())
            }
        }
        SealedOp::Sum => {
            let v: Vec<Option<f64>> = totals.iter().map(|t| t.map(|(t, _)| t as f64 / scale)).collect();
            Ok(Series::new(name, v))
        }
        SealedOp::Mean => {
            let means: Vec<Option<f64>> = totals
                .iter()
                .map(|t| t.and_then(|(t, n)| (n > 0).then(|| t as f64 / (n as f64 * scale))))
                .collect();
            match meta.dtype {
                LogicalType::Date => {
                    let us: Vec<Option<i64>> = means
                        .iter()
                        .map(|m| m.map(|d| (d * 86_400e6).round_ties_even() as i64))
                        .collect();
                    Series::new(name, us).cast(&DataType::Datetime(TimeUnit::Microseconds, None))
                }
                LogicalType::Datetime => {
                    let (unit, per_s) = time_unit(meta.time_unit.as_deref());
                    let us: Vec<Option<i64>> = means
                        .iter()
                        .map(|m| m.map(|x| (x / per_s * 1e6).round_ties_even() as i64))
                        .collect();
                    let tz = meta
                        .time_zone
                        .as_deref()
                        .and_then(|z| TimeZone::opt_try_new(Some(z)).ok().flatten());
                    Series::new(name, us)
                        .cast(&DataType::Datetime(TimeUnit::Microseconds, None))?
                        .cast(&DataType::Datetime(unit, None))?
                        .cast(&DataType::Datetime(unit, tz))
                }
                _ => Ok(Series::new(name, means)),
            }
        }
    }
}

#[pymethods]
impl RevealPlan {
    #[new]
    fn new(keyhost_id: String) -> Self {
        RevealPlan {
            keyhost_id,
            columns: Vec::new(),
            descriptors: Vec::new(),
            index: PlHashMap::default(),
            last_batch: None,
        }
    }

    /// Add a sealed column; its values' descriptors join the request.
    fn add_sealed(&mut self, py: Python<'_>, series: PySeries) -> PyResult<()> {
        let s = series.0;
        let column = py
            .detach(|| SealedColumn::read(&s))
            .map_err(|e| CiphertextError::new_err(e.to_string()))?;
        for m in &column.metas {
            if m.keyhost != self.keyhost_id {
                return Err(CiphertextError::new_err(format!(
                    "column '{}' was encrypted under keyhost '{}', but this session is connected to keyhost '{}'",
                    m.column, m.keyhost, self.keyhost_id
                )));
            }
        }
        // values without repeated rows go into one `sums` batch per (dataset, terms) when a
        // column has several; the others get a `sum` descriptor each
        let batched = column
            .rows
            .iter()
            .flatten()
            .filter(|r| r.n > 0 && r.repeats.is_empty())
            .count()
            > 1;
        let mut descriptor = Vec::with_capacity(column.rows.len());
        for row in &column.rows {
            descriptor.push(match row {
                Some(r) if r.n > 0 && batched && r.repeats.is_empty() => {
                    Some(self.want_group(&column.metas[r.meta], r))
                }
                Some(r) if r.n > 0 => {
                    let meta = &column.metas[r.meta];
                    let mut key = meta.dataset_id.to_le_bytes().to_vec();
                    key.extend_from_slice(&pack_terms(&r.terms));
                    key.extend_from_slice(&(r.rids.len() as u64).to_le_bytes());
                    key.extend_from_slice(&r.rids);
                    for (k, rr) in &r.repeats {
                        key.extend_from_slice(&k.to_le_bytes());
                        key.extend_from_slice(&(rr.len() as u64).to_le_bytes());
                        key.extend_from_slice(rr);
                    }
                    Some(Slot {
                        descriptor: self.want(key, || Desc::One(sum_descriptor(meta, r))),
                        group: None,
                    })
                }
                _ => None,
            });
        }
        self.columns.push(Pending {
            name: s.name().clone(),
            column,
            descriptor,
        });
        Ok(())
    }

    /// Add a descriptor given as JSON (built by `ghostpii._protocol`, e.g. a `decrypt` or a
    /// `gram`); returns its index in the answers. With `rids` (a rid set's wire encoding), the
    /// descriptor's main rid set is that set, written raw in the request frame when large; `json`
    /// must then hold no `rids`. The JSON is read as a typed descriptor, so a malformed one is
    /// refused here, before anything is sent.
    #[pyo3(signature = (json, rids=None))]
    fn add_descriptor(&mut self, json: String, rids: Option<Vec<u8>>) -> PyResult<usize> {
        let bad = |e: &dyn std::fmt::Display| GhostError::new_err(format!("add_descriptor: {e}"));
        let mut v: serde_json::Value = serde_json::from_str(&json).map_err(|e| bad(&e))?;
        if rids.is_some() {
            let obj = v
                .as_object_mut()
                .ok_or_else(|| bad(&"the descriptor is not a JSON object"))?;
            if obj
                .insert("rids".into(), serde_json::Value::String(String::new()))
                .is_some()
            {
                return Err(bad(&"json must hold no 'rids' when they are given as bytes"));
            }
        }
        let wire: Descriptor<Rids> = serde_json::from_value(v).map_err(|e| bad(&e))?;
        let mut d = wire.map_rids(|r| match r {
            Rids::Base64(b) => B64.decode(b).map_err(|e| bad(&format!("a rid set is not base64: {e}"))),
            Rids::Blob { .. } => Err(bad(&"blob markers are written by the plan, not given")),
        })?;
        let mut key = [b"json:".as_slice(), json.as_bytes()].concat();
        if let Some(rids) = rids {
            key.extend_from_slice(&rids);
            let op = d.op();
            *d.main_rids_mut()
                .ok_or_else(|| bad(&format!("a '{op}' descriptor has no rid set")))? = rids;
        }
        Ok(self.want(key, || Desc::One(d)))
    }

    /// Number of distinct descriptors.
    #[getter]
    fn count(&self) -> usize {
        self.descriptors.len()
    }

    /// The request body of `POST /v1/answer-keys` and its content type: JSON, or the binary
    /// request frame when some rid set is large enough to travel raw.
    fn body<'py>(&self, py: Python<'py>) -> PyResult<(Bound<'py, PyBytes>, &'static str)> {
        let mut b = Body::default();
        let requests = self
            .descriptors
            .iter()
            .map(|d| match d {
                Desc::One(d) => d.map_rids(|r| Ok::<_, std::convert::Infallible>(b.rids(r))),
                Desc::Batch(batch) => Ok(Descriptor::Sums {
                    dataset_id: batch.dataset_id,
                    terms: terms(&batch.terms),
                    groups: batch.groups.iter().map(|g| b.rids(g)).collect(),
                }),
            })
            .collect::<Result<Vec<_>, _>>()
            .unwrap_or_else(|never| match never {});
        let (bytes, content_type) = b.finish(requests)?;
        Ok((PyBytes::new(py, &bytes), content_type))
    }

    /// Apply the keyhost's answers: `(revealed columns, {index: keys bytes} of the JSON
    /// descriptors answered with per-row keys, {index: answer JSON} of those answered with a
    /// list of keys (Gram matrices), None)`, or `([], {}, {}, refusal)` with the first refusal
    /// as `(reason, message, missing_grant JSON)`.
    #[allow(clippy::type_complexity)]
    fn apply<'py>(
        &self,
        py: Python<'py>,
        response: &[u8],
    ) -> PyResult<(
        Vec<PySeries>,
        HashMap<usize, Bound<'py, PyBytes>>,
        HashMap<usize, String>,
        Option<(String, String, Option<String>)>,
    )> {
        let bad = |e: &dyn std::fmt::Display| GhostError::new_err(format!("the keyhost's answer is not valid: {e}"));
        let (answers, blobs): (Answers, Vec<&[u8]>) = if response.starts_with(frame::MAGIC) {
            let (json, blobs) = frame::decode(response).map_err(|e| bad(&e))?;
            (serde_json::from_value(json).map_err(|e| bad(&e))?, blobs)
        } else {
            (serde_json::from_slice(response).map_err(|e| bad(&e))?, Vec::new())
        };
        if answers.results.len() != self.descriptors.len() {
            return Err(GhostError::new_err(format!(
                "the keyhost answered {} of {} answer-key descriptors",
                answers.results.len(),
                self.descriptors.len()
            )));
        }
        if let Some(r) = answers.results.iter().find(|r| !r.ok) {
            let refusal = (
                r.reason.clone().unwrap_or_else(|| "internal".into()),
                r.message.clone().unwrap_or_else(|| "refused".into()),
                r.missing_grant.as_ref().filter(|v| !v.is_null()).map(|v| v.to_string()),
            );
            return Ok((Vec::new(), HashMap::new(), HashMap::new(), Some(refusal)));
        }
        let keys: Vec<Option<u128>> = answers
            .results
            .iter()
            .map(|r| r.key.as_deref().map(str::parse::<u128>).transpose())
            .collect::<Result<_, _>>()
            .map_err(|_| GhostError::new_err("the keyhost returned an answer key that is not a 128-bit integer"))?;
        // the keys of each `sums` batch, 16 bytes a group
        let mut group_keys: HashMap<usize, Vec<u128>> = HashMap::new();
        for (i, d) in self.descriptors.iter().enumerate() {
            let Desc::Batch(b) = d else { continue };
            let raw = answers.results[i]
                .keys
                .as_ref()
                .and_then(|k| key_bytes(k, &blobs))
                .and_then(Result::ok);
            let raw = raw.filter(|r| r.len() == 16 * b.groups.len()).ok_or_else(|| {
                GhostError::new_err("the keyhost's answer to a sums descriptor has no keys for its groups")
            })?;
            let ks = raw
                .chunks_exact(16)
                .map(|c| u128::from_le_bytes(c.try_into().expect("16 bytes")))
                .collect();
            group_keys.insert(i, ks);
        }
        let out = py.detach(|| -> PyResult<Vec<PySeries>> {
            let mut out = Vec::with_capacity(self.columns.len());
            for p in &self.columns {
                let totals: Vec<Option<(i128, u64)>> = p
                    .column
                    .rows
                    .iter()
                    .zip(&p.descriptor)
                    .map(|(row, d)| {
                        let row = row.as_ref()?;
                        let total = match d {
                            Some(Slot {
                                descriptor,
                                group: Some(g),
                            }) => signed(row.masked[0], group_keys[descriptor][*g]),
                            Some(Slot {
                                descriptor,
                                group: None,
                            }) => signed(row.masked[0], keys[*descriptor].unwrap_or(0)),
                            None => 0,
                        };
                        Some((total, row.n))
                    })
                    .collect();
                out.push(PySeries(
                    plaintext(p.name.clone(), &p.column, &totals).map_err(polars_err)?,
                ));
            }
            Ok(out)
        })?;
        let mut extra = HashMap::new();
        let mut lists = HashMap::new();
        for (i, r) in answers.results.iter().enumerate() {
            if group_keys.contains_key(&i) {
                continue;
            }
            match &r.keys {
                Some(k @ (serde_json::Value::String(_) | serde_json::Value::Object(_))) => {
                    let b = key_bytes(k, &blobs)
                        .unwrap_or_else(|| Err("keys of an unknown form".into()))
                        .map_err(|e| GhostError::new_err(format!("the keyhost returned unreadable keys: {e}")))?;
                    extra.insert(i, PyBytes::new(py, &b));
                }
                Some(list @ serde_json::Value::Array(_)) => {
                    let v = serde_json::json!({"keys": list, "dp": r.dp});
                    lists.insert(i, v.to_string());
                }
                Some(_) => {
                    return Err(GhostError::new_err("the keyhost returned keys of an unknown form"));
                }
                None => {}
            }
        }
        Ok((out, extra, lists, None))
    }
}

/// The `sum` descriptors of a sealed column's values, as JSON strings (one per non-empty value,
/// in row order): for tools and tests that talk to the keyhost directly.
#[pyfunction]
pub fn sealed_descriptors(series: PySeries) -> PyResult<Vec<String>> {
    let column = SealedColumn::read(&series.0).map_err(|e| CiphertextError::new_err(e.to_string()))?;
    column
        .rows
        .iter()
        .flatten()
        .filter(|r| r.n > 0)
        .map(|r| {
            let d = sum_descriptor(&column.metas[r.meta], r)
                .map_rids(|rids| Ok::<_, std::convert::Infallible>(Rids::Base64(B64.encode(rids))))
                .unwrap_or_else(|never| match never {});
            serde_json::to_string(&d).map_err(|e| GhostError::new_err(format!("cannot encode a descriptor: {e}")))
        })
        .collect::<PyResult<Vec<String>>>()
}
