//! The `search` facet: prefix, suffix and substring search of text against constants,
//! pattern-free at rest (the way the `match` facet is, `det.rs`).
//!
//! The owner declares prefix lengths `P`, suffix lengths `S`, a substring (q-gram) length `q`
//! and a maximum length `m` (characters). With the column's search key `k_s` (HKDF of the
//! column root key, label `search/`):
//!
//! - `piece(kind, n, t) = HMAC-SHA256(k_s, "ghostpii/search/v1" ‖ kind ‖ n ‖ t)[..16]`: a keyed
//!   deterministic tag of a piece `t` of `n` characters, separated per kind (prefix, suffix,
//!   substring) and length;
//! - a row with rid `r` stores one binary cell of `(|P| + |S| + (m − q + 1)) · 8` bytes:
//!   for each declared prefix length `L`, `AES_{piece(prefix, L, v[..L])}(D ‖ prefix ‖ L ‖ r)[..8]`,
//!   the same for suffixes, and for each position `p` of a q-gram of `v`,
//!   `AES_{piece(substring, q, v[p..p+q])}(D ‖ substring ‖ p ‖ r)[..8]`. Slots the value is too short
//!   to fill hold random bytes (so the cell shows neither the value's length nor which slots
//!   are real). Values longer than `m` characters are refused at encryption.
//!
//! Every tag depends on the row id (and a substring tag on its position), so equal values,
//! equal prefixes and repeated q-grams give unrelated bytes at rest.
//!
//! A *search token* for a constant `c` holds the pieces the query needs: `piece(prefix, |c|, c)`
//! for `starts_with`, `piece(suffix, |c|, c)` for `ends_with`, the `|c| − q + 1` q-gram pieces of
//! `c` for `contains` (and for a `starts_with` whose length is not a declared prefix length,
//! anchored at position 0). With it one recomputes the tags of those pieces for any rid and
//! position and compares them with the stored ones (constant time per tag); a row contains `c`
//! iff for some position `p` every q-gram `i` of `c` is found at `p + i`, which is exactly
//! substring containment for `|c| ≥ q`.
//!
//! Leakage of a token (docs/threat-model.md): which rows start / end with / contain `c`; for a
//! substring token also, in every row, the positions at which each q-gram of `c` occurs.

use aes::cipher::{generic_array::GenericArray, BlockEncrypt, KeyInit};
use aes::Aes128;
use hmac::{Hmac, Mac};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::det::DetKey;
use crate::error::{CoreError, Result};

/// Bytes of one stored tag.
pub const TAG_LEN: usize = 8;
/// Largest declared length (prefix, suffix, q-gram) and largest `max_length`.
pub const MAX_PIECE: u32 = 64;
pub const MAX_LENGTH: u32 = 1024;
const TOKEN_VERSION: u8 = 1;
const BINDING_TAG: usize = 8;
const PIECE: usize = 16;
const PAR_CHUNK: usize = 1 << 12;

/// The declared shape of a `search` facet (column metadata).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchParams {
    /// Prefix lengths (characters), ascending, distinct.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefix: Vec<u32>,
    /// Suffix lengths (characters), ascending, distinct.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suffix: Vec<u32>,
    /// q-gram length of substring search.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub substring: Option<u32>,
    /// Longest value (characters); longer values are refused at encryption.
    pub max_length: u32,
}

impl SearchParams {
    /// Check the declared shape (lengths in 1..=64, ascending and distinct, `q ≤ max_length`).
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(CoreError::InvalidMetadata(m));
        for (name, v) in [("prefix", &self.prefix), ("suffix", &self.suffix)] {
            if v.iter().any(|&l| l == 0 || l > MAX_PIECE) {
                return bad(format!("{name} lengths must be in 1..={MAX_PIECE}, got {v:?}"));
            }
            if v.windows(2).any(|w| w[0] >= w[1]) {
                return bad(format!("{name} lengths must be ascending and distinct, got {v:?}"));
            }
        }
        if self.max_length == 0 || self.max_length > MAX_LENGTH {
            return bad(format!(
                "max_length must be in 1..={MAX_LENGTH}, got {}",
                self.max_length
            ));
        }
        if let Some(q) = self.substring {
            if q == 0 || q > MAX_PIECE || q > self.max_length {
                return bad(format!(
                    "substring (q-gram length) must be in 1..={MAX_PIECE} and at most max_length, got {q}"
                ));
            }
        }
        if self.prefix.is_empty() && self.suffix.is_empty() && self.substring.is_none() {
            return bad("the search facet needs prefix, suffix or substring lengths".into());
        }
        Ok(())
    }

    /// Number of substring positions stored per row.
    pub fn positions(&self) -> usize {
        self.substring.map_or(0, |q| (self.max_length - q + 1) as usize)
    }

    /// Tags stored per row.
    pub fn slots(&self) -> usize {
        self.prefix.len() + self.suffix.len() + self.positions()
    }

    /// Bytes of a stored cell.
    pub fn cell_len(&self) -> usize {
        self.slots() * TAG_LEN
    }
}

/// What a token searches for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Prefix,
    Suffix,
    Substring,
}

impl Kind {
    fn byte(self) -> u8 {
        match self {
            Kind::Prefix => 1,
            Kind::Suffix => 2,
            Kind::Substring => 3,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Prefix => "prefix",
            Kind::Suffix => "suffix",
            Kind::Substring => "substring",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "prefix" => Some(Kind::Prefix),
            "suffix" => Some(Kind::Suffix),
            "substring" => Some(Kind::Substring),
            _ => None,
        }
    }

    fn from_byte(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Prefix),
            2 => Some(Kind::Suffix),
            3 => Some(Kind::Substring),
            _ => None,
        }
    }
}

type Block = GenericArray<u8, aes::cipher::consts::U16>;

fn block(kind: Kind, slot: u32, rid: u64) -> Block {
    let mut b = [0u8; 16];
    b[..3].copy_from_slice(b"gps");
    b[3] = kind.byte();
    b[4..8].copy_from_slice(&slot.to_le_bytes());
    b[8..].copy_from_slice(&rid.to_le_bytes());
    GenericArray::from(b)
}

fn mac(key: &DetKey) -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(key.expose_bytes()).expect("HMAC takes any key length")
}

fn piece(base: &Hmac<Sha256>, kind: Kind, n: u32, text: &str) -> [u8; PIECE] {
    let mut m = base.clone();
    m.update(b"ghostpii/search/v1");
    m.update(&[kind.byte()]);
    m.update(&n.to_le_bytes());
    m.update(text.as_bytes());
    let full = m.finalize().into_bytes();
    let mut out = [0u8; PIECE];
    out.copy_from_slice(&full[..PIECE]);
    out
}

fn tag(piece: &[u8; PIECE], kind: Kind, slot: u32, rid: u64) -> [u8; TAG_LEN] {
    let c = Aes128::new(GenericArray::from_slice(piece));
    let mut b = block(kind, slot, rid);
    c.encrypt_block(&mut b);
    let mut t = [0u8; TAG_LEN];
    t.copy_from_slice(&b[..TAG_LEN]);
    b.as_mut_slice().zeroize();
    t
}

/// Byte offsets of the `i`-th character boundaries of `s` (`len + 1` entries).
fn boundaries(s: &str) -> Vec<usize> {
    s.char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(s.len()))
        .collect()
}

fn cell(base: &Hmac<Sha256>, p: &SearchParams, rid: u64, v: &str, rng: &mut impl RngCore) -> Vec<u8> {
    let b = boundaries(v);
    let n = b.len() - 1;
    let mut out = vec![0u8; p.cell_len()];
    let mut at = 0;
    let mut put = |slot_tag: Option<[u8; TAG_LEN]>, out: &mut Vec<u8>, rng: &mut dyn RngCore| {
        match slot_tag {
            Some(t) => out[at..at + TAG_LEN].copy_from_slice(&t),
            None => rng.fill_bytes(&mut out[at..at + TAG_LEN]),
        }
        at += TAG_LEN;
    };
    for &l in &p.prefix {
        let t = (l as usize <= n).then(|| {
            let mut pc = piece(base, Kind::Prefix, l, &v[..b[l as usize]]);
            let t = tag(&pc, Kind::Prefix, l, rid);
            pc.zeroize();
            t
        });
        put(t, &mut out, rng);
    }
    for &l in &p.suffix {
        let t = (l as usize <= n).then(|| {
            let mut pc = piece(base, Kind::Suffix, l, &v[b[n - l as usize]..]);
            let t = tag(&pc, Kind::Suffix, l, rid);
            pc.zeroize();
            t
        });
        put(t, &mut out, rng);
    }
    if let Some(q) = p.substring {
        let q = q as usize;
        for pos in 0..p.positions() {
            let t = (pos + q <= n).then(|| {
                let mut pc = piece(base, Kind::Substring, q as u32, &v[b[pos]..b[pos + q]]);
                let t = tag(&pc, Kind::Substring, pos as u32, rid);
                pc.zeroize();
                t
            });
            put(t, &mut out, rng);
        }
    }
    out
}

/// The stored cells of many rows (nulls stay `None`), in parallel. `Err(i)`: the value at
/// index `i` is longer than `max_length` characters.
pub fn encrypt_many(
    key: &DetKey,
    p: &SearchParams,
    rids: &[u64],
    values: &[Option<&str>],
) -> std::result::Result<Vec<Option<Vec<u8>>>, usize> {
    if let Some(i) = values
        .iter()
        .position(|v| v.is_some_and(|t| t.chars().count() > p.max_length as usize))
    {
        return Err(i);
    }
    let base = mac(key);
    Ok(rids
        .par_chunks(PAR_CHUNK)
        .zip(values.par_chunks(PAR_CHUNK))
        .flat_map_iter(|(rs, vs)| {
            let mut rng = ChaCha20Rng::from_rng(rand::rngs::OsRng).expect("OS randomness");
            rs.iter()
                .zip(vs)
                .map(|(&r, v)| v.map(|t| cell(&base, p, r, t, &mut rng)))
                .collect::<Vec<_>>()
        })
        .collect())
}

/// A short tag binding search tokens to one column epoch.
fn binding_tag(binding: &str) -> [u8; BINDING_TAG] {
    let h = Sha256::digest(format!("ghostpii/search/v1|{binding}").as_bytes());
    let mut t = [0u8; BINDING_TAG];
    t.copy_from_slice(&h[..BINDING_TAG]);
    t
}

/// The pieces a query of `kind` for `c` needs: `c` itself for prefix and suffix, its q-grams
/// (in order) for substring. `None` when `c` is empty or shorter than `q`.
pub fn query_pieces(kind: Kind, q: u32, c: &str) -> Option<(u32, Vec<&str>)> {
    let b = boundaries(c);
    let n = b.len() - 1;
    match kind {
        Kind::Prefix | Kind::Suffix => (n > 0).then(|| (n as u32, vec![c])),
        Kind::Substring => {
            let q = q as usize;
            (q > 0 && n >= q).then(|| (q as u32, (0..=n - q).map(|i| &c[b[i]..b[i + q]]).collect()))
        }
    }
}

/// The search token of constant `c` for the column epoch bound by `binding` (keyhost side).
/// `q` is the column's q-gram length (substring only). `None` as for [`query_pieces`].
pub fn token(key: &DetKey, binding: &str, kind: Kind, q: u32, c: &str) -> Option<Vec<u8>> {
    let (n, pieces) = query_pieces(kind, q, c)?;
    let base = mac(key);
    let mut out = Vec::with_capacity(1 + BINDING_TAG + 1 + 4 + 4 + PIECE * pieces.len());
    out.push(TOKEN_VERSION);
    out.extend_from_slice(&binding_tag(binding));
    out.push(kind.byte());
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(&(pieces.len() as u32).to_le_bytes());
    for t in pieces {
        let mut pc = piece(&base, kind, n, t);
        out.extend_from_slice(&pc);
        pc.zeroize();
    }
    Some(out)
}

/// A parsed search token: recomputes the tags of its pieces for any rid and slot.
pub struct SearchToken {
    kind: Kind,
    n: u32,
    pieces: Vec<Aes128>,
}

impl SearchToken {
    /// Parse a token issued for the column epoch bound by `binding`.
    pub fn parse(bytes: &[u8], binding: &str) -> Result<Self> {
        let bad = || CoreError::InvalidKey("not a ghostpii search token".into());
        let head = 1 + BINDING_TAG + 1 + 8;
        if bytes.len() < head || bytes[0] != TOKEN_VERSION {
            return Err(bad());
        }
        if !bool::from(bytes[1..1 + BINDING_TAG].ct_eq(&binding_tag(binding))) {
            return Err(CoreError::InvalidKey(
                "the search token was issued for another column or key epoch".into(),
            ));
        }
        let kind = Kind::from_byte(bytes[1 + BINDING_TAG]).ok_or_else(bad)?;
        let at = 2 + BINDING_TAG;
        let n = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let count = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes")) as usize;
        if bytes.len() != head + PIECE * count || count == 0 {
            return Err(bad());
        }
        let pieces = bytes[head..]
            .chunks_exact(PIECE)
            .map(|p| Aes128::new(GenericArray::from_slice(p)))
            .collect();
        Ok(SearchToken { kind, n, pieces })
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Characters of the queried piece (prefix/suffix), or q (substring).
    pub fn length(&self) -> u32 {
        self.n
    }

    fn tag(&self, i: usize, slot: u32, rid: u64) -> [u8; TAG_LEN] {
        let mut b = block(self.kind, slot, rid);
        self.pieces[i].encrypt_block(&mut b);
        let mut t = [0u8; TAG_LEN];
        t.copy_from_slice(&b[..TAG_LEN]);
        t
    }

    /// Whether the row (`rid`, stored `cell` of a column with shape `p`) matches. `anchored`:
    /// a substring token that must match at position 0 (a `starts_with` through q-grams).
    /// `None` when the token does not fit the column's shape (undeclared length, other q).
    pub fn matches(&self, p: &SearchParams, rid: u64, cell: &[u8], anchored: bool) -> Option<bool> {
        if cell.len() != p.cell_len() {
            return Some(false);
        }
        let eq = |slot_index: usize, t: &[u8; TAG_LEN]| -> bool {
            bool::from(t.ct_eq(&cell[slot_index * TAG_LEN..(slot_index + 1) * TAG_LEN]))
        };
        match self.kind {
            Kind::Prefix => {
                let i = p.prefix.iter().position(|&l| l == self.n)?;
                Some(eq(i, &self.tag(0, self.n, rid)))
            }
            Kind::Suffix => {
                let i = p.suffix.iter().position(|&l| l == self.n)?;
                Some(eq(p.prefix.len() + i, &self.tag(0, self.n, rid)))
            }
            Kind::Substring => {
                if p.substring != Some(self.n) {
                    return None;
                }
                let base = p.prefix.len() + p.suffix.len();
                let positions = p.positions();
                let g = self.pieces.len();
                if g > positions {
                    return Some(false);
                }
                let starts = if anchored { 1 } else { positions - g + 1 };
                // hits[i][pos]: q-gram i of the constant is stored at `pos`
                let mut found = false;
                let hits: Vec<Vec<bool>> = (0..g)
                    .map(|i| {
                        (0..positions)
                            .map(|pos| eq(base + pos, &self.tag(i, pos as u32, rid)))
                            .collect()
                    })
                    .collect();
                for s in 0..starts {
                    let mut all = true;
                    for (i, h) in hits.iter().enumerate() {
                        all &= h[s + i];
                    }
                    found |= all;
                }
                Some(found)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> DetKey {
        DetKey::from_bytes(&[9u8; 32])
    }

    fn params() -> SearchParams {
        SearchParams {
            prefix: vec![1, 2, 3],
            suffix: vec![2],
            substring: Some(3),
            max_length: 12,
        }
    }

    fn run(kind: Kind, c: &str, values: &[&str], anchored: bool) -> Vec<bool> {
        let p = params();
        let rids: Vec<u64> = (100..100 + values.len() as u64).collect();
        let vals: Vec<Option<&str>> = values.iter().map(|v| Some(*v)).collect();
        let cells = encrypt_many(&key(), &p, &rids, &vals).unwrap();
        let t = SearchToken::parse(&token(&key(), "1/2/0", kind, 3, c).unwrap(), "1/2/0").unwrap();
        rids.iter()
            .zip(&cells)
            .map(|(&r, cl)| t.matches(&p, r, cl.as_ref().unwrap(), anchored).unwrap())
            .collect()
    }

    #[test]
    fn answers_equal_plaintext_string_functions() {
        let values = [
            "anna", "annabel", "hannah", "an", "", "joanna", "nanna", "banana", "ännä", "xannx",
        ];
        for c in ["a", "an", "ann", "nna"] {
            let want: Vec<bool> = values.iter().map(|v| v.starts_with(c)).collect();
            if c.chars().count() <= 3 {
                assert_eq!(run(Kind::Prefix, c, &values, false), want, "prefix {c}");
            }
        }
        for c in ["ann", "anna", "nan", "banana", "nna", "xyz", "annabell"] {
            let want: Vec<bool> = values.iter().map(|v| v.contains(c)).collect();
            assert_eq!(run(Kind::Substring, c, &values, false), want, "contains {c}");
            let want: Vec<bool> = values.iter().map(|v| v.starts_with(c)).collect();
            assert_eq!(run(Kind::Substring, c, &values, true), want, "anchored {c}");
        }
        let want: Vec<bool> = values.iter().map(|v| v.ends_with("na")).collect();
        assert_eq!(run(Kind::Suffix, "na", &values, false), want);
    }

    #[test]
    fn cells_are_pattern_free_and_fixed_size() {
        let p = params();
        let cells = encrypt_many(&key(), &p, &[1, 2], &[Some("anna"), Some("anna")]).unwrap();
        let (a, b) = (cells[0].as_ref().unwrap(), cells[1].as_ref().unwrap());
        assert_eq!(a.len(), p.cell_len());
        assert!(a.chunks(TAG_LEN).zip(b.chunks(TAG_LEN)).all(|(x, y)| x != y));
        let short = encrypt_many(&key(), &p, &[3], &[Some("a")]).unwrap();
        assert_eq!(short[0].as_ref().unwrap().len(), p.cell_len());
        assert_eq!(encrypt_many(&key(), &p, &[4], &[Some("abcdefghijklm")]), Err(0));
    }

    #[test]
    fn tokens_are_bound_to_their_column_and_shape() {
        let t = token(&key(), "1/2/0", Kind::Prefix, 3, "an").unwrap();
        assert!(SearchToken::parse(&t, "1/3/0").is_err());
        let t = SearchToken::parse(&t, "1/2/0").unwrap();
        let p = SearchParams {
            prefix: vec![1],
            ..params()
        };
        assert_eq!(t.matches(&p, 1, &vec![0; p.cell_len()], false), None);
        assert!(token(&key(), "b", Kind::Substring, 3, "ab").is_none());
    }
}
