//! A sparse basis of the answered sums in reduced row echelon form over exact rationals.
//!
//! Unknowns are keys `(column slot, atom)`. Every row has coefficient 1 at its pivot and 0 at
//! every other row's pivot. A unit vector lies in the row space exactly when it *is* a row
//! (see `mod.rs`), so full disclosure is read off the rows a new answer changes.

use std::collections::HashMap;

use super::rational::{Overflow, Rat};

/// An unknown: a column slot in the high bits, an atom in the low [`ATOM_BITS`].
pub type Key = u64;

pub const ATOM_BITS: u32 = 40;

pub fn key(slot: u32, atom: u32) -> Key {
    (u64::from(slot) << ATOM_BITS) | u64::from(atom)
}

pub fn atom_of(k: Key) -> u32 {
    (k & ((1u64 << ATOM_BITS) - 1)) as u32
}

/// A row: entries sorted by key, no zeros.
pub type Row = Vec<(Key, Rat)>;

#[derive(Debug, Clone, Default)]
pub struct Basis {
    pub(super) rows: Vec<Row>,
    pub(super) pivots: Vec<Key>,
    pivot_row: HashMap<Key, u32>,
    /// Rows in which a key occurs outside its pivot position.
    occurs: HashMap<Key, Vec<u32>>,
    nnz: usize,
}

/// A new row and the rows it changes, computed but not applied.
pub struct Proposal {
    pivot: Key,
    row: Row,
    updated: Vec<(u32, Row)>,
}

impl Proposal {
    /// The new row and every changed row.
    pub fn rows(&self) -> impl Iterator<Item = &Row> {
        std::iter::once(&self.row).chain(self.updated.iter().map(|(_, r)| r))
    }
}

fn combine(a: &Row, c: Rat, b: &Row) -> Result<Row, Overflow> {
    // a − c·b, merged by key
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let take_a = j >= b.len() || (i < a.len() && a[i].0 < b[j].0);
        let take_b = i >= a.len() || (j < b.len() && b[j].0 < a[i].0);
        if take_a {
            out.push(a[i]);
            i += 1;
        } else if take_b {
            let v = Rat::int(0).sub(c.mul(b[j].1)?)?;
            out.push((b[j].0, v));
            j += 1;
        } else {
            let v = a[i].1.sub(c.mul(b[j].1)?)?;
            if !v.is_zero() {
                out.push((a[i].0, v));
            }
            i += 1;
            j += 1;
        }
    }
    Ok(out)
}

impl Basis {
    pub fn from_rows(rows: Vec<Row>, pivots: Vec<Key>) -> Self {
        let mut b = Basis::default();
        for (i, (row, p)) in rows.iter().zip(&pivots).enumerate() {
            b.index_row(i as u32, row, *p);
            b.pivot_row.insert(*p, i as u32);
        }
        b.rows = rows;
        b.pivots = pivots;
        b
    }

    fn index_row(&mut self, i: u32, row: &Row, pivot: Key) {
        for (k, _) in row {
            if *k != pivot {
                self.occurs.entry(*k).or_default().push(i);
            }
        }
        self.nnz += row.len();
    }

    pub fn rank(&self) -> usize {
        self.rows.len()
    }

    /// Total stored coefficients.
    pub fn nnz(&self) -> usize {
        self.nnz
    }

    /// The unknown `from` was split into `from` and `to`, which every existing row treats
    /// alike: copy `from`'s coefficient to `to` in every row that has it.
    pub fn duplicate(&mut self, from: Key, to: Key) {
        let mut holders: Vec<u32> = self.occurs.get(&from).cloned().unwrap_or_default();
        if let Some(&r) = self.pivot_row.get(&from) {
            holders.push(r);
        }
        for &r in &holders {
            let row = &mut self.rows[r as usize];
            let c = row[row.binary_search_by_key(&from, |e| e.0).expect("holder has the key")].1;
            let at = row.binary_search_by_key(&to, |e| e.0).unwrap_err();
            row.insert(at, (to, c));
        }
        self.nnz += holders.len();
        if !holders.is_empty() {
            self.occurs.insert(to, holders);
        }
    }

    /// Reduce `v` by the rows; what is left is zero iff `v` is in the row space.
    pub fn reduce(&self, mut v: HashMap<Key, Rat>) -> Result<HashMap<Key, Rat>, Overflow> {
        let pivots_in_v: Vec<(Key, u32)> = v
            .keys()
            .filter_map(|k| self.pivot_row.get(k).map(|&r| (*k, r)))
            .collect();
        for (p, r) in pivots_in_v {
            // rows are zero at other rows' pivots, so eliminating p leaves them alone
            let Some(c) = v.get(&p).copied() else { continue };
            for &(k, rk) in &self.rows[r as usize] {
                let cur = v.get(&k).copied().unwrap_or(Rat::int(0));
                let nv = cur.sub(c.mul(rk)?)?;
                if nv.is_zero() {
                    v.remove(&k);
                } else {
                    v.insert(k, nv);
                }
            }
        }
        Ok(v)
    }

    /// The basis after adding a reduced, non-zero `v`: its normalised row and the rows
    /// whose entry at the new pivot must be eliminated.
    pub fn propose(&self, v: HashMap<Key, Rat>) -> Result<Proposal, Overflow> {
        let mut row: Row = v.into_iter().collect();
        row.sort_unstable_by_key(|e| e.0);
        let pivot = row[0].0;
        let inv = row[0].1.recip()?;
        for e in row.iter_mut() {
            e.1 = e.1.mul(inv)?;
        }
        let mut updated = Vec::new();
        for &r in self.occurs.get(&pivot).map(Vec::as_slice).unwrap_or(&[]) {
            let old = &self.rows[r as usize];
            let c = old[old.binary_search_by_key(&pivot, |e| e.0).expect("occurrence indexed")].1;
            updated.push((r, combine(old, c, &row)?));
        }
        Ok(Proposal { pivot, row, updated })
    }

    pub fn commit(&mut self, p: Proposal) {
        for (r, new) in p.updated {
            let old = std::mem::replace(&mut self.rows[r as usize], new);
            let own = self.pivots[r as usize];
            let new = &self.rows[r as usize];
            let (mut i, mut j) = (0, 0);
            while i < old.len() || j < new.len() {
                let ko = old.get(i).map(|e| e.0);
                let kn = new.get(j).map(|e| e.0);
                let gone = match (ko, kn) {
                    (Some(a), Some(b)) if a == b => {
                        i += 1;
                        j += 1;
                        continue;
                    }
                    (Some(a), Some(b)) => a < b,
                    (Some(_), None) => true,
                    (None, _) => false,
                };
                if gone {
                    let a = old[i].0;
                    if a != own {
                        if let Some(list) = self.occurs.get_mut(&a) {
                            if let Some(pos) = list.iter().position(|&x| x == r) {
                                list.swap_remove(pos);
                            }
                            if list.is_empty() {
                                self.occurs.remove(&a);
                            }
                        }
                    }
                    i += 1;
                } else {
                    let b = new[j].0;
                    if b != own {
                        self.occurs.entry(b).or_default().push(r);
                    }
                    j += 1;
                }
            }
            self.nnz = self.nnz + new.len() - old.len();
        }
        let i = self.rows.len() as u32;
        self.occurs.remove(&p.pivot);
        self.index_row(i, &p.row, p.pivot);
        self.pivot_row.insert(p.pivot, i);
        self.rows.push(p.row);
        self.pivots.push(p.pivot);
    }
}
