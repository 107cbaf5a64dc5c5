//! CreateVpc, DescribeVpcs, DeleteVpc, CreateSubnet, DescribeSubnets, DeleteSubnet.

use std::collections::HashMap;

use kiln_ec2::filter::{self, Field};
use kiln_ec2::requests::vpcs::{CreateSubnet, CreateVpc, DeleteSubnet, DeleteVpc, DescribeSubnets, DescribeVpcs};
use kiln_ec2::XmlWriter;
use kiln_store::vpcs::{Subnet, Vpc};

use super::{ack, next_token, tag_pairs, ActionResult, Ctx, OrEc2};

type Tags = HashMap<String, Vec<(String, String)>>;

fn tags_of(tags: &Tags, id: &str) -> Vec<(String, String)> {
    tags.get(id).cloned().unwrap_or_default()
}

pub(crate) fn write_vpc(ctx: &Ctx<'_>, w: &mut XmlWriter, v: &Vpc, tags: &[(String, String)]) {
    let assoc = format!("vpc-cidr-assoc-{}", &v.id[4..]);
    w.elem("vpcId", &v.id)
        .elem("ownerId", &ctx.scope.account)
        .elem("state", "available")
        .elem("cidrBlock", &v.cidr)
        .set("cidrBlockAssociationSet", [()], |w, _| {
            w.elem("cidrBlock", &v.cidr).elem("associationId", &assoc);
            w.start("cidrBlockState").elem("state", "associated").end();
        })
        .elem("dhcpOptionsId", v.dhcp_options_id.as_deref().unwrap_or("default"))
        .elem("instanceTenancy", "default")
        .elem("isDefault", v.is_default)
        .tags(tags.iter().map(|(a, b)| (a.as_str(), b.as_str())));
}

pub(crate) fn create_vpc(ctx: &Ctx<'_>, r: CreateVpc) -> ActionResult {
    let tags = tag_pairs(&r.tags);
    let vpc = ctx.cloud.create_vpc(&ctx.scope, &r.cidr_block, &tags).ec2()?;
    let mut w = ctx.xml("CreateVpc");
    w.start("vpc");
    write_vpc(ctx, &mut w, &vpc, &tags);
    w.end();
    Ok(w.finish("CreateVpc"))
}

pub(crate) fn describe_vpcs(ctx: &Ctx<'_>, r: DescribeVpcs) -> ActionResult {
    let vpcs = ctx.cloud.vpcs(&ctx.scope, &r.vpc_ids).ec2()?;
    let tags = ctx.cloud.tags_by_resource(&ctx.scope).ec2()?;
    let vpcs = filter::apply(
        vpcs,
        &r.filters,
        &[
            "vpc-id",
            "cidr",
            "cidr-block",
            "cidr-block-association.cidr-block",
            "cidr-block-association.association-id",
            "cidr-block-association.state",
            "is-default",
            "state",
            "owner-id",
            "dhcp-options-id",
        ],
        |v, name| match name {
            "vpc-id" => Field::one(v.id.clone()),
            "cidr" | "cidr-block" | "cidr-block-association.cidr-block" => Field::one(v.cidr.clone()),
            "cidr-block-association.association-id" => Field::one(format!("vpc-cidr-assoc-{}", &v.id[4..])),
            "cidr-block-association.state" => Field::one("associated"),
            "is-default" => Field::one(v.is_default.to_string()),
            "state" => Field::one("available"),
            "owner-id" => Field::one(ctx.scope.account.clone()),
            "dhcp-options-id" => Field::one(v.dhcp_options_id.clone().unwrap_or_else(|| "default".into())),
            _ => Field::Unknown,
        },
        |v| tags_of(&tags, &v.id),
    )?;
    let (page, next) = ctx.page(vpcs, &r.paging, (5, 1000), None)?;
    let mut w = ctx.xml("DescribeVpcs");
    w.set("vpcSet", page, |w, v| write_vpc(ctx, w, &v, &tags_of(&tags, &v.id)));
    next_token(&mut w, next);
    Ok(w.finish("DescribeVpcs"))
}

pub(crate) fn delete_vpc(ctx: &Ctx<'_>, r: DeleteVpc) -> ActionResult {
    ctx.cloud.delete_vpc(&ctx.scope, &r.vpc_id).ec2()?;
    ack(ctx, "DeleteVpc")
}

/// Addresses EC2 leaves free in a subnet: all but the network, broadcast and three
/// reserved addresses.
fn available_ips(cidr: &str) -> u64 {
    let bits = cidr.rsplit_once('/').and_then(|(_, p)| p.parse::<u32>().ok()).unwrap_or(32).min(32);
    (1u64 << (32 - bits)).saturating_sub(5)
}

fn write_subnet(ctx: &Ctx<'_>, w: &mut XmlWriter, s: &Subnet, tags: &[(String, String)]) {
    w.elem("subnetId", &s.id)
        .elem("subnetArn", ctx.arn("subnet", &s.id))
        .elem("state", "available")
        .elem("vpcId", &s.vpc_id)
        .elem("cidrBlock", &s.cidr)
        .elem("availableIpAddressCount", available_ips(&s.cidr))
        .elem("availabilityZone", &s.availability_zone)
        .elem("availabilityZoneId", &s.zone_id)
        .elem("defaultForAz", s.default_for_az)
        .elem("mapPublicIpOnLaunch", s.map_public_ip)
        .elem("ownerId", &ctx.scope.account)
        .elem("assignIpv6AddressOnCreation", "false")
        .elem("enableDns64", "false")
        .elem("ipv6Native", "false")
        .start("ipv6CidrBlockAssociationSet")
        .end()
        .tags(tags.iter().map(|(a, b)| (a.as_str(), b.as_str())));
}

pub(crate) fn create_subnet(ctx: &Ctx<'_>, r: CreateSubnet) -> ActionResult {
    let tags = tag_pairs(&r.tags);
    let subnet = ctx
        .cloud
        .create_subnet(
            &ctx.scope,
            &r.vpc_id,
            &r.cidr_block,
            r.availability_zone.as_deref(),
            r.availability_zone_id.as_deref(),
            &tags,
        )
        .ec2()?;
    let mut w = ctx.xml("CreateSubnet");
    w.start("subnet");
    write_subnet(ctx, &mut w, &subnet, &tags);
    w.end();
    Ok(w.finish("CreateSubnet"))
}

pub(crate) fn describe_subnets(ctx: &Ctx<'_>, r: DescribeSubnets) -> ActionResult {
    let subnets = ctx.cloud.subnets(&ctx.scope, &r.subnet_ids).ec2()?;
    let tags = ctx.cloud.tags_by_resource(&ctx.scope).ec2()?;
    let subnets = filter::apply(
        subnets,
        &r.filters,
        &[
            "subnet-id",
            "vpc-id",
            "cidr-block",
            "cidr",
            "cidrBlock",
            "availability-zone",
            "availability-zone-id",
            "default-for-az",
            "defaultForAz",
            "state",
            "owner-id",
            "map-public-ip-on-launch",
            "subnet-arn",
        ],
        |s, name| match name {
            "subnet-id" => Field::one(s.id.clone()),
            "vpc-id" => Field::one(s.vpc_id.clone()),
            "cidr-block" | "cidr" | "cidrBlock" => Field::one(s.cidr.clone()),
            "availability-zone" => Field::one(s.availability_zone.clone()),
            "availability-zone-id" => Field::one(s.zone_id.clone()),
            "default-for-az" | "defaultForAz" => Field::one(s.default_for_az.to_string()),
            "state" => Field::one("available"),
            "owner-id" => Field::one(ctx.scope.account.clone()),
            "map-public-ip-on-launch" => Field::one(s.map_public_ip.to_string()),
            "subnet-arn" => Field::one(ctx.arn("subnet", &s.id)),
            _ => Field::Unknown,
        },
        |s| tags_of(&tags, &s.id),
    )?;
    let (page, next) = ctx.page(subnets, &r.paging, (5, 1000), None)?;
    let mut w = ctx.xml("DescribeSubnets");
    w.set("subnetSet", page, |w, s| write_subnet(ctx, w, &s, &tags_of(&tags, &s.id)));
    next_token(&mut w, next);
    Ok(w.finish("DescribeSubnets"))
}

pub(crate) fn delete_subnet(ctx: &Ctx<'_>, r: DeleteSubnet) -> ActionResult {
    ctx.cloud.delete_subnet(&ctx.scope, &r.subnet_id).ec2()?;
    ack(ctx, "DeleteSubnet")
}
