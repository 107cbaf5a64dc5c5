//! Snapshots: immutable qcow2 layers, with their parent (backing) layer. A deleted
//! snapshot stays as a hidden row while anything still builds on it.

use crate::db::{params, Connection, OptionalExtension, Row};

use crate::{Scope, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub id: String,
    pub account_id: String,
    pub region: String,
    pub parent_id: Option<String>,
    /// The layer file, relative to the data directory.
    pub file: String,
    pub volume_size: i64,
    pub state: String,
    pub progress: i64,
    pub description: String,
    pub volume_id: Option<String>,
    pub created_at: String,
}

const COLUMNS: &str =
    "id, account_id, region, parent_id, file, volume_size, state, progress, description, volume_id, created_at";

fn row(r: &Row<'_>) -> crate::db::Result<Snapshot> {
    Ok(Snapshot {
        id: r.get(0)?,
        account_id: r.get(1)?,
        region: r.get(2)?,
        parent_id: r.get(3)?,
        file: r.get(4)?,
        volume_size: r.get(5)?,
        state: r.get(6)?,
        progress: r.get(7)?,
        description: r.get(8)?,
        volume_id: r.get(9)?,
        created_at: r.get(10)?,
    })
}

pub fn insert(conn: &Connection, s: &Snapshot) -> Result<(), StoreError> {
    conn.execute(
        &format!("INSERT INTO snapshots ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
        params![
            s.id,
            s.account_id,
            s.region,
            s.parent_id,
            s.file,
            s.volume_size,
            s.state,
            s.progress,
            s.description,
            s.volume_id,
            s.created_at
        ],
    )?;
    Ok(())
}

/// Snapshots the scope's account owns in its region (not deleted).
pub fn list_owned(conn: &Connection, scope: &Scope) -> Result<Vec<Snapshot>, StoreError> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM snapshots WHERE account_id = ?1 AND region = ?2 AND deleted = 0 ORDER BY created_at, id"
    ))?;
    let rows = st.query_map(params![scope.account, scope.region], row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Any snapshot by id, whoever owns it (for images shared across accounts).
pub fn get(conn: &Connection, id: &str) -> Result<Option<Snapshot>, StoreError> {
    Ok(conn
        .query_row(&format!("SELECT {COLUMNS} FROM snapshots WHERE id = ?1 AND deleted = 0"), [id], row)
        .optional()?)
}

pub fn set_state(conn: &Connection, id: &str, state: &str, progress: i64) -> Result<(), StoreError> {
    conn.execute("UPDATE snapshots SET state = ?2, progress = ?3 WHERE id = ?1", params![id, state, progress])?;
    Ok(())
}

/// Sets the layer file and parent of a snapshot CreateImage is making (when its
/// volume's file is frozen).
pub fn set_origin(conn: &Connection, id: &str, file: &str, parent_id: Option<&str>) -> Result<(), StoreError> {
    conn.execute("UPDATE snapshots SET file = ?2, parent_id = ?3 WHERE id = ?1", params![id, file, parent_id])?;
    Ok(())
}

/// Hides a snapshot; its layer stays until `collectable` says nothing needs it.
pub fn mark_deleted(conn: &Connection, id: &str) -> Result<(), StoreError> {
    conn.execute("UPDATE snapshots SET deleted = 1 WHERE id = ?1", [id])?;
    Ok(())
}

/// Whether an image's block device mapping uses the snapshot.
pub fn used_by_image(conn: &Connection, id: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row("SELECT image_id FROM image_block_devices WHERE snapshot_id = ?1 LIMIT 1", [id], |r| r.get(0))
        .optional()?)
}

/// Deleted snapshots that nothing references any more (no image, no child layer, no
/// volume building on it or still writing its file, not pending): their rows can go,
/// and their files if no other row shares them.
pub fn collectable(conn: &Connection) -> Result<Vec<Snapshot>, StoreError> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM snapshots s WHERE deleted = 1 AND state != 'pending'
           AND NOT EXISTS (SELECT 1 FROM volumes w WHERE w.file = s.file)
           AND NOT EXISTS (SELECT 1 FROM snapshots c WHERE c.parent_id = s.id)
           AND NOT EXISTS (SELECT 1 FROM image_block_devices b WHERE b.snapshot_id = s.id)
           AND NOT EXISTS (SELECT 1 FROM volumes v WHERE v.snapshot_id = s.id)"
    ))?;
    let rows = st.query_map((), row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

pub fn remove(conn: &Connection, id: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM snapshots WHERE id = ?1", [id])?;
    Ok(())
}

/// How many rows (deleted or not) still point at a layer file.
pub fn file_users(conn: &Connection, file: &str) -> Result<i64, StoreError> {
    Ok(conn.query_row("SELECT count(*) FROM snapshots WHERE file = ?1", [file], |r| r.get(0))?)
}

/// Whether `file` is the layer of a completed snapshot (deleted or not): frozen, so a
/// host may be sent it.
pub fn is_completed_layer(conn: &Connection, file: &str) -> Result<bool, StoreError> {
    Ok(conn
        .query_row("SELECT 1 FROM snapshots WHERE file = ?1 AND state = 'completed' LIMIT 1", [file], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Every layer file the store knows, for finding strays on disk.
pub fn all_files(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut st = conn.prepare("SELECT DISTINCT file FROM snapshots")?;
    let rows = st.query_map((), |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Who may make volumes from a snapshot besides its owner: account ids, or `all`.
pub fn permissions(conn: &Connection, snapshot_id: &str) -> Result<Vec<String>, StoreError> {
    let mut st =
        conn.prepare_cached("SELECT grantee FROM snapshot_permissions WHERE snapshot_id = ?1 ORDER BY grantee")?;
    let rows = st.query_map([snapshot_id], |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok(rows)
}

pub fn add_permission(conn: &Connection, snapshot_id: &str, grantee: &str) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO snapshot_permissions (snapshot_id, grantee) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        params![snapshot_id, grantee],
    )?;
    Ok(())
}

/// Removes one grantee, or every one (`None`).
pub fn remove_permission(conn: &Connection, snapshot_id: &str, grantee: Option<&str>) -> Result<(), StoreError> {
    conn.execute(
        "DELETE FROM snapshot_permissions WHERE snapshot_id = ?1 AND (CAST(?2 AS TEXT) IS NULL OR grantee = ?2)",
        params![snapshot_id, grantee],
    )?;
    Ok(())
}

/// Snapshots of a region shared with `account` (by id or with `all`), not its own.
pub fn shared_with(conn: &Connection, account: &str, region: &str) -> Result<Vec<Snapshot>, StoreError> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM snapshots WHERE deleted = 0 AND region = ?2 AND account_id != ?1
             AND id IN (SELECT snapshot_id FROM snapshot_permissions WHERE grantee IN (?1, 'all'))
         ORDER BY created_at, id"
    ))?;
    let rows = st.query_map(params![account, region], row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

/// A snapshot by id, hidden (deleted, kept as a layer) or not.
pub fn get_even_deleted(conn: &Connection, id: &str) -> Result<Option<Snapshot>, StoreError> {
    Ok(conn.query_row(&format!("SELECT {COLUMNS} FROM snapshots WHERE id = ?1"), [id], row).optional()?)
}
