//! Sealed values, format 2: typed fields instead of a JSON payload (see docs/sealed-partials.md).
//!
//! One sealed value is one row of the `ghostpii.sealed` struct column:
//!
//! | field     | type   | content |
//! |-----------|--------|---------|
//! | `label`   | String | what prints: `<sealed sum(x) over 4 rows, 2 distinct>` |
//! | `format`  | UInt8  | 2 |
//! | `op`      | String | `sum`, `mean` (later ops add names; unknown ones are refused) |
//! | `meta`    | String | the first column's metadata (the column format's JSON) |
//! | `terms`   | Binary | per term 20 bytes LE: column id i64, epoch u32, weight i64 |
//! | `masked`  | Binary | 16·m bytes: m masked sums, u128 LE each, mod 2^128 (m = 1 for sum/mean) |
//! | `n`       | UInt64 | rows summed, with multiplicity |
//! | `rids`    | Binary | the distinct rows: a rid set wire encoding (`RidSet::to_bytes`) |
//! | `repeats` | Binary | per class k ≥ 2: varint k, varint length, rid set encoding |
//! | `params`  | Binary | op-specific typed parameters (empty for sum and mean) |
//!
//! Two sealed values of the same op, columns and terms over disjoint or overlapping rows merge by
//! adding: masked values mod 2^128, `n`, and the row multisets ([`SealedParts::merge`]).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};

use crate::error::{CoreError, Result};
use crate::meta::ColumnMeta;
use crate::multiset::{Repeat, RidMultiset};
use crate::rids::RidSet;
use crate::sealed::{thousands, SealedAggregate, SealedOp};
use crate::varint::{get_varint, put_varint};

/// The format number written in the `format` field.
pub const SEALED_FORMAT: u8 = 2;
/// Bytes of one packed term.
pub const TERM_BYTES: usize = 20;

fn invalid(m: impl Into<String>) -> CoreError {
    CoreError::InvalidSealed(m.into())
}

/// One term `weight · column` of a sealed sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SealedTerm {
    pub column_id: i64,
    pub epoch: u32,
    pub weight: i64,
}

pub fn pack_terms(terms: &[SealedTerm]) -> Vec<u8> {
    let mut out = Vec::with_capacity(terms.len() * TERM_BYTES);
    for t in terms {
        out.extend_from_slice(&t.column_id.to_le_bytes());
        out.extend_from_slice(&t.epoch.to_le_bytes());
        out.extend_from_slice(&t.weight.to_le_bytes());
    }
    out
}

pub fn unpack_terms(b: &[u8]) -> Result<Vec<SealedTerm>> {
    if b.is_empty() || !b.len().is_multiple_of(TERM_BYTES) {
        return Err(invalid(format!(
            "terms field has {} bytes, not a positive multiple of {TERM_BYTES}",
            b.len()
        )));
    }
    Ok(b.chunks_exact(TERM_BYTES)
        .map(|c| SealedTerm {
            column_id: i64::from_le_bytes(c[..8].try_into().expect("8")),
            epoch: u32::from_le_bytes(c[8..12].try_into().expect("4")),
            weight: i64::from_le_bytes(c[12..].try_into().expect("8")),
        })
        .collect())
}

pub fn pack_masked(values: &[u128]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

pub fn unpack_masked(b: &[u8]) -> Result<Vec<u128>> {
    if b.is_empty() || !b.len().is_multiple_of(16) {
        return Err(invalid(format!(
            "masked field has {} bytes, not a positive multiple of 16",
            b.len()
        )));
    }
    Ok(b.chunks_exact(16)
        .map(|c| u128::from_le_bytes(c.try_into().expect("16")))
        .collect())
}

/// Repeat classes: `(k, rid set encoding)` each.
pub fn pack_repeats(repeats: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, rids) in repeats {
        put_varint(&mut out, *k);
        put_varint(&mut out, rids.len() as u64);
        out.extend_from_slice(rids);
    }
    out
}

pub fn unpack_repeats(mut b: &[u8]) -> Result<Vec<(u64, Vec<u8>)>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let k = get_varint(&mut b)?;
        let len = get_varint(&mut b)? as usize;
        if len > b.len() {
            return Err(invalid("truncated repeats field"));
        }
        let (head, tail) = b.split_at(len);
        out.push((k, head.to_vec()));
        b = tail;
    }
    Ok(out)
}

/// `op` field → op.
pub fn parse_op(s: &str) -> Result<SealedOp> {
    match s {
        "sum" => Ok(SealedOp::Sum),
        "mean" => Ok(SealedOp::Mean),
        other => Err(invalid(format!(
            "sealed op '{other}' is not known to this ghostpii build; upgrade ghostpii to reveal it"
        ))),
    }
}

/// The expression summed: `income`, or `2·a - b` for a linear combination.
pub fn expression(first_column: &str, terms: &[(String, i64)]) -> String {
    if terms.len() <= 1 && terms.first().is_none_or(|(_, w)| *w == 1) {
        return first_column.to_owned();
    }
    let mut out = String::new();
    for (i, (column, weight)) in terms.iter().enumerate() {
        let (neg, w) = (*weight < 0, weight.unsigned_abs());
        if i == 0 {
            out.push_str(if neg { "-" } else { "" });
        } else {
            out.push_str(if neg { " - " } else { " + " });
        }
        if w != 1 {
            out.push_str(&format!("{w}·"));
        }
        out.push_str(column);
    }
    out
}

/// How a sealed value prints before it is revealed.
pub fn label(op: SealedOp, expression: &str, n: u64, distinct: Option<u64>) -> String {
    let rows = if n == 1 { "row" } else { "rows" };
    let distinct = distinct
        .map(|d| format!(", {} distinct", thousands(d)))
        .unwrap_or_default();
    format!(
        "<sealed {}({expression}) over {} {rows}{distinct}>",
        op.as_str(),
        thousands(n)
    )
}

/// A sealed value with its fields decoded (the rid sets stay in their wire encoding).
#[derive(Debug, Clone, PartialEq)]
pub struct SealedParts {
    pub op: SealedOp,
    pub meta: ColumnMeta,
    pub terms: Vec<SealedTerm>,
    pub masked: Vec<u128>,
    pub n: u64,
    pub rids: Vec<u8>,
    pub repeats: Vec<(u64, Vec<u8>)>,
    pub params: Vec<u8>,
    /// The expression for the label (column names are not in the terms).
    pub expression: String,
}

impl SealedParts {
    /// From a format-1 value (the JSON payload of `SealedAggregate`).
    pub fn from_v1(v1: &SealedAggregate) -> Result<Self> {
        let terms: Vec<SealedTerm> = if v1.terms.is_empty() {
            vec![SealedTerm {
                column_id: v1.meta.column_id,
                epoch: v1.meta.epoch,
                weight: 1,
            }]
        } else {
            v1.terms
                .iter()
                .map(|t| SealedTerm {
                    column_id: t.column_id,
                    epoch: t.epoch,
                    weight: t.weight,
                })
                .collect()
        };
        let b = |s: &str| {
            B64.decode(s)
                .map_err(|e| invalid(format!("rid set is not base64: {e}")))
        };
        Ok(SealedParts {
            op: v1.op,
            meta: v1.meta.clone(),
            terms,
            masked: vec![v1.masked_u128()?],
            n: v1.n,
            rids: b(&v1.rids)?,
            repeats: v1
                .repeats
                .iter()
                .map(|r| Ok((r.k, b(&r.rids)?)))
                .collect::<Result<_>>()?,
            params: Vec::new(),
            expression: v1.expression(),
        })
    }

    /// The rows with their multiplicities, decoded and checked.
    pub fn rows(&self) -> Result<RidMultiset> {
        let support = RidSet::from_bytes(&self.rids)?;
        let repeats = self
            .repeats
            .iter()
            .map(|(k, r)| {
                Ok(Repeat {
                    k: *k,
                    rids: RidSet::from_bytes(r)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        RidMultiset::checked(support, repeats)
    }

    pub fn set_rows(&mut self, rows: &RidMultiset) {
        self.n = u64::try_from(rows.weighted_len()).unwrap_or(u64::MAX);
        self.rids = rows.support.to_bytes();
        self.repeats = rows.repeats.iter().map(|r| (r.k, r.rids.to_bytes())).collect();
    }

    pub fn label(&self, distinct: Option<u64>) -> String {
        label(self.op, &self.expression, self.n, distinct)
    }

    /// Add another partial of the same aggregate (same op, columns, terms and params): masked
    /// values mod 2^128, row counts, and row multisets (a row in both counts in both).
    pub fn merge(&mut self, other: &SealedParts) -> Result<()> {
        if self.op != other.op
            || self.terms != other.terms
            || self.params != other.params
            || self.masked.len() != other.masked.len()
            || self.meta.keyhost != other.meta.keyhost
            || self.meta.dataset_id != other.meta.dataset_id
        {
            return Err(invalid(format!(
                "cannot merge sealed partials of different aggregates ({}({}) and {}({}))",
                self.op.as_str(),
                self.expression,
                other.op.as_str(),
                other.expression
            )));
        }
        for (a, b) in self.masked.iter_mut().zip(&other.masked) {
            *a = a.wrapping_add(*b);
        }
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

    /// The keyhost's `sum` answer-key descriptor of this value (JSON, as `POST /v1/answer-keys`
    /// takes it).
    pub fn descriptor(&self) -> Value {
        let mut d = json!({
            "op": "sum",
            "dataset_id": self.meta.dataset_id,
            "rids": B64.encode(&self.rids),
            "terms": self.terms.iter()
                .map(|t| json!({"column_id": t.column_id, "epoch": t.epoch, "weight": t.weight}))
                .collect::<Vec<_>>(),
        });
        if !self.repeats.is_empty() {
            d["repeats"] = self
                .repeats
                .iter()
                .map(|(k, r)| json!({"k": k, "rids": B64.encode(r)}))
                .collect();
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_and_garbage_is_refused() {
        let t = vec![
            SealedTerm {
                column_id: 3,
                epoch: 2,
                weight: -7,
            },
            SealedTerm {
                column_id: i64::MAX,
                epoch: u32::MAX,
                weight: i64::MIN,
            },
        ];
        assert_eq!(unpack_terms(&pack_terms(&t)).unwrap(), t);
        assert!(unpack_terms(&[0; 19]).is_err());
        assert!(unpack_terms(&[]).is_err());
        let m = vec![0, u128::MAX, 1 << 100];
        assert_eq!(unpack_masked(&pack_masked(&m)).unwrap(), m);
        assert!(unpack_masked(&[1; 15]).is_err());
        let r = vec![(2, vec![1, 0, 3]), (9, vec![2; 40])];
        assert_eq!(unpack_repeats(&pack_repeats(&r)).unwrap(), r);
        assert!(unpack_repeats(&[2, 9, 1]).is_err());
        assert!(parse_op("gram").is_err());
        assert_eq!(
            label(SealedOp::Sum, "x", 4, Some(2)),
            "<sealed sum(x) over 4 rows, 2 distinct>"
        );
        assert_eq!(expression("a", &[("a".into(), 2), ("b".into(), -1)]), "2·a - b");
    }
}
