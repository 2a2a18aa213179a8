//! The sum of two row multisets: what merging two sealed partials does to their rows. A row
//! counted a times in one and b times in the other is counted a + b times.

use std::collections::BTreeMap;

use crate::multiset::{Repeat, RidMultiset};
use crate::rids::RidSet;

/// `a + b` as multisets.
pub fn plus(a: &RidMultiset, b: &RidMultiset) -> RidMultiset {
    let support = RidSet(&a.support.0 | &b.support.0);
    let mut by_k: BTreeMap<u64, RidSet> = BTreeMap::new();
    let mut add = |k: u64, set: RidSet| {
        if k >= 2 && !set.is_empty() {
            let e = by_k.entry(k).or_default();
            e.0 |= set.0;
        }
    };
    if a.support.0.is_disjoint(&b.support.0) {
        // the common case (partials of disjoint files): the classes just join
        for r in a.repeats.iter().chain(&b.repeats) {
            add(r.k, r.rids.clone());
        }
    } else {
        let (ca, cb) = (a.classes(), b.classes());
        for (ka, sa) in &ca {
            let mut only = sa.0.clone();
            for (kb, sb) in &cb {
                let both = &sa.0 & &sb.0;
                only -= &both;
                add(ka + kb, RidSet(both));
            }
            add(*ka, RidSet(only));
        }
        for (kb, sb) in &cb {
            add(*kb, RidSet(&sb.0 - &a.support.0));
        }
    }
    RidMultiset {
        support,
        repeats: by_k.into_iter().map(|(k, rids)| Repeat { k, rids }).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiplicities_add() {
        let a = RidMultiset::from_rids(&mut [1, 2, 2, 3]);
        let b = RidMultiset::from_rids(&mut [2, 3, 3, 3, 9]);
        let mut all = vec![1, 2, 2, 3, 2, 3, 3, 3, 9];
        assert_eq!(plus(&a, &b), RidMultiset::from_rids(&mut all));
        let c = RidMultiset::from_rids(&mut [10, 11, 11]);
        let mut joined = vec![1, 2, 2, 3, 10, 11, 11];
        assert_eq!(plus(&a, &c), RidMultiset::from_rids(&mut joined));
    }
}
