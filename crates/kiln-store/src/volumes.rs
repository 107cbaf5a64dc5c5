//! Volumes: qcow2 files under the data directory, each an overlay on a snapshot layer
//! or a blank disk, attached to at most one instance.

use rusqlite::{params, Connection, Row};

use crate::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub id: String,
    pub account_id: String,
    pub region: String,
    pub availability_zone: String,
    pub size_gib: i64,
    pub volume_type: kiln_types::VolumeType,
    pub snapshot_id: Option<String>,
    /// The volume's file, relative to the data directory.
    pub file: String,
    pub state: String,
    pub instance_id: Option<String>,
    pub device_name: Option<String>,
    pub delete_on_termination: bool,
    pub created_at: String,
}

const COLUMNS: &str = "id, account_id, region, availability_zone, size_gib, volume_type, snapshot_id, file, state, \
     instance_id, device_name, delete_on_termination, created_at";

fn row(r: &Row<'_>) -> rusqlite::Result<Volume> {
    Ok(Volume {
        id: r.get(0)?,
        account_id: r.get(1)?,
        region: r.get(2)?,
        availability_zone: r.get(3)?,
        size_gib: r.get(4)?,
        volume_type: crate::parsed(r, 5)?,
        snapshot_id: r.get(6)?,
        file: r.get(7)?,
        state: r.get(8)?,
        instance_id: r.get(9)?,
        device_name: r.get(10)?,
        delete_on_termination: r.get(11)?,
        created_at: r.get(12)?,
    })
}

pub fn insert(conn: &Connection, v: &Volume) -> Result<(), StoreError> {
    conn.execute(
        &format!("INSERT INTO volumes ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"),
        params![
            v.id,
            v.account_id,
            v.region,
            v.availability_zone,
            v.size_gib,
            v.volume_type.as_str(),
            v.snapshot_id,
            v.file,
            v.state,
            v.instance_id,
            v.device_name,
            v.delete_on_termination,
            v.created_at
        ],
    )?;
    Ok(())
}

/// An instance's volumes: the root first (the VM's first disk), then by device name.
pub fn of_instance(conn: &Connection, instance_id: &str) -> Result<Vec<Volume>, StoreError> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM volumes WHERE instance_id = ?1 \
             ORDER BY device_name = (SELECT root_device_name FROM instances WHERE id = ?1) DESC, device_name"
    ))?;
    let rows = st.query_map([instance_id], row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<Volume>, StoreError> {
    use rusqlite::OptionalExtension;
    Ok(conn.query_row(&format!("SELECT {COLUMNS} FROM volumes WHERE id = ?1"), [id], row).optional()?)
}

/// The volumes of one account and region.
pub fn list(conn: &Connection, scope: &crate::Scope) -> Result<Vec<Volume>, StoreError> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM volumes WHERE account_id = ?1 AND region = ?2 ORDER BY created_at, id"
    ))?;
    let rows = st.query_map(params![scope.account, scope.region], row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Every volume (for finding stray files).
pub fn all(conn: &Connection) -> Result<Vec<Volume>, StoreError> {
    let mut st = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM volumes ORDER BY created_at"))?;
    let rows = st.query_map([], row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

pub fn set_state(conn: &Connection, id: &str, state: &str) -> Result<(), StoreError> {
    conn.execute("UPDATE volumes SET state = ?2 WHERE id = ?1", params![id, state])?;
    Ok(())
}

/// Detaches a volume that outlives its instance.
pub fn detach(conn: &Connection, id: &str) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE volumes SET instance_id = NULL, device_name = NULL, state = 'available' WHERE id = ?1",
        params![id],
    )?;
    Ok(())
}

/// Removes a volume's record (its tags go by trigger).
pub fn delete(conn: &Connection, id: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM volumes WHERE id = ?1", [id])?;
    Ok(())
}

/// Points a volume at a new top layer (after CreateImage froze the old one into a snapshot).
pub fn set_layer(conn: &Connection, id: &str, file: &str, snapshot_id: &str) -> Result<(), StoreError> {
    conn.execute("UPDATE volumes SET file = ?2, snapshot_id = ?3 WHERE id = ?1", params![id, file, snapshot_id])?;
    Ok(())
}
