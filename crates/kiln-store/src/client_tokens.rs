//! ClientTokens of RunInstances: one reservation per token in an account and region,
//! enforced by the table's primary key, so that concurrent retries of one request
//! launch once.

use crate::db::{params, Connection, OptionalExtension};

use crate::{Scope, StoreError};

/// The reservation and request hash a token was first used with.
pub fn get(conn: &Connection, scope: &Scope, token: &str) -> Result<Option<(String, String)>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT reservation_id, request_hash FROM client_tokens WHERE account_id = ?1 AND region = ?2 AND token = ?3",
            params![scope.account, scope.region, token],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

/// Claims a token for a reservation; fails with a UNIQUE violation if it is taken.
pub fn insert(
    conn: &Connection,
    scope: &Scope,
    token: &str,
    reservation_id: &str,
    hash: &str,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO client_tokens (account_id, region, token, reservation_id, request_hash, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![scope.account, scope.region, token, reservation_id, hash, crate::now()],
    )?;
    Ok(())
}

/// Forgets tokens whose reservation has no instance left.
pub fn purge_unused(conn: &Connection) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "DELETE FROM client_tokens WHERE NOT EXISTS
           (SELECT 1 FROM instances i WHERE i.reservation_id = client_tokens.reservation_id)",
        (),
    )?)
}
