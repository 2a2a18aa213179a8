//! Row-id multisets: the rows an aggregate covered and how often each was counted.
//!
//! A join with a dimension table, a concatenation or a sample with replacement repeats rows;
//! a sealed aggregate then sums a repeated row's cell k times, so its answer key must count
//! that row's mask k times too. A multiset is kept as the set of distinct rows (the *support*)
//! plus, for every multiplicity k ≥ 2 that occurs, the rows counted exactly k times.

use crate::error::{CoreError, Result};
use crate::rids::RidSet;

/// Largest multiplicity accepted for one row of one aggregate (2^32).
pub const MAX_MULTIPLICITY: u64 = 1 << 32;

/// Rows counted more than once: `rids` were each counted exactly `k` times (k ≥ 2).
#[derive(Debug, Clone, PartialEq)]
pub struct Repeat {
    pub k: u64,
    pub rids: RidSet,
}

/// The distinct rows and the repeated ones.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RidMultiset {
    /// Every row counted at least once.
    pub support: RidSet,
    /// Rows counted k ≥ 2 times, by increasing k; the sets are disjoint subsets of `support`.
    pub repeats: Vec<Repeat>,
}

impl RidMultiset {
    /// From rids in any order, duplicates meaning repeats. Sorts `rids` in place.
    pub fn from_rids(rids: &mut [u64]) -> Self {
        if !rids.windows(2).all(|w| w[0] <= w[1]) {
            rids.sort_unstable();
        }
        if rids.windows(2).all(|w| w[0] < w[1]) {
            return RidMultiset {
                support: RidSet::from_sorted(rids),
                repeats: Vec::new(),
            };
        }
        let mut by_k: std::collections::BTreeMap<u64, Vec<u64>> = std::collections::BTreeMap::new();
        let mut i = 0;
        while i < rids.len() {
            let mut j = i + 1;
            while j < rids.len() && rids[j] == rids[i] {
                j += 1;
            }
            let k = (j - i) as u64;
            if k > 1 {
                by_k.entry(k).or_default().push(rids[i]);
            }
            i = j;
        }
        RidMultiset {
            support: RidSet::from_sorted(rids),
            repeats: by_k
                .into_iter()
                .map(|(k, r)| Repeat {
                    k,
                    rids: RidSet::from_sorted(&r),
                })
                .collect(),
        }
    }

    /// Build from a support and repeat classes received from elsewhere, checking that the
    /// classes are well formed: k in 2..=[`MAX_MULTIPLICITY`], distinct k, disjoint, inside
    /// the support.
    pub fn checked(support: RidSet, mut repeats: Vec<Repeat>) -> Result<Self> {
        repeats.sort_by_key(|r| r.k);
        let mut seen = RidSet::new();
        for (i, r) in repeats.iter().enumerate() {
            if r.k < 2 || r.k > MAX_MULTIPLICITY {
                return Err(CoreError::InvalidRidSet(format!(
                    "a repeat class must have a multiplicity in 2..={MAX_MULTIPLICITY}, got {}",
                    r.k
                )));
            }
            if i > 0 && repeats[i - 1].k == r.k {
                return Err(CoreError::InvalidRidSet(format!("multiplicity {} is given twice", r.k)));
            }
            if r.rids.is_empty() {
                return Err(CoreError::InvalidRidSet(format!("repeat class k = {} is empty", r.k)));
            }
            if !r.rids.0.is_subset(&support.0) {
                return Err(CoreError::InvalidRidSet(format!(
                    "repeat class k = {} names rows outside the aggregate's row set",
                    r.k
                )));
            }
            if !r.rids.0.is_disjoint(&seen.0) {
                return Err(CoreError::InvalidRidSet(
                    "a row is in two repeat classes: each row has one multiplicity".into(),
                ));
            }
            seen.0 |= &r.rids.0;
        }
        Ok(RidMultiset { support, repeats })
    }

    /// Number of distinct rows.
    pub fn distinct(&self) -> u64 {
        self.support.len()
    }

    /// Number of rows counted with their multiplicity (what `count()` and a mean divide by).
    pub fn weighted_len(&self) -> u128 {
        let extra: u128 = self
            .repeats
            .iter()
            .map(|r| (r.k as u128 - 1) * r.rids.len() as u128)
            .sum();
        self.support.len() as u128 + extra
    }

    /// Largest multiplicity of any row (1 without repeats, 0 when empty).
    pub fn max_multiplicity(&self) -> u64 {
        match self.repeats.last() {
            Some(r) => r.k,
            None => u64::from(!self.support.is_empty()),
        }
    }

    /// The classes as (multiplicity, rows counted exactly that often), all k ≥ 1, disjoint.
    pub fn classes(&self) -> Vec<(u64, RidSet)> {
        let mut once = self.support.clone();
        for r in &self.repeats {
            once.0 -= &r.rids.0;
        }
        let mut out = Vec::with_capacity(1 + self.repeats.len());
        if !once.is_empty() {
            out.push((1, once));
        }
        out.extend(self.repeats.iter().map(|r| (r.k, r.rids.clone())));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_repeats() {
        let mut rids = vec![5, 3, 5, 9, 5, 3, 1];
        let m = RidMultiset::from_rids(&mut rids);
        assert_eq!(m.support.to_vec(), vec![1, 3, 5, 9]);
        assert_eq!(m.repeats.len(), 2);
        assert_eq!((m.repeats[0].k, m.repeats[0].rids.to_vec()), (2, vec![3]));
        assert_eq!((m.repeats[1].k, m.repeats[1].rids.to_vec()), (3, vec![5]));
        assert_eq!(m.weighted_len(), 7);
        assert_eq!(m.max_multiplicity(), 3);
        let classes = m.classes();
        assert_eq!(classes[0].0, 1);
        assert_eq!(classes[0].1.to_vec(), vec![1, 9]);
        let plain = RidMultiset::from_rids(&mut [1, 2, 3]);
        assert!(plain.repeats.is_empty());
        assert_eq!(plain.max_multiplicity(), 1);
    }

    #[test]
    fn checked_refuses_malformed_classes() {
        let support = RidSet::from_sorted(&[1, 2, 3]);
        let rep = |k, r: &[u64]| Repeat {
            k,
            rids: RidSet::from_sorted(r),
        };
        assert!(RidMultiset::checked(support.clone(), vec![rep(2, &[1])]).is_ok());
        assert!(RidMultiset::checked(support.clone(), vec![rep(1, &[1])]).is_err());
        assert!(RidMultiset::checked(support.clone(), vec![rep(2, &[7])]).is_err());
        assert!(RidMultiset::checked(support.clone(), vec![rep(2, &[1]), rep(3, &[1])]).is_err());
        assert!(RidMultiset::checked(support.clone(), vec![rep(2, &[1]), rep(2, &[2])]).is_err());
        assert!(RidMultiset::checked(support, vec![rep(MAX_MULTIPLICITY + 1, &[1])]).is_err());
    }
}
