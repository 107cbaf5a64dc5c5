//! Disk image import tasks (ImportSnapshot and ImportImage).

use crate::db::{params, Connection, Row};

use crate::{Scope, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportTask {
    pub id: String,
    pub account_id: String,
    pub region: String,
    /// `snapshot` or `image`.
    pub kind: String,
    pub url: String,
    pub format: String,
    pub description: String,
    pub architecture: Option<String>,
    /// `active`, `completed` or `deleted` (failed), as EC2 reports them.
    pub status: String,
    pub status_message: String,
    pub progress: i64,
    pub snapshot_id: Option<String>,
    pub image_id: Option<String>,
    pub disk_size: Option<i64>,
    pub created_at: String,
}

const COLUMNS: &str = "id, account_id, region, kind, url, format, description, architecture, status, status_message, \
     progress, snapshot_id, image_id, disk_size, created_at";

fn row(r: &Row<'_>) -> crate::db::Result<ImportTask> {
    Ok(ImportTask {
        id: r.get(0)?,
        account_id: r.get(1)?,
        region: r.get(2)?,
        kind: r.get(3)?,
        url: r.get(4)?,
        format: r.get(5)?,
        description: r.get(6)?,
        architecture: r.get(7)?,
        status: r.get(8)?,
        status_message: r.get(9)?,
        progress: r.get(10)?,
        snapshot_id: r.get(11)?,
        image_id: r.get(12)?,
        disk_size: r.get(13)?,
        created_at: r.get(14)?,
    })
}

pub fn insert(conn: &Connection, t: &ImportTask) -> Result<(), StoreError> {
    conn.execute(
        &format!("INSERT INTO import_tasks ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"),
        params![
            t.id,
            t.account_id,
            t.region,
            t.kind,
            t.url,
            t.format,
            t.description,
            t.architecture,
            t.status,
            t.status_message,
            t.progress,
            t.snapshot_id,
            t.image_id,
            t.disk_size,
            t.created_at
        ],
    )?;
    Ok(())
}

pub fn list(conn: &Connection, scope: &Scope, kind: &str) -> Result<Vec<ImportTask>, StoreError> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM import_tasks WHERE account_id = ?1 AND region = ?2 AND kind = ?3 ORDER BY created_at, id"
    ))?;
    let rows = st.query_map(params![scope.account, scope.region, kind], row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Tasks that were running when the daemon stopped.
pub fn active(conn: &Connection) -> Result<Vec<ImportTask>, StoreError> {
    let mut st = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM import_tasks WHERE status = 'active'"))?;
    let rows = st.query_map((), row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<ImportTask>, StoreError> {
    use crate::db::OptionalExtension;
    Ok(conn.query_row(&format!("SELECT {COLUMNS} FROM import_tasks WHERE id = ?1"), [id], row).optional()?)
}

/// Records progress or the outcome (a task's columns are few and fixed: no struct).
#[allow(clippy::too_many_arguments)]
pub fn update(
    conn: &Connection,
    id: &str,
    status: &str,
    message: &str,
    progress: i64,
    snapshot_id: Option<&str>,
    image_id: Option<&str>,
    disk_size: Option<i64>,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE import_tasks SET status = ?2, status_message = ?3, progress = ?4,
           snapshot_id = COALESCE(?5, snapshot_id), image_id = COALESCE(?6, image_id), disk_size = COALESCE(?7, disk_size)
         WHERE id = ?1",
        params![id, status, message, progress, snapshot_id, image_id, disk_size],
    )?;
    Ok(())
}

/// Ends a task as failed: nothing it made stays named.
pub fn fail(conn: &Connection, id: &str, message: &str) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE import_tasks SET status = 'deleted', status_message = ?2, progress = 0, snapshot_id = NULL, image_id = NULL
         WHERE id = ?1",
        params![id, message],
    )?;
    Ok(())
}
