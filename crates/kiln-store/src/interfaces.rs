//! Network interfaces made with CreateNetworkInterface, their security groups and
//! their attachment to an instance. An instance's primary interface is not stored: it
//! is the instance's own (`kiln_types::ids::primary_interface`).

use crate::db::{params, Connection, OptionalExtension, Row};

use crate::{Scope, StoreError};

/// Where an attachment is in its life, as EC2 names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachmentStatus {
    /// Asked for; the host is adding the interface to the running VM.
    Attaching,
    /// In the VM (or joins it at the next start).
    Attached,
    /// Asked to go; the host is taking it out of the VM.
    Detaching,
}

impl AttachmentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Attaching => "attaching",
            Self::Attached => "attached",
            Self::Detaching => "detaching",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "attaching" => Self::Attaching,
            "attached" => Self::Attached,
            "detaching" => Self::Detaching,
            _ => return None,
        })
    }
}

/// An interface's attachment to an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub id: String,
    pub instance_id: String,
    pub device_index: i64,
    pub status: AttachmentStatus,
    pub attach_time: String,
    pub delete_on_termination: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub id: String,
    pub account_id: String,
    pub region: String,
    pub vpc_id: String,
    pub subnet_id: String,
    pub availability_zone: String,
    pub private_ip: String,
    pub description: String,
    pub source_dest_check: bool,
    pub groups: Vec<String>,
    pub attachment: Option<Attachment>,
    pub created_at: String,
}

const COLUMNS: &str = "id, account_id, region, vpc_id, subnet_id, availability_zone, private_ip, description, \
     source_dest_check, instance_id, device_index, attachment_id, attachment_status, attach_time, \
     delete_on_termination, created_at";

fn from_row(r: &Row<'_>) -> crate::db::Result<Interface> {
    let attachment = match (r.get::<_, Option<String>>(9)?, r.get::<_, Option<String>>(11)?) {
        (Some(instance_id), Some(id)) => Some(Attachment {
            id,
            instance_id,
            device_index: r.get::<_, Option<i64>>(10)?.unwrap_or(1),
            status: r
                .get::<_, Option<String>>(12)?
                .as_deref()
                .and_then(AttachmentStatus::parse)
                .unwrap_or(AttachmentStatus::Attached),
            attach_time: r.get::<_, Option<String>>(13)?.unwrap_or_default(),
            delete_on_termination: r.get(14)?,
        }),
        _ => None,
    };
    Ok(Interface {
        id: r.get(0)?,
        account_id: r.get(1)?,
        region: r.get(2)?,
        vpc_id: r.get(3)?,
        subnet_id: r.get(4)?,
        availability_zone: r.get(5)?,
        private_ip: r.get(6)?,
        description: r.get(7)?,
        source_dest_check: r.get(8)?,
        groups: Vec::new(),
        attachment,
        created_at: r.get(15)?,
    })
}

fn with_groups(conn: &Connection, mut list: Vec<Interface>) -> Result<Vec<Interface>, StoreError> {
    let mut st =
        conn.prepare_cached("SELECT group_id FROM network_interface_groups WHERE interface_id = ?1 ORDER BY group_id")?;
    for i in &mut list {
        i.groups = st.query_map([&i.id], |r| r.get(0))?.collect::<Result<_, _>>()?;
    }
    Ok(list)
}

pub fn insert(conn: &Connection, i: &Interface) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO network_interfaces (id, account_id, region, vpc_id, subnet_id, availability_zone, private_ip,
                                         description, source_dest_check, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            i.id,
            i.account_id,
            i.region,
            i.vpc_id,
            i.subnet_id,
            i.availability_zone,
            i.private_ip,
            i.description,
            i.source_dest_check,
            i.created_at
        ],
    )?;
    set_groups(conn, &i.id, &i.groups)
}

/// Replaces an interface's security groups.
pub fn set_groups(conn: &Connection, id: &str, groups: &[String]) -> Result<(), StoreError> {
    conn.execute("DELETE FROM network_interface_groups WHERE interface_id = ?1", [id])?;
    let mut st =
        conn.prepare_cached("INSERT INTO network_interface_groups (interface_id, group_id) VALUES (?1, ?2)")?;
    for g in groups {
        st.execute(params![id, g])?;
    }
    Ok(())
}

/// The interfaces of one account and region.
pub fn list(conn: &Connection, scope: &Scope) -> Result<Vec<Interface>, StoreError> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM network_interfaces WHERE account_id = ?1 AND region = ?2 ORDER BY created_at, id"
    ))?;
    let rows = st.query_map(params![scope.account, scope.region], from_row)?.collect::<Result<_, _>>()?;
    with_groups(conn, rows)
}

/// Every attached interface, of every account (the reconciler's read).
pub fn attached(conn: &Connection) -> Result<Vec<Interface>, StoreError> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM network_interfaces WHERE instance_id IS NOT NULL ORDER BY instance_id, device_index"
    ))?;
    let rows = st.query_map((), from_row)?.collect::<Result<_, _>>()?;
    with_groups(conn, rows)
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<Interface>, StoreError> {
    let mut st = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM network_interfaces WHERE id = ?1"))?;
    let found = st.query_row([id], from_row).optional()?;
    Ok(with_groups(conn, found.into_iter().collect())?.pop())
}

pub fn delete(conn: &Connection, id: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM network_interfaces WHERE id = ?1", [id])?;
    Ok(())
}

pub fn set_description(conn: &Connection, id: &str, description: &str) -> Result<(), StoreError> {
    conn.execute("UPDATE network_interfaces SET description = ?2 WHERE id = ?1", params![id, description])?;
    Ok(())
}

pub fn set_source_dest_check(conn: &Connection, id: &str, on: bool) -> Result<(), StoreError> {
    conn.execute("UPDATE network_interfaces SET source_dest_check = ?2 WHERE id = ?1", params![id, on])?;
    Ok(())
}

/// Attaches a detached interface; false when it was attached meanwhile or the device
/// index is taken (the unique index says so).
pub fn attach(conn: &Connection, id: &str, a: &Attachment) -> Result<bool, StoreError> {
    let done = conn.execute(
        "UPDATE network_interfaces SET instance_id = ?2, device_index = ?3, attachment_id = ?4,
             attachment_status = ?5, attach_time = ?6, delete_on_termination = ?7
         WHERE id = ?1 AND instance_id IS NULL",
        params![id, a.instance_id, a.device_index, a.id, a.status.as_str(), a.attach_time, a.delete_on_termination],
    );
    match done {
        Ok(n) => Ok(n == 1),
        Err(e) if crate::is_unique_violation(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Moves an attachment from one status to another (compare-and-set).
pub fn set_status(
    conn: &Connection,
    attachment_id: &str,
    from: AttachmentStatus,
    to: AttachmentStatus,
) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "UPDATE network_interfaces SET attachment_status = ?3 WHERE attachment_id = ?1 AND attachment_status = ?2",
        params![attachment_id, from.as_str(), to.as_str()],
    )? == 1)
}

pub fn set_delete_on_termination(conn: &Connection, id: &str, on: bool) -> Result<(), StoreError> {
    conn.execute("UPDATE network_interfaces SET delete_on_termination = ?2 WHERE id = ?1", params![id, on])?;
    Ok(())
}

/// Ends an attachment: the interface is available again.
pub fn detach(conn: &Connection, attachment_id: &str) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE network_interfaces SET instance_id = NULL, device_index = NULL, attachment_id = NULL,
             attachment_status = NULL, attach_time = NULL, delete_on_termination = 0
         WHERE attachment_id = ?1",
        [attachment_id],
    )?;
    Ok(())
}
