//! Stateful checks and ledger updates of answer keys, applied in the record transaction:
//! first every check of a descriptor ([`check_all`]), then — after its audit row — the
//! updates ([`apply_all`]). Running them under the same transaction as the audit row means a
//! limit can never be passed by two concurrent batches, and the ledgers always agree with the
//! audit log.

use std::sync::Arc;

use crate::store::{params, Connection, OptionalExtension};

use crate::domain::budget;
use crate::domain::dp::Cost;
use crate::domain::linear_audit;
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
        /// The descriptor's rows, when one row set covers it (for parallel composition across
        /// the descriptors of one batch, [`plan_batch_budget`]); `None`: composed sequentially.
        rows: Option<Arc<ghostpii_core::RidSet>>,
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

fn already_issued(tx: &Connection, identity_id: i64, column_id: i64, constant: i64) -> crate::store::Result<bool> {
    Ok(tx
        .prepare_cached("SELECT 1 FROM issued_constants WHERE identity_id = ?1 AND column_id = ?2 AND constant = ?3")?
        .query_row(params![identity_id, column_id, constant], |_| Ok(()))
        .optional()?
        .is_some())
}

impl Effect {
    /// The count of one distinct constant (by digest) of a match, search or similarity token
    /// against `max` per identity × column, for a caller that holds a grant (an owner's or
    /// admin's own tokens are not counted): `None` otherwise.
    pub fn match_constant(
        auth: &crate::domain::policy::Authority,
        identity_id: i64,
        column: &crate::domain::columns::Column,
        digest: String,
        max: Option<u64>,
    ) -> Option<Effect> {
        matches!(auth, crate::domain::policy::Authority::Grant { .. }).then(|| Effect::DistinctMatchConstant {
            identity_id,
            column_id: column.id,
            column: column.name.clone(),
            digest,
            max,
        })
    }

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
                use crate::domain::join_domains as jd;
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
                ..
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
            } => crate::domain::score_span::check(tx, *identity_id, *dataset_id, dataset, vector, *max, names),
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
            } => Ok(crate::domain::join_domains::record_issued(
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
            } => crate::domain::score_span::remember(tx, *identity_id, *dataset_id, vector, audit_index),
        }
    }
}

/// The DP charges of one batch (one request's descriptors), decided together before any is
/// applied: per identity × dataset, the not-yet-charged requests (each once) cost the
/// component-wise largest of their costs when their row sets are pairwise disjoint (parallel
/// composition: under replace-one neighbours a row moves only the answer whose rows hold it),
/// else the sum of their costs. If that total does not fit the account, every one of those
/// descriptors is refused and nothing is charged (all or nothing). Returns per descriptor
/// (index into `batch`) the refusal, if any, and per account the total of a parallel group:
/// its members' costs are set to zero in `batch` and the first of them that is issued carries
/// the total ([`carry_parallel_total`]); the others are still recorded as charged, so a replay
/// is free and answers the same.
pub type Pending = std::collections::HashMap<(i64, i64), Cost>;

pub fn plan_batch_budget(
    tx: &Connection,
    batch: &mut [Option<&mut Vec<Effect>>],
) -> ApiResult<(Vec<Option<ApiError>>, Pending)> {
    let mut pending = Pending::new();
    use std::collections::{BTreeMap, HashSet};
    let mut refusals: Vec<Option<ApiError>> = vec![None; batch.len()];
    // (identity, dataset) → [(descriptor, effect index)]
    let mut by_account: BTreeMap<(i64, i64), Vec<(usize, usize)>> = BTreeMap::new();
    let mut seen: HashSet<(i64, i64, String)> = HashSet::new();
    for (i, effects) in batch.iter().enumerate() {
        let Some(effects) = effects else { continue };
        for (j, e) in effects.iter().enumerate() {
            if let Effect::Budget {
                identity_id,
                dataset_id,
                request,
                ..
            } = e
            {
                if !seen.insert((*identity_id, *dataset_id, request.clone()))
                    || budget::already_charged(tx, *identity_id, *dataset_id, request)?
                {
                    continue;
                }
                by_account.entry((*identity_id, *dataset_id)).or_default().push((i, j));
            }
        }
    }
    for ((identity_id, dataset_id), members) in by_account {
        let budget_of = |i: usize, j: usize| -> (&Cost, Option<&Arc<ghostpii_core::RidSet>>, &str) {
            match &batch[i].as_ref().expect("listed")[j] {
                Effect::Budget {
                    cost, rows, dataset, ..
                } => (cost, rows.as_ref(), dataset.as_str()),
                _ => unreachable!("listed as a budget effect"),
            }
        };
        let dataset = budget_of(members[0].0, members[0].1).2.to_owned();
        let mut disjoint = members.len() > 1;
        let mut union = roaring::RoaringTreemap::new();
        for &(i, j) in &members {
            match budget_of(i, j).1 {
                Some(r) if disjoint && union.intersection_len(&r.0) == 0 => union |= &r.0,
                _ => {
                    disjoint = false;
                    break;
                }
            }
        }
        let total = members.iter().fold(Cost::default(), |t, &(i, j)| {
            let c = budget_of(i, j).0;
            if disjoint {
                Cost {
                    epsilon: t.epsilon.max(c.epsilon),
                    delta: t.delta.max(c.delta),
                    rho: t.rho.max(c.rho),
                }
            } else {
                Cost {
                    epsilon: t.epsilon + c.epsilon,
                    delta: t.delta + c.delta,
                    rho: t.rho + c.rho,
                }
            }
        });
        let request = format!("batch of {} DP answers", members.len());
        if let Err(e) = check_budget(tx, identity_id, dataset_id, &dataset, &request, &total) {
            let e = ApiError {
                message: format!(
                    "{} (the {} DP answers of this request are refused together; nothing was charged)",
                    e.message,
                    members.len()
                ),
                ..e
            };
            for &(i, _) in &members {
                refusals[i] = Some(e.clone());
            }
            continue;
        }
        if disjoint {
            for &(i, j) in &members {
                if let Some(Effect::Budget { cost, .. }) = batch[i].as_mut().and_then(|v| v.get_mut(j)) {
                    *cost = Cost::default();
                }
            }
            pending.insert((identity_id, dataset_id), total);
        }
    }
    Ok((refusals, pending))
}

/// Before an issued descriptor's effects are applied: the first descriptor of a parallel group
/// to be issued carries the group's total charge.
pub fn carry_parallel_total(effects: &mut [Effect], pending: &mut Pending) {
    for e in effects {
        if let Effect::Budget {
            identity_id,
            dataset_id,
            cost,
            ..
        } = e
        {
            if let Some(t) = pending.remove(&(*identity_id, *dataset_id)) {
                *cost = t;
            }
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
