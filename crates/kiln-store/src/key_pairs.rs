//! Key pairs: only public keys and fingerprints are stored, never private keys.

use crate::db::{params, Connection};

use crate::{Scope, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPair {
    pub id: String,
    pub name: String,
    pub key_type: String,
    pub fingerprint: String,
    pub public_key: String,
    pub created_at: String,
}

/// Inserts; `Ok(false)` when the name is taken in this scope.
pub fn insert(conn: &Connection, scope: &Scope, k: &KeyPair) -> Result<bool, StoreError> {
    let res = conn.execute(
        "INSERT INTO key_pairs (id, account_id, region, name, key_type, fingerprint, public_key, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![k.id, scope.account, scope.region, k.name, k.key_type, k.fingerprint, k.public_key, k.created_at],
    );
    match res {
        Ok(_) => Ok(true),
        Err(e) if crate::is_unique_violation(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

pub fn list(conn: &Connection, scope: &Scope) -> Result<Vec<KeyPair>, StoreError> {
    let mut st = conn.prepare_cached(
        "SELECT id, name, key_type, fingerprint, public_key, created_at FROM key_pairs
         WHERE account_id = ?1 AND region = ?2 ORDER BY name",
    )?;
    let rows = st
        .query_map(params![scope.account, scope.region], |r| {
            Ok(KeyPair {
                id: r.get(0)?,
                name: r.get(1)?,
                key_type: r.get(2)?,
                fingerprint: r.get(3)?,
                public_key: r.get(4)?,
                created_at: r.get(5)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Deletes by id; returns whether a row went.
pub fn delete(conn: &Connection, scope: &Scope, id: &str) -> Result<bool, StoreError> {
    let n = conn.execute(
        "DELETE FROM key_pairs WHERE id = ?1 AND account_id = ?2 AND region = ?3",
        params![id, scope.account, scope.region],
    )?;
    Ok(n > 0)
}
