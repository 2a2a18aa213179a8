//! Taking in a batch without letting it cost more than it may: rid sets stay in their wire
//! encoding (counted from it, `ghostpii_core::rid_encoding`) until the descriptor is authorized
//! and its count is known to fit the column's allocated rows; only then are they materialised,
//! and their digests computed, outside the database lock.
//!
//! Order per request: decode every descriptor (no lock; refuse the whole request with 413 if
//! the rid counts together exceed `max_rids_per_request`); [`gate`] each one (database lock,
//! index look-ups only: dataset, columns, grants, allocated-row counts); [`expand`] the ones
//! that passed (no lock). The plan step then re-checks everything with the sets in hand.

use crate::store::Connection;
use axum::body::Bytes;
use ghostpii_core::{rid_encoding, RidSet};

use super::wire::{Batch, WireRids};
use super::{column_of, dataset, Cache, Ctx, Decoded, Descriptor, Received};
use crate::domain::identities::Identity;
use crate::domain::limits::Limits;
use crate::domain::policy;
use crate::error::{reason, ApiError, ApiResult};
use crate::state::AppState;

/// Received descriptors → descriptors with their rid sets admitted: refuse the request (413) if
/// its rid sets name too many rids together; gate each descriptor under the database lock; expand
/// what passed, without the lock.
pub(super) fn admit(st: &AppState, caller: &Identity, received: Vec<Received>) -> ApiResult<Vec<Decoded>> {
    check_total(
        st.limits(),
        received
            .iter()
            .filter_map(|(_, d)| d.as_ref().ok()?.1.as_ref().map(Incoming::count)),
    )?;
    let gates: Vec<Option<Gate>> = st.with_db(|conn| {
        let mut cache = Cache::default();
        Ok(received
            .iter()
            .map(|(_, d)| {
                let (desc, incoming) = d.as_ref().ok()?;
                incoming.as_ref()?;
                let mut cx = Ctx::new(conn, st, caller, desc, &mut cache);
                Some(gate(&mut cx, desc))
            })
            .collect())
    })?;
    Ok(received
        .into_iter()
        .zip(gates)
        .map(|((entry, d), g)| {
            let d = d.and_then(|(desc, incoming)| match (incoming, g) {
                (Some(i), Some(g)) => Ok((desc, Some(expand(i, g)?))),
                _ => Ok((desc, None)),
            });
            (entry, d)
        })
        .collect())
}

/// The gate's decision on a descriptor: the smallest allocated-row count among its columns and
/// that column's name, or why its rid set is not to be expanded.
pub(super) type Gate = ApiResult<(u64, String)>;

/// A rid set as received (base64 decoded, or a frame's blob): its encoding and the number of
/// rids it names.
pub(super) struct Incoming {
    bytes: Bytes,
    count: u64,
}

impl Incoming {
    pub(super) fn decode(rids: &WireRids) -> ApiResult<Incoming> {
        let bytes = rids.bytes()?;
        let count = rid_encoding::cardinality(&bytes).map_err(|e| ApiError::invalid(e.to_string()))?;
        Ok(Incoming { bytes, count })
    }

    fn count(&self) -> u64 {
        self.count
    }
}

/// A rid set after the gate.
pub(super) enum Rids {
    /// Materialised, with the digest of its canonical encoding.
    Ready { set: RidSet, digest: String },
    /// Names more rids than some column of the descriptor has allocated (never materialised).
    TooMany { count: u64, allocated: u64, column: String },
    /// The descriptor was refused at the gate; the plan step gives the refusal.
    Withheld { count: u64 },
}

impl Rids {
    pub(super) fn count(&self) -> u64 {
        match self {
            Rids::Ready { set, .. } => set.len(),
            Rids::TooMany { count, .. } | Rids::Withheld { count } => *count,
        }
    }

    /// The set, the digest, and the refusal `check_rids` must give instead of looking at it.
    pub(super) fn into_parts(self) -> (RidSet, Option<String>, Option<ApiError>) {
        match self {
            Rids::Ready { set, digest } => (set, Some(digest), None),
            Rids::TooMany {
                count,
                allocated,
                column,
            } => (
                RidSet::new(),
                None,
                Some(ApiError::refused(
                    reason::UNKNOWN_RIDS,
                    format!(
                        "the rid set names {count} row ids but only {allocated} were ever allocated for \
                         column '{column}', so some were never allocated"
                    ),
                )),
            ),
            Rids::Withheld { .. } => (
                RidSet::new(),
                None,
                Some(ApiError::denied(
                    "the grants of this identity changed while the request was planned; ask again",
                )),
            ),
        }
    }
}

/// Refuse the whole request (413) if its rid sets name more rids together than allowed.
fn check_total(limits: &Limits, counts: impl Iterator<Item = u64>) -> ApiResult<()> {
    limits.check_rids(counts.fold(0u64, u64::saturating_add))
}

/// The smallest allocated-row count among the descriptor's columns, after checking that the
/// caller may see the dataset and columns and holds the descriptor's grant on each (index
/// look-ups only). An error means: do not expand.
fn gate(cx: &mut Ctx<'_>, desc: &Descriptor) -> Gate {
    let (dataset_id, column_ids): (i64, Vec<i64>) = match desc {
        Descriptor::Sum { dataset_id, terms, .. } => (*dataset_id, terms.iter().map(|t| t.column_id).collect()),
        Descriptor::Decrypt {
            dataset_id, column_id, ..
        }
        | Descriptor::Pads {
            dataset_id, column_id, ..
        } => (*dataset_id, vec![*column_id]),
        Descriptor::Score { dataset_id, terms, .. } => (*dataset_id, terms.iter().map(|t| t.column_id).collect()),
        Descriptor::Compare { .. } | Descriptor::Match { .. } | Descriptor::Search { .. } | Descriptor::Sums { .. } => {
            return Ok((0, String::new()))
        }
        Descriptor::Gram {
            dataset_id, entries, ..
        } => (*dataset_id, entries.iter().map(|e| e.column_id).collect()),
    };
    let key = (dataset_id, column_ids);
    if let Some(g) = cx.cache.gates.get(&key) {
        return g.clone();
    }
    let g = gate_columns(cx, key.0, &key.1);
    cx.cache.gates.insert(key, g.clone());
    g
}

fn gate_columns(cx: &mut Ctx<'_>, dataset_id: i64, column_ids: &[i64]) -> Gate {
    let ds = dataset(cx, dataset_id)?;
    let mut smallest: Option<(u64, String)> = None;
    for &id in column_ids {
        let col = column_of(cx, &ds, id)?;
        if cx.op == crate::domain::grants::Operation::Moments {
            crate::domain::moments::authorize_term(cx.conn, cx.caller, &ds, &col.name)?;
        } else {
            policy::authorize(cx.conn, cx.caller, &ds, &col.name, cx.op)?;
        }
        let n = allocated_count(cx.conn, col.id)?;
        if smallest.as_ref().is_none_or(|(m, _)| n < *m) {
            smallest = Some((n, col.name));
        }
    }
    smallest.ok_or_else(|| ApiError::invalid("a sum needs at least one term"))
}

/// How many rids were allocated for the column (from its ranges, nothing materialised).
fn allocated_count(conn: &Connection, column_id: i64) -> crate::store::Result<u64> {
    let n: i64 = conn.query_row(
        "SELECT COALESCE(SUM(count), 0) FROM rid_ranges WHERE column_id = ?1 AND count > 0",
        [column_id],
        |r| r.get(0),
    )?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Materialise a rid set that passed the gate (no lock held), or say why it is not.
fn expand(incoming: Incoming, gate: Gate) -> ApiResult<Rids> {
    let count = incoming.count;
    match gate {
        Err(_) => Ok(Rids::Withheld { count }),
        Ok((allocated, column)) if count > allocated => Ok(Rids::TooMany {
            count,
            allocated,
            column,
        }),
        Ok(_) => {
            let set = RidSet::from_bytes(&incoming.bytes).map_err(|e| ApiError::invalid(e.to_string()))?;
            let digest = set.digest_hex();
            Ok(Rids::Ready { set, digest })
        }
    }
}

/// Decode an answer-key request body as `POST /v1/answer-keys` does before the database is
/// touched: JSON, or a request frame (a body that starts with its magic bytes), every
/// descriptor, every rid set counted, and materialised where it names at most `max_rids` (the
/// gate's bound). Returns how many descriptors decoded. For fuzzing.
#[doc(hidden)]
pub fn decode_untrusted(body: &[u8], max_rids: u64) -> usize {
    let Some(batch) = untrusted_batch(body) else {
        return 0;
    };
    let mut ok = 0;
    for d in batch.requests.iter().map(|v| super::decode(v, &batch.blobs)) {
        if let (_, Ok((_, incoming))) = d {
            ok += 1;
            if let Some(i) = incoming {
                let gate = Ok((max_rids, String::new()));
                if let Ok(Rids::Ready { set, .. }) = expand(i, gate) {
                    assert!(set.len() <= max_rids, "the gate's bound holds");
                }
            }
        }
    }
    ok
}

/// The batch of a body: a frame by its magic bytes, else JSON `{"requests": [...]}`.
fn untrusted_batch(body: &[u8]) -> Option<Batch> {
    if body.starts_with(ghostpii_core::frame::MAGIC) {
        return Batch::from_frame(Bytes::copy_from_slice(body)).ok();
    }
    let mut v = serde_json::from_slice::<serde_json::Value>(body).ok()?;
    let serde_json::Value::Array(requests) = v.get_mut("requests")?.take() else {
        return None;
    };
    Batch::from_json(requests).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ghostpii_core::frame;
    use serde_json::json;

    fn sum(rids: serde_json::Value) -> serde_json::Value {
        json!({"op": "sum", "dataset_id": 1, "rids": rids, "terms": [{"column_id": 1, "epoch": 1, "weight": 1}]})
    }

    #[test]
    fn untrusted_bodies_may_be_json_or_frames() {
        let set = RidSet::from_sorted(&[5, 6, 7]);
        let json = json!({"requests": [sum(json!(set.to_base64())), {"op": "nope"}]});
        assert_eq!(decode_untrusted(json.to_string().as_bytes(), 10), 1);
        let marker = json!({"$blob": 0, "len": set.to_bytes().len()});
        let framed = frame::encode(
            &json!({"requests": [sum(marker.clone()), sum(json!(set.to_base64()))]}),
            &[&set.to_bytes()],
        )
        .unwrap();
        assert_eq!(decode_untrusted(&framed, 10), 2);
        // a marker in JSON, a malformed frame: nothing decodes
        assert_eq!(
            decode_untrusted(json!({"requests": [sum(marker)]}).to_string().as_bytes(), 10),
            0
        );
        assert_eq!(decode_untrusted(&framed[..framed.len() - 1], 10), 0);
    }
}
