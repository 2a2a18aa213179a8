//! The `ord` facet: Lewi–Wu style order-revealing encryption with small-domain blocks.
//!
//! A value is mapped into the column's order domain `[offset, offset + 2^bits)` and split into
//! `ceil(bits / 8)` blocks of 8 bits, most significant first. Only **right ciphertexts** are
//! stored: per row a random 128-bit nonce `r` and, for every block `i` and every possible block
//! value `j ∈ 0..256`, the trit `v[i][j] = cmp(j, y_i) + H(F(k, i, y_<i, j), r) mod 3` where
//! `y_<i` is the row's prefix, `cmp(a, b)` is 0 / 1 / 2 for `a = b` / `a < b` / `a > b`,
//! `F` is AES-128 under the column's ord key and `H(u, r) = AES_h(u ⊕ r) mod 3` with `h` a
//! per-column key derived from the ord key and handed out inside every token (so `H` is public
//! to token holders; its security rests on `u` being secret: a random-permutation argument).
//!
//! A **token** (left ciphertext) for a constant `x` is `h` and, per block, `F(k, i, x_<i, x_i)`
//! and `x_i`.
//! With it one unmasks `v[i][x_i]` of a row whose prefix equals `x_<i`; the first non-zero trit
//! gives the order of `x` against that row. Leakage per row and token: the order against `x`
//! and the index of the first block where they differ. Without a token a right ciphertext compares
//! with nothing. Lewi–Wu's per-block permutation is omitted: it hides the block values of *left*
//! ciphertexts, and here left ciphertexts exist only for constants the analyst named itself.

use std::cmp::Ordering;

use aes::cipher::{generic_array::GenericArray, BlockEncrypt, KeyInit};
use aes::Aes128;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};
use zeroize::Zeroize;

use crate::error::{CoreError, Result};

const CT_VERSION: u8 = 1;
const TOKEN_VERSION: u8 = 2;
const NONCE_LEN: usize = 16;
/// Bytes of packed trits per block: 256 trits, 2 bits each.
const BLOCK_BYTES: usize = 64;
const TOKEN_BLOCK: usize = 17;
const BINDING_TAG: usize = 8;
const TOKEN_HEADER: usize = 2 + BINDING_TAG + 16;

type Block = GenericArray<u8, aes::cipher::consts::U16>;

/// The order domain of a column: values `offset ..= offset + 2^bits - 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OreParams {
    pub offset: i64,
    pub bits: u32,
}

impl OreParams {
    /// Domain for declared bounds, or a default for the logical type.
    pub fn new(offset: i64, bits: u32) -> Result<Self> {
        if bits == 0 || bits > 64 {
            return Err(CoreError::InvalidMetadata(format!(
                "ord domain must have 1..=64 bits, got {bits}"
            )));
        }
        Ok(OreParams { offset, bits })
    }

    /// The smallest domain holding `lo ..= hi`.
    pub fn for_bounds(lo: i64, hi: i64) -> Self {
        let span = (hi as i128 - lo as i128) as u128; // ≥ 0 when lo ≤ hi
        let bits = (128 - span.leading_zeros()).max(1);
        OreParams { offset: lo, bits }
    }

    pub fn nblocks(&self) -> usize {
        self.bits.div_ceil(8) as usize
    }

    /// Length of one right ciphertext.
    pub fn ct_len(&self) -> usize {
        2 + NONCE_LEN + self.nblocks() * BLOCK_BYTES
    }

    /// Position of `x` in the domain; `Less`/`Greater` if below or above it.
    pub fn encode(&self, x: i64) -> std::result::Result<u64, Ordering> {
        let d = x as i128 - self.offset as i128;
        if d < 0 {
            return Err(Ordering::Less);
        }
        let max: i128 = if self.bits == 64 {
            u64::MAX as i128
        } else {
            (1i128 << self.bits) - 1
        };
        if d > max {
            return Err(Ordering::Greater);
        }
        Ok(d as u64)
    }

    fn block(&self, u: u64, i: usize) -> u8 {
        let shift = 8 * (self.nblocks() - 1 - i);
        ((u >> shift) & 0xff) as u8
    }

    fn prefix(&self, u: u64, i: usize) -> u64 {
        let shift = 8 * (self.nblocks() - i);
        if shift >= 64 {
            0
        } else {
            u >> shift
        }
    }
}

fn f_input(i: usize, prefix: u64, j: u8) -> Block {
    let mut b = [0u8; 16];
    b[0] = 0x6f; // 'o'
    b[1] = i as u8;
    b[2] = j;
    b[8..].copy_from_slice(&prefix.to_le_bytes());
    GenericArray::from(b)
}

#[inline]
fn mod3(b: &Block) -> u8 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[..8]);
    (u64::from_le_bytes(x) % 3) as u8
}

crate::facet_key::facet_key!(
    /// Key of the `ord` facet.
    OreKey,
    "ord"
);

/// A short tag binding tokens to one column epoch.
pub fn binding_tag(binding: &str) -> [u8; BINDING_TAG] {
    let h = Sha256::digest(format!("ghostpii/ord/v1|{binding}").as_bytes());
    let mut t = [0u8; BINDING_TAG];
    t.copy_from_slice(&h[..BINDING_TAG]);
    t
}

#[inline]
fn xor_into(b: &mut Block, nonce: &[u8]) {
    for (x, y) in b.iter_mut().zip(nonce) {
        *x ^= y;
    }
}

impl OreKey {
    /// The key `h` of the public hash `H`, derived from the ord key.
    fn h_key(&self) -> [u8; 16] {
        let mut b = GenericArray::from(*b"ghostpii-ore-h\0\x01");
        self.cipher.encrypt_block(&mut b);
        b.into()
    }

    /// Right ciphertext of domain position `u` with nonce `r`.
    fn encrypt_one(&self, p: &OreParams, h_cipher: &Aes128, u: u64, nonce: [u8; NONCE_LEN], out: &mut Vec<u8>) {
        out.push(CT_VERSION);
        out.push(p.nblocks() as u8);
        out.extend_from_slice(&nonce);
        let mut blocks: Vec<Block> = Vec::with_capacity(256);
        for i in 0..p.nblocks() {
            let prefix = p.prefix(u, i);
            let yi = p.block(u, i);
            blocks.clear();
            blocks.extend((0..=255u8).map(|j| f_input(i, prefix, j)));
            self.cipher.encrypt_blocks(&mut blocks);
            blocks.iter_mut().for_each(|b| xor_into(b, &nonce));
            h_cipher.encrypt_blocks(&mut blocks);
            let mut packed = [0u8; BLOCK_BYTES];
            for (j, b) in blocks.iter().enumerate() {
                let c = match (j as u8).cmp(&yi) {
                    Ordering::Equal => 0u8,
                    Ordering::Less => 1,
                    Ordering::Greater => 2,
                };
                let v = (c + mod3(b)) % 3;
                packed[j / 4] |= v << (2 * (j % 4));
            }
            out.extend_from_slice(&packed);
        }
        for b in blocks.iter_mut() {
            b.as_mut_slice().zeroize();
        }
    }

    /// Right ciphertexts of many values (None = null → None, or a value outside the domain →
    /// an error naming its index), in parallel, with fresh OS-seeded nonces.
    pub fn encrypt_many(
        &self,
        p: &OreParams,
        values: &[Option<i64>],
    ) -> std::result::Result<Vec<Option<Vec<u8>>>, usize> {
        if let Some(bad) = values
            .iter()
            .position(|v| v.map(|x| p.encode(x).is_err()).unwrap_or(false))
        {
            return Err(bad);
        }
        let h_cipher = Aes128::new(GenericArray::from_slice(&self.h_key()));
        Ok(values
            .par_chunks(2048)
            .map(|chunk| {
                let mut rng = ChaCha20Rng::from_entropy();
                chunk
                    .iter()
                    .map(|v| {
                        v.map(|x| {
                            let u = p.encode(x).expect("checked above");
                            let mut nonce = [0u8; NONCE_LEN];
                            rng.fill_bytes(&mut nonce);
                            let mut out = Vec::with_capacity(p.ct_len());
                            self.encrypt_one(p, &h_cipher, u, nonce, &mut out);
                            out
                        })
                    })
                    .collect::<Vec<_>>()
            })
            .flatten_iter()
            .collect())
    }

    /// The token (left ciphertext) of constant `x`, bound to the column epoch `binding`.
    /// `x` must lie in the domain (callers decide out-of-domain constants without a token).
    pub fn token(&self, p: &OreParams, binding: &str, x: i64) -> Result<Vec<u8>> {
        let u = p
            .encode(x)
            .map_err(|_| CoreError::InvalidMetadata(format!("constant {x} is outside the column's order domain")))?;
        let mut out = Vec::with_capacity(TOKEN_HEADER + p.nblocks() * TOKEN_BLOCK);
        out.push(TOKEN_VERSION);
        out.push(p.nblocks() as u8);
        out.extend_from_slice(&binding_tag(binding));
        out.extend_from_slice(&self.h_key());
        for i in 0..p.nblocks() {
            let xi = p.block(u, i);
            let mut b = f_input(i, p.prefix(u, i), xi);
            self.cipher.encrypt_block(&mut b);
            out.extend_from_slice(&b);
            out.push(xi);
            b.as_mut_slice().zeroize();
        }
        Ok(out)
    }
}

/// A parsed token, ready to compare many rows.
pub struct OreToken {
    nblocks: usize,
    h: Aes128,
    keys: Vec<Block>,
    values: Vec<u8>,
}

impl OreToken {
    /// Parse a token and check it was issued for the column epoch `binding`.
    pub fn parse(bytes: &[u8], binding: &str) -> Result<Self> {
        if bytes.len() < TOKEN_HEADER || bytes[0] != TOKEN_VERSION {
            return Err(CoreError::InvalidKey("not a ghostpii comparison token".into()));
        }
        let nblocks = bytes[1] as usize;
        if nblocks > 8 || bytes.len() != TOKEN_HEADER + nblocks * TOKEN_BLOCK {
            return Err(CoreError::InvalidKey("comparison token has the wrong length".into()));
        }
        if !bool::from(bytes[2..2 + BINDING_TAG].ct_eq(&binding_tag(binding))) {
            return Err(CoreError::InvalidKey(
                "comparison token was issued for another column or key epoch".into(),
            ));
        }
        let mut keys = Vec::with_capacity(nblocks);
        let mut values = Vec::with_capacity(nblocks);
        let h = Aes128::new(GenericArray::from_slice(&bytes[2 + BINDING_TAG..TOKEN_HEADER]));
        for c in bytes[TOKEN_HEADER..].chunks_exact(TOKEN_BLOCK) {
            keys.push(*GenericArray::from_slice(&c[..16]));
            values.push(c[16]);
        }
        Ok(OreToken {
            nblocks,
            h,
            keys,
            values,
        })
    }

    pub fn nblocks(&self) -> usize {
        self.nblocks
    }

    /// Order of the token's constant against the row of right ciphertext `ct`
    /// (`Less`: constant < row value). Runs in time independent of the values.
    pub fn compare(&self, ct: &[u8]) -> Result<Ordering> {
        if ct.len() != 2 + NONCE_LEN + self.nblocks * BLOCK_BYTES || ct[0] != CT_VERSION {
            return Err(CoreError::CorruptCiphertext(format!(
                "ord cell of {} bytes does not match a {}-block token",
                ct.len(),
                self.nblocks
            )));
        }
        if ct[1] as usize != self.nblocks {
            return Err(CoreError::CorruptCiphertext(
                "ord cell has another block count than the token".into(),
            ));
        }
        let nonce = &ct[2..2 + NONCE_LEN];
        let mut hs: [Block; 8] = Default::default();
        hs[..self.nblocks].copy_from_slice(&self.keys);
        hs[..self.nblocks].iter_mut().for_each(|b| xor_into(b, nonce));
        self.h.encrypt_blocks(&mut hs[..self.nblocks]);
        let body = &ct[2 + NONCE_LEN..];
        // first non-zero trit, selected without data-dependent branches
        let mut result = 0u8;
        let mut found = subtle::Choice::from(0u8);
        for i in 0..self.nblocks {
            let j = self.values[i] as usize;
            let v = (body[i * BLOCK_BYTES + j / 4] >> (2 * (j % 4))) & 3;
            let t = (v + 3 - mod3(&hs[i])) % 3;
            let nonzero = !t.ct_eq(&0u8);
            let take = nonzero & !found;
            result = u8::conditional_select(&result, &t, take);
            found |= nonzero;
        }
        Ok(match result {
            0 => Ordering::Equal,
            1 => Ordering::Less,
            _ => Ordering::Greater,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::RootKey;

    fn key() -> OreKey {
        RootKey::generate().derive("1/1/1").ord
    }

    #[test]
    fn compares_correctly_across_the_domain() {
        let k = key();
        let p = OreParams::for_bounds(-70_000, 70_000);
        assert_eq!(p.nblocks(), 3);
        let vals: Vec<Option<i64>> = [-70_000, -1, 0, 1, 255, 256, 65_535, 65_536, 70_000]
            .iter()
            .map(|&v| Some(v))
            .collect();
        let cts = k.encrypt_many(&p, &vals).unwrap();
        for &c in &[-70_000i64, -2, 0, 1, 200, 256, 65_536, 69_999, 70_000] {
            let t = OreToken::parse(&k.token(&p, "1/1/1", c).unwrap(), "1/1/1").unwrap();
            for (v, ct) in vals.iter().zip(&cts) {
                assert_eq!(
                    t.compare(ct.as_ref().unwrap()).unwrap(),
                    c.cmp(&v.unwrap()),
                    "{c} vs {v:?}"
                );
            }
        }
    }

    #[test]
    fn full_64_bit_domain() {
        let k = key();
        let p = OreParams::for_bounds(i64::MIN, i64::MAX);
        assert_eq!((p.bits, p.nblocks()), (64, 8));
        let vals = vec![Some(i64::MIN), Some(-1), Some(0), Some(i64::MAX)];
        let cts = k.encrypt_many(&p, &vals).unwrap();
        let t = OreToken::parse(&k.token(&p, "b", 0).unwrap(), "b").unwrap();
        let got: Vec<_> = cts.iter().map(|c| t.compare(c.as_ref().unwrap()).unwrap()).collect();
        assert_eq!(
            got,
            vec![Ordering::Greater, Ordering::Greater, Ordering::Equal, Ordering::Less]
        );
    }

    #[test]
    fn equal_values_give_different_right_ciphertexts() {
        let k = key();
        let p = OreParams::for_bounds(0, 1000);
        let cts = k.encrypt_many(&p, &[Some(5), Some(5)]).unwrap();
        assert_ne!(cts[0], cts[1]);
    }

    #[test]
    fn a_token_answers_only_its_constant_and_its_column() {
        let k = key();
        let p = OreParams::for_bounds(0, 1 << 16);
        let cts = k.encrypt_many(&p, &[Some(1000)]).unwrap();
        let ct = cts[0].as_ref().unwrap();
        // a token of another key (another column or epoch) gives no meaningful answers and is
        // refused by its binding tag
        let other = key();
        let tok = other.token(&p, "1/2/1", 1000).unwrap();
        assert!(OreToken::parse(&tok, "1/1/1").is_err());
        // forge: a token of 999 with its value byte changed to claim 1000 does not answer 1000
        let mut forged = k.token(&p, "x", 999).unwrap();
        let last = forged.len() - 1;
        forged[last] = forged[last].wrapping_add(1);
        let t = OreToken::parse(&forged, "x").unwrap();
        let mut wrong = 0;
        for _ in 0..64 {
            let c = k.encrypt_many(&p, &[Some(1000)]).unwrap();
            if t.compare(c[0].as_ref().unwrap()).unwrap() != Ordering::Equal {
                wrong += 1;
            }
        }
        assert!(wrong > 20, "a forged token should fail often, failed {wrong}/64");
        // the genuine token says equal, every time
        let t = OreToken::parse(&k.token(&p, "x", 1000).unwrap(), "x").unwrap();
        assert_eq!(t.compare(ct).unwrap(), Ordering::Equal);
    }

    #[test]
    fn without_the_right_token_comparisons_are_chance() {
        // a token made with another column key (binding forged to match): its answers do not
        // depend on the truth — "Greater" comes out as often for values above as below
        let k = key();
        let p = OreParams::for_bounds(0, 1 << 16);
        let vals: Vec<Option<i64>> = (0..4000).map(|i| Some((i * 7919) % 65_536)).collect();
        let cts = k.encrypt_many(&p, &vals).unwrap();
        let t = OreToken::parse(&key().token(&p, "x", 30_000).unwrap(), "x").unwrap();
        let (mut below, mut below_g, mut above, mut above_g) = (0f64, 0f64, 0f64, 0f64);
        for (v, c) in vals.iter().zip(&cts) {
            let g = (t.compare(c.as_ref().unwrap()).unwrap() == Ordering::Greater) as u8 as f64;
            if v.unwrap() < 30_000 {
                below += 1.0;
                below_g += g;
            } else {
                above += 1.0;
                above_g += g;
            }
        }
        let diff = (below_g / below - above_g / above).abs();
        assert!(diff < 0.08, "answers depend on the truth: {diff}");
        // while the genuine token is always right
        let good = OreToken::parse(&k.token(&p, "x", 30_000).unwrap(), "x").unwrap();
        assert!(vals
            .iter()
            .zip(&cts)
            .all(|(v, c)| good.compare(c.as_ref().unwrap()).unwrap() == 30_000.cmp(&v.unwrap())));
    }

    #[test]
    fn out_of_domain_values_are_named() {
        let k = key();
        let p = OreParams::for_bounds(0, 10);
        assert_eq!(p.bits, 4);
        assert_eq!(k.encrypt_many(&p, &[Some(3), None, Some(16)]).unwrap_err(), 2);
        assert!(
            k.encrypt_many(&p, &[Some(15)]).is_ok(),
            "domain is rounded up to 2^bits"
        );
        assert!(k.token(&p, "x", -1).is_err());
    }

    #[test]
    fn corrupt_cells_are_errors() {
        let k = key();
        let p = OreParams::for_bounds(0, 10);
        let t = OreToken::parse(&k.token(&p, "x", 1).unwrap(), "x").unwrap();
        assert!(t.compare(&[1, 2, 3]).is_err());
        assert!(OreToken::parse(&[9, 9], "x").is_err());
    }
}
