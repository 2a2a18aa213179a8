//! Scoring encrypted rows: per row the masked linear combination `Σ_j a_j · c_{j,row}` of
//! `num` cells with public integer weights, and its opening with the per-row keys
//! `Σ_j a_j · PRF(k_j, rid)` of a `score` answer key, giving `Σ_j a_j · x_j` exactly (wrapping
//! ring arithmetic, no wrap inside the declared bounds), scaled by `2^-scale_bits`.

use ghostpii_core::num::{from_limbs, linear_sum_fits};
use ghostpii_core::RidSet;
use polars::prelude::*;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3_polars::PySeries;
use rayon::prelude::*;

use crate::columns::{values, EncryptedCells};
use crate::errors::{polars_err, CiphertextError, GhostError};

const CHUNK: usize = 1 << 15;

/// The masked per-row scores of a frame's encrypted columns, waiting for their keys.
#[pyclass(module = "ghostpii._internal", frozen)]
pub struct ScoreRows {
    /// Per row `Σ a_j · cell_j` (mod 2^128); 0 where some input is null.
    masked: Vec<u128>,
    rid: Vec<u64>,
    valid: Vec<bool>,
    /// The distinct rids of the valid rows, ascending (the order of the keys).
    distinct: Vec<u64>,
}

fn check(cells: &[EncryptedCells], weights: &[i64]) -> PyResult<()> {
    if cells.is_empty() || cells.len() != weights.len() {
        return Err(GhostError::new_err(
            "a score needs one integer weight per encrypted column",
        ));
    }
    let first = &cells[0];
    for c in cells {
        if c.num.is_none() {
            return Err(GhostError::new_err(format!(
                "column '{}' has no 'num' facet, so it cannot be scored",
                c.meta.column
            )));
        }
        if c.meta.keyhost != first.meta.keyhost || c.meta.dataset_id != first.meta.dataset_id {
            return Err(GhostError::new_err(format!(
                "a score combines columns of one dataset; '{}' and '{}' differ",
                first.meta.column, c.meta.column
            )));
        }
        let (a, b) = (values(&c.rid), values(&first.rid));
        let (va, vb) = (
            c.valid.downcast_as_array().values(),
            first.valid.downcast_as_array().values(),
        );
        if a.len() != b.len() || (0..a.len()).any(|i| va.get_bit(i) && vb.get_bit(i) && a[i] != b[i]) {
            return Err(GhostError::new_err(format!(
                "columns '{}' and '{}' were encrypted in different gp.encrypt calls (their row ids differ), so \
                 they cannot be combined row by row",
                first.meta.column, c.meta.column
            )));
        }
    }
    let terms: Vec<_> = weights.iter().zip(cells).map(|(&w, c)| (w, c.meta.bounds)).collect();
    if !linear_sum_fits(&terms, 1) {
        return Err(GhostError::new_err(format!(
            "weights {weights:?} times the columns' bounds could exceed 2^127 and wrap the 128-bit ring; use \
             smaller weights or encrypt with tighter bounds"
        )));
    }
    Ok(())
}

#[pymethods]
impl ScoreRows {
    /// Mask-combine the encrypted `columns` (one gp.encrypt call) with integer `weights`.
    #[new]
    fn new(py: Python<'_>, columns: Vec<PySeries>, weights: Vec<i64>) -> PyResult<Self> {
        let cells: Vec<EncryptedCells> = columns
            .iter()
            .map(|s| EncryptedCells::from_series(&s.0, "gp.score()"))
            .collect::<PolarsResult<_>>()
            .map_err(polars_err)?;
        check(&cells, &weights)?;
        py.detach(move || {
            let n = cells[0].len();
            let limbs: Vec<(&[u64], &[u64])> = cells
                .iter()
                .map(|c| {
                    let (lo, hi) = c.num.as_ref().expect("num facet checked");
                    (values(lo), values(hi))
                })
                .collect();
            let valid_bits: Vec<_> = cells
                .iter()
                .map(|c| c.valid.downcast_as_array().values().clone())
                .collect();
            let valid: Vec<bool> = (0..n)
                .into_par_iter()
                .map(|i| valid_bits.iter().all(|v| v.get_bit(i)))
                .collect();
            let masked: Vec<u128> = (0..n)
                .into_par_iter()
                .with_min_len(CHUNK)
                .map(|i| {
                    if !valid[i] {
                        return 0;
                    }
                    limbs.iter().zip(&weights).fold(0u128, |acc, ((lo, hi), &w)| {
                        acc.wrapping_add(from_limbs(lo[i], hi[i]).wrapping_mul(w as i128 as u128))
                    })
                })
                .collect();
            // the rid of a row from any column where it is non-null (all agree where valid)
            let rid: Vec<u64> = values(&cells[0].rid).to_vec();
            let mut distinct: Vec<u64> = rid.iter().zip(&valid).filter(|(_, v)| **v).map(|(r, _)| *r).collect();
            distinct.par_sort_unstable();
            distinct.dedup();
            Ok(ScoreRows {
                masked,
                rid,
                valid,
                distinct,
            })
        })
    }

    /// Number of distinct rows that get a score (rows where every input is non-null).
    #[getter]
    fn rows(&self) -> usize {
        self.distinct.len()
    }

    /// Per distinct rid (ascending), the low `bits` bits of its masked value as a signed
    /// integer (little-endian i64 bytes): the residues `gp.compute` encrypts under the
    /// analyst's FHE key (masks are additive, so a linear form needs one residue).
    fn residues<'py>(&self, py: Python<'py>, bits: u32) -> PyResult<Bound<'py, PyBytes>> {
        if ![8, 16, 32, 64].contains(&bits) {
            return Err(GhostError::new_err(format!("width {bits} is not 8, 16, 32 or 64 bits")));
        }
        let mut out = vec![0i64; self.distinct.len()];
        for (i, rid) in self.rid.iter().enumerate() {
            if self.valid[i] {
                let k = self.distinct.binary_search(rid).expect("valid rid is in the set");
                out[k] = ghostpii_fhe::low_bits(self.masked[i], bits);
            }
        }
        Ok(PyBytes::new(
            py,
            &out.into_iter().flat_map(i64::to_le_bytes).collect::<Vec<u8>>(),
        ))
    }

    /// The rid set of the rows to score, in the keyhost's encoding.
    fn rid_set<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &RidSet::from_sorted(&self.distinct).to_bytes())
    }

    /// Open the scores with the keyhost's per-row keys (16 bytes each, ascending rid order):
    /// Float64 `(Σ a_j·x_j) · 2^-scale_bits`, null where some input is null.
    fn open(&self, py: Python<'_>, name: &str, keys: Vec<u8>, scale_bits: i32) -> PyResult<PySeries> {
        if keys.len() != self.distinct.len() * 16 {
            return Err(CiphertextError::new_err(format!(
                "the keyhost returned {} bytes of keys for {} rows to score",
                keys.len(),
                self.distinct.len()
            )));
        }
        let out = py.detach(|| {
            // 2^-scale_bits in two steps, so that large scales do not underflow the factor
            let (h1, h2) = (scale_bits / 2, scale_bits - scale_bits / 2);
            let (f1, f2) = (2f64.powi(-h1), 2f64.powi(-h2));
            let vals: Vec<Option<f64>> = (0..self.masked.len())
                .into_par_iter()
                .with_min_len(CHUNK)
                .map(|i| {
                    self.valid[i].then(|| {
                        let k = self
                            .distinct
                            .binary_search(&self.rid[i])
                            .expect("valid rid is in the set");
                        let key = u128::from_le_bytes(keys[k * 16..(k + 1) * 16].try_into().expect("16 bytes"));
                        let y = self.masked[i].wrapping_sub(key) as i128;
                        (y as f64) * f1 * f2
                    })
                })
                .collect();
            Float64Chunked::from_iter_options(name.into(), vals.into_iter()).into_series()
        });
        Ok(PySeries(out))
    }
}
