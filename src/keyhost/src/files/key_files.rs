//! The key files besides the master key (`noise.key`, `checkpoint.key`) are recorded in the
//! database by a check value, so that replicas on one PostgreSQL database cannot run with
//! different keys: different noise keys would give one request different DP noise on each
//! replica (averaging them defeats the noise), different checkpoint keys would sign one log
//! with several keys.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::KeyhostError;
use crate::store::{self, Connection};

pub const NOISE: &str = "noise_key_check";
pub const CHECKPOINT: &str = "checkpoint_key_check";

fn check_value(name: &str, key: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"ghostpii/v1/key-file-check|");
    h.update(name.as_bytes());
    h.update(b"|");
    h.update(key);
    hex::encode(h.finalize())
}

/// Record the key's check value on first use; later, refuse another key unless `replace`.
pub fn check(conn: &Connection, name: &str, path: &Path, key: &[u8], replace: bool) -> Result<(), KeyhostError> {
    let value = check_value(name, key);
    match store::meta_get(conn, name)? {
        Some(v) if v == value => Ok(()),
        Some(_) if !replace => Err(KeyhostError::Config(format!(
            "{} is not the key this keyhost's database was started with: every replica on one \
             database must hold the same key files (copy master.key, noise.key and checkpoint.key \
             from the data directory of the first replica)",
            path.display()
        ))),
        _ => Ok(store::meta_set(conn, name, &value)?),
    }
}
