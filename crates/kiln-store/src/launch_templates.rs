//! Launch templates and their numbered versions. A version's data is stored as the
//! flat query parameters it was given (`ImageId`, `BlockDeviceMapping.1.DeviceName` …);
//! what they mean is the edge's business, not the store's.

use crate::db::{params, Connection, OptionalExtension};

use crate::{Scope, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchTemplate {
    pub id: String,
    pub name: String,
    pub default_version: i64,
    /// The highest version that exists.
    pub latest_version: i64,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateVersion {
    pub template_id: String,
    pub template_name: String,
    pub version: i64,
    pub description: Option<String>,
    /// The version's LaunchTemplateData as flat `(key, value)` parameters, sorted.
    pub data: Vec<(String, String)>,
    pub created_at: String,
    pub is_default: bool,
}

const TEMPLATE_COLUMNS: &str = "t.id, t.name, t.default_version,
    (SELECT max(version) FROM launch_template_versions v WHERE v.template_id = t.id), t.created_at";

fn template_row(r: &crate::db::Row<'_>) -> crate::db::Result<LaunchTemplate> {
    Ok(LaunchTemplate {
        id: r.get(0)?,
        name: r.get(1)?,
        default_version: r.get(2)?,
        latest_version: r.get::<_, Option<i64>>(3)?.unwrap_or(0),
        created_at: r.get(4)?,
    })
}

/// The scope's templates, by name.
pub fn list(conn: &Connection, scope: &Scope) -> Result<Vec<LaunchTemplate>, StoreError> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {TEMPLATE_COLUMNS} FROM launch_templates t WHERE t.account_id = ?1 AND t.region = ?2 ORDER BY t.name"
    ))?;
    let rows = st.query_map(params![scope.account, scope.region], template_row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

/// The scope's template whose `column` is `value` (a column of this module's choosing).
fn one_by(conn: &Connection, scope: &Scope, column: &str, value: &str) -> Result<Option<LaunchTemplate>, StoreError> {
    Ok(conn
        .query_row(
            &format!(
                "SELECT {TEMPLATE_COLUMNS} FROM launch_templates t
                 WHERE t.{column} = ?1 AND t.account_id = ?2 AND t.region = ?3"
            ),
            params![value, scope.account, scope.region],
            template_row,
        )
        .optional()?)
}

pub fn get(conn: &Connection, scope: &Scope, id: &str) -> Result<Option<LaunchTemplate>, StoreError> {
    one_by(conn, scope, "id", id)
}

pub fn by_name(conn: &Connection, scope: &Scope, name: &str) -> Result<Option<LaunchTemplate>, StoreError> {
    one_by(conn, scope, "name", name)
}

/// The template first made with `token`, if any.
pub fn by_token(conn: &Connection, scope: &Scope, token: &str) -> Result<Option<LaunchTemplate>, StoreError> {
    one_by(conn, scope, "client_token", token)
}

/// Inserts a template with no versions yet; `Ok(false)` when the name is taken.
pub fn insert(
    conn: &Connection,
    scope: &Scope,
    id: &str,
    name: &str,
    client_token: Option<&str>,
    created_at: &str,
) -> Result<bool, StoreError> {
    let res = conn.execute(
        "INSERT INTO launch_templates (id, account_id, region, name, default_version, last_number, client_token, created_at)
         VALUES (?1, ?2, ?3, ?4, 1, 0, ?5, ?6)",
        params![id, scope.account, scope.region, name, client_token, created_at],
    );
    match res {
        Ok(_) => Ok(true),
        Err(e) if crate::is_unique_violation(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Adds the template's next version and returns its number.
pub fn add_version(
    conn: &Connection,
    template_id: &str,
    description: Option<&str>,
    data: &[(String, String)],
    client_token: Option<&str>,
    created_at: &str,
) -> Result<i64, StoreError> {
    let version: i64 = conn.query_row(
        "UPDATE launch_templates SET last_number = last_number + 1 WHERE id = ?1 RETURNING last_number",
        [template_id],
        |r| r.get(0),
    )?;
    let json = serde_json::to_string(data).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    conn.execute(
        "INSERT INTO launch_template_versions (template_id, version, description, data, client_token, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![template_id, version, description, json, client_token, created_at],
    )?;
    Ok(version)
}

/// The version of `template_id` first made with `token`, if any.
pub fn version_by_token(conn: &Connection, template_id: &str, token: &str) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT version FROM launch_template_versions WHERE template_id = ?1 AND client_token = ?2",
            params![template_id, token],
            |r| r.get(0),
        )
        .optional()?)
}

/// Versions of the scope's templates, narrowed to one template when given, by
/// template name and then number.
pub fn versions(
    conn: &Connection,
    scope: &Scope,
    template_id: Option<&str>,
) -> Result<Vec<TemplateVersion>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT v.template_id, t.name, v.version, v.description, v.data, v.created_at, v.version = t.default_version
         FROM launch_template_versions v JOIN launch_templates t ON t.id = v.template_id
         WHERE t.account_id = ?1 AND t.region = ?2 AND (CAST(?3 AS TEXT) IS NULL OR t.id = ?3)
         ORDER BY t.name, v.version",
    )?;
    let rows = st
        .query_map(params![scope.account, scope.region, template_id], |r| {
            let json: String = r.get(4)?;
            let data = serde_json::from_str(&json).map_err(|e| crate::db::Error::conversion(4, e))?;
            Ok(TemplateVersion {
                template_id: r.get(0)?,
                template_name: r.get(1)?,
                version: r.get(2)?,
                description: r.get(3)?,
                data,
                created_at: r.get(5)?,
                is_default: r.get(6)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

pub fn set_default(conn: &Connection, template_id: &str, version: i64) -> Result<(), StoreError> {
    conn.execute("UPDATE launch_templates SET default_version = ?2 WHERE id = ?1", params![template_id, version])?;
    Ok(())
}

/// Deletes one version; returns whether it existed.
pub fn delete_version(conn: &Connection, template_id: &str, version: i64) -> Result<bool, StoreError> {
    let n = conn.execute(
        "DELETE FROM launch_template_versions WHERE template_id = ?1 AND version = ?2",
        params![template_id, version],
    )?;
    Ok(n > 0)
}

/// Deletes a template with its versions and tags.
pub fn delete(conn: &Connection, template_id: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM launch_templates WHERE id = ?1", [template_id])?;
    Ok(())
}
