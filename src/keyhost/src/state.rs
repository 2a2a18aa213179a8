//! Shared state of a running keyhost and the bridge from async handlers to the database: a
//! small pool of connections (one on SQLite, whose writers are one at a time anyway; on
//! PostgreSQL `GHOSTPII_DB_CONNECTIONS`, default 4), each request taking one for the time it
//! needs it.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use crate::store::Connection;
use ed25519_dalek::SigningKey;
use zeroize::Zeroizing;

use crate::domain::auth_audit::{self, Refusals};
use crate::domain::auth_failures::AuthFailures;
use crate::domain::limits::Limits;
use crate::domain::linear_audit;
use crate::error::{ApiError, ApiResult, KeyhostError, Reason};
use crate::files::dir_lock::DirLock;
use crate::files::master_key::MasterKey;

/// State shared by all handlers. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

/// Connections not in use, and a condition to wait for one; and, for SQLite's group commit, the
/// batch of requests whose transactions wait for one commit.
struct Pool {
    free: Mutex<Vec<Connection>>,
    returned: Condvar,
    /// Threads waiting for a connection.
    waiting: std::sync::atomic::AtomicUsize,
    group: Mutex<Group>,
    committed: Condvar,
}

/// The group commit's batches: `epoch` counts the commits, `len` the requests of the open batch,
/// `failed` the error of the last commit if it failed.
#[derive(Default)]
struct Group {
    epoch: u64,
    len: usize,
    failed: Option<String>,
}

/// Most requests one group commit waits for.
const MAX_GROUP: usize = 64;

fn poisoned<T>(_: T) -> ApiError {
    ApiError::internal("database pool", &"a previous request panicked")
}

impl Pool {
    fn new(conns: Vec<Connection>) -> Pool {
        Pool {
            free: Mutex::new(conns),
            returned: Condvar::new(),
            waiting: Default::default(),
            group: Mutex::new(Group::default()),
            committed: Condvar::new(),
        }
    }

    fn take(&self) -> ApiResult<Connection> {
        use std::sync::atomic::Ordering;
        let mut free = self.free.lock().map_err(poisoned)?;
        if let Some(c) = free.pop() {
            return Ok(c);
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let got = loop {
            if let Some(c) = free.pop() {
                break Ok(c);
            }
            match self.returned.wait(free) {
                Ok(f) => free = f,
                Err(e) => break Err(poisoned(e)),
            }
        };
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        got
    }

    fn give(&self, c: Connection) {
        if let Ok(mut free) = self.free.lock() {
            free.push(c);
            self.returned.notify_one();
        }
    }

    /// After a request's work on `conn`: if transactions wait for a group commit, either leave
    /// the commit to the next request (one is waiting for the connection, the batch is not full)
    /// and wait for it, or commit the batch now and wake the requests of the batch. Returns once
    /// the request's transactions are committed (or their commit failed).
    fn settle(&self, lease: &mut Lease<'_>) -> ApiResult<()> {
        use std::sync::atomic::Ordering;
        let pending = lease.conn.as_ref().is_some_and(|c| c.group_pending());
        if !pending {
            return Ok(());
        }
        let mut group = self.group.lock().map_err(poisoned)?;
        if self.waiting.load(Ordering::SeqCst) > 0 && group.len + 1 < MAX_GROUP {
            group.len += 1;
            let epoch = group.epoch;
            if let Some(c) = lease.conn.take() {
                self.give(c);
            }
            while group.epoch == epoch {
                group = self.committed.wait(group).map_err(poisoned)?;
            }
            return match &group.failed {
                None => Ok(()),
                Some(e) => Err(ApiError::internal("group commit", e)),
            };
        }
        let res = lease.conn.as_ref().map_or(Ok(()), |c| c.group_commit());
        group.epoch += 1;
        group.len = 0;
        group.failed = res.as_ref().err().map(|e| e.to_string());
        self.committed.notify_all();
        drop(group);
        if let Err(e) = res {
            // In-memory state (the linear-audit cache) may have run ahead of the database: stop
            // rather than answer from it. Nothing of the batch was committed and none of its
            // answers left (they wait for this commit).
            eprintln!("ghostpii keyhost: an SQLite group commit failed, stopping: {e}");
            std::process::abort();
        }
        Ok(())
    }
}
/// A connection taken from the pool, given back when dropped (also when its user panics: an
/// open transaction is rolled back by its own guard first).
struct Lease<'p> {
    pool: &'p Pool,
    conn: Option<Connection>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            self.pool.give(c);
        }
    }
}

struct Inner {
    db: Pool,
    /// The PostgreSQL database (the sequencer leader opens a connection of its own); `None` on
    /// SQLite.
    database: Option<crate::store::Database>,
    sequencing: crate::domain::sequencer::Settings,
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
    /// The analysts' FHE server keys (`fhe_keys.rs`), in memory only.
    fhe_keys: crate::fhe_keys::FheKeys,
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
                db: Pool::new(vec![conn]),
                database: None,
                sequencing: crate::domain::sequencer::Settings::default(),
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
                fhe_keys: crate::fhe_keys::FheKeys::from_env(),
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

    /// This state with more connections in its pool, the PostgreSQL database they are on (for
    /// the sequencer leader) and the sequencer settings (before it is shared with a server).
    pub fn with_database(
        mut self,
        more: Vec<Connection>,
        database: Option<crate::store::Database>,
        sequencing: crate::domain::sequencer::Settings,
    ) -> Result<Self, KeyhostError> {
        let inner = Arc::get_mut(&mut self.inner)
            .ok_or_else(|| KeyhostError::Runtime("connections must be added before the state is shared".into()))?;
        inner
            .db
            .free
            .get_mut()
            .map_err(|_| KeyhostError::Runtime("database pool".into()))?
            .extend(more);
        inner.database = database;
        inner.sequencing = sequencing;
        Ok(self)
    }

    /// The analysts' FHE server keys.
    pub fn fhe_keys(&self) -> &crate::fhe_keys::FheKeys {
        &self.inner.fhe_keys
    }

    /// The PostgreSQL database of this keyhost (`None`: SQLite).
    pub fn database(&self) -> Option<&crate::store::Database> {
        self.inner.database.as_ref()
    }

    /// How the audit sequencer runs and what receipts promise.
    pub fn sequencing(&self) -> &crate::domain::sequencer::Settings {
        &self.inner.sequencing
    }

    /// Integrate the queued audit entries into the log (a read of the log does it first, so
    /// it sees every entry committed before it).
    pub fn integrate_audit(&self, conn: &mut Connection) -> ApiResult<()> {
        crate::domain::sequencer::integrate_all(conn, self.keyhost_id(), self.signer())?;
        Ok(())
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Counts of refused authentications not yet written (`auth_audit`).
    pub fn auth_refusals(&self) -> &Refusals {
        &self.inner.auth_refusals
    }

    /// Audit one refused authentication (bounded as `domain/auth_audit.rs` says).
    pub async fn record_refused_auth(
        &self,
        why: Reason,
        token_sha256_prefix: Option<String>,
        path: String,
    ) -> ApiResult<()> {
        let rows = self
            .auth_refusals()
            .note(Instant::now(), why, token_sha256_prefix, &path);
        if rows.is_empty() {
            return Ok(());
        }
        self.db(move |conn, _| auth_audit::write(conn, rows)).await
    }

    /// Write the repeat counts of refused authentications whose window ended (all of them when
    /// `everything`, at stop).
    pub fn flush_refused_auth(&self, everything: bool) -> ApiResult<()> {
        let rows = self.auth_refusals().flush(Instant::now(), everything);
        if rows.is_empty() {
            return Ok(());
        }
        self.with_db(|conn| auth_audit::write(conn, rows))
    }

    /// Failed-authentication buckets per client address (`http/rate_limit.rs`).
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

    /// Use a connection of the pool from the current (blocking) thread (waits for one).
    pub fn with_db<T>(&self, f: impl FnOnce(&mut Connection) -> ApiResult<T>) -> ApiResult<T> {
        let mut lease = Lease {
            pool: &self.inner.db,
            conn: Some(self.inner.db.take()?),
        };
        let out = f(lease.conn.as_mut().expect("taken above"));
        // with SQLite's group commit: nothing leaves before its transactions are committed
        self.inner.db.settle(&mut lease)?;
        out
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
