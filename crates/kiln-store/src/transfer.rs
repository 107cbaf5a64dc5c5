//! Copying a whole cloud from one store to another (`kiln db migrate`): every table,
//! parents before children, in one write transaction on the target, then the counts
//! compared. Leases are not copied: they name the old store's servers.

use std::collections::{HashMap, HashSet};

use crate::db::{params_from_iter, Connection, Value};
use crate::{Store, StoreError};

/// Tables that are not the cloud's state.
const SKIPPED: &[&str] = &["leases"];

/// One table's rows in the source and in the target after the copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub table: String,
    pub source: i64,
    pub target: i64,
}

struct Table {
    name: String,
    columns: Vec<String>,
    /// Columns that name a row of the same table (copied parents first).
    self_refs: Vec<(usize, usize)>,
}

/// The source's tables (a SQLite store's, whose catalogue says what refers to what),
/// ordered so that every table comes after those it refers to.
fn tables(src: &Connection) -> Result<Vec<Table>, StoreError> {
    let names: Vec<String> = src
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")?
        .query_map((), |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut deps: HashMap<String, HashSet<String>> = HashMap::new();
    let mut found = Vec::new();
    for name in names.into_iter().filter(|n| !SKIPPED.contains(&n.as_str())) {
        let mut columns: Vec<String> = src
            .prepare(&format!("SELECT name FROM pragma_table_info('{name}') ORDER BY cid"))?
            .query_map((), |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        if name == "security_group_rules" {
            // Its rowid orders the rules; PostgreSQL keeps it as a column.
            columns.insert(0, "rowid".into());
        }
        let refs: Vec<(String, String, String)> = src
            .prepare(&format!("SELECT \"table\", \"from\", \"to\" FROM pragma_foreign_key_list('{name}')"))?
            .query_map((), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        let mut self_refs = Vec::new();
        for (parent, from, to) in refs {
            if parent == name {
                let at = |c: &str| columns.iter().position(|x| x == c);
                if let (Some(f), Some(t)) = (at(&from), at(&to)) {
                    self_refs.push((f, t));
                }
            } else {
                deps.entry(name.clone()).or_default().insert(parent);
            }
        }
        found.push(Table { name, columns, self_refs });
    }
    let mut ordered = Vec::new();
    let mut done: HashSet<String> = HashSet::new();
    while !found.is_empty() {
        let before = found.len();
        let (ready, rest): (Vec<Table>, Vec<Table>) = found
            .into_iter()
            .partition(|t| deps.get(&t.name).is_none_or(|d| d.iter().all(|p| done.contains(p) || p == &t.name)));
        for t in &ready {
            done.insert(t.name.clone());
        }
        ordered.extend(ready);
        found = rest;
        if found.len() == before {
            return Err(StoreError::Corrupt(format!(
                "the tables {} refer to each other in a cycle",
                found.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
    }
    Ok(ordered)
}

/// Rows in an order where a row's parent (a self-reference) comes before it.
fn parents_first(mut rows: Vec<Vec<Value>>, refs: &[(usize, usize)]) -> Vec<Vec<Value>> {
    if refs.is_empty() {
        return rows;
    }
    let mut out = Vec::with_capacity(rows.len());
    let mut seen: HashSet<String> = HashSet::new();
    let key = |v: &Value| match v {
        Value::Text(s) => Some(s.clone()),
        Value::Integer(i) => Some(i.to_string()),
        _ => None,
    };
    while !rows.is_empty() {
        let before = rows.len();
        let (ready, rest): (Vec<_>, Vec<_>) = rows.into_iter().partition(|r| {
            refs.iter().all(|(from, _)| match key(&r[*from]) {
                None => true,
                Some(k) => seen.contains(&k),
            })
        });
        for r in &ready {
            for (_, to) in refs {
                if let Some(k) = key(&r[*to]) {
                    seen.insert(k);
                }
            }
        }
        out.extend(ready);
        rows = rest;
        if rows.len() == before {
            // Parents that are not there (or a loop): copied as they are, and the
            // target's constraints decide.
            out.append(&mut rows);
        }
    }
    out
}

fn count(conn: &Connection, table: &str) -> Result<i64, StoreError> {
    Ok(conn.query_row(&format!("SELECT count(*) FROM {table}"), (), |r| r.get(0))?)
}

/// Copies every table of `from` (SQLite) into `to`, which must hold no cloud yet;
/// `progress` hears each table as it is copied. Returns the counts, checked equal.
pub fn copy_all(from: &Store, to: &Store, progress: &dyn Fn(&Copied)) -> Result<Vec<Copied>, StoreError> {
    if from.dialect() != crate::Dialect::Sqlite {
        return Err(StoreError::Config("the source of a copy must be a SQLite store".into()));
    }
    let (fv, tv) = (from.schema_version()?, to.schema_version()?);
    if fv != tv {
        return Err(StoreError::Config(format!("the stores' schemas differ (version {fv} and {tv}); upgrade both")));
    }
    from.read(|src| {
        let tables = tables(src)?;
        to.write(|dst| {
            if count(dst, "accounts")? > 0 {
                return Err(StoreError::Config(
                    "the target already holds a cloud (it has accounts); copy into an empty database".into(),
                ));
            }
            // The target's defaults (made as its schema was) give way to the source's.
            for t in tables.iter().rev() {
                dst.execute(&format!("DELETE FROM {}", t.name), ())?;
            }
            let mut out = Vec::new();
            for t in &tables {
                let cols = t.columns.join(", ");
                let rows: Vec<Vec<Value>> = src
                    .prepare(&format!("SELECT {cols} FROM {}", t.name))?
                    .query_map((), |r| (0..t.columns.len()).map(|i| r.get::<_, Value>(i)).collect())?
                    .collect::<Result<_, _>>()?;
                let marks: Vec<String> = (1..=t.columns.len()).map(|i| format!("?{i}")).collect();
                let insert = format!("INSERT INTO {} ({cols}) VALUES ({})", t.name, marks.join(", "));
                for row in parents_first(rows, &t.self_refs) {
                    dst.execute(&insert, params_from_iter(row))?;
                }
                let copied =
                    Copied { table: t.name.clone(), source: count(src, &t.name)?, target: count(dst, &t.name)? };
                progress(&copied);
                if copied.source != copied.target {
                    return Err(StoreError::Corrupt(format!(
                        "{}: {} rows in the source but {} copied",
                        copied.table, copied.source, copied.target
                    )));
                }
                out.push(copied);
            }
            if dst.dialect() == crate::Dialect::Postgres {
                dst.execute(
                    "SELECT setval(pg_get_serial_sequence('security_group_rules', 'rowid'), \
                     COALESCE((SELECT MAX(rowid) FROM security_group_rules), 0) + 1, false)",
                    (),
                )?;
            }
            Ok(out)
        })
    })
}
