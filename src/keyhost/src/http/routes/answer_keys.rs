use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::Value;

use crate::answer_keys::{payload, Batch};

use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiBytes, ApiJson, Caller};
use crate::state::AppState;

#[derive(Deserialize)]
pub struct AnswerKeyRequest {
    requests: Vec<Value>,
}

/// The body of `POST /v1/answer-keys`: JSON, or with `Content-Type:
/// application/vnd.ghostpii.answers` a request frame whose rid sets may be raw blobs
/// (`answer_keys::wire`). Either is bounded by the body limit; malformed is 400.
pub struct AnswerKeyBody(Batch);

impl FromRequest<AppState> for AnswerKeyBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let framed = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(ghostpii_core::frame::is_media_type);
        if framed {
            let ApiBytes(body) = ApiBytes::from_request(req, state).await?;
            return Batch::from_frame(body).map(AnswerKeyBody);
        }
        let ApiJson(body) = ApiJson::<AnswerKeyRequest>::from_request(req, state).await?;
        Batch::from_json(body.requests).map(AnswerKeyBody)
    }
}

/// `POST /v1/answer-keys`: one result per descriptor, in order; 200 even if some are refused.
/// With an `Idempotency-Key` header a retry gets the recorded results (see `idempotency`).
/// With `Accept: application/vnd.ghostpii.answers` the per-row byte fields come raw in a
/// binary frame (`answer_keys::payload`) instead of base64 in JSON.
pub async fn answer(
    State(st): State<AppState>,
    Caller(who): Caller,
    headers: HeaderMap,
    AnswerKeyBody(batch): AnswerKeyBody,
) -> ApiResult<Response> {
    st.limits().check_descriptors(batch.requests.len())?;
    let key = crate::answer_keys::idempotency::key_from_headers(&headers)?;
    let answered = crate::answer_keys::answer(&st, who, batch, key).await?;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    if payload::wants_frame(accept) {
        // the body leaves the process as it is; the frame buffer itself is not copied again
        let frame = std::mem::take(&mut *answered.to_frame()?);
        return Ok(([(header::CONTENT_TYPE, payload::MEDIA_TYPE)], frame).into_response());
    }
    Ok(Json(answered.into_json()?).into_response())
}
