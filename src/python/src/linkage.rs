//! `gp.link`: unseal the `fuzzy` encodings of both sides with keyhost-issued seeds, OR the
//! fields of a row into one record encoding, and link by Dice similarity (`ghostpii_core::clk`).
//! Also the plaintext bigram-Dice baseline that the tests and benchmarks compare with.

use std::collections::HashSet;

use ghostpii_core::clk::{self, Filter};
use ghostpii_core::meta::{ColumnMeta, Facet};
use ghostpii_core::RidSet;
use polars::prelude::*;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3_polars::PySeries;
use rayon::prelude::*;

use crate::columns::{meta_of, values, FUZZY, RID};
use crate::errors::{polars_err, CiphertextError, GhostError};

type Pairs = (Vec<u32>, Vec<u32>, Vec<f64>);

struct FuzzyCells {
    meta: ColumnMeta,
    rids: Vec<u64>,
    cells: BinaryChunked,
    valid: Vec<bool>,
}

fn cells_of(s: &Series) -> PyResult<FuzzyCells> {
    let meta = meta_of(s.name(), s.dtype(), "gp.link").map_err(polars_err)?;
    if !meta.has(Facet::Fuzzy) {
        return Err(GhostError::new_err(format!(
            "gp.link needs the 'fuzzy' facet, but column '{}' was encrypted without it; encrypt it with \
             gp.text(fuzzy=True, join_domain=...)",
            meta.column
        )));
    }
    let storage = s.to_storage();
    let corrupt = |w: &str| CiphertextError::new_err(format!("column '{}' is corrupt: {w}", s.name()));
    let st = storage.struct_().map_err(|_| corrupt("its storage is not a struct"))?;
    let rid = st.field_by_name(RID).map_err(|_| corrupt("no rid field"))?;
    let rid = rid.u64().map_err(|_| corrupt("rid is not u64"))?.rechunk().into_owned();
    let cells = st.field_by_name(FUZZY).map_err(|_| corrupt("no fuzzy field"))?;
    let cells = cells
        .binary()
        .map_err(|_| corrupt("fuzzy is not binary"))?
        .rechunk()
        .into_owned();
    let valid = storage.is_not_null().rechunk().into_owned();
    let valid: Vec<bool> = valid.downcast_as_array().values().iter().collect();
    Ok(FuzzyCells {
        meta,
        rids: values(&rid).to_vec(),
        cells,
        valid,
    })
}

fn wanted(c: &FuzzyCells) -> Vec<u64> {
    let mut v: Vec<u64> = c
        .rids
        .iter()
        .zip(&c.valid)
        .filter(|(_, &ok)| ok)
        .map(|(&r, _)| r)
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// `(metadata JSON, rid set bytes)` of the non-null rows of a column with the fuzzy facet.
#[pyfunction]
pub fn fuzzy_rids<'py>(py: Python<'py>, series: PySeries) -> PyResult<(String, Bound<'py, PyBytes>)> {
    let c = cells_of(&series.0)?;
    Ok((
        c.meta.to_json(),
        PyBytes::new(py, &RidSet::from_sorted(&wanted(&c)).to_bytes()),
    ))
}

/// The unsealed encodings of one column (`None` for null rows).
fn unsealed(s: &PySeries, sd: &[u8]) -> PyResult<Vec<Option<Filter>>> {
    let c = cells_of(&s.0)?;
    let w = wanted(&c);
    if sd.len() != 16 * w.len() {
        return Err(GhostError::new_err(format!(
            "the keyhost returned {} bytes of seeds for {} rows of column '{}'",
            sd.len(),
            w.len(),
            c.meta.column
        )));
    }
    let arr = c.cells.downcast_as_array();
    (0..c.rids.len())
        .into_par_iter()
        .map(|i| {
            if !c.valid[i] {
                return Ok(None);
            }
            let j = w.binary_search(&c.rids[i]).expect("every valid rid was requested");
            let seed: [u8; 16] = sd[16 * j..16 * j + 16].try_into().expect("16 bytes");
            clk::unseal(arr.value(i), &seed)
                .map(Some)
                .ok_or_else(|| CiphertextError::new_err(format!("column '{}': row {i} is corrupt", c.meta.column)))
        })
        .collect()
}

/// Field-level encodings of one side (one entry per column, all of one length).
fn fields(cols: &[PySeries], seeds: &[Vec<u8>]) -> PyResult<clk::Fields> {
    if cols.len() != seeds.len() || cols.is_empty() {
        return Err(GhostError::new_err("one seed set per column is needed"));
    }
    let f = cols
        .iter()
        .zip(seeds)
        .map(|(s, sd)| unsealed(s, sd))
        .collect::<PyResult<Vec<_>>>()?;
    if f.iter().any(|c| c.len() != f[0].len()) {
        return Err(GhostError::new_err("the columns of one side differ in length"));
    }
    Ok(clk::Fields::new(f))
}

fn metric(m: &str) -> PyResult<clk::Metric> {
    clk::Metric::parse(m).ok_or_else(|| GhostError::new_err(format!("metric must be 'dice' or 'jaccard', got {m:?}")))
}

fn check_weights(w: &[f64], n: usize) -> PyResult<()> {
    if w.len() != n || w.iter().any(|x| !x.is_finite() || *x < 0.0) || w.iter().all(|x| *x == 0.0) {
        return Err(GhostError::new_err(
            "one finite, non-negative weight per column is needed (not all zero)",
        ));
    }
    Ok(())
}

/// The similarity matrix (long format) or the top k per left row of encrypted columns
/// (field-level, weighted), pairs with `similarity >= threshold`.
#[pyfunction]
#[pyo3(signature = (left, left_seeds, right, right_seeds, weights, metric_name, top_k=None, threshold=0.0))]
#[allow(clippy::too_many_arguments)]
pub fn similarity_encrypted(
    py: Python<'_>,
    left: Vec<PySeries>,
    left_seeds: Vec<Vec<u8>>,
    right: Vec<PySeries>,
    right_seeds: Vec<Vec<u8>>,
    weights: Vec<f64>,
    metric_name: &str,
    top_k: Option<usize>,
    threshold: f64,
) -> PyResult<Pairs> {
    let m = metric(metric_name)?;
    check_weights(&weights, left.len())?;
    let l = fields(&left, &left_seeds)?;
    let r = fields(&right, &right_seeds)?;
    Ok(py.detach(|| {
        unzip(match top_k {
            Some(k) => clk::top_k(&l, &r, &weights, m, k, threshold),
            None => clk::matrix(&l, &r, &weights, m, threshold),
        })
    }))
}

/// Field-level linkage (weighted Dice of the fields, greedy one-to-one; `clk::link_fields`).
#[pyfunction]
pub fn link_fields_encrypted(
    py: Python<'_>,
    left: Vec<PySeries>,
    left_seeds: Vec<Vec<u8>>,
    right: Vec<PySeries>,
    right_seeds: Vec<Vec<u8>>,
    weights: Vec<f64>,
    threshold: f64,
) -> PyResult<Pairs> {
    check_weights(&weights, left.len())?;
    let l = fields(&left, &left_seeds)?;
    let r = fields(&right, &right_seeds)?;
    Ok(py.detach(|| unzip(clk::link_fields(&l, &r, &weights, threshold))))
}

/// The unsealed encodings of a column as bytes (`None` for nulls): what a `link` grant lets
/// its holder see (for tests of the similarity against the encodings themselves).
#[pyfunction]
pub fn fuzzy_encodings<'py>(
    py: Python<'py>,
    series: PySeries,
    seeds: Vec<u8>,
) -> PyResult<Vec<Option<Bound<'py, PyBytes>>>> {
    let f = unsealed(&series, &seeds)?;
    Ok(f.iter()
        .map(|c| {
            c.map(|c| {
                let b: Vec<u8> = c.iter().flat_map(|w| w.to_le_bytes()).collect();
                PyBytes::new(py, &b)
            })
        })
        .collect())
}

/// Plaintext baseline of [`similarity_encrypted`]: per field the set of bigrams (sentinel-padded,
/// as the encodings see them), the same weighting, every pair (or top k).
#[pyfunction]
#[pyo3(signature = (left, right, weights, metric_name, top_k=None, threshold=0.0))]
pub fn similarity_plaintext(
    py: Python<'_>,
    left: Vec<PySeries>,
    right: Vec<PySeries>,
    weights: Vec<f64>,
    metric_name: &str,
    top_k: Option<usize>,
    threshold: f64,
) -> PyResult<Pairs> {
    let m = metric(metric_name)?;
    check_weights(&weights, left.len())?;
    let l: Vec<Vec<HashSet<(usize, char, char)>>> = left
        .iter()
        .map(|c| bigram_sets(std::slice::from_ref(c)))
        .collect::<PyResult<_>>()?;
    let r: Vec<Vec<HashSet<(usize, char, char)>>> = right
        .iter()
        .map(|c| bigram_sets(std::slice::from_ref(c)))
        .collect::<PyResult<_>>()?;
    let (n, k) = (l.first().map_or(0, Vec::len), r.first().map_or(0, Vec::len));
    Ok(py.detach(|| {
        let pairs: Vec<clk::Pair> = (0..n)
            .into_par_iter()
            .flat_map_iter(|i| {
                let mut v: Vec<clk::Pair> = (0..k)
                    .filter_map(|j| {
                        let (mut num, mut den) = (0.0, 0.0);
                        for (f, &wf) in weights.iter().enumerate() {
                            let (a, b) = (&l[f][i], &r[f][j]);
                            if a.is_empty() || b.is_empty() {
                                continue;
                            }
                            let inter = a.intersection(b).count() as f64;
                            num += wf
                                * match m {
                                    clk::Metric::Dice => 2.0 * inter / (a.len() + b.len()) as f64,
                                    clk::Metric::Jaccard => inter / ((a.len() + b.len()) as f64 - inter),
                                };
                            den += wf;
                        }
                        (den > 0.0 && num / den >= threshold).then(|| clk::Pair {
                            left: i as u32,
                            right: j as u32,
                            similarity: num / den,
                        })
                    })
                    .collect();
                if let Some(t) = top_k {
                    v.sort_by(|a, b| b.similarity.total_cmp(&a.similarity).then(a.right.cmp(&b.right)));
                    v.truncate(t);
                }
                v
            })
            .collect();
        unzip(pairs)
    }))
}

/// Record encodings of one side: per row the OR of its unsealed non-null fields; `None` when
/// every field is null.
fn records(cols: &[PySeries], seeds: &[Vec<u8>]) -> PyResult<Vec<Option<Filter>>> {
    if cols.len() != seeds.len() || cols.is_empty() {
        return Err(GhostError::new_err("gp.link: one seed set per column is needed"));
    }
    let mut acc: Option<Vec<Option<Filter>>> = None;
    for (s, sd) in cols.iter().zip(seeds) {
        let c = cells_of(&s.0)?;
        let w = wanted(&c);
        if sd.len() != 16 * w.len() {
            return Err(GhostError::new_err(format!(
                "gp.link: the keyhost returned {} bytes of seeds for {} rows of column '{}'",
                sd.len(),
                w.len(),
                c.meta.column
            )));
        }
        let arr = c.cells.downcast_as_array();
        let fields: PyResult<Vec<Option<Filter>>> = (0..c.rids.len())
            .into_par_iter()
            .map(|i| {
                if !c.valid[i] {
                    return Ok(None);
                }
                let j = w.binary_search(&c.rids[i]).expect("every valid rid was requested");
                let seed: [u8; 16] = sd[16 * j..16 * j + 16].try_into().expect("16 bytes");
                clk::unseal(arr.value(i), &seed)
                    .map(Some)
                    .ok_or_else(|| CiphertextError::new_err(format!("column '{}': row {i} is corrupt", c.meta.column)))
            })
            .collect();
        let fields = fields?;
        acc = Some(match acc {
            None => fields,
            Some(prev) => {
                if prev.len() != fields.len() {
                    return Err(GhostError::new_err("gp.link: the columns of one side differ in length"));
                }
                prev.into_iter()
                    .zip(fields)
                    .map(|(a, b)| match (a, b) {
                        (Some(a), Some(b)) => Some(clk::combine(&[&a, &b])),
                        (a, None) => a,
                        (None, b) => b,
                    })
                    .collect()
            }
        });
    }
    Ok(acc.unwrap_or_default())
}

fn unzip(pairs: Vec<clk::Pair>) -> Pairs {
    let mut out = (Vec::new(), Vec::new(), Vec::new());
    for p in pairs {
        out.0.push(p.left);
        out.1.push(p.right);
        out.2.push(p.similarity);
    }
    out
}

/// Link two sides of encrypted columns (with their seeds, per column, in rid order).
/// `exhaustive` compares every pair (the brute-force baseline); `blocked` always blocks with
/// MinHash LSH (by default: exhaustive up to `clk::EXHAUSTIVE_PAIRS` pairs, blocked beyond).
#[pyfunction]
#[pyo3(signature = (left, left_seeds, right, right_seeds, threshold, exhaustive=false, blocked=false))]
#[allow(clippy::too_many_arguments)]
pub fn link_encrypted(
    py: Python<'_>,
    left: Vec<PySeries>,
    left_seeds: Vec<Vec<u8>>,
    right: Vec<PySeries>,
    right_seeds: Vec<Vec<u8>>,
    threshold: f64,
    exhaustive: bool,
    blocked: bool,
) -> PyResult<Pairs> {
    let l = records(&left, &left_seeds)?;
    let r = records(&right, &right_seeds)?;
    Ok(py.detach(|| {
        unzip(if exhaustive {
            clk::link_exhaustive(&l, &r, threshold)
        } else if blocked {
            clk::link_blocked(&l, &r, threshold)
        } else {
            clk::link(&l, &r, threshold)
        })
    }))
}

fn bigram_sets(cols: &[PySeries]) -> PyResult<Vec<HashSet<(usize, char, char)>>> {
    let mut out: Vec<HashSet<(usize, char, char)>> = Vec::new();
    for (f, s) in cols.iter().enumerate() {
        let ca = s.0.str().map_err(polars_err)?;
        if out.is_empty() {
            out = vec![HashSet::new(); ca.len()];
        }
        for (i, v) in ca.iter().enumerate() {
            if let Some(t) = v.filter(|t| !t.is_empty()) {
                let mut prev = '\u{2}';
                for c in t.chars().chain(std::iter::once('\u{2}')) {
                    out[i].insert((f, prev, c));
                    prev = c;
                }
            }
        }
    }
    Ok(out)
}

/// Plaintext baseline: bigram-set Dice over the same (normalised) fields, every pair
/// compared, the same greedy one-to-one assignment.
#[pyfunction]
pub fn link_plaintext(py: Python<'_>, left: Vec<PySeries>, right: Vec<PySeries>, threshold: f64) -> PyResult<Pairs> {
    let l = bigram_sets(&left)?;
    let r = bigram_sets(&right)?;
    Ok(py.detach(|| {
        let pairs: Vec<clk::Pair> = l
            .par_iter()
            .enumerate()
            .flat_map_iter(|(i, a)| {
                let mut v = Vec::new();
                for (j, b) in r.iter().enumerate() {
                    if a.is_empty() || b.is_empty() {
                        continue;
                    }
                    let d = 2.0 * a.intersection(b).count() as f64 / (a.len() + b.len()) as f64;
                    if d >= threshold {
                        v.push(clk::Pair {
                            left: i as u32,
                            right: j as u32,
                            similarity: d,
                        });
                    }
                }
                v
            })
            .collect();
        unzip(clk::greedy_pairs(pairs))
    }))
}
