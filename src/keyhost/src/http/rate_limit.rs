//! Rate limiting of failed authentication per client address: a token bucket per address holds
//! `auth_failures_per_minute` (see [`crate::domain::limits::Limits`]) and refills at that rate; every
//! response 401 takes one token. While an address's bucket is empty every request from it is
//! refused with 429 `rate_limited` and a `Retry-After` header, before authentication or any
//! database work. The refusals are audited like refused authentications (bounded, see
//! [`crate::domain::auth_audit`]).
//!
//! Mounted by [`crate::http::router`] as an axum middleware layer (a tower `Layer`). The
//! address comes from axum's `ConnectInfo` (set by [`crate::http::server`]); a router served without
//! it counts all clients as one address.

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{reason, ApiError};
use crate::state::AppState;

/// The middleware: refuse addresses over their limit, count the 401s of the others.
pub async fn limit_failed_auth(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let per_minute = st.limits().auth_failures_per_minute;
    if per_minute == 0 {
        return next.run(req).await;
    }
    let addr = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let failures = st.auth_failures();
    if let Some(retry) = failures.blocked(addr, Instant::now(), per_minute) {
        let who = addr.map_or_else(|| "this client".to_owned(), |a| a.to_string());
        let path = format!("<any path from {who}>");
        if let Err(e) = st.record_refused_auth(reason::RATE_LIMITED, None, path).await {
            return e.into_response();
        }
        let mut resp = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            reason::RATE_LIMITED,
            format!(
                "too many failed authentications from {who} (more than {per_minute} a minute); \
                 retry in {retry} s with a valid token"
            ),
        )
        .into_response();
        if let Ok(v) = HeaderValue::from_str(&retry.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return resp;
    }
    let resp = next.run(req).await;
    if resp.status() == StatusCode::UNAUTHORIZED {
        failures.failed(addr, Instant::now(), per_minute);
    }
    resp
}
