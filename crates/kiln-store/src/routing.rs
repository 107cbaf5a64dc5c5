//! Internet gateways, route tables, their routes and subnet associations, network ACLs
//! with their entries and associations, and Elastic IP addresses. A VPC's `local`
//! route is not stored: it is the VPC's CIDR.

use crate::db::{params, Connection};

use crate::{Scope, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternetGateway {
    pub id: String,
    /// The VPC it is attached to, if any.
    pub vpc_id: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTable {
    pub id: String,
    pub vpc_id: String,
    /// The id of its main association while it is its VPC's main table.
    pub main_association: Option<String>,
    pub created_at: String,
}

/// A route to a gateway, an instance or a network interface (the id says which).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub route_table_id: String,
    pub destination: String,
    pub target: String,
}

/// A subnet's explicit association with a route table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Association {
    pub id: String,
    pub route_table_id: String,
    pub subnet_id: String,
}

/// An Elastic IP address and what it is associated with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub allocation_id: String,
    pub public_ip: String,
    pub instance_id: Option<String>,
    pub association_id: Option<String>,
    pub created_at: String,
}

pub fn insert_gateway(conn: &Connection, scope: &Scope, g: &InternetGateway) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO internet_gateways (id, account_id, region, vpc_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![g.id, scope.account, scope.region, g.vpc_id, g.created_at],
    )?;
    Ok(())
}

pub fn gateways(conn: &Connection, scope: &Scope) -> Result<Vec<InternetGateway>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT id, vpc_id, created_at FROM internet_gateways WHERE account_id = ?1 AND region = ?2
         ORDER BY created_at, id",
    )?;
    let rows = st
        .query_map(params![scope.account, scope.region], |r| {
            Ok(InternetGateway { id: r.get(0)?, vpc_id: r.get(1)?, created_at: r.get(2)? })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

pub fn set_gateway_vpc(conn: &Connection, id: &str, vpc_id: Option<&str>) -> Result<(), StoreError> {
    conn.execute("UPDATE internet_gateways SET vpc_id = ?2 WHERE id = ?1", params![id, vpc_id])?;
    Ok(())
}

pub fn delete_gateway(conn: &Connection, id: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM internet_gateways WHERE id = ?1", params![id])?;
    Ok(())
}

pub fn insert_table(conn: &Connection, scope: &Scope, t: &RouteTable) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO route_tables (id, account_id, region, vpc_id, main_association, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![t.id, scope.account, scope.region, t.vpc_id, t.main_association, t.created_at],
    )?;
    Ok(())
}

pub fn tables(conn: &Connection, scope: &Scope) -> Result<Vec<RouteTable>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT id, vpc_id, main_association, created_at FROM route_tables WHERE account_id = ?1 AND region = ?2
         ORDER BY created_at, id",
    )?;
    let rows = st
        .query_map(params![scope.account, scope.region], |r| {
            Ok(RouteTable { id: r.get(0)?, vpc_id: r.get(1)?, main_association: r.get(2)?, created_at: r.get(3)? })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Makes `table` its VPC's main table under association `association`; the VPC's
/// previous main table stops being main.
pub fn set_main(conn: &Connection, vpc_id: &str, table: &str, association: &str) -> Result<(), StoreError> {
    conn.execute("UPDATE route_tables SET main_association = NULL WHERE vpc_id = ?1", params![vpc_id])?;
    conn.execute("UPDATE route_tables SET main_association = ?2 WHERE id = ?1", params![table, association])?;
    Ok(())
}

/// Deletes a route table with its routes (and, for a VPC being deleted, associations).
pub fn delete_table(conn: &Connection, id: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM routes WHERE route_table_id = ?1", params![id])?;
    conn.execute("DELETE FROM route_table_associations WHERE route_table_id = ?1", params![id])?;
    conn.execute("DELETE FROM route_tables WHERE id = ?1", params![id])?;
    Ok(())
}

pub fn routes(conn: &Connection, scope: &Scope) -> Result<Vec<Route>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT r.route_table_id, r.destination, r.target FROM routes r JOIN route_tables t ON t.id = r.route_table_id
         WHERE t.account_id = ?1 AND t.region = ?2 ORDER BY r.route_table_id, r.destination",
    )?;
    let rows = st
        .query_map(params![scope.account, scope.region], |r| {
            Ok(Route { route_table_id: r.get(0)?, destination: r.get(1)?, target: r.get(2)? })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Adds a route, or replaces the target of the route to the same destination.
pub fn put_route(conn: &Connection, r: &Route) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO routes (route_table_id, destination, target) VALUES (?1, ?2, ?3)
         ON CONFLICT (route_table_id, destination) DO UPDATE SET target = excluded.target",
        params![r.route_table_id, r.destination, r.target],
    )?;
    Ok(())
}

pub fn delete_route(conn: &Connection, table: &str, destination: &str) -> Result<bool, StoreError> {
    let n =
        conn.execute("DELETE FROM routes WHERE route_table_id = ?1 AND destination = ?2", params![table, destination])?;
    Ok(n > 0)
}

pub fn associations(conn: &Connection, scope: &Scope) -> Result<Vec<Association>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT a.id, a.route_table_id, a.subnet_id FROM route_table_associations a
         JOIN route_tables t ON t.id = a.route_table_id WHERE t.account_id = ?1 AND t.region = ?2 ORDER BY a.id",
    )?;
    let rows = st
        .query_map(params![scope.account, scope.region], |r| {
            Ok(Association { id: r.get(0)?, route_table_id: r.get(1)?, subnet_id: r.get(2)? })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

pub fn insert_association(conn: &Connection, a: &Association) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO route_table_associations (id, route_table_id, subnet_id) VALUES (?1, ?2, ?3)",
        params![a.id, a.route_table_id, a.subnet_id],
    )?;
    Ok(())
}

pub fn delete_association(conn: &Connection, id: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM route_table_associations WHERE id = ?1", params![id])?;
    Ok(())
}

/// A subnet being deleted loses its route table and ACL associations.
pub fn forget_subnet(conn: &Connection, subnet_id: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM route_table_associations WHERE subnet_id = ?1", params![subnet_id])?;
    conn.execute("DELETE FROM network_acl_associations WHERE subnet_id = ?1", params![subnet_id])?;
    Ok(())
}

pub fn insert_address(conn: &Connection, scope: &Scope, a: &Address) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO addresses (allocation_id, account_id, region, public_ip, instance_id, association_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            a.allocation_id,
            scope.account,
            scope.region,
            a.public_ip,
            a.instance_id,
            a.association_id,
            a.created_at
        ],
    )?;
    Ok(())
}

fn address_row(r: &crate::db::Row<'_>) -> crate::db::Result<Address> {
    Ok(Address {
        allocation_id: r.get(0)?,
        public_ip: r.get(1)?,
        instance_id: r.get(2)?,
        association_id: r.get(3)?,
        created_at: r.get(4)?,
    })
}

pub fn addresses(conn: &Connection, scope: &Scope) -> Result<Vec<Address>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT allocation_id, public_ip, instance_id, association_id, created_at FROM addresses
         WHERE account_id = ?1 AND region = ?2 ORDER BY created_at, allocation_id",
    )?;
    let rows = st.query_map(params![scope.account, scope.region], address_row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Every allocated Elastic IP (they come from the host's public pool).
pub fn all_addresses(conn: &Connection) -> Result<Vec<Address>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT allocation_id, public_ip, instance_id, association_id, created_at FROM addresses ORDER BY public_ip",
    )?;
    let rows = st.query_map((), address_row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

pub fn associate_address(
    conn: &Connection,
    allocation_id: &str,
    instance_id: Option<&str>,
    association_id: Option<&str>,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE addresses SET instance_id = ?2, association_id = ?3 WHERE allocation_id = ?1",
        params![allocation_id, instance_id, association_id],
    )?;
    Ok(())
}

pub fn delete_address(conn: &Connection, allocation_id: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM addresses WHERE allocation_id = ?1", params![allocation_id])?;
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkAcl {
    pub id: String,
    pub vpc_id: String,
    pub is_default: bool,
    pub created_at: String,
}

/// One numbered rule of an ACL, for one direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclEntry {
    pub acl_id: String,
    pub egress: bool,
    pub rule_number: i64,
    /// `-1` (all), or an IP protocol number as text (`6` tcp, `17` udp, `1` icmp).
    pub protocol: String,
    pub allow: bool,
    pub cidr: String,
    pub from_port: Option<i64>,
    pub to_port: Option<i64>,
}

/// A subnet's association with an ACL (every subnet has exactly one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclAssociation {
    pub id: String,
    pub acl_id: String,
    pub subnet_id: String,
}

pub fn insert_acl(conn: &Connection, scope: &Scope, a: &NetworkAcl) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO network_acls (id, account_id, region, vpc_id, is_default, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![a.id, scope.account, scope.region, a.vpc_id, a.is_default, a.created_at],
    )?;
    Ok(())
}

pub fn acls(conn: &Connection, scope: &Scope) -> Result<Vec<NetworkAcl>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT id, vpc_id, is_default, created_at FROM network_acls WHERE account_id = ?1 AND region = ?2
         ORDER BY created_at, id",
    )?;
    let rows = st
        .query_map(params![scope.account, scope.region], |r| {
            Ok(NetworkAcl { id: r.get(0)?, vpc_id: r.get(1)?, is_default: r.get(2)?, created_at: r.get(3)? })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

pub fn delete_acl(conn: &Connection, id: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM network_acl_associations WHERE acl_id = ?1", params![id])?;
    conn.execute("DELETE FROM network_acls WHERE id = ?1", params![id])?;
    Ok(())
}

pub fn acl_entries(conn: &Connection, scope: &Scope) -> Result<Vec<AclEntry>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT e.acl_id, e.egress, e.rule_number, e.protocol, e.allow, e.cidr, e.from_port, e.to_port
         FROM network_acl_entries e JOIN network_acls a ON a.id = e.acl_id
         WHERE a.account_id = ?1 AND a.region = ?2 ORDER BY e.acl_id, e.egress, e.rule_number",
    )?;
    let rows = st
        .query_map(params![scope.account, scope.region], |r| {
            Ok(AclEntry {
                acl_id: r.get(0)?,
                egress: r.get(1)?,
                rule_number: r.get(2)?,
                protocol: r.get(3)?,
                allow: r.get(4)?,
                cidr: r.get(5)?,
                from_port: r.get(6)?,
                to_port: r.get(7)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Adds an entry, or (with `replace`) overwrites the one of the same number and
/// direction; false when the one to replace does not exist or the one to add does.
pub fn put_acl_entry(conn: &Connection, e: &AclEntry, replace: bool) -> Result<bool, StoreError> {
    let sql = if replace {
        "UPDATE network_acl_entries SET protocol = ?4, allow = ?5, cidr = ?6, from_port = ?7, to_port = ?8
         WHERE acl_id = ?1 AND egress = ?2 AND rule_number = ?3"
    } else {
        "INSERT INTO network_acl_entries (acl_id, egress, rule_number, protocol, allow, cidr, from_port, to_port)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING"
    };
    let n = conn.execute(
        sql,
        params![e.acl_id, e.egress, e.rule_number, e.protocol, e.allow, e.cidr, e.from_port, e.to_port],
    )?;
    Ok(n > 0)
}

pub fn delete_acl_entry(conn: &Connection, acl_id: &str, egress: bool, rule_number: i64) -> Result<bool, StoreError> {
    let n = conn.execute(
        "DELETE FROM network_acl_entries WHERE acl_id = ?1 AND egress = ?2 AND rule_number = ?3",
        params![acl_id, egress, rule_number],
    )?;
    Ok(n > 0)
}

pub fn acl_associations(conn: &Connection, scope: &Scope) -> Result<Vec<AclAssociation>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT x.id, x.acl_id, x.subnet_id FROM network_acl_associations x JOIN network_acls a ON a.id = x.acl_id
         WHERE a.account_id = ?1 AND a.region = ?2 ORDER BY x.id",
    )?;
    let rows = st
        .query_map(params![scope.account, scope.region], |r| {
            Ok(AclAssociation { id: r.get(0)?, acl_id: r.get(1)?, subnet_id: r.get(2)? })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Puts a subnet under an ACL with association `id`, replacing its association.
pub fn associate_acl(conn: &Connection, id: &str, acl_id: &str, subnet_id: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM network_acl_associations WHERE subnet_id = ?1", params![subnet_id])?;
    conn.execute(
        "INSERT INTO network_acl_associations (id, acl_id, subnet_id) VALUES (?1, ?2, ?3)",
        params![id, acl_id, subnet_id],
    )?;
    Ok(())
}
