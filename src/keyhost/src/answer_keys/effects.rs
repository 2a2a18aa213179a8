//! Stateful checks and ledger updates of answer keys, applied in the record transaction:
//! first every check of a descriptor ([`check_all`]), then — after its audit row — the
//! updates ([`apply_all`]). Running them under the same transaction as the audit row means a
//! limit can never be passed by two concurrent batches, and the ledgers always agree with the
//! audit log.

use std::sync::Arc;

use crate::db::{params, Connection, OptionalExtension};

use crate::budget;
use crate::dp::Cost;
use crate::error::{reason, ApiError, ApiResult};
use crate::linear_audit;

/// One stateful check and its ledger update.
#[derive(Debug, Clone)]
pub enum Effect {
    /// compare: at most `max` distinct constants per identity and column (`None`: no limit,
    /// the constant is still recorded).
    DistinctConstant {
        identity_id: i64,
        column_id: i64,
        column: String,
        constant: i64,
        max: Option<u64>,
    },
    /// match: at most `max` distinct constants (by digest) per identity and column.
    DistinctMatchConstant {
        identity_id: i64,
        column_id: i64,
        column: String,
        digest: String,
        max: Option<u64>,
    },
    /// DP sum: debit `cost` from the identity's (ε, δ) account on the dataset, unless this
    /// exact request was charged before; refuse if the account's total would be exceeded.
    Budget {
        identity_id: i64,
        dataset_id: i64,
        dataset: String,
        request: String,
        cost: Cost,
    },
    /// Exact sum under a grant: the linear audit of the identity on the dataset must accept
    /// it (no single row value may become a linear combination of answered sums); accepted
    /// sums are remembered in the same transaction.
    LinearAudit {
        identity_id: i64,
        dataset_id: i64,
        query: Arc<linear_audit::Query>,
    },
    /// score: the weight vectors answered to the identity on the dataset must not span a unit
    /// vector, nor more than `max` independent vectors (`score_span.rs`); a vector that
    /// enlarges the span is remembered in the same transaction.
    ScoreSpan {
        identity_id: i64,
        dataset_id: i64,
        dataset: String,
        vector: Vec<(i64, i64)>,
        max: Option<u64>,
        names: Vec<(i64, String)>,
    },
    /// Exact Gram matrix under grants: every entry is a further sum for the linear audit
    /// (squares and products are columns of their own); all accepted together or refused.
    LinearAuditMany {
        identity_id: i64,
        dataset_id: i64,
        queries: Arc<Vec<linear_audit::Query>>,
    },
}

fn check_budget(
    tx: &Connection,
    identity_id: i64,
    dataset_id: i64,
    dataset: &str,
    request: &str,
    cost: &Cost,
) -> ApiResult<()> {
    if budget::already_charged(tx, identity_id, dataset_id, request)? {
        return Ok(());
    }
    let spent = budget::spent(tx, identity_id, dataset_id)?;
    let total = budget::total(tx, identity_id, dataset_id)?;
    let after = spent.plus(cost);
    if after.within(total.epsilon, total.delta) {
        return Ok(());
    }
    let now = spent.epsilon(total.delta);
    let (spent_s, t_s, rem_s) = (short(now), short(total.epsilon), short((total.epsilon - now).max(0.0)));
    let cost_s = short(after.epsilon(total.delta) - now);
    let (source, d) = (total.source.as_str(), total.delta);
    Err(ApiError::refused(
        reason::BUDGET_EXHAUSTED,
        format!(
            "the privacy budget of this identity on dataset '{dataset}' is exhausted: epsilon spent {spent_s} of {t_s} (remaining {rem_s}); delta {d:e}, total from {source}; this answer would cost {cost_s}; the dataset's owner can raise the total (set_budget)"
        ),
    ))
}

/// A budget figure for messages: at most 6 decimals, trailing zeros dropped.
fn short(x: f64) -> String {
    let s = format!("{x:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".into()
    } else {
        s.into()
    }
}

fn already_issued(tx: &Connection, identity_id: i64, column_id: i64, constant: i64) -> crate::db::Result<bool> {
    Ok(tx
        .prepare_cached("SELECT 1 FROM issued_constants WHERE identity_id = ?1 AND column_id = ?2 AND constant = ?3")?
        .query_row(params![identity_id, column_id, constant], |_| Ok(()))
        .optional()?
        .is_some())
}

impl Effect {
    fn check(&self, tx: &Connection, audits: &mut linear_audit::Batch<'_>) -> ApiResult<()> {
        match self {
            Effect::DistinctConstant {
                identity_id,
                column_id,
                column,
                constant,
                max: Some(max),
            } => {
                if already_issued(tx, *identity_id, *column_id, *constant)? {
                    return Ok(());
                }
                let n: i64 = tx
                    .prepare_cached("SELECT COUNT(*) FROM issued_constants WHERE identity_id = ?1 AND column_id = ?2")?
                    .query_row(params![identity_id, column_id], |r| r.get(0))?;
                if n as u64 >= *max {
                    return Err(ApiError::refused(
                        reason::MAX_CONSTANTS,
                        format!(
                            "tokens for {n} distinct constants of column '{column}' were already issued to \
                             this identity; the grant allows at most {max} (constant {constant} would be new)"
                        ),
                    ));
                }
                Ok(())
            }
            Effect::DistinctConstant { max: None, .. } => Ok(()),
            Effect::DistinctMatchConstant {
                identity_id,
                column_id,
                column,
                digest,
                max: Some(max),
            } => {
                use crate::join_domains as jd;
                if jd::already_issued(tx, *identity_id, *column_id, digest)? {
                    return Ok(());
                }
                let n = jd::issued_count(tx, *identity_id, *column_id)?;
                if n >= *max {
                    return Err(ApiError::refused(
                        reason::MAX_CONSTANTS,
                        format!(
                            "match tokens for {n} distinct constants of column '{column}' were already issued \
                             to this identity; the grant allows at most {max}"
                        ),
                    ));
                }
                Ok(())
            }
            Effect::DistinctMatchConstant { max: None, .. } => Ok(()),
            Effect::Budget {
                identity_id,
                dataset_id,
                dataset,
                request,
                cost,
            } => check_budget(tx, *identity_id, *dataset_id, dataset, request, cost),
            Effect::LinearAudit {
                identity_id,
                dataset_id,
                query,
            } => audits.check(tx, *identity_id, *dataset_id, query).map(|_| ()),
            Effect::ScoreSpan {
                identity_id,
                dataset_id,
                dataset,
                vector,
                max,
                names,
            } => crate::score_span::check(tx, *identity_id, *dataset_id, dataset, vector, *max, names),
            Effect::LinearAuditMany {
                identity_id,
                dataset_id,
                queries,
            } => audits.check_many(tx, *identity_id, *dataset_id, queries).map(|_| ()),
        }
    }

    fn apply(&self, tx: &Connection, audit_index: i64) -> ApiResult<()> {
        match self {
            Effect::DistinctConstant {
                identity_id,
                column_id,
                constant,
                ..
            } => {
                tx.prepare_cached(
                    "INSERT INTO issued_constants (identity_id, column_id, constant, first_audit)
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                )?
                .execute(params![identity_id, column_id, constant, audit_index])?;
                Ok(())
            }
            Effect::Budget {
                identity_id,
                dataset_id,
                request,
                cost,
                ..
            } => Ok(budget::charge(
                tx,
                *identity_id,
                *dataset_id,
                request,
                cost,
                audit_index,
            )?),
            Effect::DistinctMatchConstant {
                identity_id,
                column_id,
                digest,
                ..
            } => Ok(crate::join_domains::record_issued(
                tx,
                *identity_id,
                *column_id,
                digest,
                audit_index,
            )?),
            // remembered by the audit batch when checked; saved before the commit
            Effect::LinearAudit { .. } | Effect::LinearAuditMany { .. } => Ok(()),
            Effect::ScoreSpan {
                identity_id,
                dataset_id,
                vector,
                ..
            } => crate::score_span::remember(tx, *identity_id, *dataset_id, vector, audit_index),
        }
    }
}

/// Run every check of one descriptor; the first failure refuses it. The linear audit, which
/// remembers what it accepts, must come last (see `sum::plan`).
pub fn check_all(tx: &Connection, audits: &mut linear_audit::Batch<'_>, effects: &[Effect]) -> ApiResult<()> {
    effects.iter().try_for_each(|e| e.check(tx, audits))
}

/// Apply the updates of an issued descriptor (after its audit row, same transaction).
pub fn apply_all(tx: &Connection, effects: &[Effect], audit_index: i64) -> ApiResult<()> {
    effects.iter().try_for_each(|e| e.apply(tx, audit_index))
}
