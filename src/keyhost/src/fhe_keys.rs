//! The analysts' FHE server keys (`PUT /v1/fhe/server-key`), held in memory per identity.
//!
//! A key is the analyst's own (it encrypts nothing of the keyhost's): it is kept only to
//! evaluate that analyst's row-wise circuits (`answer_keys/compute.rs`), never written to
//! disk, and dropped after `ttl` without use. The keys together may hold at most `max_bytes`
//! of memory (a decompressed key is about three times its upload); an upload beyond that is
//! refused with `fhe_key_cache_full` rather than evicting another analyst's key.
//!
//! Settings from the environment, read when the keyhost starts: `GHOSTPII_FHE_KEY_TTL_SECS`
//! (default 3,600) and `GHOSTPII_FHE_KEYS_MAX_BYTES` (default 4 GiB).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use ghostpii_fhe::ServerKey;

use crate::error::{reason, ApiError, ApiResult};

/// Default lifetime of an unused key.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// Default memory of all keys together.
pub const DEFAULT_MAX_BYTES: usize = 4 << 30;

struct Slot {
    key: Arc<ServerKey>,
    expires: Instant,
}

/// The cache.
pub struct FheKeys {
    slots: Mutex<HashMap<i64, Slot>>,
    ttl: Duration,
    max_bytes: usize,
}

impl Default for FheKeys {
    fn default() -> Self {
        FheKeys::new(DEFAULT_TTL, DEFAULT_MAX_BYTES)
    }
}

impl FheKeys {
    pub fn new(ttl: Duration, max_bytes: usize) -> Self {
        FheKeys {
            slots: Mutex::new(HashMap::new()),
            ttl,
            max_bytes,
        }
    }

    /// The settings of the environment (see the module doc); unparsable values are ignored.
    pub fn from_env() -> Self {
        let num = |name: &str| std::env::var(name).ok().and_then(|v| v.trim().parse::<u64>().ok());
        FheKeys::new(
            num("GHOSTPII_FHE_KEY_TTL_SECS").map_or(DEFAULT_TTL, Duration::from_secs),
            num("GHOSTPII_FHE_KEYS_MAX_BYTES").map_or(DEFAULT_MAX_BYTES, |b| b as usize),
        )
    }

    /// How long a key lives without use.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a key of `bytes` uploaded bytes may be stored for `identity` (its previous key
    /// would be replaced): refused with `fhe_key_cache_full` if it does not fit.
    pub fn check_room(&self, identity: i64, bytes: usize) -> ApiResult<()> {
        let mut slots = self.slots();
        let now = Instant::now();
        slots.retain(|_, s| s.expires > now);
        let used: usize = slots
            .iter()
            .filter(|(id, _)| **id != identity)
            .map(|(_, s)| s.key.memory())
            .sum();
        let need = bytes.saturating_mul(3);
        if used.saturating_add(need) > self.max_bytes {
            return Err(ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                reason::FHE_KEY_CACHE_FULL,
                format!(
                    "the keyhost holds {used} bytes of FHE server keys of other identities and a key of {bytes} bytes \
                     needs about {need} more, over its limit of {} (GHOSTPII_FHE_KEYS_MAX_BYTES); try again when \
                     other sessions' keys have expired, or ask the keyhost's administrator to raise the limit",
                    self.max_bytes
                ),
            ));
        }
        Ok(())
    }

    /// Store `key` for `identity` (replacing its previous one), after [`FheKeys::check_room`]
    /// (checked again here, under the same lock as the insertion).
    pub fn insert(&self, identity: i64, key: ServerKey) -> ApiResult<()> {
        self.check_room(identity, key.uploaded())?;
        self.slots().insert(
            identity,
            Slot {
                key: Arc::new(key),
                expires: Instant::now() + self.ttl,
            },
        );
        Ok(())
    }

    /// The key of `identity`, its lifetime renewed; refused with `fhe_key_missing` if there is
    /// none (never uploaded, expired, or the keyhost restarted).
    pub fn get(&self, identity: i64) -> ApiResult<Arc<ServerKey>> {
        let mut slots = self.slots();
        let now = Instant::now();
        match slots.get_mut(&identity) {
            Some(s) if s.expires > now => {
                s.expires = now + self.ttl;
                Ok(s.key.clone())
            }
            _ => {
                slots.remove(&identity);
                Err(ApiError::new(
                    StatusCode::CONFLICT,
                    reason::FHE_KEY_MISSING,
                    "this keyhost holds no FHE server key of yours (never uploaded, unused for longer than its \
                     lifetime, or the keyhost restarted); upload it with PUT /v1/fhe/server-key \
                     (Session.fhe_keys() does it) and send the computation again",
                ))
            }
        }
    }

    /// Drop the key of `identity`, if any.
    pub fn remove(&self, identity: i64) {
        self.slots().remove(&identity);
    }
}
