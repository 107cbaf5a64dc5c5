//! Workflows: multi-step work (CreateImage, reboot, a forced stop) recorded as intent in
//! the same transaction that accepts the request, then carried out step by step by the
//! reconciler. The row holds the step reached and the workflow's parameters (JSON); at
//! most one workflow runs per instance at a time (a unique index says so): others wait
//! `queued` and start, oldest first, when it ends.

use crate::db::{params, Connection, Row};

use crate::StoreError;

/// One workflow, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workflow {
    pub id: String,
    pub kind: String,
    pub instance_id: Option<String>,
    /// The kind's parameters and progress, as JSON.
    pub params: String,
    pub step: String,
    /// `queued`, `running`, `done` or `failed`.
    pub status: String,
    pub attempts: i64,
    pub error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

const COLUMNS: &str = "id, kind, instance_id, params, step, status, attempts, error, created_at, updated_at";

fn row(r: &Row<'_>) -> crate::db::Result<Workflow> {
    Ok(Workflow {
        id: r.get(0)?,
        kind: r.get(1)?,
        instance_id: r.get(2)?,
        params: r.get(3)?,
        step: r.get(4)?,
        status: r.get(5)?,
        attempts: r.get(6)?,
        error: r.get(7)?,
        created_at: r.get(8)?,
        updated_at: r.get(9)?,
    })
}

/// Records a new workflow: running, or queued behind the one running on the same
/// instance. Returns whether it runs now.
pub fn insert(conn: &Connection, w: &Workflow) -> Result<bool, StoreError> {
    let sql = format!("INSERT INTO workflows ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)");
    let with = |status: &str| {
        conn.execute(
            &sql,
            params![
                w.id,
                w.kind,
                w.instance_id,
                w.params,
                w.step,
                status,
                w.attempts,
                w.error,
                w.created_at,
                w.updated_at
            ],
        )
    };
    match with("running") {
        Ok(_) => Ok(true),
        Err(e) if crate::is_unique_violation(&e) => {
            with("queued")?;
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// Instances with a workflow running or queued.
pub fn holding(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT DISTINCT instance_id FROM workflows WHERE status IN ('running', 'queued') AND instance_id IS NOT NULL",
    )?;
    let rows = st.query_map((), |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok(rows)
}

/// The kinds of the workflows running or queued on an instance, oldest first.
pub fn pending_on(conn: &Connection, instance_id: &str) -> Result<Vec<String>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT kind FROM workflows WHERE instance_id = ?1 AND status IN ('running', 'queued') ORDER BY created_at, id",
    )?;
    let rows = st.query_map([instance_id], |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Workflows still running, oldest first.
pub fn running(conn: &Connection) -> Result<Vec<Workflow>, StoreError> {
    let mut st = conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM workflows WHERE status = 'running' ORDER BY created_at, id"))?;
    let rows = st.query_map((), row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<Workflow>, StoreError> {
    use crate::db::OptionalExtension;
    Ok(conn.query_row(&format!("SELECT {COLUMNS} FROM workflows WHERE id = ?1"), [id], row).optional()?)
}

/// Records progress: the step reached and the parameters as they now are. Only a
/// running workflow moves (compare-and-set on the status); returns whether it did.
pub fn advance(conn: &Connection, id: &str, step: &str, params: &str) -> Result<bool, StoreError> {
    let n = conn.execute(
        "UPDATE workflows SET step = ?2, params = ?3, updated_at = ?4
         WHERE id = ?1 AND status = 'running'",
        params![id, step, params, crate::now()],
    )?;
    Ok(n > 0)
}

/// Counts a failed attempt at the current step, with its error; returns the count.
pub fn failed_attempt(conn: &Connection, id: &str, error: &str) -> Result<i64, StoreError> {
    conn.execute(
        "UPDATE workflows SET attempts = attempts + 1, error = ?2, updated_at = ?3
         WHERE id = ?1",
        params![id, error, crate::now()],
    )?;
    Ok(conn.query_row("SELECT attempts FROM workflows WHERE id = ?1", [id], |r| r.get(0))?)
}

/// Ends a running workflow as `done` or `failed` (with the reason), and starts the
/// next one queued on its instance.
pub fn finish(conn: &Connection, id: &str, status: &str, error: Option<&str>) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE workflows SET status = ?2, error = COALESCE(?3, error), updated_at = ?4
         WHERE id = ?1 AND status = 'running'",
        params![id, status, error, crate::now()],
    )?;
    conn.execute(
        "UPDATE workflows SET status = 'running', updated_at = ?2
         WHERE id = (SELECT q.id FROM workflows q JOIN workflows w ON q.instance_id = w.instance_id
                     WHERE w.id = ?1 AND q.status = 'queued' ORDER BY q.created_at, q.id LIMIT 1)",
        params![id, crate::now()],
    )?;
    Ok(())
}

/// Forgets finished workflows older than `days` days.
pub fn purge_finished(conn: &Connection, days: i64) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "DELETE FROM workflows WHERE status IN ('done', 'failed') AND updated_at < ?1",
        [(chrono::Utc::now() - chrono::Duration::days(days)).format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()],
    )?)
}

/// Counts by kind and status, for `kiln` operators and tests.
pub fn counts(conn: &Connection) -> Result<Vec<(String, String, i64)>, StoreError> {
    let mut st =
        conn.prepare("SELECT kind, status, count(*) FROM workflows GROUP BY kind, status ORDER BY kind, status")?;
    let rows = st.query_map((), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?;
    Ok(rows)
}
