//! The privacy budget ledger: one account per identity × dataset, in (ε, δ) terms, that caps
//! every DP mechanism (see `dp::accounting` for the composition).
//!
//! An account's total `(ε_T, δ_T)`: ε_T is what an admin or the owner set (`PUT /v1/budget`),
//! else the smallest effective budget among the identity's active DP aggregate grants on the
//! dataset (a grant's `budget`, or the keyhost default when it has none), else the keyhost
//! default; δ_T is the one set with the total, else the keyhost default. A DP answer is never
//! unlimited. Each distinct DP request is charged once (`budget_charges`); repeats get the same
//! noise and cost nothing. Charges are made in the transaction that writes the answer's audit row.

use crate::store::{params, Connection, OptionalExtension};
use serde_json::{json, Value};

use crate::domain::dp::{Cost, Spent};
use crate::store;

/// Keyhost default total ε of an identity on a dataset (`--default-dp-budget`).
pub const DEFAULT_EPSILON: f64 = 1.0;
/// Keyhost default total δ (`--default-dp-delta`).
pub const DEFAULT_DELTA: f64 = 1e-5;

const DEFAULT_EPSILON_KEY: &str = "dp_default_budget";
const DEFAULT_DELTA_KEY: &str = "dp_default_delta";

/// The keyhost's default budget, as configured when it started.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Defaults {
    pub epsilon: f64,
    pub delta: f64,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            epsilon: DEFAULT_EPSILON,
            delta: DEFAULT_DELTA,
        }
    }
}

impl Defaults {
    /// Refuse nonsensical defaults (at startup, with the option's name).
    pub fn validate(&self) -> Result<(), String> {
        if !(self.epsilon.is_finite() && self.epsilon > 0.0) {
            return Err(format!(
                "--default-dp-budget must be a positive number, not {}",
                self.epsilon
            ));
        }
        if !(self.delta > 0.0 && self.delta < 1.0) {
            return Err(format!("--default-dp-delta must be in (0, 1), not {}", self.delta));
        }
        Ok(())
    }
}

/// Record the configured defaults (at startup).
pub fn store_defaults(conn: &Connection, d: &Defaults) -> crate::store::Result<()> {
    store::meta_set(conn, DEFAULT_EPSILON_KEY, &d.epsilon.to_string())?;
    store::meta_set(conn, DEFAULT_DELTA_KEY, &d.delta.to_string())
}

pub fn defaults(conn: &Connection) -> crate::store::Result<Defaults> {
    let get = |k: &str, d: f64| -> crate::store::Result<f64> {
        Ok(store::meta_get(conn, k)?.and_then(|v| v.parse().ok()).unwrap_or(d))
    };
    Ok(Defaults {
        epsilon: get(DEFAULT_EPSILON_KEY, DEFAULT_EPSILON)?,
        delta: get(DEFAULT_DELTA_KEY, DEFAULT_DELTA)?,
    })
}

pub fn spent(conn: &Connection, identity_id: i64, dataset_id: i64) -> crate::store::Result<Spent> {
    Ok(conn
        .prepare_cached(
            "SELECT epsilon_sum, delta_sum, rho_sum, answers FROM budget_ledger
             WHERE identity_id = ?1 AND dataset_id = ?2",
        )?
        .query_row(params![identity_id, dataset_id], |r| {
            Ok(Spent {
                epsilon_sum: r.get(0)?,
                delta_sum: r.get(1)?,
                rho: r.get(2)?,
                answers: r.get(3)?,
            })
        })
        .optional()?
        .unwrap_or_default())
}

/// Where an account's total comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Set by an owner or admin (`PUT /v1/budget`).
    Set,
    /// The smallest `budget` of the identity's DP grants on the dataset.
    Grant,
    /// The keyhost default.
    Default,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Set => "set",
            Source::Grant => "grant",
            Source::Default => "keyhost_default",
        }
    }
}

/// The total of an account.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Total {
    pub epsilon: f64,
    pub delta: f64,
    pub source: Source,
}

fn explicit_total(
    conn: &Connection,
    identity_id: i64,
    dataset_id: i64,
) -> crate::store::Result<Option<(f64, Option<f64>)>> {
    Ok(conn
        .prepare_cached(
            "SELECT total_epsilon, total_delta FROM budget_ledger WHERE identity_id = ?1 AND dataset_id = ?2",
        )?
        .query_row(params![identity_id, dataset_id], |r| {
            Ok(r.get::<_, Option<f64>>(0)?
                .map(|e| (e, r.get::<_, Option<f64>>(1).ok().flatten())))
        })
        .optional()?
        .flatten())
}

/// The smallest effective budget (ε) among the identity's active DP aggregate grants on the
/// dataset, and whether it is a grant's own (`false`: the keyhost default).
fn grant_total(
    conn: &Connection,
    identity_id: i64,
    dataset_id: i64,
    default: f64,
) -> crate::store::Result<Option<(f64, bool)>> {
    let mut st = conn.prepare_cached(
        "SELECT params FROM grants WHERE identity_id = ?1 AND dataset_id = ?2 AND operation IN ('aggregate', 'moments')
         AND revoked_at IS NULL",
    )?;
    let rows = st.query_map(params![identity_id, dataset_id], |r| r.get::<_, String>(0))?;
    let mut best: Option<(f64, bool)> = None;
    for p in rows {
        let Ok(gp) = serde_json::from_str::<crate::domain::grants::GrantParams>(&p?) else {
            continue;
        };
        if gp.epsilon.is_none() {
            continue;
        }
        let t = gp.budget.map_or((default, false), |b| (b, true));
        if best.is_none_or(|(b, _)| t.0 < b) {
            best = Some(t);
        }
    }
    Ok(best)
}

/// The total of an account: always finite.
pub fn total(conn: &Connection, identity_id: i64, dataset_id: i64) -> crate::store::Result<Total> {
    let d = defaults(conn)?;
    if let Some((epsilon, delta)) = explicit_total(conn, identity_id, dataset_id)? {
        return Ok(Total {
            epsilon,
            delta: delta.unwrap_or(d.delta),
            source: Source::Set,
        });
    }
    let (epsilon, source) = match grant_total(conn, identity_id, dataset_id, d.epsilon)? {
        Some((e, true)) => (e, Source::Grant),
        Some((e, false)) => (e, Source::Default),
        None => (d.epsilon, Source::Default),
    };
    Ok(Total {
        epsilon,
        delta: d.delta,
        source,
    })
}

pub fn already_charged(
    conn: &Connection,
    identity_id: i64,
    dataset_id: i64,
    request: &str,
) -> crate::store::Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM budget_charges WHERE identity_id = ?1 AND dataset_id = ?2 AND request = ?3")?
        .query_row(params![identity_id, dataset_id, request], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Debit `cost` for `request` (once).
pub fn charge(
    conn: &Connection,
    identity_id: i64,
    dataset_id: i64,
    request: &str,
    cost: &Cost,
    audit_index: i64,
) -> crate::store::Result<()> {
    let n = conn
        .prepare_cached(
            "INSERT INTO budget_charges (identity_id, dataset_id, request, epsilon, delta, rho, audit_index)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
        )?
        .execute(params![
            identity_id,
            dataset_id,
            request,
            cost.epsilon,
            cost.delta,
            cost.rho,
            audit_index
        ])?;
    if n > 0 {
        conn.prepare_cached(
            "INSERT INTO budget_ledger (identity_id, dataset_id, epsilon_sum, delta_sum, rho_sum, answers)
             VALUES (?1, ?2, ?3, ?4, ?5, 1)
             ON CONFLICT(identity_id, dataset_id) DO UPDATE SET
             epsilon_sum = budget_ledger.epsilon_sum + excluded.epsilon_sum,
             delta_sum = budget_ledger.delta_sum + excluded.delta_sum,
             rho_sum = budget_ledger.rho_sum + excluded.rho_sum,
             answers = budget_ledger.answers + 1",
        )?
        .execute(params![identity_id, dataset_id, cost.epsilon, cost.delta, cost.rho])?;
    }
    Ok(())
}

/// Number of DP charges recorded on this keyhost (any identity, any dataset).
pub fn charges_recorded(conn: &Connection) -> crate::store::Result<i64> {
    conn.query_row("SELECT COUNT(*) FROM budget_charges", (), |r| r.get(0))
}

/// Set the total of an account (keeps what was spent). `delta: None` uses the keyhost default.
pub fn set_total(
    conn: &Connection,
    identity_id: i64,
    dataset_id: i64,
    epsilon: f64,
    delta: Option<f64>,
) -> crate::store::Result<()> {
    conn.execute(
        "INSERT INTO budget_ledger (identity_id, dataset_id, total_epsilon, total_delta) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(identity_id, dataset_id) DO UPDATE SET total_epsilon = excluded.total_epsilon,
         total_delta = excluded.total_delta",
        params![identity_id, dataset_id, epsilon, delta],
    )?;
    Ok(())
}

/// Forget what was spent; a total set explicitly is kept.
pub fn reset(conn: &Connection, identity_id: i64, dataset_id: i64) -> crate::store::Result<()> {
    conn.execute(
        "UPDATE budget_ledger SET epsilon_sum = 0, delta_sum = 0, rho_sum = 0, answers = 0
         WHERE identity_id = ?1 AND dataset_id = ?2",
        params![identity_id, dataset_id],
    )?;
    conn.execute(
        "DELETE FROM budget_charges WHERE identity_id = ?1 AND dataset_id = ?2",
        params![identity_id, dataset_id],
    )?;
    Ok(())
}

/// The effective total as grant listings show it.
pub fn total_json(t: &Total) -> Value {
    json!({"epsilon": t.epsilon, "delta": t.delta, "source": t.source.as_str()})
}

/// The state of the account, as `GET /v1/budget` shows it.
pub fn state_json(
    conn: &Connection,
    identity: &str,
    identity_id: i64,
    dataset: &str,
    dataset_id: i64,
) -> crate::store::Result<Value> {
    let s = spent(conn, identity_id, dataset_id)?;
    let t = total(conn, identity_id, dataset_id)?;
    let e = s.epsilon(t.delta);
    Ok(json!({
        "dataset": dataset,
        "identity": identity,
        "epsilon_spent": e,
        "epsilon_total": t.epsilon,
        "remaining": (t.epsilon - e).max(0.0),
        "delta": t.delta,
        "total_source": t.source.as_str(),
        "answers": s.answers,
        "accounting": {
            "basic": {"epsilon": s.epsilon_sum, "delta": s.delta_sum},
            "zcdp": {"rho": s.rho, "epsilon": s.zcdp_epsilon(t.delta)},
        },
    }))
}
