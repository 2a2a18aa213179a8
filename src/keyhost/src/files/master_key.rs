//! The master key file and envelope encryption of column root keys.
//!
//! `DIR/master.key` holds 32 random bytes (mode 0600). Every column epoch's [`RootKey`] is
//! stored in the database only wrapped under it with ChaCha20-Poly1305 (random 96-bit nonce),
//! with associated data binding the keyhost, dataset, column and epoch, so a wrapped key
//! cannot be moved to another column and the database alone decrypts nothing.

use std::io::Write;
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use ghostpii_core::RootKey;
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::KeyhostError;

pub const MASTER_KEY_LEN: usize = 32;
pub const NONCE_LEN: usize = 12;

/// The master key of one keyhost. Zeroized on drop, never printed.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct MasterKey([u8; MASTER_KEY_LEN]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

/// The associated data of a wrapped root key.
fn binding(keyhost_id: &str, dataset_id: i64, column_id: i64, epoch: u32) -> String {
    format!("ghostpii/v1/root-key|{keyhost_id}|{dataset_id}|{column_id}|{epoch}")
}

/// A root key as stored: nonce and ciphertext (32 bytes + 16-byte tag).
pub struct WrappedKey {
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

impl MasterKey {
    /// A fresh random key (written to disk by [`MasterKey::create`]).
    fn generate() -> Self {
        let mut k = [0u8; MASTER_KEY_LEN];
        rand::rngs::OsRng.fill_bytes(&mut k);
        MasterKey(k)
    }

    /// Create `path` (mode 0600, must not exist) holding a fresh key.
    pub fn create(path: &Path) -> Result<Self, KeyhostError> {
        let key = Self::generate();
        let mut f = crate::files::create_private(path)
            .map_err(|e| KeyhostError::io("cannot create master key file", path, e))?;
        f.write_all(&key.0)
            .and_then(|_| f.sync_all())
            .map_err(|e| KeyhostError::io("cannot write master key file", path, e))?;
        Ok(key)
    }

    /// Read the key from `path`.
    pub fn load(path: &Path) -> Result<Self, KeyhostError> {
        let bytes =
            Zeroizing::new(std::fs::read(path).map_err(|e| KeyhostError::io("cannot read master key file", path, e))?);
        let arr: [u8; MASTER_KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
            KeyhostError::MasterKey(format!(
                "{} must hold exactly {MASTER_KEY_LEN} bytes, it holds {}",
                path.display(),
                bytes.len()
            ))
        })?;
        Ok(MasterKey(arr))
    }

    /// A public check value that tells whether a master key file belongs to a database
    /// (a domain-separated SHA-256 of the key; reveals nothing about it).
    pub fn check_value(&self, keyhost_id: &str) -> String {
        let mut h = Sha256::new();
        h.update(b"ghostpii/v1/master-key-check|");
        h.update(keyhost_id.as_bytes());
        h.update(b"|");
        h.update(self.0);
        hex::encode(h.finalize())
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(Key::from_slice(&self.0))
    }

    pub fn wrap(
        &self,
        root: &RootKey,
        keyhost_id: &str,
        dataset_id: i64,
        column_id: i64,
        epoch: u32,
    ) -> Result<WrappedKey, KeyhostError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = binding(keyhost_id, dataset_id, column_id, epoch);
        let ciphertext = self
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: root.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| KeyhostError::MasterKey("cannot wrap a column key".into()))?;
        Ok(WrappedKey {
            nonce: nonce.to_vec(),
            ciphertext,
        })
    }

    pub fn unwrap(
        &self,
        wrapped: &WrappedKey,
        keyhost_id: &str,
        dataset_id: i64,
        column_id: i64,
        epoch: u32,
    ) -> Result<RootKey, KeyhostError> {
        if wrapped.nonce.len() != NONCE_LEN {
            return Err(KeyhostError::MasterKey(
                "stored column key has a malformed nonce".into(),
            ));
        }
        let aad = binding(keyhost_id, dataset_id, column_id, epoch);
        let plain = Zeroizing::new(
            self.cipher()
                .decrypt(
                    Nonce::from_slice(&wrapped.nonce),
                    Payload {
                        msg: &wrapped.ciphertext,
                        aad: aad.as_bytes(),
                    },
                )
                .map_err(|_| {
                    KeyhostError::MasterKey(format!(
                        "column key of dataset {dataset_id}, column {column_id}, epoch {epoch} \
                         does not authenticate under this master key"
                    ))
                })?,
        );
        RootKey::from_bytes(&plain).map_err(|_| KeyhostError::MasterKey("stored column key has a wrong length".into()))
    }

    /// Encrypt `msg` for storage in the database (random nonce, `context` as associated data):
    /// `nonce ‖ ciphertext ‖ tag`.
    pub fn seal(&self, context: &str, msg: &[u8]) -> Result<Vec<u8>, KeyhostError> {
        let mut out = vec![0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut out);
        let aad = format!("ghostpii/v1/stored|{context}");
        let ct = self
            .cipher()
            .encrypt(
                Nonce::from_slice(&out),
                Payload {
                    msg,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| KeyhostError::MasterKey("cannot seal a stored value".into()))?;
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Decrypt what [`MasterKey::seal`] stored under the same `context`.
    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyhostError> {
        if sealed.len() < NONCE_LEN {
            return Err(KeyhostError::MasterKey("stored value is truncated".into()));
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let aad = format!("ghostpii/v1/stored|{context}");
        self.cipher()
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: aad.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| KeyhostError::MasterKey("stored value does not authenticate under this master key".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_unwrap_binds_the_column() {
        let mk = MasterKey::generate();
        let root = RootKey::generate();
        let w = mk.wrap(&root, "kh_x", 1, 2, 3).unwrap();
        assert!(!w.ciphertext.windows(32).any(|win| win == root.as_bytes()));
        let back = mk.unwrap(&w, "kh_x", 1, 2, 3).unwrap();
        assert_eq!(back.as_bytes(), root.as_bytes());
        assert!(mk.unwrap(&w, "kh_x", 1, 2, 4).is_err());
        assert!(mk.unwrap(&w, "kh_y", 1, 2, 3).is_err());
        assert!(MasterKey::generate().unwrap(&w, "kh_x", 1, 2, 3).is_err());
        assert_eq!(format!("{mk:?}"), "MasterKey(<redacted>)");
    }

    #[test]
    fn seal_open_binds_the_context() {
        let mk = MasterKey::generate();
        let sealed = mk.seal("a", b"secret answer").unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(mk.open("a", &sealed).unwrap().as_slice(), b"secret answer");
        assert!(mk.open("b", &sealed).is_err());
        assert!(MasterKey::generate().open("a", &sealed).is_err());
    }
}
