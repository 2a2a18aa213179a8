use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiResult;
use crate::extract::{ApiJson, Caller};
use crate::state::AppState;

#[derive(Deserialize)]
pub struct AnswerKeyRequest {
    requests: Vec<Value>,
}

/// `POST /v1/answer-keys`: one result per descriptor, in order; 200 even if some are refused.
pub async fn answer(
    State(st): State<AppState>,
    Caller(who): Caller,
    ApiJson(req): ApiJson<AnswerKeyRequest>,
) -> ApiResult<Json<Value>> {
    st.limits().check_descriptors(req.requests.len())?;
    let results = crate::answer_keys::answer(&st, who, req.requests).await?;
    Ok(Json(json!({"results": results})))
}
