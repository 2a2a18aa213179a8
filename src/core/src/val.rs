//! The `val` facet: each value sealed with ChaCha20-Poly1305 under a per-row key.
//!
//! Cell layout: `0x02 || nonce (12 bytes) || ciphertext || tag (16 bytes)`. The associated
//! data binds the cell to its column epoch and row id, so a cell moved to another row or
//! column, or an altered rid, fails authentication. Nonces are random per cell (OS-seeded
//! ChaCha20 stream per batch), so equal values give different cells.
//!
//! The sealed plaintext is `len (u32 LE) || value || zero padding`, padded to a length class
//! ([`Padding`]): the value's length and the padding are inside the AEAD, so unpadding is exact
//! and authenticated, and the cell length reveals only the class: by default the smallest power
//! of two ≥ 16 that holds `4 + len` bytes; with an owner-set maximum, `4 + max` for every value.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rayon::prelude::*;
use zeroize::Zeroize;

use crate::error::{CoreError, Result};
use crate::keys::ValKey;

const VERSION: u8 = 2;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const LEN_PREFIX: usize = 4;
/// Smallest padded plaintext (the first length class).
pub const MIN_CLASS: usize = 16;
/// Smallest possible cell: version, nonce, the first class, tag.
pub const MIN_CELL_LEN: usize = 1 + NONCE_LEN + MIN_CLASS + TAG_LEN;

/// How sealed values are padded before encryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Padding {
    /// Length classes: the padded plaintext is the smallest power of two ≥ 16 bytes that holds
    /// the 4-byte length prefix and the value.
    #[default]
    PowersOfTwo,
    /// Every value padded to `4 + max` bytes (at least 16); longer values are refused.
    Max(usize),
}

impl Padding {
    /// The padded plaintext length of a value of `len` bytes, or `None` if it exceeds the maximum.
    pub fn padded_len(self, len: usize) -> Option<usize> {
        match self {
            Padding::PowersOfTwo => Some((LEN_PREFIX + len).next_power_of_two().max(MIN_CLASS)),
            Padding::Max(max) if len <= max && u32::try_from(max).is_ok() => Some((LEN_PREFIX + max).max(MIN_CLASS)),
            Padding::Max(_) => None,
        }
    }

    /// The cell length of a value of `len` bytes, or `None` if it exceeds the maximum.
    pub fn cell_len(self, len: usize) -> Option<usize> {
        self.padded_len(len).map(|p| 1 + NONCE_LEN + p + TAG_LEN)
    }
}

fn pad(plain: &[u8], padded_len: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(padded_len);
    body.extend_from_slice(&(plain.len() as u32).to_le_bytes());
    body.extend_from_slice(plain);
    body.resize(padded_len, 0);
    body
}

fn unpad(rid: u64, mut body: Vec<u8>) -> Result<Vec<u8>> {
    let bad = |what: &str| CoreError::CorruptCiphertext(format!("val cell of row id {rid}: {what}"));
    if body.len() < LEN_PREFIX {
        return Err(bad("no length prefix"));
    }
    let len = u32::from_le_bytes(body[..LEN_PREFIX].try_into().expect("4 bytes")) as usize;
    let end = LEN_PREFIX
        .checked_add(len)
        .filter(|&e| e <= body.len())
        .ok_or_else(|| bad("length beyond the cell"))?;
    if body[end..].iter().any(|&b| b != 0) {
        return Err(bad("non-zero padding"));
    }
    let value = body[LEN_PREFIX..end].to_vec();
    body.zeroize();
    Ok(value)
}

fn aad(binding: &str, rid: u64) -> Vec<u8> {
    let mut a = Vec::with_capacity(binding.len() + 16);
    a.extend_from_slice(b"ghostpii/val/v1|");
    a.extend_from_slice(binding.as_bytes());
    a.push(b'|');
    a.extend_from_slice(&rid.to_le_bytes());
    a
}

/// Seal one value with a row key and a nonce, padded to `padded_len` bytes (from [`Padding`];
/// at least `4 + plain.len()`).
pub fn seal_with(
    row_key: &[u8; 32],
    nonce: &[u8; NONCE_LEN],
    binding: &str,
    rid: u64,
    plain: &[u8],
    padded_len: usize,
) -> Vec<u8> {
    assert!(padded_len >= LEN_PREFIX + plain.len(), "padded length holds the value");
    let cipher = ChaCha20Poly1305::new(Key::from_slice(row_key));
    let mut body = pad(plain, padded_len);
    let ct = cipher
        .encrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: &body,
                aad: &aad(binding, rid),
            },
        )
        .expect("ChaCha20-Poly1305 encryption of an in-memory buffer cannot fail");
    body.zeroize();
    let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
    out.push(VERSION);
    out.extend_from_slice(nonce);
    out.extend_from_slice(&ct);
    out
}

/// Open one cell with its row key.
pub fn open(row_key: &[u8; 32], binding: &str, rid: u64, cell: &[u8]) -> Result<Vec<u8>> {
    if cell.len() < MIN_CELL_LEN {
        return Err(CoreError::CorruptCiphertext(format!(
            "val cell of row id {rid} is {} bytes, shorter than the minimum {MIN_CELL_LEN}",
            cell.len()
        )));
    }
    if cell[0] != VERSION {
        return Err(CoreError::CorruptCiphertext(format!(
            "val cell of row id {rid} has unknown version byte {} (this ghostpii reads version {VERSION}; \
             re-encrypt data written by another version)",
            cell[0]
        )));
    }
    let cipher = ChaCha20Poly1305::new(Key::from_slice(row_key));
    let body = cipher
        .decrypt(
            Nonce::from_slice(&cell[1..1 + NONCE_LEN]),
            Payload {
                msg: &cell[1 + NONCE_LEN..],
                aad: &aad(binding, rid),
            },
        )
        .map_err(|_| CoreError::AuthenticationFailed { rid })?;
    unpad(rid, body)
}

/// Encrypt many values (None = null → None), in parallel, with fresh random nonces, padded
/// by `padding`. Refuses (with the index of the first) values longer than a `Padding::Max`.
pub fn encrypt(
    key: &ValKey,
    binding: &str,
    rids: &[u64],
    values: &[Option<&[u8]>],
    padding: Padding,
) -> std::result::Result<Vec<Option<Vec<u8>>>, usize> {
    assert_eq!(rids.len(), values.len(), "one rid per value");
    if let Some(i) = values
        .iter()
        .position(|v| v.is_some_and(|p| padding.padded_len(p.len()).is_none()))
    {
        return Err(i);
    }
    Ok(rids
        .par_chunks(4096)
        .zip(values.par_chunks(4096))
        .map(|(rc, vc)| {
            let mut rng = ChaCha20Rng::from_entropy();
            rc.iter()
                .zip(vc)
                .map(|(&rid, v)| {
                    v.map(|plain| {
                        let mut nonce = [0u8; NONCE_LEN];
                        rng.fill_bytes(&mut nonce);
                        let mut rk = key.row_key(rid);
                        let padded = padding.padded_len(plain.len()).expect("lengths checked above");
                        let cell = seal_with(&rk, &nonce, binding, rid, plain, padded);
                        rk.zeroize();
                        cell
                    })
                })
                .collect::<Vec<_>>()
        })
        .flatten_iter()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::RootKey;

    fn setup() -> (ValKey, Vec<Option<Vec<u8>>>) {
        let keys = RootKey::generate().derive("1/2/1");
        let vals: Vec<Option<&[u8]>> = vec![Some(b"alice"), None, Some(b"alice")];
        let cells = encrypt(&keys.val, "1/2/1", &[10, 11, 12], &vals, Padding::default()).unwrap();
        (keys.val.clone(), cells)
    }

    #[test]
    fn round_trip_keeps_nulls() {
        let (k, cells) = setup();
        assert!(cells[1].is_none());
        let plain = open(&k.row_key(10), "1/2/1", 10, cells[0].as_ref().unwrap()).unwrap();
        assert_eq!(plain, b"alice");
    }

    #[test]
    fn lengths_are_padded_to_classes_and_unpadded_exactly() {
        let keys = RootKey::generate().derive("1/2/1");
        let vals: Vec<&[u8]> = vec![b"", b"HIV+", b"negative", b"twelve bytes", b"thirteen byte", &[0u8; 40]];
        let opts: Vec<Option<&[u8]>> = vals.iter().map(|v| Some(*v)).collect();
        let rids: Vec<u64> = (1..=vals.len() as u64).collect();
        let cells = encrypt(&keys.val, "b", &rids, &opts, Padding::default()).unwrap();
        let lens: Vec<usize> = cells.iter().map(|c| c.as_ref().unwrap().len()).collect();
        // 0..=12 bytes share the 16-byte class; 13 bytes go to 32; 40 to 64.
        assert_eq!(lens, vec![45, 45, 45, 45, 61, 93]);
        for ((v, c), rid) in vals.iter().zip(&cells).zip(&rids) {
            assert_eq!(
                open(&keys.val.row_key(*rid), "b", *rid, c.as_ref().unwrap()).unwrap(),
                *v
            );
        }
        // An owner-set maximum: one length for all, longer values refused.
        let cells = encrypt(&keys.val, "b", &rids[..3], &opts[..3], Padding::Max(100)).unwrap();
        assert!(cells.iter().all(|c| c.as_ref().unwrap().len() == 1 + 12 + 104 + 16));
        assert_eq!(encrypt(&keys.val, "b", &rids, &opts, Padding::Max(12)), Err(4));
    }

    #[test]
    fn padding_is_authenticated() {
        let keys = RootKey::generate().derive("1/2/1");
        let rk = keys.val.row_key(7);
        // A cell whose (authenticated) prefix claims more bytes than it holds, or whose padding
        // is not zero, is refused even with the right key.
        let mut body = pad(b"abc", 16);
        body[0] = 200;
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&rk));
        let seal = |b: &[u8]| {
            let ct = cipher
                .encrypt(
                    Nonce::from_slice(&[0u8; 12]),
                    Payload {
                        msg: b,
                        aad: &aad("b", 7),
                    },
                )
                .unwrap();
            [vec![VERSION], vec![0u8; 12], ct].concat()
        };
        assert!(matches!(
            open(&rk, "b", 7, &seal(&body)),
            Err(CoreError::CorruptCiphertext(_))
        ));
        let mut body = pad(b"abc", 16);
        body[15] = 1;
        assert!(matches!(
            open(&rk, "b", 7, &seal(&body)),
            Err(CoreError::CorruptCiphertext(_))
        ));
    }

    #[test]
    fn equal_values_give_different_cells() {
        let (_, cells) = setup();
        assert_ne!(cells[0], cells[2]);
    }

    #[test]
    fn tampered_rid_or_cell_or_column_is_detected() {
        let (k, cells) = setup();
        let c = cells[0].as_ref().unwrap();
        // moved to another row id
        assert!(matches!(
            open(&k.row_key(12), "1/2/1", 12, c),
            Err(CoreError::AuthenticationFailed { rid: 12 })
        ));
        // claimed to belong to another row id, with that row's key
        assert!(open(&k.row_key(10), "1/2/1", 11, c).is_err());
        // bit flip
        let mut bad = c.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(open(&k.row_key(10), "1/2/1", 10, &bad).is_err());
        // other column binding
        assert!(open(&k.row_key(10), "1/3/1", 10, c).is_err());
        // truncated
        assert!(matches!(
            open(&k.row_key(10), "1/2/1", 10, &c[..5]),
            Err(CoreError::CorruptCiphertext(_))
        ));
    }
}
