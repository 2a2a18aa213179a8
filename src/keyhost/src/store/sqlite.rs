//! The SQLite backend: one `rusqlite` connection (WAL, foreign keys, busy timeout).
//!
//! **Group commit.** With [`Sqlite::set_group_commit`] on (the keyhost's own connection), a
//! transaction does not commit by itself: the first one opens an outer transaction
//! (`BEGIN IMMEDIATE`) and each is a savepoint in it (`SAVEPOINT` … `RELEASE`, or `ROLLBACK TO`
//! when it fails, so a failed one leaves nothing behind); the pool (`state.rs`) commits the outer
//! transaction once for the requests that ran in it, and only then lets their answers leave.

use std::cell::Cell;
use std::path::Path;
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};

use super::value::{Row, Value};
use super::Result;

pub(super) struct Sqlite {
    pub(super) conn: rusqlite::Connection,
    /// Group commit on (see the module docs).
    group: Cell<bool>,
    /// An outer transaction of a group commit is open.
    outer: Cell<bool>,
}

/// `PRAGMA synchronous` of the keyhost's database: `GHOSTPII_SQLITE_SYNCHRONOUS` (`NORMAL`, the
/// default, or `FULL`; see `docs/keyhost.md`, "Durability").
pub const SYNCHRONOUS_ENV: &str = "GHOSTPII_SQLITE_SYNCHRONOUS";

fn synchronous() -> Result<&'static str> {
    match std::env::var(SYNCHRONOUS_ENV).map(|v| v.trim().to_ascii_uppercase()) {
        Err(_) => Ok("NORMAL"),
        Ok(v) if v == "NORMAL" => Ok("NORMAL"),
        Ok(v) if v == "FULL" => Ok("FULL"),
        Ok(v) => Err(super::Error::Schema(format!(
            "{SYNCHRONOUS_ENV}={v}: the keyhost runs SQLite with NORMAL or FULL"
        ))),
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Integer(i) => ValueRef::Integer(*i),
            Value::Real(f) => ValueRef::Real(*f),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

fn value(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

impl Sqlite {
    /// Open (creating if needed) the database file with the keyhost's settings.
    pub(super) fn open(path: &Path) -> Result<Sqlite> {
        let conn = rusqlite::Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", synchronous()?)?;
        conn.pragma_update(None, "foreign_keys", true)?;
        Ok(Sqlite {
            conn,
            group: Cell::new(false),
            outer: Cell::new(false),
        })
    }

    /// Open an existing file read-only (offline audit verification).
    pub(super) fn open_read_only(path: &Path) -> Result<Sqlite> {
        let conn = rusqlite::Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(10))?;
        Ok(Sqlite {
            conn,
            group: Cell::new(false),
            outer: Cell::new(false),
        })
    }

    pub(super) fn set_group_commit(&self, on: bool) {
        self.group.set(on);
    }

    /// An outer transaction of a group commit is open (its savepoints are not committed yet).
    pub(super) fn group_pending(&self) -> bool {
        self.outer.get()
    }

    /// Commit the outer transaction of a group commit.
    pub(super) fn group_commit(&self) -> Result<()> {
        if !self.outer.get() {
            return Ok(());
        }
        let res = self.batch("COMMIT");
        if res.is_err() {
            let _ = self.batch("ROLLBACK");
        }
        self.outer.set(false);
        res
    }

    /// Begin a transaction: `begin` (`BEGIN DEFERRED`, `BEGIN IMMEDIATE`), or with group commit a
    /// savepoint in the outer transaction (opened if needed).
    pub(super) fn begin(&self, begin: &str) -> Result<()> {
        if !self.group.get() {
            return self.batch(begin);
        }
        if !self.outer.get() {
            self.batch("BEGIN IMMEDIATE")?;
            self.outer.set(true);
        }
        self.batch("SAVEPOINT ghostpii_tx")
    }

    /// End a transaction begun with [`Sqlite::begin`].
    pub(super) fn end(&self, commit: bool) -> Result<()> {
        match (self.outer.get(), commit) {
            (false, true) => self.batch("COMMIT"),
            (false, false) => self.batch("ROLLBACK"),
            (true, true) => self.batch("RELEASE ghostpii_tx"),
            (true, false) => self.batch("ROLLBACK TO ghostpii_tx; RELEASE ghostpii_tx"),
        }
    }

    pub(super) fn execute(&self, sql: &str, params: &[Value]) -> Result<usize> {
        Ok(self
            .conn
            .prepare_cached(sql)?
            .execute(rusqlite::params_from_iter(params.iter()))?)
    }

    pub(super) fn query(&self, sql: &str, params: &[Value], each: &mut dyn FnMut(Row) -> Result<bool>) -> Result<()> {
        let mut st = self.conn.prepare_cached(sql)?;
        let n = st.column_count();
        let mut rows = st.query(rusqlite::params_from_iter(params.iter()))?;
        while let Some(r) = rows.next()? {
            let values = (0..n)
                .map(|i| r.get_ref(i).map(value))
                .collect::<rusqlite::Result<_>>()?;
            if !each(Row { values })? {
                break;
            }
        }
        Ok(())
    }

    pub(super) fn batch(&self, sql: &str) -> Result<()> {
        Ok(self.conn.execute_batch(sql)?)
    }
}
