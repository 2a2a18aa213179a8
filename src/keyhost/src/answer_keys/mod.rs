//! Answer keys: the keyhost computes every answer key itself from its column keys and a
//! computation descriptor, after checking grants, row ids and constraints.
//!
//! A batch is handled in three steps: *plan* (decode descriptors light, authorize them, and
//! only then materialise their rid sets, see `intake.rs`; then look up columns and grants;
//! database lock held briefly), *compute* (masks, row keys, tokens and DP noise,
//! rayon-parallel, no lock), and *record* (one transaction: the stateful checks of each
//! descriptor — distinct constants, privacy budget, answered row sets — then its audit row
//! and the ledger updates, all committed before the response). Stateful checks run in the
//! record step so that concurrent batches cannot both pass a limit.
//!
//! A batch arrives as JSON or as a request frame whose rid sets may travel raw (`wire.rs`).
//! Descriptors (`"op"`): `sum` (see `sum.rs`), `sums` (`sums.rs`), `decrypt` (`decrypt.rs`), `compare`
//! (`compare.rs`), `score` (`score.rs`), `match` (`match_tokens.rs`), `pads` (`pseudonyms.rs`).
//! Row-wise circuits over FHE ciphertexts (`POST /v1/compute`) are planned and recorded in
//! `compute.rs` with the same helpers.

mod compare;
pub mod compute;
mod decrypt;
mod effects;
mod gram;
pub mod idempotency;
mod intake;
mod match_tokens;
pub mod payload;
mod pseudonyms;
mod recheck;
mod score;
mod search_tokens;
mod similarity_tokens;
mod sum;
mod sums;
mod visibility;
mod wire;

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use crate::store::Connection;
use ghostpii_core::{ColumnKeys, RidSet};
use rayon::prelude::*;
use roaring::RoaringTreemap;
use serde::Deserialize;
use serde_json::{json, Value};

use self::idempotency::Idempotent;
use crate::domain::audit::{self, NewEntry};
use crate::domain::columns::{self, Column};
use crate::domain::datasets::Dataset;
use crate::domain::grants::Operation;
use crate::domain::identities::Identity;
use crate::domain::linear_audit;
use crate::domain::policy::{self, Authority};
use crate::error::{reason, ApiError, ApiResult};
use crate::state::AppState;

pub use effects::Effect;
pub use intake::decode_untrusted;
use payload::{Answered, Computed};
use visibility::{column_of, constant_column, dataset};
pub use wire::Batch;
use wire::WireRids;

/// A descriptor as the keyhost reads it: the protocol's type (`ghostpii_proto::descriptor`)
/// with rid sets as they travel (`wire.rs`).
type Descriptor = ghostpii_proto::Descriptor<WireRids>;

/// What to compute for one granted descriptor.
enum Work {
    Sum(sum::SumWork),
    Sums(sums::SumsWork),
    Decrypt(decrypt::DecryptWork),
    Compare(compare::CompareWork),
    Score(score::ScoreWork),
    Gram(gram::GramWork),
    Match(Box<match_tokens::MatchWork>),
    Search(Box<search_tokens::SearchWork>),
    Similarity(Box<similarity_tokens::SimilarityWork>),
    Pads(Box<pseudonyms::PadWork>),
}

/// One descriptor after planning: its audit entry, either work or a refusal, and the
/// stateful checks and ledger updates to apply when it is recorded.
struct Planned {
    entry: NewEntry,
    work: Result<Work, ApiError>,
    effects: Vec<Effect>,
}

/// Answer a batch of descriptors for `caller`. Returns one result object per descriptor.
/// With an idempotency `key`, a request already answered returns its recorded results.
pub async fn answer(state: &AppState, caller: Identity, batch: Batch, key: Option<String>) -> ApiResult<Answered> {
    let st = state.clone();
    state
        .blocking(move || {
            let idem = key.map(|key| Idempotent {
                identity_id: caller.id,
                key,
                request_hash: idempotency::request_hash(&batch.requests, &batch.blobs),
                master: st.master(),
            });
            if let Some(prior) = idem
                .as_ref()
                .map(|i| st.with_db(|c| i.lookup(c)))
                .transpose()?
                .flatten()
            {
                return recompute_pending(&st, &caller, &batch, prior);
            }
            // Decode light, authorize, bound and only then materialise rid sets (intake.rs).
            let received = batch.requests.iter().map(|v| decode(v, &batch.blobs)).collect();
            let decoded = intake::admit(&st, &caller, received)?;
            let locks = record_locks(&caller, &decoded, idem.as_ref());
            let planned = st.with_db(|conn| {
                let mut cache = Cache::default();
                Ok(decoded
                    .into_iter()
                    .map(|d| plan(conn, &st, &caller, d, &mut cache))
                    .collect::<Vec<_>>())
            })?;
            // CPU only, no lock: descriptors in parallel (one group's few rows each)
            let outcomes: Vec<Outcome> = planned
                .into_par_iter()
                .map(|p| Outcome {
                    entry: p.entry,
                    result: p.work.map(compute),
                    effects: p.effects,
                })
                .collect();
            let answered = st.with_db(|conn| record(conn, &st, outcomes, idem.as_ref(), &locks))?;
            // a concurrent retry recorded first: its record, completed
            recompute_pending(&st, &caller, &batch, answered)
        })
        .await
}

/// Complete an idempotency record: compute again the deterministic byte fields it left out
/// (`payload.rs`), from the same request (its hash, blobs included, matched). Planned afresh, so
/// a grant revoked since the first answer refuses the retry; nothing is audited or charged again.
fn recompute_pending(st: &AppState, caller: &Identity, batch: &Batch, mut prior: Answered) -> ApiResult<Answered> {
    if prior.pending.is_empty() {
        return Ok(prior);
    }
    let pending = prior.pending.clone();
    let decoded = intake::admit(
        st,
        caller,
        pending
            .iter()
            .map(|&(i, _)| {
                batch
                    .requests
                    .get(i)
                    .map(|v| decode(v, &batch.blobs))
                    .ok_or_else(|| ApiError::internal("idempotency record", &"index"))
            })
            .collect::<ApiResult<Vec<_>>>()?,
    )?;
    let works = st.with_db(|conn| {
        let mut cache = Cache::default();
        Ok(decoded
            .into_iter()
            .map(|d| plan(conn, st, caller, d, &mut cache).work)
            .collect::<Vec<_>>())
    })?;
    for (&(i, field), work) in pending.iter().zip(works) {
        let blob = work.and_then(compute).map_err(|e| {
            ApiError::conflict(format!(
                "this request was already answered and audited, but its per-row keys cannot be \
                 computed again for the retry: {}; send it with a new Idempotency-Key",
                e.message
            ))
        })?;
        match blob.blob {
            Some(b) if b.field == field => prior.fill(i, b),
            _ => {
                return Err(ApiError::internal(
                    "idempotency record",
                    &"recomputed answer differs in shape",
                ))
            }
        }
    }
    Ok(prior)
}

type Decoded = (NewEntry, Result<(Descriptor, Option<intake::Rids>), ApiError>);
type Received = (NewEntry, Result<(Descriptor, Option<intake::Incoming>), ApiError>);

/// Decode a descriptor, its blob markers resolved against the frame's `blobs` (`wire.rs`), its
/// main rid set counted from its encoding.
fn decode(v: &Value, blobs: &[axum::body::Bytes]) -> Received {
    let op = v.get("op").and_then(Value::as_str).unwrap_or("answer").to_owned();
    let entry = NewEntry {
        operation: op,
        ..Default::default()
    };
    let parsed = Descriptor::deserialize(v)
        .map_err(|e| ApiError::invalid(format!("malformed answer-key descriptor: {e}")))
        .and_then(|mut d| {
            d.rid_sets_mut().into_iter().try_for_each(|r| r.resolve(blobs))?;
            let rids = d.main_rids().map(intake::Incoming::decode).transpose()?;
            Ok((d, rids))
        });
    (entry, parsed)
}

/// The locks of the record transaction (`db::Connection::transaction_scoped`): the caller on
/// every dataset the batch names (its ledgers, linear audit, score span and distinct constants
/// live under those keys), and the idempotency key if there is one.
fn record_locks(caller: &Identity, decoded: &[Decoded], idem: Option<&Idempotent<'_>>) -> Vec<i64> {
    use crate::store::{idempotency_lock_key, lock_key, LockScope};
    let mut keys: Vec<i64> = decoded
        .iter()
        .filter_map(|(_, d)| d.as_ref().ok())
        .map(|(d, _)| lock_key(LockScope::IdentityDataset, caller.id, d.dataset_id()))
        .chain(idem.map(|i| idempotency_lock_key(i.identity_id, &i.key)))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// Per-batch cache of the allocated rid sets of columns, of what the caller may see, and of
/// the gate's decisions (per dataset and column ids).
#[derive(Default)]
struct Cache {
    allocated: HashMap<i64, RoaringTreemap>,
    spans: HashMap<i64, Option<(u64, u64)>>,
    visible: HashMap<i64, bool>,
    gates: HashMap<(i64, Vec<i64>), intake::Gate>,
    /// Column keys and authorizations, so a batch of many groups looks each up once.
    columns: HashMap<(i64, i64, u32), (Column, ColumnKeys)>,
    auths: HashMap<(i64, String, Operation), ApiResult<Authority>>,
    /// Datasets by id (`None`: unknown).
    datasets: HashMap<i64, Option<Dataset>>,
}

impl Cache {
    fn allocated(&mut self, conn: &Connection, column_id: i64) -> ApiResult<&RoaringTreemap> {
        match self.allocated.entry(column_id) {
            Entry::Occupied(e) => Ok(e.into_mut()),
            Entry::Vacant(e) => {
                let set = columns::allocated_set(&columns::rid_ranges(conn, column_id)?);
                Ok(e.insert(set))
            }
        }
    }

    /// `lo..=hi` if the column's allocated rids are exactly that one run (the common case: one
    /// encryption, or appends without gaps), so a rid set is checked by its ends alone.
    fn allocated_span(&mut self, conn: &Connection, column_id: i64) -> ApiResult<Option<(u64, u64)>> {
        if let Some(&span) = self.spans.get(&column_id) {
            return Ok(span);
        }
        let a = self.allocated(conn, column_id)?;
        let span = match (a.min(), a.max()) {
            (Some(lo), Some(hi)) if a.len() == hi - lo + 1 => Some((lo, hi)),
            _ => None,
        };
        self.spans.insert(column_id, span);
        Ok(span)
    }
}

/// What the planners of the operations get.
struct Ctx<'a> {
    conn: &'a Connection,
    st: &'a AppState,
    caller: &'a Identity,
    cache: &'a mut Cache,
    /// The grant the descriptor needs (named when a dataset or column is not visible).
    op: Operation,
    /// What `check_rids` must answer instead of looking at the (unexpanded) rid set.
    rid_refusal: Option<ApiError>,
    /// The name of the dataset the descriptor addressed, for its audit entry (`visibility.rs`).
    seen_dataset: Option<String>,
    /// The owner of that dataset (who may read the entry, `orgs::add_readers`).
    seen_owner: Option<i64>,
}

impl<'a> Ctx<'a> {
    fn new(
        conn: &'a Connection,
        st: &'a AppState,
        caller: &'a Identity,
        desc: &Descriptor,
        cache: &'a mut Cache,
    ) -> Self {
        let op = match desc {
            Descriptor::Sum { .. } | Descriptor::Sums { .. } => Operation::Aggregate,
            Descriptor::Decrypt { .. } => Operation::Decrypt,
            Descriptor::Compare { .. } => Operation::Compare,
            Descriptor::Score { .. } => Operation::Score,
            Descriptor::Gram { .. } => Operation::Moments,
            Descriptor::Match { .. } => Operation::Match,
            Descriptor::Search {
                kind: ghostpii_proto::descriptor::SearchKind::Similarity,
                ..
            } => Operation::Link,
            Descriptor::Search { .. } => Operation::Search,
            Descriptor::Pads { facet, .. } => pseudonyms::operation(facet.as_str()),
        };
        Ctx::for_op(conn, st, caller, cache, op)
    }

    /// A context for the grant `op` (also for requests that are not answer-key descriptors,
    /// `compute.rs`).
    fn for_op(
        conn: &'a Connection,
        st: &'a AppState,
        caller: &'a Identity,
        cache: &'a mut Cache,
        op: Operation,
    ) -> Self {
        Ctx {
            conn,
            st,
            caller,
            cache,
            op,
            rid_refusal: None,
            seen_dataset: None,
            seen_owner: None,
        }
    }
}

fn plan(conn: &Connection, st: &AppState, caller: &Identity, d: Decoded, cache: &mut Cache) -> Planned {
    let (mut entry, parsed) = d;
    entry.identity = Some(caller.name.clone());
    entry.params = json!({});
    let mut effects = Vec::new();
    let work = parsed.and_then(|(desc, rids)| {
        let mut cx = Ctx::new(conn, st, caller, &desc, cache);
        let rids = match rids {
            None => RidSet::default(),
            Some(r) => {
                entry.rid_count = Some(r.count());
                let (set, digest, refusal) = r.into_parts();
                entry.rid_digest = digest;
                cx.rid_refusal = refusal;
                set
            }
        };
        let work = match desc {
            Descriptor::Sum {
                dataset_id,
                terms,
                repeats,
                ..
            } => sum::plan(&mut cx, &mut entry, &mut effects, dataset_id, terms, rids, &repeats).map(Work::Sum),
            Descriptor::Sums {
                dataset_id,
                terms,
                groups,
            } => sums::plan(&mut cx, &mut entry, &mut effects, dataset_id, terms, groups).map(Work::Sums),
            Descriptor::Decrypt {
                dataset_id,
                column_id,
                epoch,
                facet,
                ..
            } => decrypt::plan(&mut cx, &mut entry, dataset_id, column_id, epoch, facet.as_str(), rids)
                .map(Work::Decrypt),
            Descriptor::Compare {
                dataset_id,
                column_id,
                epoch,
                constant,
            } => compare::plan(
                &mut cx,
                &mut entry,
                &mut effects,
                dataset_id,
                column_id,
                epoch,
                constant,
            )
            .map(Work::Compare),
            Descriptor::Score {
                dataset_id,
                terms,
                scale_bits,
                ..
            } => score::plan(&mut cx, &mut entry, &mut effects, dataset_id, terms, scale_bits, rids).map(Work::Score),
            Descriptor::Gram {
                dataset_id,
                repeats,
                weights,
                entries,
                ..
            } => gram::plan(
                &mut cx,
                &mut entry,
                &mut effects,
                dataset_id,
                rids,
                &repeats,
                &weights,
                &entries,
            )
            .map(Work::Gram),
            Descriptor::Match {
                dataset_id,
                column_id,
                epoch,
                constant,
            } => match_tokens::plan(
                &mut cx,
                &mut entry,
                &mut effects,
                dataset_id,
                column_id,
                epoch,
                &constant.to_json(),
            )
            .map(|w| Work::Match(Box::new(w))),
            Descriptor::Search {
                dataset_id,
                column_id,
                epoch,
                kind: ghostpii_proto::descriptor::SearchKind::Similarity,
                constant,
                ..
            } => similarity_tokens::plan(
                &mut cx,
                &mut entry,
                &mut effects,
                (dataset_id, column_id, epoch),
                &constant,
            )
            .map(|w| Work::Similarity(Box::new(w))),
            Descriptor::Search {
                dataset_id,
                column_id,
                epoch,
                kind,
                constant,
                q,
            } => search_tokens::plan(
                &mut cx,
                &mut entry,
                &mut effects,
                dataset_id,
                column_id,
                epoch,
                kind.as_str(),
                q,
                &constant,
            )
            .map(|w| Work::Search(Box::new(w))),
            Descriptor::Pads {
                dataset_id,
                column_id,
                epoch,
                facet,
                ..
            } => pseudonyms::plan(&mut cx, &mut entry, dataset_id, column_id, epoch, facet.as_str(), rids)
                .map(|w| Work::Pads(Box::new(w))),
        };
        // the owner's audit shows attempts on their dataset, even where the refusal names none
        if entry.dataset.is_none() {
            entry.dataset = cx.seen_dataset.take();
        }
        // dataset names are unique per owner: the entry is filed under its dataset's owner
        if let Some(owner) = cx.seen_owner.take() {
            entry.add_reader(owner);
        }
        work
    });
    Planned { entry, work, effects }
}

/// May the caller obtain `op` answer keys on `column` of `ds`? (once per batch and column)
fn authorize(cx: &mut Ctx<'_>, ds: &Dataset, column: &str, op: Operation) -> ApiResult<Authority> {
    let k = (ds.id, column.to_owned(), op);
    if let Some(a) = cx.cache.auths.get(&k) {
        return a.clone();
    }
    let a = policy::authorize(cx.conn, cx.caller, ds, column, op);
    cx.cache.auths.insert(k, a.clone());
    a
}

/// The column, checked to belong to the dataset, and the keys of the requested epoch (once
/// per batch: deriving keys is the costly part of many small descriptors).
fn column_epoch(cx: &mut Ctx<'_>, ds: &Dataset, column_id: i64, epoch: u32) -> ApiResult<(Column, ColumnKeys)> {
    let k = (ds.id, column_id, epoch);
    if let Some(c) = cx.cache.columns.get(&k) {
        return Ok(c.clone());
    }
    let c = find_column_epoch(cx, ds, column_id, epoch)?;
    cx.cache.columns.insert(k, c.clone());
    Ok(c)
}

fn find_column_epoch(cx: &mut Ctx<'_>, ds: &Dataset, column_id: i64, epoch: u32) -> ApiResult<(Column, ColumnKeys)> {
    let col = column_of(cx, ds, column_id)?;
    let (conn, st) = (cx.conn, cx.st);
    let wrapped = columns::wrapped_key(conn, col.id, epoch)?.ok_or_else(|| {
        ApiError::not_found(format!(
            "epoch {epoch} of column '{}' of dataset '{}' is unknown to this keyhost ({}); \
             its current epoch is {}",
            col.name,
            ds.name,
            st.keyhost_id(),
            col.current_epoch
        ))
    })?;
    let keys = columns::column_keys(st.master(), st.keyhost_id(), &wrapped, ds.id, col.id, epoch)?;
    Ok((col, keys))
}

fn check_rids(cx: &mut Ctx<'_>, col: &Column, rids: &RidSet) -> ApiResult<()> {
    if let Some(refusal) = &cx.rid_refusal {
        return Err(refusal.clone());
    }
    if rids.is_empty() {
        return Err(ApiError::invalid("the rid set is empty: no answer key for zero rows"));
    }
    if let (Some((lo, hi)), Some(first), Some(last)) =
        (cx.cache.allocated_span(cx.conn, col.id)?, rids.0.min(), rids.0.max())
    {
        if lo <= first && last <= hi {
            return Ok(()); // within the one allocated run
        }
    }
    let allocated = cx.cache.allocated(cx.conn, col.id)?;
    if !rids.0.is_subset(allocated) {
        let unknown = rids.0.difference_len(allocated);
        return Err(ApiError::refused(
            reason::UNKNOWN_RIDS,
            format!(
                "{unknown} of the {} requested row ids were never allocated for column '{}'",
                rids.len(),
                col.name
            ),
        ));
    }
    Ok(())
}

/// Note in the audit entry on what authority the key is issued.
fn set_authority(entry: &mut NewEntry, auths: &[Authority]) {
    let reason = if auths.contains(&Authority::Admin) {
        "admin"
    } else if auths.iter().all(|a| *a == Authority::Owner) {
        "owner"
    } else {
        "grant"
    };
    entry.reason = Some(reason.into());
    let mut ids: Vec<i64> = auths.iter().flat_map(|a| a.grant_ids()).collect();
    ids.sort_unstable();
    ids.dedup();
    if let Value::Object(m) = &mut entry.params {
        if !ids.is_empty() {
            m.insert("grant_ids".into(), json!(ids));
        }
    }
}

/// Insert `key: value` into the entry's params object.
fn note(entry: &mut NewEntry, key: &str, value: Value) {
    if let Value::Object(m) = &mut entry.params {
        m.insert(key.into(), value);
    }
}

/// Compute an answer key (CPU only, parallel).
fn compute(work: Work) -> Result<Computed, ApiError> {
    match work {
        Work::Sum(w) => sum::compute(w).and_then(Computed::json),
        Work::Sums(w) => sums::compute(w),
        Work::Decrypt(w) => Ok(decrypt::compute(w)),
        Work::Compare(w) => compare::compute(w).and_then(Computed::json),
        Work::Score(w) => Ok(score::compute(w)),
        Work::Gram(w) => gram::compute(w).and_then(Computed::json),
        Work::Match(w) => Computed::json(match_tokens::compute(*w)),
        Work::Search(w) => search_tokens::compute(*w).and_then(Computed::json),
        Work::Similarity(w) => Computed::json(similarity_tokens::compute(*w)),
        Work::Pads(w) => Ok(pseudonyms::compute(*w)),
    }
}

struct Outcome {
    entry: NewEntry,
    result: Result<Result<Computed, ApiError>, ApiError>,
    effects: Vec<Effect>,
}

/// Write the audit rows of the batch in one transaction and build the results.
fn record(
    conn: &mut Connection,
    st: &AppState,
    outcomes: Vec<Outcome>,
    idem: Option<&Idempotent<'_>>,
    locks: &[i64],
) -> ApiResult<Answered> {
    let tx = conn.transaction_scoped(locks)?;
    if let Some(prior) = idem.map(|i| i.lookup(&tx)).transpose()?.flatten() {
        return Ok(prior); // a concurrent retry of this request was recorded first
    }
    let mut audits = linear_audit::Batch::new(st.audit_cache(), st.limits().audit_max_entries);
    let mut results = Answered::default();
    let mut chain = audit::Chain::start(&tx)?;
    let max_delay = st.sequencing().max_delay_micros();
    // DP charges of the batch: all or nothing, parallel over disjoint rows
    let mut outcomes = outcomes;
    let refusals = {
        let mut batch: Vec<Option<&mut Vec<Effect>>> = outcomes
            .iter_mut()
            .map(|o| matches!(o.result, Ok(Ok(_))).then_some(&mut o.effects))
            .collect();
        effects::plan_batch_budget(&tx, &mut batch)?
    };
    let (refusals, mut pending) = refusals;
    for (o, refusal) in outcomes.iter_mut().zip(refusals) {
        if let Some(e) = refusal {
            o.result = Err(e);
        }
    }
    for mut o in outcomes {
        let checked = o
            .result
            .and_then(|r| r)
            .and_then(|v| recheck::grants_still_active(&tx, &o.entry).map(|()| v))
            .and_then(|v| effects::check_all(&tx, &mut audits, &o.effects).map(|()| v));
        match checked {
            Ok(Computed { fields: mut m, blob }) => {
                let receipt = chain.append(
                    &tx,
                    NewEntry {
                        decision: audit::ISSUED,
                        ..o.entry
                    },
                )?;
                effects::carry_parallel_total(&mut o.effects, &mut pending);
                effects::apply_all(&tx, &o.effects, receipt.index)?;
                m.insert("ok".into(), Value::Bool(true));
                m.insert(
                    "receipt".into(),
                    receipt.to_json_signed(st.keyhost_id(), st.signer(), max_delay),
                );
                results.push(Value::Object(m), blob);
            }
            Err(err) => {
                err.log_cause("one descriptor of an answer-key request");
                let receipt = chain.append(&tx, o.entry.refused(err.reason.as_str()))?;
                results.push(
                    json!({
                        "ok": false,
                        "reason": err.reason,
                        "message": err.message,
                        "missing_grant": err.missing_grant,
                        "receipt": receipt.to_json_signed(st.keyhost_id(), st.signer(), max_delay),
                    }),
                    None,
                );
            }
        }
    }
    chain.finish(&tx)?;
    audits.save(&tx)?;
    if let Some(i) = idem {
        i.store(&tx, &results)?;
    }
    tx.commit()?;
    audits.finish();
    Ok(results)
}
