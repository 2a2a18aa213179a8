//! Failed authentications per client address, counted for the rate limit of
//! `http/rate_limit.rs`: a token bucket per address holds `auth_failures_per_minute` (see
//! [`crate::domain::limits::Limits`]) and refills at that rate; every response 401 takes one
//! token; an address whose bucket is empty is refused until it refills.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

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
