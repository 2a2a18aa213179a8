//! Refused authentications stay visible in the audit log, but bounded: the path is truncated to
//! [`PATH_CHARS`] characters, and for each (reason, token fingerprint, path) only the first
//! refusal of a minute is written at once; the repeats within that minute are counted in memory
//! and written as one row with `"repeats": n` when the minute is over (at the next refusal, at
//! the keyhost's periodic flush, or when it stops). At most [`MAX_KEYS`] keys are tracked; past
//! that, refusals are counted under one key per reason with the path `"<other paths>"`. The
//! keyhost's state writes them (`AppState::record_refused_auth`, `AppState::flush_refused_auth`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::domain::audit::{self, NewEntry};
use crate::error::{ApiResult, Reason};

/// Longest path (in characters) an audit row of a refused authentication keeps.
pub const PATH_CHARS: usize = 128;
/// Repeats of one refusal within this window are written as one row.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Most distinct (reason, fingerprint, path) keys counted at once.
pub const MAX_KEYS: usize = 4096;

const OTHER_PATHS: &str = "<other paths>";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    reason: Reason,
    token_sha256_prefix: Option<String>,
    path: String,
}

struct Pending {
    since: Instant,
    repeats: u64,
}

#[derive(Default)]
struct Tracked {
    keys: HashMap<Key, Pending>,
    last_sweep: Option<Instant>,
}

/// The in-memory side of refused-authentication auditing (one per keyhost).
#[derive(Default)]
pub struct Refusals {
    tracked: Mutex<Tracked>,
}

/// The path, cut to at most [`PATH_CHARS`] characters (marked with `…` when cut).
pub fn truncate_path(path: &str) -> String {
    match path.char_indices().nth(PATH_CHARS) {
        None => path.to_owned(),
        Some((i, _)) => format!("{}…", &path[..i]),
    }
}

fn entry(key: &Key, repeats: Option<u64>) -> NewEntry {
    let mut params = json!({"path": key.path, "token_sha256_prefix": key.token_sha256_prefix});
    if let Some(n) = repeats {
        params["repeats"] = json!(n);
        params["window_seconds"] = json!(WINDOW.as_secs());
    }
    NewEntry {
        operation: "auth".into(),
        params,
        decision: audit::REFUSED,
        reason: Some(key.reason.as_str().into()),
        ..Default::default()
    }
}

impl Tracked {
    /// Rows for the windows that have ended (all of them if `everything`), which are dropped.
    fn sweep(&mut self, now: Instant, everything: bool) -> Vec<NewEntry> {
        let mut rows = Vec::new();
        self.keys.retain(|k, p| {
            let ended = everything || now.duration_since(p.since) >= WINDOW;
            if ended && p.repeats > 0 {
                rows.push(entry(k, Some(p.repeats)));
            }
            !ended
        });
        self.last_sweep = Some(now);
        rows
    }
}

impl Refusals {
    /// Note one refused authentication; returns the audit rows to write now: the refusal itself
    /// if it is the first of its key in the window, and the repeat counts of ended windows.
    pub fn note(&self, now: Instant, reason: Reason, token_sha256_prefix: Option<String>, path: &str) -> Vec<NewEntry> {
        let Ok(mut t) = self.tracked.lock() else {
            // a panic elsewhere poisoned the tracker: audit every refusal rather than none
            let key = Key {
                reason,
                token_sha256_prefix,
                path: truncate_path(path),
            };
            return vec![entry(&key, None)];
        };
        let mut rows = match t.last_sweep {
            Some(last) if now.duration_since(last) < WINDOW => Vec::new(),
            _ => t.sweep(now, false),
        };
        let mut key = Key {
            reason,
            token_sha256_prefix,
            path: truncate_path(path),
        };
        if t.keys.len() >= MAX_KEYS && !t.keys.contains_key(&key) {
            key = Key {
                reason,
                token_sha256_prefix: None,
                path: OTHER_PATHS.into(),
            };
        }
        match t.keys.get_mut(&key) {
            Some(p) if now.duration_since(p.since) < WINDOW => p.repeats += 1,
            _ => {
                if let Some(old) = t.keys.remove(&key) {
                    if old.repeats > 0 {
                        rows.push(entry(&key, Some(old.repeats)));
                    }
                }
                rows.push(entry(&key, None));
                t.keys.insert(key, Pending { since: now, repeats: 0 });
            }
        }
        rows
    }

    /// The rows of the repeat counts of ended windows (all windows when `everything`, at stop).
    pub fn flush(&self, now: Instant, everything: bool) -> Vec<NewEntry> {
        match self.tracked.lock() {
            Ok(mut t) => t.sweep(now, everything),
            Err(_) => Vec::new(),
        }
    }
}

/// Write refused-authentication rows into the audit log, in one transaction.
pub fn write(conn: &mut crate::store::Connection, rows: Vec<NewEntry>) -> ApiResult<()> {
    let tx = conn.transaction()?;
    for r in rows {
        audit::append(&tx, r)?;
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repeats(rows: &[NewEntry]) -> Vec<Option<u64>> {
        rows.iter()
            .map(|r| r.params.get("repeats").and_then(|v| v.as_u64()))
            .collect()
    }

    #[test]
    fn repeats_within_a_minute_become_one_row() {
        let r = Refusals::default();
        let t0 = Instant::now();
        let long = format!("/v1/{}", "x".repeat(60_000));
        let first = r.note(t0, Reason::Unauthenticated, None, &long);
        assert_eq!(repeats(&first), vec![None]);
        let path = first[0].params["path"].as_str().unwrap();
        assert_eq!(path.chars().count(), PATH_CHARS + 1, "truncated, marked with …");
        for i in 1..200 {
            assert!(r
                .note(t0 + Duration::from_millis(i), Reason::Unauthenticated, None, &long)
                .is_empty());
        }
        // another key is its own row
        assert_eq!(
            r.note(t0, Reason::TokenExpired, Some("ab".into()), "/v1/whoami").len(),
            1
        );
        assert!(
            r.flush(t0 + Duration::from_secs(1), false).is_empty(),
            "the window is still open"
        );
        let later = r.flush(t0 + WINDOW, false);
        assert_eq!(repeats(&later), vec![Some(199)]);
        assert!(r.flush(t0 + WINDOW * 3, true).is_empty(), "nothing is counted twice");
    }

    #[test]
    fn distinct_keys_are_bounded() {
        let r = Refusals::default();
        let t0 = Instant::now();
        let mut rows = 0;
        for i in 0..(MAX_KEYS + 1000) {
            rows += r.note(t0, Reason::Unauthenticated, None, &format!("/p{i}")).len();
        }
        assert_eq!(rows, MAX_KEYS + 1, "one row per key, then one for '<other paths>'");
        let last = r.flush(t0, true);
        assert_eq!(repeats(&last), vec![Some(999)]);
        assert_eq!(last[0].params["path"], OTHER_PATHS);
    }
}
