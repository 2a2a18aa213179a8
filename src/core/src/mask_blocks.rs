//! Answer keys of sums in O(blocks), not O(rids): the sum of the masks of each full 2^16-rid block
//! is computed once per column epoch and kept in memory, so a sum over a contiguous run of 10M
//! rids adds 153 cached block sums and masks only its partial edge blocks.
//!
//! A block present in more than half of its rids is summed as `Σ block − Σ absent rids` when its
//! block sum is cached (the complement is the cheaper side). Block sums are derived from the
//! column key, not state: losing them costs time, never correctness. They are as secret as the
//! key (a block sum unmasks a sum over that block), so they stay in process memory, are bounded
//! ([`MAX_BLOCKS_PER_KEY`], [`MAX_KEYS`]) and are zeroized when dropped or evicted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rayon::prelude::*;
use zeroize::Zeroize;

use crate::keys::NumKey;
use crate::rid_blocks::{self, Block, BLOCK};
use crate::rids::RidSet;

/// Cached block sums of one key at most (2^18 blocks = 2^34 rids, about 12 MiB).
pub const MAX_BLOCKS_PER_KEY: usize = 1 << 18;
/// Column epochs whose block sums are kept at once.
pub const MAX_KEYS: usize = 64;

/// Block sums of one column epoch's `num` key: block base rid → `Σ mask` over the block.
#[derive(Default)]
pub struct MaskBlocks {
    sums: Mutex<HashMap<u64, u128>>,
}

impl Drop for MaskBlocks {
    fn drop(&mut self) {
        if let Ok(m) = self.sums.get_mut() {
            m.values_mut().for_each(Zeroize::zeroize);
        }
    }
}

/// Block sums of many column epochs, by key fingerprint (the keyhost keeps one).
#[derive(Default)]
pub struct MaskCache {
    keys: Mutex<HashMap<[u8; 32], Arc<MaskBlocks>>>,
}

impl MaskCache {
    /// The block sums of `key` (created empty on first use; the cache is emptied when it holds
    /// [`MAX_KEYS`] keys).
    pub fn blocks(&self, key: &NumKey) -> Arc<MaskBlocks> {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let fp = key.fingerprint();
        if !keys.contains_key(&fp) && keys.len() >= MAX_KEYS {
            keys.clear();
        }
        keys.entry(fp).or_default().clone()
    }
}

enum Plan {
    /// Use the cached block sum.
    Cached(u128),
    /// Compute the block sum of a full block (and cache it).
    FullBlock,
    /// Cached block sum minus the masks of the absent rids.
    Complement(u128),
    /// The masks of the present rids.
    Direct,
}

impl NumKey {
    /// `Σ PRF(k, rid)` over `set`, like [`NumKey::sum_masks`], using and filling `blocks`.
    pub fn sum_masks_cached(&self, set: &RidSet, blocks: &MaskBlocks) -> u128 {
        if set.len() <= 4096 {
            // no block of it can be full or more than half full
            return self.sum_masks_seq(&set.to_vec());
        }
        let bytes = rid_blocks::serialize(set);
        let list = rid_blocks::blocks(&bytes);
        let plans: Vec<Plan> = {
            let sums = blocks.sums.lock().unwrap_or_else(|e| e.into_inner());
            list.iter()
                .map(|(base, card, _)| match (sums.get(base), *card) {
                    (Some(&s), BLOCK) => Plan::Cached(s),
                    (None, BLOCK) => Plan::FullBlock,
                    (Some(&s), c) if c > BLOCK / 2 => Plan::Complement(s),
                    _ => Plan::Direct,
                })
                .collect()
        };
        let one = |((base, card, block), plan): (&(u64, u64, Block<'_>), &Plan)| match plan {
            Plan::Cached(s) => (*s, None),
            Plan::FullBlock => {
                let s = self.sum_range(*base, BLOCK);
                (s, Some((*base, s)))
            }
            Plan::Complement(s) => {
                let mut present = vec![false; BLOCK as usize];
                block.for_each(|lo| present[lo as usize] = true);
                let absent: Vec<u64> = (0..BLOCK).filter(|&i| !present[i as usize]).map(|i| base + i).collect();
                (s.wrapping_sub(self.sum_masks_seq(&absent)), None)
            }
            Plan::Direct => {
                let mut rids = Vec::with_capacity(*card as usize);
                block_rids(*base, block, &mut rids);
                (self.sum_masks_seq(&rids), None)
            }
        };
        // a small set (a group's few rows) is summed on this thread: no pool round trip
        let parts: Vec<(u128, Option<(u64, u128)>)> = if set.len() < BLOCK {
            list.iter().zip(plans.iter()).map(one).collect()
        } else {
            list.par_iter().zip(plans.par_iter()).map(one).collect()
        };
        let mut total = 0u128;
        let mut new = Vec::new();
        for (s, fresh) in parts {
            total = total.wrapping_add(s);
            new.extend(fresh);
        }
        if !new.is_empty() {
            let mut sums = blocks.sums.lock().unwrap_or_else(|e| e.into_inner());
            if sums.len() + new.len() > MAX_BLOCKS_PER_KEY {
                sums.values_mut().for_each(Zeroize::zeroize);
                sums.clear();
            }
            sums.extend(new.iter().copied().take(MAX_BLOCKS_PER_KEY));
            new.iter_mut().for_each(|(_, s)| s.zeroize());
        }
        total
    }

    /// `Σ mask` over `start .. start + len`.
    fn sum_range(&self, start: u64, len: u64) -> u128 {
        let rids: Vec<u64> = (start..start + len).collect();
        self.sum_masks_seq(&rids)
    }
}

fn block_rids(base: u64, block: &Block<'_>, out: &mut Vec<u64>) {
    block.for_each(|lo| out.push(base + u64::from(lo)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::RootKey;

    #[test]
    fn cached_sums_equal_plain_sums() {
        let keys = RootKey::generate().derive("blocks");
        let cache = MaskCache::default();
        let blocks = cache.blocks(&keys.num);
        let mut dense: Vec<u64> = (3..400_000).collect();
        dense.retain(|r| r % 1000 != 7); // 99.9 % of each block: complements once cached
        let sets = [
            RidSet::from_sorted(&(0..300_000).collect::<Vec<u64>>()),
            RidSet::from_sorted(&(70_000..1_000_001).collect::<Vec<u64>>()),
            RidSet::from_sorted(&dense),
            RidSet::from_sorted(&(0..500_000).step_by(3).collect::<Vec<u64>>()),
            RidSet::from_unsorted(&[1, 5, 1 << 40, u64::MAX]),
        ];
        for round in 0..2 {
            for s in &sets {
                let want = keys.num.sum_masks(&s.to_vec());
                assert_eq!(keys.num.sum_masks_cached(s, &blocks), want, "round {round}");
            }
        }
        assert!(!blocks.sums.lock().unwrap().is_empty());
        // another key shares nothing
        let other = RootKey::generate().derive("blocks");
        let s = &sets[0];
        assert_eq!(
            other.num.sum_masks_cached(s, &cache.blocks(&other.num)),
            other.num.sum_masks(&s.to_vec())
        );
    }
}
