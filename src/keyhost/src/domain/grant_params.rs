//! Validation of the `params` of `POST /v1/grants`, per operation, and conversion of
//! comparison constants from the column's logical domain to stored integers.
//!
//! - decrypt: no parameters.
//! - group, link: `domain_key_holder` (pads for an identity whose organisation holds the
//!   column's join-domain key, an explicit choice: see `policy::check_key_holder`).
//!   link also: `max_constants` (similarity tokens of `ghost.similarity`; none without it).
//! - aggregate: `min_rows`, `epsilon`, `delta`, `budget`.
//! - compare: `constants` (list) | `range` ([lo, hi], inclusive) | `max_constants`.
//! - score: `max_vectors`.
//! - compute: `max_evaluations` (required), `ops`, `reveal_values`.
//! - moments: as aggregate, plus `columns` (the other columns of the second moments).

use crate::store::Connection;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::domain::columns;
use crate::domain::datasets::Dataset;
use crate::domain::grants::{GrantParams, Operation};
use crate::error::{ApiError, ApiResult};

/// Most constants one compare grant may list.
const MAX_LISTED_CONSTANTS: usize = 100_000;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    min_rows: Option<u64>,
    #[serde(default)]
    epsilon: Option<f64>,
    #[serde(default)]
    delta: Option<f64>,
    #[serde(default)]
    budget: Option<f64>,
    #[serde(default)]
    constants: Option<Vec<Value>>,
    #[serde(default)]
    range: Option<(Value, Value)>,
    #[serde(default)]
    max_constants: Option<u64>,
    #[serde(default)]
    max_vectors: Option<u64>,
    #[serde(default)]
    columns: Option<Vec<String>>,
    #[serde(default)]
    domain_key_holder: Option<bool>,
    #[serde(default)]
    max_evaluations: Option<u64>,
    #[serde(default)]
    ops: Option<Vec<String>>,
    #[serde(default)]
    reveal_values: Option<bool>,
}

fn unsupported(op: Operation, names: &[&str]) -> ApiError {
    ApiError::invalid(format!(
        "grant params {} are not supported by '{}' grants",
        names.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", "),
        op.as_str()
    ))
}

/// Validate `raw` for operation `op` on `column` of `ds` and convert it to stored form.
pub fn build(
    conn: &Connection,
    ds: &Dataset,
    column: &str,
    op: Operation,
    raw: Option<Value>,
) -> ApiResult<GrantParams> {
    let raw: Raw = match raw {
        None | Some(Value::Null) => Raw::default(),
        Some(v) => serde_json::from_value(v)
            .map_err(|e| ApiError::invalid(format!("grant params are not supported by this keyhost: {e}")))?,
    };
    // every parameter given, in one order, and the ones each operation takes
    let given = [
        ("min_rows", raw.min_rows.is_some()),
        ("epsilon", raw.epsilon.is_some()),
        ("delta", raw.delta.is_some()),
        ("budget", raw.budget.is_some()),
        ("constants", raw.constants.is_some()),
        ("range", raw.range.is_some()),
        ("max_constants", raw.max_constants.is_some()),
        ("max_vectors", raw.max_vectors.is_some()),
        ("columns", raw.columns.is_some()),
        ("domain_key_holder", raw.domain_key_holder.is_some()),
        ("max_evaluations", raw.max_evaluations.is_some()),
        ("ops", raw.ops.is_some()),
        ("reveal_values", raw.reveal_values.is_some()),
    ];
    const PRIVACY: [&str; 4] = ["min_rows", "epsilon", "delta", "budget"];
    let takes: &[&str] = match op {
        Operation::Decrypt => &[],
        Operation::Group => &["domain_key_holder"],
        Operation::Link => &["domain_key_holder", "max_constants"],
        Operation::Aggregate => &PRIVACY,
        Operation::Moments => &["min_rows", "epsilon", "delta", "budget", "columns"],
        Operation::Compare => &["constants", "range", "max_constants"],
        Operation::Match => &["constants", "max_constants"],
        Operation::Search => &["max_constants"],
        Operation::Score => &["max_vectors"],
        Operation::Compute => &["max_evaluations", "ops", "reveal_values"],
    };
    let refused: Vec<&str> = given
        .iter()
        .filter(|(name, present)| *present && !takes.contains(name))
        .map(|(name, _)| *name)
        .collect();
    if !refused.is_empty() {
        return Err(unsupported(op, &refused));
    }
    match op {
        Operation::Decrypt => Ok(GrantParams::default()),
        Operation::Group => Ok(GrantParams {
            domain_key_holder: raw.domain_key_holder.filter(|&b| b),
            ..Default::default()
        }),
        Operation::Link => {
            if raw.max_constants == Some(0) {
                return Err(ApiError::invalid("max_constants must be at least 1"));
            }
            Ok(GrantParams {
                domain_key_holder: raw.domain_key_holder.filter(|&b| b),
                max_constants: raw.max_constants,
                ..Default::default()
            })
        }
        Operation::Score => {
            if raw.max_vectors == Some(0) {
                return Err(ApiError::invalid("max_vectors must be at least 1"));
            }
            Ok(GrantParams {
                max_vectors: raw.max_vectors,
                ..Default::default()
            })
        }
        Operation::Compute => compute_params(raw),
        Operation::Aggregate => aggregate_checked(conn, ds, column, &raw),
        Operation::Compare => compare(conn, ds, column, raw),
        Operation::Moments => crate::domain::moments::grant_params(
            conn,
            ds,
            column,
            raw.columns.clone(),
            aggregate_checked(conn, ds, column, &raw)?,
        ),
        Operation::Match => match_params(conn, ds, column, raw),
        Operation::Search => {
            if raw.max_constants == Some(0) {
                return Err(ApiError::invalid("max_constants must be at least 1"));
            }
            Ok(GrantParams {
                max_constants: raw.max_constants,
                ..Default::default()
            })
        }
    }
}

/// compute: a limit of evaluations per row and column is required (it bounds what shifted
/// inputs can reveal, `docs/rowwise.md`); `ops` must name circuit ops.
fn compute_params(raw: Raw) -> ApiResult<GrantParams> {
    let max = raw.max_evaluations.ok_or_else(|| {
        ApiError::invalid(
            "a compute grant needs max_evaluations, the most evaluations per row and column (each reveals one              output about the row); give for example max_evaluations=4",
        )
    })?;
    if max == 0 {
        return Err(ApiError::invalid("max_evaluations must be at least 1"));
    }
    if let Some(ops) = &raw.ops {
        if let Some(bad) = ops.iter().find(|o| !ghostpii_proto::circuit::OPS.contains(&o.as_str())) {
            return Err(ApiError::invalid(format!(
                "ops: '{bad}' is not a circuit op; the ops are {}",
                ghostpii_proto::circuit::OPS.join(", ")
            )));
        }
    }
    Ok(GrantParams {
        max_evaluations: Some(max),
        ops: raw.ops,
        reveal_values: raw.reveal_values.filter(|&b| b),
        ..Default::default()
    })
}

/// The checks and stored form of `min_rows`, `epsilon`, `delta`, `budget` (aggregate and moments).
fn aggregate_checked(conn: &Connection, ds: &Dataset, column: &str, raw: &Raw) -> ApiResult<GrantParams> {
    if raw.min_rows == Some(0) {
        return Err(ApiError::invalid("min_rows must be at least 1"));
    }
    if raw.epsilon.is_none() && raw.min_rows == Some(1) {
        return Err(ApiError::invalid(
            "an exact grant (no epsilon) needs min_rows of at least 2: exact answers are sums over groups of at \
             least min_rows rows that no answer tells apart, and one row is a value; give min_rows >= 2 (without \
             min_rows, exact answers are audited with 2), or epsilon for DP answers",
        ));
    }
    if let Some(e) = raw.epsilon {
        if !(e.is_finite() && e > 0.0 && e <= 100.0) {
            return Err(ApiError::invalid(format!("epsilon must be in (0, 100], not {e}")));
        }
    }
    if let Some(d) = raw.delta {
        if raw.epsilon.is_none() {
            return Err(ApiError::invalid("delta needs epsilon"));
        }
        if !(d.is_finite() && d > 0.0 && d < 0.5) {
            return Err(ApiError::invalid(format!("delta must be in (0, 0.5), not {d}")));
        }
    }
    if let Some(b) = raw.budget {
        if raw.epsilon.is_none() {
            return Err(ApiError::invalid(
                "budget needs epsilon (a privacy budget is spent by DP answers)",
            ));
        }
        if !(b.is_finite() && b > 0.0) {
            return Err(ApiError::invalid(format!("budget must be positive, not {b}")));
        }
    }
    if raw.epsilon.is_some() {
        // DP needs the column's declared bounds (the sensitivity); check now if registered.
        if let Some(col) = columns::find_by_name(conn, ds.id, column)? {
            if col.spec.bounds.is_none() {
                return Err(ApiError::invalid(format!(
                    "column '{column}' of dataset '{}' has no declared bounds, so a sum over it has no \
                     bounded sensitivity and cannot be answered with differential privacy; encrypt it with \
                     bounds=(lo, hi)",
                    ds.name
                )));
            }
        }
    }
    Ok(GrantParams {
        min_rows: raw.min_rows,
        epsilon: raw.epsilon,
        delta: raw.delta,
        budget: raw.budget,
        ..Default::default()
    })
}

fn compare(conn: &Connection, ds: &Dataset, column: &str, raw: Raw) -> ApiResult<GrantParams> {
    if raw.max_constants == Some(0) {
        return Err(ApiError::invalid("max_constants must be at least 1"));
    }
    let mut gp = GrantParams {
        max_constants: raw.max_constants,
        ..Default::default()
    };
    if raw.constants.is_none() && raw.range.is_none() {
        return Ok(gp);
    }
    let col = columns::find_by_name(conn, ds.id, column)?.ok_or_else(|| {
        ApiError::not_found(format!(
            "column '{column}' of dataset '{}' is not registered yet; a compare grant with constants or a \
             range converts them in the column's domain, so encrypt the column first",
            ds.name
        ))
    })?;
    let domain = col.domain().map_err(ApiError::invalid)?;
    let conv = |v: &Value| {
        domain
            .to_stored(v)
            .map_err(|m| ApiError::invalid(format!("constant for column '{column}': {m}")))
    };
    if let Some(cs) = &raw.constants {
        if cs.is_empty() {
            return Err(ApiError::invalid(
                "constants must not be empty (omit it to allow any constant)",
            ));
        }
        if cs.len() > MAX_LISTED_CONSTANTS {
            return Err(ApiError::invalid(format!(
                "at most {MAX_LISTED_CONSTANTS} constants per grant"
            )));
        }
        let mut stored = cs.iter().map(conv).collect::<ApiResult<Vec<i64>>>()?;
        stored.sort_unstable();
        stored.dedup();
        gp.constants = Some(stored);
    }
    if let Some((lo, hi)) = &raw.range {
        let (l, h) = (conv(lo)?, conv(hi)?);
        if l > h {
            return Err(ApiError::invalid(format!("range [{lo}, {hi}] is empty (lo > hi)")));
        }
        gp.range = Some((l, h));
    }
    gp.given = Some(json!({"constants": raw.constants, "range": raw.range.map(|(a, b)| vec![a, b])}));
    Ok(gp)
}

fn match_params(conn: &Connection, ds: &Dataset, column: &str, raw: Raw) -> ApiResult<GrantParams> {
    if raw.max_constants == Some(0) {
        return Err(ApiError::invalid("max_constants must be at least 1"));
    }
    let mut gp = GrantParams {
        max_constants: raw.max_constants,
        ..Default::default()
    };
    let Some(cs) = &raw.constants else { return Ok(gp) };
    if cs.is_empty() {
        return Err(ApiError::invalid(
            "constants must not be empty (omit it to allow any constant)",
        ));
    }
    if cs.len() > MAX_LISTED_CONSTANTS {
        return Err(ApiError::invalid(format!(
            "at most {MAX_LISTED_CONSTANTS} constants per grant"
        )));
    }
    let col = columns::find_by_name(conn, ds.id, column)?.ok_or_else(|| {
        ApiError::not_found(format!(
            "column '{column}' of dataset '{}' is not registered yet; a match grant with constants converts \
             them in the column's domain, so encrypt the column first",
            ds.name
        ))
    })?;
    let mut keys = cs
        .iter()
        .map(|v| crate::domain::match_constants::MatchConst::from_logical(&col, v).map(|c| c.key()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|m| ApiError::invalid(format!("constant for column '{column}': {m}")))?;
    keys.sort_unstable();
    keys.dedup();
    gp.match_constants = Some(keys);
    gp.given = Some(json!({"constants": raw.constants}));
    Ok(gp)
}
