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
pub mod images;
pub mod imports;
pub mod instances;
pub mod interfaces;
pub mod key_pairs;
pub mod launch_templates;
pub mod network;
pub mod reconcile;
pub mod routing;
pub mod security_groups;
pub mod snapshots;
pub mod tags;
#[cfg(test)]
mod testkit;
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
}

impl Default for Limits {
    fn default() -> Self {
        Self { cpu_overcommit: 8.0, memory_overcommit: 1.0, vcpu_quota: 64 }
    }
}

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
