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
//! integer when it has no fraction), and quote the audit table's `"column"`. Every table
//! is defined in `schema.rs`, which [`migrate`] creates at start: a module that needs a new table
//! adds its `CREATE TABLE IF NOT EXISTS` there. Every write
//! that must see a consistent state runs in a transaction: `conn.transaction()` for
//! administrative and schema writes (on PostgreSQL it takes the keyhost-wide write lock
//! exclusively), `conn.transaction_scoped(&[lock_key(..)])` for answers and rid allocations
//! (on PostgreSQL the write lock shared plus one advisory lock per identity × dataset or per
//! dataset, so writers of different keys do not wait for each other).

mod connection;
pub mod postgres;
mod schema;
mod sqlite;
mod value;

use std::path::{Path, PathBuf};

pub use connection::{get0, Connection, OptionalExtension, Rows, Statement, Transaction};
pub use schema::{migrate, SCHEMA_VERSION};
pub use value::{FromSql, Params, Row, ToSql, Value};

/// `params![a, b, ..]`: parameters of mixed types for one statement.
#[macro_export]
macro_rules! params {
    () => {
        &[] as &[&dyn $crate::store::ToSql]
    };
    ($($p:expr),+ $(,)?) => {
        &[$(&$p as &dyn $crate::store::ToSql),+] as &[&dyn $crate::store::ToSql]
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
