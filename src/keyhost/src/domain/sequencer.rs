//! The audit sequencer: moves the entries that answers and actions queued (`audit_queue`, see
//! `audit.rs`) into the hash chain and the Merkle tree, in batches, and signs a checkpoint of the
//! tree after each batch. Each batch is one transaction (on PostgreSQL under
//! `postgres::SEQUENCER_LOCK`): a sequencer killed mid-batch leaves the queue as it was, and
//! whoever integrates next (the same keyhost restarted, another replica, or a read of the log)
//! integrates it.
//!
//! Who integrates:
//! - every keyhost runs a background task (`http/background.rs`) that integrates every
//!   [`Settings::batch_interval`]; on PostgreSQL only the replica holding the session advisory
//!   lock `postgres::SEQUENCER_LEADER` (on a connection of its own) does: the leader. When the
//!   leader's process dies, PostgreSQL releases its lock and the next replica to try takes over;
//! - every read of the log (`GET /v1/audit`, `/v1/audit/verify`, `/v1/audit/checkpoint`,
//!   `/v1/audit/proof`, `POST /v1/audit/receipt`, the console's audit pages) integrates what is
//!   queued first, so a reader sees every entry committed before its read;
//! - a keyhost stopping cleanly integrates what is queued before it exits.
//!
//! Each receipt promises inclusion within [`Settings::max_delay`] of the entry's queueing.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use crate::clock;
use crate::domain::audit::{self, Entry, GENESIS};
use crate::domain::checkpoint::{self, Checkpoint};
use crate::domain::merkle::{self, Hash};
use crate::error::KeyhostError;
use crate::store::{self, params, Connection, OptionalExtension};

/// Most entries one batch integrates.
pub const MAX_BATCH: usize = 20_000;

const FRONTIER_KEY: &str = "audit_frontier";

/// How the sequencer runs (environment variables read at start, `docs/keyhost.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// How often the sequencer integrates the queue (`GHOSTPII_AUDIT_BATCH_MS`, default 20 ms;
    /// 0: no background sequencer, entries are integrated by reads and at a clean stop only).
    pub batch_interval: Duration,
    /// What each receipt promises: the entry is in the log at most this long after it was
    /// queued (`GHOSTPII_AUDIT_MAX_DELAY_MS`, default 10 s).
    pub max_delay: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            batch_interval: Duration::from_millis(20),
            max_delay: Duration::from_secs(10),
        }
    }
}

pub const ENV_VARS: [&str; 2] = ["GHOSTPII_AUDIT_BATCH_MS", "GHOSTPII_AUDIT_MAX_DELAY_MS"];

impl Settings {
    /// The defaults with the variables of [`ENV_VARS`] that are set applied.
    pub fn from_env() -> Result<Settings, KeyhostError> {
        let ms = |name: &str| -> Result<Option<u64>, KeyhostError> {
            match std::env::var(name) {
                Err(_) => Ok(None),
                Ok(v) => v
                    .trim()
                    .replace('_', "")
                    .parse()
                    .map(Some)
                    .map_err(|_| KeyhostError::Config(format!("{name}={v} is not a number of milliseconds"))),
            }
        };
        let d = Settings::default();
        let s = Settings {
            batch_interval: ms(ENV_VARS[0])?.map(Duration::from_millis).unwrap_or(d.batch_interval),
            max_delay: ms(ENV_VARS[1])?.map(Duration::from_millis).unwrap_or(d.max_delay),
        };
        if s.max_delay.is_zero() || (!s.batch_interval.is_zero() && s.max_delay <= s.batch_interval) {
            return Err(KeyhostError::Config(format!(
                "{} must be above {} (a receipt's promise must leave the sequencer time to keep it)",
                ENV_VARS[1], ENV_VARS[0]
            )));
        }
        Ok(s)
    }

    pub fn max_delay_micros(&self) -> i64 {
        i64::try_from(self.max_delay.as_micros()).unwrap_or(i64::MAX)
    }
}

/// The roots of the perfect subtrees the log's Merkle tree is made of (largest first), with
/// their sizes: enough to append a leaf and compute the root in O(log n).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Frontier {
    pub size: u64,
    /// (leaves, base64 root) of each perfect subtree, largest first.
    pub nodes: Vec<(u64, String)>,
}

impl Frontier {
    fn decoded(&self) -> Option<Vec<(u64, Hash)>> {
        self.nodes
            .iter()
            .map(|(n, h)| {
                B64.decode(h)
                    .ok()
                    .and_then(|b| <Hash>::try_from(b.as_slice()).ok())
                    .map(|h| (*n, h))
            })
            .collect()
    }

    fn from_decoded(size: u64, nodes: &[(u64, Hash)]) -> Frontier {
        Frontier {
            size,
            nodes: nodes.iter().map(|(n, h)| (*n, B64.encode(h))).collect(),
        }
    }
}

/// Append a leaf to decoded frontier nodes.
fn push_leaf(nodes: &mut Vec<(u64, Hash)>, leaf: Hash) {
    nodes.push((1, leaf));
    while nodes.len() >= 2 && nodes[nodes.len() - 1].0 == nodes[nodes.len() - 2].0 {
        let (n, r) = nodes.pop().expect("two nodes");
        let (_, l) = nodes.pop().expect("two nodes");
        nodes.push((2 * n, merkle::node_hash(&l, &r)));
    }
}

/// The RFC 6962 root of the tree the frontier describes.
pub fn frontier_root(nodes: &[(u64, Hash)]) -> Hash {
    match nodes.split_last() {
        None => merkle::root(&[]),
        Some((last, rest)) => rest.iter().rev().fold(last.1, |acc, (_, l)| merkle::node_hash(l, &acc)),
    }
}

/// The stored frontier if it matches a log of `size` entries, else rebuilt from every leaf
/// (once, for a log written before frontiers were kept).
fn load_frontier(conn: &Connection, size: u64) -> store::Result<Vec<(u64, Hash)>> {
    let stored: Option<Frontier> = store::meta_get(conn, FRONTIER_KEY)?.and_then(|s| serde_json::from_str(&s).ok());
    if let Some(nodes) = stored.filter(|f| f.size == size).and_then(|f| f.decoded()) {
        return Ok(nodes);
    }
    let mut nodes = Vec::new();
    for leaf in checkpoint::leaves(conn)? {
        push_leaf(&mut nodes, leaf);
    }
    Ok(nodes)
}

/// A test hook: `GHOSTPII_TEST_SEQUENCER_ABORT_AFTER=n` aborts the process (as `kill -9`
/// would) after a batch has written `n` entries and before it commits.
fn abort_after() -> Option<usize> {
    static V: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    *V.get_or_init(|| {
        std::env::var("GHOSTPII_TEST_SEQUENCER_ABORT_AFTER")
            .ok()
            .and_then(|v| v.parse().ok())
    })
}

/// What one batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    pub integrated: usize,
    /// The checkpoint signed over the tree after the batch (none if nothing was integrated).
    pub checkpoint: Option<Checkpoint>,
}

/// Integrate up to `max` queued entries (oldest queue ids first) in one transaction: each gets
/// the next index, its chain hash and its place in the Merkle tree; `audit_integrated` maps its
/// queue id to its index; the queue row is deleted; a checkpoint of the new tree is signed and
/// stored. Nothing is written if the transaction does not commit.
pub fn integrate(conn: &mut Connection, keyhost_id: &str, signer: &SigningKey, max: usize) -> store::Result<Batch> {
    let tx = conn.transaction_sequencer()?;
    let queued: Vec<(i64, Entry, String)> = tx
        .prepare_cached(
            "SELECT id, time, identity, dataset, \"column\", operation, params, rid_count, rid_digest, decision,
                    reason, salt, readers
             FROM audit_queue ORDER BY id LIMIT ?1",
        )?
        .query_map([max], |r| {
            Ok((
                r.get(0)?,
                Entry {
                    index: 0,
                    time: r.get(1)?,
                    identity: r.get(2)?,
                    dataset: r.get(3)?,
                    column: r.get(4)?,
                    operation: r.get(5)?,
                    params: r.get(6)?,
                    rid_count: r.get(7)?,
                    rid_digest: r.get(8)?,
                    decision: r.get(9)?,
                    reason: r.get(10)?,
                    prev_hash: String::new(),
                    hash: String::new(),
                    salt: r.get(11)?,
                },
                r.get(12)?,
            ))
        })?
        .collect::<store::Result<_>>()?;
    if queued.is_empty() {
        return Ok(Batch::default());
    }
    let head: Option<(i64, String)> = tx
        .prepare_cached("SELECT idx, hash FROM audit ORDER BY idx DESC LIMIT 1")?
        .query_row((), |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (mut prev_index, mut prev_hash) = head.unwrap_or((0, GENESIS.to_owned()));
    let mut nodes = load_frontier(&tx, u64::try_from(prev_index).unwrap_or(0))?;
    let now = clock::now_micros();
    let abort = abort_after();
    for (n, (queue_id, e, readers)) in queued.iter().enumerate() {
        if abort == Some(n) {
            std::process::abort();
        }
        let stored = audit::append_after(&tx, e.clone(), prev_index, std::mem::take(&mut prev_hash))?;
        crate::domain::orgs::add_readers(&tx, stored.index, &audit::decode_readers(readers)?)?;
        push_leaf(&mut nodes, audit::leaf_hash(&stored));
        tx.prepare_cached("INSERT INTO audit_integrated (queue_id, idx, integrated_at) VALUES (?1, ?2, ?3)")?
            .execute(params![queue_id, stored.index, now])?;
        tx.prepare_cached("DELETE FROM audit_queue WHERE id = ?1")?
            .execute([queue_id])?;
        prev_index = stored.index;
        prev_hash = stored.hash;
    }
    if abort == Some(queued.len()) {
        std::process::abort();
    }
    audit::set_last_index(&tx, prev_index)?;
    let size = u64::try_from(prev_index).unwrap_or(0);
    let frontier = Frontier::from_decoded(size, &nodes);
    store::meta_set(
        &tx,
        FRONTIER_KEY,
        &serde_json::to_string(&frontier).map_err(json_error)?,
    )?;
    let cp = checkpoint::sign(keyhost_id, signer, size, &frontier_root(&nodes));
    store::meta_set(
        &tx,
        checkpoint::STORED_KEY,
        &serde_json::to_string(&cp).map_err(json_error)?,
    )?;
    tx.commit()?;
    Ok(Batch {
        integrated: queued.len(),
        checkpoint: Some(cp),
    })
}

fn json_error(e: serde_json::Error) -> store::Error {
    store::Error::Conversion(e.to_string())
}

/// Integrate until the queue is empty (as far as this connection sees it); how many entries.
pub fn integrate_all(conn: &mut Connection, keyhost_id: &str, signer: &SigningKey) -> store::Result<usize> {
    let mut total = 0;
    loop {
        let b = integrate(conn, keyhost_id, signer, MAX_BATCH)?;
        total += b.integrated;
        if b.integrated < MAX_BATCH {
            return Ok(total);
        }
    }
}

/// What `POST /v1/audit/receipt` answers.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ReceiptCheck {
    /// The promise is valid and kept (or still pending within its delay).
    pub ok: bool,
    /// `included`, `pending` (queued, the promised time not yet passed), `missing` (not in the
    /// log after the promised time), `late` (integrated after the promised time), `mismatch`
    /// (the log's entry is not the one promised) or `invalid` (bad signature or keyhost).
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_index: Option<i64>,
    /// Base64 leaf hash of the entry in the Merkle tree (for `GET /v1/audit/proof`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leaf_hash: Option<String>,
    pub problems: Vec<String>,
}

fn check(status: &str, problems: Vec<String>) -> ReceiptCheck {
    ReceiptCheck {
        ok: problems.is_empty(),
        status: status.into(),
        audit_index: None,
        leaf_hash: None,
        problems,
    }
}

/// Check a receipt's promise against the log at time `now` (µs): its signature with the
/// keyhost's checkpoint key, then that the log holds the promised entry, integrated no later
/// than `include_by` — or, before `include_by`, that it is still queued.
pub fn verify_receipt(
    conn: &Connection,
    keyhost_id: &str,
    key: &ed25519_dalek::VerifyingKey,
    p: &audit::Promise,
    now: i64,
) -> store::Result<ReceiptCheck> {
    use ed25519_dalek::Verifier;
    let sig_ok = B64
        .decode(&p.signature)
        .ok()
        .and_then(|b| <[u8; 64]>::try_from(b.as_slice()).ok())
        .map(|b| ed25519_dalek::Signature::from_bytes(&b))
        .is_some_and(|sig| {
            key.verify(
                &audit::promise_message(&p.keyhost_id, p.queue_id, &p.entry_hash, &p.include_by),
                &sig,
            )
            .is_ok()
        });
    if !sig_ok || p.keyhost_id != keyhost_id {
        return Ok(check(
            "invalid",
            vec!["the receipt is not signed by this keyhost's checkpoint key (altered or forged)".into()],
        ));
    }
    let Some(deadline) = clock::parse_rfc3339(&p.include_by) else {
        return Ok(check("invalid", vec!["the receipt's include_by is not a time".into()]));
    };
    let integrated: Option<(i64, i64)> = conn
        .prepare_cached("SELECT idx, integrated_at FROM audit_integrated WHERE queue_id = ?1")?
        .query_row([p.queue_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((index, at)) = integrated else {
        let queued = conn
            .prepare_cached("SELECT 1 FROM audit_queue WHERE id = ?1")?
            .exists([p.queue_id])?;
        return Ok(if queued && now <= deadline {
            check("pending", Vec::new())
        } else {
            check(
                "missing",
                vec![format!(
                    "entry {} promised by {} is not in the audit log",
                    p.queue_id, p.include_by
                )],
            )
        });
    };
    let entry = conn
        .prepare_cached(&format!("{} WHERE idx = ?1", audit::SELECT))?
        .query_row([index], audit::from_row)
        .optional()?;
    let Some(entry) = entry else {
        return Ok(check(
            "missing",
            vec![format!(
                "entry {index} (queue id {}) was deleted from the log",
                p.queue_id
            )],
        ));
    };
    let mut out = if B64.encode(audit::queued_hash(p.queue_id, &entry)) != p.entry_hash {
        check(
            "mismatch",
            vec![format!(
                "entry {index} of the log is not the entry the receipt promised (edited)"
            )],
        )
    } else if at > deadline {
        check(
            "late",
            vec![format!(
                "entry {index} was integrated at {}, after the promised {}",
                clock::format_rfc3339(at),
                p.include_by
            )],
        )
    } else {
        check("included", Vec::new())
    };
    out.audit_index = Some(index);
    out.leaf_hash = Some(B64.encode(audit::leaf_hash(&entry)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frontier_root_is_the_rfc6962_root() {
        let mut nodes = Vec::new();
        let mut leaves = Vec::new();
        assert_eq!(frontier_root(&nodes), merkle::root(&[]));
        for i in 0..70u32 {
            let leaf = merkle::leaf_hash(&i.to_le_bytes());
            leaves.push(leaf);
            push_leaf(&mut nodes, leaf);
            assert_eq!(frontier_root(&nodes), merkle::root(&leaves), "{} leaves", leaves.len());
        }
    }
}
