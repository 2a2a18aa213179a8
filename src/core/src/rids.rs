//! Sets of row ids, encoded compactly for the wire.
//!
//! Two encodings, the smaller is chosen when encoding: `0x01` followed by LEB128 varint pairs
//! (gap since the end of the previous run, run length − 1) — a few bytes for long runs, the
//! common case after a filter — or `0x02` followed by a serialized Roaring treemap (about one
//! bit per row for dense, scattered sets).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use roaring::RoaringTreemap;

use crate::error::{CoreError, Result};

/// A set of row ids.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RidSet(pub RoaringTreemap);

impl RidSet {
    pub fn new() -> Self {
        RidSet(RoaringTreemap::new())
    }

    /// Build from rids in any order (duplicates collapse).
    pub fn from_unsorted(rids: &[u64]) -> Self {
        let mut v = rids.to_vec();
        v.sort_unstable();
        Self::from_sorted(&v)
    }

    /// Build from sorted rids (duplicates allowed).
    pub fn from_sorted(rids: &[u64]) -> Self {
        let mut t = RoaringTreemap::new();
        let mut i = 0;
        // append runs as ranges: the common case after a filter is long runs.
        while i < rids.len() {
            let start = rids[i];
            let mut end = start;
            let mut j = i + 1;
            while j < rids.len() && (rids[j] == end || rids[j] == end + 1) {
                end = rids[j];
                j += 1;
            }
            t.insert_range(start..=end);
            i = j;
        }
        RidSet(t)
    }

    pub fn len(&self) -> u64 {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn to_vec(&self) -> Vec<u64> {
        self.0.iter().collect()
    }

    /// Maximal runs of consecutive rids, as inclusive (start, end) pairs (from the 2^16-rid
    /// blocks, not rid by rid: see `rid_blocks`).
    pub fn runs(&self) -> Vec<(u64, u64)> {
        crate::rid_blocks::runs(self)
    }

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
        crate::rid_encoding::cardinality(b)?;
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
                crate::rid_encoding::for_each_run(rest, |start, end| {
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
}

/// Runs shorter than this are decoded rid by rid (appended in order), longer ones as ranges.
const SHORT_RUN: u64 = 64;

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn get_varint(b: &mut &[u8]) -> Result<u64> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = b
            .split_first()
            .ok_or_else(|| CoreError::InvalidRidSet("truncated rid set".into()))?;
        *b = rest;
        v |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(CoreError::InvalidRidSet("varint longer than 64 bits".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_encodings_with_short_and_long_runs_decode_exactly() {
        // singletons, short runs, a long run, short runs across a 2^32 boundary, another long one
        let mut rids: Vec<u64> = vec![1, 3, 5, 6, 7, 100];
        rids.extend(200..200 + 5_000);
        rids.extend([9_000, 9_002, (1 << 32) - 2, (1 << 32) - 1, 1 << 32, (1 << 32) + 9]);
        rids.extend((1 << 33)..(1 << 33) + 70);
        rids.push((1 << 33) + 200);
        let s = RidSet::from_sorted(&rids);
        let b = s.to_bytes();
        assert_eq!(b[0], 1, "this set is run-encoded");
        let back = RidSet::from_bytes(&b).unwrap();
        assert_eq!(back.0.iter().collect::<Vec<_>>(), rids);
    }

    #[test]
    fn round_trips_compactly() {
        let rids: Vec<u64> = (1_000..1_000_000).collect();
        let s = RidSet::from_sorted(&rids);
        let b = s.to_bytes();
        assert!(b.len() < 10_000, "a run of a million rids encodes in {} bytes", b.len());
        let back = RidSet::from_bytes(&b).unwrap();
        assert_eq!(back.len(), rids.len() as u64);
        assert_eq!(back, s);
        let scattered = RidSet::from_unsorted(&[9, 3, 3, 1 << 40, 7]);
        assert_eq!(scattered.to_vec(), vec![3, 7, 9, 1 << 40]);
        assert_eq!(RidSet::from_base64(&scattered.to_base64()).unwrap(), scattered);
        // dense and scattered: every other rid of a million
        let dense: Vec<u64> = (0..1_000_000).step_by(2).collect();
        let d = RidSet::from_sorted(&dense);
        assert_eq!(d.to_bytes()[0], 2, "roaring wins for scattered dense sets");
        assert_eq!(RidSet::from_bytes(&d.to_bytes()).unwrap(), d);
        let max = RidSet::from_unsorted(&[0, u64::MAX]);
        assert_eq!(RidSet::from_bytes(&max.to_bytes()).unwrap(), max);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(RidSet::from_bytes(&[1, 2, 0x80]).is_err());
        assert!(RidSet::from_bytes(&[2, 2, 3]).is_err());
        assert!(RidSet::from_bytes(&[]).is_err());
        assert!(RidSet::from_bytes(&[9]).is_err());
        assert!(RidSet::from_base64("!!!").is_err());
    }
}
