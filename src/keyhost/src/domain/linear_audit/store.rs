//! Where the audit state lives: one row per identity × dataset in the database (written in
//! the transaction that records the answers), and an in-memory cache of decoded states that
//! is trusted only while its generation matches the database's.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::store::{params, Connection, OptionalExtension};

use super::{codec, AuditState, Query, Refusal, Verdict};
use crate::error::{reason, ApiError, ApiResult};

/// Default bound on one identity's audit state per dataset (units of the atom map, about 16
/// bytes each, plus basis coefficients, about 40 bytes each).
pub const DEFAULT_MAX_ENTRIES: usize = 4_000_000;

type Key = (i64, i64);

/// Decoded states of recent batches, by (identity, dataset), with their generation.
#[derive(Default)]
pub struct Cache {
    states: Mutex<HashMap<Key, (i64, AuditState)>>,
}

impl Cache {
    fn take(&self, k: Key) -> Option<(i64, AuditState)> {
        self.states.lock().ok()?.remove(&k)
    }

    fn put(&self, k: Key, generation: i64, s: AuditState) {
        if let Ok(mut m) = self.states.lock() {
            m.insert(k, (generation, s));
        }
    }
}

struct Loaded {
    generation: i64,
    state: AuditState,
    dirty: bool,
}

/// The audit states one record transaction works on.
pub struct Batch<'a> {
    cache: &'a Cache,
    max_entries: usize,
    loaded: HashMap<Key, Loaded>,
}

fn generation(tx: &Connection, k: Key) -> crate::store::Result<Option<i64>> {
    tx.prepare_cached("SELECT generation FROM linear_audit WHERE identity_id = ?1 AND dataset_id = ?2")?
        .query_row(params![k.0, k.1], |r| r.get(0))
        .optional()
}

impl<'a> Batch<'a> {
    /// `max_entries`: the bound on one state (`Limits::audit_max_entries`).
    pub fn new(cache: &'a Cache, max_entries: usize) -> Self {
        Batch {
            cache,
            max_entries,
            loaded: HashMap::new(),
        }
    }

    fn load(&mut self, tx: &Connection, k: Key) -> ApiResult<&mut Loaded> {
        if !self.loaded.contains_key(&k) {
            let loaded = match generation(tx, k)? {
                None => Loaded {
                    generation: 0,
                    state: AuditState::default(),
                    dirty: false,
                },
                Some(g) => match self.cache.take(k) {
                    Some((cg, state)) if cg == g => Loaded {
                        generation: g,
                        state,
                        dirty: false,
                    },
                    _ => {
                        let blob: Vec<u8> = tx
                            .prepare_cached(
                                "SELECT state FROM linear_audit WHERE identity_id = ?1 AND dataset_id = ?2",
                            )?
                            .query_row(params![k.0, k.1], |r| r.get(0))?;
                        let state = codec::decode(&blob).map_err(|e| ApiError::internal("linear audit state", &e))?;
                        Loaded {
                            generation: g,
                            state,
                            dirty: false,
                        }
                    }
                },
            };
            self.loaded.insert(k, loaded);
        }
        Ok(self.loaded.get_mut(&k).expect("just loaded"))
    }

    /// Decide on exact sums revealed together (one sum, the groups of a `sums` descriptor, the
    /// entries of a Gram matrix) for `identity_id` on `dataset_id`: all are accepted and
    /// remembered (written by [`Batch::save`]), or none is and the state is left as it was.
    pub fn check_many(
        &mut self,
        tx: &Connection,
        identity_id: i64,
        dataset_id: i64,
        qs: &[Query],
    ) -> ApiResult<Verdict> {
        let max = self.max_entries;
        let l = self.load(tx, (identity_id, dataset_id))?;
        match l.state.try_answer_many(qs, max) {
            Ok(v) => {
                l.dirty = true;
                Ok(v)
            }
            Err(Refusal::Disclosure) => Err(ApiError::refused(
                reason::AUDIT_DISCLOSURE,
                "answering this exact aggregate would leave a group of rows smaller than the grant's \
                 min_rows that the exact answers already given to this identity on this dataset tell apart \
                 from the other rows (linear audit of exact answers: atoms of at least min_rows rows); ask for a larger or \
                 coarser aggregate, for the same groups as before, or for a DP grant (epsilon)",
            )),
            Err(Refusal::Limit(msg)) => Err(ApiError::refused(reason::AUDIT_LIMIT, msg)),
        }
    }

    /// Decide on one exact sum (see [`Batch::check_many`]).
    pub fn check(&mut self, tx: &Connection, identity_id: i64, dataset_id: i64, q: &Query) -> ApiResult<Verdict> {
        self.check_many(tx, identity_id, dataset_id, std::slice::from_ref(q))
    }

    /// Write the changed states (inside the record transaction).
    pub fn save(&mut self, tx: &Connection) -> ApiResult<()> {
        for (k, l) in self.loaded.iter_mut().filter(|(_, l)| l.dirty) {
            l.generation += 1;
            tx.prepare_cached(
                "INSERT INTO linear_audit (identity_id, dataset_id, generation, answered, state)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (identity_id, dataset_id) DO UPDATE SET
                    generation = excluded.generation, answered = excluded.answered, state = excluded.state",
            )?
            .execute(params![
                k.0,
                k.1,
                l.generation,
                i64::try_from(l.state.answered()).unwrap_or(i64::MAX),
                codec::encode(&l.state)
            ])?;
        }
        Ok(())
    }

    /// After the transaction committed: keep the states for the next batch.
    pub fn finish(self) {
        for (k, l) in self.loaded {
            self.cache.put(k, l.generation, l.state);
        }
    }
}
