//! Constants given in a column's *logical* domain (as people write them in grants) converted
//! to the stored 64-bit integers the crypto works on, exactly as the encryption does:
//!
//! - integer, number and boolean columns: a JSON number `x` (or `true`/`false`) becomes
//!   `x · 10^scale`; integers exactly, floats as `round_half_to_even(x · 10^scale)` in f64,
//!   which is what the encryption kernel computes;
//! - date columns: `"YYYY-MM-DD"` becomes days since 1970-01-01;
//! - datetime columns: an ISO 8601 datetime (`"YYYY-MM-DDTHH:MM[:SS[.fraction]]"`, optionally
//!   with `Z` or `±HH:MM`; a naive time is taken as UTC, which is how Polars stores naive
//!   datetimes) becomes ticks since the epoch in the column's time unit (`meta.time_unit`:
//!   `"ns"`, `"us"` or `"ms"`). A bare date means midnight.

use ghostpii_core::LogicalType;
use serde_json::Value;

use crate::clock::days_from_civil;

/// How a column's logical values map to stored integers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    pub dtype: LogicalType,
    pub scale: u32,
    /// Ticks per second of datetime columns.
    pub ticks_per_sec: Option<i64>,
}

impl Domain {
    /// The domain of a column; `meta` is the registration's `meta` object (time unit).
    pub fn new(dtype: LogicalType, scale: u32, meta: Option<&Value>) -> Result<Domain, String> {
        let ticks_per_sec = if dtype == LogicalType::Datetime {
            let unit = meta
                .and_then(|m| m.get("time_unit"))
                .and_then(Value::as_str)
                .unwrap_or("us");
            Some(match unit {
                "ns" => 1_000_000_000,
                "us" => 1_000_000,
                "ms" => 1_000,
                other => return Err(format!("unknown time unit '{other}' (known: ns, us, ms)")),
            })
        } else {
            None
        };
        Ok(Domain {
            dtype,
            scale,
            ticks_per_sec,
        })
    }

    /// The stored integer of a logical constant, or a message saying why it has none.
    pub fn to_stored(&self, v: &Value) -> Result<i64, String> {
        match self.dtype {
            LogicalType::String => Err("string columns have no order domain".into()),
            LogicalType::Date => match v {
                Value::String(s) => parse_date(s).ok_or_else(|| format!("'{s}' is not a date (YYYY-MM-DD)")),
                other => Err(format!(
                    "{other} is not a date; give an ISO date string such as \"2000-02-29\""
                )),
            },
            LogicalType::Datetime => match v {
                Value::String(s) => parse_datetime(s, self.ticks_per_sec.unwrap_or(1_000_000)),
                other => Err(format!(
                    "{other} is not a datetime; give an ISO datetime string such as \"2000-02-29T12:00:00\""
                )),
            },
            _ => self.number(v),
        }
    }

    fn number(&self, v: &Value) -> Result<i64, String> {
        let factor = 10i64
            .checked_pow(self.scale)
            .ok_or_else(|| format!("scale {} is too large", self.scale))?;
        let too_big = || format!("{v} is too large for 64-bit fixed point with {} decimals", self.scale);
        match v {
            Value::Bool(b) => Ok(i64::from(*b) * factor),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    i.checked_mul(factor).ok_or_else(too_big)
                } else if let Some(f) = n.as_f64() {
                    let y = (f * factor as f64).round_ties_even();
                    if !y.is_finite() || !(-9.223_372_036_854_775e18..9.223_372_036_854_775e18).contains(&y) {
                        return Err(too_big());
                    }
                    Ok(y as i64)
                } else {
                    Err(too_big())
                }
            }
            other => Err(format!("{other} is not a number")),
        }
    }
}

fn digits(s: &str, n: usize) -> Option<i64> {
    if s.len() != n || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// `YYYY-MM-DD` (an optional leading `-` for years before 0) → days since 1970-01-01.
pub fn parse_date(s: &str) -> Option<i64> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let mut p = body.split('-');
    let y = digits(p.next()?, 4)?;
    let m = digits(p.next()?, 2)?;
    let d = digits(p.next()?, 2)?;
    if p.next().is_some() {
        return None;
    }
    let y = if neg { -y } else { y };
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

/// An ISO 8601 datetime → ticks (`tps` ticks per second) since the epoch, UTC.
pub fn parse_datetime(s: &str, tps: i64) -> Result<i64, String> {
    let bad = || format!("'{s}' is not an ISO datetime (YYYY-MM-DDTHH:MM[:SS[.fraction]][Z|±HH:MM])");
    let s = s.trim();
    if s.len() == 10 {
        let days = parse_date(s).ok_or_else(bad)?;
        return days.checked_mul(86_400 * tps).ok_or_else(bad);
    }
    if s.len() < 16 || !s.is_char_boundary(10) || !matches!(s.as_bytes()[10], b'T' | b't' | b' ') {
        return Err(bad());
    }
    let days = parse_date(&s[..10]).ok_or_else(bad)?;
    let rest = &s[11..];
    let (time, offset_secs) = if let Some(t) = rest.strip_suffix(['Z', 'z']) {
        (t, 0)
    } else if let Some(pos) = rest.rfind(['+', '-']) {
        let (t, off) = rest.split_at(pos);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (oh, om) = off[1..].split_once(':').ok_or_else(bad)?;
        let (oh, om) = (digits(oh, 2).ok_or_else(bad)?, digits(om, 2).ok_or_else(bad)?);
        if oh > 23 || om > 59 {
            return Err(bad());
        }
        (t, sign * (oh * 3600 + om * 60))
    } else {
        (rest, 0)
    };
    let (hms, frac) = match time.split_once('.') {
        Some((a, f)) => (a, Some(f)),
        None => (time, None),
    };
    let mut tp = hms.split(':');
    let h = digits(tp.next().ok_or_else(bad)?, 2).ok_or_else(bad)?;
    let mi = digits(tp.next().ok_or_else(bad)?, 2).ok_or_else(bad)?;
    let se = match tp.next() {
        Some(x) => digits(x, 2).ok_or_else(bad)?,
        None => 0,
    };
    if tp.next().is_some() || h > 23 || mi > 59 || se > 59 {
        return Err(bad());
    }
    let mut sub = 0i64;
    if let Some(f) = frac {
        if f.is_empty() || f.len() > 9 || !f.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let nanos: i64 = format!("{f:0<9}").parse().map_err(|_| bad())?;
        let per_tick = 1_000_000_000 / tps;
        if nanos % per_tick != 0 {
            return Err(format!(
                "'{s}' is more precise than the column's time unit ({} ticks per second)",
                tps
            ));
        }
        sub = nanos / per_tick;
    }
    let secs = days * 86_400 + h * 3600 + mi * 60 + se - offset_secs;
    secs.checked_mul(tps)
        .and_then(|t| t.checked_add(sub))
        .ok_or_else(|| format!("'{s}' is out of the 64-bit range of the column's time unit"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_scale_like_the_encryption() {
        let d = Domain::new(LogicalType::Float64, 2, None).unwrap();
        assert_eq!(d.to_stored(&json!(1.5)), Ok(150));
        assert_eq!(d.to_stored(&json!(0.125)), Ok(12)); // half to even
        assert_eq!(d.to_stored(&json!(-3)), Ok(-300));
        assert_eq!(d.to_stored(&json!(true)), Ok(100));
        assert!(d.to_stored(&json!("1.5")).is_err());
        assert!(d.to_stored(&json!(1e300)).is_err());
        let i = Domain::new(LogicalType::Int64, 0, None).unwrap();
        assert_eq!(i.to_stored(&json!(i64::MIN)), Ok(i64::MIN));
    }

    #[test]
    fn dates_and_datetimes() {
        let d = Domain::new(LogicalType::Date, 0, None).unwrap();
        assert_eq!(d.to_stored(&json!("1970-01-01")), Ok(0));
        assert_eq!(d.to_stored(&json!("2000-02-29")), Ok(11_016));
        assert_eq!(d.to_stored(&json!("1900-01-01")), Ok(-25_567));
        assert!(d.to_stored(&json!("2001-02-29")).is_err());
        assert!(d.to_stored(&json!(5)).is_err());
        let us = json!({"time_unit": "us"});
        let t = Domain::new(LogicalType::Datetime, 0, Some(&us)).unwrap();
        assert_eq!(t.to_stored(&json!("1970-01-01T00:00:01.5")), Ok(1_500_000));
        assert_eq!(t.to_stored(&json!("1970-01-01T01:00:00+01:00")), Ok(0));
        assert_eq!(t.to_stored(&json!("1970-01-02")), Ok(86_400_000_000));
        let ms = json!({"time_unit": "ms"});
        let t = Domain::new(LogicalType::Datetime, 0, Some(&ms)).unwrap();
        assert!(t.to_stored(&json!("1970-01-01T00:00:00.0005")).is_err());
        let ns = json!({"time_unit": "ns"});
        let t = Domain::new(LogicalType::Datetime, 0, Some(&ns)).unwrap();
        assert_eq!(t.to_stored(&json!("1970-01-01T00:00:00.000000007Z")), Ok(7));
    }
}
