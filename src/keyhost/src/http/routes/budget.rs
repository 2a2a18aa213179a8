use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::guard;
use crate::domain::audit::{self, NewEntry};
use crate::domain::budget;
use crate::domain::datasets;
use crate::domain::orgs;
use crate::domain::policy;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiQuery, Caller};
use crate::state::AppState;

#[derive(Deserialize)]
pub struct BudgetQuery {
    dataset: String,
    /// Another identity's state (owner of the dataset or admin only).
    identity: Option<String>,
}

/// `GET /v1/budget?dataset=NAME[&identity=NAME]`: the caller's own budget state on the
/// dataset (or another identity's, for the dataset's owner and admins).
pub async fn show(
    State(st): State<AppState>,
    Caller(who): Caller,
    ApiQuery(q): ApiQuery<BudgetQuery>,
) -> ApiResult<Json<Value>> {
    st.db(move |conn, _| {
        let ds = datasets::resolve(conn, &who, &q.dataset, None)?;
        let target = match q.identity.as_deref() {
            Some(name) if name != who.name => {
                let entry = NewEntry::new(&who, "budget.read").on(&ds);
                guard(
                    conn,
                    &entry,
                    policy::require_manage(&who, &ds, "read other identities' budgets"),
                )?;
                orgs::resolve(conn, &who, name)?
            }
            _ => who.clone(),
        };
        Ok(Json(budget::state_json(
            conn,
            &target.name,
            target.id,
            &ds.name,
            ds.id,
        )?))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetBudget {
    identity: String,
    dataset: String,
    /// Total ε of every DP answer on the dataset, all mechanisms together.
    total: f64,
    /// δ of the total (default: the keyhost's `--default-dp-delta`).
    #[serde(default)]
    delta: Option<f64>,
}

/// `PUT /v1/budget {"identity", "dataset", "total", "delta"?}` (owner of the dataset or admin).
pub async fn set(
    State(st): State<AppState>,
    Caller(who): Caller,
    ApiJson(req): ApiJson<SetBudget>,
) -> ApiResult<Json<Value>> {
    st.db(move |conn, _| {
        let mut entry = NewEntry::new(&who, "budget.set")
            .dataset(&req.dataset)
            .params(json!({"identity": req.identity, "total": req.total, "delta": req.delta}));
        guard(conn, &entry, policy::require_owner_role(&who, "set budgets"))?;
        let found = datasets::resolve(conn, &who, &req.dataset, None);
        let ds = super::guard_found(conn, &entry, found)?;
        entry.set_dataset(&ds);
        guard(conn, &entry, policy::require_manage(&who, &ds, "set budgets"))?;
        if !(req.total.is_finite() && req.total >= 0.0) {
            return Err(ApiError::invalid(format!(
                "total must be a non-negative number (ε), not {}",
                req.total
            )));
        }
        if let Some(d) = req.delta {
            if !(d > 0.0 && d < 1.0) {
                return Err(ApiError::invalid(format!("delta must be in (0, 1), not {d}")));
            }
        }
        let target = orgs::resolve(conn, &who, &req.identity)?;
        let tx = conn.transaction()?;
        budget::set_total(&tx, target.id, ds.id, req.total, req.delta)?;
        audit::append(&tx, entry)?;
        let state = budget::state_json(&tx, &target.name, target.id, &ds.name, ds.id)?;
        tx.commit()?;
        Ok(Json(state))
    })
    .await
}

#[derive(Deserialize)]
pub struct ResetBudget {
    identity: String,
    dataset: String,
}

/// `POST /v1/budget/reset {"identity", "dataset"}` (owner of the dataset or admin): spent → 0.
pub async fn reset(
    State(st): State<AppState>,
    Caller(who): Caller,
    ApiJson(req): ApiJson<ResetBudget>,
) -> ApiResult<Json<Value>> {
    st.db(move |conn, _| {
        let mut entry = NewEntry::new(&who, "budget.reset")
            .dataset(&req.dataset)
            .params(json!({"identity": req.identity}));
        guard(conn, &entry, policy::require_owner_role(&who, "reset budgets"))?;
        let found = datasets::resolve(conn, &who, &req.dataset, None);
        let ds = super::guard_found(conn, &entry, found)?;
        entry.set_dataset(&ds);
        guard(conn, &entry, policy::require_manage(&who, &ds, "reset budgets"))?;
        let target = orgs::resolve(conn, &who, &req.identity)?;
        let tx = conn.transaction()?;
        let before = budget::state_json(&tx, &target.name, target.id, &ds.name, ds.id)?;
        budget::reset(&tx, target.id, ds.id)?;
        entry.params = json!({"identity": target.name, "before": before});
        audit::append(&tx, entry)?;
        let state = budget::state_json(&tx, &target.name, target.id, &ds.name, ds.id)?;
        tx.commit()?;
        Ok(Json(state))
    })
    .await
}
