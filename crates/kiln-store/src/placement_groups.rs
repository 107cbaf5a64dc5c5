//! Placement groups, and the instances launched into each (with their partition).

use std::collections::HashMap;

use kiln_types::{PlacementStrategy, SpreadLevel};

use crate::db::{params, Connection, Row};
use crate::{parsed, Scope, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementGroup {
    pub id: String,
    pub name: String,
    pub strategy: PlacementStrategy,
    pub partition_count: Option<i64>,
    pub spread_level: Option<SpreadLevel>,
    pub created_at: String,
}

/// An instance's place in a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub instance_id: String,
    pub group_id: String,
    pub partition_number: Option<i64>,
}

/// A member that has not been terminated, with where it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Live {
    pub instance_id: String,
    pub availability_zone: String,
    pub partition_number: Option<i64>,
    /// The joined host it is placed on (None: the serving host's own).
    pub host_id: Option<String>,
}

fn row(r: &Row<'_>) -> crate::db::Result<PlacementGroup> {
    Ok(PlacementGroup {
        id: r.get(0)?,
        name: r.get(1)?,
        strategy: parsed(r, 2)?,
        partition_count: r.get(3)?,
        spread_level: r
            .get::<_, Option<String>>(4)?
            .map(|s| s.parse())
            .transpose()
            .map_err(|e| crate::db::Error::conversion(4, e))?,
        created_at: r.get(5)?,
    })
}

/// Inserts; `Ok(false)` when the name is taken in this scope.
pub fn insert(conn: &Connection, scope: &Scope, g: &PlacementGroup) -> Result<bool, StoreError> {
    let res = conn.execute(
        "INSERT INTO placement_groups (id, account_id, region, name, strategy, partition_count, spread_level, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            g.id,
            scope.account,
            scope.region,
            g.name,
            g.strategy.as_str(),
            g.partition_count,
            g.spread_level.map(|s| s.as_str()),
            g.created_at
        ],
    );
    match res {
        Ok(_) => Ok(true),
        Err(e) if crate::is_unique_violation(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The scope's groups, by name.
pub fn list(conn: &Connection, scope: &Scope) -> Result<Vec<PlacementGroup>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT id, name, strategy, partition_count, spread_level, created_at FROM placement_groups
         WHERE account_id = ?1 AND region = ?2 ORDER BY name",
    )?;
    let rows = st.query_map(params![scope.account, scope.region], row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

/// The members of `group_id` that are not terminated.
pub fn live_members(conn: &Connection, group_id: &str) -> Result<Vec<Live>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT m.instance_id, i.availability_zone, m.partition_number, i.host_id
         FROM placement_group_members m JOIN instances i ON i.id = m.instance_id
         WHERE m.group_id = ?1 AND i.state <> 'terminated' ORDER BY m.instance_id",
    )?;
    let rows = st
        .query_map(params![group_id], |r| {
            Ok(Live {
                instance_id: r.get(0)?,
                availability_zone: r.get(1)?,
                partition_number: r.get(2)?,
                host_id: r.get(3)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

pub fn add_member(conn: &Connection, m: &Member) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO placement_group_members (instance_id, group_id, partition_number) VALUES (?1, ?2, ?3)",
        params![m.instance_id, m.group_id, m.partition_number],
    )?;
    Ok(())
}

/// Every member in the scope, by instance.
pub fn members(conn: &Connection, scope: &Scope) -> Result<HashMap<String, Member>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT m.instance_id, m.group_id, m.partition_number
         FROM placement_group_members m JOIN placement_groups g ON g.id = m.group_id
         WHERE g.account_id = ?1 AND g.region = ?2",
    )?;
    let rows = st
        .query_map(params![scope.account, scope.region], |r| {
            Ok(Member { instance_id: r.get(0)?, group_id: r.get(1)?, partition_number: r.get(2)? })
        })?
        .map(|m| m.map(|m| (m.instance_id.clone(), m)))
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Deletes a group with no live members (its terminated members' records go with it).
pub fn delete(conn: &Connection, scope: &Scope, id: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM placement_group_members WHERE group_id = ?1", params![id])?;
    conn.execute(
        "DELETE FROM placement_groups WHERE id = ?1 AND account_id = ?2 AND region = ?3",
        params![id, scope.account, scope.region],
    )?;
    Ok(())
}
