//! Second-moment kernels: the sealed Gram matrix `[X 1]ᵀ[X 1]` of encrypted and plaintext
//! features over one group (`ghostpii_core::sealed_gram`). Variance, covariance, correlation,
//! dot products, norms, cosine similarity and model fits are all revealed from it.

use ghostpii_core::deg2::field_names;
use ghostpii_core::meta::{ColumnMeta, Facet, LogicalType};
use ghostpii_core::num::from_limbs;
use ghostpii_core::sealed_gram::{
    encode_weights, GramEntry, GramFeature, GramTerm, PlainEntry, RowWeights, SealedGram,
};
use polars::prelude::*;
use rayon::prelude::*;

use crate::aggregate::rid_multiset;
use crate::columns::{meta_of, require_facet, values, EncryptedCells};
use ghostpii_core::meta::ENCRYPTED_EXT_NAME;

#[derive(serde::Deserialize)]
pub struct MomentsKwargs {
    /// What the sealed value stands for (`var`, `cov`, …, `gram`).
    pub stat: String,
    /// Display names of the inputs, in order.
    pub names: Vec<String>,
    /// Decimals of plaintext float features (integers and booleans are exact at 0).
    #[serde(default = "default_decimals")]
    pub float_decimals: u32,
    /// The entries `(i, j)` wanted (index `len(names)` is the intercept); all pairs if absent.
    #[serde(default)]
    pub pairs: Option<Vec<(usize, usize)>>,
}

impl MomentsKwargs {
    fn wants(&self, i: usize, j: usize) -> bool {
        self.pairs
            .as_ref()
            .is_none_or(|ps| ps.iter().any(|&(a, b)| (a.min(b), a.max(b)) == (i, j)))
    }
}

fn default_decimals() -> u32 {
    6
}

fn is_encrypted(dtype: &DataType) -> bool {
    matches!(dtype, DataType::Extension(t, _) if t.name() == ENCRYPTED_EXT_NAME)
}

fn what(kw: &MomentsKwargs) -> String {
    format!("ghost {}({})", kw.stat, kw.names.join(", "))
}

/// Check the inputs when the plan is built: encrypted `num` columns with their products, or
/// plaintext numbers/booleans.
pub fn check_inputs(fields: &[Field], kw: &MomentsKwargs) -> PolarsResult<()> {
    let w = what(kw);
    if fields.len() != kw.names.len() {
        polars_bail!(ComputeError: "ghostpii: {w}: one name per input expected");
    }
    let mut metas = Vec::new();
    let mut index = Vec::new();
    for (k, f) in fields.iter().enumerate() {
        if is_encrypted(f.dtype()) {
            index.push(k);
            let m = meta_of(f.name(), f.dtype(), &w)?;
            require_facet(&m, Facet::Num, &w)?;
            if matches!(m.dtype, LogicalType::String | LogicalType::Date | LogicalType::Datetime) {
                polars_bail!(InvalidOperation: "ghostpii: {w}: column '{}' ({:?}) has no second moments; use numbers, integers or booleans", m.column, m.dtype);
            }
            metas.push(m);
        } else if !(f.dtype().is_primitive_numeric() || f.dtype() == &DataType::Boolean) {
            polars_bail!(InvalidOperation: "ghostpii: {w}: feature '{}' has dtype {}; features are encrypted columns or plaintext numbers/booleans", f.name(), f.dtype());
        }
    }
    if metas.is_empty() {
        polars_bail!(InvalidOperation: "ghostpii: {w} needs at least one encrypted column (use Polars itself on plaintext)");
    }
    for m in &metas[1..] {
        if m.keyhost != metas[0].keyhost || m.dataset_id != metas[0].dataset_id {
            polars_bail!(InvalidOperation:
                "ghostpii: {w}: columns '{}' and '{}' belong to different datasets; second moments combine columns of one dataset encrypted in one gp.encrypt call (join the plaintext you need instead)",
                metas[0].column, m.column);
        }
    }
    for (a, ma) in metas.iter().enumerate() {
        for (b, mb) in metas.iter().enumerate().skip(a) {
            if kw.wants(index[a], index[b]) {
                product_of(ma, mb, &w)?;
            }
        }
    }
    Ok(())
}

/// Which column stores `a·b` and its product description.
fn product_of<'a>(
    a: &'a ColumnMeta,
    b: &'a ColumnMeta,
    w: &str,
) -> PolarsResult<(&'a ColumnMeta, &'a ghostpii_core::deg2::Product)> {
    if let Some(p) = a.products.iter().find(|p| p.with == b.column) {
        return Ok((a, p));
    }
    if let Some(p) = b.products.iter().find(|p| p.with == a.column) {
        return Ok((b, p));
    }
    let pair = if a.column == b.column {
        format!("the square of '{}'", a.column)
    } else {
        format!("the product of '{}' and '{}'", a.column, b.column)
    };
    polars_bail!(InvalidOperation:
        "ghostpii: {w} needs {pair}, but the column(s) were encrypted without it (the deg2 facet); encrypt with gp.encrypt(..., products=[(\"{}\", \"{}\", ...)])",
        a.column, b.column)
}

enum Input {
    Enc(Box<EncryptedCells>),
    Plain { values: Vec<Option<i64>>, scale: u32 },
}

fn plain_values(s: &Series, decimals: u32, name: &str) -> PolarsResult<(Vec<Option<i64>>, u32)> {
    if s.dtype().is_float() {
        let f = s.cast(&DataType::Float64)?;
        let factor = 10f64.powi(decimals as i32);
        let mut out = Vec::with_capacity(f.len());
        for v in f.f64()?.iter() {
            out.push(match v {
                None => None,
                Some(x) if x.is_nan() => None,
                Some(x) => {
                    let y = (x * factor).round_ties_even();
                    if !y.is_finite() || y.abs() >= 9.2e18 {
                        polars_bail!(InvalidOperation: "ghostpii: plaintext feature '{name}': value {x} is too large for 64-bit fixed point with {decimals} decimals");
                    }
                    Some(y as i64)
                }
            });
        }
        return Ok((out, decimals));
    }
    let i = s.cast(&DataType::Int64)?;
    Ok((i.i64()?.iter().collect(), 0))
}

/// Σ over the kept rows of `cells` times the per-row weight (or 1), wrapping in 2^128.
fn masked(lo: &[u64], hi: &[u64], rows: &[usize], weight: Option<&[Option<i64>]>) -> u128 {
    rows.par_chunks(1 << 15)
        .map(|chunk| {
            let mut acc = 0u128;
            match weight {
                None => {
                    for &r in chunk {
                        acc = acc.wrapping_add(from_limbs(lo[r], hi[r]));
                    }
                }
                Some(w) => {
                    for &r in chunk {
                        let u = w[r].expect("kept rows are non-null") as i128 as u128;
                        acc = acc.wrapping_add(from_limbs(lo[r], hi[r]).wrapping_mul(u));
                    }
                }
            }
            acc
        })
        .reduce(|| 0u128, u128::wrapping_add)
}

fn product_limbs<'c>(
    holder: &'c EncryptedCells,
    with: &str,
    storage: &'c Series,
) -> PolarsResult<(UInt64Chunked, UInt64Chunked)> {
    let (lo_n, hi_n) = field_names(with);
    let st = storage.struct_()?;
    let get = |n: &str| -> PolarsResult<UInt64Chunked> {
        let f = st.field_by_name(n).map_err(|_| {
            polars_err!(ComputeError: "ghostpii: column '{}' is corrupt: its storage lacks the product field '{n}' its metadata names", holder.meta.column)
        })?;
        Ok(f.u64()?.rechunk().into_owned())
    };
    Ok((get(&lo_n)?, get(&hi_n)?))
}

/// Seal the Gram matrix of the inputs over the rows where all of them are non-null.
pub fn seal_gram(inputs: &[Series], kw: &MomentsKwargs) -> PolarsResult<Series> {
    let fields: Vec<Field> = inputs.iter().map(|s| s.field().into_owned()).collect();
    check_inputs(&fields, kw)?;
    let w = what(kw);
    let n_in = inputs[0].len();
    let mut parsed = Vec::with_capacity(inputs.len());
    for (s, name) in inputs.iter().zip(&kw.names) {
        if is_encrypted(s.dtype()) {
            parsed.push(Input::Enc(Box::new(EncryptedCells::from_series(s, &w)?)));
        } else {
            let (values, scale) = plain_values(s, kw.float_decimals, name)?;
            parsed.push(Input::Plain { values, scale });
        }
    }
    // rows kept: every input non-null
    let keep: Vec<bool> = (0..n_in)
        .map(|r| {
            parsed.iter().all(|p| match p {
                Input::Enc(c) => c.valid.get(r).unwrap_or(false),
                Input::Plain { values, .. } => values[r].is_some(),
            })
        })
        .collect();
    let rows: Vec<usize> = (0..n_in).filter(|&r| keep[r]).collect();
    let encs: Vec<(usize, &EncryptedCells)> = parsed
        .iter()
        .enumerate()
        .filter_map(|(i, p)| match p {
            Input::Enc(c) => Some((i, c.as_ref())),
            _ => None,
        })
        .collect();
    let rid0 = values(&encs[0].1.rid);
    for (_, c) in &encs[1..] {
        if values(&c.rid) != rid0 {
            polars_bail!(InvalidOperation:
                "ghostpii: {w}: columns '{}' and '{}' were encrypted in different gp.encrypt calls (their row ids differ), so they cannot be combined row by row; encrypt them together with products=[...]",
                encs[0].1.meta.column, c.meta.column);
        }
    }
    let first_meta = &encs[0].1.meta;
    let d = parsed.len();
    let features: Vec<GramFeature> = parsed
        .iter()
        .zip(&kw.names)
        .map(|(p, name)| match p {
            Input::Enc(c) => GramFeature {
                name: name.clone(),
                encrypted: true,
                scale: c.meta.scale,
                column: Some(c.meta.column.clone()),
                column_id: Some(c.meta.column_id),
                epoch: Some(c.meta.epoch),
                bounds: c.meta.bounds,
            },
            Input::Plain { scale, .. } => GramFeature {
                name: name.clone(),
                encrypted: false,
                scale: *scale,
                column: None,
                column_id: None,
                epoch: None,
                bounds: None,
            },
        })
        .collect();
    // the row multiset and, per plaintext feature, its weights per distinct row
    let kept_rids: Vec<u64> = rows.iter().map(|&r| rid0[r]).collect();
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.par_sort_unstable_by_key(|&k| kept_rids[k]);
    let multiset = rid_multiset(kept_rids.clone());
    let mut weights = Vec::new();
    let mut weight_index = vec![None; d];
    // a plaintext feature's values go to the keyhost only if an entry pairs it with an
    // encrypted column
    let paired = |i: usize| {
        parsed
            .iter()
            .enumerate()
            .any(|(e, q)| matches!(q, Input::Enc(_)) && kw.wants(i.min(e), i.max(e)))
    };
    for (i, p) in parsed.iter().enumerate() {
        if let Input::Plain { values: v, .. } = p {
            if !paired(i) {
                continue;
            }
            let mut per_rid: Vec<i64> = Vec::with_capacity(rows.len());
            let mut last = None;
            for &k in &order {
                let u = v[rows[k]].expect("kept");
                if last == Some(kept_rids[k]) {
                    let l = per_rid.last_mut().expect("a previous row");
                    *l = l.checked_add(u).ok_or_else(|| polars_err!(InvalidOperation: "ghostpii: {w}: plaintext feature '{}' summed over a repeated row leaves 64 bits", kw.names[i]))?;
                } else {
                    per_rid.push(u);
                    last = Some(kept_rids[k]);
                }
            }
            let max_abs = per_rid.iter().map(|x| x.unsigned_abs()).max().unwrap_or(0);
            weight_index[i] = Some(weights.len());
            weights.push(RowWeights {
                feature: i,
                values: encode_weights(&per_rid),
                max_abs,
            });
        }
    }
    // entries (i ≤ j), index d = intercept
    struct Job<'a> {
        i: usize,
        j: usize,
        lo: UInt64Chunked,
        hi: UInt64Chunked,
        term: GramTerm,
        weight: Option<(usize, &'a [Option<i64>])>,
        scale: u32,
    }
    let mut jobs: Vec<Job<'_>> = Vec::new();
    let mut plain = Vec::new();
    let storages: Vec<Option<&Series>> = inputs
        .iter()
        .map(|s| is_encrypted(s.dtype()).then(|| s.to_storage()))
        .collect();
    for i in 0..=d {
        for j in i..=d {
            if !kw.wants(i, j) {
                continue;
            }
            let pi = (i < d).then(|| &parsed[i]);
            let pj = (j < d).then(|| &parsed[j]);
            match (pi, pj) {
                (Some(Input::Enc(a)), Some(Input::Enc(b))) => {
                    let (holder, p) = product_of(&a.meta, &b.meta, &w)?;
                    let (hc, hs) = if holder.column == a.meta.column {
                        (a, storages[i])
                    } else {
                        (b, storages[j])
                    };
                    let (lo, hi) = product_limbs(hc, &p.with, hs.expect("encrypted"))?;
                    jobs.push(Job {
                        i,
                        j,
                        lo,
                        hi,
                        term: GramTerm {
                            column_id: p.column_id,
                            epoch: p.epoch,
                        },
                        weight: None,
                        scale: p.scale,
                    });
                }
                (Some(Input::Enc(a)), other) | (other, Some(Input::Enc(a))) => {
                    let (lo, hi) = a.num.clone().expect("num facet checked");
                    let (weight, scale) = match other {
                        Some(Input::Plain { values: v, scale }) => {
                            let k = if matches!(pi, Some(Input::Plain { .. })) { i } else { j };
                            (
                                Some((weight_index[k].expect("plain feature"), v.as_slice())),
                                a.meta.scale + scale,
                            )
                        }
                        _ => (None, a.meta.scale),
                    };
                    jobs.push(Job {
                        i,
                        j,
                        lo,
                        hi,
                        term: GramTerm {
                            column_id: a.meta.column_id,
                            epoch: a.meta.epoch,
                        },
                        weight,
                        scale,
                    });
                }
                (a, b) => {
                    let get = |p: Option<&Input>, r: usize| -> i128 {
                        match p {
                            Some(Input::Plain { values: v, .. }) => i128::from(v[r].expect("kept")),
                            _ => 1,
                        }
                    };
                    let scale_of = |p: Option<&Input>| match p {
                        Some(Input::Plain { scale, .. }) => *scale,
                        _ => 0,
                    };
                    let scale = scale_of(a) + scale_of(b);
                    let mut acc: i128 = 0;
                    for &r in &rows {
                        acc = get(a, r).checked_mul(get(b, r)).and_then(|p| acc.checked_add(p)).ok_or_else(|| {
                            polars_err!(InvalidOperation: "ghostpii: {w}: plaintext sums leave 128 bits; rescale the plaintext features")
                        })?;
                    }
                    plain.push(PlainEntry {
                        i,
                        j,
                        value: acc.to_string(),
                        scale,
                    });
                }
            }
        }
    }
    let entries: Vec<GramEntry> = jobs
        .par_iter()
        .map(|job| GramEntry {
            i: job.i,
            j: job.j,
            masked: masked(values(&job.lo), values(&job.hi), &rows, job.weight.map(|(_, v)| v)).to_string(),
            term: job.term.clone(),
            weight: job.weight.map(|(k, _)| k),
            scale: job.scale,
        })
        .collect();
    let mut sealed = SealedGram {
        op: "gram".into(),
        stat: kw.stat.clone(),
        keyhost: first_meta.keyhost.clone(),
        dataset: first_meta.dataset.clone(),
        dataset_id: first_meta.dataset_id,
        features,
        n: 0,
        rows_in: n_in as u64,
        rids: String::new(),
        repeats: Vec::new(),
        weights,
        entries,
        plain,
    };
    sealed.set_rows(&multiset);
    let name = inputs[0].name().clone();
    crate::sealed_column::params_row(name, sealed.label(), "gram", sealed.n, sealed.to_bytes())
}

fn moments_field(inputs: &[Field], kwargs: MomentsKwargs) -> PolarsResult<Field> {
    check_inputs(inputs, &kwargs)?;
    let f = inputs
        .first()
        .ok_or_else(|| polars_err!(ComputeError: "ghostpii: second moments need at least one column"))?;
    Ok(Field::new(f.name().clone(), crate::aggregate::sealed_storage_dtype()))
}

/// Sealed Gram matrix of encrypted (and plaintext) features: var, cov, corr, dot, fits.
#[pyo3_polars::derive::polars_expr(output_type_func_with_kwargs=moments_field)]
fn ghost_moments(inputs: &[Series], kwargs: MomentsKwargs) -> PolarsResult<Series> {
    seal_gram(inputs, &kwargs)
}
