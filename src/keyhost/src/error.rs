//! Errors: [`KeyhostError`] for starting and running the service, [`ApiError`] for the typed
//! refusals and failures that the HTTP API returns as
//! `{"error": {"reason": CODE, "message": TEXT, ...}}`.
//!
//! No error message ever contains a key or a token.

use std::path::PathBuf;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// Failure to start, run or inspect a keyhost.
#[derive(Debug, thiserror::Error)]
pub enum KeyhostError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("keyhost database error: {0}")]
    Db(#[from] crate::db::Error),
    #[error("master key: {0}")]
    MasterKey(String),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("keyhost runtime: {0}")]
    Runtime(String),
}

impl KeyhostError {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        KeyhostError::Io {
            what,
            path: path.into(),
            source,
        }
    }
}

/// The grant an identity lacks, named in `permission_denied` refusals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MissingGrant {
    pub operation: String,
    pub dataset: String,
    pub column: Option<String>,
}

/// Refusal reason codes of the HTTP API.
pub mod reason {
    pub const UNAUTHENTICATED: &str = "unauthenticated";
    pub const TOKEN_EXPIRED: &str = "token_expired";
    pub const TOKEN_REVOKED: &str = "token_revoked";
    pub const PERMISSION_DENIED: &str = "permission_denied";
    pub const NOT_FOUND: &str = "not_found";
    pub const INVALID_REQUEST: &str = "invalid_request";
    pub const CONFLICT: &str = "conflict";
    pub const INTERNAL: &str = "internal";
    pub const MIN_ROWS: &str = "min_rows";
    pub const UNKNOWN_RIDS: &str = "unknown_rids";
    pub const CONSTANT_NOT_ALLOWED: &str = "constant_not_allowed";
    pub const MAX_CONSTANTS: &str = "max_constants";
    pub const BUDGET_EXHAUSTED: &str = "budget_exhausted";
    pub const AUDIT_DISCLOSURE: &str = "audit_disclosure";
    pub const AUDIT_LIMIT: &str = "audit_limit";
    pub const REQUEST_TOO_LARGE: &str = "request_too_large";
    pub const RATE_LIMITED: &str = "rate_limited";
    pub const SCORE_SPAN: &str = "score_span";
    pub const MAX_VECTORS: &str = "max_vectors";
    pub const POPULATION_OVERLAP: &str = "population_overlap";

    /// Every reason code above (the `Reason` enum of `openapi.json`).
    pub const ALL: &[&str] = &[
        UNAUTHENTICATED,
        TOKEN_EXPIRED,
        TOKEN_REVOKED,
        PERMISSION_DENIED,
        NOT_FOUND,
        INVALID_REQUEST,
        CONFLICT,
        INTERNAL,
        MIN_ROWS,
        UNKNOWN_RIDS,
        CONSTANT_NOT_ALLOWED,
        MAX_CONSTANTS,
        BUDGET_EXHAUSTED,
        AUDIT_DISCLOSURE,
        AUDIT_LIMIT,
        REQUEST_TOO_LARGE,
        RATE_LIMITED,
        SCORE_SPAN,
        MAX_VECTORS,
        POPULATION_OVERLAP,
    ];
}

/// A typed API error: HTTP status, reason code, human message, and the missing grant if any.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub reason: &'static str,
    pub message: String,
    pub missing_grant: Option<MissingGrant>,
}

impl ApiError {
    pub fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            reason,
            message: message.into(),
            missing_grant: None,
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, reason::INVALID_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, reason::NOT_FOUND, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, reason::CONFLICT, message)
    }
    pub fn denied(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, reason::PERMISSION_DENIED, message)
    }
    pub fn refused(reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, reason, message)
    }
    pub fn missing_grant(identity: &str, grant: MissingGrant) -> Self {
        let message = match &grant.column {
            Some(c) => format!(
                "identity '{identity}' has no '{}' grant on column '{c}' of dataset '{}'",
                grant.operation, grant.dataset
            ),
            None => format!(
                "identity '{identity}' has no '{}' grant on dataset '{}'",
                grant.operation, grant.dataset
            ),
        };
        ApiError {
            missing_grant: Some(grant),
            ..Self::denied(message)
        }
    }
    /// A generic internal error. The cause is reported on stderr without any secret.
    pub fn internal(context: &str, cause: &dyn std::fmt::Display) -> Self {
        eprintln!("ghostpii keyhost: internal error ({context}): {cause}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            reason::INTERNAL,
            "internal keyhost error; the request was not completed",
        )
    }
}

impl From<crate::db::Error> for ApiError {
    fn from(e: crate::db::Error) -> Self {
        ApiError::internal("database", &e)
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorInner<'a>,
}

#[derive(Serialize)]
struct ErrorInner<'a> {
    reason: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    missing_grant: Option<&'a MissingGrant>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorInner {
                reason: self.reason,
                message: &self.message,
                missing_grant: self.missing_grant.as_ref(),
            },
        };
        (self.status, Json(body)).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
