//! The keyhost's database: the storage interface ([`Connection`], [`Transaction`],
//! [`params!`]) over two backends, SQLite (a file in the data directory, the default) and
//! PostgreSQL (shared by replicas), and the schema, in one place.
//!
//! Writing SQL for both backends: use `?1`-style placeholders (translated to `$1` for
//! PostgreSQL), the column types `INTEGER`, `REAL`, `TEXT`, `BLOB` in DDL (translated by
//! [`postgres::ddl`]), `INSERT .. ON CONFLICT (..) DO NOTHING / DO UPDATE SET x = excluded.x`
//! instead of `INSERT OR IGNORE / OR REPLACE`, `INSERT .. RETURNING id` instead of
//! `last_insert_rowid()`, `CAST(SUM(x) AS INTEGER)` only where a sum must stay an integer
//! (PostgreSQL's `SUM` of integers is `numeric`, which the interface reads back as an
//! integer when it has no fraction), and quote the audit table's `"column"`. A module
//! that needs a new table appends its `CREATE TABLE IF NOT EXISTS` to [`SCHEMA`] below (or
//! keeps it in its own constant and calls [`create_tables`] from [`migrate`]). Every write
//! that must see a consistent state runs in a transaction: `conn.transaction()` for
//! administrative and schema writes (on PostgreSQL it takes the keyhost-wide write lock
//! exclusively), `conn.transaction_scoped(&[lock_key(..)])` for answers and rid allocations
//! (on PostgreSQL the write lock shared plus one advisory lock per identity × dataset or per
//! dataset, so writers of different keys do not wait for each other).

mod connection;
pub mod postgres;
mod sqlite;
mod value;

use std::path::{Path, PathBuf};

pub use connection::{get0, Connection, OptionalExtension, Rows, Statement, Transaction};
pub use value::{FromSql, Params, Row, ToSql, Value};

/// `params![a, b, ..]`: parameters of mixed types for one statement.
#[macro_export]
macro_rules! params {
    () => {
        &[] as &[&dyn $crate::db::ToSql]
    };
    ($($p:expr),+ $(,)?) => {
        &[$(&$p as &dyn $crate::db::ToSql),+] as &[&dyn $crate::db::ToSql]
    };
}
pub use crate::params;

/// An error of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the query returned no rows")]
    NoRows,
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("postgresql: {}", pg_message(.0))]
    Postgres(#[from] ::postgres::Error),
    #[error("stored value: {0}")]
    Conversion(String),
    #[error("{0}")]
    Schema(String),
    #[error("the operating system's randomness failed: {0}")]
    Randomness(String),
}

fn pg_message(e: &::postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{} ({})", d.message(), d.code().code()),
        None => e.to_string(),
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Which engine a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where the keyhost's state lives.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    /// An SQLite file (`DIR/keyhost.db` by default).
    Sqlite(PathBuf),
    /// A PostgreSQL connection string (`postgresql://user@host:port/db` or `host=.. dbname=..`).
    Postgres(String),
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.describe())
    }
}

impl Database {
    /// A PostgreSQL connection string as given to `--database`.
    pub fn postgres(url: impl Into<String>) -> Self {
        Database::Postgres(url.into())
    }

    /// For messages: the file, or the connection string without its password.
    pub fn describe(&self) -> String {
        match self {
            Database::Sqlite(p) => p.display().to_string(),
            Database::Postgres(url) => match url.parse::<::postgres::Config>().ok() {
                Some(c) => format!(
                    "PostgreSQL database '{}' on {:?}",
                    c.get_dbname().unwrap_or("(default)"),
                    c.get_hosts()
                ),
                None => "PostgreSQL (unparsable connection string)".into(),
            },
        }
    }
}

/// Open (creating an SQLite file if needed) the database.
pub fn open(db: &Database) -> Result<Connection> {
    match db {
        Database::Sqlite(p) => Ok(Connection::sqlite(sqlite::Sqlite::open(p)?)),
        Database::Postgres(url) => Ok(Connection::postgres(postgres::Postgres::connect(url)?)),
    }
}

/// Open an existing database for reading (offline audit verification).
pub fn open_read_only(db: &Database) -> Result<Connection> {
    match db {
        Database::Sqlite(p) => Ok(Connection::sqlite(sqlite::Sqlite::open_read_only(p)?)),
        Database::Postgres(url) => Ok(Connection::postgres(postgres::Postgres::connect(url)?)),
    }
}

/// Held while a keyhost starts: on PostgreSQL a session advisory lock (released when the
/// guard's connection closes), so replicas bootstrap, migrate and create key files one at
/// a time. Nothing on SQLite (the data directory's exclusive lock does it).
pub struct StartupLock {
    _conn: Option<Connection>,
}

pub fn startup_lock(db: &Database) -> Result<StartupLock> {
    match db {
        Database::Sqlite(_) => Ok(StartupLock { _conn: None }),
        Database::Postgres(url) => {
            let conn = Connection::postgres(postgres::Postgres::connect(url)?);
            conn.execute_batch(&format!("SELECT pg_advisory_lock({})", postgres::STARTUP_LOCK))?;
            Ok(StartupLock { _conn: Some(conn) })
        }
    }
}

/// What a scoped lock protects (see [`lock_key`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockScope {
    /// The state of one identity on one dataset: its budget ledger and charges, the linear
    /// audit, answered score vectors, distinct constants of the dataset's columns.
    IdentityDataset,
    /// The row-id counter of one dataset.
    DatasetRids,
    /// One idempotency key of one identity.
    Idempotency,
}

/// The advisory lock key of `(scope, a, b)`: the first 8 bytes of SHA-256 over a tag, the scope
/// and both numbers (two scopes or pairs that collide only wait for each other needlessly).
pub fn lock_key(scope: LockScope, a: i64, b: i64) -> i64 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"ghostpii/v1/lock\0");
    h.update([scope as u8]);
    h.update(a.to_le_bytes());
    h.update(b.to_le_bytes());
    let d = h.finalize();
    i64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

/// The lock key of an idempotency key of an identity.
pub fn idempotency_lock_key(identity_id: i64, key: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(key.as_bytes());
    lock_key(
        LockScope::Idempotency,
        identity_id,
        i64::from_be_bytes(d[..8].try_into().expect("8 bytes")),
    )
}

/// Open an SQLite file (the embedded default).
pub fn open_sqlite(path: &Path) -> Result<Connection> {
    open(&Database::Sqlite(path.to_path_buf()))
}

/// Version 2 added the `score`, `moments`, `match`, `group` and `link` grant operations and their
/// tables. A version-1 database is refused at start (there is no upgrade path yet: its grants
/// table's CHECK constraint would refuse the new operations). Version 3 scoped dataset and join
/// domain names per owner (`UNIQUE (owner_id, name)`), added owner-managed identities
/// (`identities.manager_id`, `identity_shares`), join-domain membership and the audit readers
/// index (`orgs.rs`), and the `search` operation to the grants' CHECK constraint; older databases
/// are refused the same way.
pub const SCHEMA_VERSION: i64 = 3;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS identities (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    role       TEXT NOT NULL CHECK (role IN ('admin', 'owner', 'member')),
    created_at INTEGER NOT NULL,
    -- the owner that created and manages this identity (NULL: created by an admin, keyhost-wide)
    manager_id INTEGER REFERENCES identities(id)
);
CREATE TABLE IF NOT EXISTS tokens (
    id          INTEGER PRIMARY KEY,
    identity_id INTEGER NOT NULL REFERENCES identities(id),
    hash        TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    revoked_at  INTEGER
);
CREATE INDEX IF NOT EXISTS tokens_identity ON tokens(identity_id);
CREATE TABLE IF NOT EXISTS datasets (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    owner_id   INTEGER NOT NULL REFERENCES identities(id),
    next_rid   INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL,
    UNIQUE (owner_id, name)
);
CREATE TABLE IF NOT EXISTS columns (
    id            INTEGER PRIMARY KEY,
    dataset_id    INTEGER NOT NULL REFERENCES datasets(id),
    name          TEXT NOT NULL,
    dtype         TEXT NOT NULL,
    scale         INTEGER NOT NULL,
    bounds_lo     INTEGER,
    bounds_hi     INTEGER,
    facets        TEXT NOT NULL,
    meta          TEXT,
    ord_offset    INTEGER,
    ord_bits      INTEGER,
    current_epoch INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    UNIQUE (dataset_id, name)
);
CREATE TABLE IF NOT EXISTS column_epochs (
    column_id  INTEGER NOT NULL REFERENCES columns(id),
    epoch      INTEGER NOT NULL,
    key_nonce  BLOB NOT NULL,
    key_sealed BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (column_id, epoch)
);
CREATE TABLE IF NOT EXISTS rid_ranges (
    id        INTEGER PRIMARY KEY,
    column_id INTEGER NOT NULL REFERENCES columns(id),
    start     INTEGER NOT NULL,
    count     INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS rid_ranges_column ON rid_ranges(column_id);
CREATE TABLE IF NOT EXISTS grants (
    id          INTEGER PRIMARY KEY,
    identity_id INTEGER NOT NULL REFERENCES identities(id),
    dataset_id  INTEGER NOT NULL REFERENCES datasets(id),
    column_name TEXT NOT NULL,
    operation   TEXT NOT NULL CHECK (operation IN ('decrypt', 'aggregate', 'compare', 'score', 'moments', 'match', 'search', 'group', 'link', 'compute')),
    params      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE INDEX IF NOT EXISTS grants_lookup ON grants(identity_id, dataset_id, column_name);
CREATE TABLE IF NOT EXISTS audit (
    idx        INTEGER PRIMARY KEY,
    time       INTEGER NOT NULL,
    identity   TEXT,
    dataset    TEXT,
    "column"   TEXT,
    operation  TEXT NOT NULL,
    params     TEXT NOT NULL,
    rid_count  INTEGER,
    rid_digest TEXT,
    decision   TEXT NOT NULL,
    reason     TEXT,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL,
    salt       TEXT NOT NULL DEFAULT ''
);
-- Distinct comparison constants issued per identity and column (for max_constants).
CREATE TABLE IF NOT EXISTS issued_constants (
    identity_id INTEGER NOT NULL REFERENCES identities(id),
    column_id   INTEGER NOT NULL REFERENCES columns(id),
    constant    INTEGER NOT NULL,
    first_audit INTEGER NOT NULL,
    PRIMARY KEY (identity_id, column_id, constant)
);
-- Privacy budget ledger per identity x dataset: sums of the answers' (epsilon, delta, rho) and
-- the total (epsilon, delta) an owner or admin set (NULL: grant budget or keyhost default).
CREATE TABLE IF NOT EXISTS budget_ledger (
    identity_id   INTEGER NOT NULL REFERENCES identities(id),
    dataset_id    INTEGER NOT NULL REFERENCES datasets(id),
    epsilon_sum   REAL NOT NULL DEFAULT 0,
    delta_sum     REAL NOT NULL DEFAULT 0,
    rho_sum       REAL NOT NULL DEFAULT 0,
    answers       INTEGER NOT NULL DEFAULT 0,
    total_epsilon REAL,
    total_delta   REAL,
    PRIMARY KEY (identity_id, dataset_id)
);
-- Each distinct DP request charged once (repeats return the same noise and cost nothing).
CREATE TABLE IF NOT EXISTS budget_charges (
    identity_id INTEGER NOT NULL REFERENCES identities(id),
    dataset_id  INTEGER NOT NULL REFERENCES datasets(id),
    request     TEXT NOT NULL,
    epsilon     REAL NOT NULL,
    delta       REAL NOT NULL,
    rho         REAL NOT NULL,
    audit_index INTEGER NOT NULL,
    PRIMARY KEY (identity_id, dataset_id, request)
);
-- Linear audit of exact sums per identity x dataset (see linear_audit/): the encoded state and a
-- generation that in-memory caches must match.
CREATE TABLE IF NOT EXISTS linear_audit (
    identity_id INTEGER NOT NULL REFERENCES identities(id),
    dataset_id  INTEGER NOT NULL REFERENCES datasets(id),
    generation  INTEGER NOT NULL,
    answered    INTEGER NOT NULL,
    state       BLOB NOT NULL,
    PRIMARY KEY (identity_id, dataset_id)
);
-- Weight vectors of score answer keys that enlarged the span of those answered per identity x
-- dataset (score_span.rs): `vector` is `column_id:weight,...` sorted by column id.
CREATE TABLE IF NOT EXISTS score_vectors (
    identity_id INTEGER NOT NULL REFERENCES identities(id),
    dataset_id  INTEGER NOT NULL REFERENCES datasets(id),
    vector      TEXT NOT NULL,
    first_audit INTEGER NOT NULL,
    PRIMARY KEY (identity_id, dataset_id, vector)
);
-- Evaluations of row-wise circuits (answer_keys/compute.rs) per identity x column x row, the
-- count that compute grants' max_evaluations bounds.
CREATE TABLE IF NOT EXISTS compute_evaluations (
    identity_id INTEGER NOT NULL REFERENCES identities(id),
    column_id   INTEGER NOT NULL REFERENCES columns(id),
    rid         INTEGER NOT NULL,
    count       INTEGER NOT NULL,
    PRIMARY KEY (identity_id, column_id, rid)
);
"#;

/// DDL written for SQLite (see the module doc), as this connection's backend needs it.
pub fn ddl(backend: Backend, sqlite_ddl: &str) -> String {
    match backend {
        Backend::Sqlite => sqlite_ddl.to_owned(),
        Backend::Postgres => postgres::ddl(sqlite_ddl),
    }
}

/// Create the tables of `sqlite_ddl` (`CREATE TABLE IF NOT EXISTS ..`) on this backend.
pub fn create_tables(conn: &Connection, sqlite_ddl: &str) -> Result<()> {
    conn.execute_batch(&ddl(conn.backend(), sqlite_ddl))
}

/// Create the tables if they do not exist and record the schema version, in one transaction
/// (on PostgreSQL under the write lock, so replicas starting together do not race). A
/// database written with another schema version is refused (no upgrade path is written yet;
/// see [`SCHEMA_VERSION`]).
pub fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn.transaction()?;
    create_tables(&tx, SCHEMA)?;
    crate::idempotency::migrate(&tx)?;
    crate::audit::migrate(&tx)?;
    crate::join_domains::migrate(&tx)?;
    crate::populations::migrate(&tx)?;
    crate::orgs::migrate(&tx)?;
    if let Some(v) = meta_get(&tx, "schema_version")? {
        if v != SCHEMA_VERSION.to_string() {
            return Err(Error::Schema(format!(
                "the keyhost database has schema version {v}; this keyhost reads version {SCHEMA_VERSION}"
            )));
        }
    }
    meta_set(&tx, "schema_version", &SCHEMA_VERSION.to_string())?;
    tx.commit()
}

pub fn meta_get(conn: &Connection, key: &str) -> Result<Option<String>> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], get0)
        .optional()
}

pub fn meta_set(conn: &Connection, key: &str, value: &str) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    )?
    .execute([key, value])?;
    Ok(())
}
