//! Kiln's persistent state: an embedded SQLite database (WAL, foreign keys, versioned
//! migrations) or a shared PostgreSQL one, with one module per resource. This crate stores and loads; it does not
//! decide what is allowed (that is `kiln-control`).

pub mod accounts;
pub mod client_tokens;
pub mod hosts;
pub mod images;
pub mod imports;
pub mod instances;
pub mod interfaces;
pub mod key_pairs;
pub mod launch_templates;
pub mod leases;
mod migrations;
pub mod placement_groups;
pub mod routing;
pub mod security_groups;
pub mod snapshots;
pub mod tags;
pub mod transfer;
pub mod volumes;
pub mod vpcs;
pub mod workflows;

pub mod db;
mod postgres_pool;

use std::path::Path;
use std::sync::Mutex;

pub use db::{params_from_iter, Connection, Dialect, Transaction, Value};
pub use migrations::known_version as known_schema_version;

/// A store error: the database failed or holds something it should not.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] db::Error),
    #[error("database schema version {found} is newer than this kiln understands ({known}); upgrade kiln")]
    TooNew { found: i64, known: i64 },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("instance {id} cannot go from {from} to {to}")]
    IllegalTransition { id: String, from: kiln_types::InstanceState, to: kiln_types::InstanceState },
    #[error("{0}")]
    Config(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Db(e.into())
    }
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        StoreError::Db(e.into())
    }
}

/// Column `idx` of `row` as a typed value parsed from its text (a state or an option
/// enum); a value this kiln does not know is corrupt data, not a default.
pub(crate) fn parsed<T>(row: &db::Row<'_>, idx: usize) -> db::Result<T>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let text: String = row.get(idx)?;
    text.parse().map_err(|e| db::Error::conversion(idx, e))
}

/// Which account and region a query is for. Every resource lives in exactly one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub account: String,
    pub region: String,
}

/// Where a store keeps its data: a SQLite file, or a PostgreSQL database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl Location {
    /// `postgres://…` (or `postgresql://…`) is PostgreSQL; `sqlite:PATH` or a plain
    /// path is a SQLite file (a directory means its `kiln.db`).
    pub fn parse(s: &str) -> Self {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return Location::Postgres(s.to_owned());
        }
        let path = std::path::PathBuf::from(s.strip_prefix("sqlite:").unwrap_or(s));
        if path.is_dir() {
            Location::Sqlite(path.join("kiln.db"))
        } else {
            Location::Sqlite(path)
        }
    }

    /// Whether several servers may share it (PostgreSQL); a SQLite file is one
    /// server's.
    pub fn is_shared(&self) -> bool {
        matches!(self, Location::Postgres(_))
    }

    /// The location as it may be printed: a PostgreSQL URL without its password.
    pub fn redacted(&self) -> String {
        match self {
            Location::Sqlite(p) => format!("sqlite:{}", p.display()),
            Location::Postgres(url) => postgres_pool::redact(url),
        }
    }
}

/// The database: on SQLite one writer connection behind a mutex (SQLite serialises
/// writers anyway) and a pool of read-only connections, which WAL lets read while the
/// writer writes; on PostgreSQL a pool of connections whose writes take one
/// transaction-scoped advisory lock (see `postgres_pool`).
///
/// The SQLite pool is a stack of idle connections, opened on demand and kept: a crate
/// such as r2d2 would add a manager thread and timeouts that a local file does not need.
pub struct Store {
    backend: Backend,
    /// Committed writes so far by this process (see `commits`).
    commits: std::sync::atomic::AtomicU64,
}

enum Backend {
    Sqlite {
        writer: Mutex<rusqlite::Connection>,
        /// Idle readers; `None` for an in-memory database, whose readers share the writer.
        readers: Option<Mutex<Vec<rusqlite::Connection>>>,
        path: Option<std::path::PathBuf>,
    },
    Postgres(postgres_pool::Pool),
}

/// Readers kept idle at most (more may be open while many threads read).
const IDLE_READERS: usize = 16;

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = rusqlite::Connection::open(path)?;
        let mut s = Self::init(conn)?;
        if let Backend::Sqlite { readers, path: p, .. } = &mut s.backend {
            *readers = Some(Mutex::new(Vec::new()));
            *p = Some(path.to_path_buf());
        }
        Ok(s)
    }

    /// Opens the store at `location`, bringing its schema up to date.
    pub fn open_at(location: &Location) -> Result<Self, StoreError> {
        match location {
            Location::Sqlite(path) => Self::open(path),
            Location::Postgres(url) => {
                let pool = postgres_pool::Pool::connect(url)?;
                Ok(Self { backend: Backend::Postgres(pool), commits: Default::default() })
            }
        }
    }

    /// A private in-memory database, for tests.
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::init(rusqlite::Connection::open_in_memory()?)
    }

    fn init(mut conn: rusqlite::Connection) -> Result<Self, StoreError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrations::migrate(&mut conn)?;
        Ok(Self {
            backend: Backend::Sqlite { writer: Mutex::new(conn), readers: None, path: None },
            commits: Default::default(),
        })
    }

    /// Which engine the store is on.
    pub fn dialect(&self) -> Dialect {
        match self.backend {
            Backend::Sqlite { .. } => Dialect::Sqlite,
            Backend::Postgres(_) => Dialect::Postgres,
        }
    }

    fn sqlite_reader(path: &Path) -> Result<rusqlite::Connection, StoreError> {
        let c = rusqlite::Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        c.busy_timeout(std::time::Duration::from_secs(5))?;
        c.pragma_update(None, "query_only", "ON")?;
        Ok(c)
    }

    /// Runs `f` on a read-only view, which sees every committed write.
    pub fn read<T, E: From<StoreError>>(&self, f: impl FnOnce(&Connection<'_>) -> Result<T, E>) -> Result<T, E> {
        match &self.backend {
            Backend::Sqlite { writer, readers, path } => {
                let Some(path) = path else {
                    let conn = lock(writer);
                    return f(&Connection::sqlite(&conn));
                };
                let idle = readers.as_ref().and_then(|r| lock(r).pop());
                let conn = match idle {
                    Some(c) => c,
                    None => Self::sqlite_reader(path)?,
                };
                let out = f(&Connection::sqlite(&conn));
                if let Some(r) = readers {
                    let mut idle = lock(r);
                    if idle.len() < IDLE_READERS {
                        idle.push(conn);
                    }
                }
                out
            }
            Backend::Postgres(pool) => blocking(|| {
                let mut client = pool.get()?;
                f(&Connection::postgres(&mut client))
            }),
        }
    }

    /// Runs `f` in a transaction, committed only if `f` succeeds (and rolled back
    /// anyway inside `dry_run`). Writes are serialised: on SQLite by `BEGIN IMMEDIATE`,
    /// on PostgreSQL by one advisory lock taken first, so what `f` reads cannot change
    /// before it writes, whichever server runs it.
    pub fn write<T, E: From<StoreError>>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T, E>) -> Result<T, E> {
        let out = match &self.backend {
            Backend::Sqlite { writer, .. } => {
                let mut conn = lock(writer);
                let tx = conn
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .map_err(StoreError::from)?;
                let out = f(&Connection::sqlite(&tx))?;
                if is_dry_run() {
                    tx.rollback().map_err(StoreError::from)?;
                    return Ok(out);
                }
                tx.commit().map_err(StoreError::from)?;
                out
            }
            Backend::Postgres(pool) => {
                let dry = is_dry_run();
                let out = blocking(|| -> Result<T, E> {
                    let mut client = pool.begin_write()?;
                    let mut tx = postgres_pool::WriteTx::started(&mut client);
                    let out = f(&Connection::postgres_tx(tx.client()))?;
                    if dry {
                        tx.rollback()?;
                    } else {
                        tx.commit()?;
                    }
                    Ok(out)
                })?;
                if dry {
                    return Ok(out);
                }
                out
            }
        };
        self.commits.fetch_add(1, std::sync::atomic::Ordering::Release);
        Ok(out)
    }

    /// A number that moves on with every committed write to the cloud's state: what was
    /// read at one count is still true while the count has not moved (a cache's
    /// validity test). On SQLite this process is the only writer; on PostgreSQL every
    /// server's writes count, read from the database.
    pub fn commits(&self) -> u64 {
        match &self.backend {
            Backend::Sqlite { .. } => self.commits.load(std::sync::atomic::Ordering::Acquire),
            Backend::Postgres(pool) => blocking(|| pool.generation()).unwrap_or_else(|_| {
                // Unreadable: a number never seen before, so no cache is trusted.
                u64::MAX - self.commits.fetch_add(1, std::sync::atomic::Ordering::AcqRel)
            }),
        }
    }

    /// The schema version now in force.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        match &self.backend {
            Backend::Sqlite { writer, .. } => Ok(lock(writer).pragma_query_value(None, "user_version", |r| r.get(0))?),
            Backend::Postgres(pool) => blocking(|| migrations::postgres_version(&mut pool.get()?.client)),
        }
    }

    /// Whether the database answers now (readiness).
    pub fn ping(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Postgres(pool) => blocking(|| pool.ping()),
            Backend::Sqlite { .. } => {
                self.read(|c| c.query_row("SELECT 1", (), |r| r.get::<_, i64>(0)).map_err(StoreError::from)).map(|_| ())
            }
        }
    }

    /// Connections open and idle (PostgreSQL's pool; SQLite's readers and writer).
    pub fn pool_state(&self) -> (u32, u32) {
        match &self.backend {
            Backend::Sqlite { readers, .. } => {
                let idle = readers.as_ref().map_or(0, |r| lock(r).len() as u32);
                (idle + 1, idle)
            }
            Backend::Postgres(pool) => pool.state(),
        }
    }
}

/// Runs `f`, which blocks on PostgreSQL, where blocking is allowed: on a worker thread
/// of a multi-threaded tokio runtime (an async handler reading the store) through
/// `block_in_place`, since the `postgres` client drives its own runtime and would
/// otherwise refuse to start inside one; elsewhere directly.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// A mutex's guard, taken over when poisoned: a panic while holding a connection leaves
/// SQLite consistent (transactions roll back on drop).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

thread_local! {
    static DRY_RUN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with every `Store::write` on this thread rolled back instead of committed:
/// EC2's DryRun, which checks everything a request would check and changes nothing.
/// Work with effects outside the store must ask `is_dry_run` before acting.
pub fn dry_run<T>(f: impl FnOnce() -> T) -> T {
    let before = DRY_RUN.with(|d| d.replace(true));
    let out = f();
    DRY_RUN.with(|d| d.set(before));
    out
}

/// Whether the current thread is inside `dry_run`.
pub fn is_dry_run() -> bool {
    DRY_RUN.with(|d| d.get())
}

/// The current time as EC2 prints it: ISO-8601 UTC with milliseconds.
pub fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// True when an insert failed on a constraint (a UNIQUE one, where it is used).
pub fn is_unique_violation(e: &db::Error) -> bool {
    e.is_constraint_violation()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dry_run_rolls_writes_back() {
        let s = Store::in_memory().expect("store");
        let a = accounts::Account {
            id: "123456789012".into(),
            name: "a".into(),
            is_provider: false,
            is_vendor: false,
            created_at: now(),
        };
        let r: Result<(), StoreError> = dry_run(|| s.write(|tx| accounts::insert(tx, &a)));
        r.expect("dry write");
        assert!(!is_dry_run());
        assert!(s.read(accounts::list).expect("list").is_empty());
        s.write(|tx| accounts::insert(tx, &a)).expect("write");
        assert_eq!(s.read(accounts::list).expect("list").len(), 1);
    }
}
