//! Hosts joined with `kiln agent`: the certificate authority that issues their client
//! certificates, the one-time tokens they join with (kept only as SHA-256 hashes), and
//! each host's report, state, certificate and last heartbeat. Times are Unix
//! milliseconds.

use kiln_agent_api::{HostId, HostState};

use crate::db::{params, Connection, OptionalExtension};
use crate::StoreError;

/// The hosts' certificate authority (PEM). `key_pem` is a secret.
#[derive(Clone)]
pub struct Ca {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").field("cert_pem", &self.cert_pem).finish_non_exhaustive()
    }
}

/// The CA, if one was made.
pub fn ca(conn: &Connection) -> Result<Option<Ca>, StoreError> {
    Ok(conn
        .query_row("SELECT cert_pem, key_pem FROM host_ca WHERE id = 1", (), |r| {
            Ok(Ca { cert_pem: r.get(0)?, key_pem: r.get(1)? })
        })
        .optional()?)
}

/// Keeps `ca` unless one exists already; returns the one kept.
pub fn put_ca(conn: &Connection, ca: &Ca, now: i64) -> Result<Ca, StoreError> {
    conn.execute(
        "INSERT INTO host_ca (id, cert_pem, key_pem, created_at) VALUES (1, ?1, ?2, ?3) ON CONFLICT (id) DO NOTHING",
        params![ca.cert_pem, ca.key_pem, now],
    )?;
    self::ca(conn)?.ok_or(StoreError::Corrupt("the host CA vanished while it was written".into()))
}

/// A join token, by the hash of its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    pub token_sha256: String,
    pub zone: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_by: Option<String>,
}

pub fn insert_token(conn: &Connection, t: &JoinToken) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO host_join_tokens (token_sha256, zone, created_at, expires_at, used_by) VALUES (?1, ?2, ?3, ?4, NULL)",
        params![t.token_sha256, t.zone, t.created_at, t.expires_at],
    )?;
    Ok(())
}

pub fn token(conn: &Connection, token_sha256: &str) -> Result<Option<JoinToken>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT token_sha256, zone, created_at, expires_at, used_by FROM host_join_tokens WHERE token_sha256 = ?1",
            params![token_sha256],
            |r| {
                Ok(JoinToken {
                    token_sha256: r.get(0)?,
                    zone: r.get(1)?,
                    created_at: r.get(2)?,
                    expires_at: r.get(3)?,
                    used_by: r.get(4)?,
                })
            },
        )
        .optional()?)
}

/// Marks the token used by `host`, if it is still unused (compare-and-set: of two
/// agents joining with one token, one wins). Returns whether it was.
pub fn use_token(conn: &Connection, token_sha256: &str, host: &HostId) -> Result<bool, StoreError> {
    let n = conn.execute(
        "UPDATE host_join_tokens SET used_by = ?2 WHERE token_sha256 = ?1 AND used_by IS NULL",
        params![token_sha256, host.as_str()],
    )?;
    Ok(n == 1)
}

/// A joined host.
#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    pub host_id: HostId,
    pub zone: String,
    pub hostname: String,
    pub state: HostState,
    /// Comma-separated, as reported.
    pub architectures: String,
    pub accel: String,
    pub cpus: i64,
    pub memory_mib: i64,
    pub qemu_version: String,
    pub cert_sha256: String,
    pub prev_cert_sha256: Option<String>,
    pub cert_expires_at: i64,
    pub joined_at: i64,
    pub heartbeat_at: i64,
    /// In use at the last heartbeat: running VMs, their resident memory (MiB), and the
    /// host's MemAvailable (MiB).
    pub vms: i64,
    pub vm_resident_mib: i64,
    pub memory_available_mib: i64,
    /// Where its agent serves the control plane's calls (`ip:port`), if it does.
    pub endpoint: Option<String>,
}

/// What a host says of itself at each heartbeat.
#[derive(Debug, Clone)]
pub struct Report {
    pub hostname: String,
    /// Comma-separated.
    pub architectures: String,
    pub accel: String,
    pub cpus: i64,
    pub memory_mib: i64,
    pub qemu_version: String,
    pub vms: i64,
    pub vm_resident_mib: i64,
    pub memory_available_mib: i64,
    pub endpoint: Option<String>,
}

const COLUMNS: &str = "host_id, zone, hostname, state, architectures, accel, cpus, memory_mib, qemu_version, \
                       cert_sha256, prev_cert_sha256, cert_expires_at, joined_at, heartbeat_at, vms, \
                       vm_resident_mib, memory_available_mib, endpoint";

fn row(r: &crate::db::Row<'_>) -> crate::db::Result<Host> {
    let id: String = r.get(0)?;
    let state: String = r.get(3)?;
    let bad = |column, message| crate::db::Error::Conversion { column, message };
    Ok(Host {
        host_id: id.parse().map_err(|e: kiln_agent_api::AgentError| bad(0, e.to_string()))?,
        zone: r.get(1)?,
        hostname: r.get(2)?,
        state: HostState::parse(&state).ok_or_else(|| bad(3, format!("unknown host state '{state}'")))?,
        architectures: r.get(4)?,
        accel: r.get(5)?,
        cpus: r.get(6)?,
        memory_mib: r.get(7)?,
        qemu_version: r.get(8)?,
        cert_sha256: r.get(9)?,
        prev_cert_sha256: r.get(10)?,
        cert_expires_at: r.get(11)?,
        joined_at: r.get(12)?,
        heartbeat_at: r.get(13)?,
        vms: r.get(14)?,
        vm_resident_mib: r.get(15)?,
        memory_available_mib: r.get(16)?,
        endpoint: r.get(17)?,
    })
}

pub fn insert(conn: &Connection, h: &Host) -> Result<(), StoreError> {
    conn.execute(
        &format!("INSERT INTO hosts ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)"),
        params![
            h.host_id.as_str(),
            h.zone,
            h.hostname,
            h.state.as_str(),
            h.architectures,
            h.accel,
            h.cpus,
            h.memory_mib,
            h.qemu_version,
            h.cert_sha256,
            h.prev_cert_sha256,
            h.cert_expires_at,
            h.joined_at,
            h.heartbeat_at,
            h.vms,
            h.vm_resident_mib,
            h.memory_available_mib,
            h.endpoint
        ],
    )?;
    Ok(())
}

/// Every host, by zone and ID.
pub fn all(conn: &Connection) -> Result<Vec<Host>, StoreError> {
    let mut st = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM hosts ORDER BY zone, host_id"))?;
    let rows = st.query_map((), row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub fn get(conn: &Connection, id: &HostId) -> Result<Option<Host>, StoreError> {
    Ok(conn
        .query_row(&format!("SELECT {COLUMNS} FROM hosts WHERE host_id = ?1"), params![id.as_str()], row)
        .optional()?)
}

/// The host presenting the client certificate with this hash: its current one, or
/// the one it had before its last renewal (until it is seen with the new one, so an
/// agent that died before keeping its new certificate is not locked out).
pub fn by_cert(conn: &Connection, cert_sha256: &str) -> Result<Option<Host>, StoreError> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM hosts WHERE cert_sha256 = ?1 OR prev_cert_sha256 = ?1"),
            params![cert_sha256],
            row,
        )
        .optional()?)
}

/// Records a heartbeat and the host's report. Presenting the current certificate
/// retires the previous one.
pub fn heartbeat(conn: &Connection, id: &HostId, r: &Report, cert_sha256: &str, now: i64) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE hosts SET hostname = ?2, architectures = ?3, accel = ?4, cpus = ?5, memory_mib = ?6,
           qemu_version = ?7, heartbeat_at = ?9, vms = ?10, vm_resident_mib = ?11, memory_available_mib = ?12,
           endpoint = ?13, prev_cert_sha256 = CASE WHEN cert_sha256 = ?8 THEN NULL ELSE prev_cert_sha256 END
         WHERE host_id = ?1",
        params![
            id.as_str(),
            r.hostname,
            r.architectures,
            r.accel,
            r.cpus,
            r.memory_mib,
            r.qemu_version,
            cert_sha256,
            now,
            r.vms,
            r.vm_resident_mib,
            r.memory_available_mib,
            r.endpoint
        ],
    )?;
    Ok(())
}

/// Replaces the host's certificate, keeping the one it presented as the previous.
pub fn renew(
    conn: &Connection,
    id: &HostId,
    presented_sha256: &str,
    cert_sha256: &str,
    expires_at: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE hosts SET prev_cert_sha256 = ?2, cert_sha256 = ?3, cert_expires_at = ?4 WHERE host_id = ?1",
        params![id.as_str(), presented_sha256, cert_sha256, expires_at],
    )?;
    Ok(())
}

pub fn set_state(conn: &Connection, id: &HostId, state: HostState) -> Result<bool, StoreError> {
    let n = conn.execute("UPDATE hosts SET state = ?2 WHERE host_id = ?1", params![id.as_str(), state.as_str()])?;
    Ok(n == 1)
}
