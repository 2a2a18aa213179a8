//! Rid sets at memory speed: their 2^16-rid *blocks* (Roaring containers) walked without visiting
//! each rid, runs computed from the blocks, and the wire encoding built straight from a sorted rid
//! slice (no treemap when runs are the smaller encoding).
//!
//! A block is full (all 65,536 rids), or an array of at most 4,096 low halves, or a 1,024-word
//! bitmap. A contiguous set of 10M rids has 153 blocks, so its runs, encoding and digest cost
//! microseconds, and an answer key over it is a sum of cached block sums (`keys::MaskBlocks`).

use crate::error::{CoreError, Result};
use crate::rid_encoding::Reader;
use crate::rids::RidSet;
use crate::varint::put_varint;
use rayon::prelude::*;

/// Rids per block (one Roaring container).
pub const BLOCK: u64 = 1 << 16;
const ARRAY_LIMIT: u64 = 4096;
const COOKIE_NO_RUNS: u32 = 12346;

/// The rids of one block, as stored.
#[derive(Debug, Clone, Copy)]
pub enum Block<'a> {
    /// Every rid of the block.
    Full,
    /// Low 16 bits of each rid, little-endian `u16`s, increasing.
    Array(&'a [u8]),
    /// A bitmap of 1,024 little-endian `u64` words (bit i = rid base + i).
    Bitmap(&'a [u8]),
}

impl Block<'_> {
    /// Call `f` for each low half (0..65536) in the block, in order.
    pub fn for_each(&self, mut f: impl FnMut(u16)) {
        match self {
            Block::Full => (0..=u16::MAX).for_each(f),
            Block::Array(b) => b.chunks_exact(2).for_each(|c| f(u16::from_le_bytes([c[0], c[1]]))),
            Block::Bitmap(b) => {
                for (w, c) in b.chunks_exact(8).enumerate() {
                    let mut word = u64::from_le_bytes(c.try_into().expect("8 bytes"));
                    while word != 0 {
                        let t = word.trailing_zeros();
                        f((w as u32 * 64 + t) as u16);
                        word &= word - 1;
                    }
                }
            }
        }
    }

    /// Call `f(start, end)` (inclusive low halves) for each maximal run in the block.
    pub fn for_each_run(&self, mut f: impl FnMut(u16, u16)) {
        match self {
            Block::Full => f(0, u16::MAX),
            Block::Array(_) => {
                let mut cur: Option<(u16, u16)> = None;
                self.for_each(|v| match &mut cur {
                    Some((_, e)) if u32::from(*e) + 1 == u32::from(v) => *e = v,
                    _ => {
                        if let Some((s, e)) = cur.replace((v, v)) {
                            f(s, e);
                        }
                    }
                });
                if let Some((s, e)) = cur {
                    f(s, e);
                }
            }
            Block::Bitmap(b) => {
                let words: Vec<u64> = b
                    .chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
                    .collect();
                let bit = |i: u32| words[(i / 64) as usize] >> (i % 64) & 1 == 1;
                let mut i: u32 = 0;
                while i < 65_536 {
                    let w = words[(i / 64) as usize] >> (i % 64);
                    if w == 0 {
                        i = (i / 64 + 1) * 64;
                        continue;
                    }
                    i += w.trailing_zeros();
                    let start = i;
                    // extend over the run: whole all-ones words at a time
                    loop {
                        let w = !(words[(i / 64) as usize] >> (i % 64));
                        let ones = if w == 0 {
                            64 - i % 64
                        } else {
                            w.trailing_zeros().min(64 - i % 64)
                        };
                        i += ones;
                        if i >= 65_536 || !bit(i) {
                            break;
                        }
                    }
                    f(start as u16, (i - 1) as u16);
                }
            }
        }
    }
}

/// The Roaring serialization of `set` (what [`blocks`] reads).
pub fn serialize(set: &RidSet) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(set.0.serialized_size());
    set.0.serialize_into(&mut bytes).expect("writing to a Vec cannot fail");
    bytes
}

/// The non-empty blocks of a serialized set (from [`serialize`]) in increasing order, as
/// `(base rid, cardinality, block)`.
pub fn blocks(bytes: &[u8]) -> Vec<(u64, u64, Block<'_>)> {
    let mut out = Vec::new();
    walk(bytes, &mut |base, card, b| out.push((base, card, b)))
        .expect("a treemap serializes into the layout it is parsed with");
    out
}

/// Visit every non-empty block of `set` in increasing order as `(base rid, cardinality, block)`.
pub fn for_each_block(set: &RidSet, mut f: impl FnMut(u64, u64, Block<'_>)) {
    let bytes = serialize(set);
    walk(&bytes, &mut f).expect("a treemap serializes into the layout it is parsed with");
}

fn walk<'a>(bytes: &'a [u8], f: &mut impl FnMut(u64, u64, Block<'a>)) -> Result<()> {
    let bad = |m: &str| CoreError::InvalidRidSet(m.into());
    let mut r = Reader(bytes);
    let bitmaps = r.u64()?;
    for _ in 0..bitmaps {
        let high = u64::from(r.u32()?);
        if r.u32()? != COOKIE_NO_RUNS {
            return Err(bad("unexpected Roaring cookie"));
        }
        let size = r.u32()? as usize;
        let descriptions = r.take(size * 4)?;
        r.take(size * 4)?;
        for d in descriptions.chunks_exact(4) {
            let key = u64::from(u16::from_le_bytes([d[0], d[1]]));
            let card = u64::from(u16::from_le_bytes([d[2], d[3]])) + 1;
            let base = (high << 32) | (key << 16);
            if card <= ARRAY_LIMIT {
                f(base, card, Block::Array(r.take(card as usize * 2)?));
            } else {
                let b = r.take(8192)?;
                f(base, card, if card == BLOCK { Block::Full } else { Block::Bitmap(b) });
            }
        }
    }
    Ok(())
}

/// Maximal runs of consecutive rids as inclusive `(start, end)` pairs, from the blocks.
impl RidSet {
    /// Maximal runs of consecutive rids, as inclusive (start, end) pairs (from the 2^16-rid
    /// blocks, not rid by rid: see `rid_blocks`).
    pub fn runs(&self) -> Vec<(u64, u64)> {
        runs(self)
    }
}

/// Maximal runs of `set`, as inclusive (start, end) pairs.
pub fn runs(set: &RidSet) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for_each_block(set, |base, _, b| {
        b.for_each_run(|s, e| {
            let (s, e) = (base + u64::from(s), base + u64::from(e));
            match out.last_mut() {
                Some((_, end)) if *end + 1 == s => *end = e,
                _ => out.push((s, e)),
            }
        })
    });
    out
}

/// Runs of a sorted slice (duplicates allowed), inclusive; chunks in parallel for large slices.
fn runs_of_sorted(rids: &[u64]) -> Vec<(u64, u64)> {
    const PAR: usize = 1 << 16;
    if rids.len() <= 4 * PAR {
        return runs_serial(rids);
    }
    let parts: Vec<Vec<(u64, u64)>> = rids.par_chunks(PAR).map(runs_serial).collect();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(parts.iter().map(Vec::len).sum());
    for (a, b) in parts.into_iter().flatten() {
        match out.last_mut() {
            // a chunk that starts where (or right after) the previous one ended continues its run
            Some((_, end)) if end.saturating_add(1) >= a => *end = (*end).max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

fn runs_serial(rids: &[u64]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &r in rids {
        match out.last_mut() {
            Some((_, end)) if *end == r || *end + 1 == r => *end = r,
            _ => out.push((r, r)),
        }
    }
    out
}

/// The size `RoaringTreemap::serialized_size` would report for the distinct rids of a sorted
/// slice, computed arithmetically.
fn roaring_size_of_sorted(rids: &[u64]) -> usize {
    let mut size = 8usize;
    let mut high: Option<u64> = None;
    let mut key: Option<u64> = None;
    let mut card = 0u64;
    let mut prev: Option<u64> = None;
    let close = |card: u64| if card <= ARRAY_LIMIT { card as usize * 2 } else { 8192 };
    for &r in rids {
        if prev == Some(r) {
            continue;
        }
        prev = Some(r);
        let (h, k) = (r >> 32, r >> 16);
        if key != Some(k) {
            if key.is_some() {
                size += close(card);
            }
            if high != Some(h) {
                size += 12; // high key, cookie, container count
                high = Some(h);
            }
            size += 8; // description and offset
            key = Some(k);
            card = 0;
        }
        card += 1;
    }
    if key.is_some() {
        size += close(card);
    }
    size
}

/// The wire encoding of the distinct rids of a sorted slice (duplicates allowed), byte for byte
/// what `RidSet::from_sorted(rids).to_bytes()` gives, without a treemap when runs win.
pub fn encode_sorted(rids: &[u64]) -> Vec<u8> {
    let runs = runs_of_sorted(rids);
    // a Roaring treemap takes at least one bit per rid (and 2 bytes per rid below 4,096 per block),
    // so runs whose encoding is below n/8 bytes win without computing its exact size
    if 1 + runs.len() * 20 < rids.len() / 8 {
        return encode_runs(&runs);
    }
    let roaring_size = roaring_size_of_sorted(rids);
    if runs.len() * 4 < roaring_size {
        let out = encode_runs(&runs);
        if out.len() < roaring_size + 1 {
            return out;
        }
    }
    RidSet::from_sorted(rids).to_bytes()
}

fn encode_runs(runs: &[(u64, u64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + runs.len() * 4);
    out.push(1u8);
    let mut prev_end: Option<u64> = None;
    for &(start, end) in runs {
        put_varint(&mut out, prev_end.map_or(start, |p| start - p - 1));
        put_varint(&mut out, end - start);
        prev_end = Some(end);
    }
    out
}

/// Number of distinct rids in a sorted slice.
pub fn distinct_sorted(rids: &[u64]) -> u64 {
    if rids.is_empty() {
        return 0;
    }
    1 + rids.windows(2).filter(|w| w[0] != w[1]).count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn parallel_runs_equal_serial_runs() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut rids: Vec<u64> = (0..2_000_000u64).filter(|_| rng.gen_bool(0.999)).collect();
        rids.insert(300_000, rids[300_000]); // a duplicate
        assert_eq!(runs_of_sorted(&rids), runs_serial(&rids));
        let contiguous: Vec<u64> = (5..1_000_005).collect();
        assert_eq!(runs_of_sorted(&contiguous), vec![(5, 1_000_004)]);
    }

    fn sets() -> Vec<Vec<u64>> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut out = vec![
            vec![],
            vec![5],
            (0..200_000).collect(),
            (1000..1_000_000).step_by(2).collect(),
            vec![
                0,
                1,
                2,
                65_535,
                65_536,
                65_537,
                1 << 33,
                (1 << 33) + 1,
                u64::MAX - 1,
                u64::MAX,
            ],
        ];
        for density in [0.001, 0.1, 0.5, 0.97] {
            let mut v: Vec<u64> = (0..300_000u64).filter(|_| rng.gen_bool(density)).collect();
            // a few duplicates: they collapse
            if v.len() > 10 {
                let d = v[3];
                v.insert(3, d);
            }
            out.push(v);
        }
        out
    }

    #[test]
    fn blocks_runs_and_encoding_agree_with_the_treemap() {
        for v in sets() {
            let set = RidSet::from_sorted(&v);
            assert_eq!(encode_sorted(&v), set.to_bytes(), "encoding of {} rids", v.len());
            assert_eq!(roaring_size_of_sorted(&v), set.0.serialized_size());
            let mut slow: Vec<(u64, u64)> = Vec::new();
            for r in set.0.iter() {
                match slow.last_mut() {
                    Some((_, e)) if *e + 1 == r => *e = r,
                    _ => slow.push((r, r)),
                }
            }
            assert_eq!(runs(&set), slow);
            let mut seen = Vec::new();
            let mut total = 0;
            for_each_block(&set, |base, card, b| {
                total += card;
                b.for_each(|lo| seen.push(base + u64::from(lo)));
            });
            assert_eq!(total, set.len());
            assert_eq!(seen, set.to_vec());
            assert_eq!(distinct_sorted(&v), set.len());
        }
    }
}
