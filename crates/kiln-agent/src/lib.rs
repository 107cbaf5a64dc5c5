//! Kiln's host agent: runs each instance as a QEMU process controlled over QMP, makes
//! qcow2 volumes, and probes whether KVM can really run a guest. VMs are daemonized
//! and supervised, not owned: each has a directory under `instances/` (`spec.json`,
//! `qemu.pid`, `qmp.sock`, `serial.log`) that a restarted agent finds again. Files the
//! control plane names (`StorePath`) are resolved under the agent's data directory.

pub mod layers;
mod nbd;
pub mod net;
mod netlink;
mod probe;
pub mod qemu;
mod qmp;
pub mod sealing;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kiln_agent_api::{
    Accel, AgentError, Disk, GuestPorts, HostAgent, HostInfo, Network, Nic, StorePath, VmSpec, VpcNetwork,
};
use kiln_types::{Architecture, VolumeId};
use serde_json::json;

pub use probe::probe_kvm;

/// The agent for the machine it runs on.
pub struct LocalAgent {
    /// The data directory: the store `StorePath`s name files in.
    store: PathBuf,
    /// Where each VM has its directory (`store/instances`).
    root: PathBuf,
    /// The program QEMU runs to bridge a guest's metadata connection (`kiln pipe`).
    pipe_program: PathBuf,
    accel: OnceLock<Accel>,
    forced: Option<Accel>,
    cpus: u32,
    memory_mib: u64,
    network: Option<net::NetConfig>,
    tuning: qemu::Tuning,
    /// `qemu-system-x86_64 --version`, probed once (the first `info`).
    qemu_version: OnceLock<String>,
    /// Where layers this host lacks come from (a joined host: the control plane's
    /// store); None on the control plane's own host, whose store has them all.
    layer_source: Option<std::sync::Arc<dyn kiln_agent_api::LayerSource>>,
    /// Layer fetches under way.
    fetches: layers::Fetches,
    /// How many bytes of copies of layers a joined host keeps that no VM uses.
    layer_room: u64,
    /// Relays to the volume servers this host's VMs use.
    relays: nbd::Relays,
}

fn fail(msg: impl Into<String>) -> AgentError {
    AgentError::Failed(msg.into())
}

/// How many bytes of copies of layers a joined host keeps by default, beyond those
/// its VMs use (`kiln agent --layer-cache-gib`).
pub const DEFAULT_LAYER_ROOM: u64 = 20 << 30;

/// The copies of the store's files a VM started from `spec` uses: its kernel and
/// initrd, and the layers under its served disks.
fn copies_used(spec: &VmSpec) -> impl Iterator<Item = &StorePath> {
    spec.kernel
        .iter()
        .chain(&spec.initrd)
        .chain(spec.disks.iter().filter(|d| d.served.is_some()).flat_map(|d| &d.below))
}

/// VmRSS of a process, MiB.
pub fn process_resident_mib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// MemAvailable of the host, MiB: what it can still give without swapping.
pub fn host_available_mib() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

fn host_memory_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map(|kib| kib / 1024)
        .unwrap_or(0)
}

impl LocalAgent {
    /// An agent whose store is the data directory `store` (VMs under
    /// `store/instances`), running `pipe_program` for metadata bridges. `accel` forces
    /// an accelerator; otherwise the first x86 launch probes KVM with that guest's kernel.
    pub fn new(store: PathBuf, pipe_program: PathBuf, accel: Option<Accel>) -> Self {
        let cpus = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1);
        Self {
            root: store.join("instances"),
            store,
            pipe_program,
            accel: OnceLock::new(),
            forced: accel,
            cpus,
            memory_mib: host_memory_mib(),
            network: None,
            tuning: qemu::Tuning::default(),
            qemu_version: OnceLock::new(),
            layer_source: None,
            fetches: layers::Fetches::default(),
            layer_room: DEFAULT_LAYER_ROOM,
            relays: nbd::Relays::default(),
        }
    }

    /// Fetches the layers this host lacks from `source`.
    pub fn with_layer_source(mut self, source: std::sync::Arc<dyn kiln_agent_api::LayerSource>) -> Self {
        self.layer_source = Some(source);
        self
    }

    /// Keeps at most `bytes` of copies of layers (those in use aside) instead of
    /// `DEFAULT_LAYER_ROOM`.
    pub fn with_layer_room(mut self, bytes: u64) -> Self {
        self.layer_room = bytes;
        self
    }

    /// Starts VMs with `tuning` instead of the default (the translation cache size and
    /// the free-page-reporting balloon).
    pub fn with_tuning(mut self, tuning: qemu::Tuning) -> Self {
        self.tuning = tuning;
        self
    }

    /// The resident memory of each running VM's QEMU, MiB, by instance id: what the
    /// host really gives each instance.
    pub fn vm_resident_mib(&self) -> Vec<(String, u64)> {
        let Ok(dirs) = std::fs::read_dir(&self.root) else { return Vec::new() };
        let mut out: Vec<(String, u64)> = dirs
            .filter_map(std::result::Result::ok)
            .filter_map(|e| {
                let id = e.file_name().to_string_lossy().into_owned();
                let pid = self.pid(&id)?;
                Some((id, process_resident_mib(pid)?))
            })
            .collect();
        out.sort();
        out
    }

    /// What the host has in use now: its VMs, their resident memory and MemAvailable.
    pub fn usage(&self) -> kiln_agent_api::HostUsage {
        let vms = self.vm_resident_mib();
        kiln_agent_api::HostUsage {
            vms: vms.len() as u32,
            vm_resident_mib: vms.iter().map(|(_, mib)| mib).sum(),
            memory_available_mib: host_available_mib().unwrap_or(0),
        }
    }

    /// Gives guests VPC networking (namespaces, taps, nftables) instead of QEMU's
    /// user-mode network.
    /// Listens again on the relays to volume servers an earlier agent made (their
    /// sockets name the servers), so that the VMs it left running reconnect.
    pub fn resume_relays(&self) {
        let Ok(entries) = std::fs::read_dir(self.store.join("nbd")) else { return };
        for name in entries.filter_map(Result::ok).filter_map(|e| e.file_name().into_string().ok()) {
            let Some((ip, port)) = name.strip_suffix(".sock").and_then(|n| n.rsplit_once('-')) else { continue };
            if let (Ok(ip), Ok(port)) = (ip.parse::<std::net::IpAddr>(), port.parse::<u16>()) {
                if let Err(e) = self.relays.ensure(&self.store, std::net::SocketAddr::new(ip, port)) {
                    tracing::warn!(error = %e, "cannot relay to a volume server again");
                }
            }
        }
    }

    pub fn with_network(mut self, config: net::NetConfig) -> Self {
        self.network = Some(config);
        self
    }

    fn net(&self) -> Result<&net::NetConfig, AgentError> {
        self.network.as_ref().ok_or_else(|| {
            AgentError::Unsupported("this host runs guests on QEMU's user-mode network, not VPC networking".into())
        })
    }

    fn file(&self, f: &StorePath) -> PathBuf {
        f.under(&self.store)
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    fn accel_for(&self, spec: &VmSpec) -> Accel {
        if let Some(a) = self.forced {
            return a;
        }
        // KVM only runs guests of the host's own architecture.
        if spec.architecture == Architecture::Arm64 {
            return Accel::Tcg;
        }
        *self.accel.get_or_init(|| match &spec.kernel {
            Some(k) => probe_kvm(&self.file(k), &self.root),
            None => Accel::Tcg,
        })
    }

    /// Whether the accelerator is known: forced, or probed already.
    pub fn accel_settled(&self) -> bool {
        self.forced.is_some() || self.accel.get().is_some()
    }

    /// Settles the accelerator ahead of the first launch by probing KVM with `kernel`
    /// (an x86 guest kernel), so that no launch waits for the probe. A no-op when the
    /// accelerator is forced or already known.
    pub fn probe_with(&self, kernel: &Path) -> Accel {
        if let Some(a) = self.forced {
            return a;
        }
        *self.accel.get_or_init(|| probe_kvm(kernel, &self.root))
    }

    /// On a joined host, marks the copies `spec` uses as used now and removes the least
    /// recently used of those no VM uses beyond the room they have (`with_layer_room`).
    fn make_room_for(&self, spec: &VmSpec) {
        layers::touch(&self.store, copies_used(spec));
        let mut in_use: std::collections::HashSet<PathBuf> = copies_used(spec).map(|f| f.under(&self.store)).collect();
        for id in self.running().unwrap_or_default() {
            let Ok(text) = std::fs::read(self.dir(&id).join("spec.json")) else { continue };
            if let Ok(other) = serde_json::from_slice::<VmSpec>(&text) {
                in_use.extend(copies_used(&other).map(|f| f.under(&self.store)));
            }
        }
        let removed = layers::collect(&self.store, &in_use, self.layer_room);
        if removed > 0 {
            tracing::info!(bytes = removed, room = self.layer_room, "removed layer copies no VM uses");
        }
    }

    fn pid(&self, id: &str) -> Option<i32> {
        let text = std::fs::read_to_string(self.dir(id).join("qemu.pid")).ok()?;
        let pid: i32 = text.trim().parse().ok()?;
        // The pid must still be this VM's QEMU, not a reused number.
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let marker = format!("kiln-{id}");
        cmdline.split(|b| *b == 0).any(|arg| arg == marker.as_bytes()).then_some(pid)
    }

    fn qmp(&self, id: &str) -> Result<qmp::Qmp, AgentError> {
        qmp::Qmp::connect(&self.dir(id).join("qmp.sock")).map_err(|e| fail(e.to_string()))
    }
}

impl LocalAgent {
    /// This host's capacity, which it always knows (`HostAgent::info`).
    pub fn host_info(&self) -> HostInfo {
        let qemu_version = self
            .qemu_version
            .get_or_init(|| {
                Command::new("qemu-system-x86_64")
                    .arg("--version")
                    .output()
                    .ok()
                    .and_then(|o| String::from_utf8(o.stdout).ok())
                    .and_then(|s| s.lines().next().map(str::to_owned))
                    .unwrap_or_else(|| "not installed".into())
            })
            .clone();
        HostInfo {
            accel: self.forced.or_else(|| self.accel.get().copied()).unwrap_or(Accel::Tcg),
            cpus: self.cpus,
            memory_mib: self.memory_mib,
            qemu_version,
        }
    }

    /// Whether this host gives guests VPC networking (`HostAgent::vpc_networking`).
    pub fn has_vpc_networking(&self) -> bool {
        self.network.is_some()
    }
}

impl HostAgent for LocalAgent {
    fn info(&self) -> Result<HostInfo, AgentError> {
        Ok(self.host_info())
    }

    fn create_volume(&self, file: &StorePath, backing: Option<&StorePath>, size_gib: u64) -> Result<(), AgentError> {
        let path = self.file(file);
        let backing = backing.map(|b| self.file(b));
        if path.exists() {
            return Ok(());
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| fail(format!("creating {}: {e}", parent.display())))?;
        }
        // Made under a temporary name and renamed: a file at `path` is always whole, so
        // a control plane resuming after a crash can trust that it exists.
        let partial = path.with_extension("partial");
        let mut cmd = Command::new("qemu-img");
        cmd.args(["create", "-q", "-f", "qcow2"]);
        if let Some(b) = &backing {
            cmd.args(["-F", "qcow2", "-b"]).arg(b);
        }
        cmd.arg(&partial).arg(format!("{size_gib}G"));
        qemu_img(&mut cmd, &partial, &format!("qemu-img create {}", path.display()))?;
        std::fs::rename(&partial, &path).map_err(|e| fail(format!("moving {} into place: {e}", path.display())))?;
        if let Some(b) = &backing {
            seal(b);
        }
        Ok(())
    }

    fn fetch_layers(&self, layers: &[kiln_agent_api::Layer]) -> Result<kiln_agent_api::LayersReady, AgentError> {
        // Asked for now: the last to go when copies must make room.
        layers::touch(&self.store, layers.iter().map(|l| &l.file));
        self.fetches.ensure(&self.store, self.layer_source.as_ref(), layers)
    }

    fn delete_volume(&self, file: &StorePath) -> Result<(), AgentError> {
        let path = self.file(file);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(fail(format!("removing {}: {e}", path.display()))),
        }
    }

    fn volume_exists(&self, file: &StorePath) -> Result<bool, AgentError> {
        let path = self.file(file);
        path.try_exists().map_err(|e| fail(format!("looking for {}: {e}", path.display())))
    }

    fn start(&self, spec: &VmSpec) -> Result<(), AgentError> {
        if self.pid(&spec.instance_id).is_some() {
            return Ok(());
        }
        let dir = self.dir(&spec.instance_id);
        std::fs::create_dir_all(&dir).map_err(|e| fail(format!("creating {}: {e}", dir.display())))?;
        let spec_json = serde_json::to_vec_pretty(spec).map_err(|e| fail(e.to_string()))?;
        std::fs::write(dir.join("spec.json"), spec_json).map_err(|e| fail(format!("writing the launch spec: {e}")))?;
        for stale in ["qmp.sock", "qemu.pid"] {
            let _ = std::fs::remove_file(dir.join(stale));
        }
        for served in spec.disks.iter().filter_map(|d| d.served.as_ref()) {
            self.relays.ensure(&self.store, served.addr)?;
        }
        if self.layer_source.is_some() {
            self.make_room_for(spec);
        }
        let accel = self.accel_for(spec);
        let program = qemu::program(spec.architecture);
        let nbd_tls = self.store.join(kiln_agent_api::NBD_CLIENT_TLS_DIR);
        let place = qemu::Place {
            vm_dir: &dir,
            store: &self.store,
            pipe_program: &self.pipe_program,
            nbd_tls: nbd_tls.is_dir().then_some(nbd_tls.as_path()),
        };
        let args = qemu::arguments(spec, accel, &place, &self.tuning);
        tracing::info!(instance = %spec.instance_id, %program, accel = accel.as_str(), "starting QEMU");
        // With -daemonize, QEMU returns once the VM is set up, or fails with its reason.
        // A guest on a VPC runs in its VPC's namespace, where its tap is.
        let mut cmd = match &spec.network {
            Network::Vpc { vpc_id, .. } => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &self.net()?.netns(vpc_id), program]);
                c
            }
            _ => Command::new(program),
        };
        let began = Instant::now();
        let out = cmd
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| fail(format!("cannot run {program} (install qemu-system): {e}")))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(fail(format!("QEMU failed to start: {}", stderr.trim())));
        }
        tracing::info!(instance = %spec.instance_id, took = ?began.elapsed(), "QEMU started");
        Ok(())
    }

    fn is_running(&self, instance_id: &str) -> Result<bool, AgentError> {
        Ok(self.pid(instance_id).is_some())
    }

    fn powerdown(&self, instance_id: &str) -> Result<(), AgentError> {
        self.qmp(instance_id)?.execute("system_powerdown", None).map(|_| ()).map_err(|e| fail(e.to_string()))
    }

    fn reset(&self, instance_id: &str) -> Result<(), AgentError> {
        self.qmp(instance_id)?.execute("system_reset", None).map(|_| ()).map_err(|e| fail(e.to_string()))
    }

    fn kill(&self, instance_id: &str) -> Result<(), AgentError> {
        let Some(pid) = self.pid(instance_id) else { return Ok(()) };
        if let Ok(mut q) = self.qmp(instance_id) {
            let _ = q.execute("quit", None);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.pid(instance_id).is_some() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if self.pid(instance_id).is_some() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            std::thread::sleep(Duration::from_millis(200));
        }
        if self.pid(instance_id).is_some() {
            return Err(fail(format!("QEMU of {instance_id} (pid {pid}) would not stop")));
        }
        Ok(())
    }

    fn live_snapshot(&self, instance_id: &str, switches: &[(StorePath, StorePath)]) -> Result<(), AgentError> {
        let mut qmp = self.qmp(instance_id)?;
        // Idempotent: after a crash the control plane asks again, and a disk may
        // already be on its overlay (QEMU finished the command on its own).
        let blocks = qmp.execute("query-block", None).map_err(|e| fail(e.to_string()))?;
        let on = |file: &Path| {
            blocks
                .as_array()
                .into_iter()
                .flatten()
                .find(|b| b["inserted"]["file"].as_str().map(Path::new) == Some(file))
        };
        let mut actions = Vec::new();
        let mut frozen = Vec::new();
        for (current, overlay) in switches {
            let (current, overlay) = (self.file(current), self.file(overlay));
            if on(&overlay).is_some() {
                // Switched by an earlier call that may have stopped short of this.
                make_layer(&current);
                continue;
            }
            let device = on(&current)
                .and_then(|b| b["device"].as_str())
                .map(str::to_owned)
                .ok_or_else(|| AgentError::NotFound(format!("{instance_id} has no disk on {}", current.display())))?;
            // An overlay the disk is not on is left from an attempt that failed:
            // nothing has written to it.
            let _ = std::fs::remove_file(&overlay);
            actions.push(json!({
                "type": "blockdev-snapshot-sync",
                "data": {
                    "device": device,
                    "snapshot-file": overlay.display().to_string(),
                    "format": "qcow2",
                    "mode": "absolute-paths",
                },
            }));
            frozen.push((current, overlay));
        }
        if actions.is_empty() {
            return Ok(());
        }
        // All or none: QEMU pauses the guest's I/O for the switch of every disk at once.
        let done = qmp
            .execute("transaction", Some(json!({ "actions": actions })))
            .map(|_| ())
            .map_err(|e| fail(e.to_string()));
        for (current, overlay) in &frozen {
            match done {
                Ok(()) => make_layer(current),
                Err(_) => {
                    let _ = std::fs::remove_file(overlay);
                }
            }
        }
        done
    }

    fn seal(&self, file: &StorePath, backing: Option<&StorePath>, frozen: bool) -> Result<(), AgentError> {
        sealing::seal(&self.file(file), backing.map(|b| self.file(b)).as_deref(), frozen)
    }

    fn switch_served(&self, instance_id: &str, disks: &[Disk]) -> Result<(), AgentError> {
        let q = |e: qmp::QmpError| fail(e.to_string());
        let mut qmp = self.qmp(instance_id)?;
        let blocks = qmp.execute("query-block", None).map_err(q)?;
        let mut actions = Vec::new();
        for disk in disks {
            let Some(served) = &disk.served else {
                return Err(AgentError::Refused(format!("{} is not served to this host", disk.volume_id)));
            };
            let (drive, _) = qemu::disk_ids(&disk.volume_id);
            let top = kiln_agent_api::export_name(&disk.volume_id, &disk.file);
            let inserted = blocks
                .as_array()
                .into_iter()
                .flatten()
                .find(|b| b["device"].as_str() == Some(drive.as_str()))
                .map(|b| &b["inserted"])
                .ok_or_else(|| AgentError::NotFound(format!("{instance_id} has no disk {}", disk.volume_id)))?;
            // Idempotent: on it already (switched by an earlier call, or started on it).
            if on_file(inserted, &disk.file.under(&self.store), &top) {
                continue;
            }
            self.relays.ensure(&self.store, served.addr)?;
            let node = nbd::top_node(disk, served, &self.store, qemu::NBD_CREDS);
            if let Err(e) = qmp.execute("blockdev-add", Some(node)) {
                // Left by an earlier call that stopped before the switch.
                if !e.to_string().contains("Duplicate") {
                    return Err(q(e));
                }
            }
            actions.push(json!({ "type": "blockdev-snapshot", "data": { "node": drive, "overlay": top } }));
        }
        if actions.is_empty() {
            return Ok(());
        }
        // All or none: QEMU pauses the guest's I/O for the switch of every disk at once.
        qmp.execute("transaction", Some(json!({ "actions": actions }))).map(|_| ()).map_err(q)
    }

    fn drives_on(&self, instance_id: &str, disks: &[Disk]) -> Result<Vec<bool>, AgentError> {
        if self.pid(instance_id).is_none() {
            return Err(AgentError::NotFound(format!("{instance_id} does not run here")));
        }
        let mut qmp = self.qmp(instance_id)?;
        let blocks = qmp.execute("query-block", None).map_err(|e| fail(e.to_string()))?;
        Ok(disks
            .iter()
            .map(|d| {
                let (path, top) = (d.file.under(&self.store), kiln_agent_api::export_name(&d.volume_id, &d.file));
                blocks.as_array().into_iter().flatten().any(|b| on_file(&b["inserted"], &path, &top))
            })
            .collect())
    }

    fn set_disks(&self, instance_id: &str, disks: &[Disk], force: &[VolumeId]) -> Result<bool, AgentError> {
        let q = |e: qmp::QmpError| fail(e.to_string());
        let mut qmp = self.qmp(instance_id)?;
        let blocks = qmp.execute("query-block", None).map_err(q)?;
        // Drives named after volumes (`v` + hex); disks of a VM started by an older
        // Kiln (`disk0`, …) are left alone.
        let present: Vec<String> = blocks
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|b| b["device"].as_str())
            .filter(|d| d.starts_with('v') && d.len() > 1 && d[1..].bytes().all(|c| c.is_ascii_hexdigit()))
            .map(str::to_owned)
            .collect();
        // The guest's devices (`b` + hex): a drive may lack its device (a crash between
        // drive_add and device_add), and a device may outlive its drive (pulled).
        let devices = peripherals(&mut qmp)?;
        let wanted: Vec<(String, String, &Disk)> = disks
            .iter()
            .map(|d| {
                let (drive, device) = qemu::disk_ids(&d.volume_id);
                (drive, device, d)
            })
            .collect();
        let forced: Vec<String> = force.iter().map(|v| qemu::disk_ids(v).0).collect();
        let hmp = |qmp: &mut qmp::Qmp, line: String| {
            qmp.execute("human-monitor-command", Some(json!({ "command-line": line }))).map_err(q).and_then(|out| {
                let text = out.as_str().unwrap_or_default().trim().to_owned();
                if text.is_empty() || text.contains("OK") {
                    Ok(())
                } else {
                    Err(fail(text))
                }
            })
        };
        let mut settled = true;
        for drive in present.iter().filter(|p| !wanted.iter().any(|w| &w.0 == *p)) {
            let device = format!("b{}", &drive[1..]);
            if forced.contains(drive) || !devices.contains(&device) {
                // Pulled at once: QEMU closes the file and the guest's I/O on the disk
                // fails. A drive without its device goes the same way.
                tracing::info!(instance = %instance_id, %drive, "pulling a disk");
                hmp(&mut qmp, format!("drive_del {drive}"))?;
                if devices.contains(&device) {
                    let _ = qmp.execute("device_del", Some(json!({ "id": device })));
                }
            } else {
                // The guest is asked to let go (ACPI eject); the drive goes with the device.
                tracing::info!(instance = %instance_id, %drive, "removing a disk");
                let _ = qmp.execute("device_del", Some(json!({ "id": device })));
                settled = false;
            }
        }
        // The nodes the monitor added for served volumes whose drive is gone (the layers
        // under a top, a top switched to): QEMU keeps them until deleted. One still in
        // use under another goes in a later call.
        let nodes = qmp.execute("query-named-block-nodes", Some(json!({ "flat": true }))).map_err(q)?;
        for node in nodes.as_array().into_iter().flatten().filter_map(|n| n["node-name"].as_str()) {
            let volume = node.strip_prefix("vn").or_else(|| node.strip_prefix("cn")).and_then(|n| n.split('.').next());
            if volume.is_some_and(|v| !present.contains(&format!("v{v}"))) {
                let _ = qmp.execute("blockdev-del", Some(json!({ "node-name": node })));
            }
        }
        // A disk is also present when a drive already has its file open (the disks of a
        // VM started before drives were named after volumes: `disk1`, …).
        let open: Vec<std::path::PathBuf> = blocks
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|b| b["inserted"]["file"].as_str().map(std::path::PathBuf::from))
            .collect();
        for (drive, device, disk) in wanted.iter().skip(1) {
            let has_drive = present.contains(drive);
            if (has_drive && devices.contains(device)) || (!has_drive && open.contains(&self.file(&disk.file))) {
                continue;
            }
            if !has_drive {
                if devices.contains(device) {
                    // The device of a pulled drive lingers until the guest lets it go.
                    settled = false;
                    continue;
                }
                tracing::info!(instance = %instance_id, volume = %disk.volume_id, "hot-plugging a disk");
                if let Some(served) = &disk.served {
                    self.relays.ensure(&self.store, served.addr)?;
                }
                let (nodes, options) = qemu::drive_options(disk, &self.store, drive);
                for node in nodes {
                    // Left by an earlier plug of the same volume: the same layer.
                    if let Err(e) = qmp.execute("blockdev-add", Some(node)) {
                        if !e.to_string().contains("Duplicate") {
                            return Err(fail(format!("adding {}'s layers: {e}", disk.volume_id)));
                        }
                    }
                }
                hmp(&mut qmp, format!("drive_add 0 {options}"))
                    .map_err(|e| fail(format!("adding {}'s drive: {e}", disk.volume_id)))?;
            }
            let dev =
                json!({ "driver": "virtio-blk-pci", "drive": drive, "id": device, "serial": qemu::disk_serial(disk) });
            if let Err(e) = qmp.execute("device_add", Some(dev)) {
                let _ = hmp(&mut qmp, format!("drive_del {drive}"));
                return Err(q(e));
            }
        }
        Ok(settled)
    }

    fn grow_volume(
        &self,
        volume: &VolumeId,
        file: &StorePath,
        size_gib: u64,
        instance_id: Option<&str>,
    ) -> Result<(), AgentError> {
        let bytes = size_gib
            .checked_mul(1 << 30)
            .ok_or_else(|| AgentError::Refused(format!("{size_gib} GiB is more than any volume can be")))?;
        if let Some(id) = instance_id {
            // Never the file under a VM named to have it: one that ended meanwhile is
            // asked about again (on a joined host, the file here is not the volume's).
            if self.pid(id).is_none() {
                return Err(AgentError::NotFound(format!("{id} does not run here; its {volume} was not grown")));
            }
            let path = self.file(file);
            let top = kiln_agent_api::export_name(volume, file);
            let mut qmp = self.qmp(id)?;
            let q = |e: qmp::QmpError| fail(e.to_string());
            let blocks = qmp.execute("query-block", None).map_err(q)?;
            // The drive that is on `file` now (a snapshot's switch still to come leaves
            // it on the one before, which is not grown: asked again once it is done).
            let block = blocks
                .as_array()
                .into_iter()
                .flatten()
                .find(|b| on_file(&b["inserted"], &path, &top))
                .ok_or_else(|| AgentError::NotFound(format!("{id} has no disk of {volume} on {file} (yet)")))?;
            if block["inserted"]["image"]["virtual-size"].as_u64().is_some_and(|now| now > bytes) {
                return Err(AgentError::Refused(format!("{volume} is larger than {size_gib} GiB; it never shrinks")));
            }
            let device = block["device"].as_str().map(str::to_owned).unwrap_or_default();
            // Served from the store: its export must have room for the qcow2 of the new
            // size (`nbd::make_room`); an export made before it had that room grows at
            // the instance's next start instead.
            let nodes = qmp.execute("query-named-block-nodes", Some(json!({ "flat": true }))).map_err(q)?;
            let export_len = nodes
                .as_array()
                .into_iter()
                .flatten()
                .filter(|n| n["drv"] == "nbd" && n["file"].as_str().is_some_and(|f| f.contains(top.as_str())))
                .find_map(|n| n["image"]["virtual-size"].as_u64());
            if let Some(len) = export_len.filter(|len| nbd::room_for(bytes).is_none_or(|room| room > *len)) {
                return Err(AgentError::Refused(format!(
                    "{volume}'s export from the store has room for a disk of about {} GiB, not {size_gib} GiB: \
                     stop and start {id} to grow it",
                    len / (1 << 30)
                )));
            }
            return qmp
                .execute("block_resize", Some(json!({ "device": device, "size": bytes })))
                .map(|_| ())
                .map_err(q);
        }
        let out = Command::new("qemu-img")
            .args(["resize", "-q", "-f", "qcow2"])
            .arg(self.file(file))
            .arg(bytes.to_string())
            .output()
            .map_err(|e| fail(format!("running qemu-img (install qemu-utils): {e}")))?;
        if !out.status.success() {
            return Err(fail(format!("qemu-img resize: {}", String::from_utf8_lossy(&out.stderr).trim())));
        }
        Ok(())
    }

    fn console(&self, instance_id: &str, max: usize) -> Result<Vec<u8>, AgentError> {
        // No log yet (a VM not started here) is an empty console, as EC2 shows one.
        let bytes = std::fs::read(self.dir(instance_id).join("serial.log")).unwrap_or_default();
        let start = bytes.len().saturating_sub(max);
        Ok(bytes[start..].to_vec())
    }

    fn forget(&self, instance_id: &str) -> Result<(), AgentError> {
        let dir = self.dir(instance_id);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(fail(format!("removing {}: {e}", dir.display()))),
            _ => Ok(()),
        }
    }

    fn running(&self) -> Result<Vec<String>, AgentError> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(fail(format!("listing {}: {e}", self.root.display()))),
        };
        Ok(entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|id| id.starts_with("i-") && self.pid(id).is_some())
            .collect())
    }

    fn vpc_networking(&self) -> Result<bool, AgentError> {
        Ok(self.has_vpc_networking())
    }

    fn apply_network(&self, net: &VpcNetwork) -> Result<(), AgentError> {
        self.net()?.apply(net)
    }

    fn remove_network(&self, vpc_id: &str) -> Result<(), AgentError> {
        self.net()?.remove(vpc_id)
    }

    fn serve_volumes(
        &self,
        host: &kiln_agent_api::HostId,
        ip: std::net::IpAddr,
        tls: &dyn Fn() -> Result<kiln_agent_api::ServerTls, AgentError>,
        exports: &[kiln_agent_api::Disk],
        keep: bool,
    ) -> Result<Option<std::net::SocketAddr>, AgentError> {
        nbd::serve(&self.store, host, ip, tls, exports, keep)
    }

    fn networks(&self) -> Result<Vec<String>, AgentError> {
        Ok(self.network.as_ref().map(|n| n.list()).unwrap_or_default())
    }

    fn network_id(&self, vpc_id: &str) -> Option<u64> {
        net::netns_id(&self.network.as_ref()?.netns(vpc_id))
    }

    fn tap_id(&self, vpc_id: &str, interface_id: &str) -> Option<kiln_agent_api::TapId> {
        let ns = self.network.as_ref()?.netns(vpc_id);
        let netns = net::netns_id(&ns)?;
        let ifindex = net::index_in(&ns, &kiln_agent_api::tap_name(interface_id))?;
        // Asked again: the namespace may have been made again between the two looks.
        (net::netns_id(&ns) == Some(netns)).then_some(kiln_agent_api::TapId { netns, ifindex })
    }

    fn set_nics(&self, instance_id: &str, nics: &[Nic]) -> Result<bool, AgentError> {
        let q = |e: qmp::QmpError| fail(e.to_string());
        let mut qmp = self.qmp(instance_id)?;
        let devices: Vec<String> = peripherals(&mut qmp)?.into_iter().filter(|n| qemu::is_nic_device(n)).collect();
        // Backends are not QOM objects: the monitor's network summary names them.
        let summary =
            qmp.execute("human-monitor-command", Some(json!({ "command-line": "info network" }))).map_err(q)?;
        let netdevs: Vec<String> = summary
            .as_str()
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim_start().trim_start_matches('\\').trim_start().split(':').next())
            .filter(|n| qemu::is_nic_netdev(n))
            .map(str::to_owned)
            .collect();
        let wanted: Vec<(String, String, &Nic)> = nics
            .iter()
            .map(|n| {
                let (netdev, device) = qemu::nic_ids(&n.interface_id);
                (netdev, device, n)
            })
            .collect();
        let mut settled = true;
        for d in devices.iter().filter(|d| !wanted.iter().any(|w| &w.1 == *d)) {
            // The guest is asked to let go (ACPI eject); the device goes when it has.
            // Asking again while it is going is refused by QEMU, which is fine.
            tracing::info!(instance = %instance_id, device = %d, "removing a network interface");
            let _ = qmp.execute("device_del", Some(json!({ "id": d })));
            settled = false;
        }
        for n in netdevs.iter().filter(|n| !wanted.iter().any(|w| &w.0 == *n)) {
            let device = format!("d{}", &n[1..]);
            if !devices.contains(&device) {
                qmp.execute("netdev_del", Some(json!({ "id": n }))).map_err(q)?;
            }
        }
        for (netdev, device, nic) in &wanted {
            if devices.contains(device) {
                continue;
            }
            tracing::info!(instance = %instance_id, interface = %nic.interface_id, "hot-plugging a network interface");
            if netdevs.contains(netdev) {
                qmp.execute("netdev_del", Some(json!({ "id": netdev }))).map_err(q)?;
            }
            let tap = kiln_agent_api::tap_name(&nic.interface_id);
            let backend = json!({ "type": "tap", "id": netdev, "ifname": tap, "script": "no", "downscript": "no" });
            qmp.execute("netdev_add", Some(backend)).map_err(q)?;
            let nic_device = json!({ "driver": "virtio-net-pci", "netdev": netdev, "mac": nic.mac, "id": device });
            if let Err(e) = qmp.execute("device_add", Some(nic_device)) {
                let _ = qmp.execute("netdev_del", Some(json!({ "id": netdev })));
                return Err(q(e));
            }
        }
        Ok(settled)
    }
}

impl GuestPorts for LocalAgent {
    fn port_sockets(
        &self,
        vpc_id: &str,
        interface_id: &str,
        hop_limit: u32,
    ) -> Result<kiln_agent_api::PortSockets, AgentError> {
        net::port_sockets(&self.net()?.netns(vpc_id), &kiln_agent_api::tap_name(interface_id), hop_limit)
    }

    fn vpc_dns_sockets(
        &self,
        vpc_id: &str,
        addr: std::net::SocketAddrV4,
    ) -> Result<kiln_agent_api::DnsSockets, AgentError> {
        net::dns_sockets_in(&self.net()?.netns(vpc_id), addr)
    }

    fn imds_socket(&self, instance_id: &str) -> PathBuf {
        self.dir(instance_id).join(qemu::IMDS_SOCKET)
    }
}

/// Runs a `qemu-img` command that writes `partial`; when it fails, `partial` goes and
/// the error says `what` failed and why.
pub(crate) fn qemu_img(cmd: &mut Command, partial: &Path, what: &str) -> Result<(), AgentError> {
    let out = cmd.output().map_err(|e| fail(format!("running qemu-img (install qemu-utils): {e}")))?;
    if !out.status.success() {
        let _ = std::fs::remove_file(partial);
        return Err(fail(format!("{what}: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(())
}

/// Makes a file that has become a layer read-only (best effort: it only guards
/// against mistakes; nothing depends on it).
pub(crate) fn seal(layer: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let _ = std::fs::set_permissions(layer, std::fs::Permissions::from_mode(0o444));
}

/// Makes a top this host's VM has left a layer: cut back to its qcow2 (a top a joined
/// host was once served keeps its server's room until then) and read-only.
fn make_layer(file: &Path) {
    if let Err(e) = sealing::cut_room(file) {
        tracing::warn!(layer = %file.display(), error = %e, "cannot cut a layer back to its qcow2");
    }
    seal(file);
}

/// Whether a drive's inserted top (`query-block`'s `inserted`) is the file at `path`
/// here, or the store's file exported as `top` (`export_name`).
fn on_file(inserted: &serde_json::Value, path: &Path, top: &str) -> bool {
    inserted["node-name"].as_str() == Some(top)
        || inserted["file"].as_str().is_some_and(|f| Path::new(f) == path || f.contains(top))
}

/// The ids of a VM's devices added by id (`/machine/peripheral`).
fn peripherals(qmp: &mut qmp::Qmp) -> Result<Vec<String>, AgentError> {
    let list =
        qmp.execute("qom-list", Some(json!({ "path": "/machine/peripheral" }))).map_err(|e| fail(e.to_string()))?;
    Ok(list.as_array().into_iter().flatten().filter_map(|p| p.get("name")?.as_str()).map(str::to_owned).collect())
}
