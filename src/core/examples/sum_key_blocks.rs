//! Keyhost sum key over a contiguous 10M-rid set: first use (block sums computed) and cached.
//!
//!     cargo run --release -p ghostpii-core --example sum_key_blocks

use std::time::Instant;

use ghostpii_core::mask_blocks::MaskCache;
use ghostpii_core::{RidSet, RootKey};

fn main() {
    let keys = RootKey::generate().derive("bench/1/1");
    let n: u64 = 10_000_000;
    let set = RidSet::from_sorted(&(1_000..1_000 + n).collect::<Vec<u64>>());
    let cache = MaskCache::default();
    let t = Instant::now();
    let plain = keys.num.sum_masks(&set.to_vec());
    let t_plain = t.elapsed();
    let t = Instant::now();
    let first = keys.num.sum_masks_cached(&set, &cache.blocks(&keys.num));
    let t_first = t.elapsed();
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        let again = keys.num.sum_masks_cached(&set, &cache.blocks(&keys.num));
        best = best.min(t.elapsed().as_secs_f64());
        assert_eq!(again, plain);
    }
    assert_eq!(first, plain);
    println!(
        "sum key over {n} contiguous rids: per rid {:.1} ms; blocks, first use {:.1} ms; blocks, cached {:.3} ms",
        t_plain.as_secs_f64() * 1e3,
        t_first.as_secs_f64() * 1e3,
        best * 1e3
    );
}
