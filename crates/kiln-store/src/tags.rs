//! Tags on any resource, keyed by resource id.

use std::collections::HashMap;

use crate::db::{params, Connection};

use crate::{Scope, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRow {
    pub resource_id: String,
    pub resource_type: String,
    pub key: String,
    pub value: String,
}

/// Sets (or overwrites) a tag.
pub fn put(
    conn: &Connection,
    scope: &Scope,
    resource_type: &str,
    resource_id: &str,
    key: &str,
    value: &str,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO tags (resource_id, account_id, region, resource_type, key, value) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (resource_id, key) DO UPDATE SET value = excluded.value",
        params![resource_id, scope.account, scope.region, resource_type, key, value],
    )?;
    Ok(())
}

/// Deletes tag `key` of a resource, only where its value is `value` if one is given.
pub fn delete(
    conn: &Connection,
    scope: &Scope,
    resource_id: &str,
    key: Option<&str>,
    value: Option<&str>,
) -> Result<(), StoreError> {
    conn.execute(
        "DELETE FROM tags WHERE resource_id = ?1 AND account_id = ?2 AND region = ?3
           AND (CAST(?4 AS TEXT) IS NULL OR key = ?4) AND (CAST(?5 AS TEXT) IS NULL OR value = ?5)",
        params![resource_id, scope.account, scope.region, key, value],
    )?;
    Ok(())
}

pub fn count(conn: &Connection, resource_id: &str) -> Result<usize, StoreError> {
    let n: i64 = conn.query_row("SELECT count(*) FROM tags WHERE resource_id = ?1", [resource_id], |r| r.get(0))?;
    Ok(n as usize)
}

/// Every tag in the scope, in a stable order.
pub fn list(conn: &Connection, scope: &Scope) -> Result<Vec<TagRow>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT resource_id, resource_type, key, value FROM tags WHERE account_id = ?1 AND region = ?2
         ORDER BY resource_id, key",
    )?;
    let rows = st
        .query_map(params![scope.account, scope.region], |r| {
            Ok(TagRow { resource_id: r.get(0)?, resource_type: r.get(1)?, key: r.get(2)?, value: r.get(3)? })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// The tags of the given resources (by the primary key), for rendering a few.
pub fn of_resources(
    conn: &Connection,
    scope: &Scope,
    ids: &[&str],
) -> Result<HashMap<String, Vec<(String, String)>>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT key, value FROM tags WHERE resource_id = ?1 AND account_id = ?2 AND region = ?3 ORDER BY key",
    )?;
    let mut out: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for id in ids {
        let tags: Vec<(String, String)> = st
            .query_map(params![id, scope.account, scope.region], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        if !tags.is_empty() {
            out.insert((*id).to_owned(), tags);
        }
    }
    Ok(out)
}

/// Tags by resource id, for rendering many resources at once.
pub fn by_resource(conn: &Connection, scope: &Scope) -> Result<HashMap<String, Vec<(String, String)>>, StoreError> {
    let mut out: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for t in list(conn, scope)? {
        out.entry(t.resource_id).or_default().push((t.key, t.value));
    }
    Ok(out)
}
