//! Sealed results: a masked aggregate with everything the keyhost needs to issue its answer
//! key (the computation descriptor) but no key. Revealing one takes one answer key.

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::meta::ColumnMeta;
use crate::multiset::{Repeat, RidMultiset};
use crate::rids::RidSet;

/// The aggregate a sealed value stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SealedOp {
    Sum,
    Mean,
}

impl SealedOp {
    pub fn as_str(self) -> &'static str {
        match self {
            SealedOp::Sum => "sum",
            SealedOp::Mean => "mean",
        }
    }
}

/// One sealed aggregate (one group of one expression).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SealedAggregate {
    pub op: SealedOp,
    pub meta: ColumnMeta,
    /// Σ cells over the rows, wrapping in 2^128, as a decimal string.
    pub masked: String,
    /// Number of non-null rows summed, each counted as often as it was summed (public: null
    /// positions are public). A mean divides by this.
    pub n: u64,
    /// The distinct rows summed, as base64 of a [`RidSet`] encoding.
    pub rids: String,
    /// Rows that were summed more than once (after a join, concat or sample with
    /// replacement): for each multiplicity k ≥ 2, the rows counted exactly k times.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repeats: Vec<SealedRepeat>,
    /// For a linear combination `Σ w·column`: every term (the first term's column is `meta`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub terms: Vec<Term>,
}

/// Rows counted exactly `k` times, as base64 of a [`RidSet`] encoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SealedRepeat {
    pub k: u64,
    pub rids: String,
}

/// A row multiset as JSON sealed values store it (base64 support and repeat classes), decoded
/// and checked.
pub fn decode_rows(rids: &str, repeats: &[SealedRepeat]) -> Result<RidMultiset> {
    let support = RidSet::from_base64(rids)?;
    let repeats = repeats
        .iter()
        .map(|r| {
            Ok(Repeat {
                k: r.k,
                rids: RidSet::from_base64(&r.rids)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    RidMultiset::checked(support, repeats)
}

/// One term of a linear combination with a public integer weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Term {
    pub column: String,
    pub column_id: i64,
    pub epoch: u32,
    pub weight: i64,
}

impl SealedAggregate {
    pub fn new(op: SealedOp, meta: ColumnMeta, masked: u128, rows: &RidMultiset) -> Self {
        SealedAggregate {
            op,
            meta,
            masked: masked.to_string(),
            n: u64::try_from(rows.weighted_len()).unwrap_or(u64::MAX),
            rids: rows.support.to_base64(),
            repeats: rows
                .repeats
                .iter()
                .map(|r| SealedRepeat {
                    k: r.k,
                    rids: r.rids.to_base64(),
                })
                .collect(),
            terms: Vec::new(),
        }
    }

    /// The rows summed with their multiplicities, decoded and checked.
    pub fn rows(&self) -> Result<RidMultiset> {
        decode_rows(&self.rids, &self.repeats)
    }

    /// The expression summed, e.g. `income` or `2·a - b`.
    pub fn expression(&self) -> String {
        if self.terms.is_empty() {
            return self.meta.column.clone();
        }
        let mut out = String::new();
        for (i, t) in self.terms.iter().enumerate() {
            let (sign, w) = if t.weight < 0 {
                ("-", t.weight.unsigned_abs())
            } else {
                ("+", t.weight as u64)
            };
            if i == 0 {
                out.push_str(if sign == "-" { "-" } else { "" });
            } else {
                out.push_str(&format!(" {sign} "));
            }
            if w != 1 {
                out.push_str(&format!("{w}·"));
            }
            out.push_str(&t.column);
        }
        out
    }

    /// How the value prints before it is revealed.
    pub fn label(&self) -> String {
        let rows = if self.n == 1 { "row" } else { "rows" };
        let distinct = if self.repeats.is_empty() {
            String::new()
        } else {
            let d = RidSet::from_base64(&self.rids).map(|s| s.len()).unwrap_or(0);
            format!(", {} distinct", thousands(d))
        };
        format!(
            "<sealed {}({}) over {} {rows}{distinct}>",
            self.op.as_str(),
            self.expression(),
            thousands(self.n)
        )
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("sealed value serializes")
    }

    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        serde_json::from_slice(b).map_err(|e| CoreError::InvalidSealed(format!("not a ghostpii sealed value: {e}")))
    }

    pub fn masked_u128(&self) -> Result<u128> {
        self.masked
            .parse()
            .map_err(|_| CoreError::InvalidSealed("masked aggregate is not a 128-bit integer".into()))
    }
}

/// `1204` → `1,204`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1204), "1,204");
        assert_eq!(thousands(10_000_000), "10,000,000");
    }
}
