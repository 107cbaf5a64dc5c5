//! PostgreSQL connections: an r2d2 pool of `postgres` clients with Kiln's session
//! settings, and the write transaction every server takes the same way.
//!
//! Writes are serialised across all servers by one transaction-scoped advisory lock
//! taken right after `BEGIN`: the control plane's checks (a free address, a name not
//! taken, a quota) read and then write, and under the lock nothing can commit in
//! between, as under SQLite's `BEGIN IMMEDIATE`. READ COMMITTED then suffices, and no
//! write can fail on a serialisation conflict. Reads take no lock.

use std::time::Duration;

use crate::db::{Error, PgClient};
use crate::StoreError;

/// The advisory lock every write transaction holds (an arbitrary constant: "kiln").
pub(crate) const WRITE_LOCK: i64 = 0x6b69_6c6e;
/// The advisory lock held while migrating, so that servers starting together never
/// both migrate.
pub(crate) const MIGRATE_LOCK: i64 = 0x6b69_6c6e_0001;

/// Statements that run longer are cancelled (a stuck query must not hold the write
/// lock forever); a transaction left idle this long is ended by the server.
const SESSION_SETTINGS: &str = "SET statement_timeout = '30s'; \
    SET lock_timeout = '30s'; \
    SET idle_in_transaction_session_timeout = '60s'; \
    SET TIME ZONE 'UTC'";

/// Opens connections for the pool.
pub(crate) struct Manager {
    config: postgres::Config,
}

impl r2d2::ManageConnection for Manager {
    type Connection = PgClient;
    type Error = postgres::Error;

    fn connect(&self) -> Result<PgClient, postgres::Error> {
        let mut client = self.config.connect(postgres::NoTls)?;
        client.batch_execute(SESSION_SETTINGS)?;
        Ok(PgClient::new(client))
    }

    fn is_valid(&self, conn: &mut PgClient) -> Result<(), postgres::Error> {
        conn.client.batch_execute("")
    }

    fn has_broken(&self, conn: &mut PgClient) -> bool {
        conn.client.is_closed()
    }
}

/// The pool.
pub(crate) struct Pool {
    pool: r2d2::Pool<Manager>,
}

/// Attempts at beginning a write (connecting, `BEGIN`, the write lock) before its
/// error is returned.
const BEGIN_ATTEMPTS: u32 = 5;

/// Connections per server at most: writes are serialised, so more would only wait.
const MAX_CONNECTIONS: u32 = 16;

impl Pool {
    /// Connects to `url` and brings the schema up to date.
    pub(crate) fn connect(url: &str) -> Result<Self, StoreError> {
        let mut config: postgres::Config =
            url.parse().map_err(|e| StoreError::Config(format!("{}: {e}", redact(url))))?;
        if config.get_application_name().is_none() {
            config.application_name("kiln");
        }
        config.connect_timeout(Duration::from_secs(10));
        let pool = r2d2::Pool::builder()
            .max_size(MAX_CONNECTIONS)
            .min_idle(Some(1))
            // No round trip to test each connection as it is handed out (it doubled the
            // cost of a read); a broken one is dropped when it is returned (`has_broken`),
            // and a write's begin is tried again on another.
            .test_on_check_out(false)
            .connection_timeout(Duration::from_secs(15))
            .build(Manager { config })
            .map_err(|e| StoreError::Config(format!("cannot connect to {}: {e}", redact(url))))?;
        let pool = Self { pool };
        crate::migrations::migrate_postgres(&mut pool.get()?.client)?;
        Ok(pool)
    }

    pub(crate) fn get(&self) -> Result<r2d2::PooledConnection<Manager>, StoreError> {
        self.pool.get().map_err(|e| StoreError::Db(Error::Pool(e.to_string())))
    }

    /// A connection inside a write transaction that holds the write lock. A failure
    /// before the caller's statements run (no connection, the lock not granted in
    /// time, a serialisation failure) is tried again, up to `BEGIN_ATTEMPTS` times with
    /// a doubling pause; the caller's work itself is never run twice.
    pub(crate) fn begin_write(&self) -> Result<r2d2::PooledConnection<Manager>, StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let begun = self.get().and_then(|mut c| match c.client.batch_execute(&begin_sql()) {
                Ok(()) => Ok(c),
                Err(e) => {
                    // A failed lock leaves the transaction aborted: end it before the
                    // connection goes back to the pool.
                    let _ = c.client.batch_execute("ROLLBACK");
                    Err(e.into())
                }
            });
            match begun {
                Ok(c) => return Ok(c),
                Err(StoreError::Db(e)) if attempt < BEGIN_ATTEMPTS && e.is_retryable() => {
                    tracing::warn!(error = %e, attempt, "cannot begin a write; trying again");
                    std::thread::sleep(Duration::from_millis(50 << attempt));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether the database answers within a few seconds (readiness).
    pub(crate) fn ping(&self) -> Result<(), StoreError> {
        let mut c =
            self.pool.get_timeout(Duration::from_secs(3)).map_err(|e| StoreError::Db(Error::Pool(e.to_string())))?;
        c.client.batch_execute("SELECT 1")?;
        Ok(())
    }

    /// The count of committed writes, kept in the database by every server.
    pub(crate) fn generation(&self) -> Result<u64, StoreError> {
        let n: i64 = self.get()?.client.query_one("SELECT n FROM kiln_generation", &[])?.get(0);
        Ok(n as u64)
    }

    /// Connections open and idle.
    pub(crate) fn state(&self) -> (u32, u32) {
        let s = self.pool.state();
        (s.connections, s.idle_connections)
    }
}

/// An open write transaction; rolled back when dropped without a commit (an error or
/// a panic in the middle), so no connection goes back to the pool inside one.
pub(crate) struct WriteTx<'a> {
    client: &'a mut PgClient,
    open: bool,
}

fn begin_sql() -> String {
    format!("BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})")
}

impl<'a> WriteTx<'a> {
    /// The transaction `Pool::begin_write` began on `client`.
    pub(crate) fn started(client: &'a mut PgClient) -> Self {
        Self { client, open: true }
    }

    pub(crate) fn client(&mut self) -> &mut PgClient {
        self.client
    }

    pub(crate) fn commit(mut self) -> Result<(), StoreError> {
        self.open = false;
        self.client.client.batch_execute("UPDATE kiln_generation SET n = n + 1; COMMIT")?;
        Ok(())
    }

    pub(crate) fn rollback(mut self) -> Result<(), StoreError> {
        self.open = false;
        self.client.client.batch_execute("ROLLBACK")?;
        Ok(())
    }
}

impl Drop for WriteTx<'_> {
    fn drop(&mut self) {
        if self.open {
            // A failed rollback means a broken connection, which the pool drops.
            let _ = self.client.client.batch_execute("ROLLBACK");
        }
    }
}

/// `url` without its password, to be printed.
pub(crate) fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "a PostgreSQL URL that does not parse".to_owned(),
    }
}
