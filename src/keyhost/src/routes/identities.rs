use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::guard;
use crate::audit::{self, NewEntry};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, Caller};
use crate::identities::{self, Role};
use crate::policy;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct CreateIdentity {
    name: String,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    exist_ok: bool,
}

/// `POST /v1/identities` (admin)
pub async fn create(
    State(st): State<AppState>,
    Caller(who): Caller,
    ApiJson(req): ApiJson<CreateIdentity>,
) -> ApiResult<Json<Value>> {
    st.db(move |conn, _| {
        let role_s = req.role.as_deref().unwrap_or("member");
        let entry = NewEntry::new(&who, "identity.create").params(json!({"name": req.name, "role": role_s}));
        guard(conn, &entry, policy::require_admin(&who, "create identities"))?;
        identities::validate_name("identity", &req.name)?;
        let role = Role::parse(role_s)
            .ok_or_else(|| ApiError::invalid(format!("role must be 'member', 'owner' or 'admin', not '{role_s}'")))?;
        let tx = conn.transaction()?;
        let ident = match identities::find_by_name(&tx, &req.name)? {
            Some(existing) if req.exist_ok => existing,
            Some(_) => return Err(ApiError::conflict(format!("identity '{}' already exists", req.name))),
            None => {
                let ident = identities::insert(&tx, &req.name, role)?;
                audit::append(&tx, entry)?;
                ident
            }
        };
        tx.commit()?;
        Ok(Json(json!({"id": ident.id, "name": ident.name, "role": ident.role})))
    })
    .await
}

/// `GET /v1/identities` (admin)
pub async fn list(State(st): State<AppState>, Caller(who): Caller) -> ApiResult<Json<Value>> {
    st.db(move |conn, _| {
        let entry = NewEntry::new(&who, "identity.list");
        guard(conn, &entry, policy::require_admin(&who, "list identities"))?;
        Ok(Json(json!({"identities": identities::list(conn)?})))
    })
    .await
}
