use axum::extract::State;
use axum::http::HeaderMap;
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
/// With an `Idempotency-Key` header a retry gets the recorded results (see `idempotency`).
pub async fn answer(
    State(st): State<AppState>,
    Caller(who): Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<AnswerKeyRequest>,
) -> ApiResult<Json<Value>> {
    st.limits().check_descriptors(req.requests.len())?;
    let key = crate::idempotency::key_from_headers(&headers)?;
    let results = crate::answer_keys::answer(&st, who, req.requests, key).await?;
    Ok(Json(json!({"results": results})))
}
