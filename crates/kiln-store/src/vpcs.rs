//! VPCs and subnets.

use crate::db::{params, Connection};

use crate::{Scope, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vpc {
    pub id: String,
    pub cidr: String,
    pub is_default: bool,
    pub created_at: String,
    /// Whether the VPC's resolver answers (EC2's enableDnsSupport).
    pub dns_support: bool,
    /// Whether instances get public DNS names (EC2's enableDnsHostnames).
    pub dns_hostnames: bool,
    /// Its DHCP options set (`None`: EC2's `default`, no set).
    pub dhcp_options_id: Option<String>,
}

const VPC_COLUMNS: &str = "id, cidr, is_default, created_at, dns_support, dns_hostnames, dhcp_options_id";

fn vpc_row(r: &crate::db::Row<'_>) -> crate::db::Result<Vpc> {
    Ok(Vpc {
        id: r.get(0)?,
        cidr: r.get(1)?,
        is_default: r.get(2)?,
        created_at: r.get(3)?,
        dns_support: r.get(4)?,
        dns_hostnames: r.get(5)?,
        dhcp_options_id: r.get(6)?,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subnet {
    pub id: String,
    pub vpc_id: String,
    pub cidr: String,
    pub availability_zone: String,
    pub zone_id: String,
    pub default_for_az: bool,
    pub map_public_ip: bool,
    pub created_at: String,
}

/// Records a VPC, with the next VXLAN network identifier (never one used before).
pub fn insert_vpc(conn: &Connection, scope: &Scope, v: &Vpc) -> Result<(), StoreError> {
    conn.execute("UPDATE vni_counter SET last = last + 1 WHERE id = 1", ())?;
    conn.execute(
        "INSERT INTO vpcs (id, account_id, region, cidr, is_default, created_at, dns_support, dns_hostnames, vni)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, (SELECT last FROM vni_counter WHERE id = 1))",
        params![v.id, scope.account, scope.region, v.cidr, v.is_default, v.created_at, v.dns_support, v.dns_hostnames],
    )?;
    Ok(())
}

/// Every VPC's VXLAN network identifier, by VPC ID.
pub fn vnis(conn: &Connection) -> Result<std::collections::HashMap<String, u32>, StoreError> {
    let mut st = conn.prepare_cached("SELECT id, vni FROM vpcs WHERE vni IS NOT NULL")?;
    let rows =
        st.query_map((), |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?.collect::<Result<Vec<_>, _>>()?;
    // 24 bits on the wire: a VPC past them gets no overlay, never another's VNI.
    Ok(rows
        .into_iter()
        .filter(|(_, vni)| (1..=0xff_ffff).contains(vni))
        .filter_map(|(id, vni)| u32::try_from(vni).ok().map(|v| (id, v)))
        .collect())
}

pub fn list_vpcs(conn: &Connection, scope: &Scope) -> Result<Vec<Vpc>, StoreError> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {VPC_COLUMNS} FROM vpcs WHERE account_id = ?1 AND region = ?2 ORDER BY is_default DESC, created_at, id"
    ))?;
    let rows = st.query_map(params![scope.account, scope.region], vpc_row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Every VPC of every account (the host's networking serves them all).
pub fn all_vpcs(conn: &Connection) -> Result<Vec<Vpc>, StoreError> {
    let mut st = conn.prepare_cached(&format!("SELECT {VPC_COLUMNS} FROM vpcs ORDER BY id"))?;
    let rows = st.query_map((), vpc_row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Sets EC2's enableDnsSupport (`dns_support`) or enableDnsHostnames.
pub fn set_dns(conn: &Connection, id: &str, support: Option<bool>, hostnames: Option<bool>) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE vpcs SET dns_support = COALESCE(?2, dns_support), dns_hostnames = COALESCE(?3, dns_hostnames)
         WHERE id = ?1",
        params![id, support, hostnames],
    )?;
    Ok(())
}

/// AssociateDhcpOptions: a set, or `None` for EC2's `default`.
pub fn set_dhcp_options(conn: &Connection, id: &str, options: Option<&str>) -> Result<(), StoreError> {
    conn.execute("UPDATE vpcs SET dhcp_options_id = ?2 WHERE id = ?1", params![id, options])?;
    Ok(())
}

/// A DHCP options set: its keys and their values, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpOptions {
    pub id: String,
    pub values: Vec<(String, Vec<String>)>,
    pub created_at: String,
}

pub fn insert_dhcp_options(conn: &Connection, scope: &Scope, d: &DhcpOptions) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO dhcp_options (id, account_id, region, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![d.id, scope.account, scope.region, d.created_at],
    )?;
    for (key, values) in &d.values {
        for (n, v) in values.iter().enumerate() {
            conn.execute(
                "INSERT INTO dhcp_option_values (dhcp_options_id, key, position, value) VALUES (?1, ?2, ?3, ?4)",
                params![d.id, key, n as i64, v],
            )?;
        }
    }
    Ok(())
}

fn dhcp_rows(conn: &Connection, sql: &str, args: &[&dyn crate::db::ToValue]) -> Result<Vec<DhcpOptions>, StoreError> {
    let mut st = conn.prepare_cached(sql)?;
    let rows: Vec<(String, String, Option<String>, Option<String>)> =
        st.query_map(args, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?.collect::<Result<_, _>>()?;
    let mut out: Vec<DhcpOptions> = Vec::new();
    for (id, created_at, key, value) in rows {
        if out.last().is_none_or(|d| d.id != id) {
            out.push(DhcpOptions { id: id.clone(), values: Vec::new(), created_at });
        }
        let (Some(d), Some(key), Some(value)) = (out.last_mut(), key, value) else { continue };
        match d.values.iter_mut().find(|(k, _)| *k == key) {
            Some((_, vs)) => vs.push(value),
            None => d.values.push((key, vec![value])),
        }
    }
    Ok(out)
}

pub fn dhcp_options(conn: &Connection, scope: &Scope) -> Result<Vec<DhcpOptions>, StoreError> {
    dhcp_rows(
        conn,
        "SELECT d.id, d.created_at, v.key, v.value FROM dhcp_options d
         LEFT JOIN dhcp_option_values v ON v.dhcp_options_id = d.id
         WHERE d.account_id = ?1 AND d.region = ?2 ORDER BY d.created_at, d.id, v.key, v.position",
        &[&scope.account, &scope.region],
    )
}

/// Every DHCP options set (the guests' view reads those of every VPC).
pub fn all_dhcp_options(conn: &Connection) -> Result<Vec<DhcpOptions>, StoreError> {
    dhcp_rows(
        conn,
        "SELECT d.id, d.created_at, v.key, v.value FROM dhcp_options d
         LEFT JOIN dhcp_option_values v ON v.dhcp_options_id = d.id ORDER BY d.id, v.key, v.position",
        &[],
    )
}

pub fn delete_dhcp_options(conn: &Connection, id: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM dhcp_options WHERE id = ?1", params![id])?;
    Ok(())
}

pub fn set_map_public_ip(conn: &Connection, id: &str, on: bool) -> Result<(), StoreError> {
    conn.execute("UPDATE subnets SET map_public_ip = ?2 WHERE id = ?1", params![id, on])?;
    Ok(())
}

pub fn delete_vpc(conn: &Connection, scope: &Scope, id: &str) -> Result<bool, StoreError> {
    let n = conn.execute(
        "DELETE FROM vpcs WHERE id = ?1 AND account_id = ?2 AND region = ?3",
        params![id, scope.account, scope.region],
    )?;
    Ok(n > 0)
}

pub fn insert_subnet(conn: &Connection, scope: &Scope, s: &Subnet) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO subnets (id, account_id, region, vpc_id, cidr, availability_zone, zone_id, default_for_az,
                              map_public_ip, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            s.id,
            scope.account,
            scope.region,
            s.vpc_id,
            s.cidr,
            s.availability_zone,
            s.zone_id,
            s.default_for_az,
            s.map_public_ip,
            s.created_at
        ],
    )?;
    Ok(())
}

pub fn list_subnets(conn: &Connection, scope: &Scope) -> Result<Vec<Subnet>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT id, vpc_id, cidr, availability_zone, zone_id, default_for_az, map_public_ip, created_at
         FROM subnets WHERE account_id = ?1 AND region = ?2 ORDER BY created_at, id",
    )?;
    let rows = st
        .query_map(params![scope.account, scope.region], |r| {
            Ok(Subnet {
                id: r.get(0)?,
                vpc_id: r.get(1)?,
                cidr: r.get(2)?,
                availability_zone: r.get(3)?,
                zone_id: r.get(4)?,
                default_for_az: r.get(5)?,
                map_public_ip: r.get(6)?,
                created_at: r.get(7)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Every subnet's CIDR by id (for the guests' view: gateways and masks).
pub fn subnet_cidrs(conn: &Connection) -> Result<std::collections::HashMap<String, String>, StoreError> {
    let mut st = conn.prepare_cached("SELECT id, cidr FROM subnets")?;
    let rows = st.query_map((), |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    Ok(rows)
}

pub fn delete_subnet(conn: &Connection, scope: &Scope, id: &str) -> Result<bool, StoreError> {
    let n = conn.execute(
        "DELETE FROM subnets WHERE id = ?1 AND account_id = ?2 AND region = ?3",
        params![id, scope.account, scope.region],
    )?;
    Ok(n > 0)
}
