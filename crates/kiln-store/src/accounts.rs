//! Accounts and their access keys.

use rusqlite::{params, Connection, OptionalExtension};

use crate::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    pub name: String,
    pub is_provider: bool,
    /// A Marketplace vendor: its public images with product codes are listed under
    /// the owner alias `aws-marketplace`.
    pub is_vendor: bool,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKey {
    pub access_key_id: String,
    pub account_id: String,
    pub secret: String,
}

pub fn insert(conn: &Connection, a: &Account) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO accounts (id, name, is_provider, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![a.id, a.name, a.is_provider, a.created_at],
    )?;
    Ok(())
}

pub fn insert_key(conn: &Connection, k: &AccessKey) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO access_keys (access_key_id, account_id, secret, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![k.access_key_id, k.account_id, k.secret, crate::now()],
    )?;
    Ok(())
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account { id: r.get(0)?, name: r.get(1)?, is_provider: r.get(2)?, created_at: r.get(3)?, is_vendor: r.get(4)? })
}

pub fn set_vendor(conn: &Connection, id: &str) -> Result<(), StoreError> {
    conn.execute("UPDATE accounts SET is_vendor = 1 WHERE id = ?1", [id])?;
    Ok(())
}

pub fn list(conn: &Connection) -> Result<Vec<Account>, StoreError> {
    let mut st =
        conn.prepare("SELECT id, name, is_provider, created_at, is_vendor FROM accounts ORDER BY created_at, name")?;
    let rows = st.query_map([], row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

pub fn by_name(conn: &Connection, name: &str) -> Result<Option<Account>, StoreError> {
    Ok(conn
        .query_row("SELECT id, name, is_provider, created_at, is_vendor FROM accounts WHERE name = ?1", [name], row)
        .optional()?)
}

pub fn key(conn: &Connection, access_key_id: &str) -> Result<Option<AccessKey>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT access_key_id, account_id, secret FROM access_keys WHERE access_key_id = ?1",
            [access_key_id],
            |r| Ok(AccessKey { access_key_id: r.get(0)?, account_id: r.get(1)?, secret: r.get(2)? }),
        )
        .optional()?)
}
