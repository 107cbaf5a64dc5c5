//! The narrow interface between the control plane and a host agent: what a VM is made
//! of (`VmSpec`), what a host can report, and the `HostAgent` trait. On one host the
//! agent is a direct call; on many it is the same trait over the network, so every
//! argument, answer and error of `HostAgent` is serialisable: files are named by
//! `StorePath` (relative to the host's data directory, resolved by the host), VMs and
//! networks by their IDs, and errors by kind. Sockets, which cannot cross a network,
//! are the separate `GuestPorts`: the guest services that use them run on the host
//! that holds the guest's tap. This crate holds no logic beyond checking a
//! `StorePath` and a `HostId`, and hashing a layer as `Layer` names it.

use std::net::Ipv4Addr;
use std::path::{Component, Path, PathBuf};

use kiln_types::{Architecture, InstanceId, NetworkInterfaceId, VolumeId, VpcId};
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

/// A file in a host's store, named relative to its data directory
/// (`volumes/vol-….qcow2`, `snapshots/snap-….qcow2`, `kernels/…`). The host resolves
/// it against its own directory, so no host path crosses the interface, and a name
/// that could leave the store (absolute, `..`, empty parts) cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StorePath(String);

impl StorePath {
    pub fn new(name: impl Into<String>) -> Result<Self, AgentError> {
        let name = name.into();
        let inside = !name.is_empty()
            && name.len() <= 1024
            && !name.contains('\0')
            && !name.ends_with('/')
            && !name.contains("//")
            && Path::new(&name).components().all(|c| matches!(c, Component::Normal(_)));
        if inside {
            Ok(Self(name))
        } else {
            Err(AgentError::Refused(format!("'{name}' is not a file name inside the store")))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The file under the store's directory `root`.
    pub fn under(&self, root: &Path) -> PathBuf {
        root.join(&self.0)
    }
}

impl TryFrom<String> for StorePath {
    type Error = AgentError;
    fn try_from(s: String) -> Result<Self, AgentError> {
        Self::new(s)
    }
}

impl From<StorePath> for String {
    fn from(p: StorePath) -> String {
        p.0
    }
}

impl std::fmt::Display for StorePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One disk of a VM, in device order (the first is the root volume).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disk {
    pub volume_id: VolumeId,
    pub file: StorePath,
    /// The layers `file` is an overlay on, nearest first, for a served volume: its
    /// host reads each from its own copy when it has one (`fetch_layers`), else from
    /// the volume server. Empty for a file on this host (its qcow2 names its backing).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub below: Vec<StorePath>,
    /// The nearest of `below` while its snapshot is being made (its VM may still be
    /// writing it): its server leaves its export as it is. Every other layer is
    /// exported read-only, sealed (`HostAgent::seal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settling: Option<StorePath>,
    /// Where a joined host reaches the volume: its file stays in the control plane's
    /// store, served over NBD (None: the file is on this host).
    #[serde(default)]
    pub served: Option<Served>,
}

/// The NBD export (and node) name of one of a served volume's files: `vn`, the
/// volume's digits and a hash of the file's name, so that each file of a volume has
/// its own, and nothing but digits and hex reaches QEMU's options.
pub fn export_name(volume: &VolumeId, file: &StorePath) -> String {
    use sha2::Digest as _;
    let digits = volume.as_str().rsplit('-').next().unwrap_or_default();
    let digest = sha2::Sha256::digest(file.as_str().as_bytes());
    format!("vn{digits}.{}", &hex::encode(digest)[..8])
}

/// A volume served from the store over NBD with TLS: the server's address and the
/// volume (its files' exports are named by `export_name`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Served {
    pub addr: std::net::SocketAddr,
    /// Typed, so that nothing but a volume ID reaches QEMU's command line.
    pub export: VolumeId,
}

/// The TLS identity a volume server presents (a certificate naming its address,
/// signed by the hosts' CA) and the CA whose certificates it lets in.
#[derive(Clone)]
pub struct ServerTls {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// Where a host's client credentials for volume servers are, under its data directory
/// (`ca-cert.pem`, `client-cert.pem`, `client-key.pem`, as QEMU's TLS wants them).
pub const NBD_CLIENT_TLS_DIR: &str = "agent/nbd-tls";

/// The guest's network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Network {
    /// None at all.
    None,
    /// QEMU's user-mode network: the guest gets a link-local address by DHCP and
    /// reaches the metadata service at 169.254.169.254 through the host's metadata
    /// socket for it (`GuestPorts::imds_socket`).
    User,
    /// A tap device in the VPC's network namespace on the host (see `VpcNetwork`) for
    /// the primary interface, and one for each further interface attached (`nics`, in
    /// device order).
    Vpc {
        vpc_id: String,
        mac: String,
        #[serde(default)]
        nics: Vec<Nic>,
    },
}

/// A network interface beyond the primary one, as the VM sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nic {
    pub interface_id: String,
    pub mac: String,
}

/// The tap device of a network interface inside its VPC's namespace (15 characters at
/// most, as Linux wants): `t` and the id's last 14 hex digits. An instance's id names
/// its primary interface's tap (the primary `eni-` has the instance's digits).
pub fn tap_name(id: &str) -> String {
    let hex = id.rsplit('-').next().unwrap_or(id);
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

/// A network interface's place in its VPC: its tap, addresses and security-group
/// rules. An instance has one per attached interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port {
    /// The interface (`eni-…`); its tap is `tap_name(interface_id)`.
    pub interface_id: String,
    pub instance_id: String,
    pub mac: String,
    pub ip: Ipv4Addr,
    /// Its subnet's block: network ACLs apply to traffic crossing it.
    pub subnet: (Ipv4Addr, u8),
    /// The id of its subnet's network ACL (an entry of `VpcNetwork::acls`).
    pub acl: String,
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
    /// The network ACLs its ports' subnets use.
    pub acls: Vec<Acl>,
    /// How the VPC reaches its ports on other hosts (None: this host has no underlay
    /// address, or the VPC lives on this host alone).
    #[serde(default)]
    pub overlay: Option<Overlay>,
}

/// A VPC carried between hosts by VXLAN: one VNI per VPC over the hosts' underlay
/// network, every forwarding entry set from the control plane's state (no flooding, no
/// learning). Each host's VPC router has one VXLAN device, whose MAC address is
/// `overlay_mac(its underlay address)`; a port on another host is routed to that
/// host's router.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overlay {
    /// The VPC's VXLAN network identifier (24 bits).
    pub vni: u32,
    /// This host's underlay address (where its agent takes calls).
    pub local: Ipv4Addr,
    /// The VPC's ports on other hosts: (private address, its host's underlay address).
    pub peers: Vec<(Ipv4Addr, Ipv4Addr)>,
}

/// VXLAN's UDP port (IANA's).
pub const VXLAN_PORT: u16 = 4789;

/// The MAC address of a host's VPC routers on the overlay: locally administered,
/// unicast, from the host's underlay address (unique among a VPC's hosts).
pub fn overlay_mac(underlay: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = underlay.octets();
    [0x02, 0x6b, a, b, c, d]
}

/// A network ACL as the host enforces it: stateless, rule by rule in number order,
/// then deny.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acl {
    pub id: String,
    pub ingress: Vec<AclRule>,
    pub egress: Vec<AclRule>,
}

/// One numbered ACL entry: traffic from (ingress) or to (egress) `cidr`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclRule {
    pub number: u16,
    pub allow: bool,
    pub protocol: Protocol,
    /// Port range (tcp, udp) or icmp type and code.
    pub from: Option<u16>,
    pub to: Option<u16>,
    pub cidr: (Ipv4Addr, u8),
}

/// Everything needed to start one VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmSpec {
    pub instance_id: InstanceId,
    pub architecture: Architecture,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub kernel: Option<StorePath>,
    pub initrd: Option<StorePath>,
    pub cmdline: Option<String>,
    /// The image's own TCG translation-cache size, MiB, where its recipe names one
    /// (kiln-tiny: 16, trading 6% of boot time for 16 MiB); None takes the host's.
    #[serde(default)]
    pub tcg_tb_size_mib: Option<u32>,
    pub disks: Vec<Disk>,
    pub network: Network,
}

/// One file of the store a host needs before it can make a volume or boot a kernel:
/// a snapshot's layer (qcow2; `backing` is the layer below it, fetched first) or a
/// kernel or initrd. Layers never change once frozen, so its SHA-256 and size name
/// its content: a host checks what it received against them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    pub file: StorePath,
    pub sha256: String,
    pub size: u64,
    pub backing: Option<StorePath>,
}

impl Layer {
    /// The SHA-256 (hex) of a file's content, as a `Layer` names it; both ends of a
    /// transfer compute it so.
    pub fn sha256_of(path: &Path) -> std::io::Result<String> {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        std::io::copy(&mut std::fs::File::open(path)?, &mut h)?;
        Ok(hex::encode(h.finalize()))
    }
}

/// How far a host has the layers it was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LayersReady {
    /// All there; `fetched` bytes came from the store for them (0: all were cached).
    Ready { fetched: u64 },
    /// Being fetched: `done` of `total` bytes so far.
    Fetching { done: u64, total: u64 },
}

/// Where a host that lacks a layer gets it: the control plane's store, over the
/// host's authenticated channel. `open` reads `file` from byte `from` on, so a
/// transfer cut off resumes where it stopped.
pub trait LayerSource: Send + Sync {
    fn open(&self, file: &StorePath, from: u64) -> Result<Box<dyn std::io::Read + Send>, AgentError>;
}

/// What a host agent says went wrong, by kind; messages say what to do next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum AgentError {
    /// The host tried and could not (a program failed, a file could not be written).
    #[error("{0}")]
    Failed(String),
    /// No such VM, disk or network on this host.
    #[error("{0}")]
    NotFound(String),
    /// The request itself is invalid (a file name outside the store).
    #[error("{0}")]
    Refused(String),
    /// This host cannot do it at all (VPC networking on a host without it).
    #[error("{0}")]
    Unsupported(String),
}

/// What the control plane asks of a host. Every question can fail, since a host may be
/// across a network that does not answer: "no" and "cannot say" are different answers
/// (a VM whose host is silent is not a VM that stopped). Only `network_id` and
/// `tap_id`, which the guest services beside the agent ask, answer `None` for both.
pub trait HostAgent: Send + Sync {
    fn info(&self) -> Result<HostInfo, AgentError>;
    /// Makes a volume file, whole or not at all: a qcow2 overlay on `backing` (which
    /// the host makes read-only, as it is a layer from now on), or a blank disk. A file
    /// already there is left as it is, so asking again after a crash is safe.
    fn create_volume(&self, file: &StorePath, backing: Option<&StorePath>, size_gib: u64) -> Result<(), AgentError>;
    /// Makes sure this host has each of `layers` (in order: a layer's backing comes
    /// before it), fetching those it lacks from its `LayerSource` in the background,
    /// each checked against its SHA-256 before it is used; a host that has them all
    /// fetches nothing. Answers at once how far it is: ask again until `Ready`. A fetch
    /// that failed is that call's error, and the next call starts it again (resuming).
    fn fetch_layers(&self, layers: &[Layer]) -> Result<LayersReady, AgentError>;
    /// Removes a volume file (gone already is fine).
    fn delete_volume(&self, file: &StorePath) -> Result<(), AgentError>;
    /// Whether a volume file exists on this host.
    fn volume_exists(&self, file: &StorePath) -> Result<bool, AgentError>;
    /// Starts the VM; returns once QEMU is up (or failed to start).
    fn start(&self, spec: &VmSpec) -> Result<(), AgentError>;
    /// Whether the instance's QEMU process is alive (an error: the host cannot say).
    fn is_running(&self, instance_id: &str) -> Result<bool, AgentError>;
    /// Asks the guest to power off (ACPI).
    fn powerdown(&self, instance_id: &str) -> Result<(), AgentError>;
    /// Resets the guest (reboot).
    fn reset(&self, instance_id: &str) -> Result<(), AgentError>;
    /// Ends the VM at once.
    fn kill(&self, instance_id: &str) -> Result<(), AgentError>;
    /// Switches each running VM disk whose file is a `current` to its new qcow2
    /// `overlay` backed by it, all at one instant (one QMP transaction); each `current`
    /// stops changing from then on (the host makes it read-only). Disks already on
    /// their overlay are left alone, so asking again does nothing.
    fn live_snapshot(&self, instance_id: &str, switches: &[(StorePath, StorePath)]) -> Result<(), AgentError>;
    /// `live_snapshot` for served volumes: each of `disks` (its new top as `file`, the
    /// file its VM is on now first in `below`) goes on to its new top, exported by its
    /// volume server, all at one instant. Idempotent.
    fn switch_served(&self, instance_id: &str, disks: &[Disk]) -> Result<(), AgentError> {
        let _ = (instance_id, disks);
        Err(AgentError::Unsupported("this host has no served volumes".into()))
    }
    /// Seals `file` of this host's store against what a joined host may have written
    /// into it: its header names `backing` (the layer the store says is under it) and no
    /// external data file; `frozen` (it has become a layer): nothing follows its qcow2,
    /// and it is read-only. Only the store's host.
    fn seal(&self, file: &StorePath, backing: Option<&StorePath>, frozen: bool) -> Result<(), AgentError> {
        let _ = (file, backing, frozen);
        Err(AgentError::Unsupported("only the control plane's own host seals layers".into()))
    }
    /// Makes a running VM's disks exactly `disks` (the first, its root, never changes):
    /// hot-plugs those missing and asks the guest to release the others, except the
    /// volumes in `force`, whose drives are pulled at once (the guest's I/O on them
    /// fails from then on). Returns whether the VM now has exactly `disks` open;
    /// false while a release is under way.
    fn set_disks(&self, instance_id: &str, disks: &[Disk], force: &[VolumeId]) -> Result<bool, AgentError>;
    /// Whether running VM `instance_id` has each of `disks` on that disk's `file` as
    /// its top now (in order): what a switch that may or may not have been made left
    /// behind. An error when the VM does not run here.
    fn drives_on(&self, instance_id: &str, disks: &[Disk]) -> Result<Vec<bool>, AgentError>;
    /// Grows volume `volume` (its top file `file`) to `size_gib`: live, through the VM
    /// that has it as a disk (`instance_id`, on this host, its top perhaps served from
    /// the store), or on the file when no VM runs it. Never shrinks.
    fn grow_volume(
        &self,
        volume: &VolumeId,
        file: &StorePath,
        size_gib: u64,
        instance_id: Option<&str>,
    ) -> Result<(), AgentError>;
    /// The serial console output so far (the last `max` bytes).
    fn console(&self, instance_id: &str, max: usize) -> Result<Vec<u8>, AgentError>;
    /// Removes the VM's directory (after termination).
    fn forget(&self, instance_id: &str) -> Result<(), AgentError>;
    /// Instances with a running VM on this host (for finding orphans).
    fn running(&self) -> Result<Vec<String>, AgentError>;
    /// Whether this host gives guests VPC networking (else QEMU's user-mode network).
    fn vpc_networking(&self) -> Result<bool, AgentError>;
    /// Makes the host's view of a VPC exactly `net` (idempotent; ports and rules not in
    /// `net` go).
    fn apply_network(&self, net: &VpcNetwork) -> Result<(), AgentError>;
    /// Removes a VPC's namespace and everything in it.
    fn remove_network(&self, vpc_id: &str) -> Result<(), AgentError>;
    /// VPCs that have a namespace on this host.
    fn networks(&self) -> Result<Vec<String>, AgentError>;
    /// Which namespace a VPC has now, while it has one: it changes when the namespace
    /// is made again (sockets made in the old one never see the new one's traffic).
    fn network_id(&self, vpc_id: &str) -> Option<u64>;
    /// Which tap a network interface has now, while it exists: it changes when the tap
    /// or its VPC's namespace is made again.
    fn tap_id(&self, vpc_id: &str, interface_id: &str) -> Option<TapId>;
    /// Makes a running VM's further interfaces exactly `nics`: hot-plugs those missing
    /// (their taps must exist) and asks the guest to release the others. Returns
    /// whether the VM now has exactly `nics`; false while a release is under way (ask
    /// again).
    fn set_nics(&self, instance_id: &str, nics: &[Nic]) -> Result<bool, AgentError>;
    /// Serves volume files of this host's store to joined host `host` over NBD on
    /// `ip`, with TLS (`tls`: the server's identity, made only when a server starts),
    /// exporting exactly `exports` to it and letting no other host in. With nothing to
    /// export, a running server stays up when `keep` (the host is live: its next
    /// launch then waits for no new server), else it is stopped. Returns where the
    /// server listens, or None when none runs. Only the control plane's own host
    /// serves volumes.
    fn serve_volumes(
        &self,
        host: &HostId,
        ip: std::net::IpAddr,
        tls: &dyn Fn() -> Result<ServerTls, AgentError>,
        exports: &[Disk],
        keep: bool,
    ) -> Result<Option<std::net::SocketAddr>, AgentError> {
        let _ = (host, ip, tls, exports, keep);
        Err(AgentError::Unsupported("only the control plane's own host serves volumes".into()))
    }
}

/// A tap as the host knows it now: its namespace (see `HostAgent::network_id`) and its
/// interface index there. A tap made again after its namespace was made again can have
/// the same index, so the index alone does not tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TapId {
    pub netns: u64,
    pub ifindex: u32,
}

/// One call of `HostAgent` as it crosses the network: the method (`"call"`) and its
/// arguments. Its own IDs are typed and files are `StorePath`s, so a body naming a
/// malformed instance or a path out of the store is refused when it is decoded; what
/// the nested specs carry as text (a VM's MACs, a VPC's port IDs) and which part of the
/// store a file is in, `check` refuses before the host acts on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case", deny_unknown_fields)]
pub enum HostCall {
    Info,
    CreateVolume { file: StorePath, backing: Option<StorePath>, size_gib: u64 },
    FetchLayers { layers: Vec<Layer> },
    DeleteVolume { file: StorePath },
    VolumeExists { file: StorePath },
    Start { spec: VmSpec },
    IsRunning { instance_id: InstanceId },
    Powerdown { instance_id: InstanceId },
    Reset { instance_id: InstanceId },
    Kill { instance_id: InstanceId },
    LiveSnapshot { instance_id: InstanceId, switches: Vec<(StorePath, StorePath)> },
    SwitchServed { instance_id: InstanceId, disks: Vec<Disk> },
    SetDisks { instance_id: InstanceId, disks: Vec<Disk>, force: Vec<VolumeId> },
    GrowVolume { volume_id: VolumeId, file: StorePath, size_gib: u64, instance_id: Option<InstanceId> },
    Console { instance_id: InstanceId, max: usize },
    Forget { instance_id: InstanceId },
    Running,
    VpcNetworking,
    ApplyNetwork { net: VpcNetwork },
    RemoveNetwork { vpc_id: VpcId },
    Networks,
    NetworkId { vpc_id: VpcId },
    TapId { vpc_id: VpcId, interface_id: NetworkInterfaceId },
    SetNics { instance_id: InstanceId, nics: Vec<Nic> },
    DrivesOn { instance_id: InstanceId, disks: Vec<Disk> },
}

/// A call's answer as it crosses the network: the method's return value, or for the
/// fallible ones `{"Ok": …}` / `{"Err": AgentError}`. Decoded by the caller into what
/// the method returns (`HostCall::run`'s other end).
pub type HostAnswer = serde_json::Value;

/// The parts of a host's store the control plane names files in: volumes (and the
/// layers they become), snapshots and kernels. The rest of the data directory (the
/// agent's key and certificate among it) is no call's business.
const CALLABLE_AREAS: [&str; 3] = ["volumes/", "snapshots/", "kernels/"];

/// Whether `mac` reads `xx:xx:xx:xx:xx:xx` in hex.
fn is_mac(mac: &str) -> bool {
    mac.len() == 17 && mac.bytes().enumerate().all(|(i, b)| if i % 3 == 2 { b == b':' } else { b.is_ascii_hexdigit() })
}

impl HostCall {
    /// What decoding alone does not check of a call from the network: its files lie in
    /// the store's callable areas, and the IDs and MAC addresses it carries as text
    /// (in a VM's network and a VPC's ports, which the host puts into QEMU's command
    /// line and device names) have their shapes.
    pub fn check(&self) -> Result<(), AgentError> {
        let refuse = |what: &str, v: &str| Err(AgentError::Refused(format!("the call names {what} '{v}'")));
        let file = |f: &StorePath| match CALLABLE_AREAS.iter().any(|a| f.as_str().starts_with(a)) {
            true => Ok(()),
            false => refuse("a file outside volumes/, snapshots/ and kernels/", f.as_str()),
        };
        let id = |kind: &str, v: &str, ok: bool| if ok { Ok(()) } else { refuse(kind, v) };
        let nic = |n: &Nic| {
            id("a malformed interface ID", &n.interface_id, n.interface_id.parse::<NetworkInterfaceId>().is_ok())?;
            id("a malformed MAC address", &n.mac, is_mac(&n.mac))
        };
        match self {
            HostCall::CreateVolume { file: f, backing, .. } => backing.iter().chain([f]).try_for_each(file),
            HostCall::DeleteVolume { file: f } | HostCall::VolumeExists { file: f } => file(f),
            HostCall::FetchLayers { layers } => layers.iter().try_for_each(|l| {
                l.backing.iter().chain([&l.file]).try_for_each(file)?;
                id(
                    "a malformed SHA-256",
                    &l.sha256,
                    l.sha256.len() == 64 && l.sha256.bytes().all(|b| b.is_ascii_hexdigit()),
                )
            }),
            HostCall::GrowVolume { file: f, .. } => file(f),
            HostCall::LiveSnapshot { switches, .. } => switches.iter().try_for_each(|(a, b)| file(a).and(file(b))),
            HostCall::SetDisks { disks, .. }
            | HostCall::SwitchServed { disks, .. }
            | HostCall::DrivesOn { disks, .. } => {
                disks.iter().flat_map(|d| d.below.iter().chain([&d.file])).try_for_each(file)
            }
            HostCall::SetNics { nics, .. } => nics.iter().try_for_each(nic),
            HostCall::Start { spec } => {
                spec.kernel
                    .iter()
                    .chain(&spec.initrd)
                    .chain(spec.disks.iter().flat_map(|d| d.below.iter().chain([&d.file])))
                    .try_for_each(file)?;
                match &spec.network {
                    Network::Vpc { vpc_id, mac, nics } => {
                        id("a malformed VPC ID", vpc_id, vpc_id.parse::<VpcId>().is_ok())?;
                        id("a malformed MAC address", mac, is_mac(mac))?;
                        nics.iter().try_for_each(nic)
                    }
                    Network::None | Network::User => Ok(()),
                }
            }
            HostCall::ApplyNetwork { net } => {
                id("a malformed VPC ID", &net.vpc_id, net.vpc_id.parse::<VpcId>().is_ok())?;
                net.ports.iter().try_for_each(|p| {
                    id("a malformed instance ID", &p.instance_id, p.instance_id.parse::<InstanceId>().is_ok())?;
                    nic(&Nic { interface_id: p.interface_id.clone(), mac: p.mac.clone() })
                })
            }
            _ => Ok(()),
        }
    }

    /// Checks the call (`check`) and runs it on `host` (the agent's end of the
    /// channel): the method's answer, or why the call was refused unrun.
    pub fn run(self, host: &dyn HostAgent) -> Result<HostAnswer, AgentError> {
        fn json<T: Serialize>(v: T) -> HostAnswer {
            // The interface's types all serialise (a round-trip test keeps it so).
            serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
        }
        self.check()?;
        Ok(match self {
            HostCall::Info => json(host.info()),
            HostCall::CreateVolume { file, backing, size_gib } => {
                json(host.create_volume(&file, backing.as_ref(), size_gib))
            }
            HostCall::FetchLayers { layers } => json(host.fetch_layers(&layers)),
            HostCall::DeleteVolume { file } => json(host.delete_volume(&file)),
            HostCall::VolumeExists { file } => json(host.volume_exists(&file)),
            HostCall::Start { spec } => json(host.start(&spec)),
            HostCall::IsRunning { instance_id } => json(host.is_running(&instance_id)),
            HostCall::Powerdown { instance_id } => json(host.powerdown(&instance_id)),
            HostCall::Reset { instance_id } => json(host.reset(&instance_id)),
            HostCall::Kill { instance_id } => json(host.kill(&instance_id)),
            HostCall::LiveSnapshot { instance_id, switches } => json(host.live_snapshot(&instance_id, &switches)),
            HostCall::SwitchServed { instance_id, disks } => json(host.switch_served(&instance_id, &disks)),
            HostCall::DrivesOn { instance_id, disks } => json(host.drives_on(&instance_id, &disks)),
            HostCall::SetDisks { instance_id, disks, force } => json(host.set_disks(&instance_id, &disks, &force)),
            HostCall::GrowVolume { volume_id, file, size_gib, instance_id } => {
                json(host.grow_volume(&volume_id, &file, size_gib, instance_id.as_deref()))
            }
            HostCall::Console { instance_id, max } => json(host.console(&instance_id, max)),
            HostCall::Forget { instance_id } => json(host.forget(&instance_id)),
            HostCall::Running => json(host.running()),
            HostCall::VpcNetworking => json(host.vpc_networking()),
            HostCall::ApplyNetwork { net } => json(host.apply_network(&net)),
            HostCall::RemoveNetwork { vpc_id } => json(host.remove_network(&vpc_id)),
            HostCall::Networks => json(host.networks()),
            HostCall::NetworkId { vpc_id } => json(host.network_id(&vpc_id)),
            HostCall::TapId { vpc_id, interface_id } => json(host.tap_id(&vpc_id, &interface_id)),
            HostCall::SetNics { instance_id, nics } => json(host.set_nics(&instance_id, &nics)),
        })
    }
}

/// The sockets guest services answer on, made on the host where the guest runs. These
/// are file descriptors and local paths, so they never cross the network: the services
/// that use them (DHCP, DNS, metadata) run beside the agent that made them.
pub trait GuestPorts: Send + Sync {
    /// Sockets bound to a network interface's tap: UDP port 67 for DHCP, and TCP
    /// 169.254.169.254:80 for the metadata service, whose answers leave with an IP TTL
    /// of `hop_limit`.
    fn port_sockets(&self, vpc_id: &str, interface_id: &str, hop_limit: u32) -> Result<PortSockets, AgentError>;
    /// A UDP socket and a TCP listener bound to `addr` inside a VPC's namespace (its
    /// DNS).
    fn vpc_dns_sockets(&self, vpc_id: &str, addr: std::net::SocketAddrV4) -> Result<DnsSockets, AgentError>;
    /// Where the metadata service listens for a guest on QEMU's user-mode network.
    fn imds_socket(&self, instance_id: &str) -> PathBuf;
}

/// The sockets of a VPC's DNS.
#[derive(Debug)]
pub struct DnsSockets {
    pub udp: std::net::UdpSocket,
    pub tcp: std::net::TcpListener,
}

/// The sockets of one port's guest services.
#[derive(Debug)]
pub struct PortSockets {
    pub dhcp: std::net::UdpSocket,
    pub imds: std::net::TcpListener,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_paths_stay_inside_the_store() {
        for ok in ["volumes/vol-0123.qcow2", "kernels/abc/vmlinuz", "a"] {
            assert_eq!(StorePath::new(ok).expect(ok).as_str(), ok);
        }
        for bad in ["", "/etc/shadow", "../x", "volumes/../../etc/passwd", "./x", "a//b", "a/", "a\0b"] {
            assert!(matches!(StorePath::new(bad), Err(AgentError::Refused(_))), "{bad:?}");
        }
        assert_eq!(StorePath::new("v/x").expect("v/x").under(Path::new("/data")), PathBuf::from("/data/v/x"));
    }

    #[test]
    fn the_interface_round_trips_through_json() {
        let spec = VmSpec {
            instance_id: "i-0123456789abcdef0".parse().expect("id"),
            architecture: Architecture::X86_64,
            vcpus: 2,
            memory_mib: 1024,
            kernel: Some(StorePath::new("kernels/k/vmlinuz").expect("path")),
            initrd: None,
            cmdline: Some("console=ttyS0".into()),
            tcg_tb_size_mib: Some(16),
            disks: vec![Disk {
                volume_id: "vol-0123456789abcdef0".parse().expect("id"),
                file: StorePath::new("volumes/vol-0123456789abcdef0.qcow2").expect("path"),
                below: vec![StorePath::new("snapshots/snap-0123456789abcdef0.qcow2").expect("path")],
                settling: None,
                served: Some(Served {
                    addr: "192.0.2.1:10809".parse().expect("addr"),
                    export: "vol-0123456789abcdef0".parse().expect("id"),
                }),
            }],
            network: Network::Vpc {
                vpc_id: "vpc-01234567".into(),
                mac: "02:00:00:00:00:01".into(),
                nics: vec![Nic { interface_id: "eni-0123456789abcdef1".into(), mac: "02:00:00:00:00:02".into() }],
            },
        };
        let text = serde_json::to_string(&spec).expect("serialise");
        assert_eq!(serde_json::from_str::<VmSpec>(&text).expect("deserialise"), spec);
        // As a call from the network: refused when what it carries as text into QEMU's
        // command line is not the shape it must be, or a file is outside volumes,
        // snapshots and kernels.
        assert_eq!(HostCall::Start { spec: spec.clone() }.check(), Ok(()));
        let mut bad = spec.clone();
        bad.network =
            Network::Vpc { vpc_id: "vpc-01234567".into(), mac: "02:00:00:00:00:01,romfile=/x".into(), nics: vec![] };
        assert!(matches!(HostCall::Start { spec: bad }.check(), Err(AgentError::Refused(_))));
        let mut bad = spec.clone();
        bad.kernel = Some(StorePath::new("agent/key.pem").expect("path"));
        assert!(matches!(HostCall::Start { spec: bad }.check(), Err(AgentError::Refused(_))));
        assert!(is_mac("02:ab:CD:00:00:01") && !is_mac("02:ab:CD:00:00:0") && !is_mac("02-ab-cd-00-00-01"));
        let err = AgentError::NotFound("i-0 has no disk disk3".into());
        let text = serde_json::to_string(&err).expect("serialise");
        assert_eq!(serde_json::from_str::<AgentError>(&text).expect("deserialise"), err);
        // A peer cannot smuggle a path out of the store: it is checked when decoded.
        let hostile = text_with_disk_file(&spec, "../../etc/shadow");
        assert!(serde_json::from_str::<VmSpec>(&hostile).is_err());
        // A spec written before further interfaces existed still reads.
        let old = r#"{"Vpc":{"vpc_id":"vpc-01234567","mac":"02:00:00:00:00:01"}}"#;
        assert!(matches!(serde_json::from_str::<Network>(old), Ok(Network::Vpc { nics, .. }) if nics.is_empty()));
        assert_eq!(tap_name("i-0123456789abcdef0"), tap_name("eni-0123456789abcdef0"));
        assert_eq!(tap_name("eni-0123456789abcdef0"), "t3456789abcdef0");
    }

    fn text_with_disk_file(spec: &VmSpec, file: &str) -> String {
        let mut v = serde_json::to_value(spec).expect("value");
        v["disks"][0]["file"] = serde_json::Value::String(file.into());
        v.to_string()
    }
}

/// A joined host's ID (`h-` and 17 hex digits, the shape of EC2's host IDs). Made only
/// by `generate` or by parsing, which refuses any other shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostId(String);

impl HostId {
    pub fn generate() -> Self {
        let n: u128 = rand::random();
        Self(format!("h-{:017x}", n & ((1u128 << 68) - 1)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for HostId {
    type Err = AgentError;
    fn from_str(s: &str) -> Result<Self, AgentError> {
        let ok = s.strip_prefix("h-").is_some_and(|h| h.len() == 17 && h.bytes().all(|b| b.is_ascii_hexdigit()));
        if ok {
            Ok(Self(s.to_ascii_lowercase()))
        } else {
            Err(AgentError::Refused(format!("'{s}' is not a host ID (h- and 17 hex digits)")))
        }
    }
}

impl TryFrom<String> for HostId {
    type Error = AgentError;
    fn try_from(s: String) -> Result<Self, AgentError> {
        s.parse()
    }
}

impl From<HostId> for String {
    fn from(id: HostId) -> String {
        id.0
    }
}

impl std::fmt::Display for HostId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an operator has decided for a host. Only `Active` hosts take new instances;
/// `Draining` also asks for its instances to be moved off, `Cordoned` keeps them
/// where they are; a `Retired` host has left the fleet and its certificate is no longer
/// accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostState {
    Active,
    Draining,
    Cordoned,
    Retired,
}

impl HostState {
    pub const ALL: [HostState; 4] = [HostState::Active, HostState::Draining, HostState::Cordoned, HostState::Retired];

    pub fn as_str(self) -> &'static str {
        match self {
            HostState::Active => "active",
            HostState::Draining => "draining",
            HostState::Cordoned => "cordoned",
            HostState::Retired => "retired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|h| h.as_str() == s)
    }
}

/// What an agent reports about its host when it joins and with every heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostReport {
    pub hostname: String,
    pub architectures: Vec<Architecture>,
    #[serde(flatten)]
    pub info: HostInfo,
    /// Measured at each report (absent from an older agent's: zeros).
    #[serde(default)]
    pub usage: HostUsage,
    /// Where the agent serves the control plane's calls (`kiln agent --listen`), if it
    /// does.
    #[serde(default)]
    pub endpoint: Option<std::net::SocketAddr>,
}

/// What a host has in use, as its agent measured it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostUsage {
    /// VMs (QEMU processes) running on the host.
    pub vms: u32,
    /// Their resident memory, MiB.
    pub vm_resident_mib: u64,
    /// The host's MemAvailable, MiB: what it can still give without swapping.
    pub memory_available_mib: u64,
}

/// An agent's request to join: the one-time token's secret, its report, and a
/// certificate signing request (PEM) for the key it made and keeps.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    pub secret: String,
    pub report: HostReport,
    pub csr_pem: String,
}

/// The control plane's answer to a join or a renewal: who the host is and the client
/// certificate (PEM) it presents from now on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Enrolled {
    pub host_id: HostId,
    pub zone: String,
    pub cert_pem: String,
}
