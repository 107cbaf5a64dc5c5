//! Security groups and their rules.

use crate::db::{params, Connection};

use crate::{Scope, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityGroup {
    pub id: String,
    pub vpc_id: String,
    pub name: String,
    pub description: String,
    pub created_at: String,
}

/// One rule: exactly one of the CIDRs or the referenced group is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub id: String,
    pub group_id: String,
    pub is_egress: bool,
    pub protocol: String,
    pub from_port: Option<i32>,
    pub to_port: Option<i32>,
    pub cidr_ipv4: Option<String>,
    pub cidr_ipv6: Option<String>,
    pub ref_group_id: Option<String>,
    pub ref_user_id: Option<String>,
    pub description: Option<String>,
}

/// Inserts; `Ok(false)` when the name is taken in the VPC.
pub fn insert(conn: &Connection, scope: &Scope, g: &SecurityGroup) -> Result<bool, StoreError> {
    let res = conn.execute(
        "INSERT INTO security_groups (id, account_id, region, vpc_id, name, description, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![g.id, scope.account, scope.region, g.vpc_id, g.name, g.description, g.created_at],
    );
    match res {
        Ok(_) => Ok(true),
        Err(e) if crate::is_unique_violation(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn group_row(r: &crate::db::Row<'_>) -> crate::db::Result<SecurityGroup> {
    Ok(SecurityGroup {
        id: r.get(0)?,
        vpc_id: r.get(1)?,
        name: r.get(2)?,
        description: r.get(3)?,
        created_at: r.get(4)?,
    })
}

pub fn list(conn: &Connection, scope: &Scope) -> Result<Vec<SecurityGroup>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT id, vpc_id, name, description, created_at FROM security_groups
         WHERE account_id = ?1 AND region = ?2 ORDER BY created_at, id",
    )?;
    let rows = st.query_map(params![scope.account, scope.region], group_row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

/// The scope's groups among `ids` (by primary key; missing ones are simply absent).
pub fn by_ids(conn: &Connection, scope: &Scope, ids: &[impl AsRef<str>]) -> Result<Vec<SecurityGroup>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT id, vpc_id, name, description, created_at FROM security_groups
         WHERE id = ?1 AND account_id = ?2 AND region = ?3",
    )?;
    let mut out = Vec::new();
    for id in ids {
        out.extend(
            st.query_map(params![id.as_ref(), scope.account, scope.region], group_row)?
                .collect::<Result<Vec<_>, _>>()?,
        );
    }
    out.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
    out.dedup_by(|a, b| a.id == b.id);
    Ok(out)
}

/// The scope's group named `name` (any case) in a VPC.
pub fn by_name(
    conn: &Connection,
    scope: &Scope,
    vpc_id: &str,
    name: &str,
) -> Result<Option<SecurityGroup>, StoreError> {
    use crate::db::OptionalExtension;
    Ok(conn
        .query_row(
            "SELECT id, vpc_id, name, description, created_at FROM security_groups
             WHERE vpc_id = ?1 AND lower(name) = lower(?2) AND account_id = ?3 AND region = ?4",
            params![vpc_id, name, scope.account, scope.region],
            group_row,
        )
        .optional()?)
}

pub fn delete(conn: &Connection, scope: &Scope, id: &str) -> Result<bool, StoreError> {
    let n = conn.execute(
        "DELETE FROM security_groups WHERE id = ?1 AND account_id = ?2 AND region = ?3",
        params![id, scope.account, scope.region],
    )?;
    Ok(n > 0)
}

pub fn insert_rule(conn: &Connection, r: &Rule) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO security_group_rules (id, group_id, is_egress, protocol, from_port, to_port, cidr_ipv4, cidr_ipv6,
                                           ref_group_id, ref_user_id, description)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            r.id,
            r.group_id,
            r.is_egress,
            r.protocol,
            r.from_port,
            r.to_port,
            r.cidr_ipv4,
            r.cidr_ipv6,
            r.ref_group_id,
            r.ref_user_id,
            r.description
        ],
    )?;
    Ok(())
}

fn rule_row(r: &crate::db::Row<'_>) -> crate::db::Result<Rule> {
    Ok(Rule {
        id: r.get(0)?,
        group_id: r.get(1)?,
        is_egress: r.get(2)?,
        protocol: r.get(3)?,
        from_port: r.get(4)?,
        to_port: r.get(5)?,
        cidr_ipv4: r.get(6)?,
        cidr_ipv6: r.get(7)?,
        ref_group_id: r.get(8)?,
        ref_user_id: r.get(9)?,
        description: r.get(10)?,
    })
}

/// Every rule of every group in the scope.
pub fn rules(conn: &Connection, scope: &Scope) -> Result<Vec<Rule>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT r.id, r.group_id, r.is_egress, r.protocol, r.from_port, r.to_port, r.cidr_ipv4, r.cidr_ipv6,
                r.ref_group_id, r.ref_user_id, r.description
         FROM security_group_rules r JOIN security_groups g ON g.id = r.group_id
         WHERE g.account_id = ?1 AND g.region = ?2 ORDER BY r.rowid",
    )?;
    let rows = st.query_map(params![scope.account, scope.region], rule_row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

/// The rules of one group (by the rules' group index).
pub fn rules_of(conn: &Connection, group_id: &str) -> Result<Vec<Rule>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT id, group_id, is_egress, protocol, from_port, to_port, cidr_ipv4, cidr_ipv6,
                ref_group_id, ref_user_id, description
         FROM security_group_rules WHERE group_id = ?1 ORDER BY rowid",
    )?;
    let rows = st.query_map([group_id], rule_row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

pub fn delete_rule(conn: &Connection, id: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM security_group_rules WHERE id = ?1", [id])?;
    Ok(())
}

/// Rules in other groups that reference `group_id`.
pub fn referencing_groups(conn: &Connection, group_id: &str) -> Result<Vec<String>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT DISTINCT group_id FROM security_group_rules WHERE ref_group_id = ?1 AND group_id != ?1",
    )?;
    let rows = st.query_map([group_id], |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok(rows)
}
