//! HTTP routes of the keyhost API (`/v1/...`). See ARCHITECTURE.md and the crate docs for
//! the contract.

mod answer_keys;
mod audit;
mod budget;
mod datasets;
mod grants;
mod identities;
mod info;
mod tokens;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use axum::Router;
use rusqlite::Connection;

use crate::audit::NewEntry;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Largest accepted request body (rid sets of large scattered selections are big).
pub const MAX_BODY_BYTES: usize = 512 * 1024 * 1024;

/// The keyhost's HTTP API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/info", get(info::info))
        .route("/v1/whoami", get(info::whoami))
        .route("/v1/identities", post(identities::create).get(identities::list))
        .route("/v1/tokens", post(tokens::create).get(tokens::list))
        .route("/v1/tokens/rotate", post(tokens::rotate))
        .route("/v1/tokens/{token_id}", delete(tokens::revoke))
        .route("/v1/datasets", post(datasets::create).get(datasets::list))
        .route("/v1/datasets/{dataset}/columns", post(datasets::register_column))
        .route(
            "/v1/datasets/{dataset}/columns/{column}/rotate",
            post(datasets::rotate_column),
        )
        .route("/v1/datasets/{dataset}/rids", post(datasets::allocate_rids))
        .route("/v1/grants", post(grants::create).get(grants::list))
        .route("/v1/grants/{grant_id}", delete(grants::revoke))
        .route("/v1/answer-keys", post(answer_keys::answer))
        .route("/v1/audit", get(audit::list))
        .route("/v1/audit/verify", get(audit::verify))
        .route("/v1/audit/checkpoint", get(audit::checkpoint))
        .route("/v1/audit/proof", get(audit::proof))
        .route("/v1/budget", get(budget::show).put(budget::set))
        .route("/v1/budget/reset", post(budget::reset))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no such endpoint: {}", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        crate::error::reason::INVALID_REQUEST,
        format!("{method} is not supported on {}", uri.path()),
    )
}

/// Apply a permission check; a refusal is written to the audit log before it is returned.
fn guard(conn: &mut Connection, entry: &NewEntry, check: ApiResult<()>) -> ApiResult<()> {
    check.map_err(|e| crate::audit::refuse(conn, entry.clone(), e))
}
