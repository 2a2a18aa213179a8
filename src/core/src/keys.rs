//! Column keys and the AES-based PRF that masks values.
//!
//! A column epoch has one random 256-bit [`RootKey`], generated and kept (wrapped) by the
//! keyhost. Facet keys are derived from it with HKDF-SHA256, one per facet, so a key issued
//! for one facet says nothing about another.
//!
//! The PRF is AES-128 on a 16-byte block `domain (8 bytes) || rid (8 bytes, LE)`. AES is a
//! PRP; used on at most 2^64 distinct inputs its distance from a PRF is below q^2 / 2^129.

use aes::cipher::{generic_array::GenericArray, BlockEncrypt};
use aes::Aes128;
use hkdf::Hkdf;
use rand::RngCore;
use rayon::prelude::*;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::{CoreError, Result};
use crate::facet_key::facet_key;
use crate::ore::OreKey;

const DOMAIN_NUM: u64 = 0x6770_6e75_6d00_0001; // "gpnum" v1
const DOMAIN_VAL_A: u64 = 0x6770_7661_6c00_0001; // "gpval" v1, first half of a row key
const DOMAIN_VAL_B: u64 = 0x6770_7661_6c00_0002; // second half
const PAR_CHUNK: usize = 1 << 14;

/// The random secret of one column epoch. Zeroized on drop, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct RootKey([u8; 32]);

impl RootKey {
    /// A fresh key from the operating system's randomness.
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        RootKey(k)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| CoreError::InvalidKey(format!("root key must be 32 bytes, got {}", bytes.len())))?;
        Ok(RootKey(arr))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Derive the facet keys of this column epoch. `binding` names the column (for example
    /// `"<dataset>/<column>/<epoch>"`) so that two columns never share derived keys.
    pub fn derive(&self, binding: &str) -> ColumnKeys {
        let hk = Hkdf::<Sha256>::new(Some(b"ghostpii/v1/column-keys"), &self.0);
        let mut num = [0u8; 16];
        let mut val = [0u8; 16];
        let mut ord = [0u8; 16];
        hk.expand_multi_info(&[b"num/", binding.as_bytes()], &mut num)
            .expect("16 bytes is a valid HKDF length");
        hk.expand_multi_info(&[b"val/", binding.as_bytes()], &mut val)
            .expect("16 bytes is a valid HKDF length");
        hk.expand_multi_info(&[b"ord/", binding.as_bytes()], &mut ord)
            .expect("16 bytes is a valid HKDF length");
        let keys = ColumnKeys {
            num: NumKey::from_bytes(&num),
            val: ValKey::from_bytes(&val),
            ord: OreKey::from_bytes(&ord),
        };
        num.zeroize();
        val.zeroize();
        ord.zeroize();
        keys
    }
}

impl std::fmt::Debug for RootKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RootKey(<redacted>)")
    }
}

/// The facet keys of one column epoch.
#[derive(Clone)]
pub struct ColumnKeys {
    pub num: NumKey,
    pub val: ValKey,
    pub ord: OreKey,
}

fn block(domain: u64, rid: u64) -> GenericArray<u8, aes::cipher::consts::U16> {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&domain.to_le_bytes());
    b[8..].copy_from_slice(&rid.to_le_bytes());
    GenericArray::from(b)
}

fn prf_many(cipher: &Aes128, domain: u64, rids: &[u64], out: &mut Vec<u128>) {
    let mut blocks: Vec<_> = rids.iter().map(|&r| block(domain, r)).collect();
    cipher.encrypt_blocks(&mut blocks);
    out.extend(blocks.iter().map(|b| u128::from_le_bytes((*b).into())));
    blocks.zeroize_blocks();
}

trait ZeroizeBlocks {
    fn zeroize_blocks(&mut self);
}
impl ZeroizeBlocks for Vec<GenericArray<u8, aes::cipher::consts::U16>> {
    fn zeroize_blocks(&mut self) {
        for b in self.iter_mut() {
            b.as_mut_slice().zeroize();
        }
    }
}

facet_key!(
    /// Key of the `num` facet: `cell = encode(x) + PRF(k, rid) mod 2^128`.
    NumKey,
    "num"
);

impl NumKey {
    /// The mask of one row.
    pub fn mask(&self, rid: u64) -> u128 {
        let mut b = block(DOMAIN_NUM, rid);
        self.cipher.encrypt_block(&mut b);
        u128::from_le_bytes(b.into())
    }

    /// The masks of many rows, in order, computed in parallel.
    pub fn masks(&self, rids: &[u64]) -> Vec<u128> {
        rids.par_chunks(PAR_CHUNK)
            .map(|chunk| {
                let mut out = Vec::with_capacity(chunk.len());
                prf_many(&self.cipher, DOMAIN_NUM, chunk, &mut out);
                out
            })
            .flatten_iter()
            .collect()
    }

    /// `Σ PRF(k, rid)` over the rows, wrapping in 2^128: the answer key of a sum.
    pub fn sum_masks(&self, rids: &[u64]) -> u128 {
        rids.par_chunks(PAR_CHUNK)
            .map(|chunk| {
                let mut out = Vec::with_capacity(chunk.len());
                prf_many(&self.cipher, DOMAIN_NUM, chunk, &mut out);
                out.iter().fold(0u128, |a, &m| a.wrapping_add(m))
            })
            .reduce(|| 0u128, |a, b| a.wrapping_add(b))
    }
}

impl NumKey {
    /// `Σ PRF(k, rid)` over the rows on this thread (for callers that parallelise over blocks).
    pub fn sum_masks_seq(&self, rids: &[u64]) -> u128 {
        let mut out = Vec::with_capacity(PAR_CHUNK.min(rids.len()));
        let mut total = 0u128;
        for chunk in rids.chunks(PAR_CHUNK) {
            out.clear();
            prf_many(&self.cipher, DOMAIN_NUM, chunk, &mut out);
            total = out.iter().fold(total, |a, &m| a.wrapping_add(m));
        }
        out.iter_mut().for_each(Zeroize::zeroize);
        total
    }

    /// A public name of this key (BLAKE3 key derivation: says nothing about the key), e.g. to
    /// index cached block sums.
    pub fn fingerprint(&self) -> [u8; 32] {
        blake3::derive_key("ghostpii/v1/num-key-fingerprint", &self.raw)
    }
}

facet_key!(
    /// Key of the `val` facet: derives one ChaCha20-Poly1305 key per row.
    ValKey,
    "val"
);

impl ValKey {
    /// The 256-bit AEAD key of one row.
    pub fn row_key(&self, rid: u64) -> [u8; 32] {
        let mut blocks = [block(DOMAIN_VAL_A, rid), block(DOMAIN_VAL_B, rid)];
        self.cipher.encrypt_blocks(&mut blocks);
        let mut out = [0u8; 32];
        out[..16].copy_from_slice(&blocks[0]);
        out[16..].copy_from_slice(&blocks[1]);
        blocks[0].as_mut_slice().zeroize();
        blocks[1].as_mut_slice().zeroize();
        out
    }

    /// Row keys of many rows, concatenated (32 bytes a row), computed in parallel.
    pub fn row_keys(&self, rids: &[u64]) -> Vec<u8> {
        rids.par_chunks(PAR_CHUNK)
            .map(|chunk| {
                let mut out = Vec::with_capacity(chunk.len() * 32);
                for &r in chunk {
                    out.extend_from_slice(&self.row_key(r));
                }
                out
            })
            .flatten_iter()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_keys_differ_per_binding_and_facet() {
        let root = RootKey::generate();
        let a = root.derive("d/1/1");
        let b = root.derive("d/2/1");
        assert_ne!(a.num.expose_bytes(), b.num.expose_bytes());
        assert_ne!(a.num.expose_bytes(), a.val.expose_bytes());
    }

    #[test]
    fn batched_masks_equal_single_masks() {
        let keys = RootKey::generate().derive("x");
        let rids: Vec<u64> = (0..50_000).map(|i| i * 7 + 3).collect();
        let many = keys.num.masks(&rids);
        for (i, &r) in rids.iter().enumerate().step_by(997) {
            assert_eq!(many[i], keys.num.mask(r));
        }
        let sum = many.iter().fold(0u128, |a, &m| a.wrapping_add(m));
        assert_eq!(sum, keys.num.sum_masks(&rids));
    }

    #[test]
    fn root_key_debug_is_redacted() {
        assert_eq!(format!("{:?}", RootKey::generate()), "RootKey(<redacted>)");
    }
}
