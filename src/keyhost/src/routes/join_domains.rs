//! `POST /v1/join-domains` (owner or admin): create a join domain (or fetch it with `exist_ok`).

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::guard;
use crate::audit::{self, NewEntry};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, Caller};
use crate::state::AppState;
use crate::{identities, join_domains, policy};

#[derive(Deserialize)]
pub struct CreateJoinDomain {
    name: String,
    #[serde(default)]
    exist_ok: bool,
}

pub async fn create(
    State(st): State<AppState>,
    Caller(who): Caller,
    ApiJson(req): ApiJson<CreateJoinDomain>,
) -> ApiResult<Json<Value>> {
    st.db(move |conn, st| {
        let entry = NewEntry::new(&who, "join_domain.create");
        guard(conn, &entry, policy::require_create_dataset(&who))?;
        identities::validate_name("join domain", &req.name)?;
        let tx = conn.transaction()?;
        let d = match join_domains::find_by_name(&tx, &req.name)? {
            Some(d) if req.exist_ok => d,
            Some(_) => return Err(ApiError::conflict(format!("join domain '{}' already exists", req.name))),
            None => {
                let d = join_domains::insert(&tx, st.master(), &req.name, &who.name)?;
                audit::append(
                    &tx,
                    entry.params(json!({"join_domain": d.name, "join_domain_id": d.id})),
                )?;
                d
            }
        };
        tx.commit()?;
        Ok(Json(json!({"id": d.id, "name": d.name})))
    })
    .await
}
