//! Resource limits of a keyhost: how large a request body may be, how many descriptors a batch
//! and how many rids a request may hold, and how many failed authentications a client address
//! may cause per minute. Each has a default and an environment variable read at start
//! (`docs/keyhost.md`, "Limits"); each refusal is typed (`request_too_large`, `rate_limited`).

use axum::http::StatusCode;

use crate::error::{reason, ApiError, KeyhostError};

/// The limits in force (see the module docs). `Limits::default()` are the documented defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Largest request body in bytes (`GHOSTPII_MAX_BODY_BYTES`, default 64 MiB).
    pub max_body_bytes: usize,
    /// Most descriptors in one `POST /v1/answer-keys` (`GHOSTPII_MAX_DESCRIPTORS`, 100,000).
    pub max_descriptors: usize,
    /// Most rids named by all descriptors of one request together
    /// (`GHOSTPII_MAX_RIDS_PER_REQUEST`, 2^28 = 268,435,456).
    pub max_rids_per_request: u64,
    /// Failed authentications a client address may cause in a minute before its requests are
    /// refused with 429 (`GHOSTPII_AUTH_FAILURES_PER_MINUTE`, 60; 0 turns the limit off).
    pub auth_failures_per_minute: u32,
    /// Largest linear-audit state of one identity on one dataset, in entries
    /// (`GHOSTPII_AUDIT_MAX_ENTRIES`, 4,000,000; see `linear_audit`): beyond it exact sums are
    /// refused with `audit_limit`.
    pub audit_max_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 64 * 1024 * 1024,
            max_descriptors: 100_000,
            max_rids_per_request: 1 << 28,
            auth_failures_per_minute: 60,
            audit_max_entries: crate::domain::linear_audit::DEFAULT_MAX_ENTRIES,
        }
    }
}

/// Environment variables that override the defaults, in the order of the fields.
pub const ENV_VARS: [&str; 5] = [
    "GHOSTPII_MAX_BODY_BYTES",
    "GHOSTPII_MAX_DESCRIPTORS",
    "GHOSTPII_MAX_RIDS_PER_REQUEST",
    "GHOSTPII_AUTH_FAILURES_PER_MINUTE",
    "GHOSTPII_AUDIT_MAX_ENTRIES",
];

fn env_number<T: std::str::FromStr>(
    name: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<T>, KeyhostError> {
    match lookup(name) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .replace('_', "")
            .parse()
            .map(Some)
            .map_err(|_| KeyhostError::Config(format!("{name}={v} is not a non-negative integer"))),
    }
}

impl Limits {
    /// These limits with every variable of [`ENV_VARS`] that is set applied.
    pub fn with_env(self) -> Result<Limits, KeyhostError> {
        self.with_lookup(&|k| std::env::var(k).ok())
    }

    fn with_lookup(self, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Limits, KeyhostError> {
        let [body, descriptors, rids, auth, audit] = ENV_VARS;
        let l = Limits {
            max_body_bytes: env_number(body, lookup)?.unwrap_or(self.max_body_bytes),
            max_descriptors: env_number(descriptors, lookup)?.unwrap_or(self.max_descriptors),
            max_rids_per_request: env_number(rids, lookup)?.unwrap_or(self.max_rids_per_request),
            auth_failures_per_minute: env_number(auth, lookup)?.unwrap_or(self.auth_failures_per_minute),
            audit_max_entries: env_number(audit, lookup)?.unwrap_or(self.audit_max_entries),
        };
        if l.max_body_bytes == 0 || l.max_descriptors == 0 || l.max_rids_per_request == 0 {
            return Err(KeyhostError::Config(format!(
                "{body}, {descriptors} and {rids} must be positive"
            )));
        }
        Ok(l)
    }

    /// Refuse a batch with more descriptors than allowed (413).
    pub fn check_descriptors(&self, n: usize) -> Result<(), ApiError> {
        if n > self.max_descriptors {
            return Err(too_large(format!(
                "the request holds {n} descriptors; this keyhost answers at most {} per request \
                 (GHOSTPII_MAX_DESCRIPTORS): split the batch",
                self.max_descriptors
            )));
        }
        Ok(())
    }

    /// Refuse a request whose descriptors name more rids together than allowed (413).
    pub fn check_rids(&self, total: u64) -> Result<(), ApiError> {
        if total > self.max_rids_per_request {
            return Err(too_large(format!(
                "the request's descriptors name {total} rids together; this keyhost accepts at \
                 most {} per request (GHOSTPII_MAX_RIDS_PER_REQUEST): split the batch",
                self.max_rids_per_request
            )));
        }
        Ok(())
    }

    /// The refusal of a body over [`Limits::max_body_bytes`] (413).
    pub fn body_too_large(&self) -> ApiError {
        too_large(format!(
            "the request body exceeds {} bytes, the most this keyhost accepts \
             (GHOSTPII_MAX_BODY_BYTES): split the request",
            self.max_body_bytes
        ))
    }
}

fn too_large(message: String) -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, reason::REQUEST_TOO_LARGE, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_defaults_and_bad_values_are_refused() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
        };
        let d = Limits::default();
        assert_eq!(d.clone().with_lookup(&env(&[])).unwrap(), d);
        let l = d
            .clone()
            .with_lookup(&env(&[
                ("GHOSTPII_MAX_BODY_BYTES", "1_000"),
                ("GHOSTPII_AUTH_FAILURES_PER_MINUTE", "0"),
            ]))
            .unwrap();
        assert_eq!((l.max_body_bytes, l.auth_failures_per_minute), (1000, 0));
        assert_eq!(l.max_descriptors, d.max_descriptors);
        assert!(d
            .clone()
            .with_lookup(&env(&[("GHOSTPII_MAX_DESCRIPTORS", "-1")]))
            .is_err());
        assert!(d.with_lookup(&env(&[("GHOSTPII_MAX_RIDS_PER_REQUEST", "0")])).is_err());
    }

    #[test]
    fn refusals_are_typed_413() {
        let l = Limits {
            max_descriptors: 2,
            max_rids_per_request: 10,
            ..Limits::default()
        };
        assert!(l.check_descriptors(2).is_ok() && l.check_rids(10).is_ok());
        for e in [
            l.check_descriptors(3).unwrap_err(),
            l.check_rids(11).unwrap_err(),
            l.body_too_large(),
        ] {
            assert_eq!(
                (e.status, e.reason),
                (StatusCode::PAYLOAD_TOO_LARGE, reason::REQUEST_TOO_LARGE)
            );
        }
    }
}
