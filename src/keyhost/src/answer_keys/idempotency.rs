//! Idempotent answer-key requests: `POST /v1/answer-keys` with an `Idempotency-Key` header.
//!
//! The keyhost records (identity, key) → the SHA-256 of the request ([`request_hash`]: its
//! descriptors and, for a request frame, its blobs' bytes) and its results, in
//! the same transaction as the batch's audit rows, ledger and budget updates. A retry with the
//! same key and body gets the recorded results (not audited or charged again); the same key
//! with another body is refused (`conflict`). Recorded results hold answer keys, so they are
//! stored sealed under the master key (as the binary frame of `answer_keys::payload`), and forgotten after [`RETENTION_MICROS`].

use crate::store::{params, Connection, OptionalExtension};
use axum::body::Bytes;
use axum::http::HeaderMap;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::answer_keys::payload::Answered;
use crate::clock;
use crate::error::{ApiError, ApiResult};
use crate::files::master_key::MasterKey;

pub const HEADER: &str = "idempotency-key";
/// How long a recorded response is kept (24 hours).
pub const RETENTION_MICROS: i64 = 24 * 3600 * 1_000_000;
/// Responses larger than this are not kept; a retry of such a request is refused.
pub const MAX_STORED_BYTES: usize = 64 * 1024 * 1024;

/// The idempotency key of one request of one identity, and the hash of its body.
pub struct Idempotent<'a> {
    pub identity_id: i64,
    pub key: String,
    pub request_hash: String,
    pub master: &'a MasterKey,
}

/// The `Idempotency-Key` header, if sent: 16 to 128 characters of `[A-Za-z0-9_-]`.
pub fn key_from_headers(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(v) = headers.get(HEADER) else {
        return Ok(None);
    };
    let key = v.to_str().unwrap_or("");
    let ok =
        (16..=128).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        return Err(ApiError::invalid(
            "Idempotency-Key must be 16 to 128 characters of A-Z, a-z, 0-9, '-' or '_' \
             (e.g. 32 random hex digits, new for each request and reused for its retries)",
        ));
    }
    Ok(Some(key.to_owned()))
}

/// SHA-256 (hex) of the descriptors of a request, in order, then of a request frame's blobs:
/// a zero byte (which no JSON text holds, so no JSON request hashes alike), then each blob's
/// length (u64 LE) and bytes. Without blobs (every JSON request) the hash is what it always was.
pub fn request_hash(requests: &[Value], blobs: &[Bytes]) -> String {
    let mut h = Sha256::new();
    for r in requests {
        h.update(r.to_string().as_bytes());
        h.update(b"\n");
    }
    if !blobs.is_empty() {
        h.update([0u8]);
        for b in blobs {
            h.update((b.len() as u64).to_le_bytes());
            h.update(b);
        }
    }
    hex::encode(h.finalize())
}

impl Idempotent<'_> {
    fn context(&self) -> String {
        format!("idempotency|{}|{}", self.identity_id, self.key)
    }

    /// The recorded results of an earlier request with this key, or `None`. Refuses a key
    /// that was used with another body, or whose response was too large to keep.
    pub fn lookup(&self, conn: &Connection) -> ApiResult<Option<Answered>> {
        let row: Option<(String, Option<Vec<u8>>)> = conn
            .query_row(
                "SELECT request_hash, response FROM idempotency WHERE identity_id = ?1 AND key = ?2 AND created_at >= ?3",
                params![self.identity_id, self.key, clock::now_micros() - RETENTION_MICROS],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((hash, response)) = row else {
            return Ok(None);
        };
        if hash != self.request_hash {
            return Err(ApiError::conflict(format!(
                "Idempotency-Key '{}' was already used for a different request; use a new key for a new request",
                self.key
            )));
        }
        let Some(sealed) = response else {
            return Err(ApiError::conflict(format!(
                "the request with Idempotency-Key '{}' was already answered and audited, but its \
                 response was too large to keep; split the request, or send it with a new key \
                 to have it answered (and audited) again",
                self.key
            )));
        };
        let plain = self
            .master
            .open(&self.context(), &sealed)
            .map_err(|e| ApiError::internal("idempotency record", &e))?;
        if plain.first() == Some(&b'[') {
            // a record written before answer frames: the results as JSON, byte fields in base64
            let results: Vec<Value> =
                serde_json::from_slice(&plain).map_err(|e| ApiError::internal("idempotency record", &e))?;
            let mut out = Answered::default();
            results.into_iter().for_each(|r| out.push(r, None));
            return Ok(Some(out));
        }
        Answered::from_frame(&plain).map(Some)
    }

    /// Record the results (inside the transaction that records the batch); forgets records
    /// older than the retention period.
    pub fn store(&self, conn: &Connection, results: &Answered) -> ApiResult<()> {
        let now = clock::now_micros();
        conn.execute(
            "DELETE FROM idempotency WHERE created_at < ?1",
            [now - RETENTION_MICROS],
        )?;
        let plain = results.to_record()?;
        let sealed = if plain.len() <= MAX_STORED_BYTES {
            Some(
                self.master
                    .seal(&self.context(), &plain)
                    .map_err(|e| ApiError::internal("idempotency record", &e))?,
            )
        } else {
            None
        };
        conn.execute(
            "INSERT INTO idempotency (identity_id, key, request_hash, response, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (identity_id, key) DO UPDATE SET request_hash = excluded.request_hash,
                response = excluded.response, created_at = excluded.created_at",
            params![self.identity_id, self.key, self.request_hash, sealed, now],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn header_keys_are_checked() {
        let mut h = HeaderMap::new();
        assert_eq!(key_from_headers(&h).unwrap(), None);
        h.insert(HEADER, HeaderValue::from_static("0123456789abcdef0123"));
        assert_eq!(key_from_headers(&h).unwrap().as_deref(), Some("0123456789abcdef0123"));
        for bad in ["short", "0123456789abcdef/0123", "0123456789abcdef 0123"] {
            h.insert(HEADER, HeaderValue::from_str(bad).unwrap());
            assert!(key_from_headers(&h).is_err(), "{bad}");
        }
    }

    #[test]
    fn records_of_the_json_format_are_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let master = MasterKey::create(&dir.path().join("master.key")).unwrap();
        let mut conn = crate::store::open_sqlite(std::path::Path::new(":memory:")).unwrap();
        crate::store::migrate(&mut conn).unwrap();
        let who = crate::domain::identities::insert(&conn, "analyst", crate::domain::identities::Role::Member).unwrap();
        let idem = Idempotent {
            identity_id: who.id,
            key: "k".repeat(16),
            request_hash: "h".into(),
            master: &master,
        };
        let old = serde_json::to_vec(&serde_json::json!([{"ok": true, "key": "7"}])).unwrap();
        let sealed = master.seal(&idem.context(), &old).unwrap();
        conn.execute(
            "INSERT INTO idempotency (identity_id, key, request_hash, response, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![who.id, idem.key, idem.request_hash, sealed, clock::now_micros()],
        )
        .unwrap();
        let back = idem.lookup(&conn).unwrap().unwrap();
        assert_eq!(
            back.into_json().unwrap(),
            serde_json::json!({"results": [{"ok": true, "key": "7"}]})
        );
    }

    #[test]
    fn the_hash_depends_on_every_descriptor_and_their_order() {
        let a = serde_json::json!({"op": "sum"});
        let b = serde_json::json!({"op": "compare"});
        assert_eq!(
            request_hash(&[a.clone(), b.clone()], &[]),
            request_hash(&[a.clone(), b.clone()], &[])
        );
        assert_ne!(
            request_hash(&[a.clone(), b.clone()], &[]),
            request_hash(&[b.clone(), a.clone()], &[])
        );
        assert_ne!(request_hash(std::slice::from_ref(&a), &[]), request_hash(&[a, b], &[]));
    }

    /// Records written before request frames stay valid: a JSON request hashes as it did.
    #[test]
    fn json_requests_hash_as_before() {
        let r = serde_json::json!({"op": "sum", "rids": "AQAF"});
        assert_eq!(
            request_hash(&[r], &[]),
            hex::encode(Sha256::digest(b"{\"op\":\"sum\",\"rids\":\"AQAF\"}\n"))
        );
    }

    #[test]
    fn the_hash_covers_every_blob_byte_and_the_split_between_blobs() {
        let r = [serde_json::json!({"op": "pads", "rids": {"$blob": 0, "len": 2}})];
        let hash = |blobs: &[&'static [u8]]| {
            request_hash(&r, &blobs.iter().map(|b| Bytes::from_static(b)).collect::<Vec<_>>())
        };
        assert_eq!(hash(&[b"ab"]), hash(&[b"ab"]));
        assert_ne!(hash(&[b"ab"]), hash(&[b"ac"]));
        assert_ne!(hash(&[b"ab"]), hash(&[]));
        assert_ne!(hash(&[b"ab", b"c"]), hash(&[b"a", b"bc"]));
        assert_ne!(hash(&[b""]), hash(&[]));
    }
}
