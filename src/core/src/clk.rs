//! The `fuzzy` facet: hardened Bloom-filter (CLK-style) encodings of character bigrams,
//! sealed at rest, and Dice-similarity linkage with MinHash blocking.
//!
//! Encoding of a value (normalised by the Python layer: NFKC, lower case, trimmed):
//! 1. bigrams of its characters padded with a sentinel at both ends (`"ab"` → `␂a`, `ab`, `b␂`);
//!    the empty string has none;
//! 2. **random hashing** (Niedermeyer et al. 2014; Schnell 2016): each bigram sets [`K`]
//!    independent positions of a 2048-bit filter taken from `HMAC-SHA256(k_clk, label ‖ bigram)`
//!    (no double hashing, so the Niedermeyer–Kroll attack on double-hashing structure does not
//!    apply; without `k_clk` no dictionary can be hashed);
//! 3. **XOR-folding** (Schnell, Borgs & Encheva 2016): the two halves are XOR-ed into 1024 bits,
//!    so no bit is the footprint of one bigram (pattern-mining attacks of Christen et al. 2017/18
//!    look for bit positions that co-occur with one frequent bigram);
//! 4. **salt bits**: [`NOISE_BITS`] random positions per row are set, so equal values do not
//!    have equal encodings (no exact-duplicate frequency count).
//!
//! At rest the filter is sealed: `filter ⊕ AES-CTR_{seed}(0..8)` with the per-row seed
//! `AES_{k_seal}(D_f ‖ rid)` ([`crate::det::PadKey`], kind `Fuzzy`); the keyhost hands out the
//! seeds of requested rows under a `link` grant.

use aes::cipher::{generic_array::GenericArray, BlockEncrypt, KeyInit};
use aes::Aes128;
use hmac::{Hmac, Mac};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rayon::prelude::*;
use sha2::Sha256;
use zeroize::Zeroize;

use crate::det::DetKey;

/// Bits of a (folded) encoding.
pub const BITS: usize = 1024;
/// 64-bit words of an encoding.
pub const WORDS: usize = BITS / 64;
/// Bytes of an encoding (and of a sealed cell).
pub const BYTES: usize = BITS / 8;
/// Positions set per bigram in the unfolded 2048-bit filter.
pub const K: usize = 12;
/// Random positions set per row.
pub const NOISE_BITS: usize = 3;
const RAW_BITS: usize = 2 * BITS;
const SENTINEL: char = '\u{2}';

/// One encoding.
pub type Filter = [u64; WORDS];

fn positions(base: &Hmac<Sha256>, label: &[u8], a: char, b: char, out: &mut [u64; 2 * WORDS]) {
    let mut m = base.clone();
    m.update(&(label.len() as u32).to_le_bytes());
    m.update(label);
    let mut buf = [0u8; 8];
    m.update(a.encode_utf8(&mut buf[..4]).as_bytes());
    m.update(b.encode_utf8(&mut buf[4..]).as_bytes());
    let h = m.finalize().into_bytes();
    for i in 0..K {
        let p = u16::from_le_bytes([h[2 * i], h[2 * i + 1]]) as usize % RAW_BITS;
        out[p / 64] |= 1u64 << (p % 64);
    }
}

/// The encoding of one value under the CLK key (`label` separates fields: the column name).
pub fn encode(key: &DetKey, label: &str, text: &str, rng: &mut impl Rng) -> Filter {
    let base = <Hmac<Sha256> as Mac>::new_from_slice(key.expose_bytes()).expect("HMAC takes any key length");
    encode_with(&base, label.as_bytes(), text, rng, NOISE_BITS)
}

/// The encoding of a query constant (`ghost.similarity`): as [`encode`], without salt bits, so
/// one constant always gives one token. Issued by the keyhost under a `link` grant.
pub fn encode_constant(key: &DetKey, label: &str, text: &str) -> Filter {
    let base = <Hmac<Sha256> as Mac>::new_from_slice(key.expose_bytes()).expect("HMAC takes any key length");
    encode_with(&base, label.as_bytes(), text, &mut rand::rngs::OsRng, 0)
}

/// An encoding as its [`BYTES`] little-endian bytes (a similarity token).
pub fn to_bytes(f: &Filter) -> [u8; BYTES] {
    let mut out = [0u8; BYTES];
    for (i, w) in f.iter().enumerate() {
        out[8 * i..8 * i + 8].copy_from_slice(&w.to_le_bytes());
    }
    out
}

/// The encoding of [`BYTES`] bytes ([`to_bytes`]); `None` for another length.
pub fn from_bytes(b: &[u8]) -> Option<Filter> {
    if b.len() != BYTES {
        return None;
    }
    let mut f = [0u64; WORDS];
    for (i, w) in f.iter_mut().enumerate() {
        *w = u64::from_le_bytes(b[8 * i..8 * i + 8].try_into().expect("8 bytes"));
    }
    Some(f)
}

fn encode_with(base: &Hmac<Sha256>, label: &[u8], text: &str, rng: &mut impl Rng, noise: usize) -> Filter {
    let mut raw = [0u64; 2 * WORDS];
    let mut out = [0u64; WORDS];
    if text.is_empty() {
        return out;
    }
    let mut prev = SENTINEL;
    for c in text.chars().chain(std::iter::once(SENTINEL)) {
        positions(base, label, prev, c, &mut raw);
        prev = c;
    }
    for i in 0..WORDS {
        out[i] = raw[i] ^ raw[i + WORDS];
    }
    for _ in 0..noise {
        let p = rng.gen_range(0..BITS);
        out[p / 64] |= 1u64 << (p % 64);
    }
    raw.zeroize();
    out
}

/// Encodings of many values (nulls stay `None`), in parallel, each chunk with its own
/// OS-seeded ChaCha20 stream for the salt bits.
pub fn encode_many(key: &DetKey, label: &str, values: &[Option<&str>]) -> Vec<Option<Filter>> {
    let base = <Hmac<Sha256> as Mac>::new_from_slice(key.expose_bytes()).expect("HMAC takes any key length");
    values
        .par_chunks(4096)
        .flat_map_iter(|chunk| {
            let mut rng = ChaCha20Rng::from_rng(rand::rngs::OsRng).expect("OS randomness");
            chunk
                .iter()
                .map(|v| v.map(|t| encode_with(&base, label.as_bytes(), t, &mut rng, NOISE_BITS)))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn keystream(seed: &[u8; 16]) -> [u8; BYTES] {
    let cipher = Aes128::new(GenericArray::from_slice(seed));
    let mut blocks = [GenericArray::<u8, aes::cipher::consts::U16>::default(); BYTES / 16];
    for (i, b) in blocks.iter_mut().enumerate() {
        b[0] = i as u8;
        b[15] = 0x66;
    }
    cipher.encrypt_blocks(&mut blocks);
    let mut out = [0u8; BYTES];
    for (i, b) in blocks.iter_mut().enumerate() {
        out[16 * i..16 * i + 16].copy_from_slice(b);
        b.as_mut_slice().zeroize();
    }
    out
}

/// Seal (or unseal: the operation is its own inverse) one encoding with its row's seed.
pub fn seal(f: &Filter, seed: &[u8; 16]) -> [u8; BYTES] {
    let mut ks = keystream(seed);
    let mut out = [0u8; BYTES];
    for i in 0..WORDS {
        let w = f[i].to_le_bytes();
        for j in 0..8 {
            out[8 * i + j] = w[j] ^ ks[8 * i + j];
        }
    }
    ks.zeroize();
    out
}

/// Unseal a stored cell with its row's seed.
pub fn unseal(cell: &[u8], seed: &[u8; 16]) -> Option<Filter> {
    if cell.len() != BYTES {
        return None;
    }
    let mut ks = keystream(seed);
    let mut f = [0u64; WORDS];
    for (i, w) in f.iter_mut().enumerate() {
        let mut b = [0u8; 8];
        for j in 0..8 {
            b[j] = cell[8 * i + j] ^ ks[8 * i + j];
        }
        *w = u64::from_le_bytes(b);
    }
    ks.zeroize();
    Some(f)
}

/// Number of set bits.
#[inline]
pub fn weight(f: &Filter) -> u32 {
    f.iter().map(|w| w.count_ones()).sum()
}

/// Dice coefficient `2|A∩B| / (|A| + |B|)` (0 when both are empty).
#[inline]
pub fn dice(a: &Filter, b: &Filter) -> f64 {
    dice_w(a, weight(a), b, weight(b))
}

/// [`dice`] with the weights already known.
#[inline]
fn dice_w(a: &Filter, wa: u32, b: &Filter, wb: u32) -> f64 {
    if wa + wb == 0 {
        return 0.0;
    }
    2.0 * intersection(a, b) as f64 / (wa + wb) as f64
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
unsafe fn intersection_popcnt(a: &Filter, b: &Filter) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x & y).count_ones()).sum()
}

/// `|A∩B|`, with the POPCNT instruction where the CPU has it (detected once).
#[inline]
fn intersection(a: &Filter, b: &Filter) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static HAS: OnceLock<bool> = OnceLock::new();
        if *HAS.get_or_init(|| std::is_x86_feature_detected!("popcnt")) {
            // SAFETY: the CPU supports popcnt (checked above).
            return unsafe { intersection_popcnt(a, b) };
        }
    }
    a.iter().zip(b).map(|(x, y)| (x & y).count_ones()).sum()
}

/// OR of several field encodings into one record encoding.
pub fn combine(fields: &[&Filter]) -> Filter {
    let mut out = [0u64; WORDS];
    for f in fields {
        for i in 0..WORDS {
            out[i] |= f[i];
        }
    }
    out
}

/// One linked pair.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pair {
    pub left: u32,
    pub right: u32,
    pub similarity: f64,
}

/// MinHash LSH over the set bits (public, fixed hash tables: blocking needs no secret).
struct Lsh {
    bands: usize,
    rows: usize,
    /// The hash tables stored position-major (`by_pos[p · n + t]` = table `t` at bit `p`), so
    /// a set bit updates all `n` minima from one contiguous slice (vectorised).
    by_pos: Vec<u32>,
}

impl Lsh {
    /// Bands tuned so that a pair near the threshold misses every band rarely (Jaccard
    /// J = D / (2 − D) for Dice D; miss = (1 − J^r)^b): r = 4, b = 40 from 0.75 (at Dice 0.8,
    /// J = 0.67: 1.5·10⁻⁴; at 0.75: 4·10⁻³; 3 rows per band would give 2·10⁻⁷ but 4× the
    /// candidates: 36 s instead of 9 s for 100k × 100k names here); r = 2, b = 90 from 0.55
    /// (at 0.55: 10⁻⁶); below, r = 1, b = 72 (at Dice 0.3: 10⁻⁶). Pairs above the threshold are
    /// missed less often still.
    fn for_threshold(t: f64) -> Self {
        let (bands, rows) = if t >= 0.75 {
            (40, 4)
        } else if t >= 0.55 {
            (90, 2)
        } else {
            (72, 1)
        };
        Self::with(bands, rows)
    }

    fn with(bands: usize, rows: usize) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(0x6768_6f73_746c_6b31);
        let tables = (0..bands * rows)
            .map(|_| {
                let mut t = [0u32; BITS];
                for x in t.iter_mut() {
                    *x = rng.gen();
                }
                t
            })
            .collect::<Vec<[u32; BITS]>>();
        let n = tables.len();
        let mut by_pos = vec![0u32; BITS * n];
        for (t, table) in tables.iter().enumerate() {
            for (p, &x) in table.iter().enumerate() {
                by_pos[p * n + t] = x;
            }
        }
        Lsh { bands, rows, by_pos }
    }

    fn signature(&self, f: &Filter) -> Option<Vec<u64>> {
        if f.iter().all(|&w| w == 0) {
            return None;
        }
        let n = self.bands * self.rows;
        let mut mins = vec![u32::MAX; n];
        for (wi, &w) in f.iter().enumerate() {
            let mut w = w;
            while w != 0 {
                let p = wi * 64 + w.trailing_zeros() as usize;
                w &= w - 1;
                for (m, &x) in mins.iter_mut().zip(&self.by_pos[p * n..(p + 1) * n]) {
                    *m = (*m).min(x);
                }
            }
        }
        Some(
            (0..self.bands)
                .map(|b| {
                    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ b as u64;
                    for r in 0..self.rows {
                        h = (h ^ mins[b * self.rows + r] as u64).wrapping_mul(0x0100_0000_01b3);
                    }
                    h
                })
                .collect(),
        )
    }
}

/// Pairs above `threshold`, then a greedy one-to-one assignment by decreasing similarity (ties
/// by indices). Up to [`EXHAUSTIVE_PAIRS`] pairs every pair is compared (no pair is lost, and at
/// that size it is faster than hashing: 0.5 s against 1.6 s for FEBRL4's 25 M pairs here);
/// beyond, candidates come from MinHash LSH blocking ([`link_blocked`]). `None` rows are never
/// linked.
pub fn link(left: &[Option<Filter>], right: &[Option<Filter>], threshold: f64) -> Vec<Pair> {
    if (left.len() as u64) * (right.len() as u64) <= EXHAUSTIVE_PAIRS {
        return link_exhaustive(left, right, threshold);
    }
    link_blocked(left, right, threshold)
}

/// Candidate pairs above `threshold` from MinHash LSH blocking, then the greedy assignment.
///
/// Bucket by bucket: per band, the left and right rows with one band hash; every left × right
/// pair of a bucket is a candidate (skipped when the weights alone bound its Dice below the
/// threshold) and kept only from the FIRST band in which the two collide (their signatures
/// differ in every earlier band), so each pair is linked once. A bucket's right encodings are
/// copied together once for all its left rows (cache-friendly: the rows sharing a frequent
/// first name form large buckets).
pub fn link_blocked(left: &[Option<Filter>], right: &[Option<Filter>], threshold: f64) -> Vec<Pair> {
    let lsh = Lsh::for_threshold(threshold);
    let sigs = |side: &[Option<Filter>]| -> Vec<Option<Vec<u64>>> {
        side.par_iter()
            .map(|f| f.as_ref().and_then(|f| lsh.signature(f)))
            .collect()
    };
    let (lsig, rsig) = (sigs(left), sigs(right));
    let lw: Vec<u32> = left.par_iter().map(|f| f.as_ref().map_or(0, weight)).collect();
    let rw: Vec<u32> = right.par_iter().map(|f| f.as_ref().map_or(0, weight)).collect();
    // per band: band hash -> (left rows, right rows); only buckets with both sides are kept
    type Bucket = (Vec<u32>, Vec<u32>);
    let buckets: Vec<(usize, Bucket)> = (0..lsh.bands)
        .into_par_iter()
        .flat_map_iter(|b| {
            let mut m: std::collections::HashMap<u64, Bucket> = Default::default();
            for (j, s) in rsig.iter().enumerate() {
                if let Some(s) = s {
                    m.entry(s[b]).or_default().1.push(j as u32);
                }
            }
            for (i, s) in lsig.iter().enumerate() {
                if let Some(s) = s {
                    if let Some(e) = m.get_mut(&s[b]) {
                        e.0.push(i as u32);
                    }
                }
            }
            m.into_values().filter(|e| !e.0.is_empty()).map(move |e| (b, e))
        })
        .collect();
    let pairs: Vec<Pair> = buckets
        .par_iter()
        .flat_map_iter(|(b, (ls, rs))| {
            // the bucket's right encodings, copied together once for all its left rows
            let rows: Vec<(u32, Filter, u32)> = rs
                .iter()
                .filter_map(|&j| right[j as usize].map(|g| (j, g, rw[j as usize])))
                .collect();
            let mut out = Vec::new();
            for &i in ls {
                let (Some(f), Some(si)) = (left[i as usize].as_ref(), lsig[i as usize].as_deref()) else {
                    continue;
                };
                let wf = lw[i as usize];
                for (j, g, wg) in &rows {
                    if 2.0 * (wf.min(*wg) as f64) < threshold * (wf + wg) as f64 {
                        continue; // the weights alone keep the pair below the threshold
                    }
                    let d = dice_w(f, wf, g, *wg);
                    if d < threshold {
                        continue;
                    }
                    // scored once: in the first band in which the two collide
                    let sj = rsig[*j as usize].as_deref().expect("bucketed rows have signatures");
                    if si[..*b].iter().zip(&sj[..*b]).any(|(x, y)| x == y) {
                        continue;
                    }
                    out.push(Pair {
                        left: i,
                        right: *j,
                        similarity: d,
                    });
                }
            }
            out
        })
        .collect();
    greedy(pairs)
}

/// Every pair compared (no blocking), then the same greedy assignment: the baseline.
pub fn link_exhaustive(left: &[Option<Filter>], right: &[Option<Filter>], threshold: f64) -> Vec<Pair> {
    let rw: Vec<u32> = right.par_iter().map(|f| f.as_ref().map_or(0, weight)).collect();
    let pairs: Vec<Pair> = left
        .par_iter()
        .enumerate()
        .flat_map_iter(|(i, f)| {
            let mut out = Vec::new();
            if let Some(f) = f {
                let wf = weight(f);
                for (j, g) in right.iter().enumerate() {
                    if let Some(g) = g {
                        let d = dice_w(f, wf, g, rw[j]);
                        if d >= threshold && d > 0.0 {
                            out.push(Pair {
                                left: i as u32,
                                right: j as u32,
                                similarity: d,
                            });
                        }
                    }
                }
            }
            out
        })
        .collect();
    greedy(pairs)
}

/// Greedy one-to-one assignment by decreasing similarity (ties by indices), sorted by left index.
pub fn greedy_pairs(pairs: Vec<Pair>) -> Vec<Pair> {
    greedy(pairs)
}

fn greedy(mut pairs: Vec<Pair>) -> Vec<Pair> {
    pairs.par_sort_unstable_by(|a, b| {
        b.similarity
            .total_cmp(&a.similarity)
            .then(a.left.cmp(&b.left))
            .then(a.right.cmp(&b.right))
    });
    let (mut lu, mut ru) = (std::collections::HashSet::new(), std::collections::HashSet::new());
    let mut out = Vec::new();
    for p in pairs {
        if !lu.contains(&p.left) && !ru.contains(&p.right) {
            lu.insert(p.left);
            ru.insert(p.right);
            out.push(p);
        }
    }
    out.sort_by_key(|p| (p.left, p.right));
    out
}

/// Similarity measure of two encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// `2|A∩B| / (|A| + |B|)`.
    Dice,
    /// `|A∩B| / |A∪B|`.
    Jaccard,
}

impl Metric {
    pub fn parse(s: &str) -> Option<Metric> {
        match s {
            "dice" => Some(Metric::Dice),
            "jaccard" => Some(Metric::Jaccard),
            _ => None,
        }
    }
}

/// The similarity of two encodings with known weights (0 when both are empty).
#[inline]
pub fn score(a: &Filter, wa: u32, b: &Filter, wb: u32, m: Metric) -> f64 {
    let i = intersection(a, b);
    match m {
        Metric::Dice if wa + wb > 0 => 2.0 * i as f64 / (wa + wb) as f64,
        Metric::Jaccard if wa + wb > i => i as f64 / (wa + wb - i) as f64,
        _ => 0.0,
    }
}

/// One side of a field-level comparison: per field, per row, an encoding (or null) and its weight.
pub struct Fields {
    rows: usize,
    cells: Vec<Vec<Option<(Filter, u32)>>>,
}

impl Fields {
    /// `fields[f][row]`; every field must have the same number of rows.
    pub fn new(fields: Vec<Vec<Option<Filter>>>) -> Fields {
        let rows = fields.first().map_or(0, Vec::len);
        let cells = fields
            .into_iter()
            .map(|f| f.into_iter().map(|c| c.map(|c| (c, weight(&c)))).collect())
            .collect();
        Fields { rows, cells }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    fn field(&self, f: usize, i: usize) -> Option<&(Filter, u32)> {
        self.cells[f][i].as_ref().filter(|c| c.1 > 0)
    }
}

/// Weighted field-level similarity of row `i` of `l` and row `j` of `r`: `Σ w_f·s_f / Σ w_f`
/// over the fields present (non-null, non-empty) on both sides; `None` when there is none.
#[inline]
pub fn field_score(l: &Fields, i: usize, r: &Fields, j: usize, w: &[f64], m: Metric) -> Option<f64> {
    let (mut num, mut den) = (0.0, 0.0);
    for (f, &wf) in w.iter().enumerate() {
        if let (Some(a), Some(b)) = (l.field(f, i), r.field(f, j)) {
            num += wf * score(&a.0, a.1, &b.0, b.1, m);
            den += wf;
        }
    }
    (den > 0.0).then(|| num / den)
}

/// Every pair's similarity with `similarity >= threshold` (the whole matrix at 0), in
/// left-major order. Parallel over left rows.
pub fn matrix(l: &Fields, r: &Fields, w: &[f64], m: Metric, threshold: f64) -> Vec<Pair> {
    (0..l.rows())
        .into_par_iter()
        .flat_map_iter(|i| {
            let mut out = Vec::new();
            for j in 0..r.rows() {
                if let Some(s) = field_score(l, i, r, j, w, m) {
                    if s >= threshold {
                        out.push(Pair {
                            left: i as u32,
                            right: j as u32,
                            similarity: s,
                        });
                    }
                }
            }
            out
        })
        .collect()
}

/// The `k` most similar right rows of every left row (ties: lower right index first), with
/// `similarity >= threshold`, in left-major order, best first.
pub fn top_k(l: &Fields, r: &Fields, w: &[f64], m: Metric, k: usize, threshold: f64) -> Vec<Pair> {
    (0..l.rows())
        .into_par_iter()
        .flat_map_iter(|i| {
            // a bounded min-heap on (score, reversed index)
            let mut heap: std::collections::BinaryHeap<std::cmp::Reverse<(Ordered, std::cmp::Reverse<u32>)>> =
                std::collections::BinaryHeap::with_capacity(k + 1);
            for j in 0..r.rows() {
                if let Some(s) = field_score(l, i, r, j, w, m) {
                    if s >= threshold {
                        heap.push(std::cmp::Reverse((Ordered(s), std::cmp::Reverse(j as u32))));
                        if heap.len() > k {
                            heap.pop();
                        }
                    }
                }
            }
            let mut v: Vec<Pair> = heap
                .into_iter()
                .map(|std::cmp::Reverse((s, std::cmp::Reverse(j)))| Pair {
                    left: i as u32,
                    right: j,
                    similarity: s.0,
                })
                .collect();
            v.sort_by(|a, b| b.similarity.total_cmp(&a.similarity).then(a.right.cmp(&b.right)));
            v
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Ordered(f64);
impl Eq for Ordered {}
impl PartialOrd for Ordered {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Ordered {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&o.0)
    }
}

/// Pairs up to which [`link_fields`] compares every pair (no blocking, so no pair is lost).
pub const EXHAUSTIVE_PAIRS: u64 = 64_000_000;

/// Field-level linkage: weighted similarity of the fields (`field_score`, Dice), pairs with
/// `similarity >= threshold`, greedy one-to-one. Up to [`EXHAUSTIVE_PAIRS`] pairs every pair is
/// compared; beyond, candidates are the pairs that collide in a MinHash band of ANY field
/// (per-field LSH with 2-row bands: a pair whose best field has Dice ≥ 0.6 is missed with
/// probability < 10⁻⁴).
pub fn link_fields(l: &Fields, r: &Fields, w: &[f64], threshold: f64) -> Vec<Pair> {
    let m = Metric::Dice;
    if (l.rows() as u64) * (r.rows() as u64) <= EXHAUSTIVE_PAIRS {
        return greedy(matrix(l, r, w, m, threshold));
    }
    let lsh = Lsh::with(BLOCK_BANDS, 2);
    let nf = w.len();
    // per field, band → bucket → right rows
    let buckets: Vec<Vec<std::collections::HashMap<u64, Vec<u32>>>> = (0..nf)
        .map(|f| {
            let sigs: Vec<Option<Vec<u64>>> = (0..r.rows())
                .into_par_iter()
                .map(|j| r.field(f, j).and_then(|c| lsh.signature(&c.0)))
                .collect();
            let mut b: Vec<std::collections::HashMap<u64, Vec<u32>>> = vec![Default::default(); lsh.bands];
            for (j, s) in sigs.iter().enumerate() {
                if let Some(s) = s {
                    for (k, &h) in s.iter().enumerate() {
                        b[k].entry(h).or_default().push(j as u32);
                    }
                }
            }
            b
        })
        .collect();
    let pairs: Vec<Pair> = (0..l.rows())
        .collect::<Vec<_>>()
        .par_chunks(256)
        .flat_map_iter(|chunk| {
            let mut seen = vec![u32::MAX; r.rows()];
            let mut out = Vec::new();
            for &i in chunk {
                for (f, bf) in buckets.iter().enumerate() {
                    let Some(s) = l.field(f, i).and_then(|c| lsh.signature(&c.0)) else {
                        continue;
                    };
                    for (k, h) in s.iter().enumerate() {
                        let Some(v) = bf[k].get(h) else { continue };
                        for &j in v {
                            if seen[j as usize] == i as u32 {
                                continue;
                            }
                            seen[j as usize] = i as u32;
                            if let Some(sim) = field_score(l, i, r, j as usize, w, m) {
                                if sim >= threshold {
                                    out.push(Pair {
                                        left: i as u32,
                                        right: j,
                                        similarity: sim,
                                    });
                                }
                            }
                        }
                    }
                }
            }
            out
        })
        .collect();
    greedy(pairs)
}

/// Bands of the per-field blocking of [`link_fields`] (2 rows each): at Jaccard 0.43
/// (Dice 0.6) a pair misses all 48 bands with probability (1 − 0.43²)⁴⁸ < 10⁻⁴.
const BLOCK_BANDS: usize = 48;

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> DetKey {
        DetKey::from_bytes(&[7u8; 32])
    }

    #[test]
    fn similar_names_are_closer_than_different_ones() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let k = key();
        let a = encode(&k, "surname", "schmidt", &mut rng);
        let b = encode(&k, "surname", "schmitt", &mut rng);
        let c = encode(&k, "surname", "müller", &mut rng);
        let a2 = encode(&k, "surname", "schmidt", &mut rng);
        assert!(dice(&a, &a2) > 0.9, "{}", dice(&a, &a2));
        assert!(dice(&a, &b) > 0.5 && dice(&a, &b) < dice(&a, &a2));
        assert!(dice(&a, &c) < 0.3);
        assert_ne!(a, a2, "salt bits make equal values encode differently");
        assert_eq!(weight(&encode(&k, "surname", "", &mut rng)), 0);
    }

    #[test]
    fn a_constant_encodes_without_salt_bits_and_round_trips_as_bytes() {
        let k = key();
        let c = encode_constant(&k, "surname", "schmidt");
        assert_eq!(c, encode_constant(&k, "surname", "schmidt"));
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let row = encode(&k, "surname", "schmidt", &mut rng);
        assert!(weight(&row) > weight(&c) && weight(&row) <= weight(&c) + NOISE_BITS as u32);
        assert_eq!(combine(&[&row, &c]), row, "the row holds every bit of the constant");
        assert_eq!(from_bytes(&to_bytes(&c)), Some(c));
        assert_eq!(from_bytes(&[0u8; 3]), None);
    }

    #[test]
    fn sealing_hides_equal_encodings_and_round_trips() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let f = encode(&key(), "x", "anna", &mut rng);
        let (s1, s2) = ([1u8; 16], [2u8; 16]);
        assert_ne!(seal(&f, &s1), seal(&f, &s2));
        assert_eq!(unseal(&seal(&f, &s1), &s1), Some(f));
    }

    #[test]
    fn blocking_finds_what_the_exhaustive_search_finds() {
        let names = [
            "anna", "johann", "peter", "maria", "schmidt", "mueller", "weber", "wagner",
        ];
        let k = key();
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let left: Vec<Option<Filter>> = names.iter().map(|n| Some(encode(&k, "n", n, &mut rng))).collect();
        let typos = ["ana", "johan", "petr", "marie", "schmitt", "muller", "webr", "wagener"];
        let mut right: Vec<Option<Filter>> = typos.iter().map(|n| Some(encode(&k, "n", n, &mut rng))).collect();
        right.push(None);
        let a = link_blocked(&left, &right, 0.6);
        let b = link_exhaustive(&left, &right, 0.6);
        assert_eq!(a, b);
        assert!(a.iter().all(|p| p.left == p.right));
        assert!(a.len() >= 5);
    }
}
