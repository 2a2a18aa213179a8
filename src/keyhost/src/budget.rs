//! The privacy budget ledger: per identity × dataset, one account per unit (`epsilon` for
//! discrete-Laplace answers, `rho` for discrete-Gaussian/zCDP answers).
//!
//! An account's total is the one an admin or the owner set (`PUT /v1/budget`), else the
//! smallest `budget` among the identity's active DP aggregate grants on the dataset of that
//! unit (a Gaussian grant's budget, given in ε, converted to ρ with its δ), else unlimited.
//! Each distinct DP request is charged once (`budget_charges`); repeats get the same noise and
//! cost nothing. Charges are made in the transaction that writes the answer's audit row.

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Value};

use crate::dp::{Mechanism, Unit};

/// Slack for floating-point sums of costs.
const EPS: f64 = 1e-9;

pub fn spent(conn: &Connection, identity_id: i64, dataset_id: i64, unit: Unit) -> rusqlite::Result<f64> {
    Ok(conn
        .prepare_cached("SELECT spent FROM budget_ledger WHERE identity_id = ?1 AND dataset_id = ?2 AND unit = ?3")?
        .query_row(params![identity_id, dataset_id, unit.as_str()], |r| r.get(0))
        .optional()?
        .unwrap_or(0.0))
}

fn explicit_total(conn: &Connection, identity_id: i64, dataset_id: i64, unit: Unit) -> rusqlite::Result<Option<f64>> {
    Ok(conn
        .prepare_cached("SELECT total FROM budget_ledger WHERE identity_id = ?1 AND dataset_id = ?2 AND unit = ?3")?
        .query_row(params![identity_id, dataset_id, unit.as_str()], |r| {
            r.get::<_, Option<f64>>(0)
        })
        .optional()?
        .flatten())
}

/// The smallest budget (in `unit`) among active DP aggregate grants of the identity on the dataset.
fn grant_total(conn: &Connection, identity_id: i64, dataset_id: i64, unit: Unit) -> rusqlite::Result<Option<f64>> {
    let mut st = conn.prepare_cached(
        "SELECT params FROM grants WHERE identity_id = ?1 AND dataset_id = ?2 AND operation = 'aggregate'
         AND revoked_at IS NULL",
    )?;
    let rows = st.query_map(params![identity_id, dataset_id], |r| r.get::<_, String>(0))?;
    let mut best: Option<f64> = None;
    for p in rows {
        let Ok(gp) = serde_json::from_str::<crate::grants::GrantParams>(&p?) else {
            continue;
        };
        let (Some(eps), Some(b)) = (gp.epsilon, gp.budget) else {
            continue;
        };
        let m = Mechanism::new(eps, gp.delta);
        if m.cost().0 != unit {
            continue;
        }
        let t = m.budget_in_unit(b);
        best = Some(best.map_or(t, |x: f64| x.min(t)));
    }
    Ok(best)
}

/// The total of an account, if it is limited.
pub fn total(conn: &Connection, identity_id: i64, dataset_id: i64, unit: Unit) -> rusqlite::Result<Option<f64>> {
    match explicit_total(conn, identity_id, dataset_id, unit)? {
        Some(t) => Ok(Some(t)),
        None => grant_total(conn, identity_id, dataset_id, unit),
    }
}

pub fn already_charged(conn: &Connection, identity_id: i64, dataset_id: i64, request: &str) -> rusqlite::Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM budget_charges WHERE identity_id = ?1 AND dataset_id = ?2 AND request = ?3")?
        .query_row(params![identity_id, dataset_id, request], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Whether spending `cost` more stays within `total`.
pub fn fits(spent: f64, cost: f64, total: Option<f64>) -> bool {
    total.is_none_or(|t| spent + cost <= t + EPS)
}

/// Debit `cost` for `request` (once).
pub fn charge(
    conn: &Connection,
    identity_id: i64,
    dataset_id: i64,
    request: &str,
    unit: Unit,
    cost: f64,
    audit_index: i64,
) -> rusqlite::Result<()> {
    let n = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO budget_charges (identity_id, dataset_id, request, unit, cost, audit_index)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            identity_id,
            dataset_id,
            request,
            unit.as_str(),
            cost,
            audit_index
        ])?;
    if n > 0 {
        conn.prepare_cached(
            "INSERT INTO budget_ledger (identity_id, dataset_id, unit, spent) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(identity_id, dataset_id, unit) DO UPDATE SET spent = spent + excluded.spent",
        )?
        .execute(params![identity_id, dataset_id, unit.as_str(), cost])?;
    }
    Ok(())
}

/// Set the total of an account (keeps what was spent).
pub fn set_total(conn: &Connection, identity_id: i64, dataset_id: i64, unit: Unit, total: f64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO budget_ledger (identity_id, dataset_id, unit, spent, total) VALUES (?1, ?2, ?3, 0, ?4)
         ON CONFLICT(identity_id, dataset_id, unit) DO UPDATE SET total = excluded.total",
        params![identity_id, dataset_id, unit.as_str(), total],
    )?;
    Ok(())
}

/// Forget what was spent (both units); totals set explicitly are kept.
pub fn reset(conn: &Connection, identity_id: i64, dataset_id: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE budget_ledger SET spent = 0 WHERE identity_id = ?1 AND dataset_id = ?2",
        params![identity_id, dataset_id],
    )?;
    conn.execute(
        "DELETE FROM budget_charges WHERE identity_id = ?1 AND dataset_id = ?2",
        params![identity_id, dataset_id],
    )?;
    Ok(())
}

/// The state of both accounts, as `GET /v1/budget` shows it.
pub fn state_json(
    conn: &Connection,
    identity: &str,
    identity_id: i64,
    dataset: &str,
    dataset_id: i64,
) -> rusqlite::Result<Value> {
    let mut out = json!({"dataset": dataset, "identity": identity});
    for unit in [Unit::Epsilon, Unit::Rho] {
        let s = spent(conn, identity_id, dataset_id, unit)?;
        let t = total(conn, identity_id, dataset_id, unit)?;
        let u = unit.as_str();
        out[format!("{u}_spent")] = json!(s);
        out[format!("{u}_total")] = json!(t);
        let remaining = t.map(|t| (t - s).max(0.0));
        out[if unit == Unit::Epsilon {
            "remaining".to_owned()
        } else {
            "rho_remaining".to_owned()
        }] = json!(remaining);
    }
    Ok(out)
}
