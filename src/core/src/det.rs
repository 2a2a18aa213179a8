//! The `match` and `group` facets: deterministic tags (DET) that never appear at rest.
//!
//! `DET_k(v) = HMAC-SHA256(k, canonical(v))`, truncated to 128 bits, where `canonical(v)` is
//! `0x01 ‖ UTF-8 bytes` for text and `0x02 ‖ i64 LE` for integers and dates (stored integers).
//!
//! - **match** (per column key `k_m`): a row stores `tag = AES_{DET_{k_m}(v)}(D_m ‖ rid)[..8]`.
//!   Equal values give unrelated tags in every row. A *match token* for a constant `c` is
//!   `DET_{k_m}(c)`; with it one recomputes the tag of `c` for each row's rid and compares
//!   (constant time). A token answers only its constant: for another value `v ≠ c` the tag is
//!   an AES output under an unrelated key (false positives 2^-64 per row and token).
//! - **group** (DET key `k_g` of the column's join domain, or of the column alone; pad key
//!   `k_p` of the column): a row stores `DET_{k_g}(v) ⊕ AES_{k_p}(D_g ‖ rid)`. The keyhost
//!   hands out the pads of requested rids only; `cell ⊕ pad` is `DET_{k_g}(v)`, equal for equal
//!   values in every column of the join domain. Pseudonyms shown to Polars are
//!   `AES_q(DET_{k_g}(v))` under a process-local random key `q` (see [`PseudonymKey`]).
//!
//! Keys: the match key and the pad keys derive from the column's root key; the group DET key
//! and the CLK key (`clk.rs`) from a join domain's root key ([`domain_keys`]), or from the
//! column's root key when it has no join domain, so columns outside a shared domain never
//! produce equal pseudonyms.

use aes::cipher::{generic_array::GenericArray, BlockEncrypt, KeyInit};
use aes::Aes128;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::{CoreError, Result};
use crate::keys::RootKey;

/// Bytes of a stored match tag.
pub const TAG_LEN: usize = 8;
/// Bytes of a stored group cell, and of a pad.
pub const GROUP_LEN: usize = 16;
const DOMAIN_MATCH: u64 = 0x6770_6d61_7400_0001; // "gpmat" v1
const DOMAIN_GROUP: u64 = 0x6770_6772_7000_0001; // "gpgrp" v1
const DOMAIN_FUZZY: u64 = 0x6770_667a_7a00_0001; // "gpfzz" v1
const TOKEN_VERSION: u8 = 1;
const BINDING_TAG: usize = 8;
/// Length of a match token: version, binding tag, DET of the constant.
pub const TOKEN_LEN: usize = 1 + BINDING_TAG + 16;
const PAR_CHUNK: usize = 1 << 13;

/// A plaintext value as the match and group facets see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plain<'a> {
    Text(&'a [u8]),
    Int(i64),
}

impl Plain<'_> {
    fn feed(&self, mac: &mut Hmac<Sha256>) {
        match self {
            Plain::Text(b) => {
                mac.update(&[1]);
                mac.update(b);
            }
            Plain::Int(i) => {
                mac.update(&[2]);
                mac.update(&i.to_le_bytes());
            }
        }
    }
}

type Block = GenericArray<u8, aes::cipher::consts::U16>;

fn block(domain: u64, rid: u64) -> Block {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&domain.to_le_bytes());
    b[8..].copy_from_slice(&rid.to_le_bytes());
    GenericArray::from(b)
}

/// A 256-bit HMAC key of a DET function. Zeroized on drop, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DetKey([u8; 32]);

impl std::fmt::Debug for DetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DetKey(<redacted>)")
    }
}

impl DetKey {
    pub fn from_bytes(b: &[u8; 32]) -> Self {
        DetKey(*b)
    }

    pub fn try_from_slice(b: &[u8]) -> Result<Self> {
        let arr: [u8; 32] = b
            .try_into()
            .map_err(|_| CoreError::InvalidKey(format!("DET key must be 32 bytes, got {}", b.len())))?;
        Ok(DetKey(arr))
    }

    /// The raw key, for the owner who encrypts. Never log it.
    pub fn expose_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length")
    }

    /// `DET(v)`: 128 bits of HMAC-SHA256.
    pub fn det(&self, v: Plain<'_>) -> [u8; 16] {
        det_with(&self.mac(), v)
    }

    /// DET of many values (nulls stay `None`), in parallel.
    pub fn det_many(&self, values: &[Option<Plain<'_>>]) -> Vec<Option<[u8; 16]>> {
        let base = self.mac();
        values
            .par_chunks(PAR_CHUNK)
            .flat_map_iter(|c| c.iter().map(|v| v.map(|v| det_with(&base, v))).collect::<Vec<_>>())
            .collect()
    }

    /// The match token of constant `c` for the column bound by `binding`.
    pub fn match_token(&self, binding: &str, c: Plain<'_>) -> Vec<u8> {
        let mut out = Vec::with_capacity(TOKEN_LEN);
        out.push(TOKEN_VERSION);
        out.extend_from_slice(&binding_tag(binding));
        let mut d = self.det(c);
        out.extend_from_slice(&d);
        d.zeroize();
        out
    }

    /// The stored match tags of the rows (a row key per distinct value, rid-bound).
    pub fn match_tags(&self, rids: &[u64], values: &[Option<Plain<'_>>]) -> Vec<Option<[u8; TAG_LEN]>> {
        let base = self.mac();
        rids.par_chunks(PAR_CHUNK)
            .zip(values.par_chunks(PAR_CHUNK))
            .flat_map_iter(|(rs, vs)| {
                rs.iter()
                    .zip(vs)
                    .map(|(&r, v)| {
                        v.map(|v| {
                            let mut d = det_with(&base, v);
                            let t = tag(&Aes128::new(GenericArray::from_slice(&d)), r);
                            d.zeroize();
                            t
                        })
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

fn det_with(base: &Hmac<Sha256>, v: Plain<'_>) -> [u8; 16] {
    let mut m = base.clone();
    v.feed(&mut m);
    let full = m.finalize().into_bytes();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

fn tag(cipher: &Aes128, rid: u64) -> [u8; TAG_LEN] {
    let mut b = block(DOMAIN_MATCH, rid);
    cipher.encrypt_block(&mut b);
    let mut t = [0u8; TAG_LEN];
    t.copy_from_slice(&b[..TAG_LEN]);
    t
}

/// A short tag binding match tokens to one column epoch.
pub fn binding_tag(binding: &str) -> [u8; BINDING_TAG] {
    let h = Sha256::digest(format!("ghostpii/match/v1|{binding}").as_bytes());
    let mut t = [0u8; BINDING_TAG];
    t.copy_from_slice(&h[..BINDING_TAG]);
    t
}

/// A parsed match token: recomputes the tag of its constant for any rid.
pub struct MatchToken {
    cipher: Aes128,
}

impl MatchToken {
    /// Parse a token issued for the column epoch bound by `binding`.
    pub fn parse(bytes: &[u8], binding: &str) -> Result<Self> {
        if bytes.len() != TOKEN_LEN || bytes[0] != TOKEN_VERSION {
            return Err(CoreError::InvalidKey("not a ghostpii match token".into()));
        }
        if !bool::from(bytes[1..1 + BINDING_TAG].ct_eq(&binding_tag(binding))) {
            return Err(CoreError::InvalidKey(
                "the match token was issued for another column or key epoch".into(),
            ));
        }
        Ok(MatchToken {
            cipher: Aes128::new(GenericArray::from_slice(&bytes[1 + BINDING_TAG..])),
        })
    }

    /// Whether the row `rid` whose stored tag is `stored` holds the token's constant.
    pub fn matches(&self, rid: u64, stored: &[u8]) -> bool {
        stored.len() == TAG_LEN && bool::from(tag(&self.cipher, rid).ct_eq(stored))
    }

    /// Tags of the constant for many rids, batched through AES (for the kernels).
    pub fn tags_into(&self, rids: &[u64], out: &mut Vec<[u8; TAG_LEN]>) {
        let mut blocks: Vec<Block> = rids.iter().map(|&r| block(DOMAIN_MATCH, r)).collect();
        self.cipher.encrypt_blocks(&mut blocks);
        out.extend(blocks.iter().map(|b| {
            let mut t = [0u8; TAG_LEN];
            t.copy_from_slice(&b[..TAG_LEN]);
            t
        }));
    }
}

/// Constant-time equality of a recomputed tag and a stored one.
#[inline]
pub fn tag_eq(a: &[u8; TAG_LEN], stored: &[u8]) -> bool {
    stored.len() == TAG_LEN && bool::from(a.ct_eq(stored))
}

crate::facet_key::facet_key!(
    /// Key of per-row pads (group pads, fuzzy sealing seeds): `AES_k(domain ‖ rid)`.
    PadKey,
    "pad"
);

/// Which per-row pads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PadKind {
    Group,
    Fuzzy,
}

impl PadKey {
    fn domain(kind: PadKind) -> u64 {
        match kind {
            PadKind::Group => DOMAIN_GROUP,
            PadKind::Fuzzy => DOMAIN_FUZZY,
        }
    }

    /// The 16-byte pad of one row.
    pub fn pad(&self, kind: PadKind, rid: u64) -> [u8; 16] {
        let mut b = block(Self::domain(kind), rid);
        self.cipher.encrypt_block(&mut b);
        b.into()
    }

    /// Pads of many rows, concatenated (16 bytes a row), in parallel.
    pub fn pads(&self, kind: PadKind, rids: &[u64]) -> Vec<u8> {
        let d = Self::domain(kind);
        rids.par_chunks(PAR_CHUNK)
            .flat_map_iter(|c| {
                let mut blocks: Vec<Block> = c.iter().map(|&r| block(d, r)).collect();
                self.cipher.encrypt_blocks(&mut blocks);
                let mut out = Vec::with_capacity(c.len() * 16);
                for b in blocks.iter_mut() {
                    out.extend_from_slice(b);
                    b.as_mut_slice().zeroize();
                }
                out
            })
            .collect()
    }
}

/// The stored group cells: `DET(v) ⊕ pad(rid)` (nulls stay `None`).
pub fn group_cells(det: &DetKey, pad: &PadKey, rids: &[u64], values: &[Option<Plain<'_>>]) -> Vec<Option<[u8; 16]>> {
    let dets = det.det_many(values);
    let pads = pad.pads(PadKind::Group, rids);
    dets.into_iter()
        .enumerate()
        .map(|(i, d)| {
            d.map(|mut d| {
                for (x, p) in d.iter_mut().zip(&pads[16 * i..16 * i + 16]) {
                    *x ^= p;
                }
                d
            })
        })
        .collect()
}

/// The column-local keys of the match, group and fuzzy facets.
pub struct KeyFacetKeys {
    pub match_key: DetKey,
    pub group_pad: PadKey,
    pub fuzzy_seal: PadKey,
    /// HMAC key of the `search` facet's piece tags (`search.rs`).
    pub search_key: DetKey,
}

/// Keys shared by the columns of one join domain (or private to a column without one).
pub struct DomainKeys {
    pub group_det: DetKey,
    pub clk: DetKey,
}

fn expand<const N: usize>(hk: &Hkdf<Sha256>, label: &[u8], binding: &str) -> [u8; N] {
    let mut out = [0u8; N];
    hk.expand_multi_info(&[label, binding.as_bytes()], &mut out)
        .expect("short HKDF outputs are valid");
    out
}

/// Column-local keys of a column epoch (`binding` as in `ColumnMeta::binding`).
pub fn column_key_facets(root: &RootKey, binding: &str) -> KeyFacetKeys {
    let hk = Hkdf::<Sha256>::new(Some(b"ghostpii/v1/key-facets"), root.as_bytes());
    let mut m: [u8; 32] = expand(&hk, b"match/", binding);
    let mut g: [u8; 16] = expand(&hk, b"grouppad/", binding);
    let mut f: [u8; 16] = expand(&hk, b"fuzzyseal/", binding);
    let mut s: [u8; 32] = expand(&hk, b"search/", binding);
    let keys = KeyFacetKeys {
        match_key: DetKey::from_bytes(&m),
        group_pad: PadKey::from_bytes(&g),
        fuzzy_seal: PadKey::from_bytes(&f),
        search_key: DetKey::from_bytes(&s),
    };
    s.zeroize();
    m.zeroize();
    g.zeroize();
    f.zeroize();
    keys
}

/// The label of a join domain's keys.
pub fn domain_label(domain_id: i64) -> String {
    format!("jd/{domain_id}")
}

/// The label of the private "domain" of a column that has no join domain.
pub fn private_label(binding: &str) -> String {
    format!("col/{binding}")
}

/// DET and CLK keys under `root` (a join domain's root key, or a column's) and `label`.
pub fn domain_keys(root: &RootKey, label: &str) -> DomainKeys {
    let hk = Hkdf::<Sha256>::new(Some(b"ghostpii/v1/join-domain"), root.as_bytes());
    let mut g: [u8; 32] = expand(&hk, b"groupdet/", label);
    let mut c: [u8; 32] = expand(&hk, b"clk/", label);
    let keys = DomainKeys {
        group_det: DetKey::from_bytes(&g),
        clk: DetKey::from_bytes(&c),
    };
    g.zeroize();
    c.zeroize();
    keys
}

/// A process-local key that turns DET values into the pseudonyms Polars sees.
pub struct PseudonymKey {
    cipher: Aes128,
}

impl PseudonymKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        use rand::RngCore;
        let mut k = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut k);
        let cipher = Aes128::new(GenericArray::from_slice(&k));
        k.zeroize();
        PseudonymKey { cipher }
    }

    /// A key shared by the processes of one query (e.g. the workers of a Dask query).
    pub fn from_bytes(k: &[u8; 16]) -> Self {
        PseudonymKey {
            cipher: Aes128::new(GenericArray::from_slice(k)),
        }
    }

    /// Pseudonyms of unmasked DET values (`cell ⊕ pad`), as signed 128-bit integers.
    pub fn pseudonyms(&self, dets: &mut [[u8; 16]]) -> Vec<i128> {
        let mut blocks: Vec<Block> = dets.iter().map(|d| GenericArray::clone_from_slice(d)).collect();
        for d in dets.iter_mut() {
            d.zeroize();
        }
        self.cipher.encrypt_blocks(&mut blocks);
        blocks.iter().map(|b| i128::from_le_bytes((*b).into())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> (KeyFacetKeys, DomainKeys) {
        let root = RootKey::generate();
        (
            column_key_facets(&root, "1/2/1"),
            domain_keys(&root, &private_label("1/2/1")),
        )
    }

    #[test]
    fn equal_values_give_different_match_tags_and_group_cells() {
        let (k, d) = keys();
        let v = [Some(Plain::Text(b"green")), Some(Plain::Text(b"green")), None];
        let rids = [1, 2, 3];
        let tags = k.match_key.match_tags(&rids, &v);
        assert_ne!(tags[0], tags[1]);
        assert!(tags[2].is_none());
        let cells = group_cells(&d.group_det, &k.group_pad, &rids, &v);
        assert_ne!(cells[0], cells[1]);
    }

    #[test]
    fn a_token_answers_only_its_constant_and_column() {
        let (k, _) = keys();
        let v = [
            Some(Plain::Text(b"green")),
            Some(Plain::Text(b"brown")),
            Some(Plain::Int(5)),
        ];
        let rids = [10, 11, 12];
        let tags = k.match_key.match_tags(&rids, &v);
        let t = MatchToken::parse(&k.match_key.match_token("1/2/1", Plain::Text(b"green")), "1/2/1").unwrap();
        let hits: Vec<bool> = rids
            .iter()
            .zip(&tags)
            .map(|(&r, s)| t.matches(r, &s.unwrap()))
            .collect();
        assert_eq!(hits, [true, false, false]);
        // text "5" is not the integer 5
        let t5 = MatchToken::parse(&k.match_key.match_token("1/2/1", Plain::Text(b"5")), "1/2/1").unwrap();
        assert!(!t5.matches(12, &tags[2].unwrap()));
        assert!(MatchToken::parse(&k.match_key.match_token("1/3/1", Plain::Text(b"green")), "1/2/1").is_err());
    }

    #[test]
    fn pads_unmask_group_cells_to_equal_det_values() {
        let (k, d) = keys();
        let v = [Some(Plain::Int(7)), Some(Plain::Int(7)), Some(Plain::Int(8))];
        let rids = [5, 9, 12];
        let cells = group_cells(&d.group_det, &k.group_pad, &rids, &v);
        let pads = k.group_pad.pads(PadKind::Group, &rids);
        let mut dets: Vec<[u8; 16]> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut c = c.unwrap();
                for (x, p) in c.iter_mut().zip(&pads[16 * i..]) {
                    *x ^= p;
                }
                c
            })
            .collect();
        let ps = PseudonymKey::generate().pseudonyms(&mut dets);
        assert_eq!(ps[0], ps[1]);
        assert_ne!(ps[0], ps[2]);
        assert_eq!(&pads[16..32], &k.group_pad.pad(PadKind::Group, 9));
        assert_ne!(k.group_pad.pad(PadKind::Group, 9), k.group_pad.pad(PadKind::Fuzzy, 9));
    }

    #[test]
    fn join_domains_share_det_keys_and_columns_do_not() {
        let jd = RootKey::generate();
        let a = domain_keys(&jd, &domain_label(1));
        let b = domain_keys(&jd, &domain_label(1));
        assert_eq!(a.group_det.det(Plain::Int(1)), b.group_det.det(Plain::Int(1)));
        let c = domain_keys(&jd, &domain_label(2));
        assert_ne!(a.group_det.det(Plain::Int(1)), c.group_det.det(Plain::Int(1)));
    }
}
