//! Network interfaces as EC2 shows them: every instance's primary interface (the
//! instance's own, not stored) and those made with CreateNetworkInterface, which are
//! attached to instances of their VPC and zone and detached again. The reconciler
//! hot-plugs an attached interface into a running VM and takes a detached one out
//! (`reconcile`); each has its own tap, address, DHCP lease and security groups.

use kiln_store::instances::{self, Instance};
use kiln_store::interfaces::{self, Attachment, AttachmentStatus, Interface};
use kiln_store::{security_groups, vpcs, Connection, Scope};
use kiln_types::ids::{instance_mac, primary_interface};
use kiln_types::{instance_types, InstanceState, NetworkInterfaceId, ResourceKind, SecurityGroupId};

use crate::instances::{check_address, next_address};
use crate::{tags, Cloud, Error, Result};

/// One interface with what Describe shows beside its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkInterface {
    pub record: Interface,
    pub mac: String,
    /// Its public address (an instance's primary interface only).
    pub public_ip: Option<String>,
    /// Whether that is an Elastic IP (owned by the account, not by Amazon).
    pub elastic_ip: bool,
    /// Whether it is an instance's primary interface (device index 0).
    pub primary: bool,
}

/// An instance's primary interface, as a record.
pub fn primary(i: &Instance) -> NetworkInterface {
    let id = primary_interface(&i.id);
    NetworkInterface {
        mac: instance_mac(&i.id),
        record: Interface {
            id,
            account_id: i.account_id.clone(),
            region: i.region.clone(),
            vpc_id: i.vpc_id.clone(),
            subnet_id: i.subnet_id.clone(),
            availability_zone: i.availability_zone.clone(),
            private_ip: i.private_ip.clone(),
            description: String::new(),
            source_dest_check: i.options.source_dest_check,
            groups: i.groups.clone(),
            attachment: Some(Attachment {
                id: format!("eni-attach-{}", i.id.trim_start_matches("i-")),
                instance_id: i.id.clone(),
                device_index: 0,
                status: AttachmentStatus::Attached,
                attach_time: i.launch_time.clone(),
                delete_on_termination: true,
            }),
            created_at: i.launch_time.clone(),
        },
        public_ip: i.public_ip.clone(),
        elastic_ip: i.elastic_ip,
        primary: true,
    }
}

fn secondary(record: Interface) -> NetworkInterface {
    NetworkInterface { mac: instance_mac(&record.id), record, public_ip: None, elastic_ip: false, primary: false }
}

/// Whether an attachment's interface belongs in its VM (attaching or attached; a
/// detaching one stays until the guest lets go).
pub fn in_vm(a: &Attachment) -> bool {
    matches!(a.status, AttachmentStatus::Attaching | AttachmentStatus::Attached)
}

/// What CreateNetworkInterface asks for.
#[derive(Debug, Clone, Default)]
pub struct NewInterface {
    pub subnet_id: String,
    pub private_ip: Option<String>,
    pub groups: Vec<SecurityGroupId>,
    pub description: String,
    pub tags: Vec<(String, String)>,
}

/// One change ModifyNetworkInterfaceAttribute makes to a secondary interface.
#[derive(Debug, Clone, PartialEq)]
pub enum InterfaceChange {
    Groups(Vec<SecurityGroupId>),
    SourceDestCheck(bool),
    Description(String),
    DeleteOnTermination { attachment_id: String, on: bool },
}

fn find(conn: &Connection, scope: &Scope, id: &str) -> Result<Interface> {
    interfaces::get(conn, id)?
        .filter(|i| i.account_id == scope.account && i.region == scope.region)
        .ok_or_else(|| Error::not_found(ResourceKind::NetworkInterface, id))
}

fn live_instance(conn: &Connection, scope: &Scope, id: &str) -> Result<Instance> {
    instances::get(conn, id)?
        .filter(|i| i.account_id == scope.account && i.region == scope.region && i.state != InstanceState::Terminated)
        .ok_or_else(|| Error::not_found(ResourceKind::Instance, id))
}

/// For an `id` that is no made interface: InterfaceInUse when it is a live instance's
/// primary interface (which is never free), else `not_found`.
fn primary_in_use(conn: &Connection, scope: &Scope, id: &str, not_found: Error) -> Error {
    let owner = kiln_types::ids::interface_instance(id).and_then(|i| live_instance(conn, scope, &i).ok());
    match owner {
        Some(i) => Error::InterfaceInUse(format!("The network interface '{id}' is currently in use by {}.", i.id)),
        None => not_found,
    }
}

impl Cloud {
    /// The caller's interfaces (primary ones of live instances, then made ones),
    /// narrowed to `ids`; NotFound names every missing id.
    pub fn network_interfaces(&self, scope: &Scope, ids: &[NetworkInterfaceId]) -> Result<Vec<NetworkInterface>> {
        let (live, made) = self.store.read(|c| {
            let live: Vec<Instance> =
                instances::list(c, scope)?.into_iter().filter(|i| i.state != InstanceState::Terminated).collect();
            Ok::<_, Error>((live, interfaces::list(c, scope)?))
        })?;
        let all: Vec<NetworkInterface> = live.iter().map(primary).chain(made.into_iter().map(secondary)).collect();
        crate::narrow(all, ids, ResourceKind::NetworkInterface, |n| &n.record.id)
    }

    /// The made interfaces attached to instances of the scope, by instance (for
    /// DescribeInstances).
    pub fn attached_interfaces(&self, scope: &Scope) -> Result<Vec<NetworkInterface>> {
        let made = self.store.read(|c| Ok::<_, Error>(interfaces::list(c, scope)?))?;
        Ok(made.into_iter().filter(|i| i.attachment.is_some()).map(secondary).collect())
    }

    /// CreateNetworkInterface: an address of the subnet (the one asked for, or the
    /// lowest free), the VPC's default group unless groups are given.
    pub fn create_network_interface(&self, scope: &Scope, new: &NewInterface) -> Result<NetworkInterface> {
        let made = self.store.write(|tx| {
            let subnet = vpcs::list_subnets(tx, scope)?
                .into_iter()
                .find(|s| s.id == new.subnet_id)
                .ok_or_else(|| Error::not_found(ResourceKind::Subnet, new.subnet_id.clone()))?;
            let id = ResourceKind::NetworkInterface.generate();
            let groups = if new.groups.is_empty() {
                let default = security_groups::list(tx, scope)?
                    .into_iter()
                    .find(|g| g.vpc_id == subnet.vpc_id && g.name == "default")
                    .ok_or_else(|| {
                        Error::not_found(ResourceKind::SecurityGroup, format!("default ({})", subnet.vpc_id))
                    })?;
                vec![default.id]
            } else {
                crate::security_groups::for_interface(tx, scope, &new.groups, &subnet.vpc_id, "the network interface")?
            };
            let net: ipnet::Ipv4Net = subnet
                .cidr
                .parse()
                .map_err(|_| kiln_store::StoreError::Corrupt(format!("subnet CIDR {}", subnet.cidr)))?;
            let taken = instances::addresses_in_subnet(tx, &subnet.id)?;
            let private_ip = match &new.private_ip {
                Some(ip) => check_address(&net, ip, &taken)?.to_string(),
                None => next_address(&net, &taken).ok_or_else(|| {
                    Error::InsufficientCapacity(format!("Subnet {} has no free addresses", subnet.id))
                })?,
            };
            let record = Interface {
                id: id.clone(),
                account_id: scope.account.clone(),
                region: scope.region.clone(),
                vpc_id: subnet.vpc_id.clone(),
                subnet_id: subnet.id.clone(),
                availability_zone: subnet.availability_zone.clone(),
                private_ip,
                description: new.description.clone(),
                source_dest_check: true,
                groups,
                attachment: None,
                created_at: kiln_store::now(),
            };
            interfaces::insert(tx, &record)?;
            tags::put_all(tx, scope, ResourceKind::NetworkInterface, &id, &new.tags)?;
            Ok::<_, Error>(record)
        })?;
        Ok(secondary(made))
    }

    /// DeleteNetworkInterface: only a detached, made interface.
    pub fn delete_network_interface(&self, scope: &Scope, id: &str) -> Result<()> {
        self.store.write(|tx| {
            let found = find(tx, scope, id).map_err(|e| primary_in_use(tx, scope, id, e))?;
            if let Some(a) = &found.attachment {
                return Err(Error::InterfaceInUse(format!(
                    "The network interface '{id}' is currently in use by {}.",
                    a.instance_id
                )));
            }
            interfaces::delete(tx, id)?;
            Ok(())
        })
    }

    /// AttachNetworkInterface: a detached interface joins an instance of its VPC and
    /// zone at `device_index`. A running VM gets it hot-plugged within a reconcile
    /// pass (attaching, then attached); a stopped one has it at its next start.
    pub fn attach_network_interface(
        &self,
        scope: &Scope,
        id: &str,
        instance_id: &str,
        device_index: i64,
    ) -> Result<String> {
        // The host the instance is on plugs the interface in: a running one's, or the
        // joined host a stopped one starts on again while that host takes instances.
        let (placed, open) = self.store.read(|c| {
            let i = live_instance(c, scope, instance_id)?;
            let now = crate::leases::now_ms();
            let open = i.host_id.is_some()
                && kiln_store::hosts::all(c)?.iter().any(|h| {
                    Some(h.host_id.as_str()) == i.host_id.as_deref() && crate::placement::takes_instances(h, now)
                });
            Ok::<_, Error>((i, open))
        })?;
        let host = match placed.state {
            InstanceState::Running => self.agent_for(&placed)?,
            _ if open => self.agent_for(&placed)?,
            _ => std::sync::Arc::clone(self.agent()?),
        };
        if !crate::reconcile::vpc_networking(host.as_ref())? {
            return Err(Error::Unsupported(
                "This Kiln gives guests QEMU's user-mode network, which has one interface; run `kiln serve` (or `kiln agent` on a joined host) as root for VPC networking and further interfaces".into(),
            ));
        }
        self.store.write(|tx| {
            let eni = find(tx, scope, id).map_err(|e| primary_in_use(tx, scope, id, e))?;
            let instance = live_instance(tx, scope, instance_id)?;
            if let Some(a) = &eni.attachment {
                return Err(Error::InterfaceInUse(format!("Interface: [{id}] in use by {}.", a.instance_id)));
            }
            if !matches!(instance.state, InstanceState::Running | InstanceState::Stopped) {
                return Err(Error::IncorrectInstanceState(format!(
                    "The instance '{instance_id}' is not in a valid state for this operation (it must be running or stopped)."
                )));
            }
            if eni.availability_zone != instance.availability_zone {
                return Err(Error::InvalidParameterValue(format!(
                    "The network interface {id} is in {} and instance {instance_id} is in {}: they must be in the same availability zone.",
                    eni.availability_zone, instance.availability_zone
                )));
            }
            if eni.vpc_id != instance.vpc_id {
                return Err(Error::InvalidParameterValue(format!(
                    "The network interface {id} is in {} and instance {instance_id} is in {}: Kiln attaches interfaces of the instance's own VPC.",
                    eni.vpc_id, instance.vpc_id
                )));
            }
            if device_index < 1 {
                return Err(Error::InvalidParameterValue(format!(
                    "Device index {device_index} is not valid: index 0 is the primary interface; use 1 or more."
                )));
            }
            let others: Vec<Interface> = interfaces::list(tx, scope)?
                .into_iter()
                .filter(|i| i.attachment.as_ref().is_some_and(|a| a.instance_id == instance.id))
                .collect();
            if others.iter().any(|o| o.attachment.as_ref().is_some_and(|a| a.device_index == device_index)) {
                return Err(Error::InvalidParameterValue(format!(
                    "Instance '{instance_id}' already has an interface attached at device index '{device_index}'."
                )));
            }
            let limit = instance_types::lookup(&instance.instance_type).map_or(2, |t| t.max_network_interfaces as usize);
            if others.len() + 2 > limit {
                return Err(Error::AttachmentLimitExceeded(format!(
                    "Interface count {} exceeds the limit for {}",
                    others.len() + 2,
                    instance.instance_type
                )));
            }
            let attachment = Attachment {
                id: ResourceKind::NetworkInterfaceAttachment.generate(),
                instance_id: instance.id.clone(),
                device_index,
                status: if instance.state == InstanceState::Running {
                    AttachmentStatus::Attaching
                } else {
                    AttachmentStatus::Attached
                },
                attach_time: kiln_store::now(),
                delete_on_termination: false,
            };
            if !interfaces::attach(tx, id, &attachment)? {
                return Err(Error::InterfaceInUse(format!("Interface: [{id}] is already being attached.")));
            }
            Ok(attachment.id)
        })
    }

    /// DetachNetworkInterface: a running VM is asked to let the interface go
    /// (detaching, then available); a stopped one, or `force`, lets go at once.
    pub fn detach_network_interface(&self, scope: &Scope, attachment_id: &str, force: bool) -> Result<()> {
        self.store.write(|tx| {
            let found = interfaces::list(tx, scope)?
                .into_iter()
                .find(|i| i.attachment.as_ref().is_some_and(|a| a.id == attachment_id));
            let Some(eni) = found else {
                let primary = attachment_id
                    .strip_prefix("eni-attach-")
                    .map(|hex| live_instance(tx, scope, &format!("i-{hex}")))
                    .transpose()
                    .ok()
                    .flatten();
                if primary.is_some() {
                    return Err(Error::OperationNotPermitted(
                        "The network interface at device index 0 cannot be detached.".into(),
                    ));
                }
                return Err(Error::not_found(ResourceKind::NetworkInterfaceAttachment, attachment_id));
            };
            let Some(a) = eni.attachment else { return Ok(()) };
            let running = instances::get(tx, &a.instance_id)?.is_some_and(|i| crate::network::has_port(i.state));
            if running && !force {
                if a.status != AttachmentStatus::Detaching {
                    interfaces::set_status(tx, attachment_id, a.status, AttachmentStatus::Detaching)?;
                }
            } else {
                interfaces::detach(tx, attachment_id)?;
            }
            Ok(())
        })
    }

    /// ModifyNetworkInterfaceAttribute on a made interface.
    pub fn modify_network_interface(&self, scope: &Scope, id: &str, change: &InterfaceChange) -> Result<()> {
        self.store.write(|tx| {
            let eni = find(tx, scope, id)?;
            match change {
                InterfaceChange::Groups(groups) => {
                    let ids = crate::security_groups::for_interface(tx, scope, groups, &eni.vpc_id, id)?;
                    interfaces::set_groups(tx, id, &ids)?;
                }
                InterfaceChange::SourceDestCheck(on) => interfaces::set_source_dest_check(tx, id, *on)?,
                InterfaceChange::Description(d) => interfaces::set_description(tx, id, d)?,
                InterfaceChange::DeleteOnTermination { attachment_id, on } => {
                    if eni.attachment.as_ref().map(|a| &a.id) != Some(attachment_id) {
                        return Err(Error::not_found(ResourceKind::NetworkInterfaceAttachment, attachment_id.clone()));
                    }
                    interfaces::set_delete_on_termination(tx, id, *on)?;
                }
            }
            Ok(())
        })
    }

    /// Whether `id` is a made (secondary) interface of the caller.
    pub fn is_secondary_interface(&self, scope: &Scope, id: &str) -> Result<bool> {
        self.store.read(|c| {
            Ok(interfaces::get(c, id)?.is_some_and(|i| i.account_id == scope.account && i.region == scope.region))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::testkit::World;

    fn attachment(w: &World, id: &str) -> Option<Attachment> {
        let id: NetworkInterfaceId = id.parse().expect("an eni");
        w.cloud.network_interfaces(&w.scope, &[id]).expect("eni").remove(0).record.attachment
    }

    #[test]
    fn an_interface_is_hot_plugged_detached_and_outlives_its_instance() {
        let mut w = World::new("interfaces");
        w.agent.vpc.store(true, Ordering::SeqCst);
        let i = w.launch();
        w.passes_until(10, |w| w.state(&i) == InstanceState::Running);
        let subnet = w.cloud.instances(&w.scope, std::slice::from_ref(&i)).expect("i")[0].subnet_id.clone();
        let new = NewInterface { subnet_id: subnet, description: "second".into(), ..NewInterface::default() };
        let eni = w.cloud.create_network_interface(&w.scope, &new).expect("create");
        let id = eni.record.id.clone();
        assert_eq!(eni.record.groups.len(), 1, "the VPC's default group");
        assert!(eni.record.attachment.is_none());

        // Errors change nothing.
        let primary_id = primary_interface(&i);
        assert!(matches!(w.cloud.delete_network_interface(&w.scope, &primary_id), Err(Error::InterfaceInUse(_))));
        assert!(matches!(w.cloud.attach_network_interface(&w.scope, &id, &i, 0), Err(Error::InvalidParameterValue(_))));
        assert!(matches!(
            w.cloud.attach_network_interface(&w.scope, &primary_id, &i, 1),
            Err(Error::InterfaceInUse(_))
        ));
        assert!(attachment(&w, &id).is_none());

        let a = w.cloud.attach_network_interface(&w.scope, &id, &i, 1).expect("attach");
        assert_eq!(attachment(&w, &id).expect("attached").status, AttachmentStatus::Attaching);
        assert!(matches!(w.cloud.delete_network_interface(&w.scope, &id), Err(Error::InterfaceInUse(_))));
        w.passes_until(5, |w| attachment(w, &id).is_some_and(|a| a.status == AttachmentStatus::Attached));
        assert_eq!(w.agent.vms.lock().expect("vms")[i.as_str()].nics, vec![id.clone()]);
        // t3.micro (the default type) takes two interfaces.
        let third = w.cloud.create_network_interface(&w.scope, &new).expect("third");
        assert!(matches!(
            w.cloud.attach_network_interface(&w.scope, &third.record.id, &i, 2),
            Err(Error::AttachmentLimitExceeded(_))
        ));

        w.cloud.detach_network_interface(&w.scope, &a, false).expect("detach");
        assert_eq!(attachment(&w, &id).expect("detaching").status, AttachmentStatus::Detaching);
        w.passes_until(5, |w| attachment(w, &id).is_none());
        assert!(w.agent.vms.lock().expect("vms")[i.as_str()].nics.is_empty());
        let primary_attachment = format!("eni-attach-{}", i.trim_start_matches("i-"));
        assert!(matches!(
            w.cloud.detach_network_interface(&w.scope, &primary_attachment, false),
            Err(Error::OperationNotPermitted(_))
        ));

        // Attached again, it is detached (not deleted) when the instance terminates.
        w.cloud.attach_network_interface(&w.scope, &id, &i, 1).expect("attach again");
        w.cloud.terminate_instances(&w.scope, std::slice::from_ref(&i)).expect("terminate");
        w.passes_until(10, |w| w.state(&i) == InstanceState::Terminated);
        assert!(attachment(&w, &id).is_none());
        w.cloud.delete_network_interface(&w.scope, &id).expect("delete");
        w.cloud.delete_network_interface(&w.scope, &third.record.id).expect("delete third");
        let gone: NetworkInterfaceId = id.parse().expect("eni");
        assert!(matches!(w.cloud.network_interfaces(&w.scope, &[gone]), Err(Error::NotFound { .. })));
    }

    #[test]
    fn each_interface_is_a_port_with_its_own_groups() {
        let mut w = World::new("interface-ports");
        w.agent.vpc.store(true, Ordering::SeqCst);
        let i = w.launch();
        w.passes_until(10, |w| w.state(&i) == InstanceState::Running);
        let inst = w.cloud.instances(&w.scope, std::slice::from_ref(&i)).expect("i").remove(0);
        let web = w.cloud.create_security_group(&w.scope, "web", "web", Some(&inst.vpc_id), &[]).expect("group");
        let http = crate::security_groups::Permission {
            protocol: "tcp".into(),
            from_port: Some(80),
            to_port: Some(80),
            ipv4_ranges: vec![("0.0.0.0/0".into(), None)],
            ipv6_ranges: Vec::new(),
            groups: Vec::new(),
        };
        let web_ref = crate::security_groups::GroupRef::Id(web.id.clone());
        w.cloud.authorize(&w.scope, &web_ref, false, &[http], &[]).expect("authorize");
        let new = NewInterface {
            subnet_id: inst.subnet_id.clone(),
            groups: vec![web.id.parse().expect("sg")],
            ..NewInterface::default()
        };
        let eni = w.cloud.create_network_interface(&w.scope, &new).expect("create").record;
        w.cloud.attach_network_interface(&w.scope, &eni.id, &i, 1).expect("attach");
        let (all, attached) =
            w.cloud.store.read(|c| Ok::<_, Error>((instances::all(c)?, interfaces::attached(c)?))).expect("read");
        let nets = w.cloud.desired_networks(&all, &attached).expect("networks");
        let ports: Vec<&kiln_agent_api::Port> = nets.iter().flat_map(|n| &n.ports).collect();
        assert_eq!(ports.len(), 2, "{ports:?}");
        let second = ports.iter().find(|p| p.interface_id == eni.id).expect("the interface's port");
        let first = ports.iter().find(|p| p.interface_id == primary_interface(&i)).expect("the primary port");
        assert_eq!((second.instance_id.as_str(), second.ip.to_string()), (i.as_str(), eni.private_ip.clone()));
        assert_eq!(second.mac, instance_mac(&eni.id));
        let opens_80 = |p: &kiln_agent_api::Port| p.ingress.iter().any(|r| r.from == Some(80));
        assert!(opens_80(second) && !opens_80(first), "groups apply per interface");
        assert!(second.public_ip.is_none());
        // The guest's DHCP answers it on its own tap with its own address.
        w.passes_until(3, |w| w.cloud.guest_view().ports.contains_key(&eni.id));
        let view = w.cloud.guest_view();
        let lease = view.ports[&eni.id].lease.as_ref().expect("a lease");
        assert_eq!(lease.ip.to_string(), eni.private_ip);
    }
}
