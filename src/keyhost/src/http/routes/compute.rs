//! `PUT /v1/fhe/server-key` (the caller's FHE server key, a binary body) and `POST
//! /v1/compute` (a row-wise circuit over FHE ciphertexts, a request frame), see
//! `answer_keys/compute.rs` and `docs/rowwise.md`.
//!
//! Both read their body themselves, with limits of their own: a server key is about 106 MB
//! (over the API's general body limit), a compute request's ciphertexts about 240 bytes per
//! 8-bit input and row.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::error::{reason, ApiError, ApiResult};
use crate::http::extract::Caller;
use crate::state::AppState;

/// Largest compute request body.
const MAX_COMPUTE_BODY: usize = 1 << 30;

async fn body(req: Request, limit: usize, what: &str) -> ApiResult<axum::body::Bytes> {
    axum::body::to_bytes(req.into_body(), limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            reason::REQUEST_TOO_LARGE,
            format!("the {what} is over {limit} bytes (or was cut off)"),
        )
    })
}

/// `PUT /v1/fhe/server-key`: store the caller's compressed FHE server key (tfhe's safe
/// serialisation) for its computations; replaces a previous one.
pub async fn upload_server_key(
    State(st): State<AppState>,
    Caller(who): Caller,
    req: Request,
) -> ApiResult<Json<Value>> {
    let bytes = body(req, ghostpii_fhe::SERVER_KEY_LIMIT as usize, "server key").await?;
    let n = bytes.len();
    st.fhe_keys().check_room(who.id, n)?;
    let key = st
        .blocking(move || {
            ghostpii_fhe::ServerKey::from_bytes(&bytes)
                .map_err(|e| ApiError::invalid(format!("{e}; upload the key ghostpii's FHE client wrote")))
        })
        .await?;
    st.fhe_keys().insert(who.id, key)?;
    Ok(Json(
        json!({"ok": true, "bytes": n, "ttl_secs": st.fhe_keys().ttl().as_secs()}),
    ))
}

/// `POST /v1/compute`: evaluate a circuit; the answer is a frame whose JSON names the receipt
/// and whose one blob holds the results (a compressed list under the caller's key).
pub async fn compute(State(st): State<AppState>, Caller(who): Caller, req: Request) -> ApiResult<Response> {
    let bytes = body(req, MAX_COMPUTE_BODY, "compute request").await?;
    let (answer, results) = crate::answer_keys::compute::answer(&st, who, bytes).await?;
    let frame = ghostpii_core::frame::encode(&answer, &[&results])
        .map_err(|e| ApiError::internal("compute answer frame", &e))?;
    Ok(([(header::CONTENT_TYPE, ghostpii_core::frame::MEDIA_TYPE)], frame).into_response())
}
