//! The partition of answered rows into *atoms*: maximal sets of rows that every answered exact
//! descriptor treated alike (the same coefficient — weight × multiplicity — in every term of
//! every answered sum, across all columns). Everything answered is a function of the atoms'
//! sums, so the audit works over atoms instead of rows. Rows no answered sum touched belong to
//! no atom. Each atom also carries its *need*: the largest `min_rows` of the answers that
//! touched it.
//!
//! Changes can be journalled ([`Atoms::begin`]) and undone ([`Atoms::rollback`]) at a cost
//! proportional to what was changed (a copy of only the touched chunk headers and row ids),
//! so a refused answer leaves the partition exactly as it was.
//!
//! Kept as a map over chunks of [`CHUNK`] row ids, each either *uniform* (every row in one
//! atom, or untouched) or *dense* (an atom id per row). Long runs of rows (filters, ranges)
//! stay uniform and cost O(1) per chunk; scattered rows (groups by a plaintext key) cost
//! O(1) per row. Refining by a query costs O(rows it names + chunks it touches), never
//! O(atoms).

use std::collections::BTreeMap;

/// Atom id: an index into [`Atoms::sizes`].
pub type AtomId = u32;

/// Rows per chunk.
pub const CHUNK: u64 = 4096;

/// "No atom": a row no answered sum touched.
pub(super) const NONE: AtomId = AtomId::MAX;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Chunk {
    Uniform(AtomId),
    Dense(Box<[AtomId]>),
}

/// One change to undo.
#[derive(Debug, Clone, PartialEq)]
enum Undo {
    /// A chunk as it was (`None`: absent).
    Chunk(u64, Option<Chunk>),
    /// One row id of a dense chunk: (chunk, offset, old atom).
    Cell(u64, u32, AtomId),
    /// An atom's size and need as they were.
    Atom(AtomId, u64, u64),
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Journal {
    atoms: usize,
    undo: Vec<Undo>,
    /// Chunks whose whole state before the journal began is saved: changes to their row ids
    /// need no further entries (the whole chunk is restored last).
    whole: std::collections::BTreeSet<u64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Atoms {
    /// chunk index (row id / CHUNK) → chunk; a missing chunk is untouched.
    pub(super) chunks: BTreeMap<u64, Chunk>,
    /// Rows per atom.
    pub(super) sizes: Vec<u64>,
    /// Per atom: the largest `min_rows` of the answers that touched it.
    pub(super) needs: Vec<u64>,
    journal: Option<Journal>,
}

/// What refining by one row set did.
#[derive(Debug, Default)]
pub struct Refined {
    /// The atoms that make up the row set, each exactly.
    pub inside: Vec<AtomId>,
    /// Atoms that were split: `(old, new)`, where `new` is the part inside the row set and
    /// `old` keeps the rest. Answered sums treat both parts as they treated `old`.
    pub splits: Vec<(AtomId, AtomId)>,
}

/// The pieces of `runs` (sorted, disjoint, inclusive) by chunk: (chunk, first, last offset).
fn pieces(runs: &[(u64, u64)]) -> impl Iterator<Item = (u64, usize, usize)> + '_ {
    runs.iter().flat_map(|&(s, e)| {
        (s / CHUNK..=e / CHUNK).map(move |c| {
            let lo = if c == s / CHUNK { (s % CHUNK) as usize } else { 0 };
            let hi = if c == e / CHUNK {
                (e % CHUNK) as usize
            } else {
                CHUNK as usize - 1
            };
            (c, lo, hi)
        })
    })
}

/// Apply `f` to each maximal run of equal atom ids in `ids`: `f(atom, count)`.
fn for_runs(ids: &[AtomId], mut f: impl FnMut(AtomId, u64)) {
    let mut i = 0;
    while i < ids.len() {
        let a = ids[i];
        let mut j = i + 1;
        while j < ids.len() && ids[j] == a {
            j += 1;
        }
        f(a, (j - i) as u64);
        i = j;
    }
}

impl Atoms {
    /// Storage units of the map: 1 per uniform chunk, `CHUNK / 4` per dense chunk (about 16
    /// bytes each).
    pub fn entries(&self) -> usize {
        self.chunks
            .values()
            .map(|c| match c {
                Chunk::Uniform(_) => 1,
                Chunk::Dense(_) => (CHUNK / 4) as usize,
            })
            .sum()
    }

    pub fn size(&self, a: AtomId) -> u64 {
        self.sizes[a as usize]
    }

    pub fn need(&self, a: AtomId) -> u64 {
        self.needs[a as usize]
    }

    /// Each atom's rows in ascending order (walks every touched chunk: small states only).
    pub fn members(&self) -> Vec<Vec<u64>> {
        let mut out = vec![Vec::new(); self.sizes.len()];
        for (&c, ch) in &self.chunks {
            for i in 0..CHUNK {
                let id = match ch {
                    Chunk::Uniform(x) => *x,
                    Chunk::Dense(ids) => ids[i as usize],
                };
                if id != NONE {
                    out[id as usize].push(c * CHUNK + i);
                }
            }
        }
        out
    }

    /// Record every change from now on, to be undone by [`Atoms::rollback`] or kept by
    /// [`Atoms::commit`].
    pub fn begin(&mut self) {
        self.journal = Some(Journal {
            atoms: self.sizes.len(),
            undo: Vec::new(),
            whole: Default::default(),
        });
    }

    /// Keep the changes since [`Atoms::begin`].
    pub fn commit(&mut self) {
        self.journal = None;
    }

    /// Undo every change since [`Atoms::begin`] (cost: the changes made).
    pub fn rollback(&mut self) {
        let Some(j) = self.journal.take() else {
            return;
        };
        for u in j.undo.into_iter().rev() {
            match u {
                Undo::Chunk(c, None) => {
                    self.chunks.remove(&c);
                }
                Undo::Chunk(c, Some(ch)) => {
                    self.chunks.insert(c, ch);
                }
                Undo::Cell(c, i, a) => {
                    if let Some(Chunk::Dense(ids)) = self.chunks.get_mut(&c) {
                        ids[i as usize] = a;
                    }
                }
                Undo::Atom(a, size, need) => {
                    self.sizes[a as usize] = size;
                    self.needs[a as usize] = need;
                }
            }
        }
        self.sizes.truncate(j.atoms);
        self.needs.truncate(j.atoms);
    }

    fn log(&mut self, u: impl FnOnce(&Self) -> Undo) {
        if self.journal.is_some() {
            let u = u(self);
            if let Some(j) = &mut self.journal {
                j.undo.push(u);
            }
        }
    }

    /// Raise atom `a`'s need to at least `need`.
    pub fn raise_need(&mut self, a: AtomId, need: u64) {
        if self.needs[a as usize] < need {
            self.log(|s| Undo::Atom(a, s.sizes[a as usize], s.needs[a as usize]));
            self.needs[a as usize] = need;
        }
    }

    pub fn count(&self) -> usize {
        self.sizes.len()
    }

    fn new_atom(&mut self, size: u64) -> AtomId {
        self.sizes.push(size);
        self.needs.push(0);
        (self.sizes.len() - 1) as AtomId
    }

    /// Refine the partition so that the rows of `runs` (sorted, disjoint, inclusive) are a
    /// union of atoms; rows not in any atom yet form one new atom.
    pub fn refine(&mut self, runs: &[(u64, u64)]) -> Refined {
        // pass 1: how much of each atom (and of untouched rows) the runs cover, as (atom,
        // count) runs, then sorted and merged (no hashing: a group of 10 rows costs a sort of 10)
        let mut runs_of: Vec<(AtomId, u64)> = Vec::new();
        let mut push = |a: AtomId, n: u64| match runs_of.last_mut() {
            Some((last, m)) if *last == a => *m += n,
            _ => runs_of.push((a, n)),
        };
        for (c, lo, hi) in pieces(runs) {
            match self.chunks.get(&c) {
                None => push(NONE, (hi - lo + 1) as u64),
                Some(Chunk::Uniform(a)) => push(*a, (hi - lo + 1) as u64),
                Some(Chunk::Dense(ids)) => for_runs(&ids[lo..=hi], &mut push),
            }
        }
        runs_of.sort_unstable_by_key(|&(a, _)| a);
        let mut touched: Vec<(AtomId, u64)> = Vec::with_capacity(runs_of.len());
        for (a, n) in runs_of {
            match touched.last_mut() {
                Some((last, m)) if *last == a => *m += n,
                _ => touched.push((a, n)),
            }
        }
        // pass 2: new ids for the covered part of atoms covered only in part, and for the
        // untouched rows; `relabel` is sorted by old id
        let mut out = Refined::default();
        let mut relabel: Vec<(AtomId, AtomId)> = Vec::new();
        for (atom, n) in touched {
            if atom == NONE {
                let fresh = self.new_atom(n);
                relabel.push((NONE, fresh));
                out.inside.push(fresh);
            } else if n == self.size(atom) {
                out.inside.push(atom);
            } else {
                let new = self.new_atom(n);
                self.log(|s| Undo::Atom(atom, s.sizes[atom as usize], s.needs[atom as usize]));
                self.sizes[atom as usize] -= n;
                relabel.push((atom, new));
                out.inside.push(new);
                out.splits.push((atom, new));
            }
        }
        if relabel.is_empty() {
            return out;
        }
        // pass 3: relabel the covered rows
        let map = |a: AtomId| match relabel.binary_search_by_key(&a, |&(old, _)| old) {
            Ok(i) => relabel[i].1,
            Err(_) => a,
        };
        for (c, lo, hi) in pieces(runs) {
            let whole = lo == 0 && hi == CHUNK as usize - 1;
            let journal = self.journal.as_mut();
            let chunk = match self.chunks.entry(c) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    if let Some(j) = journal {
                        j.undo.push(Undo::Chunk(c, None));
                        j.whole.insert(c);
                    }
                    e.insert(Chunk::Uniform(NONE))
                }
            };
            let mut journal = self.journal.as_mut();
            if let Chunk::Uniform(a) = chunk {
                if let Some(j) = journal.as_deref_mut() {
                    j.undo.push(Undo::Chunk(c, Some(Chunk::Uniform(*a))));
                    j.whole.insert(c);
                }
                if whole {
                    *a = map(*a);
                    continue;
                }
                *chunk = Chunk::Dense(vec![*a; CHUNK as usize].into_boxed_slice());
            }
            if let Chunk::Dense(ids) = chunk {
                // row ids need entries only where the chunk's whole state is not saved yet
                let mut cells = journal.as_deref_mut().filter(|j| !j.whole.contains(&c));
                let (mut last, mut to) = (NONE, map(NONE));
                for (i, id) in ids[lo..=hi].iter_mut().enumerate() {
                    if *id != last {
                        (last, to) = (*id, map(*id));
                    }
                    if to != *id {
                        if let Some(j) = cells.as_deref_mut() {
                            j.undo.push(Undo::Cell(c, (lo + i) as u32, *id));
                        }
                    }
                    *id = to;
                }
                // a long piece may have made the chunk uniform again (checked only then, so
                // scattered rows stay O(1) each)
                if hi - lo + 1 >= CHUNK as usize / 2 && ids.iter().all(|&x| x == ids[0]) {
                    let a = ids[0];
                    let before = std::mem::replace(chunk, Chunk::Uniform(a));
                    if let Some(j) = journal {
                        j.undo.push(Undo::Chunk(c, Some(before)));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(a: &Atoms, atom: AtomId) -> Vec<u64> {
        let mut out = Vec::new();
        for (&c, ch) in &a.chunks {
            for i in 0..CHUNK {
                let id = match ch {
                    Chunk::Uniform(x) => *x,
                    Chunk::Dense(ids) => ids[i as usize],
                };
                if id == atom {
                    out.push(c * CHUNK + i);
                }
            }
        }
        out
    }

    #[test]
    fn refines_into_exact_unions() {
        let mut a = Atoms::default();
        let r = a.refine(&[(1, 10)]);
        assert_eq!(r.inside, vec![0]);
        assert_eq!(a.size(0), 10);
        let r = a.refine(&[(5, 14)]);
        // 5..=10 split off atom 0, 11..=14 fresh
        assert_eq!(r.splits, vec![(0, 1)]);
        assert_eq!(r.inside, vec![1, 2]);
        assert_eq!(members(&a, 0), (1..=4).collect::<Vec<_>>());
        assert_eq!(members(&a, 1), (5..=10).collect::<Vec<_>>());
        assert_eq!(members(&a, 2), (11..=14).collect::<Vec<_>>());
        let r = a.refine(&[(1, 4)]);
        assert_eq!(r.inside, vec![0]);
        assert!(r.splits.is_empty());
        let r = a.refine(&[(3, 3), (7, 7), (20, 20)]);
        assert_eq!(r.splits.len(), 2);
        assert_eq!(r.inside.len(), 3);
        let total: u64 = a.sizes.iter().sum();
        assert_eq!(total, 15);
    }

    #[test]
    fn long_runs_stay_uniform() {
        let mut a = Atoms::default();
        a.refine(&[(0, 10 * CHUNK - 1)]);
        assert_eq!(a.entries(), 10, "ten uniform chunks");
        let r = a.refine(&[(CHUNK, 3 * CHUNK - 1)]);
        assert_eq!(r.splits, vec![(0, 1)]);
        assert_eq!((a.size(0), a.size(1)), (8 * CHUNK, 2 * CHUNK));
        assert_eq!(a.entries(), 10);
        a.refine(&[(5, 5)]);
        assert_eq!(a.entries(), 9 + (CHUNK / 4) as usize, "one dense chunk");
    }

    #[test]
    fn rollback_restores_exactly() {
        let mut a = Atoms::default();
        a.refine(&[(0, 3 * CHUNK - 1)]);
        a.refine(&[(7, 7), (CHUNK + 3, CHUNK + 9)]);
        a.raise_need(0, 5);
        let before = a.clone();
        a.begin();
        a.refine(&[(2, 2), (5, 2 * CHUNK + 1), (9 * CHUNK, 9 * CHUNK + 4)]);
        a.refine(&[(0, 4 * CHUNK - 1)]);
        a.raise_need(1, 9);
        a.raise_need(3, 9);
        assert_ne!(a, before);
        a.rollback();
        assert_eq!(a, before);
        a.begin();
        a.refine(&[(1, 1)]);
        a.commit();
        assert_ne!(a, before);
    }
}
