//! Shared state of a running keyhost and the bridge from async handlers to SQLite.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::db::Connection;
use ed25519_dalek::SigningKey;
use zeroize::Zeroizing;

use crate::auth_audit::Refusals;
use crate::dir_lock::DirLock;
use crate::error::{ApiError, ApiResult, KeyhostError};
use crate::limits::Limits;
use crate::linear_audit;
use crate::master_key::MasterKey;
use crate::rate_limit::AuthFailures;

/// State shared by all handlers. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    db: Mutex<Connection>,
    master: MasterKey,
    keyhost_id: String,
    data_dir: PathBuf,
    noise_key: Zeroizing<[u8; 32]>,
    signer: SigningKey,
    audits: linear_audit::Cache,
    /// Cached block sums of masks (`ghostpii_core::mask_blocks`): derived from keys, not state.
    masks: ghostpii_core::mask_blocks::MaskCache,
    _dir_lock: DirLock,
    limits: Limits,
    auth_refusals: Refusals,
    auth_failures: AuthFailures,
}

/// Secrets of a keyhost besides its master key.
pub struct Secrets {
    /// Seeds the DP noise of answer keys (`dp`).
    pub noise_key: Zeroizing<[u8; 32]>,
    /// Signs audit checkpoints (`checkpoint`).
    pub signer: SigningKey,
}

impl AppState {
    pub fn new(
        conn: Connection,
        master: MasterKey,
        keyhost_id: String,
        data_dir: PathBuf,
        secrets: Secrets,
        dir_lock: DirLock,
    ) -> Self {
        AppState {
            inner: Arc::new(Inner {
                db: Mutex::new(conn),
                master,
                keyhost_id,
                data_dir,
                noise_key: secrets.noise_key,
                signer: secrets.signer,
                audits: linear_audit::Cache::default(),
                masks: Default::default(),
                _dir_lock: dir_lock,
                limits: Limits::default(),
                auth_refusals: Refusals::default(),
                auth_failures: AuthFailures::default(),
            }),
        }
    }

    /// This state with `limits` in force (before it is shared with a server).
    pub fn with_limits(mut self, limits: Limits) -> Result<Self, KeyhostError> {
        let inner = Arc::get_mut(&mut self.inner)
            .ok_or_else(|| KeyhostError::Runtime("limits must be set before the state is shared".into()))?;
        inner.limits = limits;
        Ok(self)
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Counts of refused authentications not yet written (`auth_audit`).
    pub fn auth_refusals(&self) -> &Refusals {
        &self.inner.auth_refusals
    }

    /// Failed-authentication buckets per client address (`rate_limit`).
    pub fn auth_failures(&self) -> &AuthFailures {
        &self.inner.auth_failures
    }

    pub fn noise_key(&self) -> &[u8] {
        self.inner.noise_key.as_ref()
    }

    pub fn signer(&self) -> &SigningKey {
        &self.inner.signer
    }

    /// Decoded linear-audit states (see `linear_audit`).
    pub fn audit_cache(&self) -> &linear_audit::Cache {
        &self.inner.audits
    }

    /// Cached block sums of masks, per column epoch key (in memory only, bounded).
    pub fn mask_cache(&self) -> &ghostpii_core::mask_blocks::MaskCache {
        &self.inner.masks
    }

    pub fn keyhost_id(&self) -> &str {
        &self.inner.keyhost_id
    }

    pub fn master(&self) -> &MasterKey {
        &self.inner.master
    }

    pub fn data_dir(&self) -> &std::path::Path {
        &self.inner.data_dir
    }

    /// Run `f` with the database connection on the blocking thread pool.
    pub async fn db<T, F>(&self, f: F) -> ApiResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &AppState) -> ApiResult<T> + Send + 'static,
    {
        let state = self.clone();
        self.blocking(move || state.with_db(|conn| f(conn, &state))).await
    }

    /// Use the connection from the current (blocking) thread.
    pub fn with_db<T>(&self, f: impl FnOnce(&mut Connection) -> ApiResult<T>) -> ApiResult<T> {
        let mut guard = self
            .inner
            .db
            .lock()
            .map_err(|_| ApiError::internal("database lock", &"a previous request panicked"))?;
        f(&mut guard)
    }

    /// Run CPU-bound work off the async runtime.
    pub async fn blocking<T, F>(&self, f: F) -> ApiResult<T>
    where
        T: Send + 'static,
        F: FnOnce() -> ApiResult<T> + Send + 'static,
    {
        match tokio::task::spawn_blocking(f).await {
            Ok(r) => r,
            Err(e) => Err(ApiError::internal("blocking task", &e)),
        }
    }
}
