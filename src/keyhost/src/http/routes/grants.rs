use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::guard;
use crate::clock;
use crate::domain::audit::{self, NewEntry};
use crate::domain::budget;
use crate::domain::datasets;
use crate::domain::grant_params;
use crate::domain::grants::{self, Operation};
use crate::domain::identities;
use crate::domain::orgs;
use crate::domain::policy;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{path_id, ApiJson, ApiQuery, Caller};
use crate::state::AppState;

#[derive(Deserialize)]
pub struct CreateGrant {
    identity: String,
    dataset: String,
    /// The dataset's owner, when several visible datasets share the name.
    #[serde(default)]
    owner: Option<String>,
    column: String,
    operation: String,
    #[serde(default)]
    params: Option<Value>,
}

/// `POST /v1/grants` (owner of the dataset or admin)
pub async fn create(
    State(st): State<AppState>,
    Caller(who): Caller,
    ApiJson(req): ApiJson<CreateGrant>,
) -> ApiResult<Json<Value>> {
    st.db(move |conn, _| {
        let mut entry = NewEntry::new(&who, "grant.create")
            .dataset(&req.dataset)
            .column(&req.column)
            .params(json!({"identity": req.identity, "operation": req.operation, "params": req.params}));
        guard(conn, &entry, policy::require_owner_role(&who, "manage grants"))?;
        let found = datasets::resolve(conn, &who, &req.dataset, req.owner.as_deref());
        let ds = super::guard_found(conn, &entry, found)?;
        entry.set_dataset(&ds);
        guard(conn, &entry, policy::require_manage(&who, &ds, "manage grants"))?;
        let found = orgs::resolve(conn, &who, &req.identity);
        let grantee = super::guard_found(conn, &entry, found)?;
        if let Some(org) = crate::domain::orgs::org_of(&grantee) {
            entry.add_reader(org);
        }
        let op = Operation::parse(&req.operation).ok_or_else(|| {
            ApiError::invalid(format!(
                "operation must be one of {}, not '{}'",
                Operation::names(),
                req.operation
            ))
        })?;
        identities::validate_name("column", &req.column)?;
        let gp = grant_params::build(conn, &ds, &req.column, op, req.params.clone())?;
        let tx = conn.transaction()?;
        let grant_id = grants::insert(&tx, grantee.id, ds.id, &req.column, op, &gp)?;
        entry.params = json!({"grant_id": grant_id, "identity": grantee.name, "operation": op, "params": gp});
        audit::append(&tx, entry)?;
        tx.commit()?;
        Ok(Json(json!({
            "grant_id": grant_id,
            "identity": grantee.name,
            "dataset": ds.name,
            "column": req.column,
            "operation": op,
            "params": gp,
            "created_at": clock::format_rfc3339(clock::now_micros()),
        })))
    })
    .await
}

#[derive(Deserialize)]
pub struct GrantFilter {
    dataset: Option<String>,
    identity: Option<String>,
}

/// `GET /v1/grants?dataset=&identity=`: admins see all, others the grants on datasets they
/// own and their own grants.
pub async fn list(
    State(st): State<AppState>,
    Caller(who): Caller,
    ApiQuery(q): ApiQuery<GrantFilter>,
) -> ApiResult<Json<Value>> {
    st.db(move |conn, _| {
        let visible_to = if policy::is_admin(&who) { None } else { Some(who.id) };
        // an owner names its own identities by their short name (`worker` for `clinic/worker`)
        let identity = q.identity.as_deref().map(|n| {
            orgs::resolve(conn, &who, n)
                .map(|i| i.name)
                .unwrap_or_else(|_| n.to_owned())
        });
        let list = grants::list(conn, q.dataset.as_deref(), identity.as_deref(), visible_to)?;
        let mut out = Vec::with_capacity(list.len());
        for g in &list {
            let mut v = json!(g);
            if matches!(g.operation, Operation::Aggregate | Operation::Moments) && g.params.epsilon.is_some() {
                // The (ε, δ) total this DP grant's answers are charged against, wherever it comes from.
                let who = identities::require(conn, &g.identity)?;
                v["effective_budget"] = budget::total_json(&budget::total(conn, who.id, g.dataset_id)?);
            }
            out.push(v);
        }
        Ok(Json(json!({"grants": out})))
    })
    .await
}

/// What `DELETE /v1/grants/{grant_id}` answers.
#[derive(Debug, Serialize)]
pub struct Revoked {
    pub revoked: bool,
}

/// `DELETE /v1/grants/{grant_id}` (owner of the dataset or admin)
pub async fn revoke(
    State(st): State<AppState>,
    Caller(who): Caller,
    Path(grant_id): Path<String>,
) -> ApiResult<Json<Revoked>> {
    let grant_id = path_id("grant_id", &grant_id)?;
    st.db(move |conn, _| {
        let unknown = || ApiError::not_found(format!("grant {grant_id} does not exist (or was revoked)"));
        let grant = grants::find(conn, grant_id)?.ok_or_else(unknown)?;
        let ds = datasets::find_by_id(conn, grant.dataset_id)?
            .ok_or_else(|| ApiError::internal("grant", &"grant without dataset"))?;
        let entry = NewEntry::new(&who, "grant.revoke")
            .on(&ds)
            .column(&grant.column)
            .params(json!({"grant_id": grant_id, "identity": grant.identity, "operation": grant.operation}));
        // a grant on another owner's dataset is refused as an unknown one (grant ids are sequential)
        let visible = policy::can_manage(&who, &ds) || grant.identity == who.name;
        guard(
            conn,
            &entry,
            if visible {
                policy::require_manage(&who, &ds, "manage grants")
            } else {
                Err(unknown())
            },
        )?;
        let tx = conn.transaction()?;
        grants::revoke(&tx, grant_id)?;
        audit::append(&tx, entry)?;
        tx.commit()?;
        Ok(Json(Revoked { revoked: true }))
    })
    .await
}
