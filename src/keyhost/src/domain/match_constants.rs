//! Constants of match tokens: a column's logical constant (text for text columns, a number or
//! an ISO date otherwise) as the canonical key the grants list and the ledger counts.
//!
//! Canonical keys: `"s:" + text` (exact UTF-8, no normalisation) for text columns, `"i:" +
//! stored integer` otherwise. The audit and the ledger of issued constants keep only a digest
//! of the key (SHA-256, 128 bits, hex): the owner can check a guessed constant against it,
//! an auditor reading the log does not see the searched text.

use ghostpii_core::det::Plain;
use ghostpii_core::LogicalType;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::domain::columns::Column;

/// A constant in the form the match facet hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchConst {
    Text(String),
    Int(i64),
}

impl MatchConst {
    /// Convert a logical constant for `col`, or say why it does not fit the column.
    pub fn from_logical(col: &Column, v: &Value) -> Result<MatchConst, String> {
        if col.spec.dtype == LogicalType::String {
            return match v {
                Value::String(s) => Ok(MatchConst::Text(s.clone())),
                other => Err(format!(
                    "text column '{}' matches only text constants, not {other}",
                    col.name
                )),
            };
        }
        if let Value::String(_) = v {
            if col.spec.dtype != LogicalType::Date {
                return Err(format!("column '{}' matches numbers, not the text {v}", col.name));
            }
        }
        let domain = col.domain()?;
        domain.to_stored(v).map(MatchConst::Int)
    }

    pub fn plain(&self) -> Plain<'_> {
        match self {
            MatchConst::Text(s) => Plain::Text(s.as_bytes()),
            MatchConst::Int(i) => Plain::Int(*i),
        }
    }

    pub fn key(&self) -> String {
        match self {
            MatchConst::Text(s) => format!("s:{s}"),
            MatchConst::Int(i) => format!("i:{i}"),
        }
    }

    /// The digest kept in the audit and the ledger.
    pub fn digest(&self) -> String {
        let h = Sha256::digest(format!("ghostpii/match-constant/v1|{}", self.key()).as_bytes());
        hex::encode(&h[..16])
    }
}

/// The stored form of a wire constant: `{"text": "..."}` or `{"int": n}` (the stored integer,
/// as the kernels compute it).
pub fn from_wire(col: &Column, v: &Value) -> Result<MatchConst, String> {
    match (v.get("text"), v.get("int")) {
        (Some(Value::String(s)), None) if col.spec.dtype == LogicalType::String => Ok(MatchConst::Text(s.clone())),
        (None, Some(i)) if col.spec.dtype != LogicalType::String => i
            .as_i64()
            .map(MatchConst::Int)
            .ok_or_else(|| format!("match constant {i} is not a 64-bit integer")),
        _ => Err(format!(
            "match constant {v} does not fit column '{}' ({} column)",
            col.name,
            crate::domain::columns::dtype_str(col.spec.dtype)
        )),
    }
}
