//! `POST /v1/compute`: a row-wise circuit over the analyst's FHE ciphertexts of its masked
//! cells (`docs/rowwise.md`).
//!
//! The request is a request frame (`ghostpii_core::frame`): its JSON a
//! [`ghostpii_proto::circuit::ComputeRequest`], its blobs the rid set (ascending, the rows'
//! order) and the input ciphertexts (one compressed list under the analyst's key, row-major).
//!
//! Steps: *plan* (database, brief): dataset, columns and their keys at the named epochs, a
//! `compute` grant on every column (owner/admin implicit), the grants' ops and output kind,
//! the circuit typed and bounded from the columns' declared bounds (its width must hold every
//! intermediate value), allocated rids, and the evaluation counts so far; *compute* (no lock):
//! per row and input the mask residue `Σ w·PRF(k, rid) mod 2^bits`, then the FHE evaluation
//! (`ghostpii_fhe::evaluate`: unmask, re-randomise, evaluate, re-randomise, compress); *record*
//! (one transaction under the caller × dataset lock): the grants still active, every
//! (column, row) evaluated fewer than `max_evaluations` times before, the counts incremented,
//! the audit entry (expression, rows, output kind) — then the answer. A refusal at any step is
//! audited and nothing else is written.

use axum::body::Bytes;
use ghostpii_core::{frame, ColumnKeys, Facet, RidSet};
use ghostpii_proto::circuit::{input_bounds, Circuit, ComputeRequest, Kind, OutputKind, WIDTHS};
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::{authorize, check_rids, column_epoch, dataset, set_authority, Cache, Ctx};
use crate::domain::audit::{self, NewEntry};
use crate::domain::grants::Operation;
use crate::domain::identities::Identity;
use crate::error::{reason, ApiError, ApiResult};
use crate::state::AppState;
use crate::store::{lock_key, Connection, LockScope, OptionalExtension};

/// A compute request as received: its JSON, the rid set and the ciphertexts.
struct Received {
    req: ComputeRequest<Value, Value>,
    rids: RidSet,
    ciphertexts: Bytes,
}

/// What the plan step found.
struct Planned {
    circuit: Circuit,
    bits: u32,
    /// Per input, its terms' column keys and weights.
    inputs: Vec<Vec<(ColumnKeys, i64)>>,
    /// The columns read (id, name), ids ascending.
    columns: Vec<(i64, String)>,
    /// The grants' limit of evaluations per row and column (`None`: owner or admin).
    max: Option<u64>,
    dataset_id: i64,
    output: Kind,
}

/// Answer a compute request of `caller`: the answer's JSON and the result ciphertexts.
pub async fn answer(state: &AppState, caller: Identity, body: Bytes) -> ApiResult<(Value, Vec<u8>)> {
    let st = state.clone();
    state.blocking(move || run(&st, &caller, body)).await
}

fn run(st: &AppState, caller: &Identity, body: Bytes) -> ApiResult<(Value, Vec<u8>)> {
    let mut entry = NewEntry::new(caller, "compute");
    let received = decode(&body);
    let planned = received.and_then(|r| {
        let p = st.with_db(|conn| plan(conn, st, caller, &mut entry, &r))?;
        Ok((r, p))
    });
    let (r, p) = match planned {
        Ok(x) => x,
        Err(e) => return Err(st.with_db(|conn| Ok(audit::refuse(conn, entry.clone(), e)))?),
    };
    let key = match st.fhe_keys().get(caller.id) {
        Ok(k) => k,
        Err(e) => return Err(st.with_db(|conn| Ok(audit::refuse(conn, entry.clone(), e)))?),
    };
    let masks = mask_residues(&p, &r.rids);
    let results = ghostpii_fhe::evaluate(
        &key,
        &ghostpii_fhe::Evaluation {
            circuit: &p.circuit,
            bits: p.bits,
            rows: r.rids.len() as usize,
            ciphertexts: &r.ciphertexts,
            masks: &masks,
            threads: 0,
        },
        &|_| {},
    )
    .map_err(|e| ApiError::invalid(format!("the computation failed: {e}")));
    let results = match results {
        Ok(b) => b,
        Err(e) => return Err(st.with_db(|conn| Ok(audit::refuse(conn, entry.clone(), e)))?),
    };
    let receipt = st.with_db(|conn| record(conn, st, caller, &entry, &p, &r.rids))?;
    let answer = json!({
        "ok": true,
        "rows": r.rids.len(),
        "bits": p.bits,
        "output": match p.output { Kind::Bool => "bool", Kind::Int => "int" },
        "receipt": receipt,
        "results": {"$blob": 0, "len": results.len()},
    });
    Ok((answer, results))
}

/// The frame's JSON as a compute request, its rid set and ciphertexts resolved.
fn decode(body: &[u8]) -> ApiResult<Received> {
    let (json, blobs) =
        frame::decode(body).map_err(|e| ApiError::invalid(format!("malformed compute request frame: {e}")))?;
    let req: ComputeRequest<Value, Value> =
        serde_json::from_value(json).map_err(|e| ApiError::invalid(format!("malformed compute request: {e}")))?;
    let blob = |v: &Value, what: &str| -> ApiResult<Bytes> {
        match frame::marker(v) {
            Some(Ok(m)) => blobs
                .get(m.index as usize)
                .map(|b| Bytes::copy_from_slice(b))
                .ok_or_else(|| ApiError::invalid(format!("{what}: blob {} is not in the frame", m.index))),
            _ => Err(ApiError::invalid(format!("{what} must be a blob of the request frame"))),
        }
    };
    let rids = RidSet::from_bytes(&blob(&req.rids, "rids")?).map_err(|e| ApiError::invalid(e.to_string()))?;
    let ciphertexts = blob(&req.ciphertexts, "ciphertexts")?;
    Ok(Received { req, rids, ciphertexts })
}

fn plan(
    conn: &mut Connection,
    st: &AppState,
    caller: &Identity,
    entry: &mut NewEntry,
    r: &Received,
) -> ApiResult<Planned> {
    let req = &r.req;
    let circuit = &req.circuit;
    entry.params = json!({
        "dataset_id": req.dataset_id,
        "expression": req.text,
        "output": match req.output { OutputKind::Revealed => "revealed" },
        "bits": req.bits,
        "ops": circuit.ops(),
        "inputs": circuit.inputs.iter().map(|i| i.terms.iter()
            .map(|t| json!({"column_id": t.column_id, "epoch": t.epoch, "weight": t.weight})).collect::<Vec<_>>())
            .collect::<Vec<_>>(),
    });
    entry.rid_count = Some(r.rids.len());
    entry.rid_digest = Some(r.rids.digest_hex());
    let mut cache = Cache::default();
    let mut cx = Ctx::for_op(conn, st, caller, &mut cache, Operation::Compute);
    let ds = dataset(&mut cx, req.dataset_id);
    if let Some(name) = cx.seen_dataset.take() {
        entry.dataset = Some(name);
    }
    if let Some(owner) = cx.seen_owner.take() {
        entry.add_reader(owner);
    }
    let ds = ds?;
    entry.dataset = Some(ds.name.clone());
    let mut inputs = Vec::with_capacity(circuit.inputs.len());
    let mut bounds = Vec::with_capacity(circuit.inputs.len());
    let mut cols = Vec::new();
    for input in &circuit.inputs {
        let mut keyed = Vec::with_capacity(input.terms.len());
        let mut terms = Vec::with_capacity(input.terms.len());
        for t in &input.terms {
            let (col, keys) = column_epoch(&mut cx, &ds, t.column_id, t.epoch)?;
            if !col.spec.has(Facet::Num) {
                return Err(ApiError::invalid(format!(
                    "column '{}' has no 'num' facet, so it cannot be computed on",
                    col.name
                )));
            }
            if t.weight == 0 {
                return Err(ApiError::invalid(format!(
                    "the weight of column '{}' in input {} is 0; leave it out",
                    col.name,
                    inputs.len()
                )));
            }
            terms.push((t.weight, col.spec.bounds));
            keyed.push((keys, t.weight));
            if !cols.iter().any(|c: &crate::domain::columns::Column| c.id == col.id) {
                cols.push(col);
            }
        }
        bounds.push(input_bounds(&terms, input.offset).map_err(|e| ApiError::invalid(e.0))?);
        inputs.push(keyed);
    }
    cols.sort_by_key(|c| c.id);
    entry.column = Some(cols.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(","));
    let mut auths = Vec::with_capacity(cols.len());
    for col in &cols {
        auths.push(authorize(&mut cx, &ds, &col.name, Operation::Compute)?);
    }
    set_authority(entry, &auths);
    let analysis = circuit
        .check(&bounds)
        .map_err(|e| ApiError::invalid(format!("malformed circuit: {e}")))?;
    if !WIDTHS.contains(&req.bits) || req.bits < analysis.bits {
        return Err(ApiError::invalid(format!(
            "width {} cannot hold the circuit's values over the columns' declared bounds; use {} bits",
            req.bits, analysis.bits
        )));
    }
    let ops = circuit.ops();
    let value = analysis.output_kind == Kind::Int;
    for (col, a) in cols.iter().zip(&auths) {
        if !a.allows_circuit(&ops, value) {
            return Err(ApiError::denied(format!(
                "no compute grant on column '{}' allows this {} (ops {}){}",
                col.name,
                if value { "integer output" } else { "predicate" },
                ops.join(", "),
                if value {
                    "; integer outputs need a grant with reveal_values=True"
                } else {
                    ""
                }
            )));
        }
    }
    if r.rids.is_empty() {
        return Err(ApiError::invalid("the rid set is empty: nothing to compute"));
    }
    for col in &cols {
        check_rids(&mut cx, col, &r.rids)?;
    }
    let max = auths.iter().filter_map(|a| a.max_evaluations()).min();
    let planned = Planned {
        circuit: circuit.clone(),
        bits: req.bits,
        inputs,
        columns: cols_names(&cols),
        max,
        dataset_id: ds.id,
        output: analysis.output_kind,
    };
    // refuse before any FHE work; checked again in the record transaction
    check_counts(conn, caller.id, &planned, &r.rids)?;
    Ok(planned)
}

fn cols_names(cols: &[crate::domain::columns::Column]) -> Vec<(i64, String)> {
    cols.iter().map(|c| (c.id, c.name.clone())).collect()
}

/// Refuse if some (column, row) was already evaluated `max` times for `identity`.
fn check_counts(conn: &Connection, identity: i64, p: &Planned, rids: &RidSet) -> ApiResult<()> {
    let Some(max) = p.max else {
        return Ok(());
    };
    let mut st = conn.prepare_cached(
        "SELECT count FROM compute_evaluations WHERE identity_id = ?1 AND column_id = ?2 AND rid = ?3",
    )?;
    for (col, name) in &p.columns {
        for rid in rids.0.iter() {
            let n: Option<i64> = st
                .query_row(crate::store::params![identity, col, rid as i64], |r| r.get(0))
                .optional()?;
            if n.unwrap_or(0) as u64 >= max {
                return Err(ApiError::refused(
                    reason::MAX_EVALUATIONS,
                    format!(
                        "row {rid} of column '{name}' was already computed on {max} times, the most your compute grant \
                         allows (each evaluation reveals one output about the row); nothing was evaluated"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Per row (ascending rid) and input, `Σ w · PRF(k, rid) mod 2^bits` as a signed integer.
fn mask_residues(p: &Planned, rids: &RidSet) -> Zeroizing<Vec<i64>> {
    let v = rids.to_vec();
    let n = p.inputs.len();
    let mut out = Zeroizing::new(vec![0i64; v.len() * n]);
    for (i, terms) in p.inputs.iter().enumerate() {
        let mut acc: Zeroizing<Vec<u128>> = Zeroizing::new(vec![0u128; v.len()]);
        for (keys, w) in terms {
            let masks = Zeroizing::new(keys.num.masks(&v));
            let a = *w as i128 as u128;
            for (k, m) in acc.iter_mut().zip(masks.iter()) {
                *k = k.wrapping_add(a.wrapping_mul(*m));
            }
        }
        for (row, k) in acc.iter().enumerate() {
            out[row * n + i] = ghostpii_fhe::low_bits(*k, p.bits);
        }
    }
    out
}

/// The record transaction: grants still active, counts checked and incremented, audit entry.
fn record(
    conn: &mut Connection,
    st: &AppState,
    caller: &Identity,
    entry: &NewEntry,
    p: &Planned,
    rids: &RidSet,
) -> ApiResult<Value> {
    let locks = [lock_key(LockScope::IdentityDataset, caller.id, p.dataset_id)];
    let outcome = (|| -> ApiResult<Value> {
        let tx = conn.transaction_scoped(&locks)?;
        super::recheck::grants_still_active(&tx, entry)?;
        check_counts(&tx, caller.id, p, rids)?;
        {
            let mut up = tx.prepare_cached(
                "INSERT INTO compute_evaluations (identity_id, column_id, rid, count) VALUES (?1, ?2, ?3, 1) \
                 ON CONFLICT (identity_id, column_id, rid) DO UPDATE SET count = compute_evaluations.count + 1",
            )?;
            for (col, _) in &p.columns {
                for rid in rids.0.iter() {
                    up.execute(crate::store::params![caller.id, col, rid as i64])?;
                }
            }
        }
        let receipt = audit::append_receipt(&tx, entry.clone())?;
        tx.commit()?;
        Ok(receipt.to_json_signed(st.keyhost_id(), st.signer(), st.sequencing().max_delay_micros()))
    })();
    outcome.map_err(|e| audit::refuse(conn, entry.clone(), e))
}
