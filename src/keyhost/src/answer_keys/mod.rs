//! Answer keys: the keyhost computes every answer key itself from its column keys and a
//! computation descriptor, after checking grants, row ids and constraints.
//!
//! A batch is handled in three steps: *plan* (decode descriptors, look up columns and grants;
//! database lock held briefly), *compute* (masks and row keys, rayon-parallel, no lock), and
//! *record* (all audit rows of the batch in one transaction, committed before the response).

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ghostpii_core::{ColumnKeys, Facet, RidSet};
use roaring::RoaringTreemap;
use rusqlite::Connection;
use serde::Deserialize;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::audit::{self, NewEntry};
use crate::columns::{self, Column};
use crate::datasets::{self, Dataset};
use crate::error::{reason, ApiError, ApiResult};
use crate::grants::Operation;
use crate::identities::Identity;
use crate::policy::{self, Authority};
use crate::state::AppState;

#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Descriptor {
    Sum {
        dataset_id: i64,
        rids: String,
        terms: Vec<Term>,
    },
    Decrypt {
        dataset_id: i64,
        column_id: i64,
        epoch: u32,
        facet: String,
        rids: String,
    },
}

#[derive(Debug, Deserialize)]
struct Term {
    column_id: i64,
    epoch: u32,
    weight: i64,
}

/// What to compute for one granted descriptor.
enum Work {
    Sum {
        rids: RidSet,
        terms: Vec<(ColumnKeys, i64)>,
    },
    Decrypt {
        rids: RidSet,
        keys: Box<ColumnKeys>,
        facet: Facet,
    },
}

/// One descriptor after planning: its audit entry and either work or a refusal.
struct Planned {
    entry: NewEntry,
    work: Result<Work, ApiError>,
}

/// Answer a batch of descriptors for `caller`. Returns one result object per descriptor.
pub async fn answer(state: &AppState, caller: Identity, requests: Vec<Value>) -> ApiResult<Vec<Value>> {
    let st = state.clone();
    state
        .blocking(move || {
            // Decode descriptors and rid sets before taking the database lock.
            let decoded: Vec<_> = requests.into_iter().map(decode).collect();
            let planned = st.with_db(|conn| {
                let mut cache = Cache::default();
                Ok(decoded
                    .into_iter()
                    .map(|d| plan(conn, &st, &caller, d, &mut cache))
                    .collect::<Vec<_>>())
            })?;
            let outcomes: Vec<(NewEntry, Result<Value, ApiError>)> =
                planned.into_iter().map(|p| (p.entry, p.work.map(compute))).collect();
            st.with_db(|conn| record(conn, outcomes))
        })
        .await
}

type Decoded = (NewEntry, Result<(Descriptor, RidSet), ApiError>);

fn decode(v: Value) -> Decoded {
    let op = v.get("op").and_then(Value::as_str).unwrap_or("answer").to_owned();
    let entry = NewEntry {
        operation: op,
        ..Default::default()
    };
    let parsed = serde_json::from_value::<Descriptor>(v)
        .map_err(|e| ApiError::invalid(format!("malformed answer-key descriptor: {e}")))
        .and_then(|d| {
            let rids = match &d {
                Descriptor::Sum { rids, .. } | Descriptor::Decrypt { rids, .. } => {
                    RidSet::from_base64(rids).map_err(|e| ApiError::invalid(e.to_string()))?
                }
            };
            Ok((d, rids))
        });
    (entry, parsed)
}

/// Per-batch cache of the allocated rid sets of columns.
#[derive(Default)]
struct Cache {
    allocated: HashMap<i64, RoaringTreemap>,
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
}

fn plan(conn: &Connection, st: &AppState, caller: &Identity, d: Decoded, cache: &mut Cache) -> Planned {
    let (mut entry, parsed) = d;
    entry.identity = Some(caller.name.clone());
    entry.params = json!({});
    let work = parsed.and_then(|(desc, rids)| {
        entry.rid_count = Some(rids.len());
        entry.rid_digest = Some(rids.digest_hex());
        match desc {
            Descriptor::Sum { dataset_id, terms, .. } => {
                plan_sum(conn, st, caller, &mut entry, dataset_id, terms, rids, cache)
            }
            Descriptor::Decrypt {
                dataset_id,
                column_id,
                epoch,
                facet,
                ..
            } => plan_decrypt(
                conn, st, caller, &mut entry, dataset_id, column_id, epoch, &facet, rids, cache,
            ),
        }
    });
    Planned { entry, work }
}

fn dataset(conn: &Connection, st: &AppState, dataset_id: i64) -> ApiResult<Dataset> {
    datasets::find_by_id(conn, dataset_id)?.ok_or_else(|| {
        ApiError::not_found(format!(
            "dataset id {dataset_id} is unknown to this keyhost ({})",
            st.keyhost_id()
        ))
    })
}

/// The column, checked to belong to the dataset, and the keys of the requested epoch.
fn column_epoch(
    conn: &Connection,
    st: &AppState,
    ds: &Dataset,
    column_id: i64,
    epoch: u32,
) -> ApiResult<(Column, ColumnKeys)> {
    let col = columns::find_by_id(conn, column_id)?
        .filter(|c| c.dataset_id == ds.id)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "column id {column_id} of dataset '{}' is unknown to this keyhost ({})",
                ds.name,
                st.keyhost_id()
            ))
        })?;
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

fn check_rids(conn: &Connection, cache: &mut Cache, col: &Column, rids: &RidSet) -> ApiResult<()> {
    if rids.is_empty() {
        return Err(ApiError::invalid("the rid set is empty: no answer key for zero rows"));
    }
    let allocated = cache.allocated(conn, col.id)?;
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

fn check_min_rows(auth: &Authority, col: &Column, rids: &RidSet) -> ApiResult<()> {
    match auth.min_rows() {
        Some(min) if rids.len() < min => Err(ApiError::refused(
            reason::MIN_ROWS,
            format!(
                "the aggregate covers {} rows; the grant on column '{}' requires at least {min}",
                rids.len(),
                col.name
            ),
        )),
        _ => Ok(()),
    }
}

#[allow(clippy::too_many_arguments)]
fn plan_sum(
    conn: &Connection,
    st: &AppState,
    caller: &Identity,
    entry: &mut NewEntry,
    dataset_id: i64,
    terms: Vec<Term>,
    rids: RidSet,
    cache: &mut Cache,
) -> ApiResult<Work> {
    entry.params = json!({
        "dataset_id": dataset_id,
        "terms": terms.iter().map(|t| json!({"column_id": t.column_id, "epoch": t.epoch, "weight": t.weight}))
            .collect::<Vec<_>>(),
    });
    let ds = dataset(conn, st, dataset_id)?;
    entry.dataset = Some(ds.name.clone());
    if terms.is_empty() {
        return Err(ApiError::invalid("a sum needs at least one term"));
    }
    let mut resolved = Vec::with_capacity(terms.len());
    for t in &terms {
        let (col, keys) = column_epoch(conn, st, &ds, t.column_id, t.epoch)?;
        resolved.push((col, keys, t.weight));
    }
    let mut names: Vec<&str> = resolved.iter().map(|(c, _, _)| c.name.as_str()).collect();
    names.dedup();
    entry.column = Some(names.join(","));
    for (col, _, _) in &resolved {
        if !col.spec.has(Facet::Num) {
            return Err(ApiError::invalid(format!(
                "column '{}' has no 'num' facet, so it cannot be summed",
                col.name
            )));
        }
    }
    let mut auths = Vec::with_capacity(resolved.len());
    for (col, _, _) in &resolved {
        auths.push(policy::authorize(conn, caller, &ds, &col.name, Operation::Aggregate)?);
    }
    set_authority(entry, &auths);
    for (col, _, _) in &resolved {
        check_rids(conn, cache, col, &rids)?;
    }
    for ((col, _, _), auth) in resolved.iter().zip(&auths) {
        check_min_rows(auth, col, &rids)?;
    }
    Ok(Work::Sum {
        rids,
        terms: resolved.into_iter().map(|(_, k, w)| (k, w)).collect(),
    })
}

#[allow(clippy::too_many_arguments)]
fn plan_decrypt(
    conn: &Connection,
    st: &AppState,
    caller: &Identity,
    entry: &mut NewEntry,
    dataset_id: i64,
    column_id: i64,
    epoch: u32,
    facet: &str,
    rids: RidSet,
    cache: &mut Cache,
) -> ApiResult<Work> {
    entry.params = json!({"dataset_id": dataset_id, "column_id": column_id, "epoch": epoch, "facet": facet});
    let ds = dataset(conn, st, dataset_id)?;
    entry.dataset = Some(ds.name.clone());
    let (col, keys) = column_epoch(conn, st, &ds, column_id, epoch)?;
    entry.column = Some(col.name.clone());
    let facet = columns::parse_facet(facet)
        .filter(|f| col.spec.has(*f))
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "column '{}' has no '{facet}' facet (it has: {})",
                col.name,
                col.spec
                    .facets
                    .iter()
                    .map(|f| f.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
    let auth = policy::authorize(conn, caller, &ds, &col.name, Operation::Decrypt)?;
    set_authority(entry, std::slice::from_ref(&auth));
    check_rids(conn, cache, &col, &rids)?;
    Ok(Work::Decrypt {
        rids,
        keys: Box::new(keys),
        facet,
    })
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
    let mut ids: Vec<i64> = auths.iter().flat_map(|a| a.grant_ids().iter().copied()).collect();
    ids.sort_unstable();
    ids.dedup();
    if let Value::Object(m) = &mut entry.params {
        if !ids.is_empty() {
            m.insert("grant_ids".into(), json!(ids));
        }
    }
}

/// Compute an answer key (CPU only, parallel).
fn compute(work: Work) -> Value {
    match work {
        Work::Sum { rids, terms } => {
            let v = rids.to_vec();
            let key = terms.iter().fold(0u128, |acc, (keys, w)| {
                let s = keys.num.sum_masks(&v);
                acc.wrapping_add((*w as i128 as u128).wrapping_mul(s))
            });
            json!({"key": key.to_string()})
        }
        Work::Decrypt { rids, keys, facet } => {
            let v = rids.to_vec();
            let bytes: Zeroizing<Vec<u8>> = Zeroizing::new(match facet {
                Facet::Num => {
                    let masks = Zeroizing::new(keys.num.masks(&v));
                    let mut out = Vec::with_capacity(masks.len() * 16);
                    for m in masks.iter() {
                        out.extend_from_slice(&m.to_le_bytes());
                    }
                    out
                }
                Facet::Val => keys.val.row_keys(&v),
            });
            json!({"keys": B64.encode(bytes.as_slice())})
        }
    }
}

/// Write the audit rows of the batch in one transaction and build the results.
fn record(conn: &mut Connection, outcomes: Vec<(NewEntry, Result<Value, ApiError>)>) -> ApiResult<Vec<Value>> {
    let tx = conn.transaction()?;
    let mut results = Vec::with_capacity(outcomes.len());
    for (entry, outcome) in outcomes {
        match outcome {
            Ok(Value::Object(mut m)) => {
                let index = audit::append(
                    &tx,
                    NewEntry {
                        decision: audit::ISSUED,
                        ..entry
                    },
                )?;
                m.insert("ok".into(), Value::Bool(true));
                m.insert("receipt".into(), json!({"audit_index": index}));
                results.push(Value::Object(m));
            }
            Ok(_) => return Err(ApiError::internal("answer key", &"unexpected result shape")),
            Err(err) => {
                let index = audit::append(&tx, entry.refused(err.reason))?;
                results.push(json!({
                    "ok": false,
                    "reason": err.reason,
                    "message": err.message,
                    "missing_grant": err.missing_grant,
                    "receipt": {"audit_index": index},
                }));
            }
        }
    }
    tx.commit()?;
    Ok(results)
}
