//! The disclosure rule for exact answers: atoms of at least `min_rows` rows.
//!
//! Per identity × dataset the keyhost keeps the partition of rows into *atoms* ([`atoms`]):
//! rows that every answered exact descriptor treated alike — the same coefficient (weight ×
//! multiplicity) in every term of every answered `sum`, `sums` group, `linear_sum`/`dot` and
//! Gram entry, across all columns of the dataset (product columns of a `deg2` facet are
//! columns too). Every exact answer is a linear form in the atoms' per-column sums, so what an
//! analyst has learnt from exact answers is a function of those sums, whatever the weights.
//!
//! The rule: an exact answer is refused (`audit_disclosure`) if, once answered, some atom it
//! creates or touches — including the remainder of an atom it splits, outside its rows —
//! holds fewer distinct rows than that atom's *need*. An atom's need is the largest
//! `min_rows` of the exact answers that touched it (at least [`MIN_EXACT_ROWS`]); parts of a
//! split atom keep the larger of their atom's need and the splitting answer's `min_rows`, so a
//! query on a column with a small `min_rows` cannot split atoms already used by a column with
//! a larger one. The decision depends only on row sets, multiplicities, weights and grants,
//! never on values (the keyhost never sees any), so a refusal reveals nothing an analyst
//! could not compute from its own queries. A refused answer leaves the state exactly as it
//! was ([`Atoms::rollback`]), so refusals depend only on answered queries.
//!
//! This replaces a linear rank test over the reals (the audit of Chin & Özsoyoğlu): with every
//! touched atom at least two rows, no unit vector `e_(column, row)` is in the span of answered
//! forms (all forms give the rows of an atom one coefficient), so the rank test can never
//! refuse anything the atom rule accepts; it is gone.
//!
//! Cost: refining by a row set is linear in the rows it names (and the chunks it touches);
//! checking is linear in the atoms it touched. An atom count or state beyond the configured
//! size refuses (`audit_limit`): errors only refuse more.

mod atoms;
mod codec;
mod store;

use ghostpii_core::RidSet;

use atoms::{AtomId, Atoms};

pub use store::{Batch, Cache, DEFAULT_MAX_ENTRIES};

/// The smallest `min_rows` an exact answer is audited with: no atom of one row.
pub const MIN_EXACT_ROWS: u64 = 2;

/// One exact sum: weighted terms over the columns of one dataset, and its rows by
/// multiplicity (disjoint classes). Per-row weights (a Gram entry weighted by a plaintext
/// feature) are classes too: one per distinct weight value.
#[derive(Debug, Clone)]
pub struct Query {
    /// `(column_id, weight)`
    pub terms: Vec<(i64, i64)>,
    /// `(multiplicity k ≥ 1, rows counted exactly k times)`
    pub classes: Vec<(u64, RidSet)>,
    /// The `min_rows` of the grants that allow it (raised to [`MIN_EXACT_ROWS`]).
    pub min_rows: u64,
}

/// The audit's answer to a sum it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It refined the partition (new or split atoms).
    Refined,
    /// Its rows were unions of existing atoms, each treated alike (e.g. a repeat).
    Unchanged,
}

/// Why the audit refuses a sum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Answering would leave an atom of fewer rows than its need.
    Disclosure,
    /// The audit cannot decide within its limits (state size).
    Limit(String),
}

/// What the audit remembers for one identity on one dataset.
#[derive(Debug, Clone, Default)]
pub struct AuditState {
    atoms: Atoms,
    /// Sums accepted so far.
    answered: u64,
}

impl AuditState {
    /// Size of the state: units of the atom map plus one per atom.
    pub fn entries(&self) -> usize {
        self.atoms.entries() + self.atoms.count()
    }

    pub fn answered(&self) -> u64 {
        self.answered
    }

    /// Number of atoms.
    pub fn atoms(&self) -> usize {
        self.atoms.count()
    }

    /// Each atom's rows in ascending rid order (small states; tests and tools).
    pub fn atom_rows(&self) -> Vec<Vec<u64>> {
        self.atoms.members()
    }

    /// Decide on `q` and, if it is accepted, remember it.
    pub fn try_answer(&mut self, q: &Query, max_entries: usize) -> Result<Verdict, Refusal> {
        self.try_answer_many(std::slice::from_ref(q), max_entries)
    }

    /// Decide on several exact sums revealed together (the groups of a `sums` descriptor, the
    /// entries of a Gram matrix): all are accepted and remembered, or none is and the state is
    /// left exactly as it was.
    pub fn try_answer_many(&mut self, qs: &[Query], max_entries: usize) -> Result<Verdict, Refusal> {
        let over = |n: usize| {
            Refusal::Limit(format!(
                "the disclosure audit of this identity on this dataset holds {n} entries, more than the \
                 configured maximum of {max_entries}; exact sums stay refused until an admin raises the \
                 limit (`GHOSTPII_AUDIT_MAX_ENTRIES`) — use a DP grant (epsilon) for open-ended querying"
            ))
        };
        if self.entries() > max_entries {
            return Err(over(self.entries()));
        }
        self.atoms.begin();
        let atoms_before = self.atoms.count();
        let mut touched: Vec<AtomId> = Vec::new();
        let mut split = false;
        for q in qs {
            let m = q.min_rows.max(MIN_EXACT_ROWS);
            for (_, rids) in &q.classes {
                let refined = self.atoms.refine(&rids.runs());
                if self.atoms.count() as u64 >= u64::from(atoms::NONE) {
                    self.atoms.rollback();
                    return Err(over(self.entries()));
                }
                for &(old, new) in &refined.splits {
                    split = true;
                    let need = self.atoms.need(old).max(m);
                    self.atoms.raise_need(old, need);
                    self.atoms.raise_need(new, need);
                    touched.push(old);
                }
                for &a in &refined.inside {
                    self.atoms.raise_need(a, m);
                    touched.push(a);
                }
            }
        }
        touched.sort_unstable();
        touched.dedup();
        if touched.iter().any(|&a| self.atoms.size(a) < self.atoms.need(a)) {
            self.atoms.rollback();
            return Err(Refusal::Disclosure);
        }
        if self.entries() > max_entries {
            let n = self.entries();
            self.atoms.rollback();
            return Err(over(n));
        }
        self.atoms.commit();
        self.answered += qs.len() as u64;
        Ok(if split || self.atoms.count() > atoms_before {
            Verdict::Refined
        } else {
            Verdict::Unchanged
        })
    }
}

#[cfg(test)]
mod tests;
