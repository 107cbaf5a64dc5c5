//! Leases: which server does a piece of background work now. A lease is held until
//! its holder stops renewing it and it lapses; then any server may take it. Times are
//! Unix milliseconds from the servers' clocks, which must agree to well within a
//! lease's length.

use crate::db::{params, Connection};
use crate::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub name: String,
    pub holder: String,
    pub acquired_at: i64,
    pub renewed_at: i64,
    pub expires_at: i64,
}

/// Takes or renews `name` for `holder` until `now + ttl_ms`: succeeds when it is free,
/// lapsed, or already `holder`'s. Returns whether `holder` holds it now.
pub fn hold(conn: &Connection, name: &str, holder: &str, now: i64, ttl_ms: i64) -> Result<bool, StoreError> {
    let n = conn.execute(
        "INSERT INTO leases (name, holder, acquired_at, renewed_at, expires_at) VALUES (?1, ?2, ?3, ?3, ?4)
         ON CONFLICT (name) DO UPDATE SET
           acquired_at = CASE WHEN leases.holder = excluded.holder THEN leases.acquired_at ELSE excluded.acquired_at END,
           holder = excluded.holder, renewed_at = excluded.renewed_at, expires_at = excluded.expires_at
         WHERE leases.holder = excluded.holder OR leases.expires_at < ?3",
        params![name, holder, now, now + ttl_ms],
    )?;
    Ok(n > 0)
}

/// Moves `name` from `from` (known to have stopped) to `holder`, if `from` still has
/// it. Returns whether `holder` has it now.
pub fn take_from(
    conn: &Connection,
    name: &str,
    from: &str,
    holder: &str,
    now: i64,
    ttl_ms: i64,
) -> Result<bool, StoreError> {
    let n = conn.execute(
        "UPDATE leases SET holder = ?3, acquired_at = ?4, renewed_at = ?4, expires_at = ?5 WHERE name = ?1 AND holder = ?2",
        params![name, from, holder, now, now + ttl_ms],
    )?;
    Ok(n > 0)
}

/// Gives `name` up, if `holder` has it (a clean shutdown: another server need not
/// wait for it to lapse).
pub fn release(conn: &Connection, name: &str, holder: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM leases WHERE name = ?1 AND holder = ?2", params![name, holder])?;
    Ok(())
}

/// Every lease, by name.
pub fn all(conn: &Connection) -> Result<Vec<Lease>, StoreError> {
    let mut st =
        conn.prepare_cached("SELECT name, holder, acquired_at, renewed_at, expires_at FROM leases ORDER BY name")?;
    let rows = st
        .query_map((), |r| {
            Ok(Lease {
                name: r.get(0)?,
                holder: r.get(1)?,
                acquired_at: r.get(2)?,
                renewed_at: r.get(3)?,
                expires_at: r.get(4)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    #[test]
    fn a_lease_is_one_holders_until_it_lapses() {
        let s = Store::in_memory().expect("store");
        let hold = |who: &str, now: i64| s.write(|tx| hold(tx, "host", who, now, 10_000)).expect("hold");
        assert!(hold("a", 1_000));
        assert!(!hold("b", 5_000), "a holds it until 11,000");
        assert!(hold("a", 9_000), "a renews");
        assert!(!hold("b", 18_000), "renewed until 19,000");
        assert!(hold("b", 19_001), "lapsed: b takes it");
        let l = s.read(all).expect("all");
        assert_eq!((l[0].holder.as_str(), l[0].acquired_at, l[0].expires_at), ("b", 19_001, 29_001));
        s.write(|tx| release(tx, "host", "a")).expect("not a's");
        assert_eq!(s.read(all).expect("all").len(), 1);
        s.write(|tx| release(tx, "host", "b")).expect("release");
        assert!(hold("a", 19_002), "released: free at once");
    }
}
