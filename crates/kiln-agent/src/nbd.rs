//! Serving the store's volumes to joined hosts: one `qemu-storage-daemon` per host,
//! exporting over NBD the files of the volumes of the instances placed on that host:
//! each volume's top file, writable, and the layers under it, read-only and sealed
//! (`sealing`; a former top is exported again so once its VM has gone on to its new
//! top). The files are exported as they are on disk; the host's QEMU reads the qcow2 in
//! them, and reads the frozen layers under a top from its own copies where it has them
//! (`layers`), so a boot reads its image locally while every write goes to the store (a
//! host that dies loses no volume, and another host can take the instance over).
//!
//! TLS with the hosts' CA: the daemon presents a certificate naming its address and
//! lets in only the certificate whose subject is its host (QEMU's authz on
//! `CN=<host ID>`), so no host reaches another's volumes. An export taken away is cut
//! at once (`hard`), which fences a VM left on a host its instance has moved from.
//!
//! QEMU's own NBD server is used because the guests' QEMU speaks NBD natively, with
//! TLS and reconnection (`reconnect-delay`). An NBD export does not grow, so a top is
//! made as long as its qcow2 can come to be before it is exported (a hole).
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

/// Makes host `host`'s daemon export exactly `exports`, keeping it up with nothing to
/// export if `keep` (see `HostAgent::serve_volumes`).
pub fn serve(
    store: &Path,
    host: &HostId,
    ip: IpAddr,
    tls: &dyn Fn() -> Result<ServerTls, AgentError>,
    exports: &[Disk],
    keep: bool,
) -> Result<Option<SocketAddr>, AgentError> {
    let dir = dir(store, host);
    let cert_age = std::fs::metadata(dir.join("tls").join("server-cert.pem"))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok());
    if exports.is_empty() && !(keep && daemon_pid(&dir).is_some()) {
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
    let qmp = |e: crate::qmp::QmpError| fail(format!("the NBD server of {host}: {e}"));
    // A daemon of an older Kiln exported decoded disks (qcow2 nodes), which the hosts'
    // QEMU of this one cannot read as files: it is started again (its VMs lose their
    // disks, as on any upgrade of the server with VMs on joined hosts: restart them).
    let nodes = q.execute("query-named-block-nodes", Some(json!({ "flat": true }))).map_err(qmp)?;
    let older = nodes
        .as_array()
        .into_iter()
        .flatten()
        .any(|n| n["node-name"].as_str().is_some_and(|name| name.starts_with("vn")) && n["drv"] == "qcow2");
    if older {
        tracing::warn!(host = %host, "the host's NBD server exports disks as an older Kiln did; starting it again");
        drop(q);
        stop(&dir, host)?;
        q = start(&dir, host, ip, &tls()?)?;
    }
    let port = recorded_port(&dir).ok_or_else(|| fail(format!("the NBD server of {host} has no port recorded")))?;
    let listed = q.execute("query-block-exports", None).map_err(qmp)?;
    // Each export's name (its node's too), and whether it is closing (a cut export
    // stays listed until its clients are gone).
    let exported: Vec<(String, bool)> = listed
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| Some((e["id"].as_str()?.to_owned(), e["shutting-down"].as_bool().unwrap_or(false))))
        .collect();
    let wanted = wanted_files(exports);
    // Each file on its own: one that fails holds up no other, and the first failure
    // is returned once all were tried (so a launch waits for its disks).
    let mut first_error = None;
    // Taken away at once: a VM still on the host loses the disk there and then.
    for (id, _) in exported.iter().filter(|(id, closing)| !closing && !wanted.iter().any(|w| w.name == *id)) {
        match q.execute("block-export-del", Some(json!({ "id": id, "mode": "hard" }))) {
            Ok(_) => tracing::info!(host = %host, export = %id, "stopped serving a volume's file to the host"),
            Err(e) => {
                first_error.get_or_insert(qmp(e));
            }
        }
    }
    // The nodes of files no longer served (now, or in an earlier pass that stopped
    // short); one still closing its export goes in a later pass.
    let nodes = q.execute("query-named-block-nodes", Some(json!({ "flat": true }))).map_err(qmp)?;
    let mut writable_nodes = Vec::new();
    for node in nodes.as_array().into_iter().flatten() {
        let Some(name) = node["node-name"].as_str() else { continue };
        if name.starts_with("vn") && !wanted.iter().any(|w| w.name == name) {
            let _ = q.execute("blockdev-del", Some(json!({ "node-name": name })));
        } else if node["ro"] == false {
            writable_nodes.push(name.to_owned());
        }
    }
    for w in &wanted {
        let done = match exported.iter().find(|(id, _)| *id == w.name) {
            Some((_, true)) => Err(fail(format!("{} is still being taken from {host}; retrying", w.name))),
            // A former top its VM no longer writes (its snapshot is made): exported
            // again read-only, sealed. The VM's QEMU opened it read-only when it went on
            // to its new top, and reconnects.
            Some((_, false)) if !w.writable && !w.settling && writable_nodes.contains(&w.name) => {
                reexport_read_only(&mut q, store, host, w)
            }
            Some((_, false)) => Ok(()),
            None => export_one(&mut q, store, host, w),
        };
        if let Err(e) = done {
            first_error.get_or_insert(e);
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(Some(SocketAddr::new(ip, port))),
    }
}

/// One file a daemon exports: its name (`export_name`), whether the host may write
/// it (a volume's top; the layers under it are read-only, sealed), whether it is a
/// layer its VM may still be writing (`Disk::settling`: left as it is), and the layer
/// the store says is under it.
struct Wanted<'a> {
    name: String,
    file: &'a kiln_agent_api::StorePath,
    writable: bool,
    settling: bool,
    backing: Option<&'a kiln_agent_api::StorePath>,
}

/// Every file of `exports`: each volume's top, writable, and the layers under it.
fn wanted_files(exports: &[Disk]) -> Vec<Wanted<'_>> {
    let mut wanted: Vec<Wanted<'_>> = Vec::new();
    for d in exports {
        let top = (&d.file, true, d.below.first());
        let layers = d.below.iter().enumerate().map(|(n, b)| (b, false, d.below.get(n + 1)));
        for (file, writable, backing) in std::iter::once(top).chain(layers) {
            let name = kiln_agent_api::export_name(&d.volume_id, file);
            if !wanted.iter().any(|w| w.name == name) {
                let settling = !writable && d.settling.as_ref() == Some(file);
                wanted.push(Wanted { name, file, writable, settling, backing });
            }
        }
    }
    wanted
}

/// Exports `w`, a former top, again, read-only and sealed: its export is cut (its
/// client reconnects), its node goes, the file is sealed, and it is exported anew.
fn reexport_read_only(q: &mut Qmp, store: &Path, host: &HostId, w: &Wanted<'_>) -> Result<(), AgentError> {
    let qmp = |e: crate::qmp::QmpError| fail(format!("the NBD server of {host}: {e}"));
    q.execute("block-export-del", Some(json!({ "id": w.name, "mode": "hard" }))).map_err(qmp)?;
    for _ in 0..50 {
        let listed = q.execute("query-block-exports", None).map_err(qmp)?;
        if !listed.as_array().into_iter().flatten().any(|e| e["id"] == w.name.as_str()) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    q.execute("blockdev-del", Some(json!({ "node-name": w.name }))).map_err(qmp)?;
    export_one(q, store, host, w)?;
    tracing::info!(host = %host, file = %w.file, "a former top is served read-only now, sealed");
    Ok(())
}

/// Exports one file as it is on disk (a raw file node: the host's QEMU reads the
/// qcow2 in it, and reads the layers under it from its own copies where it has them).
/// A top is first made long enough for everything its qcow2 can come to hold, as an
/// NBD export does not grow (the extra length is a hole in the file).
fn export_one(q: &mut Qmp, store: &Path, host: &HostId, w: &Wanted<'_>) -> Result<(), AgentError> {
    let qmp = |e: crate::qmp::QmpError| fail(format!("the NBD server of {host}: {e}"));
    let file = w.file.under(store);
    // A layer its VM may still be writing is served as it was, writable.
    let writable = w.writable || w.settling;
    // Whatever a host wrote into the header while it was served, the store's now.
    crate::sealing::seal(&file, w.backing.map(|b| b.under(store)).as_deref(), !writable)?;
    if writable {
        make_room(&file)?;
    }
    let options = json!({
        "driver": "file", "node-name": w.name, "filename": file.display().to_string(),
        "read-only": !writable, "discard": "unmap",
    });
    if let Err(e) = q.execute("blockdev-add", Some(options)) {
        // Left by an earlier pass that stopped before using it.
        if !e.to_string().contains("Duplicate") {
            return Err(qmp(e));
        }
    }
    q.execute(
        "block-export-add",
        Some(json!({ "type": "nbd", "id": w.name, "node-name": w.name, "name": w.name, "writable": writable })),
    )
    .map_err(qmp)?;
    tracing::info!(host = %host, file = %w.file, writable, "serving a volume's file to the host");
    Ok(())
}

/// How long a qcow2 file of `virtual_size` bytes can grow to: its data, an L2 entry
/// (8 bytes) and a refcount (2 bytes) per 64 KiB cluster with room to spare, and
/// 16 MiB for its header, L1 and refcount tables.
pub(crate) fn room_for(virtual_size: u64) -> Option<u64> {
    virtual_size.checked_add(virtual_size / 1024)?.checked_add(16 << 20)
}

/// The largest volume EBS makes (io2 Block Express: 64 TiB), with its qcow2's room.
const LARGEST_ROOM: u64 = (64 << 40) + (64 << 30);

/// The disk size a top's export has room for at least, so that a volume grown while
/// its VM runs (ModifyVolume: `block_resize` on the host's qcow2, which allocates at
/// its end) keeps room for what its guest writes: 8 TiB, within every file system's
/// largest file (ext4's is 16 TiB). It costs nothing, being a hole.
const GROWTH_ROOM: u64 = 8 << 40;

/// Makes the qcow2 `file` as long as it can come to be (`room_for` its virtual size,
/// read from its header, or `GROWTH_ROOM` if larger), with a hole: never shorter than
/// it is.
fn make_room(file: &Path) -> Result<(), AgentError> {
    use std::io::Read as _;
    let err = |e: std::io::Error| fail(format!("making room in {}: {e}", file.display()));
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(file).map_err(err)?;
    let mut header = [0u8; 32];
    f.read_exact(&mut header).map_err(err)?;
    if header[..4] != *b"QFI\xfb" {
        return Err(fail(format!("{} is not a qcow2 file", file.display())));
    }
    let virtual_size = u64::from_be_bytes(header[24..32].try_into().expect("8 bytes"));
    // The header is the host's to write while it serves the file: never trusted.
    let want = room_for(virtual_size).filter(|w| *w <= LARGEST_ROOM).ok_or_else(|| {
        fail(format!("{} says its disk is {virtual_size} bytes, more than any volume can be", file.display()))
    })?;
    let want = want.max(room_for(GROWTH_ROOM).expect("no overflow"));
    if f.metadata().map_err(err)?.len() < want {
        f.set_len(want).map_err(err)?;
    }
    Ok(())
}

/// The NBD client options of one of a served volume's files (as JSON for
/// `blockdev-add` and `-blockdev`): reached through this host's relay to the server
/// (`Relays`), with TLS through `tls-creds` `creds` checking that the server's
/// certificate names its address, reconnecting for up to a minute when the server or
/// the relay restarts.
fn nbd_file(
    disk: &Disk,
    served: &kiln_agent_api::Served,
    file: &kiln_agent_api::StorePath,
    store: &Path,
    creds: &str,
) -> serde_json::Value {
    json!({
        "driver": "nbd",
        "server": { "type": "unix", "path": relay_path(store, served.addr).display().to_string() },
        "export": kiln_agent_api::export_name(&disk.volume_id, file), "tls-creds": creds,
        "tls-hostname": served.addr.ip().to_string(), "reconnect-delay": 60,
    })
}

/// The nodes of the layers under a served volume's top, to be added (`-blockdev`,
/// `blockdev-add`) in the order given, and the node the top goes on: each layer from
/// this host's own copy where it has one and copies of all under it (whose file then
/// names the rest of the chain, this host's copies), else from the server. Each node is named after its file's
/// export (`c` in place of `v` for a copy), so a volume's nodes are its own.
pub fn layer_nodes(
    disk: &Disk,
    served: &kiln_agent_api::Served,
    store: &Path,
    creds: &str,
) -> (Vec<serde_json::Value>, Option<String>) {
    let mut nodes = Vec::new();
    // A copy is used only when every layer under it has one too (its file names them).
    let copies_from =
        (0..disk.below.len()).find(|&k| disk.below[k..].iter().all(|b| b.under(store).is_file())).unwrap_or(usize::MAX);
    for (n, layer) in disk.below.iter().enumerate() {
        let export = kiln_agent_api::export_name(&disk.volume_id, layer);
        let own = layer.under(store);
        if n >= copies_from {
            let name = format!("c{}", &export[1..]);
            nodes.push(json!({
                "driver": "qcow2", "node-name": name, "read-only": true,
                "file": { "driver": "file", "filename": own.display().to_string(), "read-only": true },
            }));
            break;
        }
        nodes.push(json!({
            "driver": "qcow2", "node-name": export, "read-only": true,
            "file": nbd_file(disk, served, layer, store, creds),
        }));
    }
    // Each on the next (the last, the base or a copy, on what its file names).
    let names: Vec<String> = nodes.iter().map(|n| n["node-name"].as_str().unwrap_or_default().to_owned()).collect();
    for (n, node) in nodes.iter_mut().enumerate() {
        if node["file"]["driver"] == "nbd" {
            node["backing"] = names.get(n + 1).map_or(serde_json::Value::Null, |b| json!(b));
        }
    }
    let top_on = names.first().cloned();
    nodes.reverse();
    (nodes, top_on)
}

/// A served volume's drive options (for `-drive` and `drive_add`): the qcow2 of its
/// top, exported by the server, on `backing` (from `layer_nodes`; none: a volume with
/// nothing under it).
pub fn drive_options(
    disk: &Disk,
    served: &kiln_agent_api::Served,
    store: &Path,
    drive: &str,
    creds: &str,
    backing: Option<&str>,
) -> String {
    let on = backing.map(|b| format!("backing={b},")).unwrap_or_default();
    format!(
        "driver=qcow2,file.driver=nbd,file.server.type=unix,file.server.path={},file.export={},\
         file.tls-creds={creds},file.tls-hostname={},file.reconnect-delay=60,{on}if=none,id={drive},\
         cache=writeback,discard=unmap",
        relay_path(store, served.addr).display(),
        kiln_agent_api::export_name(&disk.volume_id, &disk.file),
        served.addr.ip(),
    )
}

/// The `blockdev-add` options of a served volume's new top (`disk.file`), with no
/// backing yet: `blockdev-snapshot` puts the disk's current chain under it. Its node is
/// named after its export.
pub fn top_node(disk: &Disk, served: &kiln_agent_api::Served, store: &Path, creds: &str) -> serde_json::Value {
    json!({
        "driver": "qcow2", "node-name": kiln_agent_api::export_name(&disk.volume_id, &disk.file),
        "backing": null, "discard": "unmap", "file": nbd_file(disk, served, &disk.file, store, creds),
    })
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
    // A server gone without a word (its machine died, the network between cut) is
    // found within about a minute, and the VM's QEMU reconnects.
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(std::time::Duration::from_secs(30))
        .with_interval(std::time::Duration::from_secs(10))
        .with_retries(3);
    let _ = socket2::SockRef::from(&remote).set_tcp_keepalive(&keepalive);
    let (Ok(mut local_in), Ok(mut remote_out)) = (local.try_clone(), remote.try_clone()) else { return };
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut local_in, &mut remote_out);
        let _ = remote_out.shutdown(std::net::Shutdown::Write);
    });
    let (mut remote_in, mut local_out) = (remote, local);
    let mut buf = vec![0u8; 256 << 10];
    loop {
        // QEMU 7.2's NBD server leaves Nagle's algorithm on: each of its small writes
        // after the first waits for the ACK of the one before, which the kernel delays
        // by up to 40 ms. Acknowledged at once, a reply's parts follow each other
        // without that wait (opening a qcow2 over NBD took half a second without it).
        let _ = socket2::SockRef::from(&remote_in).set_tcp_quickack(true);
        let n = match std::io::Read::read(&mut remote_in, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if local_out.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = local_out.shutdown(std::net::Shutdown::Write);
    let _ = up.join();
}
