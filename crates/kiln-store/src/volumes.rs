//! Volumes: qcow2 files under the data directory, each an overlay on a snapshot layer
//! or a blank disk, attached to at most one instance; their modifications, and each
//! account's EBS encryption default.

use crate::db::{params, Connection, OptionalExtension, Row};
use kiln_types::{VolumeAttachState, VolumeState, VolumeType};

use crate::{Scope, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub id: String,
    pub account_id: String,
    pub region: String,
    pub availability_zone: String,
    pub size_gib: i64,
    pub volume_type: VolumeType,
    /// The snapshot layer the file is an overlay on (it moves on as the volume is
    /// snapshotted).
    pub snapshot_id: Option<String>,
    /// The snapshot the volume was made from, as EC2 shows it: it never changes.
    pub source_snapshot_id: Option<String>,
    /// The volume's file, relative to the data directory.
    pub file: String,
    pub state: VolumeState,
    pub instance_id: Option<String>,
    pub device_name: Option<String>,
    pub delete_on_termination: bool,
    pub created_at: String,
    /// IOPS and throughput as set (gp3, io1, io2); None where the type has none.
    pub iops: Option<i64>,
    pub throughput: Option<i64>,
    pub encrypted: bool,
    pub kms_key_id: Option<String>,
    pub multi_attach: bool,
    pub auto_enable_io: bool,
    /// While attached: attaching, attached or detaching.
    pub attach_state: Option<VolumeAttachState>,
    pub attach_time: Option<String>,
    pub client_token: Option<String>,
    /// DetachVolume with Force on a running VM: its disk is pulled from under the
    /// guest rather than released by it.
    pub force_detach: bool,
}

impl Volume {
    /// Its attachment's status as EC2 shows it (a volume still being made for its
    /// instance is attaching).
    pub fn attachment_status(&self) -> &'static str {
        match (self.state, self.attach_state) {
            (VolumeState::Creating, _) => VolumeAttachState::Attaching.as_str(),
            (_, Some(a)) => a.as_str(),
            (_, None) => VolumeAttachState::Attached.as_str(),
        }
    }

    /// A volume with EC2's defaults for everything but its identity, place, size and
    /// type (used where volumes are made).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: String,
        scope: &Scope,
        availability_zone: String,
        size_gib: i64,
        volume_type: VolumeType,
        snapshot_id: Option<String>,
        file: String,
    ) -> Self {
        Volume {
            id,
            account_id: scope.account.clone(),
            region: scope.region.clone(),
            availability_zone,
            size_gib,
            volume_type,
            source_snapshot_id: snapshot_id.clone(),
            snapshot_id,
            file,
            state: VolumeState::Creating,
            instance_id: None,
            device_name: None,
            delete_on_termination: false,
            created_at: crate::now(),
            iops: volume_type.limits().iops.map(|(_, _, d, _)| d),
            throughput: volume_type.limits().throughput.map(|(_, _, d)| d),
            encrypted: false,
            kms_key_id: None,
            multi_attach: false,
            auto_enable_io: false,
            attach_state: None,
            attach_time: None,
            client_token: None,
            force_detach: false,
        }
    }
}

const COLUMNS: &str = "id, account_id, region, availability_zone, size_gib, volume_type, snapshot_id, file, state, \
     instance_id, device_name, delete_on_termination, created_at, iops, throughput, encrypted, kms_key_id, \
     multi_attach, auto_enable_io, attach_state, attach_time, client_token, force_detach, source_snapshot_id";

fn optional<T: std::str::FromStr>(r: &Row<'_>, idx: usize) -> crate::db::Result<Option<T>>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    r.get::<_, Option<String>>(idx)?.map(|t| t.parse()).transpose().map_err(|e| crate::db::Error::conversion(idx, e))
}

fn row(r: &Row<'_>) -> crate::db::Result<Volume> {
    Ok(Volume {
        id: r.get(0)?,
        account_id: r.get(1)?,
        region: r.get(2)?,
        availability_zone: r.get(3)?,
        size_gib: r.get(4)?,
        volume_type: crate::parsed(r, 5)?,
        snapshot_id: r.get(6)?,
        file: r.get(7)?,
        state: crate::parsed(r, 8)?,
        instance_id: r.get(9)?,
        device_name: r.get(10)?,
        delete_on_termination: r.get(11)?,
        created_at: r.get(12)?,
        iops: r.get(13)?,
        throughput: r.get(14)?,
        encrypted: r.get(15)?,
        kms_key_id: r.get(16)?,
        multi_attach: r.get(17)?,
        auto_enable_io: r.get(18)?,
        attach_state: optional(r, 19)?,
        attach_time: r.get(20)?,
        client_token: r.get(21)?,
        force_detach: r.get(22)?,
        source_snapshot_id: r.get(23)?,
    })
}

pub fn insert(conn: &Connection, v: &Volume) -> Result<(), StoreError> {
    conn.execute(
        &format!(
            "INSERT INTO volumes ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, \
             ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24)"
        ),
        params![
            v.id,
            v.account_id,
            v.region,
            v.availability_zone,
            v.size_gib,
            v.volume_type.as_str(),
            v.snapshot_id,
            v.file,
            v.state.as_str(),
            v.instance_id,
            v.device_name,
            v.delete_on_termination,
            v.created_at,
            v.iops,
            v.throughput,
            v.encrypted,
            v.kms_key_id,
            v.multi_attach,
            v.auto_enable_io,
            v.attach_state.map(|a| a.as_str()),
            v.attach_time,
            v.client_token,
            v.force_detach,
            v.source_snapshot_id
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
    Ok(conn.query_row(&format!("SELECT {COLUMNS} FROM volumes WHERE id = ?1"), [id], row).optional()?)
}

/// The volumes of one account and region.
pub fn list(conn: &Connection, scope: &Scope) -> Result<Vec<Volume>, StoreError> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM volumes WHERE account_id = ?1 AND region = ?2 ORDER BY created_at, id"
    ))?;
    let rows = st.query_map(params![scope.account, scope.region], row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Every volume (for finding stray files).
pub fn all(conn: &Connection) -> Result<Vec<Volume>, StoreError> {
    let mut st = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM volumes ORDER BY created_at"))?;
    let rows = st.query_map((), row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Sets a volume's state; a volume made for an instance becomes in-use and attached.
pub fn set_state(conn: &Connection, id: &str, state: VolumeState) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE volumes SET state = ?2,
             attach_state = CASE WHEN instance_id IS NULL THEN NULL ELSE COALESCE(attach_state, 'attached') END
         WHERE id = ?1",
        params![id, state.as_str()],
    )?;
    Ok(())
}

/// Detaches a volume that outlives its instance.
pub fn detach(conn: &Connection, id: &str) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE volumes SET instance_id = NULL, device_name = NULL, state = 'available', attach_state = NULL,
             attach_time = NULL, delete_on_termination = 0, force_detach = 0
         WHERE id = ?1",
        params![id],
    )?;
    Ok(())
}

/// Attaches an available volume; false when it was attached meanwhile or the device
/// is taken on that instance.
pub fn attach(
    conn: &Connection,
    id: &str,
    instance_id: &str,
    device: &str,
    state: VolumeAttachState,
) -> Result<bool, StoreError> {
    let done = conn.execute(
        "UPDATE volumes SET instance_id = ?2, device_name = ?3, state = 'in-use', attach_state = ?4,
             attach_time = ?5, delete_on_termination = 0
         WHERE id = ?1 AND instance_id IS NULL AND state = 'available'",
        params![id, instance_id, device, state.as_str(), crate::now()],
    );
    match done {
        Ok(n) => Ok(n == 1),
        Err(e) if crate::is_unique_violation(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Moves an attachment from one state to another (compare-and-set).
/// DetachVolume with Force on a running VM: detaching, the disk to be pulled from
/// under the guest; false when the volume is not attached (any more).
pub fn force_detach(conn: &Connection, id: &str) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "UPDATE volumes SET attach_state = 'detaching', force_detach = 1
         WHERE id = ?1 AND instance_id IS NOT NULL AND attach_state IS NOT NULL",
        [id],
    )? == 1)
}

pub fn set_attach_state(
    conn: &Connection,
    id: &str,
    from: VolumeAttachState,
    to: VolumeAttachState,
) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "UPDATE volumes SET attach_state = ?3 WHERE id = ?1 AND attach_state = ?2",
        params![id, from.as_str(), to.as_str()],
    )? == 1)
}

/// Brings an attachment of `instance_id` to rest, if it is still the one a pass read
/// (compare-and-set on the instance and the state): attaching becomes attached,
/// detaching ends (the volume is available).
pub fn settle(conn: &Connection, id: &str, instance_id: &str, from: VolumeAttachState) -> Result<bool, StoreError> {
    let sql = match from {
        VolumeAttachState::Attaching => {
            "UPDATE volumes SET attach_state = 'attached' WHERE id = ?1 AND instance_id = ?2 AND attach_state = ?3"
        }
        VolumeAttachState::Detaching => {
            "UPDATE volumes SET instance_id = NULL, device_name = NULL, state = 'available', attach_state = NULL,
                 attach_time = NULL, delete_on_termination = 0, force_detach = 0
             WHERE id = ?1 AND instance_id = ?2 AND attach_state = ?3"
        }
        VolumeAttachState::Attached => return Ok(false),
    };
    Ok(conn.execute(sql, params![id, instance_id, from.as_str()])? == 1)
}

/// Points a detached volume still on `from` at a new top layer; false when it was
/// attached or moved on meanwhile (compare-and-set).
pub fn set_layer_if_detached(
    conn: &Connection,
    id: &str,
    from: &str,
    file: &str,
    snapshot_id: &str,
) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "UPDATE volumes SET file = ?3, snapshot_id = ?4 WHERE id = ?1 AND file = ?2 AND instance_id IS NULL",
        params![id, from, file, snapshot_id],
    )? == 1)
}

/// Standalone volumes still to be made (CreateVolume), of every account.
pub fn to_make(conn: &Connection) -> Result<Vec<Volume>, StoreError> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM volumes WHERE state = 'creating' AND instance_id IS NULL ORDER BY created_at"
    ))?;
    let rows = st.query_map((), row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

/// The volume a ClientToken made, in a scope.
pub fn by_client_token(conn: &Connection, scope: &Scope, token: &str) -> Result<Option<Volume>, StoreError> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM volumes WHERE account_id = ?1 AND region = ?2 AND client_token = ?3"),
            params![scope.account, scope.region, token],
            row,
        )
        .optional()?)
}

/// What ModifyVolume and ModifyVolumeAttribute change.
pub fn set_shape(
    conn: &Connection,
    id: &str,
    size_gib: i64,
    volume_type: VolumeType,
    iops: Option<i64>,
    throughput: Option<i64>,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE volumes SET size_gib = ?2, volume_type = ?3, iops = ?4, throughput = ?5 WHERE id = ?1",
        params![id, size_gib, volume_type.as_str(), iops, throughput],
    )?;
    Ok(())
}

pub fn set_auto_enable_io(conn: &Connection, id: &str, on: bool) -> Result<(), StoreError> {
    conn.execute("UPDATE volumes SET auto_enable_io = ?2 WHERE id = ?1", params![id, on])?;
    Ok(())
}

pub fn set_delete_on_termination(conn: &Connection, id: &str, on: bool) -> Result<(), StoreError> {
    conn.execute("UPDATE volumes SET delete_on_termination = ?2 WHERE id = ?1", params![id, on])?;
    Ok(())
}

/// A volume's latest modification (ModifyVolume).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Modification {
    pub volume_id: String,
    /// modifying, optimizing or completed.
    pub state: String,
    pub original_size: i64,
    pub target_size: i64,
    pub original_type: VolumeType,
    pub target_type: VolumeType,
    pub original_iops: Option<i64>,
    pub target_iops: Option<i64>,
    pub original_throughput: Option<i64>,
    pub target_throughput: Option<i64>,
    pub start_time: String,
    pub end_time: Option<String>,
}

pub fn put_modification(conn: &Connection, m: &Modification) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO volume_modifications (volume_id, state, original_size, target_size, original_type,
             target_type, original_iops, target_iops, original_throughput, target_throughput, start_time, end_time)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT (volume_id) DO UPDATE SET state = excluded.state, original_size = excluded.original_size,
             target_size = excluded.target_size, original_type = excluded.original_type,
             target_type = excluded.target_type, original_iops = excluded.original_iops,
             target_iops = excluded.target_iops, original_throughput = excluded.original_throughput,
             target_throughput = excluded.target_throughput, start_time = excluded.start_time,
             end_time = excluded.end_time",
        params![
            m.volume_id,
            m.state,
            m.original_size,
            m.target_size,
            m.original_type.as_str(),
            m.target_type.as_str(),
            m.original_iops,
            m.target_iops,
            m.original_throughput,
            m.target_throughput,
            m.start_time,
            m.end_time
        ],
    )?;
    Ok(())
}

/// The modifications of a scope's volumes.
pub fn modifications(conn: &Connection, scope: &Scope) -> Result<Vec<Modification>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT m.volume_id, m.state, m.original_size, m.target_size, m.original_type, m.target_type,
                m.original_iops, m.target_iops, m.original_throughput, m.target_throughput, m.start_time, m.end_time
         FROM volume_modifications m JOIN volumes v ON v.id = m.volume_id
         WHERE v.account_id = ?1 AND v.region = ?2 ORDER BY m.start_time, m.volume_id",
    )?;
    let rows = st.query_map(params![scope.account, scope.region], modification)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Modifications still to carry out (the file must grow), of every account.
pub fn pending_modifications(conn: &Connection) -> Result<Vec<Modification>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT volume_id, state, original_size, target_size, original_type, target_type, original_iops,
                target_iops, original_throughput, target_throughput, start_time, end_time
         FROM volume_modifications WHERE state = 'modifying' ORDER BY start_time",
    )?;
    let rows = st.query_map((), modification)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

fn modification(r: &Row<'_>) -> crate::db::Result<Modification> {
    Ok(Modification {
        volume_id: r.get(0)?,
        state: r.get(1)?,
        original_size: r.get(2)?,
        target_size: r.get(3)?,
        original_type: crate::parsed(r, 4)?,
        target_type: crate::parsed(r, 5)?,
        original_iops: r.get(6)?,
        target_iops: r.get(7)?,
        original_throughput: r.get(8)?,
        target_throughput: r.get(9)?,
        start_time: r.get(10)?,
        end_time: r.get(11)?,
    })
}

/// The account's EBS encryption default in a region: (on, KMS key).
pub fn encryption_default(conn: &Connection, scope: &Scope) -> Result<(bool, Option<String>), StoreError> {
    Ok(conn
        .query_row(
            "SELECT encrypted, kms_key_id FROM ebs_defaults WHERE account_id = ?1 AND region = ?2",
            params![scope.account, scope.region],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
        .unwrap_or((false, None)))
}

pub fn set_encryption_default(conn: &Connection, scope: &Scope, on: bool) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO ebs_defaults (account_id, region, encrypted) VALUES (?1, ?2, ?3)
         ON CONFLICT (account_id, region) DO UPDATE SET encrypted = excluded.encrypted",
        params![scope.account, scope.region, on],
    )?;
    Ok(())
}

/// Removes a volume's record (its tags go by trigger).
pub fn delete(conn: &Connection, id: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM volumes WHERE id = ?1", [id])?;
    Ok(())
}

/// Points a volume at a new top layer (after CreateImage froze the old one into a snapshot).
pub fn set_layer(conn: &Connection, id: &str, file: &str, snapshot_id: Option<&str>) -> Result<(), StoreError> {
    conn.execute("UPDATE volumes SET file = ?2, snapshot_id = ?3 WHERE id = ?1", params![id, file, snapshot_id])?;
    Ok(())
}
