//! Refusal reasons: the stable `reason` codes of the keyhost's error bodies
//! (`{"error": {"reason": CODE, "message": TEXT}}`) and of refused answers, and the typed error
//! class that clients raise for each.

use serde::{Deserialize, Serialize};

/// A refusal reason code. Serialised as its snake_case code (`"audit_disclosure"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Unauthenticated,
    TokenExpired,
    TokenRevoked,
    PermissionDenied,
    NotFound,
    InvalidRequest,
    Conflict,
    Internal,
    MinRows,
    UnknownRids,
    ConstantNotAllowed,
    MaxConstants,
    BudgetExhausted,
    AuditDisclosure,
    AuditLimit,
    RequestTooLarge,
    RateLimited,
    ScoreSpan,
    MaxVectors,
    /// An exact answer on a column whose name the owner also holds in a dataset that may hold
    /// the same people (an owner-declared population ties them).
    PopulationOverlap,
    /// A row-wise computation would exceed the grant's evaluations per row and column.
    MaxEvaluations,
    /// No FHE server key of the caller is cached (never uploaded, expired or evicted).
    FheKeyMissing,
    /// The keyhost's FHE server-key cache is full.
    FheKeyCacheFull,
}

/// The error class a client raises for a reason (the Python classes of `ghostpii.errors`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    AuthenticationError,
    PermissionDenied,
    BudgetExhausted,
    KeyhostError,
}

impl ErrorClass {
    /// The class's name, as `ghostpii.errors` and relayed Polars errors spell it.
    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::AuthenticationError => "AuthenticationError",
            ErrorClass::PermissionDenied => "PermissionDenied",
            ErrorClass::BudgetExhausted => "BudgetExhausted",
            ErrorClass::KeyhostError => "KeyhostError",
        }
    }

    /// The class of an HTTP status whose reason is unknown (a newer keyhost, a proxy).
    pub fn of_status(status: Option<u16>) -> ErrorClass {
        match status {
            Some(401) => ErrorClass::AuthenticationError,
            Some(403) => ErrorClass::PermissionDenied,
            _ => ErrorClass::KeyhostError,
        }
    }
}

impl Reason {
    /// Every reason, in the order of the enum (the `Reason` enum of `openapi.json`).
    pub const ALL: [Reason; 23] = [
        Reason::Unauthenticated,
        Reason::TokenExpired,
        Reason::TokenRevoked,
        Reason::PermissionDenied,
        Reason::NotFound,
        Reason::InvalidRequest,
        Reason::Conflict,
        Reason::Internal,
        Reason::MinRows,
        Reason::UnknownRids,
        Reason::ConstantNotAllowed,
        Reason::MaxConstants,
        Reason::BudgetExhausted,
        Reason::AuditDisclosure,
        Reason::AuditLimit,
        Reason::RequestTooLarge,
        Reason::RateLimited,
        Reason::ScoreSpan,
        Reason::MaxVectors,
        Reason::PopulationOverlap,
        Reason::MaxEvaluations,
        Reason::FheKeyMissing,
        Reason::FheKeyCacheFull,
    ];

    /// The wire code.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Unauthenticated => "unauthenticated",
            Reason::TokenExpired => "token_expired",
            Reason::TokenRevoked => "token_revoked",
            Reason::PermissionDenied => "permission_denied",
            Reason::NotFound => "not_found",
            Reason::InvalidRequest => "invalid_request",
            Reason::Conflict => "conflict",
            Reason::Internal => "internal",
            Reason::MinRows => "min_rows",
            Reason::UnknownRids => "unknown_rids",
            Reason::ConstantNotAllowed => "constant_not_allowed",
            Reason::MaxConstants => "max_constants",
            Reason::BudgetExhausted => "budget_exhausted",
            Reason::AuditDisclosure => "audit_disclosure",
            Reason::AuditLimit => "audit_limit",
            Reason::RequestTooLarge => "request_too_large",
            Reason::RateLimited => "rate_limited",
            Reason::ScoreSpan => "score_span",
            Reason::MaxVectors => "max_vectors",
            Reason::PopulationOverlap => "population_overlap",
            Reason::MaxEvaluations => "max_evaluations",
            Reason::FheKeyMissing => "fhe_key_missing",
            Reason::FheKeyCacheFull => "fhe_key_cache_full",
        }
    }

    /// The reason of a wire code, if this version knows it.
    pub fn parse(code: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == code)
    }

    /// The error class clients raise for this reason. Refusals that are about what may be
    /// learnt (grants, row counts, the disclosure audit) are `PermissionDenied`; an exhausted
    /// budget is its subclass `BudgetExhausted`; the rest (bad requests, limits, conflicts,
    /// internal errors) are `KeyhostError`, except the three authentication reasons.
    pub fn error_class(self) -> ErrorClass {
        match self {
            Reason::Unauthenticated | Reason::TokenExpired | Reason::TokenRevoked => ErrorClass::AuthenticationError,
            Reason::BudgetExhausted => ErrorClass::BudgetExhausted,
            Reason::PermissionDenied
            | Reason::MinRows
            | Reason::UnknownRids
            | Reason::AuditDisclosure
            | Reason::AuditLimit
            | Reason::PopulationOverlap
            | Reason::MaxEvaluations => ErrorClass::PermissionDenied,
            Reason::ConstantNotAllowed | Reason::MaxConstants | Reason::ScoreSpan | Reason::MaxVectors => {
                ErrorClass::PermissionDenied
            }
            Reason::NotFound
            | Reason::InvalidRequest
            | Reason::Conflict
            | Reason::Internal
            | Reason::RequestTooLarge
            | Reason::RateLimited
            | Reason::FheKeyMissing
            | Reason::FheKeyCacheFull => ErrorClass::KeyhostError,
        }
    }

    /// The class of a wire `code` with its HTTP `status`: by the reason where it is known,
    /// else by the status.
    pub fn class_of(code: &str, status: Option<u16>) -> ErrorClass {
        match Reason::parse(code) {
            Some(r) => r.error_class(),
            None => ErrorClass::of_status(status),
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_serde_and_parse() {
        for r in Reason::ALL {
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(json, format!("\"{}\"", r.as_str()));
            assert_eq!(serde_json::from_str::<Reason>(&json).unwrap(), r);
            assert_eq!(Reason::parse(r.as_str()), Some(r));
        }
        assert_eq!(Reason::parse("no_such_reason"), None);
    }

    #[test]
    fn unknown_codes_fall_back_to_the_status() {
        assert_eq!(
            Reason::class_of("no_such_reason", Some(403)),
            ErrorClass::PermissionDenied
        );
        assert_eq!(
            Reason::class_of("no_such_reason", Some(401)),
            ErrorClass::AuthenticationError
        );
        assert_eq!(Reason::class_of("no_such_reason", Some(500)), ErrorClass::KeyhostError);
        assert_eq!(
            Reason::class_of("budget_exhausted", Some(403)),
            ErrorClass::BudgetExhausted
        );
    }
}
