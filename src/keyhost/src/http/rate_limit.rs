//! Rate limiting of failed authentication per client address: a token bucket per address holds
//! `auth_failures_per_minute` (see [`crate::domain::limits::Limits`]) and refills at that rate; every
//! response 401 takes one token. While an address's bucket is empty every request from it is
//! refused with 429 `rate_limited` and a `Retry-After` header, before authentication or any
//! database work. The refusals are audited like refused authentications (bounded, see
//! [`crate::domain::auth_audit`]).
//!
//! Mounted by [`crate::http::routes::router`] as an axum middleware layer (a tower `Layer`). The
//! address comes from axum's `ConnectInfo` (set by [`crate::http::server`]); a router served without
//! it counts all clients as one address.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{reason, ApiError};
use crate::state::AppState;

/// Most addresses tracked at once; past that, new addresses share one bucket.
pub const MAX_ADDRESSES: usize = 65_536;

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets of one keyhost.
#[derive(Default)]
pub struct AuthFailures {
    buckets: Mutex<HashMap<Option<IpAddr>, Bucket>>,
}

impl AuthFailures {
    fn refilled(b: &mut Bucket, now: Instant, per_minute: f64) {
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * per_minute / 60.0).min(per_minute);
        b.at = now;
    }

    /// Seconds until `addr` may send again, or `None` if it may now.
    pub fn blocked(&self, addr: Option<IpAddr>, now: Instant, per_minute: u32) -> Option<u64> {
        let mut map = self.buckets.lock().ok()?;
        let b = map.get_mut(&addr)?;
        let rate = f64::from(per_minute);
        Self::refilled(b, now, rate);
        (b.tokens < 1.0).then(|| ((1.0 - b.tokens) * 60.0 / rate).ceil().max(1.0) as u64)
    }

    /// Count one failed authentication from `addr`.
    pub fn failed(&self, addr: Option<IpAddr>, now: Instant, per_minute: u32) {
        let Ok(mut map) = self.buckets.lock() else { return };
        let rate = f64::from(per_minute);
        let mut key = addr;
        if map.len() >= MAX_ADDRESSES && !map.contains_key(&key) {
            // drop the addresses whose buckets are full again; if none, share one bucket
            map.retain(|_, b| {
                Self::refilled(b, now, rate);
                b.tokens < rate
            });
            if map.len() >= MAX_ADDRESSES {
                key = None;
            }
        }
        let b = map.entry(key).or_insert(Bucket { tokens: rate, at: now });
        Self::refilled(b, now, rate);
        b.tokens = (b.tokens - 1.0).max(0.0);
    }
}

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
        if let Err(e) = crate::domain::auth_audit::record(&st, reason::RATE_LIMITED, None, path).await {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_bucket_empties_and_refills() {
        let f = AuthFailures::default();
        let a = Some(IpAddr::from([127, 0, 0, 1]));
        let b = Some(IpAddr::from([127, 0, 0, 2]));
        let t0 = Instant::now();
        for _ in 0..10 {
            assert_eq!(f.blocked(a, t0, 10), None);
            f.failed(a, t0, 10);
        }
        let retry = f.blocked(a, t0, 10).expect("the 11th is refused");
        assert!((1..=6).contains(&retry), "one token comes back in 6 s, not {retry}");
        assert_eq!(f.blocked(b, t0, 10), None, "other addresses are not affected");
        assert_eq!(f.blocked(a, t0 + Duration::from_secs(6), 10), None, "refilled");
    }
}
