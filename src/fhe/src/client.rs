//! The analyst's side: its own tfhe key pair, the compressed server key it uploads once per
//! session, encryption of residues as one compressed list, decryption of results.
//!
//! The client key never leaves this struct: it is not serialised, printed or logged (its
//! `Debug` shows nothing). tfhe 1.8's `ClientKey` does not implement `Zeroize`, so its memory
//! is released, not wiped, on drop; that is tfhe's limit, written in `docs/rowwise.md`.

use std::io::Cursor;

use rayon::prelude::*;
use tfhe::prelude::*;
use tfhe::safe_serialization::{safe_deserialize, safe_serialize};
use tfhe::{
    ClientKey, CompressedCiphertextList, CompressedCiphertextListBuilder, CompressedServerKey, FheBool, FheInt16,
    FheInt32, FheInt64, FheInt8,
};

use crate::server::{pool, tfhe_err};
use crate::{FheError, LIST_LIMIT, SERVER_KEY_LIMIT};

/// The analyst's keys: the client key (secret), the server key (to compress and decompress
/// lists locally) and the serialized compressed server key (what the keyhost gets).
pub struct AnalystKeys {
    client: ClientKey,
    server: tfhe::ServerKey,
    compressed: Vec<u8>,
}

impl std::fmt::Debug for AnalystKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AnalystKeys {{ server key: {} bytes }}", self.compressed.len())
    }
}

impl AnalystKeys {
    /// A fresh key pair (tfhe's CSPRNG, seeded from the OS). Takes a few seconds.
    pub fn generate() -> Result<AnalystKeys, FheError> {
        let client = ClientKey::generate(crate::config());
        let compressed_key = CompressedServerKey::new(&client);
        let mut compressed = Vec::new();
        safe_serialize(&compressed_key, &mut compressed, SERVER_KEY_LIMIT).map_err(tfhe_err)?;
        let server = compressed_key.decompress();
        Ok(AnalystKeys {
            client,
            server,
            compressed,
        })
    }

    /// The serialized compressed server key, to upload to the keyhost.
    pub fn server_key(&self) -> &[u8] {
        &self.compressed
    }

    /// `values` (each a signed `bits`-bit integer) encrypted under the client key, as ONE
    /// serialized compressed ciphertext list in order.
    pub fn encrypt(&self, bits: u32, values: &[i64]) -> Result<Vec<u8>, FheError> {
        let ck = &self.client;
        let pool = pool(&self.server, 0)?;
        pool.install(|| {
            let mut b = CompressedCiphertextListBuilder::new();
            match bits {
                8 => push_all(
                    &mut b,
                    values.par_iter().map(|&v| FheInt8::encrypt(v as i8, ck)).collect(),
                ),
                16 => push_all(
                    &mut b,
                    values.par_iter().map(|&v| FheInt16::encrypt(v as i16, ck)).collect(),
                ),
                32 => push_all(
                    &mut b,
                    values.par_iter().map(|&v| FheInt32::encrypt(v as i32, ck)).collect(),
                ),
                64 => push_all(&mut b, values.par_iter().map(|&v| FheInt64::encrypt(v, ck)).collect()),
                w => return Err(FheError::Width(w)),
            }
            let list = b.build().map_err(tfhe_err)?;
            let mut out = Vec::new();
            safe_serialize(&list, &mut out, LIST_LIMIT).map_err(tfhe_err)?;
            Ok(out)
        })
    }

    /// Decrypt a serialized list of `n` booleans.
    pub fn decrypt_bools(&self, bytes: &[u8], n: usize) -> Result<Vec<bool>, FheError> {
        let list = read_list(bytes, n)?;
        let ck = &self.client;
        pool(&self.server, 0)?.install(|| {
            (0..n)
                .into_par_iter()
                .map(|i| Ok(get::<FheBool>(&list, i)?.decrypt(ck)))
                .collect()
        })
    }

    /// Decrypt a serialized list of `n` signed `bits`-bit integers.
    pub fn decrypt_ints(&self, bytes: &[u8], n: usize, bits: u32) -> Result<Vec<i64>, FheError> {
        let list = read_list(bytes, n)?;
        let ck = &self.client;
        pool(&self.server, 0)?.install(|| {
            (0..n)
                .into_par_iter()
                .map(|i| {
                    Ok(match bits {
                        8 => {
                            let v: i8 = get::<FheInt8>(&list, i)?.decrypt(ck);
                            i64::from(v)
                        }
                        16 => {
                            let v: i16 = get::<FheInt16>(&list, i)?.decrypt(ck);
                            i64::from(v)
                        }
                        32 => {
                            let v: i32 = get::<FheInt32>(&list, i)?.decrypt(ck);
                            i64::from(v)
                        }
                        64 => {
                            let v: i64 = get::<FheInt64>(&list, i)?.decrypt(ck);
                            v
                        }
                        w => return Err(FheError::Width(w)),
                    })
                })
                .collect()
        })
    }
}

fn push_all<T: tfhe::HlCompressible>(b: &mut CompressedCiphertextListBuilder, cts: Vec<T>) {
    for c in cts {
        b.push(c);
    }
}

/// A serialized compressed list of exactly `n` ciphertexts.
pub(crate) fn read_list(bytes: &[u8], n: usize) -> Result<CompressedCiphertextList, FheError> {
    let list: CompressedCiphertextList =
        safe_deserialize(Cursor::new(bytes), LIST_LIMIT).map_err(|e| FheError::BadCiphertexts(e.to_string()))?;
    if list.len() != n {
        return Err(FheError::Count {
            expected: n,
            got: list.len(),
        });
    }
    Ok(list)
}

/// Ciphertext `i` of a list, of type `T` (a refusal if it is of another type).
pub(crate) fn get<T>(list: &CompressedCiphertextList, i: usize) -> Result<T, FheError>
where
    T: tfhe::HlExpandable + Tagged,
{
    list.get::<T>(i)
        .map_err(|e| FheError::BadCiphertexts(format!("ciphertext {i}: {e}")))?
        .ok_or_else(|| FheError::BadCiphertexts(format!("ciphertext {i} is missing")))
}
