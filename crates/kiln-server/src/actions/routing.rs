//! VPC routing and addressing actions: internet gateways, route tables and routes, VPC
//! and subnet attributes, CreateDefaultVpc, network ACLs, Elastic IPs,
//! and instance credit specifications.

use std::collections::HashMap;

use kiln_control::acls::{AclView, EntryRequest};
use kiln_control::addresses::{AddressRef, AddressTarget};
use kiln_control::routing::{RouteTableView, RouteTarget};
use kiln_ec2::filter::{self, Field};
use kiln_ec2::requests::routing::{
    AddressName, AllocateAddress, AssociateAddress, AssociateDhcpOptions, AssociateRouteTable, CreateDefaultVpc,
    CreateDhcpOptions, CreateInternetGateway, CreateNetworkAcl, CreateRouteTable, DeleteDhcpOptions,
    DeleteInternetGateway, DeleteNetworkAcl, DeleteNetworkAclEntry, DeleteRoute, DeleteRouteTable, DescribeAddresses,
    DescribeAddressesAttribute, DescribeDhcpOptions, DescribeInstanceCreditSpecifications, DescribeInternetGateways,
    DescribeNetworkAcls, DescribeRouteTables, DescribeVpcAttribute, DisassociateAddress, DisassociateRouteTable,
    GatewayAttachment, ModifySubnetAttribute, ModifyVpcAttribute, PutNetworkAclEntry, PutRoute, ReleaseAddress,
    ReplaceNetworkAclAssociation, ReplaceRouteTableAssociation, Target,
};
use kiln_ec2::{Ec2Error, XmlWriter};
use kiln_store::routing::{AclEntry, Address, InternetGateway};
use kiln_store::vpcs::{DhcpOptions, Vpc};
use kiln_types::ids::primary_interface;
use kiln_types::region::public_dns;
use kiln_types::InstanceState;

use super::{ack, next_token, tag_pairs, ActionResult, Ctx, OrEc2};

type Tags = HashMap<String, Vec<(String, String)>>;

fn tags_of(tags: &Tags, id: &str) -> Vec<(String, String)> {
    tags.get(id).cloned().unwrap_or_default()
}

fn write_tags(w: &mut XmlWriter, tags: &[(String, String)]) {
    w.tags(tags.iter().map(|(a, b)| (a.as_str(), b.as_str())));
}

// --- internet gateways -----------------------------------------------------------------

fn write_gateway(ctx: &Ctx<'_>, w: &mut XmlWriter, g: &InternetGateway, tags: &[(String, String)]) {
    w.elem("internetGatewayId", &g.id).elem("ownerId", &ctx.scope.account);
    w.set("attachmentSet", g.vpc_id.iter(), |w, vpc| {
        w.elem("vpcId", vpc).elem("state", "available");
    });
    write_tags(w, tags);
}

pub(crate) fn create_internet_gateway(ctx: &Ctx<'_>, r: CreateInternetGateway) -> ActionResult {
    let tags = tag_pairs(&r.tags);
    let g = ctx.cloud.create_internet_gateway(&ctx.scope, &tags).ec2()?;
    let mut w = ctx.xml("CreateInternetGateway");
    w.start("internetGateway");
    write_gateway(ctx, &mut w, &g, &tags);
    w.end();
    Ok(w.finish("CreateInternetGateway"))
}

pub(crate) fn describe_internet_gateways(ctx: &Ctx<'_>, r: DescribeInternetGateways) -> ActionResult {
    let all = ctx.cloud.internet_gateways(&ctx.scope, &r.ids).ec2()?;
    let tags = ctx.cloud.tags_by_resource(&ctx.scope).ec2()?;
    let list = filter::apply(
        all,
        &r.filters,
        &["internet-gateway-id", "attachment.vpc-id", "attachment.state", "owner-id"],
        |g, name| match name {
            "internet-gateway-id" => Field::one(g.id.clone()),
            "attachment.vpc-id" => Field::opt(g.vpc_id.clone()),
            "attachment.state" => Field::opt(g.vpc_id.as_ref().map(|_| "available")),
            "owner-id" => Field::one(ctx.scope.account.clone()),
            _ => Field::Unknown,
        },
        |g| tags_of(&tags, &g.id),
    )?;
    let (page, next) = ctx.page(list, &r.paging, (5, 1000), None)?;
    let mut w = ctx.xml("DescribeInternetGateways");
    w.set("internetGatewaySet", page, |w, g| write_gateway(ctx, w, &g, &tags_of(&tags, &g.id)));
    next_token(&mut w, next);
    Ok(w.finish("DescribeInternetGateways"))
}

pub(crate) fn attach_internet_gateway(ctx: &Ctx<'_>, r: GatewayAttachment) -> ActionResult {
    ctx.cloud.attach_internet_gateway(&ctx.scope, &r.gateway_id, &r.vpc_id).ec2()?;
    ack(ctx, "AttachInternetGateway")
}

pub(crate) fn detach_internet_gateway(ctx: &Ctx<'_>, r: GatewayAttachment) -> ActionResult {
    ctx.cloud.detach_internet_gateway(&ctx.scope, &r.gateway_id, &r.vpc_id).ec2()?;
    ack(ctx, "DetachInternetGateway")
}

pub(crate) fn delete_internet_gateway(ctx: &Ctx<'_>, r: DeleteInternetGateway) -> ActionResult {
    ctx.cloud.delete_internet_gateway(&ctx.scope, &r.gateway_id).ec2()?;
    ack(ctx, "DeleteInternetGateway")
}

// --- route tables ----------------------------------------------------------------------

fn write_association_state(w: &mut XmlWriter) {
    w.start("associationState").elem("state", "associated").end();
}

fn write_table(ctx: &Ctx<'_>, w: &mut XmlWriter, t: &RouteTableView, tags: &[(String, String)]) {
    w.elem("routeTableId", &t.table.id).elem("vpcId", &t.table.vpc_id).elem("ownerId", &ctx.scope.account);
    w.set("routeSet", &t.routes, |w, r| {
        w.elem("destinationCidrBlock", &r.destination);
        match &r.target {
            RouteTarget::Local => w.elem("gatewayId", "local"),
            RouteTarget::Gateway(g) => w.elem("gatewayId", g),
            RouteTarget::Instance(i) => w.elem("instanceId", i).elem("instanceOwnerId", &ctx.scope.account),
            RouteTarget::NetworkInterface(n) => w.elem("networkInterfaceId", n),
        };
        w.elem("state", if r.active { "active" } else { "blackhole" })
            .elem("origin", if r.from_table { "CreateRouteTable" } else { "CreateRoute" });
    });
    let main = t.table.main_association.iter().map(|id| (id.as_str(), None));
    let subnets = t.associations.iter().map(|a| (a.id.as_str(), Some(a.subnet_id.as_str())));
    w.set("associationSet", main.chain(subnets), |w, (id, subnet)| {
        w.elem("routeTableAssociationId", id)
            .elem("routeTableId", &t.table.id)
            .elem("main", subnet.is_none())
            .opt("subnetId", subnet);
        write_association_state(w);
    });
    w.start("propagatingVgwSet").end();
    write_tags(w, tags);
}

pub(crate) fn create_route_table(ctx: &Ctx<'_>, r: CreateRouteTable) -> ActionResult {
    let tags = tag_pairs(&r.tags);
    let t = ctx.cloud.create_route_table(&ctx.scope, &r.vpc_id, &tags).ec2()?;
    let mut w = ctx.xml("CreateRouteTable");
    w.start("routeTable");
    write_table(ctx, &mut w, &t, &tags);
    w.end();
    Ok(w.finish("CreateRouteTable"))
}

pub(crate) fn describe_route_tables(ctx: &Ctx<'_>, r: DescribeRouteTables) -> ActionResult {
    let all = ctx.cloud.route_tables(&ctx.scope, &r.ids).ec2()?;
    let tags = ctx.cloud.tags_by_resource(&ctx.scope).ec2()?;
    let list = filter::apply(
        all,
        &r.filters,
        &[
            "route-table-id",
            "vpc-id",
            "owner-id",
            "association.main",
            "association.route-table-association-id",
            "association.route-table-id",
            "association.subnet-id",
            "route.destination-cidr-block",
            "route.gateway-id",
            "route.instance-id",
            "route.network-interface-id",
            "route.origin",
            "route.state",
        ],
        |t, name| match name {
            "route-table-id" | "association.route-table-id" => Field::one(t.table.id.clone()),
            "vpc-id" => Field::one(t.table.vpc_id.clone()),
            "owner-id" => Field::one(ctx.scope.account.clone()),
            "association.main" => Field::one(t.table.main_association.is_some().to_string()),
            "association.route-table-association-id" => {
                Field::many(t.table.main_association.iter().cloned().chain(t.associations.iter().map(|a| a.id.clone())))
            }
            "association.subnet-id" => Field::many(t.associations.iter().map(|a| a.subnet_id.clone())),
            "route.destination-cidr-block" => Field::many(t.routes.iter().map(|r| r.destination.clone())),
            "route.gateway-id" => Field::many(t.routes.iter().filter_map(|r| match &r.target {
                RouteTarget::Local => Some("local".to_owned()),
                RouteTarget::Gateway(g) => Some(g.clone()),
                _ => None,
            })),
            "route.instance-id" => Field::many(t.routes.iter().filter_map(|r| match &r.target {
                RouteTarget::Instance(i) => Some(i.clone()),
                _ => None,
            })),
            "route.network-interface-id" => Field::many(t.routes.iter().filter_map(|r| match &r.target {
                RouteTarget::NetworkInterface(n) => Some(n.clone()),
                _ => None,
            })),
            "route.origin" => {
                Field::many(t.routes.iter().map(|r| if r.from_table { "CreateRouteTable" } else { "CreateRoute" }))
            }
            "route.state" => Field::many(t.routes.iter().map(|r| if r.active { "active" } else { "blackhole" })),
            _ => Field::Unknown,
        },
        |t| tags_of(&tags, &t.table.id),
    )?;
    let (page, next) = ctx.page(list, &r.paging, (5, 100), None)?;
    let mut w = ctx.xml("DescribeRouteTables");
    w.set("routeTableSet", page, |w, t| write_table(ctx, w, &t, &tags_of(&tags, &t.table.id)));
    next_token(&mut w, next);
    Ok(w.finish("DescribeRouteTables"))
}

pub(crate) fn delete_route_table(ctx: &Ctx<'_>, r: DeleteRouteTable) -> ActionResult {
    ctx.cloud.delete_route_table(&ctx.scope, &r.route_table_id).ec2()?;
    ack(ctx, "DeleteRouteTable")
}

pub(crate) fn associate_route_table(ctx: &Ctx<'_>, r: AssociateRouteTable) -> ActionResult {
    let id = ctx.cloud.associate_route_table(&ctx.scope, &r.route_table_id, &r.subnet_id).ec2()?;
    let mut w = ctx.xml("AssociateRouteTable");
    w.elem("associationId", id);
    write_association_state(&mut w);
    Ok(w.finish("AssociateRouteTable"))
}

pub(crate) fn disassociate_route_table(ctx: &Ctx<'_>, r: DisassociateRouteTable) -> ActionResult {
    ctx.cloud.disassociate_route_table(&ctx.scope, &r.association_id).ec2()?;
    ack(ctx, "DisassociateRouteTable")
}

pub(crate) fn replace_route_table_association(ctx: &Ctx<'_>, r: ReplaceRouteTableAssociation) -> ActionResult {
    let id = ctx.cloud.replace_route_table_association(&ctx.scope, &r.association_id, &r.route_table_id).ec2()?;
    let mut w = ctx.xml("ReplaceRouteTableAssociation");
    w.elem("newAssociationId", id);
    write_association_state(&mut w);
    Ok(w.finish("ReplaceRouteTableAssociation"))
}

pub(crate) fn put_route(ctx: &Ctx<'_>, action: &str, r: PutRoute) -> ActionResult {
    let target = match r.target {
        Target::Local => RouteTarget::Local,
        Target::Gateway(g) => RouteTarget::Gateway(g),
        Target::Instance(i) => RouteTarget::Instance(i.to_string()),
        Target::NetworkInterface(n) => RouteTarget::NetworkInterface(n.to_string()),
    };
    let replace = action == "ReplaceRoute";
    ctx.cloud.put_route(&ctx.scope, &r.route_table_id, &r.destination, target, replace).ec2()?;
    ack(ctx, action)
}

pub(crate) fn delete_route(ctx: &Ctx<'_>, r: DeleteRoute) -> ActionResult {
    ctx.cloud.delete_route(&ctx.scope, &r.route_table_id, &r.destination).ec2()?;
    ack(ctx, "DeleteRoute")
}

// --- VPC and subnet attributes -----------------------------------------------------------

pub(crate) fn describe_vpc_attribute(ctx: &Ctx<'_>, r: DescribeVpcAttribute) -> ActionResult {
    let vpc: Vpc = ctx.cloud.vpcs(&ctx.scope, std::slice::from_ref(&r.vpc_id)).ec2()?.remove(0);
    let value = match r.attribute.as_str() {
        "enableDnsSupport" => vpc.dns_support,
        "enableDnsHostnames" => vpc.dns_hostnames,
        _ => false,
    };
    let mut w = ctx.xml("DescribeVpcAttribute");
    w.elem("vpcId", &vpc.id);
    w.start(match r.attribute.as_str() {
        "enableDnsSupport" => "enableDnsSupport",
        "enableDnsHostnames" => "enableDnsHostnames",
        _ => "enableNetworkAddressUsageMetrics",
    })
    .elem("value", value)
    .end();
    Ok(w.finish("DescribeVpcAttribute"))
}

pub(crate) fn modify_vpc_attribute(ctx: &Ctx<'_>, r: ModifyVpcAttribute) -> ActionResult {
    ctx.cloud.modify_vpc_dns(&ctx.scope, &r.vpc_id, r.dns_support, r.dns_hostnames).ec2()?;
    ack(ctx, "ModifyVpcAttribute")
}

pub(crate) fn modify_subnet_attribute(ctx: &Ctx<'_>, r: ModifySubnetAttribute) -> ActionResult {
    ctx.cloud.set_map_public_ip(&ctx.scope, &r.subnet_id, r.map_public_ip).ec2()?;
    ack(ctx, "ModifySubnetAttribute")
}

pub(crate) fn create_default_vpc(ctx: &Ctx<'_>, _: CreateDefaultVpc) -> ActionResult {
    let vpc = ctx.cloud.create_default_vpc(&ctx.scope).ec2()?;
    let mut w = ctx.xml("CreateDefaultVpc");
    w.start("vpc");
    super::vpcs::write_vpc(ctx, &mut w, &vpc, &[]);
    w.end();
    Ok(w.finish("CreateDefaultVpc"))
}

// --- DHCP options sets -------------------------------------------------------------------

fn write_dhcp(ctx: &Ctx<'_>, w: &mut XmlWriter, d: &DhcpOptions, tags: &[(String, String)]) {
    w.elem("dhcpOptionsId", &d.id).elem("ownerId", &ctx.scope.account);
    w.set("dhcpConfigurationSet", &d.values, |w, (key, values)| {
        w.elem("key", key);
        w.set("valueSet", values, |w, v| {
            w.elem("value", v);
        });
    });
    write_tags(w, tags);
}

pub(crate) fn create_dhcp_options(ctx: &Ctx<'_>, r: CreateDhcpOptions) -> ActionResult {
    let tags = tag_pairs(&r.tags);
    let d = ctx.cloud.create_dhcp_options(&ctx.scope, r.values, &tags).ec2()?;
    let mut w = ctx.xml("CreateDhcpOptions");
    w.start("dhcpOptions");
    write_dhcp(ctx, &mut w, &d, &tags);
    w.end();
    Ok(w.finish("CreateDhcpOptions"))
}

pub(crate) fn describe_dhcp_options(ctx: &Ctx<'_>, r: DescribeDhcpOptions) -> ActionResult {
    let all = ctx.cloud.dhcp_options(&ctx.scope, &r.ids).ec2()?;
    let tags = ctx.cloud.tags_by_resource(&ctx.scope).ec2()?;
    let list = filter::apply(
        all,
        &r.filters,
        &["dhcp-options-id", "key", "value", "owner-id"],
        |d, name| match name {
            "dhcp-options-id" => Field::one(d.id.clone()),
            "key" => Field::many(d.values.iter().map(|(k, _)| k.clone())),
            "value" => Field::many(d.values.iter().flat_map(|(_, v)| v.clone())),
            "owner-id" => Field::one(ctx.scope.account.clone()),
            _ => Field::Unknown,
        },
        |d| tags_of(&tags, &d.id),
    )?;
    let (page, next) = ctx.page(list, &r.paging, (5, 1000), None)?;
    let mut w = ctx.xml("DescribeDhcpOptions");
    w.set("dhcpOptionsSet", page, |w, d| write_dhcp(ctx, w, &d, &tags_of(&tags, &d.id)));
    next_token(&mut w, next);
    Ok(w.finish("DescribeDhcpOptions"))
}

pub(crate) fn delete_dhcp_options(ctx: &Ctx<'_>, r: DeleteDhcpOptions) -> ActionResult {
    ctx.cloud.delete_dhcp_options(&ctx.scope, &r.id).ec2()?;
    ack(ctx, "DeleteDhcpOptions")
}

pub(crate) fn associate_dhcp_options(ctx: &Ctx<'_>, r: AssociateDhcpOptions) -> ActionResult {
    let id = r.id.as_ref().map(|d| d.to_string());
    ctx.cloud.associate_dhcp_options(&ctx.scope, id.as_deref(), &r.vpc_id).ec2()?;
    ack(ctx, "AssociateDhcpOptions")
}

// --- network ACLs ----------------------------------------------------------------------

fn write_acl(ctx: &Ctx<'_>, w: &mut XmlWriter, v: &AclView, tags: &[(String, String)]) {
    w.elem("networkAclId", &v.acl.id)
        .elem("vpcId", &v.acl.vpc_id)
        .elem("default", v.acl.is_default)
        .elem("ownerId", &ctx.scope.account);
    // Every ACL ends with EC2's rule `*` (32767): deny, both ways.
    let mut entries = v.entries.clone();
    for egress in [false, true] {
        entries.push(AclEntry {
            acl_id: v.acl.id.clone(),
            egress,
            rule_number: 32767,
            protocol: "-1".into(),
            allow: false,
            cidr: "0.0.0.0/0".into(),
            from_port: None,
            to_port: None,
        });
    }
    w.set("entrySet", entries, |w, e| {
        w.elem("ruleNumber", e.rule_number)
            .elem("protocol", &e.protocol)
            .elem("ruleAction", if e.allow { "allow" } else { "deny" })
            .elem("egress", e.egress)
            .elem("cidrBlock", &e.cidr);
        if let (Some(from), Some(to)) = (e.from_port, e.to_port) {
            if e.protocol == "1" {
                w.start("icmpTypeCode").elem("type", from).elem("code", to).end();
            } else {
                w.start("portRange").elem("from", from).elem("to", to).end();
            }
        }
    });
    w.set("associationSet", &v.associations, |w, a| {
        w.elem("networkAclAssociationId", &a.id).elem("networkAclId", &a.acl_id).elem("subnetId", &a.subnet_id);
    });
    write_tags(w, tags);
}

pub(crate) fn describe_network_acls(ctx: &Ctx<'_>, r: DescribeNetworkAcls) -> ActionResult {
    let all = ctx.cloud.network_acls(&ctx.scope, &r.ids).ec2()?;
    let tags = ctx.cloud.tags_by_resource(&ctx.scope).ec2()?;
    let list = filter::apply(
        all,
        &r.filters,
        &[
            "network-acl-id",
            "vpc-id",
            "default",
            "owner-id",
            "association.association-id",
            "association.subnet-id",
            "association.network-acl-id",
            "entry.rule-action",
            "entry.egress",
            "entry.rule-number",
            "entry.cidr",
            "entry.protocol",
            "entry.port-range.from",
            "entry.port-range.to",
        ],
        |v, name| match name {
            "network-acl-id" | "association.network-acl-id" => Field::one(v.acl.id.clone()),
            "vpc-id" => Field::one(v.acl.vpc_id.clone()),
            "default" => Field::one(v.acl.is_default.to_string()),
            "owner-id" => Field::one(ctx.scope.account.clone()),
            "association.association-id" => Field::many(v.associations.iter().map(|a| a.id.clone())),
            "association.subnet-id" => Field::many(v.associations.iter().map(|a| a.subnet_id.clone())),
            "entry.rule-action" => {
                Field::many(v.entries.iter().map(|e| if e.allow { "allow" } else { "deny" }).chain(["deny"]))
            }
            "entry.egress" => Field::many(v.entries.iter().map(|e| e.egress.to_string())),
            "entry.rule-number" => {
                Field::many(v.entries.iter().map(|e| e.rule_number.to_string()).chain(["32767".to_owned()]))
            }
            "entry.cidr" => Field::many(v.entries.iter().map(|e| e.cidr.clone())),
            "entry.protocol" => Field::many(v.entries.iter().map(|e| e.protocol.clone())),
            "entry.port-range.from" => Field::many(v.entries.iter().filter_map(|e| e.from_port.map(|p| p.to_string()))),
            "entry.port-range.to" => Field::many(v.entries.iter().filter_map(|e| e.to_port.map(|p| p.to_string()))),
            _ => Field::Unknown,
        },
        |v| tags_of(&tags, &v.acl.id),
    )?;
    let (page, next) = ctx.page(list, &r.paging, (5, 100), None)?;
    let mut w = ctx.xml("DescribeNetworkAcls");
    w.set("networkAclSet", page, |w, v| write_acl(ctx, w, &v, &tags_of(&tags, &v.acl.id)));
    next_token(&mut w, next);
    Ok(w.finish("DescribeNetworkAcls"))
}

pub(crate) fn create_network_acl(ctx: &Ctx<'_>, r: CreateNetworkAcl) -> ActionResult {
    let tags = tag_pairs(&r.tags);
    let v = ctx.cloud.create_network_acl(&ctx.scope, &r.vpc_id, &tags).ec2()?;
    let mut w = ctx.xml("CreateNetworkAcl");
    w.start("networkAcl");
    write_acl(ctx, &mut w, &v, &tags);
    w.end();
    Ok(w.finish("CreateNetworkAcl"))
}

pub(crate) fn delete_network_acl(ctx: &Ctx<'_>, r: DeleteNetworkAcl) -> ActionResult {
    ctx.cloud.delete_network_acl(&ctx.scope, &r.acl_id).ec2()?;
    ack(ctx, "DeleteNetworkAcl")
}

pub(crate) fn put_network_acl_entry(ctx: &Ctx<'_>, action: &str, r: PutNetworkAclEntry) -> ActionResult {
    let entry = EntryRequest {
        egress: r.egress,
        rule_number: r.rule_number,
        protocol: r.protocol,
        allow: r.allow,
        cidr: r.cidr,
        from: r.from,
        to: r.to,
    };
    ctx.cloud.put_network_acl_entry(&ctx.scope, &r.acl_id, &entry, action == "ReplaceNetworkAclEntry").ec2()?;
    ack(ctx, action)
}

pub(crate) fn delete_network_acl_entry(ctx: &Ctx<'_>, r: DeleteNetworkAclEntry) -> ActionResult {
    ctx.cloud.delete_network_acl_entry(&ctx.scope, &r.acl_id, r.egress, r.rule_number).ec2()?;
    ack(ctx, "DeleteNetworkAclEntry")
}

pub(crate) fn replace_network_acl_association(ctx: &Ctx<'_>, r: ReplaceNetworkAclAssociation) -> ActionResult {
    let id = ctx.cloud.replace_network_acl_association(&ctx.scope, &r.association_id, &r.acl_id).ec2()?;
    let mut w = ctx.xml("ReplaceNetworkAclAssociation");
    w.elem("newAssociationId", id);
    Ok(w.finish("ReplaceNetworkAclAssociation"))
}

// --- Elastic IPs -----------------------------------------------------------------------

fn address_ref(name: AddressName) -> AddressRef {
    match name {
        AddressName::Allocation(a) => AddressRef::Allocation(a.to_string()),
        AddressName::PublicIp(ip) => AddressRef::PublicIp(ip),
    }
}

fn write_address(ctx: &Ctx<'_>, w: &mut XmlWriter, a: &Address, private_ip: Option<&str>, tags: &[(String, String)]) {
    w.elem("publicIp", &a.public_ip)
        .elem("allocationId", &a.allocation_id)
        .elem("domain", "vpc")
        .opt("instanceId", a.instance_id.as_deref())
        .opt("associationId", a.association_id.as_deref())
        .opt("networkInterfaceId", a.instance_id.as_deref().map(primary_interface))
        .opt("networkInterfaceOwnerId", a.instance_id.as_ref().map(|_| &ctx.scope.account))
        .opt("privateIpAddress", private_ip)
        .elem("networkBorderGroup", &ctx.scope.region)
        .elem("publicIpv4Pool", "amazon");
    write_tags(w, tags);
}

pub(crate) fn allocate_address(ctx: &Ctx<'_>, r: AllocateAddress) -> ActionResult {
    let tags = tag_pairs(&r.tags);
    let a = ctx.cloud.allocate_address(&ctx.scope, &tags).ec2()?;
    let mut w = ctx.xml("AllocateAddress");
    w.elem("publicIp", &a.public_ip)
        .elem("allocationId", &a.allocation_id)
        .elem("domain", "vpc")
        .elem("networkBorderGroup", &ctx.scope.region)
        .elem("publicIpv4Pool", "amazon");
    Ok(w.finish("AllocateAddress"))
}

pub(crate) fn associate_address(ctx: &Ctx<'_>, r: AssociateAddress) -> ActionResult {
    let target = match (r.instance_id, r.interface_id) {
        (Some(i), _) => AddressTarget::Instance(i.to_string()),
        (None, Some(n)) => AddressTarget::NetworkInterface(n.to_string()),
        (None, None) => return Err(Ec2Error::missing("InstanceId")),
    };
    let id = ctx.cloud.associate_address(&ctx.scope, &address_ref(r.address), &target, r.allow_reassociation).ec2()?;
    let mut w = ctx.xml("AssociateAddress");
    w.elem("return", "true").elem("associationId", id);
    Ok(w.finish("AssociateAddress"))
}

pub(crate) fn disassociate_address(ctx: &Ctx<'_>, r: DisassociateAddress) -> ActionResult {
    let association = r.association_id.as_ref().map(|a| a.to_string());
    ctx.cloud.disassociate_address(&ctx.scope, association.as_deref(), r.public_ip.as_deref()).ec2()?;
    ack(ctx, "DisassociateAddress")
}

pub(crate) fn release_address(ctx: &Ctx<'_>, r: ReleaseAddress) -> ActionResult {
    ctx.cloud.release_address(&ctx.scope, &address_ref(r.address)).ec2()?;
    ack(ctx, "ReleaseAddress")
}

pub(crate) fn describe_addresses(ctx: &Ctx<'_>, r: DescribeAddresses) -> ActionResult {
    let all = ctx.cloud.addresses(&ctx.scope, &r.allocation_ids, &r.public_ips).ec2()?;
    let private: HashMap<String, String> =
        ctx.cloud.instances(&ctx.scope, &[]).ec2()?.into_iter().map(|i| (i.id, i.private_ip)).collect();
    let private_of = |a: &Address| a.instance_id.as_ref().and_then(|i| private.get(i)).cloned();
    let tags = ctx.cloud.tags_by_resource(&ctx.scope).ec2()?;
    let list = filter::apply(
        all,
        &r.filters,
        &[
            "allocation-id",
            "association-id",
            "domain",
            "instance-id",
            "network-interface-id",
            "network-interface-owner-id",
            "private-ip-address",
            "public-ip",
            "network-border-group",
        ],
        |a, name| match name {
            "allocation-id" => Field::one(a.allocation_id.clone()),
            "association-id" => Field::opt(a.association_id.clone()),
            "domain" => Field::one("vpc"),
            "instance-id" => Field::opt(a.instance_id.clone()),
            "network-interface-id" => Field::opt(a.instance_id.as_deref().map(primary_interface)),
            "network-interface-owner-id" => Field::opt(a.instance_id.as_ref().map(|_| ctx.scope.account.clone())),
            "private-ip-address" => Field::opt(private_of(a)),
            "public-ip" => Field::one(a.public_ip.clone()),
            "network-border-group" => Field::one(ctx.scope.region.clone()),
            _ => Field::Unknown,
        },
        |a| tags_of(&tags, &a.allocation_id),
    )?;
    let mut w = ctx.xml("DescribeAddresses");
    w.set("addressesSet", list, |w, a| {
        write_address(ctx, w, &a, private_of(&a).as_deref(), &tags_of(&tags, &a.allocation_id));
    });
    Ok(w.finish("DescribeAddresses"))
}

pub(crate) fn describe_addresses_attribute(ctx: &Ctx<'_>, r: DescribeAddressesAttribute) -> ActionResult {
    let all = ctx.cloud.addresses(&ctx.scope, &r.allocation_ids, &[]).ec2()?;
    let (page, next) = ctx.page(all, &r.paging, (1, 1000), None)?;
    let mut w = ctx.xml("DescribeAddressesAttribute");
    w.set("addressSet", page, |w, a| {
        w.elem("publicIp", &a.public_ip)
            .elem("allocationId", &a.allocation_id)
            .elem("ptrRecord", public_dns(&ctx.scope.region, &a.public_ip));
    });
    next_token(&mut w, next);
    Ok(w.finish("DescribeAddressesAttribute"))
}

// --- instance credit specifications ------------------------------------------------------

pub(crate) fn describe_instance_credit_specifications(
    ctx: &Ctx<'_>,
    r: DescribeInstanceCreditSpecifications,
) -> ActionResult {
    let list: Vec<_> = ctx
        .cloud
        .instances(&ctx.scope, &r.ids)
        .ec2()?
        .into_iter()
        .filter(|i| i.state != InstanceState::Terminated)
        .filter_map(|i| i.options.cpu_credits.map(|c| (i.id, c.as_str())))
        .collect();
    let list = filter::apply(
        list,
        &r.filters,
        &["instance-id"],
        |(id, _), name| match name {
            "instance-id" => Field::one(id.clone()),
            _ => Field::Unknown,
        },
        |_| Vec::new(),
    )?;
    let (page, next) = ctx.page(list, &r.paging, (5, 1000), None)?;
    let mut w = ctx.xml("DescribeInstanceCreditSpecifications");
    w.set("instanceCreditSpecificationSet", page, |w, (id, credits)| {
        w.elem("instanceId", id).elem("cpuCredits", credits);
    });
    next_token(&mut w, next);
    Ok(w.finish("DescribeInstanceCreditSpecifications"))
}
