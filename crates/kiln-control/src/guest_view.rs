//! What guests' own services read: a consistent view of every live port on this
//! server's own host (its DHCP
//! lease, its VPC, its metadata hop limit) and of every VPC's names, made by the
//! reconciler from the one read of each pass and published whole. DHCP, DNS and the
//! guest-services loop read this view, never the store, so a guest that floods them
//! costs the database nothing.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;
use kiln_store::instances::Instance;
use kiln_store::interfaces::Interface;
use kiln_store::vpcs;
use kiln_types::ids::primary_interface;

use crate::network::{dns_address, gateway, has_port};
use crate::{Cloud, Error, Result};

/// What DHCP tells one guest; it never changes while the instance lives.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Lease {
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    /// Name servers: the VPC's resolver unless its DHCP options set says otherwise.
    pub dns: Vec<Ipv4Addr>,
    pub ntp: Vec<Ipv4Addr>,
    pub hostname: String,
    pub domain: String,
}

/// One live interface's port (an instance has one per interface).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortView {
    /// The interface, whose tap the port's services are bound to.
    pub interface_id: String,
    /// The instance it is attached to, whose metadata it serves.
    pub instance_id: String,
    pub vpc_id: String,
    pub hop_limit: u32,
    pub lease: Option<Lease>,
    /// Its VPC's resolver address (base + 2), while the VPC has DNS support.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Ipv4Addr>,
}

/// One VPC with live instances.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VpcView {
    pub region: String,
    pub dns: Option<Ipv4Addr>,
    /// Whether its resolver answers at all (EC2's enableDnsSupport).
    pub dns_support: bool,
    /// Its instances' public addresses and their private ones (split-horizon DNS),
    /// while the VPC gives public DNS names (EC2's enableDnsHostnames).
    pub publics: Vec<(Ipv4Addr, Ipv4Addr)>,
    /// The joined hosts its live instances are on, each with its guests' private
    /// addresses in the VPC: the DNS questions a host relays are those guests'.
    pub hosts: HashMap<String, Vec<Ipv4Addr>>,
}

impl VpcView {
    /// The view of `i`'s VPC (`record`, as the store has it), with no instances yet.
    fn new(i: &Instance, record: Option<&vpcs::Vpc>) -> Self {
        VpcView {
            region: i.region.clone(),
            dns: record.and_then(|r| dns_address(&r.cidr)),
            dns_support: record.is_none_or(|r| r.dns_support),
            publics: Vec::new(),
            hosts: HashMap::new(),
        }
    }
}

/// Every live port and VPC, as of one reconciler pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestView {
    /// By interface id.
    pub ports: HashMap<String, PortView>,
    pub vpcs: HashMap<String, VpcView>,
}

/// An interface's MAC address as bytes.
fn mac_bytes(id: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let text = kiln_types::ids::instance_mac(id);
    let mut parts = text.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    Some(mac)
}

/// The VPCs, subnet CIDRs and DHCP options sets a view is made from.
pub struct Networks {
    pub vpcs: HashMap<String, vpcs::Vpc>,
    pub subnet_cidrs: HashMap<String, String>,
    pub dhcp: HashMap<String, vpcs::DhcpOptions>,
}

/// The lease of one interface: its address in its subnet, and its VPC's names.
fn lease(i: &Instance, interface_id: &str, ip: &str, subnet_id: &str, n: &Networks) -> Option<Lease> {
    let record = n.vpcs.get(&i.vpc_id);
    let subnet = n.subnet_cidrs.get(subnet_id)?;
    let resolver = dns_address(&record?.cidr)?;
    let set = record.and_then(|r| r.dhcp_options_id.as_ref()).and_then(|d| n.dhcp.get(d));
    let (domain, dns, ntp) = match set {
        Some(set) => crate::dhcp_options::lease_values(set, Some(resolver)),
        None => (None, vec![resolver], Vec::new()),
    };
    Some(Lease {
        mac: mac_bytes(interface_id)?,
        ip: ip.parse().ok()?,
        prefix_len: subnet.parse::<Ipv4Net>().ok()?.prefix_len(),
        gateway: gateway(subnet)?,
        dns,
        ntp,
        hostname: kiln_types::region::private_host(ip),
        domain: domain.unwrap_or_else(|| kiln_types::region::internal_domain(&i.region)),
    })
}

/// The view of `all` (the instances of one pass) and the interfaces attached to them,
/// with their networks: ports of the instances on this server's own host.
pub fn build(all: &[Instance], attached: &[Interface], n: &Networks) -> GuestView {
    build_for(all, attached, n, None)
}

/// The view with the ports of the instances on `host` (None: this server's own).
fn build_for(all: &[Instance], attached: &[Interface], n: &Networks, host: Option<&str>) -> GuestView {
    let mut view = GuestView::default();
    for i in all.iter().filter(|i| has_port(i.state)) {
        let record = n.vpcs.get(&i.vpc_id);
        let primary = primary_interface(&i.id);
        let more = attached.iter().filter(|e| e.attachment.as_ref().is_some_and(|a| a.instance_id == i.id));
        // Ports only of the guests on the host the view is for: each host's guests are
        // served beside its agent. Names are the whole VPC's.
        let here = i.host_id.as_deref() == host;
        let interfaces: Vec<(String, &str, &str)> =
            std::iter::once((primary, i.private_ip.as_str(), i.subnet_id.as_str()))
                .chain(more.map(|e| (e.id.clone(), e.private_ip.as_str(), e.subnet_id.as_str())))
                .collect();
        if let Some(h) = i.host_id.as_deref() {
            let v = view.vpcs.entry(i.vpc_id.clone()).or_insert_with(|| VpcView::new(i, record));
            let guests = v.hosts.entry(h.to_owned()).or_default();
            guests.extend(interfaces.iter().filter_map(|(_, ip, _)| ip.parse::<Ipv4Addr>().ok()));
        }
        for (interface_id, ip, subnet_id) in interfaces.into_iter().filter(|_| here) {
            view.ports.insert(
                interface_id.clone(),
                PortView {
                    lease: lease(i, &interface_id, ip, subnet_id, n),
                    interface_id,
                    instance_id: i.id.clone(),
                    vpc_id: i.vpc_id.clone(),
                    hop_limit: i.hop_limit.clamp(1, 64) as u32,
                    dns: record.filter(|r| r.dns_support).and_then(|r| dns_address(&r.cidr)),
                },
            );
        }
        let v = view.vpcs.entry(i.vpc_id.clone()).or_insert_with(|| VpcView::new(i, record));
        let named = record.is_none_or(|r| r.dns_hostnames);
        if let (true, Some(p), Ok(private)) =
            (named, i.public_ip.as_deref().and_then(|p| p.parse().ok()), i.private_ip.parse())
        {
            v.publics.push((p, private));
        }
    }
    view
}

impl Cloud {
    /// The view as of the last reconciler pass.
    pub fn guest_view(&self) -> Arc<GuestView> {
        self.view.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Makes and publishes the view for the instances of this pass.
    pub(crate) fn publish_view(&self, all: &[Instance], attached: &[Interface]) -> Result<()> {
        let networks = self.store.read(networks)?;
        let view = Arc::new(build(all, attached, &networks));
        *self.view.write().unwrap_or_else(|p| p.into_inner()) = view;
        Ok(())
    }

    /// The live ports of the guests placed on joined host `host`, with their leases,
    /// read from the store now: what its agent serves them (DHCP, metadata).
    pub fn host_ports(&self, host: &kiln_agent_api::HostId) -> Result<Vec<PortView>> {
        let (all, attached, networks) = self.store.read(|c| {
            let placed: Vec<Instance> = kiln_store::instances::all(c)?
                .into_iter()
                .filter(|i| i.host_id.as_deref() == Some(host.as_str()))
                .collect();
            Ok::<_, Error>((placed, kiln_store::interfaces::attached(c)?, networks(c)?))
        })?;
        Ok(build_for(&all, &attached, &networks, Some(host.as_str())).ports.into_values().collect())
    }
}

/// The networks a view is made from, as the store has them.
fn networks(c: &kiln_store::Connection) -> Result<Networks> {
    Ok(Networks {
        vpcs: vpcs::all_vpcs(c)?.into_iter().map(|v| (v.id.clone(), v)).collect(),
        subnet_cidrs: vpcs::subnet_cidrs(c)?,
        dhcp: vpcs::all_dhcp_options(c)?.into_iter().map(|d| (d.id.clone(), d)).collect(),
    })
}
