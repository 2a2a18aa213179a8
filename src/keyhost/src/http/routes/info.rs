use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::http::extract::Caller;
use crate::state::AppState;

/// `GET /v1/info` (no authentication).
pub async fn info(State(st): State<AppState>) -> Json<Value> {
    Json(json!({"keyhost_id": st.keyhost_id(), "version": env!("CARGO_PKG_VERSION")}))
}

/// `GET /v1/whoami`
pub async fn whoami(State(st): State<AppState>, Caller(who): Caller) -> Json<Value> {
    Json(json!({"identity": who.name, "role": who.role, "keyhost_id": st.keyhost_id()}))
}
