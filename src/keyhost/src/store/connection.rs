//! [`Connection`], [`Transaction`] and [`Statement`]: the storage interface every module uses,
//! over SQLite or PostgreSQL. The method names follow `rusqlite`'s.

use std::ops::Deref;

use super::postgres::Postgres;
use super::sqlite::Sqlite;
use super::value::{FromSql, Params, Row, Value};
use super::{Backend, Error, Result};

enum Engine {
    Sqlite(Sqlite),
    Postgres(Box<Postgres>),
}

/// A connection to the keyhost's database (one per keyhost process).
pub struct Connection {
    engine: Engine,
}

/// The rows of a query, read in full.
pub type Rows<T> = std::vec::IntoIter<Result<T>>;

impl Connection {
    pub(super) fn sqlite(s: Sqlite) -> Self {
        Connection {
            engine: Engine::Sqlite(s),
        }
    }

    pub(super) fn postgres(p: Postgres) -> Self {
        Connection {
            engine: Engine::Postgres(Box::new(p)),
        }
    }

    pub fn backend(&self) -> Backend {
        match self.engine {
            Engine::Sqlite(_) => Backend::Sqlite,
            Engine::Postgres(_) => Backend::Postgres,
        }
    }

    fn run_query(&self, sql: &str, params: &[Value], each: &mut dyn FnMut(Row) -> Result<bool>) -> Result<()> {
        match &self.engine {
            Engine::Sqlite(s) => s.query(sql, params, each),
            Engine::Postgres(p) => p.query(sql, params, each),
        }
    }

    /// Run a statement; the number of rows it changed.
    pub fn execute(&self, sql: &str, params: impl Params) -> Result<usize> {
        let values = params.values()?;
        match &self.engine {
            Engine::Sqlite(s) => s.execute(sql, &values),
            Engine::Postgres(p) => p.execute(sql, &values),
        }
    }

    /// The first row mapped by `f`, or [`Error::NoRows`].
    pub fn query_row<T>(&self, sql: &str, params: impl Params, f: impl FnOnce(&Row) -> Result<T>) -> Result<T> {
        let values = params.values()?;
        let mut first = None;
        self.run_query(sql, &values, &mut |r| {
            first = Some(r);
            Ok(false)
        })?;
        match first {
            Some(r) => f(&r),
            None => Err(Error::NoRows),
        }
    }

    /// Every row mapped by `f`.
    pub fn query_map<T>(
        &self,
        sql: &str,
        params: impl Params,
        mut f: impl FnMut(&Row) -> Result<T>,
    ) -> Result<Rows<T>> {
        let values = params.values()?;
        let mut out = Vec::new();
        self.run_query(sql, &values, &mut |r| {
            out.push(f(&r));
            Ok(true)
        })?;
        Ok(out.into_iter())
    }

    /// A statement to run (prepared and cached by SQL text on first use).
    pub fn prepare(&self, sql: &str) -> Result<Statement<'_>> {
        Ok(Statement {
            conn: self,
            sql: sql.to_owned(),
        })
    }

    /// Same as [`Connection::prepare`] (both backends cache prepared statements).
    pub fn prepare_cached(&self, sql: &str) -> Result<Statement<'_>> {
        self.prepare(sql)
    }

    /// Run several statements without parameters.
    pub fn execute_batch(&self, sql: &str) -> Result<()> {
        match &self.engine {
            Engine::Sqlite(s) => s.batch(sql),
            Engine::Postgres(p) => p.batch(sql),
        }
    }

    /// Begin a transaction, rolled back unless committed. On PostgreSQL it first takes the
    /// keyhost's write lock (`postgres::WRITE_LOCK`) exclusively, so it runs alone among the
    /// writers of all replicas and sees everything committed before it. For administrative and
    /// schema writes; answers and rid allocations use [`Connection::transaction_scoped`].
    pub fn transaction(&mut self) -> Result<Transaction<'_>> {
        match &self.engine {
            Engine::Sqlite(s) => s.begin("BEGIN DEFERRED")?,
            Engine::Postgres(p) => p.begin()?,
        }
        Ok(Transaction {
            conn: self,
            done: false,
        })
    }

    /// Begin a transaction that writes only state under `keys` (see [`super::lock_key`]): on
    /// PostgreSQL it takes the write lock shared and each key's advisory lock exclusively, so
    /// transactions of other keys (other identities × datasets, other datasets' rids) run at the
    /// same time, and an administrative transaction waits for all of them. Audit entries it
    /// writes go to the queue (`audit`), which needs no lock. On SQLite, the same as
    /// [`Connection::transaction`] (one writer at a time).
    pub fn transaction_scoped(&mut self, keys: &[i64]) -> Result<Transaction<'_>> {
        match &self.engine {
            Engine::Sqlite(s) => s.begin("BEGIN DEFERRED")?,
            Engine::Postgres(p) => p.begin_scoped(keys)?,
        }
        Ok(Transaction {
            conn: self,
            done: false,
        })
    }

    /// Begin the transaction of a sequencer batch (`sequencer`): on PostgreSQL it takes
    /// `postgres::SEQUENCER_LOCK`, so one batch integrates the audit queue at a time.
    pub fn transaction_sequencer(&mut self) -> Result<Transaction<'_>> {
        match &self.engine {
            Engine::Sqlite(s) => s.begin("BEGIN IMMEDIATE")?,
            Engine::Postgres(p) => p.begin_sequencer()?,
        }
        Ok(Transaction {
            conn: self,
            done: false,
        })
    }

    /// Begin a read-only transaction whose statements all see one snapshot of the database, for
    /// checks that read several tables while other connections (other replicas, the sequencer,
    /// a live keyhost beside an offline check) keep committing. PostgreSQL: `REPEATABLE READ
    /// READ ONLY`; SQLite: a deferred transaction (in WAL mode its first read fixes the
    /// snapshot). Takes no write lock.
    pub fn snapshot(&mut self) -> Result<Transaction<'_>> {
        match &self.engine {
            Engine::Sqlite(s) => s.begin("BEGIN DEFERRED")?,
            Engine::Postgres(p) => p.begin_snapshot()?,
        }
        Ok(Transaction {
            conn: self,
            done: false,
        })
    }

    fn end(&self, commit: bool) -> Result<()> {
        match &self.engine {
            Engine::Sqlite(s) => s.end(commit),
            Engine::Postgres(p) => p.end(commit),
        }
    }

    /// Group commit (SQLite only; see `db::sqlite`): transactions become savepoints of an
    /// outer transaction that [`Connection::group_commit`] commits. Nothing on PostgreSQL, whose
    /// concurrent commits share WAL flushes by themselves.
    pub fn set_group_commit(&self, on: bool) {
        if let Engine::Sqlite(s) = &self.engine {
            s.set_group_commit(on);
        }
    }

    /// Transactions ran since the last group commit and are not committed yet.
    pub fn group_pending(&self) -> bool {
        match &self.engine {
            Engine::Sqlite(s) => s.group_pending(),
            Engine::Postgres(_) => false,
        }
    }

    /// Commit the transactions of a group at once (nothing if none is pending).
    pub fn group_commit(&self) -> Result<()> {
        match &self.engine {
            Engine::Sqlite(s) => s.group_commit(),
            Engine::Postgres(_) => Ok(()),
        }
    }
}

/// An open transaction; derefs to its [`Connection`].
pub struct Transaction<'c> {
    conn: &'c mut Connection,
    done: bool,
}

impl Transaction<'_> {
    pub fn commit(mut self) -> Result<()> {
        self.done = true;
        self.conn.end(true)
    }

    pub fn rollback(mut self) -> Result<()> {
        self.done = true;
        self.conn.end(false)
    }
}

impl Deref for Transaction<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.conn.end(false);
        }
    }
}

/// A statement bound to a connection.
pub struct Statement<'c> {
    conn: &'c Connection,
    sql: String,
}

impl Statement<'_> {
    pub fn execute(&mut self, params: impl Params) -> Result<usize> {
        self.conn.execute(&self.sql, params)
    }

    pub fn query_row<T>(&mut self, params: impl Params, f: impl FnOnce(&Row) -> Result<T>) -> Result<T> {
        self.conn.query_row(&self.sql, params, f)
    }

    pub fn query_map<T>(&mut self, params: impl Params, f: impl FnMut(&Row) -> Result<T>) -> Result<Rows<T>> {
        self.conn.query_map(&self.sql, params, f)
    }

    /// Whether the query returns at least one row.
    pub fn exists(&mut self, params: impl Params) -> Result<bool> {
        let values = params.values()?;
        let mut any = false;
        self.conn.run_query(&self.sql, &values, &mut |_| {
            any = true;
            Ok(false)
        })?;
        Ok(any)
    }
}

/// `query_row(..).optional()`: `None` instead of [`Error::NoRows`].
pub trait OptionalExtension<T> {
    fn optional(self) -> Result<Option<T>>;
}

impl<T> OptionalExtension<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(Error::NoRows) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A single field of type `T` (for `query_row(.., get0)`).
pub fn get0<T: FromSql>(r: &Row) -> Result<T> {
    r.get(0)
}
