//! Sets of row ids, encoded compactly (a serialized Roaring treemap) for the wire.

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

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.0.serialized_size());
        self.0.serialize_into(&mut out).expect("writing to a Vec cannot fail");
        out
    }

    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        RoaringTreemap::deserialize_from(b)
            .map(RidSet)
            .map_err(|e| CoreError::InvalidRidSet(format!("cannot decode rid set: {e}")))
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

#[cfg(test)]
mod tests {
    use super::*;

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
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(RidSet::from_bytes(&[1, 2, 3]).is_err());
        assert!(RidSet::from_base64("!!!").is_err());
    }
}
