//! The keyhost over HTTP: [`router`] (every route, the body limit, the rate limit), `routes/`
//! (the `/v1` JSON API), `console/` (the HTML console, which calls the API's handlers),
//! `extract` (the caller, from its bearer token), `rate_limit` (the failed-authentication
//! limit), `internal_errors` (logs the causes of internal errors), `server` (listening,
//! stopping) and `background` (the audit sequencer's ticks).

pub mod background;
pub mod console;
pub mod extract;
pub mod internal_errors;
pub mod rate_limit;
pub mod routes;
pub mod server;

use axum::extract::DefaultBodyLimit;
use axum::Router;

use crate::error::{reason, ApiError};
use crate::state::AppState;

/// The keyhost's HTTP API, with the body limit and the failed-authentication rate limit of
/// the state's [`crate::domain::limits::Limits`]; the causes of internal errors are logged as
/// the responses leave (`internal_errors`).
pub fn router(state: AppState) -> Router {
    let max_body = state.limits().max_body_bytes;
    routes::api_routes()
        .merge(console::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            rate_limit::limit_failed_auth,
        ))
        .layer(axum::middleware::from_fn(internal_errors::log_internal_errors))
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no such endpoint: {}", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        reason::INVALID_REQUEST,
        format!("{method} is not supported on {}", uri.path()),
    )
}
