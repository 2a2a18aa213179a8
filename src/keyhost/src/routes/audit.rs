use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::guard;
use crate::audit::{self, Filter, NewEntry};
use crate::clock;
use crate::datasets;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiQuery, Caller};
use crate::policy;
use crate::state::AppState;

const DEFAULT_LIMIT: u32 = 1000;
const MAX_LIMIT: u32 = 100_000;

#[derive(Deserialize)]
pub struct AuditQuery {
    dataset: Option<String>,
    identity: Option<String>,
    since: Option<String>,
    limit: Option<u32>,
}

/// `GET /v1/audit`: admins read everything; owners the log of their datasets.
pub async fn list(
    State(st): State<AppState>,
    Caller(who): Caller,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<Value>> {
    st.db(move |conn, _| {
        let mut entry = NewEntry::new(&who, "audit.read");
        match &q.dataset {
            None => guard(
                conn,
                &entry,
                policy::require_admin(&who, "read the whole audit log (owners: pass ?dataset=NAME)"),
            )?,
            Some(name) => {
                let ds = datasets::require(conn, name)?;
                entry = entry.dataset(&ds.name);
                guard(conn, &entry, policy::require_manage(&who, &ds, "read the audit log"))?;
            }
        }
        let since = match &q.since {
            Some(s) => Some(
                clock::parse_rfc3339(s)
                    .ok_or_else(|| ApiError::invalid(format!("since must be an RFC 3339 time, not '{s}'")))?,
            ),
            None => None,
        };
        let filter = Filter {
            dataset: q.dataset,
            identity: q.identity,
            since,
            limit: q.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT),
        };
        Ok(Json(json!({"entries": audit::list(conn, &filter)?})))
    })
    .await
}

/// `GET /v1/audit/verify` (admin): recompute the hash chain.
pub async fn verify(State(st): State<AppState>, Caller(who): Caller) -> ApiResult<Json<Value>> {
    st.db(move |conn, _| {
        let entry = NewEntry::new(&who, "audit.verify");
        guard(conn, &entry, policy::require_admin(&who, "verify the audit log"))?;
        Ok(Json(json!(audit::verify(conn)?)))
    })
    .await
}
