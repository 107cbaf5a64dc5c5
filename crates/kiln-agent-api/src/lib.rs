//! The narrow interface between the control plane and a host agent: what a VM is made
//! of (`VmSpec`), what a host can report, and the `HostAgent` trait. On one host the
//! agent is a direct call; on many it is the same trait over the network. This crate
//! holds no logic.

use std::path::PathBuf;

use kiln_types::Architecture;
use serde::{Deserialize, Serialize};

/// How a host runs guests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Accel {
    /// Hardware virtualisation, when the probe showed KVM can run a standard guest.
    Kvm,
    /// Software emulation.
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// A host's capacity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostInfo {
    pub accel: Accel,
    pub cpus: u32,
    pub memory_mib: u64,
    pub qemu_version: String,
}

/// One disk of a VM, in device order (the first is the root volume).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disk {
    pub volume_id: String,
    pub path: PathBuf,
}

/// The guest's network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Network {
    /// None at all.
    None,
    /// QEMU's user-mode network: the guest gets a link-local address by DHCP and
    /// reaches the metadata service at 169.254.169.254 through `imds_socket`.
    User { imds_socket: PathBuf },
}

/// Everything needed to start one VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmSpec {
    pub instance_id: String,
    pub architecture: Architecture,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub cmdline: Option<String>,
    pub disks: Vec<Disk>,
    pub network: Network,
    /// The program that bridges a guest connection to a Unix socket (`kiln pipe`).
    pub pipe_program: PathBuf,
}

/// What a host agent says went wrong; messages say what to do next.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Failed(String),
}

/// What the control plane asks of a host.
pub trait HostAgent: Send + Sync {
    fn info(&self) -> HostInfo;
    /// Makes a volume file: a qcow2 overlay on `backing`, or a blank disk.
    fn create_volume(
        &self,
        path: &std::path::Path,
        backing: Option<&std::path::Path>,
        size_gib: u64,
    ) -> Result<(), AgentError>;
    fn delete_volume(&self, path: &std::path::Path) -> Result<(), AgentError>;
    /// Starts the VM; returns once QEMU is up (or failed to start).
    fn start(&self, spec: &VmSpec) -> Result<(), AgentError>;
    /// Whether the instance's QEMU process is alive.
    fn is_running(&self, instance_id: &str) -> bool;
    /// Asks the guest to power off (ACPI).
    fn powerdown(&self, instance_id: &str) -> Result<(), AgentError>;
    /// Resets the guest (reboot).
    fn reset(&self, instance_id: &str) -> Result<(), AgentError>;
    /// Ends the VM at once.
    fn kill(&self, instance_id: &str) -> Result<(), AgentError>;
    /// Switches a running VM's disk `index` to a new qcow2 overlay at `overlay` whose
    /// backing file is the disk's current file, which stops changing from then on.
    fn live_snapshot(&self, instance_id: &str, index: usize, overlay: &std::path::Path) -> Result<(), AgentError>;
    /// The serial console output so far (the last `max` bytes).
    fn console(&self, instance_id: &str, max: usize) -> Vec<u8>;
    /// Removes the VM's directory (after termination).
    fn forget(&self, instance_id: &str);
    /// Instances with a running VM on this host (for finding orphans).
    fn running(&self) -> Vec<String>;
}
