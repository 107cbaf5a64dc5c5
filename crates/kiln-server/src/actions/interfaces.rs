//! Network interface actions: Create, Delete, Attach, Detach, Describe and
//! ModifyNetworkInterfaceAttribute, for instances' primary interfaces and made ones.

use std::collections::HashMap;

use kiln_control::instances::InstanceChange;
use kiln_control::interfaces::{InterfaceChange as Change, NetworkInterface, NewInterface};
use kiln_ec2::filter::{self, Field};
use kiln_ec2::requests::interfaces::{
    AttachNetworkInterface, CreateNetworkInterface, DeleteNetworkInterface, DescribeNetworkInterfaces,
    DetachNetworkInterface, InterfaceChange, ModifyNetworkInterfaceAttribute,
};
use kiln_ec2::{Ec2Error, XmlWriter};
use kiln_types::ids::interface_instance;
use kiln_types::region::{private_dns, public_dns};

use super::instances::write_groups;
use super::{ack, next_token, tag_pairs, ActionResult, Ctx, OrEc2};

/// The public address of an interface: an Elastic IP is the account's, an
/// auto-assigned one Amazon's, as EC2 says.
fn write_association(w: &mut XmlWriter, n: &NetworkInterface) {
    if let Some(public) = &n.public_ip {
        let owner = if n.elastic_ip { n.record.account_id.as_str() } else { "amazon" };
        w.start("association")
            .elem("publicIp", public)
            .elem("publicDnsName", public_dns(&n.record.region, public))
            .elem("ipOwnerId", owner)
            .end();
    }
}

/// One interface, as DescribeInstances nests it and DescribeNetworkInterfaces lists it.
pub(crate) fn write_interface(
    ctx: &Ctx<'_>,
    w: &mut XmlWriter,
    n: &NetworkInterface,
    group_names: &HashMap<String, String>,
) {
    let r = &n.record;
    let dns = private_dns(&r.region, &r.private_ip);
    w.elem("networkInterfaceId", &r.id)
        .elem("subnetId", &r.subnet_id)
        .elem("vpcId", &r.vpc_id)
        .elem("availabilityZone", &r.availability_zone)
        .elem("description", &r.description)
        .elem("ownerId", &ctx.scope.account)
        .elem("requesterManaged", "false")
        .elem("status", if r.attachment.is_some() { "in-use" } else { "available" })
        .elem("macAddress", &n.mac)
        .elem("privateIpAddress", &r.private_ip)
        .elem("privateDnsName", &dns)
        .elem("sourceDestCheck", r.source_dest_check);
    write_groups(w, &r.groups, group_names);
    write_association(w, n);
    if let Some(a) = &r.attachment {
        w.start("attachment")
            .elem("attachmentId", &a.id)
            .elem("instanceId", &a.instance_id)
            .elem("instanceOwnerId", &ctx.scope.account)
            .elem("deviceIndex", a.device_index)
            .elem("status", a.status.as_str())
            .elem("attachTime", &a.attach_time)
            .elem("deleteOnTermination", a.delete_on_termination)
            .elem("networkCardIndex", 0)
            .end();
    }
    w.set("privateIpAddressesSet", [()], |w, _| {
        w.elem("privateIpAddress", &r.private_ip).elem("privateDnsName", &dns).elem("primary", "true");
        write_association(w, n);
    });
    w.start("ipv6AddressesSet").end().elem("interfaceType", "interface");
}

const FILTERS: &[&str] = &[
    "network-interface-id",
    "subnet-id",
    "vpc-id",
    "availability-zone",
    "group-id",
    "group-name",
    "attachment.instance-id",
    "attachment.instance-owner-id",
    "attachment.status",
    "attachment.device-index",
    "attachment.attachment-id",
    "attachment.delete-on-termination",
    "attachment.attach-time",
    "addresses.private-ip-address",
    "addresses.primary",
    "private-ip-address",
    "private-dns-name",
    "association.public-ip",
    "mac-address",
    "owner-id",
    "status",
    "description",
    "requester-managed",
    "source-dest-check",
    "interface-type",
];

pub(crate) fn describe(ctx: &Ctx<'_>, r: DescribeNetworkInterfaces) -> ActionResult {
    let all = ctx.cloud.network_interfaces(&ctx.scope, &r.ids).ec2()?;
    let groups: Vec<String> = all.iter().flat_map(|n| n.record.groups.iter().cloned()).collect();
    let names = ctx.cloud.security_group_names_of(&ctx.scope, groups).ec2()?;
    let tags = ctx.cloud.tags_by_resource(&ctx.scope).ec2()?;
    let tags_of = |id: &str| tags.get(id).cloned().unwrap_or_default();
    let list = filter::apply(
        all,
        &r.filters,
        FILTERS,
        |n, name| {
            let r = &n.record;
            let a = r.attachment.as_ref();
            match name {
                "network-interface-id" => Field::one(r.id.clone()),
                "subnet-id" => Field::one(r.subnet_id.clone()),
                "vpc-id" => Field::one(r.vpc_id.clone()),
                "availability-zone" => Field::one(r.availability_zone.clone()),
                "group-id" => Field::many(r.groups.clone()),
                "group-name" => Field::many(r.groups.iter().filter_map(|g| names.get(g).cloned())),
                "attachment.instance-id" => Field::opt(a.map(|a| a.instance_id.clone())),
                "attachment.instance-owner-id" => Field::opt(a.map(|_| ctx.scope.account.clone())),
                "owner-id" => Field::one(ctx.scope.account.clone()),
                "attachment.status" => Field::opt(a.map(|a| a.status.as_str())),
                "attachment.device-index" => Field::opt(a.map(|a| a.device_index.to_string())),
                "attachment.attachment-id" => Field::opt(a.map(|a| a.id.clone())),
                "attachment.delete-on-termination" => Field::opt(a.map(|a| a.delete_on_termination.to_string())),
                "attachment.attach-time" => Field::opt(a.map(|a| a.attach_time.clone())),
                "addresses.private-ip-address" | "private-ip-address" => Field::one(r.private_ip.clone()),
                "addresses.primary" => Field::one("true"),
                "private-dns-name" => Field::one(private_dns(&r.region, &r.private_ip)),
                "association.public-ip" => Field::opt(n.public_ip.clone()),
                "mac-address" => Field::one(n.mac.clone()),
                "status" => Field::one(if a.is_some() { "in-use" } else { "available" }),
                "description" => Field::one(r.description.clone()),
                "requester-managed" => Field::one("false"),
                "source-dest-check" => Field::one(r.source_dest_check.to_string()),
                "interface-type" => Field::one("interface"),
                _ => Field::Unknown,
            }
        },
        |n| tags_of(&n.record.id),
    )?;
    let (page, next) = ctx.page(list, &r.paging, (5, 1000), None)?;
    let mut w = ctx.xml("DescribeNetworkInterfaces");
    w.set("networkInterfaceSet", page, |w, n| {
        write_interface(ctx, w, &n, &names);
        let t = tags_of(&n.record.id);
        w.tags(t.iter().map(|(a, b)| (a.as_str(), b.as_str())));
    });
    next_token(&mut w, next);
    Ok(w.finish("DescribeNetworkInterfaces"))
}

pub(crate) fn create(ctx: &Ctx<'_>, r: CreateNetworkInterface) -> ActionResult {
    let new = NewInterface {
        subnet_id: r.subnet_id.to_string(),
        private_ip: r.private_ip.map(|a| a.to_string()),
        groups: r.groups,
        description: r.description,
        tags: tag_pairs(&r.tags),
    };
    let n = ctx.cloud.create_network_interface(&ctx.scope, &new).ec2()?;
    let names = ctx.cloud.security_group_names_of(&ctx.scope, n.record.groups.clone()).ec2()?;
    let mut w = ctx.xml("CreateNetworkInterface");
    w.start("networkInterface");
    write_interface(ctx, &mut w, &n, &names);
    w.tags(new.tags.iter().map(|(a, b)| (a.as_str(), b.as_str())));
    w.end();
    Ok(w.finish("CreateNetworkInterface"))
}

pub(crate) fn delete(ctx: &Ctx<'_>, r: DeleteNetworkInterface) -> ActionResult {
    ctx.cloud.delete_network_interface(&ctx.scope, &r.id).ec2()?;
    ack(ctx, "DeleteNetworkInterface")
}

pub(crate) fn attach(ctx: &Ctx<'_>, r: AttachNetworkInterface) -> ActionResult {
    let id = ctx.cloud.attach_network_interface(&ctx.scope, &r.interface_id, &r.instance_id, r.device_index).ec2()?;
    let mut w = ctx.xml("AttachNetworkInterface");
    w.elem("attachmentId", id).elem("networkCardIndex", 0);
    Ok(w.finish("AttachNetworkInterface"))
}

pub(crate) fn detach(ctx: &Ctx<'_>, r: DetachNetworkInterface) -> ActionResult {
    ctx.cloud.detach_network_interface(&ctx.scope, &r.attachment_id, r.force).ec2()?;
    ack(ctx, "DetachNetworkInterface")
}

/// ModifyNetworkInterfaceAttribute: a made interface keeps its own attributes; a
/// primary interface's groups and source/destination check are its instance's.
pub(crate) fn modify(ctx: &Ctx<'_>, r: ModifyNetworkInterfaceAttribute) -> ActionResult {
    let eni = r.interface_id.to_string();
    if ctx.cloud.is_secondary_interface(&ctx.scope, &eni).ec2()? {
        let change = match r.change {
            InterfaceChange::Groups(g) => Change::Groups(g),
            InterfaceChange::SourceDestCheck(v) => Change::SourceDestCheck(v),
            InterfaceChange::Description(d) => Change::Description(d),
            InterfaceChange::DeleteOnTermination { attachment_id, on } => {
                Change::DeleteOnTermination { attachment_id: attachment_id.to_string(), on }
            }
        };
        ctx.cloud.modify_network_interface(&ctx.scope, &eni, &change).ec2()?;
        return ack(ctx, "ModifyNetworkInterfaceAttribute");
    }
    let missing = || Ec2Error::not_found(kiln_types::ResourceKind::NetworkInterface, std::slice::from_ref(&eni));
    let instance: kiln_types::InstanceId = interface_instance(&eni).and_then(|i| i.parse().ok()).ok_or_else(missing)?;
    // Read by key: the interface exists while its instance lives.
    ctx.cloud.network_interfaces(&ctx.scope, std::slice::from_ref(&r.interface_id)).map_err(|_| missing())?;
    let change = match r.change {
        InterfaceChange::Groups(g) => InstanceChange::Groups(g),
        InterfaceChange::SourceDestCheck(v) => InstanceChange::SourceDestCheck(v),
        InterfaceChange::Description(_) => return Err(Ec2Error::invalid_value(
            "Kiln keeps no description on an instance's primary interface; describe the instance with a tag instead",
        )),
        InterfaceChange::DeleteOnTermination { on: false, .. } => {
            return Err(Ec2Error::invalid_value(
                "A primary network interface is always deleted with its instance in Kiln",
            ))
        }
        InterfaceChange::DeleteOnTermination { on: true, .. } => return ack(ctx, "ModifyNetworkInterfaceAttribute"),
    };
    ctx.cloud.modify_instance(&ctx.scope, &instance, change).ec2()?;
    ack(ctx, "ModifyNetworkInterfaceAttribute")
}
