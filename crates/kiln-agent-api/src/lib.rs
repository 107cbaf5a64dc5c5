//! The narrow interface between the control plane and a host agent: what a VM is made
//! of (`VmSpec`), what a host can report, and the `HostAgent` trait. On one host the
//! agent is a direct call; on many it is the same trait over the network. This crate
//! holds no logic.

use std::net::Ipv4Addr;
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
    /// A tap device in the VPC's network namespace (see `VpcNetwork`).
    Tap { netns: String, tap: String, mac: String },
}

/// The tap device of an instance inside its VPC's namespace (15 characters at most, as
/// Linux wants).
pub fn tap_name(instance_id: &str) -> String {
    let hex = instance_id.trim_start_matches("i-");
    format!("t{}", &hex[hex.len().saturating_sub(14)..])
}

/// An IP protocol as security-group rules name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    All,
    Tcp,
    Udp,
    Icmp,
    /// Any other protocol, by number.
    Number(u8),
}

/// One allowed flow of a port, from security-group rules: the protocol, the port range
/// (TCP/UDP) or ICMP type and code (`None` = any), and the peers as IPv4 networks
/// (references to groups already resolved to their members' addresses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRule {
    pub protocol: Protocol,
    pub from: Option<u16>,
    pub to: Option<u16>,
    pub peers: Vec<(Ipv4Addr, u8)>,
}

/// An instance's place in its VPC: its tap, addresses and security-group rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port {
    pub instance_id: String,
    pub mac: String,
    pub ip: Ipv4Addr,
    /// The subnet's gateway (its first usable address), which the router answers.
    pub gateway: Ipv4Addr,
    pub public_ip: Option<Ipv4Addr>,
    pub ingress: Vec<FlowRule>,
    pub egress: Vec<FlowRule>,
}

/// Everything a host makes for one VPC: a network namespace acting as the VPC's
/// router, with a routed port per instance and a link to the host for public
/// addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpcNetwork {
    pub vpc_id: String,
    /// Addresses the router answers on: each subnet's gateway and the DNS address.
    pub router_addresses: Vec<Ipv4Addr>,
    pub ports: Vec<Port>,
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
    /// Whether this host gives guests VPC networking (else QEMU's user-mode network).
    fn vpc_networking(&self) -> bool;
    /// The network namespace of a VPC on this host.
    fn netns(&self, vpc_id: &str) -> String;
    /// Makes the host's view of a VPC exactly `net` (idempotent; ports and rules not in
    /// `net` go).
    fn apply_network(&self, net: &VpcNetwork) -> Result<(), AgentError>;
    /// Removes a VPC's namespace and everything in it.
    fn remove_network(&self, vpc_id: &str) -> Result<(), AgentError>;
    /// VPCs that have a namespace on this host.
    fn networks(&self) -> Vec<String>;
    /// The interface index of an instance's tap, while it exists (it changes when the
    /// tap is made again).
    fn port_index(&self, vpc_id: &str, instance_id: &str) -> Option<u32>;
    /// Sockets bound to an instance's tap: UDP port 67 for DHCP, and TCP
    /// 169.254.169.254:80 for the metadata service, whose answers leave with an IP TTL
    /// of `hop_limit`.
    fn port_sockets(&self, vpc_id: &str, instance_id: &str, hop_limit: u32) -> Result<PortSockets, AgentError>;
    /// A UDP socket bound to `addr` inside a VPC's namespace (its DNS).
    fn vpc_udp_socket(&self, vpc_id: &str, addr: std::net::SocketAddrV4) -> Result<std::net::UdpSocket, AgentError>;
}

/// The sockets of one port's guest services.
#[derive(Debug)]
pub struct PortSockets {
    pub dhcp: std::net::UdpSocket,
    pub imds: std::net::TcpListener,
}
