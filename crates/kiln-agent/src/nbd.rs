//! Serving the store's volumes to joined hosts: one `qemu-storage-daemon` per host,
//! exporting over NBD exactly the volumes of the instances placed on that host. The
//! daemon opens each volume's qcow2 chain here and exports the disk; the host's QEMU
//! attaches it over the network (the file never leaves the store, so a host that dies
//! loses no volume, and another host can take the instance over).
//!
//! TLS with the hosts' CA: the daemon presents a certificate naming its address and
//! lets in only the certificate whose subject is its host (QEMU's authz on
//! `CN=<host ID>`), so no host reaches another's volumes. An export taken away is cut
//! at once (`hard`), which fences a VM left on a host its instance has moved from.
//!
//! QEMU's own NBD server is used because the guests' QEMU speaks NBD natively, with
//! TLS and reconnection (`reconnect-delay`), and it reads qcow2 chains as the VMs do.
//! The daemons outlive the server, as VMs do, and the next server adopts them: each
//! keeps its port (DATA_DIR/nbd/HOST/port), so hosts reconnect to a daemon started
//! again.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kiln_agent_api::{AgentError, Disk, HostId, ServerTls};
use serde_json::json;

use crate::qmp::Qmp;

fn fail(msg: impl Into<String>) -> AgentError {
    AgentError::Failed(msg.into())
}

/// A daemon whose certificate is older than this is started again with a fresh one
/// (the control plane's certificates last 30 days; the hosts' VMs reconnect).
const ROTATE_AFTER: std::time::Duration = std::time::Duration::from_secs(10 * 24 * 3600);

/// A daemon's directory: its QMP socket, port, pid file, log and TLS files.
fn dir(store: &Path, host: &HostId) -> PathBuf {
    store.join("nbd").join(host.as_str())
}

/// The digits of a volume ID (node names must start with a letter and are at most 31
/// characters).
fn volume_digits(export: &str) -> &str {
    export.rsplit('-').next().unwrap_or(export)
}

/// The node of a volume's file in the daemon: the volume's digits and a hash of the
/// file, so that a volume gone on to a new overlay gets a new node.
fn node_name(export: &str, file: &kiln_agent_api::StorePath) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(file.as_str().as_bytes());
    format!("vn{}.{}", volume_digits(export), &hex::encode(digest)[..8])
}

/// Writes a file readable by this user only.
fn write_private(path: &Path, text: &str) -> Result<(), AgentError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| fail(format!("writing {}: {e}", path.display())))?;
    f.write_all(text.as_bytes()).map_err(|e| fail(format!("writing {}: {e}", path.display())))
}

/// Makes `dir` (and its parents) for this user only: a daemon's QMP socket commands it,
/// and a relay's socket reaches a volume server.
fn private_dir(dir: &Path) -> Result<(), AgentError> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(dir).map_err(|e| fail(format!("making {}: {e}", dir.display())))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| fail(format!("making {} private: {e}", dir.display())))
}

/// The daemon's process, while it lives: its pid file names a live
/// `qemu-storage-daemon` (a pid reused by another program is not it).
fn daemon_pid(dir: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(dir.join("pid")).ok()?.trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let ours = String::from_utf8_lossy(&cmdline);
    (ours.contains("qemu-storage-daemon") && ours.contains(&*dir.to_string_lossy())).then_some(pid)
}

/// Ends the daemon and waits (up to 10 s) for it to be gone, so that its port and
/// its files' locks are free; fails if it lives on.
fn stop(dir: &Path, host: &HostId) -> Result<(), AgentError> {
    let Some(pid) = daemon_pid(dir) else { return Ok(()) };
    if let Ok(mut q) = Qmp::connect(&dir.join("qmp.sock")) {
        let _ = q.execute("quit", None);
    } else {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
    }
    for _ in 0..100 {
        if daemon_pid(dir).is_none() {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Err(fail(format!("the NBD server of {host} (pid {pid}) does not stop; retrying")))
}

/// The port a daemon listens on: the one it had, so that hosts reconnect to it.
fn recorded_port(dir: &Path) -> Option<u16> {
    std::fs::read_to_string(dir.join("port")).ok().and_then(|p| p.trim().parse().ok())
}

/// Records a daemon's port whole or not at all (a crash mid-write leaves the old one).
fn record_port(dir: &Path, port: u16) -> Result<(), AgentError> {
    let part = dir.join("port.part");
    std::fs::write(&part, port.to_string())
        .and_then(|()| std::fs::rename(&part, dir.join("port")))
        .map_err(|e| fail(format!("recording the port: {e}")))
}

/// A port for a new daemon: the one it had while it is free (so that hosts
/// reconnect), else a free one.
fn port_for(dir: &Path, ip: IpAddr) -> Result<u16, AgentError> {
    if let Some(p) = recorded_port(dir) {
        if std::net::TcpListener::bind((ip, p)).is_ok() {
            return Ok(p);
        }
        tracing::warn!(port = p, "the volume server's port is taken: it moves to another");
    }
    let probe = std::net::TcpListener::bind((ip, 0)).map_err(|e| fail(format!("finding a port on {ip}: {e}")))?;
    let port = probe.local_addr().map_err(|e| fail(format!("finding a port on {ip}: {e}")))?.port();
    record_port(dir, port)?;
    Ok(port)
}

/// Starts a host's daemon, daemonised, listening on `ip`; returns its QMP connection.
fn start(dir: &Path, host: &HostId, ip: IpAddr, tls: &ServerTls) -> Result<Qmp, AgentError> {
    let tls_dir = dir.join("tls");
    std::fs::create_dir_all(&tls_dir).map_err(|e| fail(format!("making {}: {e}", tls_dir.display())))?;
    write_private(&tls_dir.join("ca-cert.pem"), &tls.ca_pem)?;
    write_private(&tls_dir.join("server-cert.pem"), &tls.cert_pem)?;
    write_private(&tls_dir.join("server-key.pem"), &tls.key_pem)?;
    let port = port_for(dir, ip)?;
    let _ = std::fs::remove_file(dir.join("qmp.sock"));
    let log = std::fs::File::create(dir.join("daemon.log")).map_err(|e| fail(format!("the daemon's log: {e}")))?;
    let out = Command::new("qemu-storage-daemon")
        .arg("--object")
        .arg(format!("tls-creds-x509,id=tls0,dir={},endpoint=server,verify-peer=on", tls_dir.display()))
        .arg("--object")
        .arg(format!("authz-simple,id=authz0,identity=CN={host}"))
        .arg("--nbd-server")
        .arg(format!("addr.type=inet,addr.host={ip},addr.port={port},tls-creds=tls0,tls-authz=authz0"))
        .arg("--chardev")
        .arg(format!("socket,id=m,path={},server=on,wait=off", dir.join("qmp.sock").display()))
        .args(["--monitor", "chardev=m", "--daemonize", "--pidfile"])
        .arg(dir.join("pid"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| fail(format!("the daemon's log: {e}")))?)
        .stderr(log)
        .status()
        .map_err(|e| fail(format!("qemu-storage-daemon: {e} (install qemu-system-common)")))?;
    if !out.success() {
        let said = std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default();
        return Err(fail(format!("qemu-storage-daemon for {host} did not start: {}", said.trim())));
    }
    tracing::info!(host = %host, %ip, port, "serving the host's volumes over NBD");
    Qmp::connect(&dir.join("qmp.sock")).map_err(|e| fail(e.to_string()))
}

/// Makes host `host`'s daemon export exactly `exports` (see `HostAgent::serve_volumes`).
pub fn serve(
    store: &Path,
    host: &HostId,
    ip: IpAddr,
    tls: &dyn Fn() -> Result<ServerTls, AgentError>,
    exports: &[Disk],
) -> Result<Option<SocketAddr>, AgentError> {
    let dir = dir(store, host);
    let cert_age = std::fs::metadata(dir.join("tls").join("server-cert.pem"))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok());
    if exports.is_empty() {
        if daemon_pid(&dir).is_some() {
            stop(&dir, host)?;
            tracing::info!(host = %host, "no volumes left to serve the host; its NBD server stopped");
        }
        let _ = std::fs::remove_dir_all(&dir);
        return Ok(None);
    }
    if daemon_pid(&dir).is_some() && cert_age.is_some_and(|age| age > ROTATE_AFTER) {
        tracing::info!(host = %host, "starting the host's NBD server again with a fresh certificate");
        stop(&dir, host)?;
    }
    let mut q = match daemon_pid(&dir) {
        // A daemon that lives but does not answer is never doubled: retried next pass.
        Some(pid) => Qmp::connect(&dir.join("qmp.sock"))
            .map_err(|e| fail(format!("the NBD server of {host} (pid {pid}) does not answer: {e}")))?,
        None => {
            private_dir(&store.join("nbd"))?;
            private_dir(&dir)?;
            start(&dir, host, ip, &tls()?)?
        }
    };
    let port = recorded_port(&dir).ok_or_else(|| fail(format!("the NBD server of {host} has no port recorded")))?;
    let qmp = |e: crate::qmp::QmpError| fail(format!("the NBD server of {host}: {e}"));
    let listed = q.execute("query-block-exports", None).map_err(qmp)?;
    // Each export's id (the volume), the node it serves, and whether it is closing (a
    // cut export stays listed until its clients are gone).
    let exported: Vec<(String, String, bool)> = listed
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let closing = e["shutting-down"].as_bool().unwrap_or(false);
            Some((e["id"].as_str()?.to_owned(), e["node-name"].as_str()?.to_owned(), closing))
        })
        .collect();
    let wanted: Vec<String> = exports.iter().map(|d| d.volume_id.to_string()).collect();
    // Each volume on its own: one that fails holds up no other, and the first failure
    // is returned once all were tried (so a launch waits for its disks).
    let mut first_error = None;
    // Taken away at once: a VM still on the host loses the disk there and then.
    for (id, _, _) in exported.iter().filter(|(id, _, closing)| !closing && !wanted.contains(id)) {
        match q.execute("block-export-del", Some(json!({ "id": id, "mode": "hard" }))) {
            Ok(_) => tracing::info!(host = %host, volume = %id, "stopped serving a volume to the host"),
            Err(e) => {
                first_error.get_or_insert(qmp(e));
            }
        }
    }
    // The nodes of volumes no longer served (now, or in an earlier pass that stopped
    // short); one still closing its export goes in a later pass.
    let nodes = q.execute("query-named-block-nodes", Some(json!({ "flat": true }))).map_err(qmp)?;
    for node in nodes.as_array().into_iter().flatten().filter_map(|n| n["node-name"].as_str()) {
        let volume = node.strip_prefix("vn").and_then(|n| n.split('.').next());
        if volume.is_some_and(|v| !wanted.iter().any(|w| volume_digits(w) == v)) {
            let _ = q.execute("blockdev-del", Some(json!({ "node-name": node })));
        }
    }
    for d in exports {
        let export = d.volume_id.to_string();
        let node = node_name(&export, &d.file);
        let found = exported.iter().find(|(id, _, _)| *id == export);
        if found.is_some_and(|(_, _, closing)| *closing) {
            first_error.get_or_insert(fail(format!("{export} is still being taken from {host}; retrying")));
            continue;
        }
        let serving = found.map(|(_, n, _)| n.as_str());
        if serving == Some(node.as_str()) {
            continue;
        }
        if let Err(e) = export_one(&mut q, store, host, d, &node, serving) {
            first_error.get_or_insert(e);
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(Some(SocketAddr::new(ip, port))),
    }
}

/// Serves `d` from its node `node`: a new export, or (when the export serves another
/// node of the volume, `serving`) the volume's new overlay, which the export follows.
fn export_one(
    q: &mut Qmp,
    store: &Path,
    host: &HostId,
    d: &Disk,
    node: &str,
    serving: Option<&str>,
) -> Result<(), AgentError> {
    let qmp = |e: crate::qmp::QmpError| fail(format!("the NBD server of {host}: {e}"));
    let export = d.volume_id.to_string();
    let file = d.file.under(store);
    let mut options = json!({
        "driver": "qcow2", "node-name": node, "discard": "unmap",
        "file": { "driver": "file", "filename": file.display().to_string() },
    });
    if serving.is_some() {
        // A new overlay: the node served now becomes its backing (below).
        options["backing"] = serde_json::Value::Null;
    }
    if let Err(e) = q.execute("blockdev-add", Some(options)) {
        // Left by an earlier pass that stopped before using it.
        if !e.to_string().contains("Duplicate") {
            return Err(qmp(e));
        }
    }
    match serving {
        // The volume went on to a new overlay (CreateImage, CreateSnapshot): the export
        // follows it at once, live, and the file it served is a layer from now on.
        Some(current) => {
            q.execute("blockdev-snapshot", Some(json!({ "node": current, "overlay": node }))).map_err(qmp)?;
            tracing::info!(host = %host, volume = %export, "the served volume went on to its new overlay");
        }
        None => {
            q.execute(
                "block-export-add",
                Some(json!({ "type": "nbd", "id": export, "node-name": node, "name": export, "writable": true })),
            )
            .map_err(qmp)?;
            tracing::info!(host = %host, volume = %export, "serving a volume to the host");
        }
    }
    Ok(())
}

/// A drive's options for a volume served over NBD (for `-drive` and `drive_add`):
/// the disk as the server exports it, reached through this host's relay to the server
/// (`Relays`), with TLS through `tls-creds` `creds` checking that the server's
/// certificate names its address, reconnecting for up to a minute when the server or
/// the relay restarts.
pub fn drive_options(served: &kiln_agent_api::Served, store: &Path, drive: &str, creds: &str) -> String {
    format!(
        "driver=raw,file.driver=nbd,file.server.type=unix,file.server.path={},file.export={},\
         file.tls-creds={creds},file.tls-hostname={},file.reconnect-delay=60,if=none,id={drive},cache=writeback,\
         discard=unmap",
        relay_path(store, served.addr).display(),
        served.export,
        served.addr.ip(),
    )
}

/// Where this host's relay to the volume server at `addr` listens.
pub fn relay_path(store: &Path, addr: SocketAddr) -> PathBuf {
    store.join("nbd").join(format!("{}-{}.sock", addr.ip(), addr.port()))
}

/// Relays from Unix sockets on this host to volume servers. A guest's QEMU runs in its
/// VPC's namespace, which has no way to the network between hosts (and must not have
/// one: its guests would follow); the relays run in the agent, in the host's namespace,
/// and carry the bytes as they are (TLS is between QEMU and the server). A relay is
/// made for each server the first time a VM needs it, and again when the agent starts
/// for the VMs already running (`LocalAgent::resume_relays`).
#[derive(Default)]
pub struct Relays(std::sync::Mutex<std::collections::HashSet<SocketAddr>>);

impl Relays {
    /// Makes sure the relay to `addr` listens; returns its socket.
    pub fn ensure(&self, store: &Path, addr: SocketAddr) -> Result<PathBuf, AgentError> {
        let path = relay_path(store, addr);
        let mut made = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if made.contains(&addr) {
            return Ok(path);
        }
        private_dir(&store.join("nbd"))?;
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path)
            .map_err(|e| fail(format!("listening on {} for the volume server {addr}: {e}", path.display())))?;
        std::thread::Builder::new()
            .name(format!("kiln-nbd-relay-{}", addr.port()))
            .spawn(move || {
                for conn in listener.incoming() {
                    match conn {
                        Ok(conn) => {
                            let _ = std::thread::Builder::new()
                                .name("kiln-nbd-conn".into())
                                .spawn(move || relay(conn, addr));
                        }
                        // Out of descriptors, say: not a busy loop.
                        Err(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
                    }
                }
            })
            .map_err(|e| fail(format!("starting the relay to {addr}: {e}")))?;
        made.insert(addr);
        Ok(path)
    }
}

/// Carries one connection both ways until either side closes.
fn relay(local: std::os::unix::net::UnixStream, addr: SocketAddr) {
    let remote = match std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(10)) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(%addr, error = %e, "the volume server does not answer");
            return;
        }
    };
    let _ = remote.set_nodelay(true);
    let (Ok(mut local_in), Ok(mut remote_out)) = (local.try_clone(), remote.try_clone()) else { return };
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut local_in, &mut remote_out);
        let _ = remote_out.shutdown(std::net::Shutdown::Write);
    });
    let (mut remote_in, mut local_out) = (remote, local);
    let _ = std::io::copy(&mut remote_in, &mut local_out);
    let _ = local_out.shutdown(std::net::Shutdown::Write);
    let _ = up.join();
}
