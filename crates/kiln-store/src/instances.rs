//! Instances: what each should be (its state, as EC2 names it) and what it was
//! launched with. The reconciler in `kiln-control` moves real VMs toward `state`.

use std::collections::HashMap;

use crate::db::{params, Connection, OptionalExtension, Row};
use kiln_types::{HttpEndpoint, HttpTokens, InstanceState, ShutdownBehavior};

use crate::{parsed, Scope, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    pub account_id: String,
    pub region: String,
    pub reservation_id: String,
    pub image_id: String,
    pub instance_type: String,
    pub architecture: String,
    pub vcpus: i64,
    pub memory_mib: i64,
    pub state: InstanceState,
    pub transition_reason: String,
    pub state_reason_code: Option<String>,
    pub state_reason_message: Option<String>,
    pub key_name: Option<String>,
    pub public_key: Option<String>,
    pub subnet_id: String,
    pub vpc_id: String,
    pub availability_zone: String,
    pub private_ip: String,
    pub user_data: Option<Vec<u8>>,
    pub client_token: Option<String>,
    pub launch_index: i64,
    pub http_tokens: HttpTokens,
    pub http_endpoint: HttpEndpoint,
    pub hop_limit: i64,
    pub disable_api_termination: bool,
    pub shutdown_behavior: ShutdownBehavior,
    pub root_device_name: String,
    pub kernel_file: Option<String>,
    pub ramdisk_file: Option<String>,
    pub kernel_cmdline: Option<String>,
    /// Its image's own TCG translation-cache size, MiB (None: the host's).
    pub tcg_tb_size_mib: Option<i64>,
    pub launch_time: String,
    pub ready_at: Option<String>,
    pub terminated_at: Option<String>,
    pub request_hash: Option<String>,
    /// Whether the instance gets a public IPv4 address while it runs.
    pub wants_public_ip: bool,
    /// Its public address, while it has one.
    pub public_ip: Option<String>,
    /// Whether that address is an Elastic IP (read, never written).
    pub elastic_ip: bool,
    /// Launch options shown back (stop protection, monitoring, credits …).
    pub options: kiln_types::InstanceOptions,
    /// Security group ids, in the order given.
    pub groups: Vec<String>,
    /// The joined host it is placed on (`h-…`); None: the serving host's own agent.
    pub host_id: Option<String>,
}

/// The columns an instance is written with.
const COLUMNS: &str =
    "id, account_id, region, reservation_id, image_id, instance_type, architecture, vcpus, memory_mib, \
     state, transition_reason, state_reason_code, state_reason_message, key_name, public_key, subnet_id, vpc_id, \
     availability_zone, private_ip, user_data, client_token, launch_index, http_tokens, http_endpoint, hop_limit, \
     disable_api_termination, shutdown_behavior, root_device_name, kernel_file, ramdisk_file, kernel_cmdline, \
     launch_time, ready_at, terminated_at, request_hash, wants_public_ip, public_ip, \
     disable_api_stop, ebs_optimized, monitoring, source_dest_check, cpu_credits, tcg_tb_size_mib, host_id";

/// The columns an instance is read with: its public address is its Elastic IP while
/// one is associated (it outlives stops), else the one it was given from the pool.
const READ: &str = "id, account_id, region, reservation_id, image_id, instance_type, architecture, vcpus, memory_mib, \
     state, transition_reason, state_reason_code, state_reason_message, key_name, public_key, subnet_id, vpc_id, \
     availability_zone, private_ip, user_data, client_token, launch_index, http_tokens, http_endpoint, hop_limit, \
     disable_api_termination, shutdown_behavior, root_device_name, kernel_file, ramdisk_file, kernel_cmdline, \
     launch_time, ready_at, terminated_at, request_hash, wants_public_ip, \
     COALESCE((SELECT a.public_ip FROM addresses a WHERE a.instance_id = instances.id), public_ip), \
     disable_api_stop, ebs_optimized, monitoring, source_dest_check, cpu_credits, \
     EXISTS (SELECT 1 FROM addresses a WHERE a.instance_id = instances.id), tcg_tb_size_mib, host_id";

fn row(r: &Row<'_>) -> crate::db::Result<Instance> {
    Ok(Instance {
        id: r.get(0)?,
        account_id: r.get(1)?,
        region: r.get(2)?,
        reservation_id: r.get(3)?,
        image_id: r.get(4)?,
        instance_type: r.get(5)?,
        architecture: r.get(6)?,
        vcpus: r.get(7)?,
        memory_mib: r.get(8)?,
        state: parsed(r, 9)?,
        transition_reason: r.get(10)?,
        state_reason_code: r.get(11)?,
        state_reason_message: r.get(12)?,
        key_name: r.get(13)?,
        public_key: r.get(14)?,
        subnet_id: r.get(15)?,
        vpc_id: r.get(16)?,
        availability_zone: r.get(17)?,
        private_ip: r.get(18)?,
        user_data: r.get(19)?,
        client_token: r.get(20)?,
        launch_index: r.get(21)?,
        http_tokens: parsed(r, 22)?,
        http_endpoint: parsed(r, 23)?,
        hop_limit: r.get(24)?,
        disable_api_termination: r.get(25)?,
        shutdown_behavior: parsed(r, 26)?,
        root_device_name: r.get(27)?,
        kernel_file: r.get(28)?,
        ramdisk_file: r.get(29)?,
        kernel_cmdline: r.get(30)?,
        launch_time: r.get(31)?,
        ready_at: r.get(32)?,
        terminated_at: r.get(33)?,
        request_hash: r.get(34)?,
        wants_public_ip: r.get(35)?,
        public_ip: r.get(36)?,
        options: kiln_types::InstanceOptions {
            disable_api_stop: r.get(37)?,
            ebs_optimized: r.get(38)?,
            monitoring: r.get(39)?,
            source_dest_check: r.get(40)?,
            cpu_credits: r
                .get::<_, Option<String>>(41)?
                .map(|c| c.parse())
                .transpose()
                .map_err(|e| crate::db::Error::conversion(41, e))?,
        },
        elastic_ip: r.get(42)?,
        tcg_tb_size_mib: r.get(43)?,
        groups: Vec::new(),
        host_id: r.get(44)?,
    })
}

/// Places an instance on another host (None: the serving host's own).
pub fn set_host(conn: &Connection, id: &str, host: Option<&str>) -> Result<(), StoreError> {
    conn.execute("UPDATE instances SET host_id = ?2 WHERE id = ?1", params![id, host])?;
    Ok(())
}

pub fn insert(conn: &Connection, i: &Instance) -> Result<(), StoreError> {
    conn.execute(
        &format!(
            "INSERT INTO instances ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, \
             ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33, ?34, ?35, ?36, ?37, \
             ?38, ?39, ?40, ?41, ?42, ?43, ?44)"
        ),
        params![
            i.id,
            i.account_id,
            i.region,
            i.reservation_id,
            i.image_id,
            i.instance_type,
            i.architecture,
            i.vcpus,
            i.memory_mib,
            i.state.as_str(),
            i.transition_reason,
            i.state_reason_code,
            i.state_reason_message,
            i.key_name,
            i.public_key,
            i.subnet_id,
            i.vpc_id,
            i.availability_zone,
            i.private_ip,
            i.user_data,
            i.client_token,
            i.launch_index,
            i.http_tokens.as_str(),
            i.http_endpoint.as_str(),
            i.hop_limit,
            i.disable_api_termination,
            i.shutdown_behavior.as_str(),
            i.root_device_name,
            i.kernel_file,
            i.ramdisk_file,
            i.kernel_cmdline,
            i.launch_time,
            i.ready_at,
            i.terminated_at,
            i.request_hash,
            i.wants_public_ip,
            i.public_ip,
            i.options.disable_api_stop,
            i.options.ebs_optimized,
            i.options.monitoring,
            i.options.source_dest_check,
            i.options.cpu_credits.map(|c| c.as_str()),
            i.tcg_tb_size_mib,
            i.host_id
        ],
    )?;
    set_groups(conn, &i.id, &i.groups)
}

/// Replaces an instance's security groups (in the order given).
pub fn set_groups(conn: &Connection, id: &str, groups: &[String]) -> Result<(), StoreError> {
    conn.execute("DELETE FROM instance_groups WHERE instance_id = ?1", params![id])?;
    for (n, g) in groups.iter().enumerate() {
        conn.execute(
            "INSERT INTO instance_groups (instance_id, group_id, position) VALUES (?1, ?2, ?3)",
            params![id, g, n as i64],
        )?;
    }
    Ok(())
}

fn with_groups(conn: &Connection, mut list: Vec<Instance>) -> Result<Vec<Instance>, StoreError> {
    let mut st =
        conn.prepare_cached("SELECT group_id FROM instance_groups WHERE instance_id = ?1 ORDER BY position")?;
    for i in &mut list {
        i.groups = st.query_map([&i.id], |r| r.get(0))?.collect::<Result<_, _>>()?;
    }
    Ok(list)
}

/// The scope's instances, oldest first (two queries: the rows, then their groups).
pub fn list(conn: &Connection, scope: &Scope) -> Result<Vec<Instance>, StoreError> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {READ} FROM instances WHERE account_id = ?1 AND region = ?2 ORDER BY launch_time, launch_index, id"
    ))?;
    let mut rows = st.query_map(params![scope.account, scope.region], row)?.collect::<Result<Vec<_>, _>>()?;
    let mut groups: HashMap<String, Vec<String>> = HashMap::new();
    let mut st = conn.prepare_cached(
        "SELECT g.instance_id, g.group_id FROM instance_groups g JOIN instances i ON i.id = g.instance_id
         WHERE i.account_id = ?1 AND i.region = ?2 ORDER BY g.instance_id, g.position",
    )?;
    for pair in
        st.query_map(params![scope.account, scope.region], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
    {
        let (i, g) = pair?;
        groups.entry(i).or_default().push(g);
    }
    for i in &mut rows {
        i.groups = groups.remove(&i.id).unwrap_or_default();
    }
    Ok(rows)
}

/// Every instance of every account (for the reconciler, capacity and the guest
/// services), in two queries whatever their number, without user data (read it with
/// `get`).
pub fn all(conn: &Connection) -> Result<Vec<Instance>, StoreError> {
    let columns = READ.replace("user_data", "NULL");
    let mut st = conn.prepare_cached(&format!("SELECT {columns} FROM instances ORDER BY launch_time, id"))?;
    let mut rows = st.query_map((), row)?.collect::<Result<Vec<_>, _>>()?;
    let mut groups: HashMap<String, Vec<String>> = HashMap::new();
    let mut st =
        conn.prepare_cached("SELECT instance_id, group_id FROM instance_groups ORDER BY instance_id, position")?;
    for pair in st.query_map((), |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
        let (i, g) = pair?;
        groups.entry(i).or_default().push(g);
    }
    for i in &mut rows {
        i.groups = groups.remove(&i.id).unwrap_or_default();
    }
    Ok(rows)
}

/// The instances of one reservation (a ClientToken's retry answers with them).
pub fn of_reservation(conn: &Connection, reservation_id: &str) -> Result<Vec<Instance>, StoreError> {
    let mut st = conn
        .prepare_cached(&format!("SELECT {READ} FROM instances WHERE reservation_id = ?1 ORDER BY launch_index, id"))?;
    let rows = st.query_map([reservation_id], row)?.collect::<Result<Vec<_>, _>>()?;
    with_groups(conn, rows)
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<Instance>, StoreError> {
    let found = conn.query_row(&format!("SELECT {READ} FROM instances WHERE id = ?1"), [id], row).optional()?;
    Ok(with_groups(conn, found.into_iter().collect())?.pop())
}

/// Moves an instance from `from` to `to` only if it is still in `from` (another request
/// or the reconciler may have moved it meanwhile); returns whether it moved. The
/// transition must be one EC2 allows. `reason` replaces the transition reason when
/// given; `state_reason` is EC2's StateReason (none clears it). Stopping and terminating
/// release the public address; reaching running keeps the ready mark, anything else
/// clears it.
pub fn transition(
    conn: &Connection,
    id: &str,
    from: InstanceState,
    to: InstanceState,
    reason: Option<&str>,
    state_reason: Option<(&str, &str)>,
) -> Result<bool, StoreError> {
    if !from.can_become(to) {
        return Err(StoreError::IllegalTransition { id: id.to_owned(), from, to });
    }
    let n = conn.execute(
        "UPDATE instances SET state = ?3, transition_reason = COALESCE(?4, transition_reason),
           state_reason_code = ?5, state_reason_message = ?6,
           terminated_at = CASE WHEN ?3 = 'terminated' THEN ?7 ELSE terminated_at END,
           ready_at = CASE WHEN ?3 = 'running' THEN ready_at ELSE NULL END,
           public_ip = CASE WHEN ?3 IN ('stopped', 'terminated') THEN NULL ELSE public_ip END
         WHERE id = ?1 AND state = ?2",
        params![
            id,
            from.as_str(),
            to.as_str(),
            reason,
            state_reason.map(|r| r.0),
            state_reason.map(|r| r.1),
            crate::now()
        ],
    )?;
    Ok(n > 0)
}

/// Gives an instance that is pending or running its public address; returns false (and
/// changes nothing) if it has left those states meanwhile.
pub fn set_public_ip(conn: &Connection, id: &str, ip: &str) -> Result<bool, StoreError> {
    let n = conn.execute(
        "UPDATE instances SET public_ip = ?2 WHERE id = ?1 AND state IN ('pending', 'running')",
        params![id, ip],
    )?;
    Ok(n > 0)
}

/// Gives an instance's pool address back (an Elastic IP took its place).
pub fn clear_public_ip(conn: &Connection, id: &str) -> Result<(), StoreError> {
    conn.execute("UPDATE instances SET public_ip = NULL WHERE id = ?1", params![id])?;
    Ok(())
}

/// Public addresses in use.
pub fn public_ips(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut st = conn.prepare_cached("SELECT public_ip FROM instances WHERE public_ip IS NOT NULL")?;
    let rows = st.query_map((), |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok(rows)
}

/// The guest is starting again (a power cycle): not ready until it says so.
pub fn clear_ready(conn: &Connection, id: &str) -> Result<(), StoreError> {
    conn.execute("UPDATE instances SET ready_at = NULL WHERE id = ?1", params![id])?;
    Ok(())
}

pub fn set_ready(conn: &Connection, id: &str, at: &str) -> Result<(), StoreError> {
    conn.execute("UPDATE instances SET ready_at = ?2 WHERE id = ?1 AND ready_at IS NULL", params![id, at])?;
    Ok(())
}

/// Updates the attributes ModifyInstanceAttribute changes.
pub fn set_attribute(
    conn: &Connection,
    id: &str,
    column: Attribute,
    value: &crate::db::Value,
) -> Result<(), StoreError> {
    let col = match column {
        Attribute::InstanceType => "instance_type",
        Attribute::Vcpus => "vcpus",
        Attribute::MemoryMib => "memory_mib",
        Attribute::UserData => "user_data",
        Attribute::DisableApiTermination => "disable_api_termination",
        Attribute::ShutdownBehavior => "shutdown_behavior",
        Attribute::HttpTokens => "http_tokens",
        Attribute::HttpEndpoint => "http_endpoint",
        Attribute::HopLimit => "hop_limit",
        Attribute::DisableApiStop => "disable_api_stop",
        Attribute::EbsOptimized => "ebs_optimized",
        Attribute::Monitoring => "monitoring",
        Attribute::SourceDestCheck => "source_dest_check",
        Attribute::CpuCredits => "cpu_credits",
    };
    conn.execute(&format!("UPDATE instances SET {col} = ?2 WHERE id = ?1"), params![id, value])?;
    Ok(())
}

/// Columns that change after launch.
#[derive(Debug, Clone, Copy)]
pub enum Attribute {
    DisableApiStop,
    EbsOptimized,
    Monitoring,
    SourceDestCheck,
    CpuCredits,
    InstanceType,
    Vcpus,
    MemoryMib,
    UserData,
    DisableApiTermination,
    ShutdownBehavior,
    HttpTokens,
    HttpEndpoint,
    HopLimit,
}

/// Removes a terminated instance's row (its tags go by trigger; its ClientToken when no
/// instance of the reservation is left).
pub fn delete(conn: &Connection, id: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM instances WHERE id = ?1 AND state = 'terminated'", [id])?;
    crate::client_tokens::purge_unused(conn)?;
    Ok(())
}

/// Private addresses in use in a subnet (by instances that are not terminated, and by
/// network interfaces).
pub fn addresses_in_subnet(conn: &Connection, subnet_id: &str) -> Result<Vec<String>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT private_ip FROM instances WHERE subnet_id = ?1 AND state != 'terminated'
         UNION SELECT private_ip FROM network_interfaces WHERE subnet_id = ?1",
    )?;
    let rows = st.query_map([subnet_id], |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Whether any live instance (or network interface) uses a subnet or a security group.
pub fn uses_subnet(conn: &Connection, subnet_id: &str) -> Result<bool, StoreError> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM instances WHERE subnet_id = ?1 AND state != 'terminated')
             OR EXISTS (SELECT 1 FROM network_interfaces WHERE subnet_id = ?1)",
        [subnet_id],
        |r| r.get(0),
    )?)
}

/// Whether an instance of `scope` that is not terminated was launched from `image_id`.
pub fn uses_image(conn: &Connection, scope: &Scope, image_id: &str) -> Result<bool, StoreError> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM instances
                        WHERE image_id = ?1 AND account_id = ?2 AND region = ?3 AND state != 'terminated')",
        params![image_id, scope.account, scope.region],
        |r| r.get(0),
    )?)
}

pub fn uses_group(conn: &Connection, group_id: &str) -> Result<bool, StoreError> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM instance_groups g JOIN instances i ON i.id = g.instance_id
                        WHERE g.group_id = ?1 AND i.state != 'terminated')
             OR EXISTS (SELECT 1 FROM network_interface_groups WHERE group_id = ?1)",
        [group_id],
        |r| r.get(0),
    )?)
}
