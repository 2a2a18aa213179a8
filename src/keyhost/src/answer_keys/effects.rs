//! Stateful checks and ledger updates of answer keys, applied in the record transaction:
//! first every check of a descriptor ([`check_all`]), then — after its audit row — the
//! updates ([`apply_all`]). Running them under the same transaction as the audit row means a
//! limit can never be passed by two concurrent batches, and the ledgers always agree with the
//! audit log.

use std::sync::Arc;

use ghostpii_core::RidSet;
use rusqlite::{params, Connection, OptionalExtension};

use crate::budget;
use crate::dp::Cost;
use crate::error::{reason, ApiError, ApiResult};

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
    /// DP sum: debit `cost` from the identity's (ε, δ) account on the dataset, unless this
    /// exact request was charged before; refuse if the account's total would be exceeded.
    Budget {
        identity_id: i64,
        dataset_id: i64,
        dataset: String,
        request: String,
        cost: Cost,
    },
    /// Exact sum under a grant with `min_rows`: refuse if the rid set differs from one already
    /// answered to the identity on the column by fewer than `min_rows` rows (but not zero);
    /// remember the set once answered.
    Overlap {
        identity_id: i64,
        column_id: i64,
        column: String,
        rids: Arc<RidSet>,
        digest: String,
        min_rows: u64,
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

fn check_overlap(
    tx: &Connection,
    identity_id: i64,
    column_id: i64,
    column: &str,
    rids: &RidSet,
    min_rows: u64,
) -> ApiResult<()> {
    let mut st = tx.prepare_cached("SELECT rids FROM answered_sets WHERE identity_id = ?1 AND column_id = ?2")?;
    let mut rows = st.query(params![identity_id, column_id])?;
    let a = rids.len();
    while let Some(row) = rows.next()? {
        let bytes: Vec<u8> = row.get(0)?;
        let b = RidSet::from_bytes(&bytes).map_err(|e| ApiError::internal("stored rid set", &e))?;
        let common = rids.0.intersection_len(&b.0);
        let diff = a + b.len() - 2 * common;
        if diff > 0 && diff < min_rows {
            return Err(ApiError::refused(
                reason::OVERLAP,
                format!(
                    "this sum over {a} rows of column '{column}' differs from a sum already answered to this identity (over {} rows) by only {diff} rows; the grant requires row sets to differ by at least min_rows = {min_rows} (query-set overlap control against differencing)",
                    b.len()
                ),
            ));
        }
    }
    Ok(())
}

fn already_issued(tx: &Connection, identity_id: i64, column_id: i64, constant: i64) -> rusqlite::Result<bool> {
    Ok(tx
        .prepare_cached("SELECT 1 FROM issued_constants WHERE identity_id = ?1 AND column_id = ?2 AND constant = ?3")?
        .query_row(params![identity_id, column_id, constant], |_| Ok(()))
        .optional()?
        .is_some())
}

impl Effect {
    fn check(&self, tx: &Connection) -> ApiResult<()> {
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
            Effect::Budget {
                identity_id,
                dataset_id,
                dataset,
                request,
                cost,
            } => check_budget(tx, *identity_id, *dataset_id, dataset, request, cost),
            Effect::Overlap {
                identity_id,
                column_id,
                column,
                rids,
                min_rows,
                ..
            } => check_overlap(tx, *identity_id, *column_id, column, rids, *min_rows),
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
                    "INSERT OR IGNORE INTO issued_constants (identity_id, column_id, constant, first_audit)
                     VALUES (?1, ?2, ?3, ?4)",
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
            Effect::Overlap {
                identity_id,
                column_id,
                rids,
                digest,
                ..
            } => {
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO answered_sets (identity_id, column_id, digest, rid_count, rids)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![
                    identity_id,
                    column_id,
                    digest,
                    i64::try_from(rids.len()).unwrap_or(i64::MAX),
                    rids.to_bytes()
                ])?;
                Ok(())
            }
        }
    }
}

/// Run every check of one descriptor; the first failure refuses it.
pub fn check_all(tx: &Connection, effects: &[Effect]) -> ApiResult<()> {
    effects.iter().try_for_each(|e| e.check(tx))
}

/// Apply the updates of an issued descriptor (after its audit row, same transaction).
pub fn apply_all(tx: &Connection, effects: &[Effect], audit_index: i64) -> ApiResult<()> {
    effects.iter().try_for_each(|e| e.apply(tx, audit_index))
}
