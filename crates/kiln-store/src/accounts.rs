//! Accounts, their access keys, console passwords (stored hashed by the control
//! plane) and the console's temporary credentials.

use crate::db::{params, Connection, OptionalExtension};

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
    /// Temporary credentials (a console session): the hash of the session token a
    /// request must carry, and when they stop working.
    pub session: Option<SessionLimits>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionLimits {
    /// Hex SHA-256 of the session token.
    pub token_hash: String,
    pub expires_at: String,
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

fn row(r: &crate::db::Row<'_>) -> crate::db::Result<Account> {
    Ok(Account { id: r.get(0)?, name: r.get(1)?, is_provider: r.get(2)?, created_at: r.get(3)?, is_vendor: r.get(4)? })
}

pub fn set_vendor(conn: &Connection, id: &str) -> Result<(), StoreError> {
    conn.execute("UPDATE accounts SET is_vendor = 1 WHERE id = ?1", [id])?;
    Ok(())
}

pub fn list(conn: &Connection) -> Result<Vec<Account>, StoreError> {
    let mut st =
        conn.prepare("SELECT id, name, is_provider, created_at, is_vendor FROM accounts ORDER BY created_at, name")?;
    let rows = st.query_map((), row)?.collect::<Result<_, _>>()?;
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
            "SELECT access_key_id, account_id, secret, NULL, NULL FROM access_keys WHERE access_key_id = ?1
             UNION ALL
             SELECT access_key_id, account_id, secret, token_hash, expires_at FROM console_sessions
             WHERE access_key_id = ?1",
            [access_key_id],
            |r| {
                let token_hash: Option<String> = r.get(3)?;
                let expires_at: Option<String> = r.get(4)?;
                Ok(AccessKey {
                    access_key_id: r.get(0)?,
                    account_id: r.get(1)?,
                    secret: r.get(2)?,
                    session: token_hash
                        .zip(expires_at)
                        .map(|(token_hash, expires_at)| SessionLimits { token_hash, expires_at }),
                })
            },
        )
        .optional()?)
}

/// Sets an account's console password hash (a PHC string); false when no account
/// has that name.
pub fn set_console_password(conn: &Connection, name: &str, hash: &str) -> Result<bool, StoreError> {
    Ok(conn.execute("UPDATE accounts SET console_password = ?2 WHERE name = ?1", params![name, hash])? == 1)
}

/// An account's id and console password hash, by name (no hash: no password set).
pub fn console_password(conn: &Connection, name: &str) -> Result<Option<(String, Option<String>)>, StoreError> {
    Ok(conn
        .query_row("SELECT id, console_password FROM accounts WHERE name = ?1", [name], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// Records a console session's temporary credentials.
pub fn insert_session(conn: &Connection, key: &AccessKey, created_at: &str) -> Result<(), StoreError> {
    let limits =
        key.session.as_ref().ok_or_else(|| StoreError::Corrupt("a session needs its token and expiry".into()))?;
    conn.execute(
        "INSERT INTO console_sessions (access_key_id, account_id, secret, token_hash, expires_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![key.access_key_id, key.account_id, key.secret, limits.token_hash, limits.expires_at, created_at],
    )?;
    Ok(())
}

/// Ends a session (sign-out) when its token matches; returns whether one ended.
pub fn delete_session(conn: &Connection, access_key_id: &str, token_hash: &str) -> Result<bool, StoreError> {
    Ok(conn.execute(
        "DELETE FROM console_sessions WHERE access_key_id = ?1 AND token_hash = ?2",
        params![access_key_id, token_hash],
    )? == 1)
}

/// Forgets sessions that expired before `now` (RFC 3339, as stored).
pub fn purge_sessions(conn: &Connection, now: &str) -> Result<usize, StoreError> {
    Ok(conn.execute("DELETE FROM console_sessions WHERE expires_at < ?1", [now])?)
}
