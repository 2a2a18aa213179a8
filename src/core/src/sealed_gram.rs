//! Sealed second moments: the masked Gram matrix `[X 1]ᵀ[X 1]` of a set of features over one row
//! multiset, with the computation descriptor of its answer keys (op `gram`).
//!
//! Features are encrypted columns (their products come from the `deg2` facet) or plaintext
//! columns with public per-row values (which enter the encrypted entries as public per-row
//! weights, so the keyhost learns them). Entry `(i, j)`, `i ≤ j`, with index `d` the intercept:
//!
//! - both encrypted: `Σ k_r · (x_i x_j)_r` — a masked sum of the product column;
//! - encrypted × plaintext: `Σ u_r · x_r` with `u_r` the plaintext feature (summed over a
//!   row's repeats) — a masked sum with public per-row weights;
//! - encrypted × intercept: `Σ k_r · x_r`;
//! - plaintext × plaintext / intercept: computed in the clear (`plain`).
//!
//! One sealed Gram is revealed with ONE descriptor (several sealed Grams over the same rows
//! share it), see `python/ghostpii/gram.py`.

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::multiset::RidMultiset;
use crate::sealed::{thousands, SealedRepeat};

/// One feature of a sealed Gram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GramFeature {
    pub name: String,
    /// Encrypted column (`column_id`, `epoch`) or plaintext values.
    pub encrypted: bool,
    /// Fixed-point scale of the values entering the sums.
    pub scale: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u32>,
    /// Declared bounds of the stored values (encrypted features).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounds: Option<(i64, i64)>,
}

/// A keyhost column of one masked sum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GramTerm {
    pub column_id: i64,
    pub epoch: u32,
}

/// One encrypted entry `(i, j)` of the Gram matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GramEntry {
    pub i: usize,
    pub j: usize,
    /// Σ over the rows of the cells (times the per-row weight), wrapping in 2^128, decimal.
    pub masked: String,
    /// The column whose cells were summed (a product column for two encrypted features).
    pub term: GramTerm,
    /// Index into `weights` of the per-row public weights, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<usize>,
    /// Fixed-point scale of the entry.
    pub scale: u32,
}

/// One plaintext entry (exact integer at `scale`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlainEntry {
    pub i: usize,
    pub j: usize,
    pub value: String,
    pub scale: u32,
}

/// Public per-row weights: the plaintext feature `feature`, one i64 per distinct row of the
/// support (in rid order, summed over the row's repeats), base64 of little-endian bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowWeights {
    pub feature: usize,
    pub values: String,
    /// max |weight| over the rows (for sensitivity and wrap checks).
    pub max_abs: u64,
}

/// A sealed Gram matrix (one group of one expression).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SealedGram {
    /// Always `"gram"` (tells it apart from sealed sums).
    pub op: String,
    /// What the Python layer makes of it: `var`, `std`, `cov`, `corr`, `dot`, `norm`, `cosine`, `gram`.
    pub stat: String,
    pub keyhost: String,
    pub dataset: String,
    pub dataset_id: i64,
    pub features: Vec<GramFeature>,
    /// Rows summed, each counted as often as it was summed.
    pub n: u64,
    /// Rows in the input before rows with a null feature were dropped.
    pub rows_in: u64,
    pub rids: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repeats: Vec<SealedRepeat>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weights: Vec<RowWeights>,
    pub entries: Vec<GramEntry>,
    pub plain: Vec<PlainEntry>,
}

impl SealedGram {
    /// Rows and repeat classes in the sealed format of sums.
    pub fn set_rows(&mut self, rows: &RidMultiset) {
        self.n = u64::try_from(rows.weighted_len()).unwrap_or(u64::MAX);
        self.rids = rows.support.to_base64();
        self.repeats = rows
            .repeats
            .iter()
            .map(|r| SealedRepeat {
                k: r.k,
                rids: r.rids.to_base64(),
            })
            .collect();
    }

    /// How it prints before it is revealed, e.g. `<sealed cov(age, charges) over 1,338 rows>`.
    pub fn label(&self) -> String {
        let names: Vec<&str> = self.features.iter().map(|f| f.name.as_str()).collect();
        let rows = if self.n == 1 { "row" } else { "rows" };
        format!(
            "<sealed {}({}) over {} {rows}>",
            self.stat,
            names.join(", "),
            thousands(self.n)
        )
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("sealed gram serializes")
    }

    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        serde_json::from_slice(b).map_err(|e| CoreError::InvalidSealed(format!("not a ghostpii sealed gram: {e}")))
    }

    /// Its rows with their repeats.
    pub fn rows(&self) -> Result<RidMultiset> {
        crate::sealed::decode_rows(&self.rids, &self.repeats)
    }

    /// Add another partial of the same statistic (e.g. another worker's files): masked entries
    /// mod 2^128, plaintext entries exactly, row counts, and row multisets. Partials with public
    /// per-row weights (plaintext features) are refused: their weights would have to be merged
    /// in rid order.
    pub fn merge(&mut self, other: &SealedGram) -> Result<()> {
        let bad = |m: &str| CoreError::InvalidSealed(format!("cannot merge sealed Gram partials: {m}"));
        let shape = |g: &SealedGram| {
            let entries: Vec<_> = g
                .entries
                .iter()
                .map(|e| (e.i, e.j, e.term.clone(), e.weight, e.scale))
                .collect();
            let plain: Vec<_> = g.plain.iter().map(|p| (p.i, p.j, p.scale)).collect();
            (
                g.stat.clone(),
                g.keyhost.clone(),
                g.dataset_id,
                g.features.clone(),
                entries,
                plain,
            )
        };
        if shape(self) != shape(other) {
            return Err(bad("they are of different statistics, features or datasets"));
        }
        if !self.weights.is_empty() || !other.weights.is_empty() {
            return Err(bad(
                "statistics with plaintext features (public per-row weights) are not merged; encrypt the feature, \
                 or collect in one process",
            ));
        }
        for (a, b) in self.entries.iter_mut().zip(&other.entries) {
            let (x, y): (u128, u128) = (
                a.masked
                    .parse()
                    .map_err(|_| bad("a masked entry is not a 128-bit integer"))?,
                b.masked
                    .parse()
                    .map_err(|_| bad("a masked entry is not a 128-bit integer"))?,
            );
            a.masked = x.wrapping_add(y).to_string();
        }
        for (a, b) in self.plain.iter_mut().zip(&other.plain) {
            let (x, y): (i128, i128) = (
                a.value
                    .parse()
                    .map_err(|_| bad("a plaintext entry is not an integer"))?,
                b.value
                    .parse()
                    .map_err(|_| bad("a plaintext entry is not an integer"))?,
            );
            a.value = x
                .checked_add(y)
                .ok_or_else(|| bad("a plaintext entry overflows 128 bits"))?
                .to_string();
        }
        self.rows_in = self.rows_in.saturating_add(other.rows_in);
        if other.n == 0 {
            return Ok(());
        }
        if self.n == 0 {
            self.n = other.n;
            self.rids = other.rids.clone();
            self.repeats = other.repeats.clone();
            return Ok(());
        }
        let merged = crate::multiset_sum::plus(&self.rows()?, &other.rows()?);
        self.set_rows(&merged);
        Ok(())
    }
}

/// Per-row weights as stored in [`RowWeights::values`].
pub fn encode_weights(w: &[i64]) -> String {
    use base64::Engine;
    let bytes: Vec<u8> = w.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decode [`RowWeights::values`]; at most `max` values.
pub fn decode_weights(s: &str, max: u64) -> Result<Vec<i64>> {
    use base64::Engine;
    let bad = |m: String| CoreError::InvalidSealed(format!("per-row weights: {m}"));
    if (s.len() as u64) / 4 * 3 > max.saturating_mul(8).saturating_add(3) {
        return Err(bad(format!("more than {max} values")));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| bad(e.to_string()))?;
    if bytes.len() % 8 != 0 {
        return Err(bad("not a whole number of 64-bit values".into()));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RidSet;

    #[test]
    fn weights_round_trip_and_are_bounded() {
        let w = vec![0, -1, i64::MAX, i64::MIN, 42];
        assert_eq!(decode_weights(&encode_weights(&w), 5).unwrap(), w);
        assert!(decode_weights(&encode_weights(&w), 2).is_err());
        assert!(decode_weights("AAAA", 10).is_err());
    }

    fn partial(rids: &[u64], masked: u128, plain: i128) -> SealedGram {
        let mut g = SealedGram {
            op: "gram".into(),
            stat: "var".into(),
            keyhost: "kh".into(),
            dataset: "d".into(),
            dataset_id: 1,
            features: vec![GramFeature {
                name: "x".into(),
                encrypted: true,
                scale: 0,
                column: Some("x".into()),
                column_id: Some(3),
                epoch: Some(1),
                bounds: Some((0, 10)),
            }],
            n: 0,
            rows_in: rids.len() as u64,
            rids: String::new(),
            repeats: Vec::new(),
            weights: Vec::new(),
            entries: vec![GramEntry {
                i: 0,
                j: 0,
                masked: masked.to_string(),
                term: GramTerm { column_id: 4, epoch: 1 },
                weight: None,
                scale: 0,
            }],
            plain: vec![PlainEntry {
                i: 1,
                j: 1,
                value: plain.to_string(),
                scale: 0,
            }],
        };
        g.set_rows(&RidMultiset {
            support: RidSet::from_sorted(rids),
            repeats: Vec::new(),
        });
        g
    }

    #[test]
    fn partials_merge_entries_rows_and_counts() {
        let mut a = partial(&[1, 2, 3], u128::MAX, 3);
        a.merge(&partial(&[10, 11], 5, 2)).unwrap();
        assert_eq!(a.entries[0].masked, 4u128.to_string(), "mod 2^128");
        assert_eq!(a.plain[0].value, "5");
        assert_eq!((a.n, a.rows_in), (5, 5));
        assert_eq!(a.rows().unwrap().support.to_vec(), vec![1, 2, 3, 10, 11]);
        // a row in both partials counts twice
        let mut b = partial(&[1, 2], 0, 2);
        b.merge(&partial(&[2], 0, 1)).unwrap();
        assert_eq!((b.n, b.rows().unwrap().max_multiplicity()), (3, 2));
    }

    #[test]
    fn other_statistics_and_weighted_partials_are_refused() {
        let mut a = partial(&[1], 0, 1);
        let mut other = partial(&[2], 0, 1);
        other.stat = "cov".into();
        assert!(a.merge(&other).is_err());
        let mut weighted = partial(&[2], 0, 1);
        weighted.weights.push(RowWeights {
            feature: 0,
            values: encode_weights(&[1]),
            max_abs: 1,
        });
        assert!(a
            .merge(&weighted)
            .unwrap_err()
            .to_string()
            .contains("plaintext features"));
    }
}
