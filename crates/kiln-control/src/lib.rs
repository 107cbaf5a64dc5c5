//! Kiln's control plane: the rules of each EC2 resource (what may be created, what
//! conflicts, what depends on what), one module per resource, over `kiln-store`.
//! It knows nothing of HTTP or XML; `kiln-server` maps its errors to EC2's.

pub mod accounts;
pub mod acls;
pub mod addresses;
pub mod block_devices;
pub mod console;
pub mod create_image;
pub mod dhcp_options;
pub mod error;
pub mod guest_view;
pub mod hosts;
pub mod images;
pub mod imports;
pub mod instances;
pub mod interfaces;
pub mod key_pairs;
pub mod launch_templates;
pub mod layers;
pub mod leases;
pub mod metrics;
pub mod network;
pub mod placement;
pub mod placement_groups;
pub mod reconcile;
pub mod routing;
pub mod security_groups;
pub mod snapshots;
pub mod tags;
#[cfg(test)]
mod testkit;
mod volume_servers;
pub mod volumes;
pub mod vpcs;
pub mod workflows;

pub use error::Error;
pub use kiln_store::Scope;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_agent_api::{GuestPorts, HostAgent};
use kiln_store::Store;
use kiln_types::RegionConfig;

/// Limits on what instances may use.
#[derive(Debug, Clone)]
pub struct Limits {
    /// vCPUs the host offers per real CPU.
    pub cpu_overcommit: f64,
    /// Memory the host offers per MiB it has.
    pub memory_overcommit: f64,
    /// vCPUs one account may run at once in a region.
    pub vcpu_quota: u32,
    /// Host memory each instance costs beyond its type's: QEMU itself (the translation
    /// cache under TCG, the kernel and initrd it keeps for reboots, device buffers).
    pub vm_overhead_mib: u32,
    /// Host memory never offered to instances: what the host itself needs.
    pub host_reserved_mib: u32,
}

impl Limits {
    /// Memory one instance of `type_mib` holds against the host's offer.
    pub fn memory_cost_mib(&self, type_mib: i64) -> i64 {
        type_mib + i64::from(self.vm_overhead_mib)
    }

    /// The memory the host offers instances: what it has less its reserve, times the
    /// overcommit ratio.
    pub fn memory_offered_mib(&self, host_mib: u64) -> i64 {
        (host_mib.saturating_sub(u64::from(self.host_reserved_mib)) as f64 * self.memory_overcommit) as i64
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            cpu_overcommit: 8.0,
            memory_overcommit: 1.0,
            vcpu_quota: 64,
            vm_overhead_mib: DEFAULT_VM_OVERHEAD_MIB,
            host_reserved_mib: DEFAULT_HOST_RESERVED_MIB,
        }
    }
}

/// Host memory counted per instance on top of its type's: about what one idle kiln-tiny
/// t3.micro's QEMU holds under TCG in all (94 MiB of RSS with its 16 MiB translation
/// cache), measured with `kiln-bench density` and rounded up.
pub const DEFAULT_VM_OVERHEAD_MIB: u32 = 96;
/// What the host keeps for itself by default.
pub const DEFAULT_HOST_RESERVED_MIB: u32 = 1024;

/// The control plane of one installation.
pub struct Cloud {
    pub store: Store,
    pub regions: Vec<RegionConfig>,
    /// The data directory: layer files and kernels live under it, and no path taken
    /// from a request may leave it.
    data_dir: PathBuf,
    agent: Option<Arc<dyn HostAgent>>,
    /// The sockets of the guest services on this host (none without an agent, or for
    /// a host whose guest services run beside its own agent).
    guest_ports: Option<Arc<dyn GuestPorts>>,
    pub limits: Limits,
    /// Directories ImportImage and ImportSnapshot may read from, besides
    /// `DATA_DIR/imports`.
    pub import_dirs: Vec<PathBuf>,
    /// Where public IPv4 addresses come from (routed from the host).
    pub public_pool: ipnet::Ipv4Net,
    /// What guests' services read, published by each reconciler pass.
    view: std::sync::RwLock<Arc<guest_view::GuestView>>,
    /// Wakes the reconciler when a request leaves it work.
    pub nudge: Nudge,
    /// The joined hosts' agents, called over the network.
    remotes: placement::Remotes,
    /// The hashes of layers hosts were sent.
    digests: layers::Digests,
    /// Where joined hosts' volumes are served from.
    volume_servers: volume_servers::VolumeServers,
}

/// A wake-up for a loop that otherwise polls: requests that change what should run
/// nudge it, so a launch does not wait for the next tick.
#[derive(Default)]
pub struct Nudge {
    pending: std::sync::Mutex<bool>,
    wake: std::sync::Condvar,
}

impl Nudge {
    pub fn nudge(&self) {
        if let Ok(mut p) = self.pending.lock() {
            *p = true;
            self.wake.notify_all();
        }
    }

    /// Returns when nudged (at once if a nudge came since the last wait) or after `max`.
    pub fn wait(&self, max: std::time::Duration) {
        let Ok(p) = self.pending.lock() else { return std::thread::sleep(max) };
        if let Ok((mut p, _)) = self.wake.wait_timeout_while(p, max, |p| !*p) {
            *p = false;
        }
    }
}

/// The default pool of public addresses (shared address space, RFC 6598).
pub const DEFAULT_PUBLIC_POOL: &str = "100.64.0.0/16";

impl Cloud {
    pub fn new(store: Store, regions: Vec<RegionConfig>, data_dir: PathBuf) -> Self {
        Self {
            store,
            regions,
            data_dir,
            agent: None,
            guest_ports: None,
            limits: Limits::default(),
            import_dirs: Vec::new(),
            public_pool: ipnet::Ipv4Net::new(std::net::Ipv4Addr::new(100, 64, 0, 0), 16).unwrap_or_default(),
            view: Default::default(),
            nudge: Nudge::default(),
            remotes: placement::Remotes::default(),
            digests: layers::Digests::default(),
            volume_servers: volume_servers::VolumeServers::default(),
        }
    }

    /// Gives the control plane a host to run instances on.
    pub fn with_agent(mut self, agent: Arc<dyn HostAgent>, limits: Limits) -> Self {
        self.agent = Some(agent);
        self.limits = limits;
        self
    }

    /// Gives the guest services this host's sockets (the agent of the same machine).
    pub fn with_guest_ports(mut self, ports: Arc<dyn GuestPorts>) -> Self {
        self.guest_ports = Some(ports);
        self
    }

    pub fn guest_ports(&self) -> Result<&Arc<dyn GuestPorts>> {
        self.guest_ports
            .as_ref()
            .ok_or_else(|| Error::InvalidParameterValue("This Kiln runs no guest services on this machine".into()))
    }

    pub fn agent(&self) -> Result<&Arc<dyn HostAgent>> {
        self.agent.as_ref().ok_or_else(|| {
            Error::InvalidParameterValue("This Kiln runs no host agent, so it cannot run instances".into())
        })
    }

    /// Moves on with every committed change to the cloud's state: what a reader kept
    /// from one generation is current while the generation is the same.
    pub fn generation(&self) -> u64 {
        self.store.commits()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn region(&self, name: &str) -> Option<&RegionConfig> {
        self.regions.iter().find(|r| r.name == name)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Keeps the items whose id is in `ids` (all of `ids` must exist); all items when
/// `ids` is empty.
pub(crate) fn narrow<T>(
    all: Vec<T>,
    ids: &[impl AsRef<str>],
    kind: kiln_types::ResourceKind,
    id: impl Fn(&T) -> &str,
) -> Result<Vec<T>> {
    if ids.is_empty() {
        return Ok(all);
    }
    let wanted = |x: &T| ids.iter().any(|i| i.as_ref() == id(x));
    missing(ids, kind, |i| all.iter().any(|x| id(x) == i))?;
    Ok(all.into_iter().filter(wanted).collect())
}

/// NotFound for every id of `ids` that `found` says is not there (none: Ok).
pub(crate) fn missing(
    ids: &[impl AsRef<str>],
    kind: kiln_types::ResourceKind,
    found: impl Fn(&str) -> bool,
) -> Result<()> {
    let missing: Vec<String> = ids.iter().map(AsRef::as_ref).filter(|i| !found(i)).map(str::to_owned).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::NotFound { kind, ids: missing })
    }
}
