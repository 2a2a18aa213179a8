//! Request extractors whose rejections use the API's JSON error shape:
//! [`Caller`] (bearer-token authentication), [`ApiJson`], [`ApiBytes`] and [`ApiQuery`].

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::Json;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use crate::domain::identities::Identity;
use crate::domain::tokens::{self, TokenCheck};
use crate::error::{reason, ApiError, Reason};
use crate::state::AppState;

/// The authenticated identity of a request (`Authorization: Bearer <token>`).
#[derive(Debug, Clone)]
pub struct Caller(pub Identity);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let kh = state.keyhost_id().to_owned();
        let path = parts.uri.path().to_owned();
        let unauthenticated = |msg: String| ApiError::new(StatusCode::UNAUTHORIZED, reason::UNAUTHENTICATED, msg);
        let header = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let token = match header.and_then(|h| h.split_once(' ')) {
            Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => Zeroizing::new(t.trim().to_owned()),
            _ => {
                audit_auth_refusal(state, path, None, reason::UNAUTHENTICATED).await?;
                return Err(unauthenticated(format!(
                    "no bearer token was sent; keyhost {kh} needs 'Authorization: Bearer <token>'"
                )));
            }
        };
        let fingerprint = tokens::hash(&token)[..16].to_owned();
        let check = state.db(move |conn, _| Ok(tokens::authenticate(conn, &token)?)).await?;
        let refused = match &check {
            TokenCheck::Valid(_) => None,
            TokenCheck::Unknown => Some(reason::UNAUTHENTICATED),
            TokenCheck::Expired => Some(reason::TOKEN_EXPIRED),
            TokenCheck::Revoked => Some(reason::TOKEN_REVOKED),
        };
        if let Some(r) = refused {
            audit_auth_refusal(state, path, Some(fingerprint), r).await?;
        }
        match check {
            TokenCheck::Valid(identity) => Ok(Caller(identity)),
            TokenCheck::Unknown => Err(unauthenticated(format!(
                "the token is not recognised by this keyhost ({kh}); it may belong to another \
                 keyhost or have been mistyped"
            ))),
            TokenCheck::Expired => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                reason::TOKEN_EXPIRED,
                format!("the token has expired; ask an admin of keyhost {kh} for a new one"),
            )),
            TokenCheck::Revoked => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                reason::TOKEN_REVOKED,
                format!("the token was revoked on keyhost {kh}"),
            )),
        }
    }
}

/// `axum::Json` with JSON-shaped 400 errors.
pub struct ApiJson<T>(pub T);

impl<T> FromRequest<AppState> for ApiJson<T>
where
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(rej) if rej.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(state.limits().body_too_large()),
            Err(rej) => Err(ApiError::invalid(format!(
                "malformed request body: {}",
                rej.body_text()
            ))),
        }
    }
}

/// The raw body, under the same size limit as [`ApiJson`] (the router's `DefaultBodyLimit`),
/// with JSON-shaped errors.
pub struct ApiBytes(pub Bytes);

impl FromRequest<AppState> for ApiBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        match Bytes::from_request(req, state).await {
            Ok(b) => Ok(ApiBytes(b)),
            Err(rej) if rej.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(state.limits().body_too_large()),
            Err(rej) => Err(ApiError::invalid(format!(
                "unreadable request body: {}",
                rej.body_text()
            ))),
        }
    }
}

/// `axum::extract::Query` with JSON-shaped 400 errors.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(ApiQuery(v)),
            Err(rej) => Err(ApiError::invalid(format!(
                "malformed query string: {}",
                rej.body_text()
            ))),
        }
    }
}

/// Parse a numeric path segment (ids) into a JSON-shaped 400 on failure.
pub fn path_id(what: &str, s: &str) -> Result<i64, ApiError> {
    s.parse()
        .map_err(|_| ApiError::invalid(format!("{what} must be an integer id")))
}

/// Record a refused authentication (no identity is known; the token appears only as the first
/// 16 hex digits of its SHA-256, which matches the hash the keyhost stores for known tokens).
/// Bounded: see `auth_audit`.
async fn audit_auth_refusal(
    state: &AppState,
    path: String,
    token_sha256: Option<String>,
    why: Reason,
) -> Result<(), ApiError> {
    state.record_refused_auth(why, token_sha256, path).await
}
