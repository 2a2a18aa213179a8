//! Sets of row ids, encoded compactly for the wire.
//!
//! Two encodings, the smaller is chosen when encoding: `0x01` followed by LEB128 varint pairs
//! (gap since the end of the previous run, run length − 1) — a few bytes for long runs, the
//! common case after a filter — or `0x02` followed by a serialized Roaring treemap (about one
//! bit per row for dense, scattered sets).

use roaring::RoaringTreemap;

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
