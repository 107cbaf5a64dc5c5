//! Machine images (AMIs): the record, its block device mappings and its launch
//! permissions. Images of every account in a region are listed together, since
//! visibility (public, shared) crosses accounts; the control plane decides who sees what.

use crate::db::{params, Connection, Row};

use crate::{Scope, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub id: String,
    pub account_id: String,
    pub region: String,
    pub name: String,
    pub description: String,
    pub architecture: String,
    pub root_device_name: String,
    pub boot_mode: String,
    pub kernel_file: Option<String>,
    pub ramdisk_file: Option<String>,
    pub kernel_cmdline: Option<String>,
    /// Its own TCG translation-cache size, MiB (None: the host's).
    pub tcg_tb_size_mib: Option<i64>,
    pub default_user: Option<String>,
    pub state: String,
    pub state_reason: Option<String>,
    pub is_public: bool,
    /// Comma-separated marketplace product codes.
    pub product_codes: String,
    pub deprecation_time: Option<String>,
    pub source_instance_id: Option<String>,
    pub recipe: Option<String>,
    pub recipe_hash: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDevice {
    pub device_name: String,
    pub snapshot_id: Option<String>,
    pub volume_size: i64,
    pub volume_type: kiln_types::VolumeType,
    pub delete_on_termination: bool,
}

const COLUMNS: &str =
    "id, account_id, region, name, description, architecture, root_device_name, boot_mode, kernel_file, \
     ramdisk_file, kernel_cmdline, default_user, state, state_reason, is_public, product_codes, deprecation_time, \
     source_instance_id, recipe, recipe_hash, created_at, tcg_tb_size_mib";

fn row(r: &Row<'_>) -> crate::db::Result<Image> {
    Ok(Image {
        id: r.get(0)?,
        account_id: r.get(1)?,
        region: r.get(2)?,
        name: r.get(3)?,
        description: r.get(4)?,
        architecture: r.get(5)?,
        root_device_name: r.get(6)?,
        boot_mode: r.get(7)?,
        kernel_file: r.get(8)?,
        ramdisk_file: r.get(9)?,
        kernel_cmdline: r.get(10)?,
        default_user: r.get(11)?,
        state: r.get(12)?,
        state_reason: r.get(13)?,
        is_public: r.get(14)?,
        product_codes: r.get(15)?,
        deprecation_time: r.get(16)?,
        source_instance_id: r.get(17)?,
        recipe: r.get(18)?,
        recipe_hash: r.get(19)?,
        created_at: r.get(20)?,
        tcg_tb_size_mib: r.get(21)?,
    })
}

/// Inserts; `Ok(false)` when the owner already has an image of that name here.
pub fn insert(conn: &Connection, i: &Image, devices: &[BlockDevice]) -> Result<bool, StoreError> {
    let res = conn.execute(
        &format!(
            "INSERT INTO images ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22)"
        ),
        params![
            i.id,
            i.account_id,
            i.region,
            i.name,
            i.description,
            i.architecture,
            i.root_device_name,
            i.boot_mode,
            i.kernel_file,
            i.ramdisk_file,
            i.kernel_cmdline,
            i.default_user,
            i.state,
            i.state_reason,
            i.is_public,
            i.product_codes,
            i.deprecation_time,
            i.source_instance_id,
            i.recipe,
            i.recipe_hash,
            i.created_at,
            i.tcg_tb_size_mib
        ],
    );
    match res {
        Ok(_) => {}
        Err(e) if crate::is_unique_violation(&e) => return Ok(false),
        Err(e) => return Err(e.into()),
    }
    for d in devices {
        conn.execute(
            "INSERT INTO image_block_devices (image_id, device_name, snapshot_id, volume_size, volume_type, delete_on_termination)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![i.id, d.device_name, d.snapshot_id, d.volume_size, d.volume_type.as_str(), d.delete_on_termination],
        )?;
    }
    Ok(true)
}

/// Every image in a region, of every account.
pub fn list_region(conn: &Connection, region: &str) -> Result<Vec<Image>, StoreError> {
    let mut st =
        conn.prepare_cached(&format!("SELECT {COLUMNS} FROM images WHERE region = ?1 ORDER BY created_at, id"))?;
    let rows = st.query_map([region], row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

/// The images of a region with these ids (by key; unknown ids are skipped).
pub fn by_ids(conn: &Connection, region: &str, ids: &[&str]) -> Result<Vec<Image>, StoreError> {
    let mut st = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM images WHERE id = ?1 AND region = ?2"))?;
    let mut out: Vec<Image> = Vec::new();
    for id in ids {
        for i in st.query_map(params![id, region], row)? {
            let i = i?;
            if !out.iter().any(|o| o.id == i.id) {
                out.push(i);
            }
        }
    }
    out.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
    Ok(out)
}

/// A block device from the five columns (name, snapshot, size, type, delete on
/// termination) that start at `at`.
fn device(r: &crate::db::Row<'_>, at: usize) -> crate::db::Result<BlockDevice> {
    Ok(BlockDevice {
        device_name: r.get(at)?,
        snapshot_id: r.get(at + 1)?,
        volume_size: r.get(at + 2)?,
        volume_type: crate::parsed(r, at + 3)?,
        delete_on_termination: r.get(at + 4)?,
    })
}

/// One image's block devices (by key).
pub fn devices_of(conn: &Connection, image_id: &str) -> Result<Vec<BlockDevice>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT device_name, snapshot_id, volume_size, volume_type, delete_on_termination
         FROM image_block_devices WHERE image_id = ?1 ORDER BY device_name",
    )?;
    let rows = st.query_map([image_id], |r| device(r, 0))?.collect::<Result<_, _>>()?;
    Ok(rows)
}

/// One image's launch permissions (by key).
pub fn permissions_of(conn: &Connection, image_id: &str) -> Result<Vec<String>, StoreError> {
    let mut st =
        conn.prepare_cached("SELECT account_id FROM launch_permissions WHERE image_id = ?1 ORDER BY account_id")?;
    let rows = st.query_map([image_id], |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Block devices of every image in a region, by image id.
pub fn devices_in_region(conn: &Connection, region: &str) -> Result<Vec<(String, BlockDevice)>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT b.image_id, b.device_name, b.snapshot_id, b.volume_size, b.volume_type, b.delete_on_termination
         FROM image_block_devices b JOIN images i ON i.id = b.image_id WHERE i.region = ?1 ORDER BY b.device_name",
    )?;
    let rows = st.query_map([region], |r| Ok((r.get(0)?, device(r, 1)?)))?.collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Launch permissions (account ids) of every image in a region.
pub fn permissions_in_region(conn: &Connection, region: &str) -> Result<Vec<(String, String)>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT p.image_id, p.account_id FROM launch_permissions p JOIN images i ON i.id = p.image_id
         WHERE i.region = ?1 ORDER BY p.account_id",
    )?;
    let rows = st.query_map([region], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    Ok(rows)
}

pub fn add_permission(conn: &Connection, image_id: &str, account: &str) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO launch_permissions (image_id, account_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        params![image_id, account],
    )?;
    Ok(())
}

pub fn remove_permission(conn: &Connection, image_id: &str, account: Option<&str>) -> Result<(), StoreError> {
    conn.execute(
        "DELETE FROM launch_permissions WHERE image_id = ?1 AND (CAST(?2 AS TEXT) IS NULL OR account_id = ?2)",
        params![image_id, account],
    )?;
    Ok(())
}

pub fn set_public(conn: &Connection, image_id: &str, public: bool) -> Result<(), StoreError> {
    conn.execute("UPDATE images SET is_public = ?2 WHERE id = ?1", params![image_id, public])?;
    Ok(())
}

pub fn set_description(conn: &Connection, image_id: &str, description: &str) -> Result<(), StoreError> {
    conn.execute("UPDATE images SET description = ?2 WHERE id = ?1", params![image_id, description])?;
    Ok(())
}

pub fn set_state(conn: &Connection, image_id: &str, state: &str, reason: Option<&str>) -> Result<(), StoreError> {
    conn.execute("UPDATE images SET state = ?2, state_reason = ?3 WHERE id = ?1", params![image_id, state, reason])?;
    Ok(())
}

/// The id of the scope's image of that name, if it has one.
pub fn by_name(conn: &Connection, scope: &Scope, name: &str) -> Result<Option<String>, StoreError> {
    use crate::db::OptionalExtension;
    Ok(conn
        .query_row(
            "SELECT id FROM images WHERE account_id = ?1 AND region = ?2 AND name = ?3",
            params![scope.account, scope.region, name],
            |r| r.get(0),
        )
        .optional()?)
}

/// An image's state, whoever owns it; `None` when there is no such image.
pub fn state(conn: &Connection, image_id: &str) -> Result<Option<String>, StoreError> {
    use crate::db::OptionalExtension;
    Ok(conn.query_row("SELECT state FROM images WHERE id = ?1", [image_id], |r| r.get(0)).optional()?)
}

/// Moves a pending image to `state` (compare-and-set); returns whether it moved.
pub fn finish_pending(
    conn: &Connection,
    image_id: &str,
    state: &str,
    reason: Option<&str>,
) -> Result<bool, StoreError> {
    let n = conn.execute(
        "UPDATE images SET state = ?2, state_reason = ?3 WHERE id = ?1 AND state = 'pending'",
        params![image_id, state, reason],
    )?;
    Ok(n > 0)
}

/// Unmaps a snapshot from every image's block devices (a failed image never got it).
pub fn unmap_snapshot(conn: &Connection, snapshot_id: &str) -> Result<(), StoreError> {
    conn.execute("UPDATE image_block_devices SET snapshot_id = NULL WHERE snapshot_id = ?1", [snapshot_id])?;
    Ok(())
}

pub fn set_product_codes(conn: &Connection, image_id: &str, codes: &str) -> Result<(), StoreError> {
    conn.execute("UPDATE images SET product_codes = ?2 WHERE id = ?1", params![image_id, codes])?;
    Ok(())
}

/// Removes an image owned by the scope's account; returns whether it existed.
pub fn delete(conn: &Connection, scope: &Scope, image_id: &str) -> Result<bool, StoreError> {
    let n = conn.execute(
        "DELETE FROM images WHERE id = ?1 AND account_id = ?2 AND region = ?3",
        params![image_id, scope.account, scope.region],
    )?;
    Ok(n > 0)
}

/// Images built from a recipe hash in a region (the builder's cache).
pub fn by_recipe_hash(conn: &Connection, region: &str, hash: &str) -> Result<Vec<Image>, StoreError> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM images WHERE region = ?1 AND recipe_hash = ?2 ORDER BY created_at"
    ))?;
    let rows = st.query_map(params![region, hash], row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

/// How a built image boots: its kernel, initramfs, command line and translation cache.
#[derive(Debug, Clone, Copy)]
pub struct Boot<'a> {
    pub kernel_file: &'a str,
    pub ramdisk_file: Option<&'a str>,
    pub kernel_cmdline: &'a str,
    pub tcg_tb_size_mib: Option<i64>,
}

/// Finishes a pending image: how it boots and its root device, then `available`.
pub fn complete(conn: &Connection, image_id: &str, boot: Boot<'_>, device: &BlockDevice) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE images SET kernel_file = ?2, ramdisk_file = ?3, kernel_cmdline = ?4, tcg_tb_size_mib = ?5,
         state = 'available', state_reason = NULL WHERE id = ?1",
        params![image_id, boot.kernel_file, boot.ramdisk_file, boot.kernel_cmdline, boot.tcg_tb_size_mib],
    )?;
    conn.execute(
        "INSERT INTO image_block_devices (image_id, device_name, snapshot_id, volume_size, volume_type, delete_on_termination)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![image_id, device.device_name, device.snapshot_id, device.volume_size, device.volume_type.as_str(), device.delete_on_termination],
    )?;
    Ok(())
}

/// Removes an image whatever its owner (for abandoned builds).
pub fn remove(conn: &Connection, image_id: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM images WHERE id = ?1", [image_id])?;
    Ok(())
}

/// Marks every image still pending from a build as failed (the build was interrupted).
pub fn fail_pending_builds(conn: &Connection, reason: &str) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "UPDATE images SET state = 'failed', state_reason = ?1 WHERE state = 'pending' AND recipe_hash IS NOT NULL",
        [reason],
    )?)
}
