//! The audit log: one row per answer-key issuance or refusal and per management action,
//! hash-chained so that an edited, inserted or deleted row is detected.
//!
//! `hash = SHA-256(domain || prev_hash || canonical(index, time, identity, dataset, column,
//! operation, params, rid_count, rid_digest, decision, reason))`, each field length-prefixed
//! (absent fields encoded as a distinct tag), genesis `prev_hash` = 64 zeros. The index of
//! the last row is also kept in the `meta` table, so that cutting rows off the end is
//! reported too.
//!
//! Entries are written in two steps, as a Certificate Transparency log does. The action's own
//! transaction writes its entry to the durable queue `audit_queue` ([`append`], [`Chain`]): the
//! entry and the action it records commit together, before any answer leaves the keyhost, and
//! writers of the queue take no common lock. The answer carries a receipt that promises, signed
//! with the checkpoint key, inclusion in the log by `include_by` ([`Receipt`], [`Promise`]). The
//! sequencer (`sequencer.rs`) then moves queued entries into the hash chain and the Merkle tree,
//! in batches, each batch in one transaction; `audit_integrated` maps each queue id to its
//! index in the log.
//!
//! Each entry also gets a random 32-byte `salt` (OS randomness), the secret of its Merkle leaf
//! `SHA-256(0x00 || salt || canonical entry bytes)`: a leaf hash, an inclusion proof or a
//! receipt handed to anyone reveals nothing about an entry's contents, however guessable they
//! are. The salt is shown only with the entry itself (to those who may read it) and in the
//! receipt of the identity whose request the entry records.

use crate::store::{params, Connection};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::clock;
use crate::domain::identities::Identity;
use crate::error::ApiError;
use crate::store;

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
pub(crate) const LAST_INDEX_KEY: &str = "audit_last_index";

pub const ISSUED: &str = "issued";
pub const REFUSED: &str = "refused";

/// An entry to append (index, time and hashes are assigned by [`append`]).
#[derive(Debug, Clone, Default)]
pub struct NewEntry {
    pub identity: Option<String>,
    pub dataset: Option<String>,
    pub column: Option<String>,
    pub operation: String,
    pub params: serde_json::Value,
    pub rid_count: Option<u64>,
    pub rid_digest: Option<String>,
    pub decision: &'static str,
    pub reason: Option<String>,
    /// Owners who may read this entry besides admins (`orgs::add_readers`): not part of the
    /// entry's hashed contents, an index of who sees it.
    pub readers: Vec<i64>,
}

impl NewEntry {
    pub fn new(who: &Identity, operation: &str) -> Self {
        NewEntry {
            identity: Some(who.name.clone()),
            operation: operation.into(),
            params: serde_json::Value::Object(Default::default()),
            decision: ISSUED,
            ..Default::default()
        }
    }
    pub fn dataset(mut self, d: &str) -> Self {
        self.dataset = Some(d.into());
        self
    }
    /// The entry is about dataset `ds`: names it and lets its owner read the entry.
    pub fn on(mut self, ds: &crate::domain::datasets::Dataset) -> Self {
        self.set_dataset(ds);
        self
    }
    /// [`NewEntry::on`] in place.
    pub fn set_dataset(&mut self, ds: &crate::domain::datasets::Dataset) {
        self.dataset = Some(ds.name.clone());
        self.add_reader(ds.owner_id);
    }
    /// Let the owner `owner_id` read the entry.
    pub fn add_reader(&mut self, owner_id: i64) {
        if !self.readers.contains(&owner_id) {
            self.readers.push(owner_id);
        }
    }
    pub fn column(mut self, c: &str) -> Self {
        self.column = Some(c.into());
        self
    }
    pub fn params(mut self, p: serde_json::Value) -> Self {
        self.params = p;
        self
    }
    pub fn reason(mut self, r: &str) -> Self {
        self.reason = Some(r.into());
        self
    }
    pub fn refused(mut self, reason: &str) -> Self {
        self.decision = REFUSED;
        self.reason = Some(reason.into());
        self
    }
}

/// One stored row, as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub index: i64,
    #[serde(serialize_with = "crate::clock::serialize_micros")]
    pub time: i64,
    pub identity: Option<String>,
    pub dataset: Option<String>,
    pub column: Option<String>,
    pub operation: String,
    #[serde(serialize_with = "serialize_params")]
    pub params: String,
    pub rid_count: Option<i64>,
    pub rid_digest: Option<String>,
    pub decision: String,
    pub reason: Option<String>,
    pub prev_hash: String,
    pub hash: String,
    /// The leaf secret (hex); empty for rows without one.
    pub salt: String,
}

fn serialize_params<S: serde::Serializer>(p: &str, s: S) -> Result<S::Ok, S::Error> {
    match serde_json::from_str::<serde_json::Value>(p) {
        Ok(v) => v.serialize(s),
        Err(_) => s.serialize_str(p),
    }
}

fn put(h: &mut Sha256, v: Option<&str>) {
    match v {
        None => h.update([0u8]),
        Some(s) => {
            h.update([1u8]);
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        }
    }
}

/// The canonical bytes of an entry's contents (everything but the chain hashes): the
/// preimage of its Merkle leaf.
pub fn canonical_bytes(e: &Entry) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + e.params.len());
    let mut put = |v: Option<&str>| match v {
        None => out.push(0u8),
        Some(s) => {
            out.push(1u8);
            out.extend_from_slice(&(s.len() as u64).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
    };
    put(Some("ghostpii/v1/audit-entry"));
    put(Some(&e.index.to_string()));
    put(Some(&e.time.to_string()));
    put(e.identity.as_deref());
    put(e.dataset.as_deref());
    put(e.column.as_deref());
    put(Some(&e.operation));
    put(Some(&e.params));
    put(e.rid_count.map(|c| c.to_string()).as_deref());
    put(e.rid_digest.as_deref());
    put(Some(&e.decision));
    put(e.reason.as_deref());
    out
}

/// The salted RFC 6962 leaf hash of an entry: `SHA-256(0x00 || salt || canonical_bytes)`.
pub fn leaf_hash(e: &Entry) -> [u8; 32] {
    let mut pre = hex::decode(&e.salt).unwrap_or_else(|_| e.salt.as_bytes().to_vec());
    pre.extend_from_slice(&canonical_bytes(e));
    crate::domain::merkle::leaf_hash(&pre)
}

/// A leaf secret: 32 bytes from a ChaCha20 generator seeded by the OS for each chain append
/// run (one system call per batch, not per entry).
fn new_salt(rng: &mut rand_chacha::ChaCha20Rng) -> String {
    let mut b = zeroize::Zeroizing::new([0u8; 32]);
    rand::RngCore::fill_bytes(rng, b.as_mut());
    hex::encode(b.as_ref())
}

/// A queued entry: its queue id, the hash of its queued contents and its leaf secret; turned
/// into a signed [`Promise`] (the receipt handed to the caller) with [`Receipt::promise`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The entry's id in `audit_queue` (not its index in the log, which the sequencer assigns).
    pub index: i64,
    /// [`queued_hash`] of the entry.
    pub leaf_hash: [u8; 32],
    /// The entry's leaf secret (hex): with the entry's contents it recomputes its hashes.
    pub salt: String,
    /// When it was queued (µs since the epoch): the entry's `time` in the log.
    pub time: i64,
}

/// A receipt as handed out: a signed promise that the queued entry `entry_hash` (queue id
/// `queue_id`) is in the log by `include_by` (`POST /v1/audit/receipt` checks it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Promise {
    pub queue_id: i64,
    /// Base64 [`queued_hash`] of the entry.
    pub entry_hash: String,
    /// The entry's leaf secret (hex).
    pub salt: String,
    /// RFC 3339: the entry is integrated into the log no later than this.
    pub include_by: String,
    pub keyhost_id: String,
    /// Base64 Ed25519 public key of the checkpoint key.
    pub public_key: String,
    /// Base64 signature of [`promise_message`].
    pub signature: String,
}

/// The bytes a promise signs.
pub fn promise_message(keyhost_id: &str, queue_id: i64, entry_hash_b64: &str, include_by: &str) -> Vec<u8> {
    format!("ghostpii/v1/audit-promise\n{keyhost_id}\n{queue_id}\n{entry_hash_b64}\n{include_by}\n").into_bytes()
}

impl Receipt {
    /// The signed promise to include this entry within `max_delay_micros` of its queueing.
    pub fn promise(&self, keyhost_id: &str, signer: &ed25519_dalek::SigningKey, max_delay_micros: i64) -> Promise {
        use ed25519_dalek::Signer;
        let entry_hash = B64.encode(self.leaf_hash);
        let include_by = clock::format_rfc3339(self.time.saturating_add(max_delay_micros));
        let sig = signer.sign(&promise_message(keyhost_id, self.index, &entry_hash, &include_by));
        Promise {
            queue_id: self.index,
            entry_hash,
            salt: self.salt.clone(),
            include_by,
            keyhost_id: keyhost_id.to_owned(),
            public_key: B64.encode(signer.verifying_key().to_bytes()),
            signature: B64.encode(sig.to_bytes()),
        }
    }

    /// The promise as JSON (the `receipt` of an answer).
    pub fn to_json_signed(
        &self,
        keyhost_id: &str,
        signer: &ed25519_dalek::SigningKey,
        max_delay_micros: i64,
    ) -> serde_json::Value {
        serde_json::to_value(self.promise(keyhost_id, signer, max_delay_micros)).unwrap_or(serde_json::Value::Null)
    }
}

/// The hash a promise commits to: `SHA-256("ghostpii/v1/audit-queued" || queue id || salt ||
/// the entry's contents)`, each field length-prefixed as in [`canonical_bytes`] (the log index,
/// unknown when queued, is replaced by the queue id).
pub fn queued_hash(queue_id: i64, e: &Entry) -> [u8; 32] {
    let mut pre = Vec::with_capacity(300 + e.params.len());
    pre.extend_from_slice(b"ghostpii/v1/audit-queued\0");
    pre.extend_from_slice(&queue_id.to_le_bytes());
    pre.extend_from_slice(&hex::decode(&e.salt).unwrap_or_else(|_| e.salt.as_bytes().to_vec()));
    let q = Entry {
        index: queue_id,
        ..e.clone()
    };
    pre.extend_from_slice(&canonical_bytes(&q));
    Sha256::digest(&pre).into()
}

/// The chain hash of a row.
pub fn entry_hash(e: &Entry) -> String {
    let mut h = Sha256::new();
    h.update(b"ghostpii/v1/audit\0");
    put(&mut h, Some(&e.prev_hash));
    put(&mut h, Some(&e.index.to_string()));
    put(&mut h, Some(&e.time.to_string()));
    put(&mut h, e.identity.as_deref());
    put(&mut h, e.dataset.as_deref());
    put(&mut h, e.column.as_deref());
    put(&mut h, Some(&e.operation));
    put(&mut h, Some(&e.params));
    put(&mut h, e.rid_count.map(|c| c.to_string()).as_deref());
    put(&mut h, e.rid_digest.as_deref());
    put(&mut h, Some(&e.decision));
    put(&mut h, e.reason.as_deref());
    hex::encode(h.finalize())
}

/// Queue an entry; call inside the transaction of the action it records. Returns its queue id.
pub fn append(conn: &Connection, new: NewEntry) -> crate::store::Result<i64> {
    append_receipt(conn, new).map(|r| r.index)
}

/// Queue an entry (inside the caller's transaction); returns its receipt.
pub fn append_receipt(conn: &Connection, new: NewEntry) -> crate::store::Result<Receipt> {
    let mut chain = Chain::start(conn)?;
    let receipt = chain.append(conn, new)?;
    chain.finish(conn)?;
    Ok(receipt)
}

/// Queueing many entries in one transaction, with one leaf-secret generator seeded once.
pub struct Chain {
    rng: rand_chacha::ChaCha20Rng,
}

impl Chain {
    /// Ready to queue entries inside the caller's transaction (reads nothing: queue writers
    /// share no state).
    pub fn start(_conn: &Connection) -> crate::store::Result<Chain> {
        let rng = rand::SeedableRng::from_rng(rand::rngs::OsRng)
            .map_err(|e| crate::store::Error::Randomness(e.to_string()))?;
        Ok(Chain { rng })
    }

    /// Queue an entry; returns its receipt (queue id, queued hash, salt, time).
    pub fn append(&mut self, conn: &Connection, new: NewEntry) -> crate::store::Result<Receipt> {
        let salt = new_salt(&mut self.rng);
        let readers = encode_readers(&new.readers);
        let mut e = Entry {
            index: 0,
            time: clock::now_micros(),
            identity: new.identity,
            dataset: new.dataset,
            column: new.column,
            operation: new.operation,
            params: new.params.to_string(),
            rid_count: new.rid_count.map(|c| i64::try_from(c).unwrap_or(i64::MAX)),
            rid_digest: new.rid_digest,
            decision: new.decision.to_owned(),
            reason: new.reason,
            prev_hash: String::new(),
            hash: String::new(),
            salt,
        };
        e.index = conn
            .prepare_cached(
                "INSERT INTO audit_queue (time, identity, dataset, \"column\", operation, params, rid_count,
                                          rid_digest, decision, reason, salt, readers)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) RETURNING id",
            )?
            .query_row(
                params![
                    e.time,
                    e.identity,
                    e.dataset,
                    e.column,
                    e.operation,
                    e.params,
                    e.rid_count,
                    e.rid_digest,
                    e.decision,
                    e.reason,
                    e.salt,
                    readers
                ],
                |r| r.get(0),
            )?;
        Ok(Receipt {
            index: e.index,
            leaf_hash: queued_hash(e.index, &e),
            salt: e.salt,
            time: e.time,
        })
    }

    /// Kept for callers that queue many entries; nothing to write.
    pub fn finish(self, _conn: &Connection) -> crate::store::Result<()> {
        Ok(())
    }
}

/// The owners who may read a queued entry (`NewEntry::readers`), as the queue stores them until
/// the sequencer files them in `audit_readers`: decimal ids, comma-separated.
fn encode_readers(readers: &[i64]) -> String {
    readers.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

/// [`encode_readers`] read back (a malformed id is a database error, never skipped).
pub(crate) fn decode_readers(s: &str) -> crate::store::Result<Vec<i64>> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse()
                .map_err(|_| crate::store::Error::Schema(format!("audit_queue.readers holds {s:?}, not ids")))
        })
        .collect()
}

/// Write a queued entry into the chain after the entry `prev_index` (hash `prev_hash`), with
/// its queue time and salt (the sequencer's step). Returns the stored entry.
pub(crate) fn append_after(
    conn: &Connection,
    mut e: Entry,
    prev_index: i64,
    prev_hash: String,
) -> crate::store::Result<Entry> {
    e.index = prev_index + 1;
    e.prev_hash = prev_hash;
    e.hash = entry_hash(&e);
    conn.prepare_cached(
        "INSERT INTO audit (idx, time, identity, dataset, \"column\", operation, params, rid_count,
                            rid_digest, decision, reason, prev_hash, hash, salt)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?
    .execute(params![
        e.index,
        e.time,
        e.identity,
        e.dataset,
        e.column,
        e.operation,
        e.params,
        e.rid_count,
        e.rid_digest,
        e.decision,
        e.reason,
        e.prev_hash,
        e.hash,
        e.salt
    ])?;
    Ok(e)
}

/// Record the index of the log's last entry (detects rows cut off the end).
pub(crate) fn set_last_index(conn: &Connection, index: i64) -> crate::store::Result<()> {
    store::meta_set(conn, LAST_INDEX_KEY, &index.to_string())
}

/// Record a refused management action of an authenticated identity (its own transaction),
/// then hand back the refusal. If the audit cannot be written the answer is an internal error.
pub fn refuse(conn: &mut Connection, entry: NewEntry, err: ApiError) -> ApiError {
    let entry = entry.refused(err.reason.as_str());
    let res = (|| -> crate::store::Result<()> {
        let tx = conn.transaction()?;
        append(&tx, entry)?;
        tx.commit()
    })();
    match res {
        Ok(()) => err,
        Err(e) => ApiError::from(e),
    }
}

pub(crate) const SELECT: &str = "SELECT idx, time, identity, dataset, \"column\", operation, params, rid_count,
                      rid_digest, decision, reason, prev_hash, hash, salt FROM audit";

pub(crate) fn from_row(r: &crate::store::Row) -> crate::store::Result<Entry> {
    Ok(Entry {
        index: r.get(0)?,
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
        prev_hash: r.get(11)?,
        hash: r.get(12)?,
        salt: r.get(13)?,
    })
}

/// Every entry, in index order.
pub fn all(conn: &Connection) -> crate::store::Result<Vec<Entry>> {
    let mut st = conn.prepare_cached(&format!("{SELECT} ORDER BY idx"))?;
    let rows = st.query_map((), from_row)?;
    rows.collect()
}

/// Filters of a listing.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub dataset: Option<String>,
    /// Only entries this owner may read (`audit_readers`).
    pub reader: Option<i64>,
    pub identity: Option<String>,
    pub since: Option<i64>,
    pub limit: u32,
    /// Only entries with an index below this (the `next` of a newest-first page).
    pub before: Option<i64>,
    /// Only entries with an index above this (the `next` of an oldest-first page).
    pub after: Option<i64>,
    /// Oldest first instead of newest first.
    pub oldest_first: bool,
}

/// One page of a listing: the entries, how many entries match the filter in all (ignoring
/// `before`/`after`/`limit`), and the cursor of the next page if there is one (`GET /v1/audit`).
#[derive(Debug, Clone, Serialize)]
pub struct Page {
    pub entries: Vec<Entry>,
    pub total: u64,
    pub next: Option<i64>,
}

const MATCHES: &str = "(CAST(?1 AS TEXT) IS NULL OR dataset = ?1) AND (CAST(?2 AS TEXT) IS NULL OR identity = ?2) \
     AND (CAST(?3 AS BIGINT) IS NULL OR time >= ?3) \
     AND (CAST(?4 AS BIGINT) IS NULL OR idx IN (SELECT idx FROM audit_readers WHERE owner_id = ?4))";

pub fn list(conn: &Connection, f: &Filter) -> crate::store::Result<Page> {
    let order = if f.oldest_first { "ASC" } else { "DESC" };
    let mut st = conn.prepare(&format!(
        "{SELECT} WHERE {MATCHES} AND (CAST(?6 AS BIGINT) IS NULL OR idx < ?6) AND (CAST(?7 AS BIGINT) IS NULL OR idx > ?7)
         ORDER BY idx {order} LIMIT ?5"
    ))?;
    let fetch = i64::from(f.limit) + 1;
    let rows = st.query_map(
        params![f.dataset, f.identity, f.since, f.reader, fetch, f.before, f.after],
        from_row,
    )?;
    let mut entries = rows.collect::<crate::store::Result<Vec<_>>>()?;
    let more = entries.len() > f.limit as usize;
    entries.truncate(f.limit as usize);
    let next = if more { entries.last().map(|e| e.index) } else { None };
    let total: i64 = conn.query_row(
        &format!("SELECT COUNT(*) FROM audit WHERE {MATCHES}"),
        params![f.dataset, f.identity, f.since, f.reader],
        |r| r.get(0),
    )?;
    Ok(Page {
        entries,
        total: u64::try_from(total).unwrap_or(0),
        next,
    })
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AuditProblem {
    pub index: i64,
    pub problem: String,
}
