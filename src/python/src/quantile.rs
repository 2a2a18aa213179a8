//! Quantiles over the `ord` facet: `ghost.quantile(q)` seals, per group, the order cells of its
//! non-null rows; revealing runs a search with comparison tokens for all sealed quantiles of a
//! frame together, one keyhost request per round whatever the number of groups.
//!
//! Search (per group and rank): a window `[lo, hi]` of order-domain positions known to hold the
//! value of rank `t` and the number of rows below it. Each round places `k = 2^b − 1` evenly
//! spaced constants in every open window (`b = ⌈log2(width) / rounds left⌉`, so a search ends
//! within the round budget), buckets the window's rows by comparing each with the constants (a
//! binary search, `b` comparisons a row), counts the buckets locally and keeps the bucket that
//! holds rank `t`. A window of width 1 is the exact value. Constants are a function of the window
//! only, so repeating a query asks for the same tokens.

use std::collections::HashMap;

use ghostpii_core::meta::{ColumnMeta, Facet};
use ghostpii_core::{OreParams, OreToken};
use polars::prelude::*;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use pyo3_polars::PySeries;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::columns::{require_facet, EncryptedCells};
use crate::errors::{CiphertextError, GhostError};

/// The interpolation methods of Polars' `quantile`.
pub const METHODS: [&str; 6] = ["nearest", "lower", "higher", "midpoint", "linear", "equiprobable"];

#[derive(Debug, Clone, Deserialize)]
pub struct QuantileKwargs {
    pub q: f64,
    pub method: String,
}

#[derive(Serialize, Deserialize)]
struct Header {
    meta: ColumnMeta,
    q: f64,
    method: String,
    /// Non-null rows (their order cells follow the header) and null rows of the group.
    n: u64,
    nulls: u64,
}

pub fn check(meta: &ColumnMeta, kw: &QuantileKwargs) -> PolarsResult<OreParams> {
    let what = "ghost.quantile()";
    if !(0.0..=1.0).contains(&kw.q) {
        polars_bail!(InvalidOperation: "ghostpii: {what}: the quantile must be in [0, 1], got {}", kw.q);
    }
    if !METHODS.contains(&kw.method.as_str()) {
        polars_bail!(InvalidOperation: "ghostpii: {what}: interpolation must be one of {METHODS:?}, got '{}'", kw.method);
    }
    if !meta.has(Facet::Ord) {
        polars_bail!(InvalidOperation:
            "ghostpii: {what} needs the 'ord' facet, but column '{}' was encrypted without it; encrypt it with \
             compare=True (e.g. gp.number(..., compare=True), gp.date(compare=True))", meta.column);
    }
    require_facet(meta, Facet::Ord, what)?;
    meta.ord.ok_or_else(
        || polars_err!(ComputeError: "ghostpii: column '{}' has the ord facet but no order domain", meta.column),
    )
}

/// Seal the quantile of one group: its order cells and what to compute.
pub fn seal(s: &Series, kw: &QuantileKwargs) -> PolarsResult<Series> {
    let cells = EncryptedCells::from_series(s, "ghost.quantile()")?;
    let params = check(&cells.meta, kw)?;
    let ord = cells.ord.as_ref().expect("ord facet checked");
    let valid = cells.valid.downcast_as_array().values().clone();
    let arr = ord.downcast_as_array();
    let n = valid.set_bits();
    let width = params.ct_len();
    let header = Header {
        meta: cells.meta.clone(),
        q: kw.q,
        method: kw.method.clone(),
        n: n as u64,
        nulls: (cells.len() - n) as u64,
    };
    let mut ord_cells = Vec::with_capacity(n * width);
    for i in 0..arr.len() {
        if valid.get_bit(i) {
            let ct = arr.value(i);
            if ct.len() != width {
                polars_bail!(ComputeError: "ghostpii: column '{}' is corrupt: row {i}: ord cell of {} bytes", cells.meta.column, ct.len());
            }
            ord_cells.extend_from_slice(ct);
        }
    }
    sealed_value(s.name().clone(), &header, &ord_cells)
}

/// One sealed quantile value: the label and the payload (header length, header JSON, cells).
fn sealed_value(name: PlSmallStr, header: &Header, cells: &[u8]) -> PolarsResult<Series> {
    let (label, payload) = label_and_payload(header, cells)?;
    let label = Series::new("label".into(), [label]);
    let payload = Series::new("payload".into(), [payload]);
    Ok(StructChunked::from_series(name, 1, [label, payload].iter())?.into_series())
}

fn label_and_payload(header: &Header, cells: &[u8]) -> PolarsResult<(String, Vec<u8>)> {
    let json = serde_json::to_vec(header).map_err(|e| polars_err!(ComputeError: "ghostpii: {e}"))?;
    let mut payload = Vec::with_capacity(4 + json.len() + cells.len());
    payload.extend_from_slice(&(json.len() as u32).to_le_bytes());
    payload.extend_from_slice(&json);
    payload.extend_from_slice(cells);
    let rows = if header.n == 1 { "row" } else { "rows" };
    let label = format!(
        "<sealed quantile({}, {}, {}) over {} {rows}>",
        header.meta.column,
        header.q,
        header.method,
        ghostpii_core::sealed::thousands(header.n)
    );
    Ok((label, payload))
}

/// The header and the order cells of a sealed quantile's payload (`None`: corrupt).
fn split_payload(payload: &[u8]) -> Option<(Header, &[u8])> {
    let len = u32::from_le_bytes(payload.get(..4)?.try_into().ok()?) as usize;
    let header: Header = serde_json::from_slice(payload.get(4..4usize.checked_add(len)?)?).ok()?;
    let cells = &payload[4 + len..];
    let width = header.meta.ord?.ct_len() as u64;
    (cells.len() as u64 == header.n.checked_mul(width)?).then_some((header, cells))
}

/// The partials of one group merged: the same column, quantile and interpolation; the order
/// cells of every partial, and their row and null counts added (`None`: all partials null).
fn merge_partials<'a>(payloads: impl Iterator<Item = Option<&'a [u8]>>) -> PolarsResult<Option<(Header, Vec<u8>)>> {
    let mut merged: Option<Header> = None;
    let mut cells = Vec::new();
    for p in payloads.flatten() {
        let (h, c) =
            split_payload(p).ok_or_else(|| polars_err!(ComputeError: "ghostpii: a sealed quantile is corrupt"))?;
        match &mut merged {
            None => merged = Some(h),
            Some(m) => {
                if m.meta.to_json() != h.meta.to_json() || m.q != h.q || m.method != h.method {
                    polars_bail!(ComputeError:
                        "ghostpii: cannot merge sealed quantile({}, {}, {}) with quantile({}, {}, {})",
                        m.meta.column, m.q, m.method, h.meta.column, h.q, h.method);
                }
                m.n += h.n;
                m.nulls += h.nulls;
            }
        }
        cells.extend_from_slice(c);
    }
    Ok(merged.map(|h| (h, cells)))
}

/// `gp.dask.merge_quantiles(col)`: one sealed quantile per group from its partials (one per
/// worker), every group in ONE kernel call over `expr.implode()`, in parallel. Nothing is
/// revealed.
#[pyo3_polars::derive::polars_expr(output_type_func=merge_quantile_field)]
fn ghost_merge_quantile_groups(inputs: &[Series]) -> PolarsResult<Series> {
    let s = inputs
        .first()
        .ok_or_else(|| polars_err!(ComputeError: "ghostpii: merge_quantiles takes one column"))?;
    let Some(crate::merge::Imploded { offsets, valid, inner }) = crate::merge::imploded(s)? else {
        return Ok(Series::new_empty(s.name().clone(), &quantile_storage()));
    };
    let storage = inner.to_storage();
    let payloads = storage.struct_()?.field_by_name("payload")?;
    let payloads = payloads.binary()?;
    let merged: Vec<Option<(String, Vec<u8>)>> = offsets
        .par_windows(2)
        .zip(valid.par_iter())
        .map(|(w, &ok)| {
            let group = ok.then(|| (w[0]..w[1]).map(|i| payloads.get(i)));
            match group.map(merge_partials).transpose()?.flatten() {
                Some((h, cells)) => label_and_payload(&h, &cells).map(Some),
                None => Ok(None),
            }
        })
        .collect::<PolarsResult<_>>()?;
    let validity: polars_arrow::bitmap::Bitmap = merged.iter().map(Option::is_some).collect();
    let (labels, payloads): (Vec<Option<String>>, Vec<Option<Vec<u8>>>) = merged.into_iter().map(Option::unzip).unzip();
    let fields = [
        Series::new("label".into(), labels),
        Series::new("payload".into(), payloads),
    ];
    let ca = StructChunked::from_series(s.name().clone(), validity.len(), fields.iter())?;
    Ok(ca.with_outer_validity(Some(validity)).into_series())
}

fn merge_quantile_field(inputs: &[Field]) -> PolarsResult<Field> {
    let f = inputs
        .first()
        .ok_or_else(|| polars_err!(ComputeError: "ghostpii: merge_quantiles takes one column"))?;
    Ok(Field::new(f.name().clone(), quantile_storage()))
}

/// The storage of `ghostpii.sealed_quantile`: a label and the order cells' payload.
fn quantile_storage() -> DataType {
    DataType::Struct(vec![
        Field::new("label".into(), DataType::String),
        Field::new("payload".into(), DataType::Binary),
    ])
}

/// Polars' `quantile_idx`: the (lower, upper) indices among the sorted values (nulls first)
/// and the fractional index, for `n` non-null and `nulls` null values.
fn polars_index(q: f64, n: u64, nulls: u64, method: &str) -> (u64, f64, u64) {
    let length = n + nulls;
    let float_idx = (n as f64 - 1.0) * q + nulls as f64;
    let base = match method {
        "nearest" => {
            let i = float_idx.round() as u64;
            return (i, 0.0, i);
        }
        "higher" => float_idx.ceil() as u64,
        "equiprobable" => ((n as f64 * q).ceil() - 1.0).max(0.0) as u64 + nulls,
        _ => float_idx as u64,
    };
    (
        base.min(length - 1),
        float_idx,
        (float_idx.ceil() as u64).min(length - 1),
    )
}

struct Window {
    search: usize,
    lo: u64,
    hi: u64,
    /// Rows (indices into the search's cells) inside the window.
    rows: Vec<u32>,
    /// Ranks (among the non-null values) whose value lies in the window.
    ranks: Vec<u64>,
    /// Rows of the search below `lo`.
    below: u64,
}

struct Search {
    meta: ColumnMeta,
    params: OreParams,
    binding: String,
    cells: Vec<u8>,
    width: usize,
    q: f64,
    method: String,
    n: u64,
    nulls: u64,
    /// Found values (domain positions) by rank.
    found: HashMap<u64, u64>,
}

/// The searches of every sealed quantile of a frame, advanced round by round.
#[pyclass(module = "ghostpii._internal")]
pub struct QuantileSearch {
    searches: Vec<Option<Search>>,
    windows: Vec<Window>,
    rounds_left: u32,
    /// The constants of the current round per window (domain positions).
    constants: Vec<Vec<u64>>,
    /// The needs of the current round: (search, constant as stored integer).
    needs: Vec<(usize, i64)>,
}

fn parse(payload: &[u8]) -> PyResult<Search> {
    let bad = || CiphertextError::new_err("a sealed quantile is corrupt");
    let (header, cells) = split_payload(payload).ok_or_else(bad)?;
    let params = header.meta.ord.ok_or_else(bad)?;
    let cells = cells.to_vec();
    let width = params.ct_len();
    Ok(Search {
        binding: header.meta.binding(),
        meta: header.meta,
        params,
        cells,
        width,
        q: header.q,
        method: header.method,
        n: header.n,
        nulls: header.nulls,
        found: HashMap::new(),
    })
}

fn bits(width: u64) -> u32 {
    64 - (width - 1).leading_zeros()
}

#[pymethods]
impl QuantileSearch {
    /// Start the searches of `payloads` (None: a null sealed value) within `rounds` rounds.
    #[new]
    fn new(payloads: Vec<Option<Vec<u8>>>, rounds: u32) -> PyResult<Self> {
        if rounds == 0 {
            return Err(GhostError::new_err("a quantile search needs at least one round"));
        }
        let mut searches = Vec::with_capacity(payloads.len());
        let mut windows = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            let Some(p) = p else {
                searches.push(None);
                continue;
            };
            let s = parse(p)?;
            if s.n > 0 {
                let (a, _, b) = polars_index(s.q, s.n, s.nulls, &s.method);
                let mut ranks = vec![a - s.nulls, b - s.nulls];
                ranks.dedup();
                let full = if s.params.bits == 64 {
                    u64::MAX
                } else {
                    (1u64 << s.params.bits) - 1
                };
                windows.push(Window {
                    search: i,
                    lo: 0,
                    hi: full,
                    rows: (0..s.n as u32).collect(),
                    ranks,
                    below: 0,
                });
            }
            searches.push(Some(s));
        }
        let mut out = QuantileSearch {
            searches,
            windows,
            rounds_left: rounds,
            constants: Vec::new(),
            needs: Vec::new(),
        };
        out.settle();
        Ok(out)
    }

    /// The comparison tokens the next round needs (empty: the search is done), as the token
    /// fetcher takes them: keyhost, dataset_id, column_id, epoch, constant.
    fn needs<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.constants.clear();
        self.needs.clear();
        let mut seen = std::collections::HashSet::new();
        for w in &self.windows {
            let span = (w.hi - w.lo) as u128 + 1;
            let b = bits(w.hi - w.lo + 1).div_ceil(self.rounds_left.max(1)).max(1);
            if b > 16 {
                return Err(GhostError::new_err(
                    "the quantile search cannot finish within the keyhost round trips left for this query",
                ));
            }
            let k = ((1u128 << b) - 1).min(span - 1);
            let cs: Vec<u64> = (1..=k).map(|i| w.lo + (i * span / (k + 1)) as u64).collect();
            let s = self.searches[w.search].as_ref().expect("open window of a search");
            for &c in &cs {
                let stored = (s.params.offset as i128 + c as i128) as i64;
                if seen.insert((s.binding.clone(), stored)) {
                    self.needs.push((w.search, stored));
                }
            }
            self.constants.push(cs);
        }
        let out = PyList::empty(py);
        for &(i, c) in &self.needs {
            let m = &self.searches[i].as_ref().expect("search").meta;
            let d = PyDict::new(py);
            d.set_item("keyhost", &m.keyhost)?;
            d.set_item("dataset_id", m.dataset_id)?;
            d.set_item("column_id", m.column_id)?;
            d.set_item("epoch", m.epoch)?;
            d.set_item("constant", c)?;
            d.set_item("column", &m.column)?;
            out.append(d)?;
        }
        Ok(out)
    }

    /// Run one round with the tokens of `needs()` (same order).
    fn advance(&mut self, py: Python<'_>, tokens: Vec<Vec<u8>>) -> PyResult<()> {
        if tokens.len() != self.needs.len() {
            return Err(GhostError::new_err(
                "the keyhost returned another number of tokens than asked for",
            ));
        }
        let mut parsed: HashMap<(String, i64), OreToken> = HashMap::new();
        for (&(i, c), t) in self.needs.iter().zip(&tokens) {
            let s = self.searches[i].as_ref().expect("search");
            let tok = OreToken::parse(t, &s.binding).map_err(|e| CiphertextError::new_err(e.to_string()))?;
            if tok.nblocks() != s.params.nblocks() {
                return Err(CiphertextError::new_err(
                    "token does not match the column's order domain",
                ));
            }
            parsed.insert((s.binding.clone(), c), tok);
        }
        let windows = std::mem::take(&mut self.windows);
        let constants = std::mem::take(&mut self.constants);
        let searches = &self.searches;
        let next: PyResult<Vec<Vec<Window>>> = py.detach(|| {
            windows
                .into_par_iter()
                .zip(constants)
                .map(|(w, cs)| split(searches[w.search].as_ref().expect("search"), &parsed, w, &cs))
                .collect()
        });
        self.windows = next?.into_iter().flatten().collect();
        self.rounds_left = self.rounds_left.saturating_sub(1);
        self.settle();
        Ok(())
    }

    /// Whether every search has ended.
    fn done(&self) -> bool {
        self.windows.is_empty()
    }

    /// Float64 per payload in the column's units (days for dates, ticks for datetimes); null
    /// for null payloads and groups without non-null rows.
    fn results(&self) -> PyResult<PySeries> {
        if !self.done() {
            return Err(GhostError::new_err("the quantile search has not ended"));
        }
        let vals: Vec<Option<f64>> = self.searches.iter().map(|s| s.as_ref().and_then(value)).collect();
        Ok(PySeries(
            Float64Chunked::from_iter_options("quantile".into(), vals.into_iter()).into_series(),
        ))
    }
}

impl QuantileSearch {
    /// Close windows of width 1: their ranks are found.
    fn settle(&mut self) {
        let mut open = Vec::with_capacity(self.windows.len());
        for w in std::mem::take(&mut self.windows) {
            if w.lo == w.hi {
                let s = self.searches[w.search].as_mut().expect("search");
                for r in w.ranks {
                    s.found.insert(r, w.lo);
                }
            } else {
                open.push(w);
            }
        }
        self.windows = open;
    }
}

/// Bucket the window's rows by the constants and keep the buckets holding its ranks.
fn split(s: &Search, tokens: &HashMap<(String, i64), OreToken>, w: Window, cs: &[u64]) -> PyResult<Vec<Window>> {
    let toks: Vec<&OreToken> = cs
        .iter()
        .map(|&c| &tokens[&(s.binding.clone(), (s.params.offset as i128 + c as i128) as i64)])
        .collect();
    let bucket_of = |row: u32| -> PyResult<usize> {
        let ct = &s.cells[row as usize * s.width..(row as usize + 1) * s.width];
        let (mut lo, mut hi) = (0usize, toks.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            let o = toks[mid]
                .compare(ct)
                .map_err(|e| CiphertextError::new_err(format!("column '{}' is corrupt: {e}", s.meta.column)))?;
            if o != std::cmp::Ordering::Greater {
                lo = mid + 1; // constant ≤ value
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    };
    let buckets: Vec<usize> = w
        .rows
        .par_iter()
        .with_min_len(1024)
        .map(|&r| bucket_of(r))
        .collect::<PyResult<_>>()?;
    let mut counts = vec![0u64; cs.len() + 1];
    for &b in &buckets {
        counts[b] += 1;
    }
    let mut out: Vec<Window> = Vec::new();
    let mut start = w.below;
    for (j, &cnt) in counts.iter().enumerate() {
        let ranks: Vec<u64> = w
            .ranks
            .iter()
            .copied()
            .filter(|&r| r >= start && r < start + cnt)
            .collect();
        if !ranks.is_empty() {
            out.push(Window {
                search: w.search,
                lo: if j == 0 { w.lo } else { cs[j - 1] },
                hi: if j == cs.len() { w.hi } else { cs[j] - 1 },
                rows: w
                    .rows
                    .iter()
                    .zip(&buckets)
                    .filter(|(_, &b)| b == j)
                    .map(|(&r, _)| r)
                    .collect(),
                ranks,
                below: start,
            });
        }
        start += cnt;
    }
    Ok(out)
}

/// The quantile of a finished search, as Polars computes it from the sorted values.
fn value(s: &Search) -> Option<f64> {
    if s.n == 0 {
        return None;
    }
    let scale = 10f64.powi(s.meta.scale as i32);
    let at = |i: u64| -> f64 {
        let u = s.found[&(i - s.nulls)];
        (s.params.offset as i128 + u as i128) as f64 / scale
    };
    let (a, float_idx, b) = polars_index(s.q, s.n, s.nulls, &s.method);
    let (lower, upper) = (at(a), at(b));
    Some(match s.method.as_str() {
        "midpoint" if lower != upper => (lower + upper) / 2.0,
        "linear" if lower != upper => (float_idx - a as f64) * (upper - lower) + lower,
        _ => lower,
    })
}

/// Output field of `ghost.quantile()`: checked when the plan is built.
pub fn field(inputs: &[Field], kw: &QuantileKwargs) -> PolarsResult<Field> {
    let f = inputs
        .first()
        .ok_or_else(|| polars_err!(ComputeError: "ghostpii: ghost.quantile() takes one column"))?;
    let meta = crate::columns::meta_of(f.name(), f.dtype(), "ghost.quantile()")?;
    check(&meta, kw)?;
    Ok(Field::new(f.name().clone(), quantile_storage()))
}

fn quantile_field(inputs: &[Field], kwargs: QuantileKwargs) -> PolarsResult<Field> {
    field(inputs, &kwargs)
}

/// `ghost.quantile(q, interpolation)`: the sealed order cells of the group's non-null rows.
#[pyo3_polars::derive::polars_expr(output_type_func_with_kwargs=quantile_field)]
fn ghost_quantile(inputs: &[Series], kwargs: QuantileKwargs) -> PolarsResult<Series> {
    let s = inputs
        .first()
        .ok_or_else(|| polars_err!(ComputeError: "ghostpii: ghost.quantile() takes one column"))?;
    seal(s, &kwargs)
}
