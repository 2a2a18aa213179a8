//! Revealing sealed columns in Rust: the answer-key request body of every sealed value of a frame
//! (deduplicated), and the plaintext columns from the keyhost's answers. Python only sends the
//! bytes: no per-group Python, no JSON of groups in Python.

use std::collections::HashMap;

use ghostpii_core::meta::{ColumnMeta, LogicalType};
use ghostpii_core::sealed::SealedOp;
use ghostpii_core::sealed_format::pack_terms;
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
    terms: Vec<ghostpii_core::sealed_format::SealedTerm>,
    /// Each distinct rid set (wire encoding) once, in first-seen order.
    groups: PlIndexSet<Vec<u8>>,
}

/// A descriptor of the request: JSON built already, or a `sums` batch (built last).
enum Desc {
    Json(String),
    Batch(Batch),
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

fn descriptor_json(meta: &ColumnMeta, row: &Row) -> String {
    let mut d = String::with_capacity(96 + row.rids.len() * 4 / 3);
    d.push_str("{\"op\":\"sum\",\"dataset_id\":");
    d.push_str(&meta.dataset_id.to_string());
    d.push_str(",\"rids\":\"");
    B64.encode_string(&row.rids, &mut d);
    d.push_str("\",\"terms\":");
    terms_json(&mut d, &row.terms);
    if !row.repeats.is_empty() {
        d.push_str(",\"repeats\":[");
        for (i, (k, r)) in row.repeats.iter().enumerate() {
            if i > 0 {
                d.push(',');
            }
            d.push_str(&format!("{{\"k\":{k},\"rids\":\""));
            B64.encode_string(r, &mut d);
            d.push_str("\"}");
        }
        d.push(']');
    }
    d.push('}');
    d
}

impl RevealPlan {
    fn want(&mut self, key: Vec<u8>, json: impl FnOnce() -> String) -> usize {
        if let Some(&i) = self.index.get(&key) {
            return i;
        }
        let i = self.descriptors.len();
        self.descriptors.push(Desc::Json(json()));
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

fn terms_json(d: &mut String, terms: &[ghostpii_core::sealed_format::SealedTerm]) {
    d.push('[');
    for (i, t) in terms.iter().enumerate() {
        if i > 0 {
            d.push(',');
        }
        d.push_str(&format!(
            "{{\"column_id\":{},\"epoch\":{},\"weight\":{}}}",
            t.column_id, t.epoch, t.weight
        ));
    }
    d.push(']');
}

fn batch_json(b: &Batch) -> String {
    let mut d = String::with_capacity(96 + b.groups.iter().map(|g| g.len() * 4 / 3 + 4).sum::<usize>());
    d.push_str("{\"op\":\"sums\",\"dataset_id\":");
    d.push_str(&b.dataset_id.to_string());
    d.push_str(",\"terms\":");
    terms_json(&mut d, &b.terms);
    d.push_str(",\"groups\":[");
    for (i, g) in b.groups.iter().enumerate() {
        if i > 0 {
            d.push(',');
        }
        d.push('"');
        B64.encode_string(g, &mut d);
        d.push('"');
    }
    d.push_str("]}");
    d
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
                        descriptor: self.want(key, || descriptor_json(meta, r)),
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

    /// Add a descriptor given as JSON (e.g. a `decrypt`); returns its index in the answers.
    fn add_descriptor(&mut self, json: String) -> usize {
        let key = [b"json:".as_slice(), json.as_bytes()].concat();
        self.want(key, || json)
    }

    /// Number of distinct descriptors.
    #[getter]
    fn count(&self) -> usize {
        self.descriptors.len()
    }

    /// The request body of `POST /v1/answer-keys`.
    fn body<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let parts: Vec<std::borrow::Cow<'_, str>> = self
            .descriptors
            .iter()
            .map(|d| match d {
                Desc::Json(j) => std::borrow::Cow::Borrowed(j.as_str()),
                Desc::Batch(b) => std::borrow::Cow::Owned(batch_json(b)),
            })
            .collect();
        let len: usize = parts.iter().map(|d| d.len() + 1).sum();
        let mut b = String::with_capacity(len + 16);
        b.push_str("{\"requests\":[");
        for (i, d) in parts.iter().enumerate() {
            if i > 0 {
                b.push(',');
            }
            b.push_str(d);
        }
        b.push_str("]}");
        PyBytes::new(py, b.as_bytes())
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
        let answers: Answers = serde_json::from_slice(response)
            .map_err(|e| GhostError::new_err(format!("the keyhost's answer is not valid: {e}")))?;
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
            let raw = match &answers.results[i].keys {
                Some(serde_json::Value::String(k)) => B64.decode(k).ok(),
                _ => None,
            };
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
                Some(serde_json::Value::String(k)) => {
                    let b = B64.decode(k).map_err(|e| {
                        GhostError::new_err(format!("the keyhost returned keys that are not base64: {e}"))
                    })?;
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
    Ok(column
        .rows
        .iter()
        .flatten()
        .filter(|r| r.n > 0)
        .map(|r| descriptor_json(&column.metas[r.meta], r))
        .collect())
}
