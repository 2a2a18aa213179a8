//! `ghost.eq(v)` / `ghost.is_in([...])` over the `match` facet, and the match-token cache.
//!
//! Tokens are fetched like comparison tokens (`tokens.rs`): `lf.ghost.collect(session)` scans
//! the plan (the output-type function records each (column epoch, constant)), fetches every
//! token in the one prefetch request and inserts them here; a kernel that still misses tokens
//! (plain `.collect()`) asks the keyhost through the Rust resolver once for all of them, while other
//! threads wait on the same lock and then find them cached.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use ghostpii_core::det::{MatchToken, TAG_LEN};
use ghostpii_core::meta::{ColumnMeta, Facet, LogicalType};
use ghostpii_proto::descriptor::{Descriptor, MatchConstant, Rids, SearchKind};
use polars::prelude::*;
use polars_arrow::array::BooleanArray;
use polars_arrow::bitmap::Bitmap;
use polars_arrow::datatypes::ArrowDataType;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use rayon::prelude::*;
use serde::Deserialize;

use crate::columns::{meta_of, values, MATCH, RID};

/// A constant as the Python layer sends it: `kind` "text" (`s`), "int" or "date" (`i`).
#[derive(Debug, Clone, Deserialize)]
pub struct MatchValue {
    pub kind: String,
    #[serde(default)]
    pub s: Option<String>,
    #[serde(default)]
    pub i: Option<i64>,
    #[serde(default)]
    pub repr: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MatchKwargs {
    /// "eq" or "is_in".
    pub op: String,
    pub values: Vec<MatchValue>,
}

/// The constant in the column's stored form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Stored {
    Text(String),
    Int(i64),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MatchNeed {
    pub keyhost: String,
    pub dataset_id: i64,
    pub column_id: i64,
    pub epoch: u32,
    pub constant: Stored,
    /// A search token (`search.rs`) instead of a match token: its kind and q-gram length.
    pub search: Option<SearchNeed>,
}

/// The kind ("prefix", "suffix", "substring", "similarity") and q-gram length of a search token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SearchNeed {
    pub kind: SearchKind,
    pub q: u32,
}

impl MatchNeed {
    /// The need of a text constant's search (or similarity) token on the column of `meta`.
    pub fn text(meta: &ColumnMeta, constant: &str, kind: SearchKind, q: u32) -> MatchNeed {
        MatchNeed {
            keyhost: meta.keyhost.clone(),
            dataset_id: meta.dataset_id,
            column_id: meta.column_id,
            epoch: meta.epoch,
            constant: Stored::Text(constant.to_owned()),
            search: Some(SearchNeed { kind, q }),
        }
    }
}

fn hint(meta: &ColumnMeta) -> &'static str {
    match meta.dtype {
        LogicalType::String => "gp.text(match=True)",
        LogicalType::Date => "gp.date(match=True)",
        _ => "gp.integer(match=True)",
    }
}

fn stored(meta: &ColumnMeta, v: &MatchValue, what: &str) -> PolarsResult<Stored> {
    use LogicalType as L;
    let kind = format!("{:?}", meta.dtype).to_lowercase();
    match (meta.dtype, v.kind.as_str(), &v.s, v.i) {
        (L::String, "text", Some(s), _) => Ok(Stored::Text(s.clone())),
        (L::Date, "date", _, Some(i)) => Ok(Stored::Int(i)),
        (L::Int8 | L::Int16 | L::Int32 | L::Int64 | L::UInt8 | L::UInt16 | L::UInt32, "int", _, Some(i))
            if meta.scale == 0 =>
        {
            Ok(Stored::Int(i))
        }
        _ => polars_bail!(InvalidOperation:
            "ghostpii: {what} cannot compare the {kind} column '{}' with the {} constant {}; give a constant of \
             the column's type", meta.column, v.kind, v.repr),
    }
}

struct Plan {
    meta: ColumnMeta,
    needs: Vec<MatchNeed>,
}

fn plan(name: &str, dtype: &DataType, kw: &MatchKwargs) -> PolarsResult<Plan> {
    let what = format!("ghost.{}()", kw.op);
    let meta = meta_of(name, dtype, &what)?;
    if !meta.has(Facet::Match) {
        polars_bail!(InvalidOperation:
            "ghostpii: {what} needs the 'match' facet, but column '{name}' was encrypted without it; encrypt it \
             with {}", hint(&meta));
    }
    if kw.op == "eq" && kw.values.len() != 1 {
        polars_bail!(InvalidOperation: "ghostpii: ghost.eq() takes one constant");
    }
    let mut needs = Vec::with_capacity(kw.values.len());
    for v in &kw.values {
        let n = MatchNeed {
            keyhost: meta.keyhost.clone(),
            dataset_id: meta.dataset_id,
            column_id: meta.column_id,
            epoch: meta.epoch,
            constant: stored(&meta, v, &what)?,
            search: None,
        };
        if !needs.contains(&n) {
            needs.push(n);
        }
    }
    Ok(Plan { meta, needs })
}

pub fn field(inputs: &[Field], kw: &MatchKwargs) -> PolarsResult<Field> {
    let f = inputs
        .first()
        .ok_or_else(|| polars_err!(ComputeError: "ghostpii: ghost.eq takes one column"))?;
    let p = plan(f.name(), f.dtype(), kw)?;
    note(&p.needs);
    Ok(Field::new(f.name().clone(), DataType::Boolean))
}

pub fn kernel(s: &Series, kw: &MatchKwargs) -> PolarsResult<Series> {
    let p = plan(s.name(), s.dtype(), kw)?;
    let binding = p.meta.binding();
    let toks = if p.needs.is_empty() {
        Vec::new()
    } else {
        resolve(&p.needs).map_err(|e| polars_err!(ComputeError: "ghostpii: {e}"))?
    };
    let toks = toks
        .iter()
        .map(|t| MatchToken::parse(t, &binding).map_err(|e| polars_err!(ComputeError: "ghostpii: {e}")))
        .collect::<PolarsResult<Vec<_>>>()?;
    let storage = s.to_storage();
    let corrupt = |w: &str| polars_err!(ComputeError: "ghostpii: column '{}' is corrupt: {w}", s.name());
    let st = storage.struct_().map_err(|_| corrupt("its storage is not a struct"))?;
    let rid = st.field_by_name(RID).map_err(|_| corrupt("no rid field"))?;
    let rid = rid.u64().map_err(|_| corrupt("rid is not u64"))?.rechunk().into_owned();
    let tags = st.field_by_name(MATCH).map_err(|_| corrupt("no match field"))?;
    let tags = tags
        .binary()
        .map_err(|_| corrupt("match is not binary"))?
        .rechunk()
        .into_owned();
    let tags = tags.downcast_as_array();
    let rids = values(&rid);
    let valid = storage.is_not_null().rechunk().into_owned();
    let valid = valid.downcast_as_array().values().clone();
    const CHUNK: usize = 1 << 14;
    let n = rids.len();
    let parts: Vec<Vec<bool>> = (0..n.div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| {
            let (lo, hi) = (c * CHUNK, ((c + 1) * CHUNK).min(n));
            let mut hit = vec![false; hi - lo];
            let mut expect: Vec<[u8; TAG_LEN]> = Vec::with_capacity(hi - lo);
            for t in &toks {
                expect.clear();
                t.tags_into(&rids[lo..hi], &mut expect);
                for (k, e) in expect.iter().enumerate() {
                    let i = lo + k;
                    // constant time per row; a null row has no tag and stays false (masked below)
                    hit[k] |= valid.get_bit(i) && ghostpii_core::det::tag_eq(e, tags.value(i));
                }
            }
            hit
        })
        .collect();
    let bits: Bitmap = parts.into_iter().flatten().collect();
    let validity = (valid.unset_bits() > 0).then_some(valid);
    let arr = BooleanArray::new(ArrowDataType::Boolean, bits, validity);
    Ok(BooleanChunked::with_chunk(s.name().clone(), arr).into_series())
}

// -- token cache ------------------------------------------------------------------------------

fn cache() -> &'static Mutex<HashMap<MatchNeed, Vec<u8>>> {
    static C: OnceLock<Mutex<HashMap<MatchNeed, Vec<u8>>>> = OnceLock::new();
    C.get_or_init(Default::default)
}

fn scan() -> &'static Mutex<Option<Vec<MatchNeed>>> {
    static S: OnceLock<Mutex<Option<Vec<MatchNeed>>>> = OnceLock::new();
    S.get_or_init(Default::default)
}

fn fetch_lock() -> &'static Mutex<()> {
    static L: OnceLock<Mutex<()>> = OnceLock::new();
    L.get_or_init(Default::default)
}

pub(crate) fn note(needs: &[MatchNeed]) {
    if let Ok(mut s) = scan().lock() {
        if let Some(v) = s.as_mut() {
            v.extend(needs.iter().cloned());
        }
    }
}

fn cached(needs: &[MatchNeed]) -> Option<Vec<Vec<u8>>> {
    let c = cache().lock().ok()?;
    needs.iter().map(|n| c.get(n).cloned()).collect()
}

pub(crate) fn resolve(needs: &[MatchNeed]) -> Result<Vec<Vec<u8>>, String> {
    if let Some(t) = cached(needs) {
        return Ok(t);
    }
    let _one_fetch_at_a_time = fetch_lock()
        .lock()
        .map_err(|_| "match token lock poisoned".to_string())?;
    if let Some(t) = cached(needs) {
        return Ok(t);
    }
    let missing: Vec<MatchNeed> = {
        let c = cache().lock().map_err(|_| "match token cache poisoned".to_string())?;
        needs.iter().filter(|n| !c.contains_key(n)).cloned().collect()
    };
    let got = fetch(&missing)?;
    if got.len() != missing.len() {
        return Err("keyhost returned too few match tokens".into());
    }
    {
        let mut c = cache().lock().map_err(|_| "match token cache poisoned".to_string())?;
        for (n, t) in missing.into_iter().zip(got) {
            c.insert(n, t);
        }
    }
    cached(needs).ok_or_else(|| "match token was not fetched".into())
}

fn need_to_py<'py>(py: Python<'py>, n: &MatchNeed) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("keyhost", &n.keyhost)?;
    d.set_item("dataset_id", n.dataset_id)?;
    d.set_item("column_id", n.column_id)?;
    d.set_item("epoch", n.epoch)?;
    let c = PyDict::new(py);
    match &n.constant {
        Stored::Text(s) => c.set_item("text", s)?,
        Stored::Int(i) => c.set_item("int", i)?,
    }
    d.set_item("constant", c)?;
    if let Some(sn) = &n.search {
        let x = PyDict::new(py);
        x.set_item("kind", sn.kind.as_str())?;
        x.set_item("q", sn.q)?;
        d.set_item("search", x)?;
    }
    Ok(d)
}

fn need_from_py(d: &Bound<'_, PyAny>) -> PyResult<MatchNeed> {
    let c = d.get_item("constant")?;
    let constant = match c.get_item("text") {
        Ok(t) => Stored::Text(t.extract()?),
        Err(_) => Stored::Int(c.get_item("int")?.extract()?),
    };
    let search = match d.get_item("search") {
        Ok(x) if !x.is_none() => {
            let kind: String = x.get_item("kind")?.extract()?;
            let kind = match kind.as_str() {
                "prefix" => SearchKind::Prefix,
                "suffix" => SearchKind::Suffix,
                "substring" => SearchKind::Substring,
                "similarity" => SearchKind::Similarity,
                _ => {
                    return Err(pyo3::exceptions::PyValueError::new_err(format!(
                        "unknown search kind {kind:?}"
                    )))
                }
            };
            Some(SearchNeed {
                kind,
                q: x.get_item("q")?.extract()?,
            })
        }
        _ => None,
    };
    Ok(MatchNeed {
        search,
        keyhost: d.get_item("keyhost")?.extract()?,
        dataset_id: d.get_item("dataset_id")?.extract()?,
        column_id: d.get_item("column_id")?.extract()?,
        epoch: d.get_item("epoch")?.extract()?,
        constant,
    })
}

/// Match tokens through the keyhosts' active sessions (Rust resolver): one request per keyhost.
fn fetch(needs: &[MatchNeed]) -> Result<Vec<Vec<u8>>, String> {
    crate::resolver::fetch_tokens(needs, |n| &n.keyhost, descriptor)
}

/// Start recording the match tokens a plan needs.
pub fn begin_scan() {
    if let Ok(mut s) = scan().lock() {
        *s = Some(Vec::new());
    }
}

/// Stop recording; the needs not already cached (deduplicated, in order).
pub fn end_scan() -> Vec<MatchNeed> {
    let needs = scan().lock().ok().and_then(|mut s| s.take()).unwrap_or_default();
    let Ok(c) = cache().lock() else {
        return needs;
    };
    let mut seen = std::collections::HashSet::new();
    needs
        .into_iter()
        .filter(|n| !c.contains_key(n) && seen.insert(n.clone()))
        .collect()
}

/// Cache fetched match tokens (same order as the needs).
pub fn insert(needs: &[MatchNeed], tokens: Vec<Vec<u8>>) {
    if let Ok(mut c) = cache().lock() {
        for (n, t) in needs.iter().zip(tokens) {
            c.insert(n.clone(), t);
        }
    }
}

/// The needs as Python dicts (what `PlannedTokens` ships to distributed workers).
pub fn needs_to_py<'py>(py: Python<'py>, needs: &[MatchNeed]) -> PyResult<Bound<'py, PyList>> {
    let out = PyList::empty(py);
    for n in needs {
        out.append(need_to_py(py, n)?)?;
    }
    Ok(out)
}

/// The match descriptor of a need, or the search descriptor of a search need.
pub fn descriptor(n: &MatchNeed) -> Descriptor<Rids> {
    if let (Some(sn), Stored::Text(t)) = (&n.search, &n.constant) {
        return Descriptor::Search {
            dataset_id: n.dataset_id,
            column_id: n.column_id,
            epoch: n.epoch,
            kind: sn.kind,
            constant: t.clone(),
            q: sn.q,
        };
    }
    Descriptor::Match {
        dataset_id: n.dataset_id,
        column_id: n.column_id,
        epoch: n.epoch,
        constant: match &n.constant {
            Stored::Text(t) => MatchConstant::Text(t.clone()),
            Stored::Int(i) => MatchConstant::Int(*i),
        },
    }
}

/// Insert fetched match tokens (same order as the needs).
#[pyfunction]
pub fn insert_match_tokens(needs: Vec<Bound<'_, PyAny>>, tokens: Vec<Vec<u8>>) -> PyResult<()> {
    let needs = needs.iter().map(need_from_py).collect::<PyResult<Vec<_>>>()?;
    insert(&needs, tokens);
    Ok(())
}

/// Forget every cached match token.
#[pyfunction]
pub fn clear_match_tokens() {
    if let Ok(mut c) = cache().lock() {
        c.clear();
    }
}
