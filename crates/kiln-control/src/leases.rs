//! Leases on background work: of several servers sharing one database, the one that
//! holds a piece of work's lease does it, and another takes over once a dead holder's
//! lease lapses.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kiln_store::leases::{self, Lease};

use crate::{Cloud, Result};

/// The lease on this host's work: the reconciler (and so every workflow step), disk
/// imports, Quick Start builds, guest services and the start-up clean-ups.
pub const HOST_WORK: &str = "host";

pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Cloud {
    /// Takes or renews `name` for `holder` for `ttl`; whether `holder` holds it now.
    pub fn hold_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        Ok(self.store.write(|tx| leases::hold(tx, name, holder, now_ms(), ttl.as_millis() as i64))?)
    }

    /// Moves `name` from `from`, a holder known to have stopped, to `holder`.
    pub fn take_lease_from(&self, name: &str, from: &str, holder: &str, ttl: Duration) -> Result<bool> {
        Ok(self.store.write(|tx| leases::take_from(tx, name, from, holder, now_ms(), ttl.as_millis() as i64))?)
    }

    /// Gives `name` up if `holder` has it.
    pub fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        Ok(self.store.write(|tx| leases::release(tx, name, holder))?)
    }

    /// Every lease, and the time now in the same clock (to show ages).
    pub fn leases(&self) -> Result<(Vec<Lease>, i64)> {
        Ok((self.store.read(leases::all)?, now_ms()))
    }
}
