use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::Value;

use crate::answer_keys::payload;

use crate::error::ApiResult;
use crate::extract::{ApiJson, Caller};
use crate::state::AppState;

#[derive(Deserialize)]
pub struct AnswerKeyRequest {
    requests: Vec<Value>,
}

/// `POST /v1/answer-keys`: one result per descriptor, in order; 200 even if some are refused.
/// With an `Idempotency-Key` header a retry gets the recorded results (see `idempotency`).
/// With `Accept: application/vnd.ghostpii.answers` the per-row byte fields come raw in a
/// binary frame (`answer_keys::payload`) instead of base64 in JSON.
pub async fn answer(
    State(st): State<AppState>,
    Caller(who): Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<AnswerKeyRequest>,
) -> ApiResult<Response> {
    st.limits().check_descriptors(req.requests.len())?;
    let key = crate::idempotency::key_from_headers(&headers)?;
    let answered = crate::answer_keys::answer(&st, who, req.requests, key).await?;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    if payload::wants_frame(accept) {
        // the body leaves the process as it is; the frame buffer itself is not copied again
        let frame = std::mem::take(&mut *answered.to_frame()?);
        return Ok(([(header::CONTENT_TYPE, payload::MEDIA_TYPE)], frame).into_response());
    }
    Ok(Json(answered.into_json()?).into_response())
}
