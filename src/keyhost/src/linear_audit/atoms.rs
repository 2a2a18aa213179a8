//! The partition of answered rows into *atoms*: maximal sets of rows that every answered sum
//! treated alike (same multiplicity in every answered query). No linear combination of
//! answered sums can tell two rows of one atom apart, so the audit works over atoms instead
//! of rows. Rows no answered sum touched belong to no atom.
//!
//! Kept as an interval map over row ids, so refining by a query costs O(runs of the query +
//! intervals it overlaps), never O(atoms).

use std::collections::BTreeMap;

/// Atom id: an index into [`Atoms::sizes`].
pub type AtomId = u32;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Atoms {
    /// start → (end, inclusive; atom)
    pub(super) map: BTreeMap<u64, (u64, AtomId)>,
    /// Rows per atom.
    pub(super) sizes: Vec<u64>,
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

impl Atoms {
    pub fn intervals(&self) -> usize {
        self.map.len()
    }

    pub fn size(&self, a: AtomId) -> u64 {
        self.sizes[a as usize]
    }

    pub fn count(&self) -> usize {
        self.sizes.len()
    }

    fn new_atom(&mut self, size: u64) -> AtomId {
        self.sizes.push(size);
        (self.sizes.len() - 1) as AtomId
    }

    /// Make `x` the start of an interval if an interval covers it.
    fn cut(&mut self, x: u64) {
        let Some((&start, &(end, atom))) = self.map.range(..x).next_back() else {
            return;
        };
        if end >= x {
            self.map.insert(start, (x - 1, atom));
            self.map.insert(x, (end, atom));
        }
    }

    /// Refine the partition so that the rows of `runs` (sorted, disjoint, inclusive) are a
    /// union of atoms; rows not in any atom yet form one new atom.
    pub fn refine(&mut self, runs: &[(u64, u64)]) -> Refined {
        let mut covered: BTreeMap<AtomId, (u64, Vec<u64>)> = BTreeMap::new();
        let mut gaps: Vec<(u64, u64)> = Vec::new();
        for &(s, e) in runs {
            self.cut(s);
            if let Some(next) = e.checked_add(1) {
                self.cut(next);
            }
            let mut cursor = Some(s);
            for (&a, &(b, atom)) in self.map.range(s..=e) {
                if let Some(c) = cursor {
                    if a > c {
                        gaps.push((c, a - 1));
                    }
                }
                let entry = covered.entry(atom).or_default();
                entry.0 += b - a + 1;
                entry.1.push(a);
                cursor = b.checked_add(1);
            }
            if let Some(c) = cursor {
                if c <= e {
                    gaps.push((c, e));
                }
            }
        }
        let mut out = Refined::default();
        for (atom, (n, starts)) in covered {
            if n == self.size(atom) {
                out.inside.push(atom);
                continue;
            }
            let new = self.new_atom(n);
            self.sizes[atom as usize] -= n;
            for st in starts {
                if let Some(v) = self.map.get_mut(&st) {
                    v.1 = new;
                }
            }
            out.inside.push(new);
            out.splits.push((atom, new));
        }
        if !gaps.is_empty() {
            let n = gaps.iter().map(|(a, b)| b - a + 1).sum();
            let fresh = self.new_atom(n);
            for (a, b) in gaps {
                self.map.insert(a, (b, fresh));
            }
            out.inside.push(fresh);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(a: &Atoms, atom: AtomId) -> Vec<u64> {
        a.map
            .iter()
            .filter(|(_, (_, id))| *id == atom)
            .flat_map(|(&s, &(e, _))| s..=e)
            .collect()
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
}
