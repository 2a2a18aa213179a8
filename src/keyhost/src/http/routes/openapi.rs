//! `GET /v1/openapi.json` (no authentication): the OpenAPI 3.1 description of this API,
//! hand-written in `src/keyhost/openapi.json` and compiled into the binary.

use axum::http::header;
use axum::response::IntoResponse;

/// The OpenAPI document, as served.
pub const SPEC: &str = include_str!("../../../openapi.json");

/// `GET /v1/openapi.json`
pub async fn spec() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], SPEC)
}
