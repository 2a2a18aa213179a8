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

pub use ghostpii_proto::Reason;

/// Refusal reason codes of the HTTP API: short names of the protocol's [`Reason`] variants.
pub mod reason {
    use ghostpii_proto::Reason;

    pub const UNAUTHENTICATED: Reason = Reason::Unauthenticated;
    pub const TOKEN_EXPIRED: Reason = Reason::TokenExpired;
    pub const TOKEN_REVOKED: Reason = Reason::TokenRevoked;
    pub const PERMISSION_DENIED: Reason = Reason::PermissionDenied;
    pub const NOT_FOUND: Reason = Reason::NotFound;
    pub const INVALID_REQUEST: Reason = Reason::InvalidRequest;
    pub const CONFLICT: Reason = Reason::Conflict;
    pub const INTERNAL: Reason = Reason::Internal;
    pub const MIN_ROWS: Reason = Reason::MinRows;
    pub const UNKNOWN_RIDS: Reason = Reason::UnknownRids;
    pub const CONSTANT_NOT_ALLOWED: Reason = Reason::ConstantNotAllowed;
    pub const MAX_CONSTANTS: Reason = Reason::MaxConstants;
    pub const BUDGET_EXHAUSTED: Reason = Reason::BudgetExhausted;
    pub const AUDIT_DISCLOSURE: Reason = Reason::AuditDisclosure;
    pub const AUDIT_LIMIT: Reason = Reason::AuditLimit;
    pub const REQUEST_TOO_LARGE: Reason = Reason::RequestTooLarge;
    pub const RATE_LIMITED: Reason = Reason::RateLimited;
    pub const SCORE_SPAN: Reason = Reason::ScoreSpan;
    pub const MAX_VECTORS: Reason = Reason::MaxVectors;
    pub const POPULATION_OVERLAP: Reason = Reason::PopulationOverlap;
    pub const MAX_EVALUATIONS: Reason = Reason::MaxEvaluations;
    pub const FHE_KEY_MISSING: Reason = Reason::FheKeyMissing;
    pub const FHE_KEY_CACHE_FULL: Reason = Reason::FheKeyCacheFull;

    /// Every reason (the `Reason` enum of `openapi.json`).
    pub const ALL: &[Reason] = &Reason::ALL;
}

/// A typed API error: HTTP status, reason code, human message, and the missing grant if any.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub reason: Reason,
    pub message: String,
    pub missing_grant: Option<MissingGrant>,
}

impl ApiError {
    pub fn new(status: StatusCode, reason: Reason, message: impl Into<String>) -> Self {
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
    pub fn refused(reason: Reason, message: impl Into<String>) -> Self {
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
    reason: Reason,
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
