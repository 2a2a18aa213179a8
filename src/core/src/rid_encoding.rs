//! A rid set's wire encoding: writing it (`RidSet::to_bytes`, the smaller of runs and Roaring),
//! reading it (`RidSet::from_bytes`), and checking it before it is materialised: [`cardinality`] reads how many
//! rids an encoding names from its runs (`0x01`) or from the descriptive headers of its Roaring
//! containers (`0x02`), without building a treemap, and refuses malformed or non-canonical
//! Roaring input (unsorted or repeated keys, empty bitmaps, run containers, trailing bytes) that
//! the Roaring decoder would otherwise accept into a set with broken invariants.
//!
//! The cost is linear in the encoding's length and allocates nothing, so a receiver can bound a
//! set (e.g. by the rows it has allocated) before it spends memory or time on it.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use roaring::RoaringTreemap;

use crate::error::{CoreError, Result};
use crate::rids::RidSet;
use crate::varint::{get_varint, put_varint};

/// Roaring's cookie for bitmaps without run containers (the only kind `RidSet` writes).
const COOKIE_NO_RUNS: u32 = 12346;
/// Roaring's cookie (low 16 bits) for bitmaps that may hold run containers.
const COOKIE_RUNS: u16 = 12347;
/// Containers of at most this many values are sorted `u16` arrays; larger ones 8 KiB bitmaps.
const ARRAY_LIMIT: u64 = 4096;
const BITMAP_BYTES: usize = 8192;

fn invalid(msg: impl Into<String>) -> CoreError {
    CoreError::InvalidRidSet(msg.into())
}

/// The number of rids a wire encoding (as from `RidSet::to_bytes`) names, computed without
/// materialising the set: exact for the run encoding; for Roaring, the count its container headers
/// claim, which the decoder then verifies against the containers (`RidSet::from_bytes` refuses a
/// mismatch). Errors on every malformed layout.
pub fn cardinality(b: &[u8]) -> Result<u64> {
    match b.split_first() {
        Some((1, rest)) => runs_cardinality(rest),
        Some((2, rest)) => roaring_cardinality(rest),
        Some((v, _)) => Err(invalid(format!("unknown rid set encoding {v}"))),
        None => Err(invalid("empty rid set encoding")),
    }
}

impl RidSet {
    pub fn to_bytes(&self) -> Vec<u8> {
        let roaring_size = self.0.serialized_size();
        let runs = self.runs();
        // varints: at most 10 bytes each, usually 1–3
        if runs.len() * 4 < roaring_size {
            let mut out = Vec::with_capacity(1 + runs.len() * 4);
            out.push(1u8);
            let mut prev_end: Option<u64> = None;
            for (start, end) in runs {
                let gap = match prev_end {
                    None => start,
                    Some(p) => start - p - 1,
                };
                put_varint(&mut out, gap);
                put_varint(&mut out, end - start);
                prev_end = Some(end);
            }
            if out.len() < roaring_size + 1 {
                return out;
            }
        }
        let mut out = Vec::with_capacity(1 + roaring_size);
        out.push(2u8);
        self.0.serialize_into(&mut out).expect("writing to a Vec cannot fail");
        out
    }

    /// Decode a wire encoding. Malformed and non-canonical Roaring input is refused first
    /// (see `rid_encoding::cardinality`, which also counts the rids without building the set).
    /// Unbounded: for untrusted input use `RidSet::from_bytes_bounded` (`rid_encoding`).
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        cardinality(b)?;
        match b.split_first() {
            Some((1, rest)) => {
                // short runs are gathered and appended in order (one container look-up per
                // batch, not per rid); long runs are inserted as ranges
                let mut t = RoaringTreemap::new();
                let mut short: Vec<u64> = Vec::new();
                let flush = |t: &mut RoaringTreemap, short: &mut Vec<u64>| -> Result<()> {
                    t.append(short.drain(..))
                        .map(|_| ())
                        .map_err(|_| CoreError::InvalidRidSet("rid runs are not increasing".into()))
                };
                for_each_run(rest, |start, end| {
                    if end - start < SHORT_RUN {
                        short.extend(start..=end);
                    } else {
                        flush(&mut t, &mut short)?;
                        t.insert_range(start..=end);
                    }
                    Ok(())
                })?;
                flush(&mut t, &mut short)?;
                Ok(RidSet(t))
            }
            Some((2, rest)) => RoaringTreemap::deserialize_from(rest)
                .map(RidSet)
                .map_err(|e| CoreError::InvalidRidSet(format!("cannot decode rid set: {e}"))),
            Some((v, _)) => Err(CoreError::InvalidRidSet(format!("unknown rid set encoding {v}"))),
            None => Err(CoreError::InvalidRidSet("empty rid set encoding".into())),
        }
    }

    pub fn to_base64(&self) -> String {
        B64.encode(self.to_bytes())
    }

    pub fn from_base64(s: &str) -> Result<Self> {
        let b = B64
            .decode(s)
            .map_err(|e| CoreError::InvalidRidSet(format!("rid set is not base64: {e}")))?;
        Self::from_bytes(&b)
    }

    /// BLAKE3 digest of the canonical encoding, hex: what the audit log records.
    pub fn digest_hex(&self) -> String {
        blake3::hash(&self.to_bytes()).to_hex().to_string()
    }
    /// [`RidSet::from_bytes`] for untrusted input: refuses an encoding that names more than
    /// `max_rids` rids before building anything (7 bytes can name 2^33 rids, a gigabyte of
    /// treemap).
    pub fn from_bytes_bounded(b: &[u8], max_rids: u64) -> Result<RidSet> {
        let n = cardinality(b)?;
        if n > max_rids {
            return Err(invalid(format!(
                "the rid set names {n} rids, more than the {max_rids} accepted here"
            )));
        }
        RidSet::from_bytes(b)
    }

    /// [`RidSet::from_base64`] for untrusted input, bounded as [`RidSet::from_bytes_bounded`].
    pub fn from_base64_bounded(s: &str, max_rids: u64) -> Result<RidSet> {
        use base64::Engine;
        let b = base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|e| invalid(format!("rid set is not base64: {e}")))?;
        RidSet::from_bytes_bounded(&b, max_rids)
    }
}

/// Visit the runs of a `0x01` encoding (after the tag) as inclusive `(start, end)` pairs: (gap,
/// run length − 1) varint pairs, so runs are disjoint and increasing by construction.
pub(crate) fn for_each_run(mut rest: &[u8], mut f: impl FnMut(u64, u64) -> Result<()>) -> Result<()> {
    let overflow = || invalid("rid set runs overflow 64 bits");
    let mut prev_end: Option<u64> = None;
    while !rest.is_empty() {
        let gap = get_varint(&mut rest)?;
        let len = get_varint(&mut rest)?;
        let start = match prev_end {
            None => gap,
            Some(p) => p.checked_add(1).and_then(|n| n.checked_add(gap)).ok_or_else(overflow)?,
        };
        let end = start.checked_add(len).ok_or_else(overflow)?;
        f(start, end)?;
        prev_end = Some(end);
    }
    Ok(())
}

fn runs_cardinality(rest: &[u8]) -> Result<u64> {
    let mut total: u64 = 0;
    for_each_run(rest, |start, end| {
        // a run of end − start + 1 rids; the whole 64-bit space (2^64 rids) does not fit a u64
        total = total
            .checked_add(end - start)
            .and_then(|t| t.checked_add(1))
            .ok_or_else(|| invalid("rid set names more than 2^64 − 1 rids"))?;
        Ok(())
    })?;
    Ok(total)
}

/// A cursor over the encoding that fails with a clear error instead of reading past the end.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(invalid("truncated Roaring rid set"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    pub(crate) fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(crate) fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
}

/// `0x02`: a serialized `RoaringTreemap` — u64 bitmap count, then per bitmap its high 32 bits and
/// a Roaring bitmap (cookie, container count, (key, cardinality − 1) pairs, offsets, containers).
fn roaring_cardinality(rest: &[u8]) -> Result<u64> {
    let mut r = Reader(rest);
    let bitmaps = r.u64()?;
    let mut total: u64 = 0;
    let mut prev_high: Option<u32> = None;
    for _ in 0..bitmaps {
        let high = r.u32()?;
        if prev_high.is_some_and(|p| high <= p) {
            return Err(invalid("Roaring rid set bitmaps are not in increasing order"));
        }
        prev_high = Some(high);
        total = total
            .checked_add(bitmap_cardinality(&mut r)?)
            .ok_or_else(|| invalid("rid set names more than 2^64 − 1 rids"))?;
    }
    if !r.0.is_empty() {
        return Err(invalid(format!(
            "{} trailing bytes after the Roaring rid set",
            r.0.len()
        )));
    }
    Ok(total)
}

fn bitmap_cardinality(r: &mut Reader<'_>) -> Result<u64> {
    let cookie = r.u32()?;
    if cookie as u16 == COOKIE_RUNS {
        return Err(invalid("Roaring run containers are not accepted in rid sets"));
    }
    if cookie != COOKIE_NO_RUNS {
        return Err(invalid("unknown Roaring cookie in rid set"));
    }
    let size = r.u32()? as usize;
    if size == 0 || size > 1 << 16 {
        return Err(invalid(format!(
            "a Roaring bitmap of the rid set has {size} containers"
        )));
    }
    let descriptions = r.take(size * 4)?;
    r.take(size * 4)?; // offsets: not needed to read the containers in order
    let mut total = 0u64;
    let mut prev_key: Option<u16> = None;
    for d in descriptions.chunks_exact(4) {
        let key = u16::from_le_bytes([d[0], d[1]]);
        if prev_key.is_some_and(|p| key <= p) {
            return Err(invalid("Roaring rid set containers are not in increasing order"));
        }
        prev_key = Some(key);
        let card = u64::from(u16::from_le_bytes([d[2], d[3]])) + 1;
        let bytes = if card <= ARRAY_LIMIT {
            card as usize * 2
        } else {
            BITMAP_BYTES
        };
        r.take(bytes)?;
        total += card;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_without_materialising() {
        let sets = [
            RidSet::from_sorted(&(1_000..1_000_000).collect::<Vec<u64>>()),
            RidSet::from_sorted(&(0..1_000_000).step_by(2).collect::<Vec<u64>>()),
            RidSet::from_unsorted(&[0, 3, 1 << 40, u64::MAX]),
        ];
        for s in &sets {
            assert_eq!(cardinality(&s.to_bytes()).unwrap(), s.len());
        }
        // 7 bytes naming 2^33 rids: counted from the run, nothing built
        let mut b = vec![1u8, 0];
        let mut len = (1u64 << 33) - 1;
        while len >= 0x80 {
            b.push((len as u8) | 0x80);
            len >>= 7;
        }
        b.push(len as u8);
        assert_eq!(cardinality(&b).unwrap(), 1 << 33);
        let e = RidSet::from_bytes_bounded(&b, 1 << 20).unwrap_err().to_string();
        assert!(e.contains("names 8589934592 rids"), "{e}");
        let small = RidSet::from_unsorted(&[5, 9]);
        assert_eq!(RidSet::from_base64_bounded(&small.to_base64(), 2).unwrap(), small);
        assert!(RidSet::from_base64_bounded(&small.to_base64(), 1).is_err());
    }

    #[test]
    fn refuses_what_roaring_would_misread() {
        let s = RidSet::from_unsorted(&[1, 2, 70_000, 1 << 33]);
        let good = s.to_bytes();
        assert!(cardinality(&good).is_ok());
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(cardinality(&trailing).is_err());
        assert!(cardinality(&good[..good.len() - 1]).is_err());
        // two bitmaps with the same high key
        let mut dup = vec![2u8];
        dup.extend_from_slice(&2u64.to_le_bytes());
        for _ in 0..2 {
            dup.extend_from_slice(&0u32.to_le_bytes());
            dup.extend_from_slice(&COOKIE_NO_RUNS.to_le_bytes());
            dup.extend_from_slice(&1u32.to_le_bytes());
            dup.extend_from_slice(&[0, 0, 0, 0]); // key 0, cardinality 1
            dup.extend_from_slice(&[0, 0, 0, 0]); // offset
            dup.extend_from_slice(&[5, 0]); // value 5
        }
        assert!(RidSet::from_bytes(&dup).is_err());
        // a full u64 space is 2^64 rids
        assert!(cardinality(&[1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]).is_err());
    }
}

/// Runs shorter than this are decoded rid by rid (appended in order), longer ones as ranges.
const SHORT_RUN: u64 = 64;
