//! The linear audit of exact sums (Chin & Özsoyoğlu 1982; simulatable auditing,
//! Kenthapadi–Mishra–Nissim 2005).
//!
//! Per identity × dataset the keyhost keeps what it has answered exactly: each answered sum is
//! a linear form `Σ_t w_t Σ_r k_r · x[t, r]` over the unknown cell values (term weights `w_t`,
//! row multiplicities `k_r`). A new exact sum is refused when, once answered, some single
//! cell `x[c, r]` would be a linear combination of the answered sums. The decision depends only
//! on row sets, multiplicities and weights, never on values (the keyhost never sees any), so a
//! refusal reveals nothing an analyst could not compute from its own queries.
//!
//! How: rows that every answered sum treated alike form an *atom* ([`atoms`]); a cell of a
//! row in an atom of two or more rows can never be isolated, because every answered form gives
//! both rows the same coefficient. Over the unknowns `(column, atom)` the answered forms are
//! kept as a basis in reduced row echelon form ([`basis`]), in exact rational arithmetic. A
//! unit vector `e_j` lies in the row space of a reduced basis iff it is one of its rows: its
//! coefficients at the pivot columns are the combination's weights, and all of them but `j`'s
//! must vanish. So a sum is refused iff, after adding it, a row of the basis has a single
//! entry and that entry's atom holds a single row. Only the new row and the rows it changes
//! need looking at. An arithmetic overflow or a state beyond the configured size refuses too:
//! errors only refuse more.

mod atoms;
mod basis;
mod codec;
mod intmap;
mod rational;
mod store;

use ghostpii_core::RidSet;

use atoms::Atoms;
use basis::{atom_of, key, Basis};
use intmap::IntMap;
use rational::Rat;

pub use store::{Batch, Cache, DEFAULT_MAX_ENTRIES};

/// One exact sum: weighted terms over the columns of one dataset, and its rows by
/// multiplicity (disjoint classes).
#[derive(Debug, Clone)]
pub struct Query {
    /// `(column_id, weight)`
    pub terms: Vec<(i64, i64)>,
    /// `(multiplicity k ≥ 1, rows counted exactly k times)`
    pub classes: Vec<(u64, RidSet)>,
}

/// The audit's answer to a sum it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It adds information (a new basis row).
    Independent,
    /// It follows from sums already answered (e.g. a repeat): nothing new is learned.
    Dependent,
}

/// Why the audit refuses a sum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Answering would determine a single cell.
    Disclosure,
    /// The audit cannot decide within its limits (state size, 128-bit arithmetic).
    Limit(String),
}

/// What the audit remembers for one identity on one dataset.
#[derive(Debug, Clone, Default)]
pub struct AuditState {
    /// Column slot → column id.
    columns: Vec<i64>,
    atoms: Atoms,
    basis: Basis,
    /// Sums accepted so far.
    answered: u64,
}

impl AuditState {
    /// Size of the state: units of the atom map plus basis coefficients.
    pub fn entries(&self) -> usize {
        self.atoms.entries() + self.basis.nnz()
    }

    pub fn answered(&self) -> u64 {
        self.answered
    }

    pub fn rank(&self) -> usize {
        self.basis.rank()
    }

    fn slot(&mut self, column_id: i64) -> u32 {
        match self.columns.iter().position(|&c| c == column_id) {
            Some(i) => i as u32,
            None => {
                self.columns.push(column_id);
                (self.columns.len() - 1) as u32
            }
        }
    }

    /// Decide on `q` and, if it is accepted, remember it. Refining the atoms is kept even
    /// when `q` is refused: a finer partition describes the same answered sums.
    pub fn try_answer(&mut self, q: &Query, max_entries: usize) -> Result<Verdict, Refusal> {
        let over = |n: usize| {
            Refusal::Limit(format!(
                "the linear audit of this identity on this dataset holds {n} entries, more than the \
                 configured maximum of {max_entries}; exact sums stay refused until an admin raises the \
                 limit (`GHOSTPII_AUDIT_MAX_ENTRIES`) — use a DP grant (epsilon) for open-ended querying"
            ))
        };
        if self.entries() > max_entries {
            return Err(over(self.entries()));
        }
        let overflow = || {
            Refusal::Limit(
                "the linear audit's exact arithmetic left 128 bits for this sum, so it cannot prove the \
                 sum safe; refused"
                    .into(),
            )
        };
        let slots: Vec<(u32, i64)> = q.terms.iter().map(|&(c, w)| (self.slot(c), w)).collect();
        let nslots = self.columns.len() as u32;
        let mut by_class = Vec::with_capacity(q.classes.len());
        for (k, rids) in &q.classes {
            let refined = self.atoms.refine(&rids.runs());
            for &(old, new) in &refined.splits {
                for s in 0..nslots {
                    self.basis.duplicate(key(s, old), key(s, new));
                }
            }
            by_class.push((*k, refined.inside));
        }
        if self.atoms.count() as u64 >= u64::from(atoms::NONE) {
            return Err(over(self.entries()));
        }
        let mut v: IntMap<u64, Rat> = IntMap::default();
        for &(s, w) in &slots {
            for (k, atoms) in &by_class {
                let c = i128::from(w).checked_mul(i128::from(*k)).ok_or_else(overflow)?;
                for &a in atoms {
                    let e = v.entry(key(s, a)).or_insert(Rat::int(0));
                    *e = e.add(Rat::int(c)).map_err(|_| overflow())?;
                }
            }
        }
        v.retain(|_, c| !c.is_zero());
        let v = self.basis.reduce(v).map_err(|_| overflow())?;
        if v.is_empty() {
            self.answered += 1;
            return Ok(Verdict::Dependent);
        }
        let proposal = self.basis.propose(v).map_err(|_| overflow())?;
        let discloses = proposal
            .rows()
            .any(|r| r.len() == 1 && self.atoms.size(atom_of(r[0].0)) == 1);
        if discloses {
            return Err(Refusal::Disclosure);
        }
        let added: usize = proposal.rows().map(Vec::len).sum();
        if self.entries() + added > max_entries {
            return Err(over(self.entries() + added));
        }
        self.basis.commit(proposal);
        self.answered += 1;
        Ok(Verdict::Independent)
    }
}

#[cfg(test)]
mod tests;
