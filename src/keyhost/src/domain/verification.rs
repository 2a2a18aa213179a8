//! Verification of the audit log: [`verify`] recomputes the hash chain and checks it against
//! the length the keyhost recorded (`GET /v1/audit/verify`, `ghostpii-keyhost verify`); with a
//! signed checkpoint, `checkpoint::verify_log` also checks the Merkle root of its first
//! `tree_size` entries (`verify_audit_checkpoint` in `lib.rs`).

use serde::Serialize;

use crate::domain::audit::{entry_hash, from_row, AuditProblem, GENESIS, LAST_INDEX_KEY, SELECT};
use crate::domain::checkpoint::Checkpoint;
use crate::store::{self, Connection};

/// Result of checking the chain.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AuditVerification {
    pub ok: bool,
    pub entries: u64,
    /// Hash of the last row (genesis hash for an empty log).
    pub head: String,
    pub problems: Vec<AuditProblem>,
    /// Entries queued but not yet integrated into the chain (`sequencer.rs`); not checked here
    /// (`POST /v1/audit/receipt` checks each receipt's promise).
    #[serde(default)]
    pub pending: u64,
    /// The checkpoint checked against, if one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Checkpoint>,
}

/// Recompute the whole chain and report every inconsistency.
pub fn verify(conn: &Connection) -> store::Result<AuditVerification> {
    let mut st = conn.prepare(&format!("{SELECT} ORDER BY idx"))?;
    let rows = st.query_map((), from_row)?;
    let mut problems = Vec::new();
    let mut expected_index = 1i64;
    let mut prev = GENESIS.to_owned();
    let mut entries = 0u64;
    for row in rows {
        let e = row?;
        entries += 1;
        if e.index != expected_index {
            problems.push(AuditProblem {
                index: e.index,
                problem: format!(
                    "index gap: expected entry {expected_index}, found {} (rows deleted or inserted)",
                    e.index
                ),
            });
        }
        if e.prev_hash != prev {
            problems.push(AuditProblem {
                index: e.index,
                problem: "prev_hash does not match the previous entry's hash \
                          (a row was inserted or deleted before this one)"
                    .into(),
            });
        }
        if entry_hash(&e) != e.hash {
            problems.push(AuditProblem {
                index: e.index,
                problem: "hash does not match the entry's contents (the row was edited)".into(),
            });
        }
        expected_index = e.index + 1;
        prev = e.hash;
    }
    let recorded: Option<i64> = store::meta_get(conn, LAST_INDEX_KEY)?.and_then(|s| s.parse().ok());
    let last = expected_index - 1;
    if let Some(r) = recorded {
        if r != last {
            problems.push(AuditProblem {
                index: last,
                problem: format!(
                    "the log ends at entry {last} but the keyhost recorded {r} entries \
                     (rows cut off the end or added after it)"
                ),
            });
        }
    }
    // (a database written before the queue existed has no queue table: nothing is pending)
    let pending: i64 = conn
        .query_row("SELECT COUNT(*) FROM audit_queue", (), |r| r.get(0))
        .unwrap_or(0);
    Ok(AuditVerification {
        ok: problems.is_empty(),
        entries,
        head: prev,
        problems,
        pending: u64::try_from(pending).unwrap_or(0),
        checkpoint: None,
    })
}
