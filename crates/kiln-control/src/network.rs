//! What each VPC's network should be on the host, from the store: a port for every
//! interface of every instance that has a VM (pending to shutting-down: its primary
//! interface and those attached to it), each port's security-group rules with
//! group references resolved to members' addresses, and public addresses (an Elastic IP,
//! else one from the pool) for instances whose subnet routes to an attached internet
//! gateway: without that route, the address is not reachable, as on EC2.
//! The reconciler hands the result to the host agent whenever it changes, so rule
//! changes reach running instances within one pass.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use kiln_agent_api::{FlowRule, Port, Protocol, VpcNetwork};
use kiln_store::instances::{self, Instance};
use kiln_store::interfaces::Interface;
use kiln_store::security_groups::{self, Rule};
use kiln_store::{routing, vpcs, Scope};
use kiln_types::ids::{instance_mac, primary_interface as instance_primary};

use crate::{Cloud, Error, Result};

/// One interface of a live instance, on its way to being a host port.
struct PortPlan<'a> {
    interface_id: String,
    instance: &'a Instance,
    ip: &'a str,
    subnet_id: &'a str,
    groups: &'a [String],
    public_ip: Option<&'a str>,
}

/// States in which an instance has a VM, hence a port.
pub fn has_port(state: kiln_types::InstanceState) -> bool {
    use kiln_types::InstanceState::*;
    matches!(state, Pending | Running | Stopping | ShuttingDown)
}

/// The `n`th address of a network.
fn nth(net: &str, n: u32) -> Option<Ipv4Addr> {
    let net: Ipv4Net = net.parse().ok()?;
    Some(Ipv4Addr::from(u32::from(net.network()) + n))
}

/// A subnet's gateway, as EC2 places it: the network address + 1.
pub fn gateway(subnet_cidr: &str) -> Option<Ipv4Addr> {
    nth(subnet_cidr, 1)
}

/// A VPC's Amazon-provided DNS: the network address + 2.
pub fn dns_address(vpc_cidr: &str) -> Option<Ipv4Addr> {
    nth(vpc_cidr, 2)
}

pub(crate) fn protocol(p: &str) -> Option<Protocol> {
    Some(match p {
        "-1" | "all" => Protocol::All,
        "tcp" | "6" => Protocol::Tcp,
        "udp" | "17" => Protocol::Udp,
        "icmp" | "1" => Protocol::Icmp,
        // IPv6 is not routed in a VPC here.
        "icmpv6" | "58" => return None,
        n => Protocol::Number(n.parse().ok()?),
    })
}

fn port_bound(p: Option<i32>) -> Option<u16> {
    p.filter(|p| *p >= 0).and_then(|p| u16::try_from(p).ok())
}

/// One stored rule as a flow, or None for rules that cannot match IPv4 traffic.
fn flow(r: &Rule, members: &HashMap<String, Vec<Ipv4Addr>>) -> Option<FlowRule> {
    let protocol = protocol(&r.protocol)?;
    let peers = if let Some(cidr) = &r.cidr_ipv4 {
        let net: Ipv4Net = cidr.parse().ok()?;
        vec![(net.network(), net.prefix_len())]
    } else if let Some(g) = &r.ref_group_id {
        members.get(g).map(|ips| ips.iter().map(|a| (*a, 32)).collect()).unwrap_or_default()
    } else {
        return None;
    };
    let (from, to) = match protocol {
        Protocol::Tcp | Protocol::Udp | Protocol::Icmp => (port_bound(r.from_port), port_bound(r.to_port)),
        _ => (None, None),
    };
    Some(FlowRule { protocol, from, to, peers })
}

impl Cloud {
    /// Gives instances that want a public address one from the pool (lowest free
    /// first); fails with InsufficientFreeAddressesInSubnet-like advice when it is full.
    /// (An instance with an Elastic IP reads as having its address, so it gets none.)
    fn assign_public_ips(&self, live: &mut [Instance]) -> Result<()> {
        for i in live.iter_mut().filter(|i| i.wants_public_ip && i.public_ip.is_none()) {
            let pool = self.public_pool;
            self.store.write(|tx| {
                let mut used = instances::public_ips(tx)?;
                used.extend(routing::all_addresses(tx)?.into_iter().map(|a| a.public_ip));
                let free =
                    pool.hosts().map(|a| a.to_string()).find(|a| !used.contains(a)).ok_or_else(|| Error::Host {
                        context: "public addresses".into(),
                        detail: format!("the pool {pool} is used up; give `kiln serve --public-ip-pool` a larger one"),
                    })?;
                // Only while the instance is still pending or running: a stop that
                // landed after this pass read it keeps it without an address.
                if instances::set_public_ip(tx, &i.id, &free)? {
                    i.public_ip = Some(free);
                }
                Ok::<_, Error>(())
            })?;
        }
        Ok(())
    }

    /// Every VPC that should have a network on this host, as the agent makes it.
    /// `all` is the reconciler's one read of the instances for this pass, so that an
    /// instance launched meanwhile waits for the next pass instead of starting without
    /// its port.
    pub fn desired_networks(&self, all: &[Instance], attached: &[Interface]) -> Result<Vec<VpcNetwork>> {
        let mut live: Vec<Instance> = all.iter().filter(|i| has_port(i.state)).cloned().collect();
        self.assign_public_ips(&mut live)?;
        // Scopes in play: rules and subnets are read once per account and region.
        let mut by_scope: BTreeMap<(String, String), Vec<&Instance>> = BTreeMap::new();
        for i in &live {
            by_scope.entry((i.account_id.clone(), i.region.clone())).or_default().push(i);
        }
        let mut nets: BTreeMap<String, VpcNetwork> = BTreeMap::new();
        for ((account, region), list) in by_scope {
            let scope = Scope { account, region };
            let (rules, subnets, vpc_list, internet, acl_of, acl_entries) = self.store.read(|c| {
                let acl_of: HashMap<String, String> =
                    routing::acl_associations(c, &scope)?.into_iter().map(|a| (a.subnet_id, a.acl_id)).collect();
                Ok::<_, Error>((
                    security_groups::rules(c, &scope)?,
                    vpcs::list_subnets(c, &scope)?,
                    vpcs::list_vpcs(c, &scope)?,
                    crate::routing::internet_subnets(c, &scope)?,
                    acl_of,
                    routing::acl_entries(c, &scope)?,
                ))
            })?;
            // Every interface of these instances: the primary one, then those attached.
            let ports: Vec<PortPlan> = list
                .iter()
                .flat_map(|i| {
                    let primary = PortPlan {
                        interface_id: instance_primary(&i.id),
                        instance: i,
                        ip: &i.private_ip,
                        subnet_id: &i.subnet_id,
                        groups: &i.groups,
                        public_ip: i.public_ip.as_deref(),
                    };
                    let more = attached.iter().filter(|e| e.attachment.as_ref().is_some_and(|a| a.instance_id == i.id));
                    std::iter::once(primary).chain(more.map(move |e| PortPlan {
                        interface_id: e.id.clone(),
                        instance: i,
                        ip: &e.private_ip,
                        subnet_id: &e.subnet_id,
                        groups: &e.groups,
                        public_ip: None,
                    }))
                })
                .collect();
            let mut members: HashMap<String, Vec<Ipv4Addr>> = HashMap::new();
            for p in &ports {
                if let Ok(ip) = p.ip.parse::<Ipv4Addr>() {
                    for g in p.groups {
                        members.entry(g.clone()).or_default().push(ip);
                    }
                }
            }
            for p in ports {
                let i = p.instance;
                let Ok(ip) = p.ip.parse::<Ipv4Addr>() else { continue };
                let Some(subnet) = subnets.iter().find(|s| s.id == *p.subnet_id) else { continue };
                let Some(subnet_gateway) = gateway(&subnet.cidr) else { continue };
                let Ok(subnet_net) = subnet.cidr.parse::<Ipv4Net>() else { continue };
                let Some(acl) = acl_of.get(&subnet.id) else { continue };
                let net = nets.entry(i.vpc_id.clone()).or_insert_with(|| {
                    let mut router: Vec<Ipv4Addr> =
                        subnets.iter().filter(|s| s.vpc_id == i.vpc_id).filter_map(|s| gateway(&s.cidr)).collect();
                    if let Some(dns) = vpc_list.iter().find(|v| v.id == i.vpc_id).and_then(|v| dns_address(&v.cidr)) {
                        router.push(dns);
                    }
                    router.sort();
                    router.dedup();
                    VpcNetwork {
                        vpc_id: i.vpc_id.clone(),
                        router_addresses: router,
                        ports: Vec::new(),
                        acls: Vec::new(),
                        overlay: None,
                    }
                });
                let mine = |egress: bool| -> Vec<FlowRule> {
                    rules
                        .iter()
                        .filter(|r| r.is_egress == egress && p.groups.contains(&r.group_id))
                        .filter_map(|r| flow(r, &members))
                        .collect()
                };
                if !net.acls.iter().any(|a| &a.id == acl) {
                    net.acls.push(crate::acls::for_host(acl, &acl_entries));
                }
                net.ports.push(Port {
                    mac: instance_mac(&p.interface_id),
                    interface_id: p.interface_id,
                    instance_id: i.id.clone(),
                    ip,
                    subnet: (subnet_net.network(), subnet_net.prefix_len()),
                    acl: acl.clone(),
                    gateway: subnet_gateway,
                    // A public address works only while the subnet routes to an
                    // internet gateway attached to the VPC, as on EC2.
                    public_ip: internet
                        .contains(&subnet.id)
                        .then(|| p.public_ip.and_then(|a| a.parse().ok()))
                        .flatten(),
                    ingress: mine(false),
                    egress: mine(true),
                });
            }
        }
        Ok(nets.into_values().collect())
    }

    /// Brings every host's VPC networks to what the store says: this server's own host
    /// and each of `hosts` (the live joined hosts) gets the ports of the instances
    /// placed on it. `applied` remembers what was last made on each host (None: this
    /// server's own), so unchanged networks cost nothing. One host or VPC that fails
    /// does not hold back the others: each is tried, and the first failure is returned.
    pub fn reconcile_networks(
        &self,
        applied: &mut HashMap<Option<String>, HashMap<String, VpcNetwork>>,
        all: &[Instance],
        attached: &[Interface],
        hosts: &[(kiln_agent_api::HostId, Option<Ipv4Addr>)],
    ) -> Result<()> {
        let wanted = self.desired_networks(all, attached)?;
        let mut first_error = None;
        applied.retain(|h, _| h.as_deref().is_none_or(|h| hosts.iter().any(|(id, _)| id.as_str() == h)));
        let host_of: HashMap<&str, Option<&str>> = all.iter().map(|i| (i.id.as_str(), i.host_id.as_deref())).collect();
        // Where each joined host is on the network between hosts: VPCs span the hosts
        // that have such an address, and this server's own host when joined hosts reach
        // it at one (`--agent-listen`'s) that no joined host shares (one agent on this
        // machine at the same address would make the same VXLAN devices).
        let underlay: HashMap<&str, Ipv4Addr> = hosts.iter().filter_map(|(h, u)| u.map(|u| (h.as_str(), u))).collect();
        let own = match self.agents_ip() {
            Some(std::net::IpAddr::V4(a)) if !a.is_loopback() && !a.is_unspecified() => Some(a),
            _ => None,
        }
        .filter(|o| !underlay.is_empty() && !underlay.values().any(|u| u == o));
        let underlay_at = |host: Option<&str>| match host {
            None => own,
            Some(h) => underlay.get(h).copied(),
        };
        let vnis =
            if underlay.is_empty() { HashMap::new() } else { self.store.read(|c| Ok::<_, Error>(vpcs::vnis(c)?))? };
        let underlay_of = |instance_id: &str| host_of.get(instance_id).and_then(|h| underlay_at(*h));
        let targets = std::iter::once(None).chain(hosts.iter().map(|(h, _)| Some(h.as_str().to_owned())));
        for host in targets {
            let on_host = |instance_id: &str| host_of.get(instance_id) == Some(&host.as_deref());
            let local = underlay_at(host.as_deref());
            // Each VPC with ports on this host, with only those ports, and the way to
            // its ports on the other hosts.
            let here: Vec<VpcNetwork> = wanted
                .iter()
                .map(|n| VpcNetwork {
                    ports: n.ports.iter().filter(|p| on_host(&p.instance_id)).cloned().collect(),
                    overlay: local.and_then(|local| {
                        Some(kiln_agent_api::Overlay {
                            vni: *vnis.get(&n.vpc_id)?,
                            local,
                            peers: n
                                .ports
                                .iter()
                                .filter(|p| !on_host(&p.instance_id))
                                .filter_map(|p| underlay_of(&p.instance_id).map(|u| (p.ip, u)))
                                .filter(|(_, u)| *u != local)
                                .collect(),
                        })
                    }),
                    ..n.clone()
                })
                .filter(|n| !n.ports.is_empty())
                .collect();
            let made = self
                .agent_on(host.as_deref())
                .and_then(|agent| self.network_host(agent.as_ref(), applied.entry(host.clone()).or_default(), &here));
            if let Err(e) = made {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Makes one host's VPC networks exactly `wanted`.
    fn network_host(
        &self,
        agent: &dyn kiln_agent_api::HostAgent,
        applied: &mut HashMap<String, VpcNetwork>,
        wanted: &[VpcNetwork],
    ) -> Result<()> {
        if !crate::reconcile::vpc_networking(agent)? {
            return Ok(());
        }
        let mut first_error = None;
        for net in wanted {
            if applied.get(&net.vpc_id) != Some(net) {
                applied.remove(&net.vpc_id);
                match agent.apply_network(net) {
                    Ok(()) => {
                        applied.insert(net.vpc_id.clone(), net.clone());
                    }
                    Err(e) => {
                        first_error.get_or_insert(Error::host(format!("networking {}", net.vpc_id), e));
                    }
                }
            }
        }
        for vpc in agent.networks().map_err(|e| Error::host("listing the host's networks", e))? {
            if !wanted.iter().any(|n| n.vpc_id == vpc) {
                applied.remove(&vpc);
                if let Err(e) = agent.remove_network(&vpc) {
                    first_error.get_or_insert(Error::host(format!("removing {vpc}'s network"), e));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(protocol: &str, from: Option<i32>, to: Option<i32>, cidr: Option<&str>, group: Option<&str>) -> Rule {
        Rule {
            id: "sgr-1".into(),
            group_id: "sg-1".into(),
            is_egress: false,
            protocol: protocol.into(),
            from_port: from,
            to_port: to,
            cidr_ipv4: cidr.map(Into::into),
            cidr_ipv6: None,
            ref_group_id: group.map(Into::into),
            ref_user_id: None,
            description: None,
        }
    }

    #[test]
    fn rules_become_flows() {
        let mut members = HashMap::new();
        members.insert("sg-2".to_owned(), vec![Ipv4Addr::new(10, 0, 0, 7)]);
        let f = flow(&rule("tcp", Some(22), Some(22), Some("0.0.0.0/0"), None), &members).expect("tcp");
        assert_eq!((f.protocol, f.from, f.to), (Protocol::Tcp, Some(22), Some(22)));
        assert_eq!(f.peers, vec![(Ipv4Addr::UNSPECIFIED, 0)]);
        let f = flow(&rule("-1", None, None, None, Some("sg-2")), &members).expect("group");
        assert_eq!(f.peers, vec![(Ipv4Addr::new(10, 0, 0, 7), 32)]);
        let f = flow(&rule("icmp", Some(-1), Some(-1), Some("10.0.0.0/8"), None), &members).expect("icmp");
        assert_eq!((f.from, f.to), (None, None));
        assert!(flow(&rule("icmpv6", None, None, Some("10.0.0.0/8"), None), &members).is_none());
        let f = flow(&rule("-1", None, None, None, Some("sg-empty")), &members).expect("empty group");
        assert!(f.peers.is_empty());
        assert_eq!(gateway("172.31.16.0/20"), Some(Ipv4Addr::new(172, 31, 16, 1)));
        assert_eq!(dns_address("172.31.0.0/16"), Some(Ipv4Addr::new(172, 31, 0, 2)));
    }
}
