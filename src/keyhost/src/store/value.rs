//! Values crossing the storage interface: parameters ([`ToSql`], [`Params`]) and row fields
//! ([`FromSql`], [`Row`]), the same five SQLite storage classes on both backends.

use super::{Error, Result};

/// One SQL value: what a parameter binds and what a row field holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// A Rust value that binds as an SQL parameter.
pub trait ToSql {
    fn to_sql(&self) -> Result<Value>;
}

impl ToSql for Value {
    fn to_sql(&self) -> Result<Value> {
        Ok(self.clone())
    }
}

impl<T: ToSql + ?Sized> ToSql for &T {
    fn to_sql(&self) -> Result<Value> {
        (**self).to_sql()
    }
}

impl<T: ToSql> ToSql for Option<T> {
    fn to_sql(&self) -> Result<Value> {
        match self {
            None => Ok(Value::Null),
            Some(v) => v.to_sql(),
        }
    }
}

macro_rules! int_to_sql {
    ($($t:ty),*) => {$(
        impl ToSql for $t {
            fn to_sql(&self) -> Result<Value> {
                i64::try_from(*self)
                    .map(Value::Integer)
                    .map_err(|_| Error::Conversion(format!("{} does not fit a 64-bit SQL integer", self)))
            }
        }
    )*};
}
int_to_sql!(i8, i16, i32, i64, u8, u16, u32, u64, usize);

impl ToSql for bool {
    fn to_sql(&self) -> Result<Value> {
        Ok(Value::Integer(i64::from(*self)))
    }
}

impl ToSql for f64 {
    fn to_sql(&self) -> Result<Value> {
        Ok(Value::Real(*self))
    }
}

impl ToSql for str {
    fn to_sql(&self) -> Result<Value> {
        Ok(Value::Text(self.to_owned()))
    }
}

impl ToSql for String {
    fn to_sql(&self) -> Result<Value> {
        Ok(Value::Text(self.clone()))
    }
}

impl ToSql for [u8] {
    fn to_sql(&self) -> Result<Value> {
        Ok(Value::Blob(self.to_vec()))
    }
}

impl ToSql for Vec<u8> {
    fn to_sql(&self) -> Result<Value> {
        Ok(Value::Blob(self.clone()))
    }
}

impl<const N: usize> ToSql for [u8; N] {
    fn to_sql(&self) -> Result<Value> {
        Ok(Value::Blob(self.to_vec()))
    }
}

/// The parameters of one statement: `()`, an array `[a, b]` of one type, `params![a, b, ..]`
/// of mixed types, or a `Vec<Value>` built at run time.
pub trait Params {
    fn values(&self) -> Result<Vec<Value>>;
}

impl Params for () {
    fn values(&self) -> Result<Vec<Value>> {
        Ok(Vec::new())
    }
}

impl Params for &[&dyn ToSql] {
    fn values(&self) -> Result<Vec<Value>> {
        self.iter().map(|p| p.to_sql()).collect()
    }
}

impl<T: ToSql, const N: usize> Params for [T; N] {
    fn values(&self) -> Result<Vec<Value>> {
        self.iter().map(ToSql::to_sql).collect()
    }
}

impl<T: ToSql, const N: usize> Params for &[T; N] {
    fn values(&self) -> Result<Vec<Value>> {
        self.iter().map(ToSql::to_sql).collect()
    }
}

impl Params for Vec<Value> {
    fn values(&self) -> Result<Vec<Value>> {
        Ok(self.clone())
    }
}

impl Params for &[Value] {
    fn values(&self) -> Result<Vec<Value>> {
        Ok(self.to_vec())
    }
}

/// A field of a result row converted to a Rust value.
pub trait FromSql: Sized {
    fn from_sql(v: Value) -> std::result::Result<Self, String>;
}

impl FromSql for Value {
    fn from_sql(v: Value) -> std::result::Result<Self, String> {
        Ok(v)
    }
}

impl<T: FromSql> FromSql for Option<T> {
    fn from_sql(v: Value) -> std::result::Result<Self, String> {
        match v {
            Value::Null => Ok(None),
            v => T::from_sql(v).map(Some),
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "NULL",
        Value::Integer(_) => "an integer",
        Value::Real(_) => "a real",
        Value::Text(_) => "text",
        Value::Blob(_) => "a blob",
    }
}

macro_rules! int_from_sql {
    ($($t:ty),*) => {$(
        impl FromSql for $t {
            fn from_sql(v: Value) -> std::result::Result<Self, String> {
                match v {
                    Value::Integer(i) => <$t>::try_from(i)
                        .map_err(|_| format!("{i} is out of range for {}", stringify!($t))),
                    other => Err(format!("expected an integer, found {}", kind(&other))),
                }
            }
        }
    )*};
}
int_from_sql!(i32, i64, u8, u32, u64, usize);

impl FromSql for bool {
    fn from_sql(v: Value) -> std::result::Result<Self, String> {
        match v {
            Value::Integer(i) => Ok(i != 0),
            other => Err(format!("expected a boolean, found {}", kind(&other))),
        }
    }
}

impl FromSql for f64 {
    fn from_sql(v: Value) -> std::result::Result<Self, String> {
        match v {
            Value::Real(f) => Ok(f),
            Value::Integer(i) => Ok(i as f64),
            other => Err(format!("expected a real, found {}", kind(&other))),
        }
    }
}

impl FromSql for String {
    fn from_sql(v: Value) -> std::result::Result<Self, String> {
        match v {
            Value::Text(s) => Ok(s),
            other => Err(format!("expected text, found {}", kind(&other))),
        }
    }
}

impl FromSql for Vec<u8> {
    fn from_sql(v: Value) -> std::result::Result<Self, String> {
        match v {
            Value::Blob(b) => Ok(b),
            other => Err(format!("expected a blob, found {}", kind(&other))),
        }
    }
}

/// A field position (0-based).
pub trait RowIndex {
    fn index(self) -> usize;
}

impl RowIndex for usize {
    fn index(self) -> usize {
        self
    }
}

/// One result row, read in full from either backend.
#[derive(Debug, Clone)]
pub struct Row {
    pub(super) values: Vec<Value>,
}

impl Row {
    /// The field at `idx` (0-based) as `T`.
    pub fn get<I: RowIndex, T: FromSql>(&self, idx: I) -> Result<T> {
        let idx = idx.index();
        let v = self
            .values
            .get(idx)
            .cloned()
            .ok_or_else(|| Error::Conversion(format!("no column {idx} in a row of {}", self.values.len())))?;
        T::from_sql(v).map_err(|m| Error::Conversion(format!("column {idx}: {m}")))
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}
