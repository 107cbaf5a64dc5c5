//! The `kiln vpc` and `kiln eip` commands: a VPC with a public subnet, internet gateway
//! and default route in one command, and Elastic IPs; each is the EC2 calls an `aws`
//! user would make, shown as tables or JSON.

use anyhow::{Context, Result};
use roxmltree::Document;

use crate::cli::{call, items, numbered, show, text, Global};
use crate::client::Client;

fn one(client: &Client, action: &str, params: &[(&str, &str)], path: &[&str]) -> Result<String> {
    let p: Vec<(String, String)> = params.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let xml = call(client, action, &p)?;
    let doc = Document::parse(&xml)?;
    Ok(text(doc.root_element(), path))
}

/// A VPC of `cidr` with one public subnet (its first /24 in the first zone, or the
/// whole block if smaller), an attached internet gateway, a route table with a
/// 0.0.0.0/0 route to it, and DNS hostnames on; then `kiln run --subnet` launches
/// instances reachable on their public addresses.
pub fn create_vpc(g: &Global, cidr: &str, name: Option<&str>) -> Result<()> {
    let client = Client::new(&g.client)?;
    let net: ipnet::Ipv4Net = cidr.parse().with_context(|| format!("'{cidr}' is not a CIDR block like 10.0.0.0/16"))?;
    let subnet_cidr = if net.prefix_len() < 24 {
        net.subnets(24).ok().and_then(|mut s| s.next()).map(|s| s.to_string()).unwrap_or_else(|| net.to_string())
    } else {
        net.to_string()
    };
    let mut tags: Vec<(String, String)> = Vec::new();
    if let Some(n) = name {
        tags.push(("TagSpecification.1.ResourceType".into(), "vpc".into()));
        tags.push(("TagSpecification.1.Tag.1.Key".into(), "Name".into()));
        tags.push(("TagSpecification.1.Tag.1.Value".into(), n.into()));
    }
    let mut p = vec![("CidrBlock".to_owned(), cidr.to_owned())];
    p.extend(tags);
    let xml = call(&client, "CreateVpc", &p)?;
    let vpc = text(Document::parse(&xml)?.root_element(), &["vpc", "vpcId"]);
    let steps = || -> Result<(String, String, String)> {
        one(&client, "ModifyVpcAttribute", &[("VpcId", &vpc), ("EnableDnsHostnames.Value", "true")], &["return"])?;
        let igw = one(&client, "CreateInternetGateway", &[], &["internetGateway", "internetGatewayId"])?;
        one(&client, "AttachInternetGateway", &[("InternetGatewayId", &igw), ("VpcId", &vpc)], &["return"])?;
        let subnet =
            one(&client, "CreateSubnet", &[("VpcId", &vpc), ("CidrBlock", &subnet_cidr)], &["subnet", "subnetId"])?;
        one(
            &client,
            "ModifySubnetAttribute",
            &[("SubnetId", &subnet), ("MapPublicIpOnLaunch.Value", "true")],
            &["return"],
        )?;
        let table = one(&client, "CreateRouteTable", &[("VpcId", &vpc)], &["routeTable", "routeTableId"])?;
        one(
            &client,
            "CreateRoute",
            &[("RouteTableId", &table), ("DestinationCidrBlock", "0.0.0.0/0"), ("GatewayId", &igw)],
            &["return"],
        )?;
        one(&client, "AssociateRouteTable", &[("RouteTableId", &table), ("SubnetId", &subnet)], &["associationId"])?;
        Ok((igw, subnet, table))
    };
    let (igw, subnet, table) = steps()
        .with_context(|| format!("building {vpc} failed part-way; remove it with `kiln vpc rm {vpc}` and try again"))?;
    show(
        g,
        &["vpc", "cidr", "subnet", "subnet_cidr", "gateway", "route_table"],
        vec![vec![vpc.clone(), cidr.to_owned(), subnet.clone(), subnet_cidr, igw, table]],
    );
    if g.output == "table" {
        eprintln!(
            "Launch into it: kiln run IMAGE --subnet {subnet} --sg GROUP (a group of {vpc}: kiln sg create NAME --vpc {vpc})"
        );
    }
    Ok(())
}

/// Deletes a VPC and everything `create_vpc` made in it: route tables of its own,
/// subnets, the gateway. Instances in it must be terminated first, as on EC2.
pub fn delete_vpc(g: &Global, vpc: &str) -> Result<()> {
    let client = Client::new(&g.client)?;
    let filter = |name: &str| -> Vec<(String, String)> {
        vec![("Filter.1.Name".into(), name.into()), ("Filter.1.Value.1".into(), vpc.into())]
    };
    let xml = call(&client, "DescribeRouteTables", &filter("vpc-id"))?;
    let doc = Document::parse(&xml)?;
    for t in items(doc.root_element(), "routeTableSet") {
        let id = text(t, &["routeTableId"]);
        let assocs = items(t, "associationSet");
        if assocs.iter().any(|a| text(*a, &["main"]) == "true") {
            continue;
        }
        for a in assocs {
            one(
                &client,
                "DisassociateRouteTable",
                &[("AssociationId", &text(a, &["routeTableAssociationId"]))],
                &["return"],
            )?;
        }
        one(&client, "DeleteRouteTable", &[("RouteTableId", &id)], &["return"])?;
    }
    let xml = call(&client, "DescribeSubnets", &filter("vpc-id"))?;
    for s in items(Document::parse(&xml)?.root_element(), "subnetSet") {
        one(&client, "DeleteSubnet", &[("SubnetId", &text(s, &["subnetId"]))], &["return"])?;
    }
    let xml = call(&client, "DescribeInternetGateways", &filter("attachment.vpc-id"))?;
    for gw in items(Document::parse(&xml)?.root_element(), "internetGatewaySet") {
        let id = text(gw, &["internetGatewayId"]);
        one(&client, "DetachInternetGateway", &[("InternetGatewayId", &id), ("VpcId", vpc)], &["return"])?;
        one(&client, "DeleteInternetGateway", &[("InternetGatewayId", &id)], &["return"])?;
    }
    one(&client, "DeleteVpc", &[("VpcId", vpc)], &["return"])?;
    if g.output == "table" {
        eprintln!("deleted {vpc}");
    }
    Ok(())
}

/// VPCs with their subnets and whether they reach the internet.
pub fn vpcs(g: &Global) -> Result<()> {
    let client = Client::new(&g.client)?;
    let xml = call(&client, "DescribeVpcs", &[])?;
    let doc = Document::parse(&xml)?;
    let subnets_xml = call(&client, "DescribeSubnets", &[])?;
    let sdoc = Document::parse(&subnets_xml)?;
    let gws_xml = call(&client, "DescribeInternetGateways", &[])?;
    let gdoc = Document::parse(&gws_xml)?;
    let rows = items(doc.root_element(), "vpcSet")
        .into_iter()
        .map(|v| {
            let id = text(v, &["vpcId"]);
            let subnets: Vec<String> = items(sdoc.root_element(), "subnetSet")
                .into_iter()
                .filter(|s| text(*s, &["vpcId"]) == id)
                .map(|s| text(s, &["subnetId"]))
                .collect();
            let gateway = items(gdoc.root_element(), "internetGatewaySet")
                .into_iter()
                .find(|gw| items(*gw, "attachmentSet").iter().any(|a| text(*a, &["vpcId"]) == id))
                .map(|gw| text(gw, &["internetGatewayId"]))
                .unwrap_or_default();
            vec![id, text(v, &["cidrBlock"]), text(v, &["isDefault"]), gateway, subnets.join(" ")]
        })
        .collect();
    show(g, &["vpc", "cidr", "default", "gateway", "subnets"], rows);
    Ok(())
}

/// Elastic IPs and what they are associated with.
pub fn addresses(g: &Global) -> Result<()> {
    let client = Client::new(&g.client)?;
    let xml = call(&client, "DescribeAddresses", &[])?;
    let doc = Document::parse(&xml)?;
    let rows = items(doc.root_element(), "addressesSet")
        .into_iter()
        .map(|a| {
            vec![
                text(a, &["allocationId"]),
                text(a, &["publicIp"]),
                text(a, &["instanceId"]),
                text(a, &["associationId"]),
            ]
        })
        .collect();
    show(g, &["allocation", "public_ip", "instance", "association"], rows);
    Ok(())
}

/// Allocates an Elastic IP, and associates it with `instance` when one is given.
pub fn allocate(g: &Global, instance: Option<&str>) -> Result<()> {
    let client = Client::new(&g.client)?;
    let xml = call(&client, "AllocateAddress", &[("Domain".into(), "vpc".into())])?;
    let doc = Document::parse(&xml)?;
    let (alloc, ip) = (text(doc.root_element(), &["allocationId"]), text(doc.root_element(), &["publicIp"]));
    let mut association = String::new();
    if let Some(i) = instance {
        association =
            one(&client, "AssociateAddress", &[("AllocationId", &alloc), ("InstanceId", i)], &["associationId"])
                .with_context(|| {
                    format!("{alloc} ({ip}) is allocated but not associated; `kiln eip rm {alloc}` releases it")
                })?;
    }
    show(
        g,
        &["allocation", "public_ip", "instance", "association"],
        vec![vec![alloc, ip, instance.unwrap_or_default().to_owned(), association]],
    );
    Ok(())
}

/// Associates an Elastic IP (allocation id or address) with an instance.
pub fn associate(g: &Global, address: &str, instance: &str) -> Result<()> {
    let client = Client::new(&g.client)?;
    let key = if address.starts_with("eipalloc-") { "AllocationId" } else { "PublicIp" };
    let id = one(&client, "AssociateAddress", &[(key, address), ("InstanceId", instance)], &["associationId"])?;
    crate::cli::emit(&id);
    Ok(())
}

/// Disassociates (if needed) and releases an Elastic IP.
pub fn release(g: &Global, address: &str) -> Result<()> {
    let client = Client::new(&g.client)?;
    let key = if address.starts_with("eipalloc-") { "AllocationId" } else { "PublicIp" };
    let xml = call(&client, "DescribeAddresses", &numbered(key, &[address.to_owned()]))?;
    let doc = Document::parse(&xml)?;
    if let Some(a) = items(doc.root_element(), "addressesSet").first() {
        let assoc = text(*a, &["associationId"]);
        if !assoc.is_empty() {
            one(&client, "DisassociateAddress", &[("AssociationId", &assoc)], &["return"])?;
        }
    }
    one(&client, "ReleaseAddress", &[(key, address)], &["return"])?;
    if g.output == "table" {
        eprintln!("released {address}");
    }
    Ok(())
}
