//! Small random secrets kept in their own files of the data dir (mode 0600), separate from the
//! master key and the column keys: `noise.key` (seeds DP noise) and `checkpoint.key` (the
//! Ed25519 key that signs audit checkpoints).

use std::io::Write;
use std::path::Path;

use rand::RngCore;
use zeroize::Zeroizing;

use crate::error::KeyhostError;

pub const NOISE_KEY_FILE: &str = "noise.key";
pub const CHECKPOINT_KEY_FILE: &str = "checkpoint.key";

/// Read the 32-byte secret at `path`, creating it with fresh OS randomness if missing.
pub fn load_or_create(path: &Path, what: &'static str) -> Result<Zeroizing<[u8; 32]>, KeyhostError> {
    if path.exists() {
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| KeyhostError::io(what, path, e))?);
        let arr: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            KeyhostError::Config(format!(
                "{} must hold exactly 32 bytes, it holds {}",
                path.display(),
                bytes.len()
            ))
        })?;
        return Ok(Zeroizing::new(arr));
    }
    let mut key = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(key.as_mut());
    let mut f = crate::files::create_private(path).map_err(|e| KeyhostError::io(what, path, e))?;
    f.write_all(key.as_ref())
        .and_then(|_| f.sync_all())
        .map_err(|e| KeyhostError::io(what, path, e))?;
    Ok(key)
}
