//! VPC networking on this host. Each VPC is a network namespace that acts as the VPC's
//! router: every instance has a routed tap device in it, the router answers for each
//! subnet's gateway, the DNS address and 169.254.169.254 on its loopback, and a veth
//! pair links it to the host, which routes the public addresses (1:1 NAT'd inside the
//! namespace). Security groups and anti-spoofing are one nftables table per namespace,
//! replaced atomically whenever anything changes.
//!
//! A VPC with ports on other hosts gets a VXLAN device in its namespace (`vx0`, made
//! from the host's namespace so that its UDP socket is the host's, one VNI per VPC):
//! each remote port is a host route through it, with a permanent neighbour entry for
//! the remote router's MAC and a forwarding entry sending that MAC to the remote
//! host's underlay address. Nothing floods or learns. Public addresses of this host's
//! instances are answered for on the underlay (proxy ARP entries, exactly those routed
//! here), so they move with their instances.
//!
//! Ports are routed rather than bridged because security groups are stateful: the
//! kernel's `inet` hooks see routed packets with connection tracking, while bridge
//! conntrack (`nf_conntrack_bridge`) is often missing, and it is here. Guests never see
//! each other's ARP: the router answers for peers (proxy ARP) and holds permanent
//! neighbour entries, so ARP spoofing has nothing to poison.
//!
//! What every pass checks and sets (ports up, host routes, neighbour entries, public
//! routes) goes over rtnetlink (`netlink.rs`). Namespaces and taps are made once with
//! the `ip` program, and the rule set is loaded with `nft`: nftables' atomic rule-set
//! replacement has no well-kept crate. The rule set is rendered by a pure function
//! with its own tests.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};

use kiln_agent_api::{
    overlay_mac, tap_name, AgentError, FlowRule, Overlay, Port, PortSockets, Protocol, VpcNetwork, VXLAN_PORT,
};

use crate::netlink::{on_host, HostRoute, Netlink};

/// The host's end of every VPC link, and the router's.
pub const HOST_LINK_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 255, 1);
pub const ROUTER_LINK_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 255, 2);
/// The metadata service's address inside every VPC.
pub const IMDS_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
/// The router's end of the link to the host, inside each namespace.
const UPLINK: &str = "uplink";
/// The router's VXLAN device to the VPC's other hosts, inside each namespace.
const OVERLAY: &str = "vx0";
/// The overlay's MTU: an underlay of 1500 less VXLAN's 50 bytes of headers. Larger
/// packets between hosts are refused with ICMP (path MTU discovery).
const OVERLAY_MTU: &str = "1450";

/// The tag of a data directory's namespaces, links and host table: it keeps two Kilns
/// on one machine apart.
pub fn net_tag(data_dir: &Path) -> String {
    use sha2::Digest as _;
    let canonical = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let digest = sha2::Sha256::digest(canonical.as_os_str().as_encoded_bytes());
    hex::encode(&digest[..2])
}

/// How this host networks VPCs.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// A short tag (hex) that keeps this Kiln's namespaces, links and tables apart from
    /// another Kiln's on the same machine.
    pub tag: String,
    /// Where public addresses come from; routed from the host to the VPCs.
    pub public_pool: (Ipv4Addr, u8),
    /// Whether instances with a public address reach the outside through NAT on the host.
    pub egress_nat: bool,
    /// The host's address on the network between hosts (where its agent takes calls),
    /// if it has one: VXLAN leaves from it, and the public addresses of this host's
    /// instances are answered for on its interface.
    pub underlay: Option<Ipv4Addr>,
}

fn fail(msg: impl Into<String>) -> AgentError {
    AgentError::Failed(msg.into())
}

/// Runs a command and returns its standard output, or fails with its standard error.
fn run(cmd: &mut Command, input: Option<&str>) -> Result<String, AgentError> {
    let shown = format!("{cmd:?}");
    cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| fail(format!("{shown}: {e} (install iproute2 and nftables)")))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        use std::io::Write;
        stdin.write_all(text.as_bytes()).map_err(|e| fail(format!("{shown}: {e}")))?;
    }
    let out = child.wait_with_output().map_err(|e| fail(format!("{shown}: {e}")))?;
    if !out.status.success() {
        return Err(fail(format!("{shown} failed: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(args: &[&str]) -> Result<String, AgentError> {
    run(Command::new("ip").args(args), None)
}

fn ip_in(ns: &str, args: &[&str]) -> Result<String, AgentError> {
    run(Command::new("ip").args(["-n", ns]).args(args), None)
}

fn nft_in(ns: Option<&str>, script: &str) -> Result<(), AgentError> {
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "nft", "-f", "-"]);
            c
        }
        None => {
            let mut c = Command::new("nft");
            c.args(["-f", "-"]);
            c
        }
    };
    run(&mut cmd, Some(script)).map(|_| ())
}

/// Runs `f` on a thread that has entered the namespace `ns` (sockets made there stay
/// in it; the calling thread is untouched).
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> std::io::Result<T> {
    let file = std::fs::File::open(Path::new("/run/netns").join(ns))?;
    std::thread::scope(|s| {
        s.spawn(move || {
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
            Ok(f())
        })
        .join()
        .map_err(|_| std::io::Error::other("the namespace thread panicked"))?
    })
}

fn write_sysctl(ns: Option<&str>, key: &str, value: &str) -> Result<(), AgentError> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    let write = || std::fs::write(&path, value);
    let res = match ns {
        Some(ns) => in_netns(ns, write).and_then(|r| r),
        None => write(),
    };
    res.map_err(|e| fail(format!("setting {key}: {e}")))
}

impl NetConfig {
    /// The namespace of a VPC.
    pub fn netns(&self, vpc_id: &str) -> String {
        format!("kiln-{}-{vpc_id}", self.tag)
    }

    /// The host's end of a VPC's link (interface names are at most 15 characters).
    fn host_link(&self, vpc_id: &str) -> String {
        let hex = vpc_id.trim_start_matches("vpc-");
        format!("kv{}{}", self.tag, &hex[hex.len().saturating_sub(7)..])
    }

    fn link_prefix(&self) -> String {
        format!("kv{}", self.tag)
    }

    fn host_table(&self) -> String {
        format!("kiln_{}", self.tag)
    }

    /// VPCs with a namespace of this Kiln's on the host.
    pub fn list(&self) -> Vec<String> {
        let prefix = format!("kiln-{}-", self.tag);
        let Ok(entries) = std::fs::read_dir("/run/netns") else { return Vec::new() };
        entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_prefix(&prefix)).map(str::to_owned))
            .collect()
    }

    fn create_namespace(&self, ns: &str, link: &str) -> Result<(), AgentError> {
        // A half-made namespace from an interrupted attempt is made again from scratch.
        let _ = ip(&["netns", "del", ns]);
        let _ = ip(&["link", "del", link]);
        ip(&["netns", "add", ns])?;
        let made = (|| {
            ip_in(ns, &["link", "set", "lo", "up"])?;
            write_sysctl(Some(ns), "net.ipv4.ip_forward", "1")?;
            ip(&["link", "add", link, "type", "veth", "peer", "name", UPLINK, "netns", ns])?;
            ip(&["addr", "add", &format!("{HOST_LINK_ADDR}/32"), "dev", link])?;
            ip(&["link", "set", link, "up"])?;
            ip_in(ns, &["addr", "add", &format!("{ROUTER_LINK_ADDR}/32"), "dev", UPLINK])?;
            ip_in(ns, &["link", "set", UPLINK, "up"])?;
            ip_in(ns, &["route", "add", &HOST_LINK_ADDR.to_string(), "dev", UPLINK])?;
            ip_in(ns, &["route", "add", "default", "via", &HOST_LINK_ADDR.to_string(), "dev", UPLINK])?;
            Ok(())
        })();
        if made.is_err() {
            let _ = ip(&["netns", "del", ns]);
            let _ = ip(&["link", "del", link]);
        }
        made
    }

    /// Whether a name is one of Kiln's taps (`t` and 14 hex digits).
    fn is_tap(name: &str) -> bool {
        name.len() == 15 && name.starts_with('t') && name[1..].bytes().all(|b| b.is_ascii_hexdigit())
    }

    /// Makes a port's tap if it is missing and brings it to its wanted state: up,
    /// proxy ARP, a host route to the guest's address and a permanent neighbour entry.
    /// Runs on the namespace's thread, with its netlink connection.
    fn attach(nl: &Netlink, ns: &str, port: &Port, tap: &str, index: Option<u32>) -> Result<(), AgentError> {
        let mac = parse_mac(&port.mac).ok_or_else(|| fail(format!("bad MAC address {}", port.mac)))?;
        let index = match index {
            Some(i) => i,
            None => {
                ip_in(ns, &["tuntap", "add", "dev", tap, "mode", "tap"])?;
                let i = nl.index(tap)?.ok_or_else(|| fail(format!("the tap {tap} vanished as it was made")))?;
                nl.set_mac(i, mac)?;
                i
            }
        };
        // Every pass, not only at creation: a half-made tap from an interrupted pass is
        // finished here.
        write_sysctl(None, &format!("net.ipv4.conf.{tap}.proxy_arp"), "1")?;
        nl.set_up(index)?;
        nl.replace_route(HostRoute { dst: port.ip, prefix: 32, oif: index }, Some(port.gateway), None)?;
        nl.replace_neighbour(index, port.ip, mac)
    }

    /// The ports of a VPC inside its namespace: the router's addresses on `lo`, taps
    /// not wanted removed, the wanted ones made and set. A port that cannot be made is
    /// returned (the first), without holding the others back.
    fn apply_ports(ns: &str, net: &VpcNetwork) -> Result<Option<AgentError>, AgentError> {
        let nl = Netlink::here()?;
        let links = nl.links()?;
        let lo =
            links.iter().find(|l| l.name == "lo").map(|l| l.index).ok_or_else(|| fail(format!("{ns} has no lo")))?;
        if !links.iter().any(|l| l.index == lo && l.up) {
            nl.set_up(lo)?;
        }
        for a in std::iter::once(&IMDS_ADDR).chain(&net.router_addresses) {
            nl.replace_address(lo, *a, 32)?;
        }
        let wanted: Vec<String> = net.ports.iter().map(|p| tap_name(&p.interface_id)).collect();
        for l in links.iter().filter(|l| Self::is_tap(&l.name) && !wanted.contains(&l.name)) {
            nl.delete_link(l.index)?;
        }
        let mut first_error = None;
        for (port, tap) in net.ports.iter().zip(&wanted) {
            let index = links.iter().find(|l| &l.name == tap).map(|l| l.index);
            if let Err(e) = Self::attach(&nl, ns, port, tap, index) {
                first_error.get_or_insert(e);
            }
        }
        Ok(first_error)
    }

    /// The host's routes to a VPC's public addresses, through its router: exactly
    /// `publics`.
    fn apply_public_routes(link: &str, publics: &[Ipv4Addr]) -> Result<(), AgentError> {
        on_host(|| {
            let nl = Netlink::here()?;
            let index = nl.index(link)?.ok_or_else(|| fail(format!("the VPC link {link} is missing")))?;
            for (route, msg) in nl.routes_on(index)? {
                if !(route.prefix == 32 && publics.contains(&route.dst)) {
                    nl.delete_route(msg)?;
                }
            }
            for p in publics {
                nl.replace_route(HostRoute { dst: *p, prefix: 32, oif: index }, None, Some(ROUTER_LINK_ADDR))?;
            }
            Ok(())
        })
    }

    /// Whether the host has a link of this name.
    fn host_has_link(link: &str) -> Result<bool, AgentError> {
        on_host(|| Ok(Netlink::here()?.index(link)?.is_some()))
    }

    /// Makes the host's view of a VPC exactly `net`.
    pub fn apply(&self, net: &VpcNetwork) -> Result<(), AgentError> {
        for p in &net.ports {
            if !valid_mac(&p.mac) {
                return Err(fail(format!("bad MAC address {}", p.mac)));
            }
        }
        let ns = self.netns(&net.vpc_id);
        let link = self.host_link(&net.vpc_id);
        if !Path::new("/run/netns").join(&ns).exists() || !Self::host_has_link(&link)? {
            self.create_namespace(&ns, &link)?;
        }
        let first_error =
            in_netns(&ns, || Self::apply_ports(&ns, net)).map_err(|e| fail(format!("entering {ns}: {e}")))??;
        // The rules first: they guard the overlay (by name) before it carries anything.
        nft_in(Some(&ns), &render(net))?;
        Self::apply_overlay(&ns, net.overlay.as_ref())?;
        let publics: Vec<Ipv4Addr> = net.ports.iter().filter_map(|p| p.public_ip).collect();
        Self::apply_public_routes(&link, &publics)?;
        self.ensure_host_table()?;
        self.answer_for_publics()?;
        first_error.map_or(Ok(()), Err)
    }

    /// The VNI and local address of a namespace's VXLAN device, if it has one.
    fn overlay_identity(ns: &str) -> Result<Option<(u32, Ipv4Addr)>, AgentError> {
        let present =
            in_netns(ns, || Netlink::here()?.index(OVERLAY)).map_err(|e| fail(format!("entering {ns}: {e}")))??;
        if present.is_none() {
            return Ok(None);
        }
        let shown = ip_in(ns, &["-d", "-j", "link", "show", "dev", OVERLAY])?;
        let parsed: serde_json::Value =
            serde_json::from_str(&shown).map_err(|e| fail(format!("reading {OVERLAY} in {ns}: {e}")))?;
        let data = &parsed[0]["linkinfo"]["info_data"];
        let vni = data["id"].as_u64().and_then(|v| u32::try_from(v).ok());
        let local = data["local"].as_str().and_then(|a| a.parse().ok());
        // A device that does not read as ours is made again.
        Ok(Some((vni.unwrap_or(u32::MAX), local.unwrap_or(Ipv4Addr::UNSPECIFIED))))
    }

    /// Makes a VPC's way to its ports on other hosts exactly `overlay`: its VXLAN device
    /// (made again if its VNI or local address differ), a route and a permanent
    /// neighbour entry per remote port, a forwarding entry per remote host. None
    /// removes the device and with it every route through it.
    fn apply_overlay(ns: &str, overlay: Option<&Overlay>) -> Result<(), AgentError> {
        let current = Self::overlay_identity(ns)?;
        let Some(o) = overlay else {
            if current.is_some() {
                ip_in(ns, &["link", "del", OVERLAY])?;
            }
            return Ok(());
        };
        if current.is_some_and(|c| c != (o.vni, o.local)) {
            ip_in(ns, &["link", "del", OVERLAY])?;
        }
        if current != Some((o.vni, o.local)) {
            // Made from the host's namespace and placed in the VPC's: the device's
            // UDP socket stays on the host's underlay.
            let mac = mac_text(overlay_mac(o.local));
            ip(&[
                "link",
                "add",
                OVERLAY,
                "netns",
                ns,
                "address",
                &mac,
                "mtu",
                OVERLAY_MTU,
                "type",
                "vxlan",
                "id",
                &o.vni.to_string(),
                "local",
                &o.local.to_string(),
                "dstport",
                &VXLAN_PORT.to_string(),
                "nolearning",
            ])?;
        }
        let hosts: std::collections::BTreeSet<Ipv4Addr> = o.peers.iter().map(|(_, h)| *h).collect();
        Self::apply_forwarding(ns, &hosts)?;
        in_netns(ns, || {
            let nl = Netlink::here()?;
            let index = nl.index(OVERLAY)?.ok_or_else(|| fail(format!("{OVERLAY} vanished from {ns}")))?;
            nl.set_up(index)?;
            for (route, msg) in nl.routes_on(index)? {
                if !(route.prefix == 32 && o.peers.iter().any(|(ip, _)| *ip == route.dst)) {
                    nl.delete_route(msg)?;
                }
            }
            for (ip, host) in &o.peers {
                nl.replace_neighbour(index, *ip, overlay_mac(*host))?;
                nl.replace_route(HostRoute { dst: *ip, prefix: 32, oif: index }, None, None)?;
            }
            Ok(())
        })
        .map_err(|e| fail(format!("entering {ns}: {e}")))?
    }

    /// The VXLAN device's forwarding entries: each remote host's router MAC to that
    /// host, and nothing else (no entry floods).
    fn apply_forwarding(ns: &str, hosts: &std::collections::BTreeSet<Ipv4Addr>) -> Result<(), AgentError> {
        let bridge_in = |args: &[&str]| run(Command::new("bridge").args(["-n", ns]).args(args), None);
        let shown = bridge_in(&["-j", "fdb", "show", "dev", OVERLAY])?;
        let entries: Vec<serde_json::Value> = serde_json::from_str(&shown).unwrap_or_default();
        let mut present = std::collections::BTreeSet::new();
        for e in &entries {
            let (Some(mac), Some(dst)) = (e["mac"].as_str(), e["dst"].as_str()) else { continue };
            let wanted = dst.parse::<Ipv4Addr>().ok().filter(|h| hosts.contains(h));
            match wanted {
                Some(h) if mac == mac_text(overlay_mac(h)) => {
                    present.insert(h);
                }
                _ => {
                    bridge_in(&["fdb", "del", mac, "dev", OVERLAY, "dst", dst, "self"])?;
                }
            }
        }
        for h in hosts.iter().filter(|h| !present.contains(h)) {
            let mac = mac_text(overlay_mac(*h));
            bridge_in(&["fdb", "replace", &mac, "dev", OVERLAY, "dst", &h.to_string(), "self", "permanent"])?;
        }
        Ok(())
    }

    /// The hosts this host's VPCs send VXLAN to (their forwarding entries): the only
    /// senders it takes VXLAN from.
    fn overlay_hosts(&self) -> std::collections::BTreeSet<Ipv4Addr> {
        let mut hosts = std::collections::BTreeSet::new();
        for vpc in self.list() {
            let ns = self.netns(&vpc);
            let Ok(shown) = run(Command::new("bridge").args(["-n", &ns, "-j", "fdb", "show", "dev", OVERLAY]), None)
            else {
                continue;
            };
            let entries: Vec<serde_json::Value> = serde_json::from_str(&shown).unwrap_or_default();
            hosts.extend(entries.iter().filter_map(|e| e["dst"].as_str()).filter_map(|d| d.parse::<Ipv4Addr>().ok()));
        }
        hosts
    }

    /// The host's interface holding its underlay address, if it has one that is not
    /// loopback.
    fn underlay_device(&self) -> Result<Option<String>, AgentError> {
        let Some(addr) = self.underlay.filter(|a| !a.is_loopback()) else { return Ok(None) };
        let shown = ip(&["-j", "-4", "addr", "show"])?;
        let links: Vec<serde_json::Value> = serde_json::from_str(&shown).unwrap_or_default();
        Ok(links
            .iter()
            .find(|l| {
                l["addr_info"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|i| i["local"].as_str() == Some(&addr.to_string())))
            })
            .and_then(|l| l["ifname"].as_str())
            .map(str::to_owned))
    }

    /// Answers ARP on the underlay for exactly the public addresses routed to this
    /// host's VPCs, so that the network between hosts delivers each to the host of its
    /// instance (and to the next host when the instance moves).
    fn answer_for_publics(&self) -> Result<(), AgentError> {
        let Some(dev) = self.underlay_device()? else { return Ok(()) };
        let in_pool = |a: &Ipv4Addr| {
            let (base, len) = self.public_pool;
            let mask = u32::MAX.checked_shl(32 - u32::from(len.min(32))).unwrap_or(0);
            u32::from(*a) & mask == u32::from(base) & mask
        };
        let prefix = self.link_prefix();
        let wanted: std::collections::BTreeSet<Ipv4Addr> = on_host(|| {
            let nl = Netlink::here()?;
            let mut out = std::collections::BTreeSet::new();
            for l in nl.links()?.iter().filter(|l| l.name.starts_with(&prefix)) {
                for (route, _) in nl.routes_on(l.index)? {
                    if route.prefix == 32 && in_pool(&route.dst) {
                        out.insert(route.dst);
                    }
                }
            }
            Ok::<_, AgentError>(out)
        })?;
        let shown = ip(&["-j", "neigh", "show", "proxy", "dev", &dev])?;
        let entries: Vec<serde_json::Value> = serde_json::from_str(&shown).unwrap_or_default();
        let mut present = std::collections::BTreeSet::new();
        for a in entries.iter().filter_map(|e| e["dst"].as_str()).filter_map(|d| d.parse::<Ipv4Addr>().ok()) {
            if !in_pool(&a) {
                continue;
            }
            if wanted.contains(&a) {
                present.insert(a);
            } else {
                ip(&["neigh", "del", "proxy", &a.to_string(), "dev", &dev])?;
            }
        }
        for a in wanted.difference(&present) {
            ip(&["neigh", "replace", "proxy", &a.to_string(), "dev", &dev])?;
        }
        Ok(())
    }

    /// The host's own table: with egress NAT, instances' public traffic may leave
    /// through the host (masqueraded); without it, nothing is forwarded between the
    /// VPCs' links and the host's other interfaces. The host itself always reaches the
    /// public addresses (that traffic is not forwarded).
    fn ensure_host_table(&self) -> Result<(), AgentError> {
        let (base, len) = self.public_pool;
        // The pool is this Kiln's: an address of it with no instance behind it (no
        // route to an internet gateway, or stopped) is unreachable, never sent out by
        // the host's default route.
        on_host(|| Netlink::here()?.unreachable(base, len, true))?;
        let (t, links) = (self.host_table(), self.link_prefix());
        let mut nat = String::new();
        let mut forward = format!("\t\tiifname \"{links}*\" oifname \"{links}*\" accept\n");
        if self.underlay_device()?.is_some() {
            // Public addresses are reached from the network between hosts (each VPC's
            // router applies its security groups), and their replies go back.
            write_sysctl(None, "net.ipv4.ip_forward", "1")?;
            let _ = writeln!(forward, "\t\toifname \"{links}*\" ip daddr {base}/{len} accept");
            let _ = writeln!(forward, "\t\tiifname \"{links}*\" ct state established,related accept");
        }
        if self.egress_nat {
            write_sysctl(None, "net.ipv4.ip_forward", "1")?;
            let _ = writeln!(nat, "\t\tip saddr {base}/{len} oifname != \"{links}*\" masquerade");
            let _ = writeln!(forward, "\t\tiifname \"{links}*\" ip saddr {base}/{len} accept");
            let _ = writeln!(forward, "\t\toifname \"{links}*\" ct state established,related accept");
        }
        // VXLAN reaches a VPC's routers from the VPCs' other hosts only: never from a
        // guest (through its router, to this host or, NATed, to another), never from
        // anything else on the network.
        // Only for this host's own address: other VXLAN on the machine is not Kiln's.
        let mut input = format!("\t\tiifname \"{links}*\" udp dport {VXLAN_PORT} drop\n");
        if let Some(own) = self.underlay.filter(|a| !a.is_loopback()) {
            let hosts: Vec<String> = self.overlay_hosts().iter().map(Ipv4Addr::to_string).collect();
            if hosts.is_empty() {
                let _ = writeln!(input, "\t\tip daddr {own} udp dport {VXLAN_PORT} drop");
            } else {
                let set = hosts.join(", ");
                let _ = writeln!(input, "\t\tip daddr {own} udp dport {VXLAN_PORT} ip saddr != {{ {set} }} drop");
                // First: before anything that lets a guest's traffic out.
                forward.insert_str(
                    0,
                    &format!("\t\tiifname \"{links}*\" ip daddr {{ {set} }} udp dport {VXLAN_PORT} drop\n"),
                );
            }
        }
        let _ = writeln!(forward, "\t\tiifname \"{links}*\" drop\n\t\toifname \"{links}*\" drop");
        nft_in(
            None,
            &format!(
                "table ip {t}\ndelete table ip {t}\ntable ip {t} {{\n\
                 \tchain postrouting {{\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n{nat}\t}}\n\
                 \tchain input {{\n\t\ttype filter hook input priority filter; policy accept;\n{input}\t}}\n\
                 \tchain forward {{\n\t\ttype filter hook forward priority filter; policy accept;\n{forward}\t}}\n}}\n"
            ),
        )
    }

    /// Removes a VPC's namespace; its link, taps, routes and rules go with it.
    pub fn remove(&self, vpc_id: &str) -> Result<(), AgentError> {
        let ns = self.netns(vpc_id);
        if Path::new("/run/netns").join(&ns).exists() {
            ip(&["netns", "del", &ns])?;
        }
        let link = self.host_link(vpc_id);
        on_host(|| {
            let nl = Netlink::here()?;
            match nl.index(&link)? {
                Some(index) => nl.delete_link(index),
                None => Ok(()),
            }
        })?;
        self.answer_for_publics()?;
        if self.list().is_empty() {
            let t = self.host_table();
            let _ = nft_in(None, &format!("table ip {t}\ndelete table ip {t}\n"));
            let (base, len) = self.public_pool;
            on_host(|| Netlink::here()?.unreachable(base, len, false))?;
        }
        Ok(())
    }
}

/// The identity of the namespace named `ns` while it exists: the inode of its
/// namespace file, unique among the namespaces alive at one time.
pub fn netns_id(ns: &str) -> Option<u64> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(Path::new("/run/netns").join(ns)).ok().map(|m| m.ino())
}

/// The interface index of `dev` inside the namespace `ns`.
pub fn index_in(ns: &str, dev: &str) -> Option<u32> {
    in_netns(ns, || nix::net::if_::if_nametoindex(dev).ok()).ok().flatten()
}

/// Sockets bound to a tap inside its namespace (see `HostAgent::port_sockets`).
pub fn port_sockets(ns: &str, tap: &str, hop_limit: u32) -> Result<PortSockets, AgentError> {
    use socket2::{Domain, Socket, Type};
    let make = || -> std::io::Result<PortSockets> {
        let udp = Socket::new(Domain::IPV4, Type::DGRAM, None)?;
        udp.set_reuse_address(true)?;
        udp.bind_device(Some(tap.as_bytes()))?;
        udp.set_broadcast(true)?;
        udp.bind(&std::net::SocketAddr::from((Ipv4Addr::UNSPECIFIED, 67)).into())?;
        udp.set_nonblocking(true)?;
        let tcp = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        tcp.set_reuse_address(true)?;
        tcp.bind_device(Some(tap.as_bytes()))?;
        // Accepted connections inherit the TTL: a guest's containers behind one more
        // hop than the limit allows never see the answers.
        tcp.set_ttl_v4(hop_limit.clamp(1, 64))?;
        tcp.bind(&std::net::SocketAddr::from((IMDS_ADDR, 80)).into())?;
        tcp.listen(64)?;
        tcp.set_nonblocking(true)?;
        Ok(PortSockets { dhcp: udp.into(), imds: tcp.into() })
    };
    in_netns(ns, make).and_then(|r| r).map_err(|e| fail(format!("binding the guest services of {tap} in {ns}: {e}")))
}

/// A UDP socket bound to `addr` inside the namespace `ns`.
pub fn dns_sockets_in(ns: &str, addr: std::net::SocketAddrV4) -> Result<kiln_agent_api::DnsSockets, AgentError> {
    let make = || -> std::io::Result<kiln_agent_api::DnsSockets> {
        let udp = std::net::UdpSocket::bind(addr)?;
        udp.set_nonblocking(true)?;
        let tcp = std::net::TcpListener::bind(addr)?;
        tcp.set_nonblocking(true)?;
        Ok(kiln_agent_api::DnsSockets { udp, tcp })
    };
    in_netns(ns, make).and_then(|r| r).map_err(|e| fail(format!("binding {addr} in {ns}: {e}")))
}

/// A MAC address's six bytes (`02:ab:…`).
/// A MAC address as `ip` and `bridge` write it.
fn mac_text(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

fn parse_mac(mac: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = mac.split(':');
    for b in &mut out {
        let p = parts.next().filter(|p| p.len() == 2)?;
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

fn valid_mac(mac: &str) -> bool {
    parse_mac(mac).is_some()
}

fn peers(list: &[(Ipv4Addr, u8)]) -> Option<String> {
    if list.iter().any(|(_, len)| *len == 0) {
        return None;
    }
    let items: Vec<String> = list.iter().map(|(a, l)| format!("{a}/{}", (*l).min(32))).collect();
    Some(format!("{{ {} }}", items.join(", ")))
}

/// One security-group rule as an nftables rule: `dir` is `saddr` for ingress (peers
/// are sources) or `daddr` for egress.
fn flow(rule: &FlowRule, dir: &str, verdict: &str) -> Option<String> {
    if rule.peers.is_empty() {
        // A group with no members yet matches nobody.
        return None;
    }
    let mut r = String::new();
    if let Some(set) = peers(&rule.peers) {
        let _ = write!(r, "ip {dir} {set} ");
    }
    let range = |from: Option<u16>, to: Option<u16>| match (from, to) {
        (Some(f), Some(t)) if f == t => Some(f.to_string()),
        (Some(f), Some(t)) => Some(format!("{f}-{t}")),
        (Some(f), None) => Some(f.to_string()),
        _ => None,
    };
    match rule.protocol {
        Protocol::All => {}
        Protocol::Tcp | Protocol::Udp => {
            let name = if rule.protocol == Protocol::Tcp { "tcp" } else { "udp" };
            match range(rule.from, rule.to) {
                Some(ports) => {
                    let _ = write!(r, "{name} dport {ports} ");
                }
                None => {
                    let _ = write!(r, "meta l4proto {name} ");
                }
            }
        }
        Protocol::Icmp => {
            r.push_str("meta l4proto icmp ");
            if let Some(t) = rule.from {
                let _ = write!(r, "icmp type {t} ");
                if let Some(c) = rule.to {
                    let _ = write!(r, "icmp code {c} ");
                }
            }
        }
        Protocol::Number(n) => {
            let _ = write!(r, "meta l4proto {n} ");
        }
    }
    r.push_str(verdict);
    Some(r)
}

/// A chain name for one direction of an ACL (`ai_<hex>` in, `ao_<hex>` out).
fn acl_chain(id: &str, egress: bool) -> String {
    let hex: String = id.chars().filter(char::is_ascii_alphanumeric).skip(3).collect();
    format!("{}_{hex}", if egress { "ao" } else { "ai" })
}

/// Network ACLs: stateless, so a base chain ahead of the stateful one (connection
/// tracking does not let replies through here). Traffic crossing a port's subnet
/// boundary goes through its ACL's entries in number order: `return` lets it on to
/// the security groups, `drop` ends it, and nothing matching is dropped.
fn render_acls(s: &mut String, net: &VpcNetwork) {
    for acl in &net.acls {
        for (egress, rules) in [(false, &acl.ingress), (true, &acl.egress)] {
            let _ = writeln!(s, "\tchain {} {{", acl_chain(&acl.id, egress));
            for r in rules {
                let flow_rule = FlowRule { protocol: r.protocol, from: r.from, to: r.to, peers: vec![r.cidr] };
                let verdict = if r.allow { "return" } else { "drop" };
                if let Some(line) = flow(&flow_rule, if egress { "daddr" } else { "saddr" }, verdict) {
                    let _ = writeln!(s, "\t\t{line}");
                }
            }
            s.push_str("\t\tdrop\n\t}\n");
        }
    }
    s.push_str("\tchain acl {\n\t\ttype filter hook forward priority filter - 10; policy accept;\n");
    for p in net.ports.iter().filter(|p| net.acls.iter().any(|a| a.id == p.acl)) {
        let t = tap_name(&p.interface_id);
        let (addr, len) = p.subnet;
        let _ = writeln!(s, "\t\tiifname \"{t}\" ip daddr != {addr}/{len} jump {}", acl_chain(&p.acl, true));
        let _ = writeln!(s, "\t\toifname \"{t}\" ip saddr != {addr}/{len} jump {}", acl_chain(&p.acl, false));
    }
    s.push_str("\t}\n");
}

/// The nftables table of one VPC's namespace: anti-spoofing on every port, 1:1 NAT for
/// public addresses, each port's security groups (egress on the way out of its tap,
/// ingress on the way in; stateful), and what guests may ask of the router itself.
pub fn render(net: &VpcNetwork) -> String {
    let mut s = String::from("table inet kiln\ndelete table inet kiln\ntable inet kiln {\n");
    // Anti-spoofing: a port sends only from its own MAC and IPv4 address (DHCP asks
    // from 0.0.0.0), and no IPv6.
    s.push_str("\tchain guard {\n\t\ttype filter hook prerouting priority raw; policy accept;\n");
    for p in &net.ports {
        let t = tap_name(&p.interface_id);
        let _ = writeln!(s, "\t\tiifname \"{t}\" ether saddr != {} drop", p.mac);
        let _ = writeln!(s, "\t\tiifname \"{t}\" meta nfproto ipv6 drop");
        let _ = writeln!(s, "\t\tiifname \"{t}\" ip saddr 0.0.0.0 udp dport 67 accept");
        let _ = writeln!(s, "\t\tiifname \"{t}\" ip saddr != {} drop", p.ip);
    }
    // From the VPC's other hosts: only their ports' addresses, and no IPv6.
    if let Some(o) = &net.overlay {
        let _ = writeln!(s, "\t\tiifname \"{OVERLAY}\" meta nfproto ipv6 drop");
        let peers: Vec<String> = o.peers.iter().map(|(ip, _)| ip.to_string()).collect();
        if peers.is_empty() {
            let _ = writeln!(s, "\t\tiifname \"{OVERLAY}\" drop");
        } else {
            let _ = writeln!(s, "\t\tiifname \"{OVERLAY}\" ip saddr != {{ {} }} drop", peers.join(", "));
        }
    }
    s.push_str("\t}\n");
    s.push_str("\tchain nat_in {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n");
    for p in &net.ports {
        if let Some(public) = p.public_ip {
            let _ = writeln!(s, "\t\tiifname \"{UPLINK}\" ip daddr {public} dnat ip to {}", p.ip);
        }
    }
    s.push_str("\t}\n\tchain nat_out {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n");
    for p in &net.ports {
        if let Some(public) = p.public_ip {
            let _ = writeln!(s, "\t\toifname \"{UPLINK}\" ip saddr {} snat ip to {public}", p.ip);
        }
    }
    s.push_str("\t}\n");
    for p in &net.ports {
        let t = tap_name(&p.interface_id);
        let _ = writeln!(s, "\tchain out_{t} {{");
        for r in p.egress.iter().filter_map(|r| flow(r, "daddr", "return")) {
            let _ = writeln!(s, "\t\t{r}");
        }
        s.push_str("\t\tdrop\n\t}\n");
        let _ = writeln!(s, "\tchain in_{t} {{");
        for r in p.ingress.iter().filter_map(|r| flow(r, "saddr", "accept")) {
            let _ = writeln!(s, "\t\t{r}");
        }
        s.push_str("\t\tdrop\n\t}\n");
    }
    render_acls(&mut s, net);
    s.push_str("\tchain forward {\n\t\ttype filter hook forward priority filter; policy drop;\n");
    s.push_str("\t\tct state established,related accept\n\t\tct state invalid drop\n");
    for p in &net.ports {
        let t = tap_name(&p.interface_id);
        let _ = writeln!(s, "\t\tiifname \"{t}\" jump out_{t}");
    }
    for p in &net.ports {
        let t = tap_name(&p.interface_id);
        let _ = writeln!(s, "\t\toifname \"{t}\" jump in_{t}");
    }
    // To the VPC's ports on other hosts, once the sender's egress rules let it out:
    // their own host applies their ingress rules. Another host's ports reach this
    // host's ports only, never its uplink.
    let _ = writeln!(s, "\t\toifname \"{OVERLAY}\" accept");
    let _ = writeln!(s, "\t\tiifname \"{OVERLAY}\" oifname \"{UPLINK}\" drop");
    let _ = writeln!(s, "\t\toifname \"{UPLINK}\" accept");
    s.push_str("\t}\n");
    // The router itself: DHCP, the metadata service, DNS and ping, nothing else.
    s.push_str("\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n");
    s.push_str("\t\tct state established,related accept\n");
    s.push_str("\t\tiifname \"t*\" udp dport 67 accept\n");
    let _ = writeln!(s, "\t\tiifname \"t*\" ip daddr {IMDS_ADDR} tcp dport 80 accept");
    s.push_str("\t\tiifname \"t*\" udp dport 53 accept\n\t\tiifname \"t*\" tcp dport 53 accept\n");
    s.push_str("\t\tiifname \"t*\" icmp type echo-request accept\n");
    s.push_str("\t\tiifname \"t*\" drop\n");
    let _ = writeln!(s, "\t\tiifname \"{OVERLAY}\" drop");
    s.push_str("\t}\n}\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_agent_api::{Acl, AclRule};

    fn port(id: &str, ip: [u8; 4], public: Option<[u8; 4]>, ingress: Vec<FlowRule>) -> Port {
        Port {
            interface_id: kiln_types::ids::primary_interface(id),
            instance_id: id.into(),
            mac: "02:00:00:00:00:01".into(),
            ip: Ipv4Addr::from(ip),
            subnet: (Ipv4Addr::new(10, 0, 0, 0), 24),
            acl: "acl-0123456789abcdef0".into(),
            gateway: Ipv4Addr::new(10, 0, 0, 1),
            public_ip: public.map(Ipv4Addr::from),
            ingress,
            egress: vec![FlowRule {
                protocol: Protocol::All,
                from: None,
                to: None,
                peers: vec![(Ipv4Addr::UNSPECIFIED, 0)],
            }],
        }
    }

    #[test]
    fn rules_follow_the_groups() {
        let ssh =
            FlowRule { protocol: Protocol::Tcp, from: Some(22), to: Some(22), peers: vec![(Ipv4Addr::UNSPECIFIED, 0)] };
        let web = FlowRule {
            protocol: Protocol::Tcp,
            from: Some(8000),
            to: Some(8080),
            peers: vec![(Ipv4Addr::new(10, 0, 0, 0), 16)],
        };
        let members =
            FlowRule { protocol: Protocol::All, from: None, to: None, peers: vec![(Ipv4Addr::new(10, 0, 0, 9), 32)] };
        let nobody = FlowRule { protocol: Protocol::Udp, from: None, to: None, peers: vec![] };
        let ping =
            FlowRule { protocol: Protocol::Icmp, from: Some(8), to: None, peers: vec![(Ipv4Addr::UNSPECIFIED, 0)] };
        let net = VpcNetwork {
            vpc_id: "vpc-0123456789abcdef0".into(),
            router_addresses: vec![Ipv4Addr::new(10, 0, 0, 1)],
            ports: vec![port(
                "i-0123456789abcdef0",
                [10, 0, 0, 5],
                Some([100, 64, 0, 1]),
                vec![ssh, web, members, nobody, ping],
            )],
            acls: vec![Acl {
                id: "acl-0123456789abcdef0".into(),
                ingress: vec![
                    AclRule {
                        number: 50,
                        allow: false,
                        protocol: Protocol::Tcp,
                        from: Some(22),
                        to: Some(22),
                        cidr: (Ipv4Addr::UNSPECIFIED, 0),
                    },
                    AclRule {
                        number: 100,
                        allow: true,
                        protocol: Protocol::All,
                        from: None,
                        to: None,
                        cidr: (Ipv4Addr::new(192, 0, 2, 0), 24),
                    },
                ],
                egress: vec![AclRule {
                    number: 100,
                    allow: true,
                    protocol: Protocol::All,
                    from: None,
                    to: None,
                    cidr: (Ipv4Addr::UNSPECIFIED, 0),
                }],
            }],
            overlay: Some(Overlay {
                vni: 7,
                local: Ipv4Addr::new(192, 0, 2, 11),
                peers: vec![(Ipv4Addr::new(10, 0, 0, 9), Ipv4Addr::new(192, 0, 2, 12))],
            }),
        };
        let s = render(&net);
        // The VPC's other hosts: only their ports' addresses come in over the overlay,
        // and only to this host's ports (not to the router, not out of its uplink).
        assert!(s.contains("iifname \"vx0\" ip saddr != { 10.0.0.9 } drop"), "{s}");
        assert!(
            s.contains(
                "oifname \"vx0\" accept\n\t\tiifname \"vx0\" oifname \"uplink\" drop\n\t\toifname \"uplink\" accept"
            ),
            "{s}"
        );
        assert!(s.contains("iifname \"t*\" drop\n\t\tiifname \"vx0\" drop\n"), "{s}");
        let t = tap_name("i-0123456789abcdef0");
        assert!(s.contains(&format!("iifname \"{t}\" ether saddr != 02:00:00:00:00:01 drop")), "{s}");
        assert!(s.contains(&format!("iifname \"{t}\" ip saddr != 10.0.0.5 drop")));
        assert!(s.contains("iifname \"uplink\" ip daddr 100.64.0.1 dnat ip to 10.0.0.5"));
        assert!(s.contains("oifname \"uplink\" ip saddr 10.0.0.5 snat ip to 100.64.0.1"));
        assert!(s.contains("\t\ttcp dport 22 accept\n"), "{s}");
        assert!(s.contains("ip saddr { 10.0.0.0/16 } tcp dport 8000-8080 accept"));
        assert!(s.contains("ip saddr { 10.0.0.9/32 } accept"));
        assert!(s.contains("meta l4proto icmp icmp type 8 accept"));
        assert!(!s.contains("udp accept"), "a rule naming an empty group matches nobody");
        assert!(s.contains(&format!("chain out_{t} {{\n\t\treturn\n\t\tdrop")), "egress allows all: {s}");
        assert!(s.starts_with("table inet kiln\ndelete table inet kiln\n"), "the table is replaced atomically");
        // The ACL: stateless, ahead of the groups, entries in order, then deny.
        assert!(s.contains("type filter hook forward priority filter - 10; policy accept;"), "{s}");
        assert!(
            s.contains(
                "chain ai_0123456789abcdef0 {\n\t\ttcp dport 22 drop\n\t\tip saddr { 192.0.2.0/24 } return\n\t\tdrop\n"
            ),
            "{s}"
        );
        assert!(s.contains("chain ao_0123456789abcdef0 {\n\t\treturn\n\t\tdrop\n"), "{s}");
        assert!(s.contains(&format!("oifname \"{t}\" ip saddr != 10.0.0.0/24 jump ai_0123456789abcdef0")), "{s}");
        assert!(s.contains(&format!("iifname \"{t}\" ip daddr != 10.0.0.0/24 jump ao_0123456789abcdef0")), "{s}");
        // nft itself accepts the rule set, where it is installed.
        if let Ok(mut child) = Command::new("nft")
            .args(["-c", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
        {
            use std::io::Write as _;
            if let Some(mut stdin) = child.stdin.take() {
                let _ = stdin.write_all(s.as_bytes());
            }
            if let Ok(out) = child.wait_with_output() {
                let err = String::from_utf8_lossy(&out.stderr);
                // Without privileges nft cannot check; with them, the set must parse.
                if !err.contains("Operation not permitted") {
                    assert!(out.status.success(), "nft -c refused the rule set: {err}\n{s}");
                }
            }
        }
    }

    #[test]
    fn taps_and_links_fit_linux_names() {
        assert_eq!(tap_name("i-0123456789abcdef0"), "t3456789abcdef0");
        let c = NetConfig {
            tag: "ab12".into(),
            public_pool: (Ipv4Addr::new(100, 64, 0, 0), 16),
            egress_nat: false,
            underlay: None,
        };
        assert!(c.host_link("vpc-0123456789abcdef0").len() <= 15);
        assert!(valid_mac("02:aa:bb:cc:dd:ee"));
        assert!(!valid_mac("02:aa:bb:cc:dd:e; drop"));
    }
}
