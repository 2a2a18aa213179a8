//! The `val` facet: each value sealed with ChaCha20-Poly1305 under a per-row key.
//!
//! Cell layout: `0x01 || nonce (12 bytes) || ciphertext || tag (16 bytes)`. The associated
//! data binds the cell to its column epoch and row id, so a cell moved to another row or
//! column, or an altered rid, fails authentication. Nonces are random per cell (OS-seeded
//! ChaCha20 stream per batch), so equal values give different cells.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rayon::prelude::*;
use zeroize::Zeroize;

use crate::error::{CoreError, Result};
use crate::keys::ValKey;

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Smallest possible cell: version, nonce, tag.
pub const MIN_CELL_LEN: usize = 1 + NONCE_LEN + TAG_LEN;

fn aad(binding: &str, rid: u64) -> Vec<u8> {
    let mut a = Vec::with_capacity(binding.len() + 16);
    a.extend_from_slice(b"ghostpii/val/v1|");
    a.extend_from_slice(binding.as_bytes());
    a.push(b'|');
    a.extend_from_slice(&rid.to_le_bytes());
    a
}

/// Seal one value with a row key and a nonce.
pub fn seal_with(row_key: &[u8; 32], nonce: &[u8; NONCE_LEN], binding: &str, rid: u64, plain: &[u8]) -> Vec<u8> {
    let cipher = ChaCha20Poly1305::new(Key::from_slice(row_key));
    let ct = cipher
        .encrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: plain,
                aad: &aad(binding, rid),
            },
        )
        .expect("ChaCha20-Poly1305 encryption of an in-memory buffer cannot fail");
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
            "val cell of row id {rid} has unknown version byte {}",
            cell[0]
        )));
    }
    let cipher = ChaCha20Poly1305::new(Key::from_slice(row_key));
    cipher
        .decrypt(
            Nonce::from_slice(&cell[1..1 + NONCE_LEN]),
            Payload {
                msg: &cell[1 + NONCE_LEN..],
                aad: &aad(binding, rid),
            },
        )
        .map_err(|_| CoreError::AuthenticationFailed { rid })
}

/// Encrypt many values (None = null → None), in parallel, with fresh random nonces.
pub fn encrypt(key: &ValKey, binding: &str, rids: &[u64], values: &[Option<&[u8]>]) -> Vec<Option<Vec<u8>>> {
    assert_eq!(rids.len(), values.len(), "one rid per value");
    rids.par_chunks(4096)
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
                        let cell = seal_with(&rk, &nonce, binding, rid, plain);
                        rk.zeroize();
                        cell
                    })
                })
                .collect::<Vec<_>>()
        })
        .flatten_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::RootKey;

    fn setup() -> (ValKey, Vec<Option<Vec<u8>>>) {
        let keys = RootKey::generate().derive("1/2/1");
        let vals: Vec<Option<&[u8]>> = vec![Some(b"alice"), None, Some(b"alice")];
        let cells = encrypt(&keys.val, "1/2/1", &[10, 11, 12], &vals);
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
