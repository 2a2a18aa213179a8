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
    Db(#[from] crate::store::Error),
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
    /// Of an internal error: what failed, for the keyhost's log (never a key or a token), never
    /// sent to the client. Logged where the error leaves the keyhost, by
    /// `http::internal_errors` (as a response) or by [`ApiError::log_cause`] (an error consumed
    /// inside the keyhost), not where it is built.
    pub cause: Option<Box<str>>,
}

/// The cause of an internal error, carried from [`ApiError`]'s response to the logging
/// middleware (`http::internal_errors`) in the response's extensions.
#[derive(Debug, Clone)]
pub struct InternalCause(pub String);

/// Log the cause of an internal error: a `tracing` event (target `ghostpii_keyhost::error`) if
/// the process or the current thread installed a subscriber, else a line on stderr (the keyhost
/// installs none itself).
pub fn log_internal(during: &str, cause: &str) {
    let subscribed = tracing::dispatcher::get_default(|d| !d.is::<tracing::subscriber::NoSubscriber>());
    if subscribed {
        tracing::error!(during, cause, "internal keyhost error");
    } else {
        eprintln!("ghostpii keyhost: internal error ({during}): {cause}");
    }
}

impl ApiError {
    pub fn new(status: StatusCode, reason: Reason, message: impl Into<String>) -> Self {
        ApiError {
            status,
            reason,
            message: message.into(),
            missing_grant: None,
            cause: None,
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
    /// A generic internal error; `context` and `cause` (never a secret) are kept for the log.
    pub fn internal(context: &str, cause: &dyn std::fmt::Display) -> Self {
        ApiError {
            cause: Some(format!("{context}: {cause}").into()),
            ..Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                reason::INTERNAL,
                "internal keyhost error; the request was not completed",
            )
        }
    }

    /// Log the cause of an internal error that does not leave the keyhost as a response (a
    /// refusal inside a batch, a background task); `during` says what the keyhost was doing.
    pub fn log_cause(&self, during: &str) {
        if let Some(cause) = &self.cause {
            log_internal(during, cause);
        }
    }
}

impl From<crate::store::Error> for ApiError {
    fn from(e: crate::store::Error) -> Self {
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
        let mut response = (self.status, Json(body)).into_response();
        if let Some(cause) = self.cause {
            response.extensions_mut().insert(InternalCause(cause.into()));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
