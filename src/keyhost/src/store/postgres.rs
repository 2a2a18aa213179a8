//! The PostgreSQL backend: one connection of the synchronous `postgres` client per keyhost
//! process (re-established when it drops outside a transaction), prepared statements cached
//! per SQL text, SQLite-style SQL translated on the way in (`?N` placeholders, DDL types).
//!
//! An administrative transaction ([`Postgres::begin`]) takes the advisory lock [`WRITE_LOCK`]
//! exclusively right after `BEGIN`: it runs alone among the writers of all replicas. An answer
//! or a rid allocation ([`Postgres::begin_scoped`]) takes [`WRITE_LOCK`] shared and then the
//! exclusive advisory locks of the keys it writes (identity × dataset, dataset rids; see
//! `db::lock_key`), in ascending order, so writers of different keys run side by side and writers
//! of one key see each other's commits (see `docs/keyhost.md`, "Replicas on PostgreSQL").

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::error::Error as StdError;
use std::str::FromStr;
use std::time::Duration;

use bytes::BytesMut;
use postgres::types::{FromSql, IsNull, ToSql, Type};
use postgres::{Client, NoTls, Statement};

use super::value::{Row, Value};
use super::{Error, Result};

/// The advisory lock key every transaction takes, exclusively (administrative writes) or shared
/// (scoped writes) (`b"ghostpii"` as a big-endian integer).
pub const WRITE_LOCK: i64 = 0x6768_6f73_7470_6969;

/// The session advisory lock a starting keyhost holds (`b"ghostpiS"`).
pub const STARTUP_LOCK: i64 = 0x6768_6f73_7470_6953;

/// The transaction-level advisory lock of whoever integrates the audit queue into the log
/// (`b"ghostpiQ"`).
pub const SEQUENCER_LOCK: i64 = 0x6768_6f73_7470_6951;

/// The session advisory lock of the sequencer leader among replicas (`b"ghostpiL"`).
pub const SEQUENCER_LEADER: i64 = 0x6768_6f73_7470_694c;

/// Cached statements beyond this are dropped (dynamic SQL such as listing filters).
const MAX_STATEMENTS: usize = 512;

pub(super) struct Postgres {
    url: String,
    client: RefCell<Option<Client>>,
    statements: RefCell<HashMap<String, Statement>>,
    in_transaction: Cell<bool>,
}

type BoxError = Box<dyn StdError + Sync + Send>;

impl ToSql for Value {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> std::result::Result<IsNull, BoxError> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Integer(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR | Type::UNKNOWN => i.to_string().as_str().to_sql(ty, out),
                _ => Err(format!("cannot bind an integer to a {ty} parameter").into()),
            },
            Value::Real(f) => match *ty {
                Type::FLOAT8 => f.to_sql(ty, out),
                Type::FLOAT4 => (*f as f32).to_sql(ty, out),
                _ => Err(format!("cannot bind a real to a {ty} parameter").into()),
            },
            Value::Text(s) => s.as_str().to_sql(ty, out),
            Value::Blob(b) => b.as_slice().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

impl<'a> FromSql<'a> for Value {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> std::result::Result<Self, BoxError> {
        Ok(match *ty {
            Type::BOOL => Value::Integer(i64::from(bool::from_sql(ty, raw)?)),
            Type::INT2 => Value::Integer(i64::from(i16::from_sql(ty, raw)?)),
            Type::INT4 => Value::Integer(i64::from(i32::from_sql(ty, raw)?)),
            Type::INT8 => Value::Integer(i64::from_sql(ty, raw)?),
            Type::OID => Value::Integer(i64::from(u32::from_sql(ty, raw)?)),
            Type::FLOAT4 => Value::Real(f64::from(f32::from_sql(ty, raw)?)),
            Type::FLOAT8 => Value::Real(f64::from_sql(ty, raw)?),
            Type::NUMERIC => numeric(raw)?,
            Type::BYTEA => Value::Blob(<Vec<u8>>::from_sql(ty, raw)?),
            _ => Value::Text(String::from_sql(ty, raw)?),
        })
    }

    fn from_sql_null(_: &Type) -> std::result::Result<Self, BoxError> {
        Ok(Value::Null)
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// A binary `numeric` (what `SUM` of integers returns): an integer when it has no fraction
/// and fits 64 bits, a real otherwise.
fn numeric(raw: &[u8]) -> std::result::Result<Value, BoxError> {
    let word = |i: usize| -> std::result::Result<u16, BoxError> {
        raw.get(2 * i..2 * i + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "truncated numeric".into())
    };
    let (ndigits, weight, sign) = (word(0)? as usize, word(1)? as i16, word(2)?);
    if sign == 0xC000 {
        return Ok(Value::Real(f64::NAN));
    }
    let digits = (0..ndigits)
        .map(|i| word(4 + i))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let negative = sign == 0x4000;
    let integral = digits
        .iter()
        .enumerate()
        .all(|(i, &d)| d == 0 || i32::from(weight) - i as i32 >= 0);
    if integral {
        let mut acc: i128 = 0;
        let mut fits = true;
        for p in 0..=i32::from(weight).max(-1) {
            let d = digits.get(p as usize).copied().unwrap_or(0);
            match acc.checked_mul(10_000).and_then(|a| a.checked_add(i128::from(d))) {
                Some(a) => acc = a,
                None => fits = false,
            }
        }
        let acc = if negative { -acc } else { acc };
        if let (true, Ok(i)) = (fits, i64::try_from(acc)) {
            return Ok(Value::Integer(i));
        }
    }
    let mut f = 0f64;
    for (i, &d) in digits.iter().enumerate() {
        f += f64::from(d) * 10_000f64.powi(i32::from(weight) - i as i32);
    }
    Ok(Value::Real(if negative { -f } else { f }))
}

/// SQLite placeholders (`?1`, `?`) as PostgreSQL's (`$1`), outside quotes and comments.
pub fn placeholders(sql: &str) -> String {
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len() + 8);
    let (mut i, mut next) = (0, 1usize);
    while i < b.len() {
        let c = b[i];
        match c {
            b'\'' | b'"' => {
                let end = b[i + 1..].iter().position(|&x| x == c).map_or(b.len(), |p| i + 2 + p);
                out.push_str(&sql[i..end]);
                i = end;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                let end = b[i..].iter().position(|&x| x == b'\n').map_or(b.len(), |p| i + p);
                out.push_str(&sql[i..end]);
                i = end;
            }
            b'?' => {
                let digits = b[i + 1..].iter().take_while(|x| x.is_ascii_digit()).count();
                if digits > 0 {
                    let n: usize = sql[i + 1..i + 1 + digits].parse().unwrap_or(0);
                    next = next.max(n + 1);
                    out.push('$');
                    out.push_str(&sql[i + 1..i + 1 + digits]);
                } else {
                    out.push_str(&format!("${next}"));
                    next += 1;
                }
                i += 1 + digits;
            }
            _ => {
                let len = sql[i..].chars().next().map_or(1, char::len_utf8);
                out.push_str(&sql[i..i + len]);
                i += len;
            }
        }
    }
    out
}

/// The schema's SQLite column types as PostgreSQL's: `INTEGER PRIMARY KEY` becomes a 64-bit
/// identity column, `INTEGER` `BIGINT`, `REAL` `DOUBLE PRECISION`, `BLOB` `BYTEA`.
pub fn ddl(sqlite: &str) -> String {
    let mut out = String::with_capacity(sqlite.len() + 256);
    for line in sqlite.split_inclusive('\n') {
        let code_end = line.find("--").unwrap_or(line.len());
        let (code, comment) = line.split_at(code_end);
        let code = code.replace(
            "INTEGER PRIMARY KEY",
            "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
        );
        let mut words = String::with_capacity(code.len());
        let mut word = String::new();
        let flush = |word: &mut String, words: &mut String| {
            words.push_str(match word.as_str() {
                "INTEGER" => "BIGINT",
                "REAL" => "DOUBLE PRECISION",
                "BLOB" => "BYTEA",
                w => w,
            });
            word.clear();
        };
        for ch in code.chars() {
            if ch.is_ascii_alphanumeric() || ch == '_' {
                word.push(ch);
            } else {
                flush(&mut word, &mut words);
                words.push(ch);
            }
        }
        flush(&mut word, &mut words);
        out.push_str(&words);
        out.push_str(comment);
    }
    out
}

/// The connection is gone: closed, or the server ended the session (SQLSTATE class 08,
/// connection exception; 57P01..57P03, shutdown or termination by an administrator).
fn connection_lost(e: &postgres::Error) -> bool {
    e.is_closed()
        || e.code().is_some_and(|c| {
            let c = c.code();
            c.starts_with("08") || matches!(c, "57P01" | "57P02" | "57P03")
        })
}

fn db_error(e: postgres::Error) -> Error {
    Error::Postgres(e)
}

impl Postgres {
    pub(super) fn connect(url: &str) -> Result<Postgres> {
        let pg = Postgres {
            url: url.to_owned(),
            client: RefCell::new(None),
            statements: RefCell::new(HashMap::new()),
            in_transaction: Cell::new(false),
        };
        pg.ensure_connected()?;
        Ok(pg)
    }

    fn ensure_connected(&self) -> Result<()> {
        let mut slot = self.client.borrow_mut();
        let alive = slot.as_ref().is_some_and(|c| !c.is_closed());
        if alive {
            return Ok(());
        }
        if self.in_transaction.get() {
            return Err(Error::Schema(
                "the connection to PostgreSQL was lost inside a transaction; nothing of it was committed".into(),
            ));
        }
        let mut config = postgres::Config::from_str(&self.url)
            .map_err(|e| Error::Schema(format!("invalid PostgreSQL connection string: {e}")))?;
        config.application_name("ghostpii-keyhost");
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        let client = config.connect(NoTls).map_err(db_error)?;
        if let Some(old) = slot.replace(client) {
            drop_off_runtime(old);
        }
        self.statements.borrow_mut().clear();
        Ok(())
    }

    fn with_client<T>(&self, f: impl FnOnce(&mut Client) -> std::result::Result<T, postgres::Error>) -> Result<T> {
        self.ensure_connected()?;
        let mut slot = self.client.borrow_mut();
        let client = slot.as_mut().expect("connected above");
        f(client).map_err(|e| {
            if connection_lost(&e) {
                // the next statement (outside a transaction) connects anew
                if let Some(old) = slot.take() {
                    drop_off_runtime(old);
                }
                self.statements.borrow_mut().clear();
            }
            db_error(e)
        })
    }

    fn statement(&self, sql: &str) -> Result<Statement> {
        // (re)connect first: a reconnection drops the statements prepared on the old connection
        self.ensure_connected()?;
        if let Some(st) = self.statements.borrow().get(sql) {
            return Ok(st.clone());
        }
        let translated = placeholders(sql);
        let st = self.with_client(|c| c.prepare(&translated))?;
        let mut cache = self.statements.borrow_mut();
        if cache.len() >= MAX_STATEMENTS {
            cache.clear();
        }
        cache.insert(sql.to_owned(), st.clone());
        Ok(st)
    }

    pub(super) fn execute(&self, sql: &str, params: &[Value]) -> Result<usize> {
        let st = self.statement(sql)?;
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        let n = self.with_client(|c| c.execute(&st, &refs))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    pub(super) fn query(&self, sql: &str, params: &[Value], each: &mut dyn FnMut(Row) -> Result<bool>) -> Result<()> {
        let st = self.statement(sql)?;
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        let rows = self.with_client(|c| c.query(&st, &refs))?;
        for r in rows {
            let values = (0..r.len())
                .map(|i| r.try_get::<_, Value>(i))
                .collect::<std::result::Result<_, _>>();
            if !each(Row {
                values: values.map_err(db_error)?,
            })? {
                break;
            }
        }
        Ok(())
    }

    pub(super) fn batch(&self, sql: &str) -> Result<()> {
        self.with_client(|c| c.batch_execute(sql))
    }

    pub(super) fn begin(&self) -> Result<()> {
        self.batch(&format!("BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})"))?;
        self.in_transaction.set(true);
        Ok(())
    }

    /// Begin a transaction that writes only under `keys`: [`WRITE_LOCK`] shared, then each key's
    /// exclusive advisory lock (ascending, without repeats, so two such transactions never
    /// deadlock on them).
    pub(super) fn begin_scoped(&self, keys: &[i64]) -> Result<()> {
        let mut keys = keys.to_vec();
        keys.sort_unstable();
        keys.dedup();
        let mut sql = format!("BEGIN; SELECT pg_advisory_xact_lock_shared({WRITE_LOCK})");
        for k in keys {
            sql.push_str(&format!("; SELECT pg_advisory_xact_lock({k})"));
        }
        self.batch(&sql)?;
        self.in_transaction.set(true);
        Ok(())
    }

    /// Begin a transaction that integrates the audit queue: [`SEQUENCER_LOCK`] only (answers
    /// keep writing to the queue meanwhile).
    pub(super) fn begin_sequencer(&self) -> Result<()> {
        self.batch(&format!("BEGIN; SELECT pg_advisory_xact_lock({SEQUENCER_LOCK})"))?;
        self.in_transaction.set(true);
        Ok(())
    }

    /// Begin a read-only transaction on one snapshot (no advisory lock).
    pub(super) fn begin_snapshot(&self) -> Result<()> {
        self.batch("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?;
        self.in_transaction.set(true);
        Ok(())
    }

    pub(super) fn end(&self, commit: bool) -> Result<()> {
        let res = self.batch(if commit { "COMMIT" } else { "ROLLBACK" });
        self.in_transaction.set(false);
        res
    }
}

/// The synchronous client owns a small runtime that must not be dropped inside another
/// runtime (the keyhost's state is dropped on its tokio threads): drop it on a plain thread.
fn drop_off_runtime(client: Client) {
    let _ = std::thread::spawn(move || drop(client)).join();
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.statements.get_mut().clear();
        if let Some(c) = self.client.get_mut().take() {
            drop_off_runtime(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_renumbered_outside_quotes() {
        assert_eq!(placeholders("SELECT ?1, ?2 WHERE a = ?1"), "SELECT $1, $2 WHERE a = $1");
        assert_eq!(placeholders("SELECT ?, ? FROM t"), "SELECT $1, $2 FROM t");
        assert_eq!(
            placeholders("SELECT '?1', \"a?\" -- ?3\n, ?1"),
            "SELECT '?1', \"a?\" -- ?3\n, $1"
        );
    }

    #[test]
    fn ddl_types_are_translated() {
        let d =
            ddl("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER NOT NULL, x REAL, b BLOB, s TEXT); -- INTEGER\n");
        assert_eq!(
            d,
            "CREATE TABLE t (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, n BIGINT NOT NULL, \
             x DOUBLE PRECISION, b BYTEA, s TEXT); -- INTEGER\n"
        );
    }

    #[test]
    fn numerics_decode_to_integers_or_reals() {
        // 123456789 = [1, 2345, 6789] with weight 2
        let mut b = Vec::new();
        for w in [3u16, 2, 0, 0, 1, 2345, 6789] {
            b.extend_from_slice(&w.to_be_bytes());
        }
        assert_eq!(numeric(&b).unwrap(), Value::Integer(123_456_789));
        let mut neg = b.clone();
        neg[4..6].copy_from_slice(&0x4000u16.to_be_bytes());
        assert_eq!(numeric(&neg).unwrap(), Value::Integer(-123_456_789));
        let zero = [0u8; 8];
        assert_eq!(numeric(&zero).unwrap(), Value::Integer(0));
    }
}
