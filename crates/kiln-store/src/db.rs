//! The one SQL interface the store's modules are written against, carried out on
//! SQLite (rusqlite) or PostgreSQL (postgres): a connection runs a statement with
//! parameters and gives back rows of plain values.
//!
//! It keeps rusqlite's shape (`execute`, `query_row`, `prepare_cached(..).query_map`,
//! `params!`, `optional`), so the SQL and the row mapping of every module are written
//! once. Statements use SQLite's numbered placeholders (`?1`); on PostgreSQL they are
//! rewritten to `$1`. Values cross as five kinds (null, integer, real, text, blob):
//! booleans are stored as integers 0/1 in both dialects, and on PostgreSQL an integer
//! or text parameter is converted to whatever type the server inferred for it.
//!
//! No crate offers this: sqlx and diesel span both engines but are async or an ORM,
//! and either would mean rewriting every query and the synchronous transactions the
//! control plane is built on.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;

/// A value as stored: SQLite's five storage classes.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// A failed statement or a value of the wrong kind.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// Shown as PostgreSQL's own message (the error's cause is not repeated).
    #[error("{}", pg_message(.0))]
    Postgres(postgres::Error),
    #[error("query returned no rows")]
    NoRows,
    #[error("column {column}: {message}")]
    Conversion { column: usize, message: String },
    #[error("connection pool: {0}")]
    Pool(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<postgres::Error> for Error {
    fn from(e: postgres::Error) -> Self {
        Error::Postgres(e)
    }
}

/// PostgreSQL's message, with its detail and hint where it gives them.
fn pg_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut m = format!("{} ({})", db.message(), db.code().code());
            if let Some(d) = db.detail() {
                m.push_str(&format!("; {d}"));
            }
            if let Some(h) = db.hint() {
                m.push_str(&format!("; {h}"));
            }
            m
        }
        None => e.to_string(),
    }
}

impl Error {
    /// A column whose stored text does not parse as the type it stands for.
    pub fn conversion(column: usize, e: impl fmt::Display) -> Self {
        Error::Conversion { column, message: e.to_string() }
    }

    /// True when the statement broke an integrity constraint (unique, foreign key,
    /// not null or check): SQLite's CONSTRAINT, PostgreSQL's class 23.
    pub fn is_constraint_violation(&self) -> bool {
        match self {
            Error::Sqlite(rusqlite::Error::SqliteFailure(f, _)) => f.code == rusqlite::ErrorCode::ConstraintViolation,
            Error::Postgres(e) => e.code().is_some_and(|c| c.code().starts_with("23")),
            _ => false,
        }
    }

    /// True when trying again may succeed: no connection, a lock or statement timeout,
    /// a serialisation failure or deadlock (SQLSTATE 40001, 40P01, 55P03, 57014).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Pool(_) => true,
            Error::Postgres(e) => {
                e.is_closed()
                    || e.code().is_none_or(|c| {
                        ["40001", "40P01", "55P03", "57014"].contains(&c.code()) || c.code().starts_with("08")
                    })
            }
            _ => false,
        }
    }
}

/// A Rust value that can be a statement parameter.
pub trait ToValue {
    fn to_value(&self) -> Value;
}

macro_rules! integer_to_value {
    ($($t:ty),*) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> Value {
                Value::Integer(*self as i64)
            }
        }
    )*};
}
integer_to_value!(i64, i32, i16, i8, u32, u16, u8, usize);

impl ToValue for u64 {
    fn to_value(&self) -> Value {
        // Stored values are i64; larger ones do not occur (sizes, counts, ports).
        Value::Integer(i64::try_from(*self).unwrap_or(i64::MAX))
    }
}
impl ToValue for bool {
    fn to_value(&self) -> Value {
        Value::Integer(i64::from(*self))
    }
}
impl ToValue for f64 {
    fn to_value(&self) -> Value {
        Value::Real(*self)
    }
}
impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_owned())
    }
}
impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}
impl ToValue for [u8] {
    fn to_value(&self) -> Value {
        Value::Blob(self.to_vec())
    }
}
impl ToValue for Vec<u8> {
    fn to_value(&self) -> Value {
        Value::Blob(self.clone())
    }
}
impl ToValue for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }
}
impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}
impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToValue::to_value)
    }
}

/// A statement's parameters.
pub trait Params {
    fn values(self) -> Vec<Value>;
}

impl Params for () {
    fn values(self) -> Vec<Value> {
        Vec::new()
    }
}
impl Params for &[&dyn ToValue] {
    fn values(self) -> Vec<Value> {
        self.iter().map(|v| v.to_value()).collect()
    }
}
impl<T: ToValue, const N: usize> Params for [T; N] {
    fn values(self) -> Vec<Value> {
        self.iter().map(ToValue::to_value).collect()
    }
}
impl<T: ToValue, const N: usize> Params for &[T; N] {
    fn values(self) -> Vec<Value> {
        self.iter().map(ToValue::to_value).collect()
    }
}
impl Params for Vec<Value> {
    fn values(self) -> Vec<Value> {
        self
    }
}

/// Parameters from an iterator (a query built with a variable number of them).
pub struct ParamsFromIter<I>(I);

pub fn params_from_iter<I>(iter: I) -> ParamsFromIter<I>
where
    I: IntoIterator,
    I::Item: ToValue,
{
    ParamsFromIter(iter)
}

impl<I> Params for ParamsFromIter<I>
where
    I: IntoIterator,
    I::Item: ToValue,
{
    fn values(self) -> Vec<Value> {
        self.0.into_iter().map(|v| v.to_value()).collect()
    }
}

/// `params![a, b, …]`: a statement's parameters of mixed types.
#[macro_export]
macro_rules! params {
    () => { () };
    ($($p:expr),+ $(,)?) => {
        &[$(&$p as &dyn $crate::db::ToValue),+] as &[&dyn $crate::db::ToValue]
    };
}
pub use crate::params;

/// A Rust value a column can be read as.
pub trait FromValue: Sized {
    fn from_value(v: Value, column: usize) -> Result<Self>;
}

fn wrong(column: usize, want: &str, got: &Value) -> Error {
    Error::conversion(column, format!("expected {want}, found {got:?}"))
}

macro_rules! integer_from_value {
    ($($t:ty),*) => {$(
        impl FromValue for $t {
            fn from_value(v: Value, column: usize) -> Result<Self> {
                match v {
                    Value::Integer(i) => <$t>::try_from(i).map_err(|e| Error::conversion(column, e)),
                    other => Err(wrong(column, "an integer", &other)),
                }
            }
        }
    )*};
}
integer_from_value!(i64, i32, u64, u32, u16, u8, usize);

impl FromValue for bool {
    fn from_value(v: Value, column: usize) -> Result<Self> {
        match v {
            Value::Integer(i) => Ok(i != 0),
            other => Err(wrong(column, "a boolean", &other)),
        }
    }
}
impl FromValue for f64 {
    fn from_value(v: Value, column: usize) -> Result<Self> {
        match v {
            Value::Real(f) => Ok(f),
            Value::Integer(i) => Ok(i as f64),
            other => Err(wrong(column, "a number", &other)),
        }
    }
}
impl FromValue for String {
    fn from_value(v: Value, column: usize) -> Result<Self> {
        match v {
            Value::Text(s) => Ok(s),
            other => Err(wrong(column, "text", &other)),
        }
    }
}
impl FromValue for Vec<u8> {
    fn from_value(v: Value, column: usize) -> Result<Self> {
        match v {
            Value::Blob(b) => Ok(b),
            Value::Text(s) => Ok(s.into_bytes()),
            other => Err(wrong(column, "bytes", &other)),
        }
    }
}
impl FromValue for Value {
    fn from_value(v: Value, _: usize) -> Result<Self> {
        Ok(v)
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: Value, column: usize) -> Result<Self> {
        match v {
            Value::Null => Ok(None),
            v => T::from_value(v, column).map(Some),
        }
    }
}

/// What names a column of a row: its position.
pub trait RowIndex {
    fn index(&self) -> usize;
}

impl RowIndex for usize {
    fn index(&self) -> usize {
        *self
    }
}

/// One row of a result.
pub struct Row<'a> {
    values: Vec<Value>,
    _rows: std::marker::PhantomData<&'a ()>,
}

impl Row<'_> {
    /// Column `idx`, as `T`.
    pub fn get<I: RowIndex, T: FromValue>(&self, idx: I) -> Result<T> {
        let idx = idx.index();
        let v = self.values.get(idx).cloned().ok_or_else(|| Error::conversion(idx, "no such column"))?;
        T::from_value(v, idx)
    }
}

/// `.optional()`: no row is `None` rather than an error.
pub trait OptionalExtension<T> {
    fn optional(self) -> Result<Option<T>>;
}

impl<T> OptionalExtension<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(Error::NoRows) | Err(Error::Sqlite(rusqlite::Error::QueryReturnedNoRows)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Which engine a connection speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A PostgreSQL connection with the statements it has prepared (a prepared statement
/// saves a round trip per use).
pub struct PgClient {
    pub(crate) client: OwnedClient,
    statements: HashMap<String, postgres::Statement>,
}

/// A `postgres::Client` that may be dropped on any thread. The client closes its
/// connection by blocking on a runtime of its own, which panics on a thread that runs
/// async tasks: a server shutting down with a request in flight drops the last handle
/// of its pool on a tokio worker, and a second client's panic while unwinding aborted
/// the process. There, the client is closed on a plain thread.
pub(crate) struct OwnedClient(Option<postgres::Client>);

impl std::ops::Deref for OwnedClient {
    type Target = postgres::Client;
    fn deref(&self) -> &postgres::Client {
        self.0.as_ref().expect("a client is present until it is dropped")
    }
}

impl std::ops::DerefMut for OwnedClient {
    fn deref_mut(&mut self) -> &mut postgres::Client {
        self.0.as_mut().expect("a client is present until it is dropped")
    }
}

impl Drop for OwnedClient {
    fn drop(&mut self) {
        let Some(client) = self.0.take() else { return };
        if tokio::runtime::Handle::try_current().is_ok() {
            if let Ok(t) = std::thread::Builder::new().name("kiln-pg-close".into()).spawn(move || drop(client)) {
                let _ = t.join();
            }
        }
    }
}

impl PgClient {
    pub(crate) fn new(client: postgres::Client) -> Self {
        Self { client: OwnedClient(Some(client)), statements: HashMap::new() }
    }

    fn statement(&mut self, sql: &str) -> Result<postgres::Statement> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(&placeholders(sql))?;
        self.statements.insert(sql.to_owned(), s.clone());
        Ok(s)
    }
}

enum Backend<'a> {
    Sqlite(&'a rusqlite::Connection),
    /// A client, and whether it is inside a write transaction.
    Postgres(RefCell<&'a mut PgClient>, bool),
}

/// A connection (or an open transaction) to run statements on.
pub struct Connection<'a> {
    backend: Backend<'a>,
}

/// A connection inside a transaction. It is a `Connection` (what reads can run on
/// can run inside a write).
pub type Transaction<'a> = Connection<'a>;

impl<'a> Connection<'a> {
    pub(crate) fn sqlite(conn: &'a rusqlite::Connection) -> Self {
        Self { backend: Backend::Sqlite(conn) }
    }

    pub(crate) fn postgres(client: &'a mut PgClient) -> Self {
        Self { backend: Backend::Postgres(RefCell::new(client), false) }
    }

    /// A client inside a write transaction: each statement there runs under a
    /// savepoint, so that one that fails (a UNIQUE violation the caller handles, as it
    /// may on SQLite) undoes only itself rather than aborting the transaction.
    pub(crate) fn postgres_tx(client: &'a mut PgClient) -> Self {
        Self { backend: Backend::Postgres(RefCell::new(client), true) }
    }

    pub fn dialect(&self) -> Dialect {
        match self.backend {
            Backend::Sqlite(_) => Dialect::Sqlite,
            Backend::Postgres(..) => Dialect::Postgres,
        }
    }

    /// Runs a statement; the number of rows it changed.
    pub fn execute<P: Params>(&self, sql: &str, params: P) -> Result<usize> {
        let values = params.values();
        match &self.backend {
            Backend::Sqlite(c) => Ok(c.prepare_cached(sql)?.execute(rusqlite::params_from_iter(values.iter()))?),
            Backend::Postgres(c, in_tx) => {
                let mut c = c.borrow_mut();
                let st = c.statement(sql)?;
                let args = pg_args(&values);
                if !*in_tx {
                    return Ok(usize::try_from(c.client.execute(&st, &args)?).unwrap_or(usize::MAX));
                }
                c.client.batch_execute("SAVEPOINT kiln_statement")?;
                match c.client.execute(&st, &args) {
                    Ok(n) => {
                        c.client.batch_execute("RELEASE SAVEPOINT kiln_statement")?;
                        Ok(usize::try_from(n).unwrap_or(usize::MAX))
                    }
                    Err(e) => {
                        c.client
                            .batch_execute("ROLLBACK TO SAVEPOINT kiln_statement; RELEASE SAVEPOINT kiln_statement")?;
                        Err(e.into())
                    }
                }
            }
        }
    }

    /// Runs several statements without parameters (a schema change).
    pub fn execute_batch(&self, sql: &str) -> Result<()> {
        match &self.backend {
            Backend::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Backend::Postgres(c, _) => Ok(c.borrow_mut().client.batch_execute(sql)?),
        }
    }

    /// All rows of a query, each as its values.
    fn rows(&self, sql: &str, values: Vec<Value>) -> Result<Vec<Vec<Value>>> {
        match &self.backend {
            Backend::Sqlite(c) => {
                let mut st = c.prepare_cached(sql)?;
                let n = st.column_count();
                let mut rows = st.query(rusqlite::params_from_iter(values.iter()))?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    let mut vals = Vec::with_capacity(n);
                    for i in 0..n {
                        vals.push(from_sqlite(r.get_ref(i)?));
                    }
                    out.push(vals);
                }
                Ok(out)
            }
            Backend::Postgres(c, _) => {
                let mut c = c.borrow_mut();
                let st = c.statement(sql)?;
                let args = pg_args(&values);
                let rows = c.client.query(&st, &args)?;
                rows.iter().map(from_postgres).collect()
            }
        }
    }

    /// The first row of a query, mapped by `f`; `Error::NoRows` when there is none.
    pub fn query_row<T, P: Params>(&self, sql: &str, params: P, f: impl FnOnce(&Row<'_>) -> Result<T>) -> Result<T> {
        let first = self.rows(sql, params.values())?.into_iter().next().ok_or(Error::NoRows)?;
        f(&Row { values: first, _rows: std::marker::PhantomData })
    }

    /// A statement to run (prepared and cached by the connection on first use).
    pub fn prepare_cached<'c>(&'c self, sql: &str) -> Result<Statement<'c, 'a>> {
        Ok(Statement { conn: self, sql: sql.to_owned() })
    }

    /// Same as `prepare_cached`.
    pub fn prepare<'c>(&'c self, sql: &str) -> Result<Statement<'c, 'a>> {
        self.prepare_cached(sql)
    }
}

/// A statement bound to its connection.
pub struct Statement<'c, 'a> {
    conn: &'c Connection<'a>,
    sql: String,
}

impl Statement<'_, '_> {
    /// Every row, each mapped by `f`.
    pub fn query_map<T, P: Params, F>(&mut self, params: P, mut f: F) -> Result<std::vec::IntoIter<Result<T>>>
    where
        F: FnMut(&Row<'_>) -> Result<T>,
    {
        let rows = self.conn.rows(&self.sql, params.values())?;
        let out: Vec<Result<T>> =
            rows.into_iter().map(|values| f(&Row { values, _rows: std::marker::PhantomData })).collect();
        Ok(out.into_iter())
    }

    pub fn query_row<T, P: Params>(&mut self, params: P, f: impl FnOnce(&Row<'_>) -> Result<T>) -> Result<T> {
        self.conn.query_row(&self.sql, params, f)
    }

    /// Whether the query returns a row.
    pub fn exists<P: Params>(&mut self, params: P) -> Result<bool> {
        Ok(!self.conn.rows(&self.sql, params.values())?.is_empty())
    }

    pub fn execute<P: Params>(&mut self, params: P) -> Result<usize> {
        self.conn.execute(&self.sql, params)
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Integer(i) => ValueRef::Integer(*i),
            Value::Real(f) => ValueRef::Real(*f),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

fn from_sqlite(v: rusqlite::types::ValueRef<'_>) -> Value {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

fn from_postgres(row: &postgres::Row) -> Result<Vec<Value>> {
    use postgres::types::Type;
    let mut out = Vec::with_capacity(row.len());
    for (i, col) in row.columns().iter().enumerate() {
        let ty = col.type_();
        let v = if *ty == Type::INT8 {
            row.try_get::<_, Option<i64>>(i)?.map(Value::Integer)
        } else if *ty == Type::INT4 {
            row.try_get::<_, Option<i32>>(i)?.map(|v| Value::Integer(v.into()))
        } else if *ty == Type::INT2 {
            row.try_get::<_, Option<i16>>(i)?.map(|v| Value::Integer(v.into()))
        } else if *ty == Type::BOOL {
            row.try_get::<_, Option<bool>>(i)?.map(|v| Value::Integer(v.into()))
        } else if *ty == Type::FLOAT8 {
            row.try_get::<_, Option<f64>>(i)?.map(Value::Real)
        } else if *ty == Type::FLOAT4 {
            row.try_get::<_, Option<f32>>(i)?.map(|v| Value::Real(v.into()))
        } else if *ty == Type::BYTEA {
            row.try_get::<_, Option<Vec<u8>>>(i)?.map(Value::Blob)
        } else if [Type::TEXT, Type::VARCHAR, Type::BPCHAR, Type::NAME, Type::UNKNOWN].contains(ty) {
            row.try_get::<_, Option<String>>(i)?.map(Value::Text)
        } else {
            return Err(Error::conversion(i, format!("PostgreSQL type {ty} is not one Kiln stores")));
        };
        out.push(v.unwrap_or(Value::Null));
    }
    Ok(out)
}

fn pg_args(values: &[Value]) -> Vec<&(dyn postgres::types::ToSql + Sync)> {
    values.iter().map(|v| v as &(dyn postgres::types::ToSql + Sync)).collect()
}

impl postgres::types::ToSql for Value {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> std::result::Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use postgres::types::{IsNull, Type};
        let bad = || -> Box<dyn std::error::Error + Sync + Send> { format!("cannot store {self:?} as {ty}").into() };
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Integer(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => i.to_string().to_sql(ty, out),
                _ => Err(bad()),
            },
            Value::Real(f) => match *ty {
                Type::FLOAT8 => f.to_sql(ty, out),
                Type::FLOAT4 => (*f as f32).to_sql(ty, out),
                _ => Err(bad()),
            },
            Value::Text(s) => match *ty {
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => s.to_sql(ty, out),
                Type::BYTEA => s.as_bytes().to_sql(ty, out),
                Type::INT8 => s.parse::<i64>().map_err(|_| bad())?.to_sql(ty, out),
                _ => Err(bad()),
            },
            Value::Blob(b) => match *ty {
                Type::BYTEA => b.to_sql(ty, out),
                _ => Err(bad()),
            },
        }
    }

    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

/// SQLite's numbered placeholders (`?1`, or bare `?` counted in order) as
/// PostgreSQL's (`$1`), outside quoted text.
pub(crate) fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    let mut quoted = false;
    let mut next = 0u32;
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                if digits.is_empty() {
                    next += 1;
                    digits = next.to_string();
                }
                out.push('$');
                out.push_str(&digits);
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_numbered_dollars_outside_quotes() {
        assert_eq!(
            placeholders("SELECT a FROM t WHERE b = ?1 AND c = ?12"),
            "SELECT a FROM t WHERE b = $1 AND c = $12"
        );
        assert_eq!(placeholders("VALUES (?, ?, '?')"), "VALUES ($1, $2, '?')");
    }

    #[test]
    fn values_read_back_as_their_rust_types() {
        assert!(bool::from_value(Value::Integer(1), 0).expect("bool"));
        assert_eq!(Option::<String>::from_value(Value::Null, 0).expect("null"), None);
        assert!(String::from_value(Value::Integer(1), 3).is_err());
        assert!(u8::from_value(Value::Integer(300), 0).is_err());
    }
}
