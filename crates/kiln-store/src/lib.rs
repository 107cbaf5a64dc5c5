//! Kiln's persistent state: an embedded SQLite database (WAL, foreign keys, versioned
//! migrations) with one module per resource. This crate stores and loads; it does not
//! decide what is allowed (that is `kiln-control`).

pub mod accounts;
pub mod client_tokens;
pub mod images;
pub mod imports;
pub mod instances;
pub mod interfaces;
pub mod key_pairs;
pub mod launch_templates;
mod migrations;
pub mod routing;
pub mod security_groups;
pub mod snapshots;
pub mod tags;
pub mod volumes;
pub mod vpcs;
pub mod workflows;

use std::path::Path;
use std::sync::Mutex;

pub use rusqlite::types::Value;
pub use rusqlite::{params_from_iter, Connection, Transaction};

/// A store error: the database failed or holds something it should not.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database schema version {found} is newer than this kiln understands ({known}); upgrade kiln")]
    TooNew { found: i64, known: i64 },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("instance {id} cannot go from {from} to {to}")]
    IllegalTransition { id: String, from: kiln_types::InstanceState, to: kiln_types::InstanceState },
}

/// Column `idx` of `row` as a typed value parsed from its text (a state or an option
/// enum); a value this kiln does not know is corrupt data, not a default.
pub(crate) fn parsed<T>(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<T>
where
    T: std::str::FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let text: String = row.get(idx)?;
    text.parse().map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e)))
}

/// Which account and region a query is for. Every resource lives in exactly one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub account: String,
    pub region: String,
}

/// The database: one writer connection behind a mutex (SQLite serialises writers
/// anyway) and a pool of read-only connections, which WAL lets read while the writer
/// writes, so a Describe never waits for a launch or a reconciler pass.
///
/// The pool is a stack of idle connections, opened on demand and kept: a crate such
/// as r2d2 would add a manager thread and timeouts that a local file does not need.
pub struct Store {
    writer: Mutex<Connection>,
    /// Idle readers; `None` for an in-memory database, whose readers share the writer.
    readers: Option<Mutex<Vec<Connection>>>,
    path: Option<std::path::PathBuf>,
    /// Committed writes so far (see `commits`).
    commits: std::sync::atomic::AtomicU64,
}

/// Readers kept idle at most (more may be open while many threads read).
const IDLE_READERS: usize = 16;

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        let mut s = Self::init(conn)?;
        s.readers = Some(Mutex::new(Vec::new()));
        s.path = Some(path.to_path_buf());
        Ok(s)
    }

    /// A private in-memory database, for tests.
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Self, StoreError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrations::migrate(&mut conn)?;
        Ok(Self { writer: Mutex::new(conn), readers: None, path: None, commits: Default::default() })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll
        // back on drop), so a poisoned lock is safe to take over.
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn reader(&self, path: &Path) -> Result<Connection, StoreError> {
        let idle = self.readers.as_ref().and_then(|r| r.lock().unwrap_or_else(|p| p.into_inner()).pop());
        if let Some(c) = idle {
            return Ok(c);
        }
        let c = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        c.busy_timeout(std::time::Duration::from_secs(5))?;
        c.pragma_update(None, "query_only", "ON")?;
        Ok(c)
    }

    /// Runs `f` on a read-only view: a pooled reader, which sees every committed write.
    pub fn read<T, E: From<StoreError>>(&self, f: impl FnOnce(&Connection) -> Result<T, E>) -> Result<T, E> {
        let Some(path) = &self.path else {
            let conn = self.lock();
            return f(&conn);
        };
        let conn = self.reader(path)?;
        let out = f(&conn);
        if let Some(r) = &self.readers {
            let mut idle = r.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < IDLE_READERS {
                idle.push(conn);
            }
        }
        out
    }

    /// Runs `f` in a transaction, committed only if `f` succeeds (and rolled back
    /// anyway inside `dry_run`). `BEGIN IMMEDIATE`: the write lock is taken first, so
    /// what `f` reads cannot change before it writes.
    pub fn write<T, E: From<StoreError>>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T, E>) -> Result<T, E> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(StoreError::from)?;
        let out = f(&tx)?;
        if is_dry_run() {
            tx.rollback().map_err(StoreError::from)?;
        } else {
            tx.commit().map_err(StoreError::from)?;
            self.commits.fetch_add(1, std::sync::atomic::Ordering::Release);
        }
        Ok(out)
    }

    /// Counts this process's committed writes: what was read at one count is still
    /// true while the count has not moved (a cache's validity test; the server is the
    /// only writer of a running cloud's resources).
    pub fn commits(&self) -> u64 {
        self.commits.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The schema version now in force.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self.lock().pragma_query_value(None, "user_version", |r| r.get(0))?)
    }
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

/// True when an insert failed on a UNIQUE constraint.
pub fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation)
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
