//! VPC routing and addressing requests: internet gateways, route tables and routes,
//! VPC and subnet attributes, network ACLs, Elastic IPs and
//! instance credit specifications.

use kiln_types::{
    AddressAssociationId, AllocationId, DhcpOptionsId, InstanceId, InternetGatewayId, NetworkAclAssociationId,
    NetworkAclId, NetworkInterfaceId, RouteTableAssociationId, RouteTableId, SubnetId, VpcId,
};

use super::{ids, tag_specifications, Decode, Tag};
use crate::page::Paging;
use crate::{Ec2Error, Filter, Params};

/// A Describe* request's ids, filters and paging.
#[derive(Debug, Clone, PartialEq)]
pub struct Describe<T> {
    pub ids: Vec<T>,
    pub filters: Vec<Filter>,
    pub paging: Paging,
}

pub(super) fn describe<T>(p: &Params, prefix: &str) -> Result<Describe<T>, Ec2Error>
where
    T: std::str::FromStr<Err = kiln_types::IdError>,
{
    Ok(Describe { ids: ids(p, prefix)?, filters: p.filters()?, paging: Paging::decode(p)? })
}

pub type DescribeInternetGateways = Describe<InternetGatewayId>;
pub type DescribeRouteTables = Describe<RouteTableId>;
pub type DescribeNetworkAcls = Describe<NetworkAclId>;
pub type DescribeInstanceCreditSpecifications = Describe<InstanceId>;

impl Decode for DescribeInternetGateways {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        describe(p, "InternetGatewayId")
    }
}

impl Decode for DescribeRouteTables {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        describe(p, "RouteTableId")
    }
}

impl Decode for DescribeNetworkAcls {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        describe(p, "NetworkAclId")
    }
}

impl Decode for DescribeInstanceCreditSpecifications {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        describe(p, "InstanceId")
    }
}

/// A request that only tags what it makes (CreateInternetGateway).
#[derive(Debug, Clone, PartialEq)]
pub struct CreateInternetGateway {
    pub tags: Vec<Tag>,
}

impl Decode for CreateInternetGateway {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self { tags: tag_specifications(p, "internet-gateway")? })
    }
}

/// Attach or detach a gateway.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayAttachment {
    pub gateway_id: InternetGatewayId,
    pub vpc_id: VpcId,
}

impl Decode for GatewayAttachment {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self { gateway_id: p.required("InternetGatewayId")?.parse()?, vpc_id: p.required("VpcId")?.parse()? })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeleteInternetGateway {
    pub gateway_id: InternetGatewayId,
}

impl Decode for DeleteInternetGateway {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self { gateway_id: p.required("InternetGatewayId")?.parse()? })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateRouteTable {
    pub vpc_id: VpcId,
    pub tags: Vec<Tag>,
}

impl Decode for CreateRouteTable {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self { vpc_id: p.required("VpcId")?.parse()?, tags: tag_specifications(p, "route-table")? })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeleteRouteTable {
    pub route_table_id: RouteTableId,
}

impl Decode for DeleteRouteTable {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self { route_table_id: p.required("RouteTableId")?.parse()? })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AssociateRouteTable {
    pub route_table_id: RouteTableId,
    pub subnet_id: SubnetId,
}

impl Decode for AssociateRouteTable {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        if p.get("GatewayId").is_some() {
            return Err(Ec2Error::invalid_value("Kiln associates route tables with subnets only, not gateways"));
        }
        Ok(Self { route_table_id: p.required("RouteTableId")?.parse()?, subnet_id: p.required("SubnetId")?.parse()? })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DisassociateRouteTable {
    pub association_id: RouteTableAssociationId,
}

impl Decode for DisassociateRouteTable {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self { association_id: p.required("AssociationId")?.parse()? })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReplaceRouteTableAssociation {
    pub association_id: RouteTableAssociationId,
    pub route_table_id: RouteTableId,
}

impl Decode for ReplaceRouteTableAssociation {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self {
            association_id: p.required("AssociationId")?.parse()?,
            route_table_id: p.required("RouteTableId")?.parse()?,
        })
    }
}

/// Where CreateRoute and ReplaceRoute send traffic (exactly one is given).
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Gateway(String),
    Instance(InstanceId),
    NetworkInterface(NetworkInterfaceId),
    Local,
}

/// Targets EC2 has that Kiln does not (NAT gateways, peering, transit gateways …).
const OTHER_TARGETS: &[&str] = &[
    "NatGatewayId",
    "VpcPeeringConnectionId",
    "TransitGatewayId",
    "EgressOnlyInternetGatewayId",
    "LocalGatewayId",
    "CarrierGatewayId",
    "VpcEndpointId",
    "CoreNetworkArn",
];

/// CreateRoute and ReplaceRoute.
#[derive(Debug, Clone, PartialEq)]
pub struct PutRoute {
    pub route_table_id: RouteTableId,
    pub destination: String,
    pub target: Target,
}

impl Decode for PutRoute {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        if p.get("DestinationIpv6CidrBlock").is_some() || p.get("DestinationPrefixListId").is_some() {
            return Err(Ec2Error::invalid_value("Kiln's VPCs route IPv4 destinations (DestinationCidrBlock) only"));
        }
        if let Some(other) = OTHER_TARGETS.iter().find(|k| p.get(k).is_some()) {
            return Err(Ec2Error::invalid_value(format!(
                "Kiln has no {} targets; route to an internet gateway, an instance or a network interface",
                other.trim_end_matches("Id")
            )));
        }
        let mut targets = Vec::new();
        if let Some(g) = p.string("GatewayId") {
            targets.push(if g == "local" {
                Target::Local
            } else if g.starts_with("igw-") {
                Target::Gateway(g.parse::<InternetGatewayId>()?.to_string())
            } else {
                return Err(Ec2Error::new("InvalidGatewayID.NotFound", format!("The gateway ID '{g}' does not exist")));
            });
        }
        if let Some(i) = p.string("InstanceId") {
            targets.push(Target::Instance(i.parse()?));
        }
        if let Some(n) = p.string("NetworkInterfaceId") {
            targets.push(Target::NetworkInterface(n.parse()?));
        }
        let target = match targets.len() {
            0 => return Err(Ec2Error::missing("GatewayId, InstanceId or NetworkInterfaceId (the route's target)")),
            1 => targets.remove(0),
            _ => {
                return Err(Ec2Error::combination(
                    "Only one of GatewayId, InstanceId and NetworkInterfaceId may be given",
                ))
            }
        };
        Ok(Self {
            route_table_id: p.required("RouteTableId")?.parse()?,
            destination: p.required("DestinationCidrBlock")?,
            target,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeleteRoute {
    pub route_table_id: RouteTableId,
    pub destination: String,
}

impl Decode for DeleteRoute {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self {
            route_table_id: p.required("RouteTableId")?.parse()?,
            destination: p.required("DestinationCidrBlock")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DescribeVpcAttribute {
    pub vpc_id: VpcId,
    pub attribute: String,
}

impl Decode for DescribeVpcAttribute {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        let attribute = p.required("Attribute")?;
        if !["enableDnsSupport", "enableDnsHostnames", "enableNetworkAddressUsageMetrics"].contains(&attribute.as_str())
        {
            return Err(Ec2Error::invalid_value(format!(
                "Value ({attribute}) for parameter attribute is invalid. Valid values: enableDnsSupport, enableDnsHostnames, enableNetworkAddressUsageMetrics"
            )));
        }
        Ok(Self { vpc_id: p.required("VpcId")?.parse()?, attribute })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModifyVpcAttribute {
    pub vpc_id: VpcId,
    pub dns_support: Option<bool>,
    pub dns_hostnames: Option<bool>,
}

impl Decode for ModifyVpcAttribute {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        let dns_support = p.bool("EnableDnsSupport.Value")?;
        let dns_hostnames = p.bool("EnableDnsHostnames.Value")?;
        if p.get("EnableNetworkAddressUsageMetrics.Value").is_some() {
            return Err(Ec2Error::invalid_value("Kiln does not keep network address usage metrics"));
        }
        match (dns_support, dns_hostnames) {
            (None, None) => Err(Ec2Error::missing("EnableDnsSupport or EnableDnsHostnames")),
            (Some(_), Some(_)) => {
                Err(Ec2Error::combination("Only one attribute can be modified at a time (as on EC2)"))
            }
            _ => Ok(Self { vpc_id: p.required("VpcId")?.parse()?, dns_support, dns_hostnames }),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModifySubnetAttribute {
    pub subnet_id: SubnetId,
    pub map_public_ip: bool,
}

impl Decode for ModifySubnetAttribute {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        let subnet_id = p.required("SubnetId")?.parse()?;
        if let Some(on) = p.bool("MapPublicIpOnLaunch.Value")? {
            return Ok(Self { subnet_id, map_public_ip: on });
        }
        let other = p.iter().map(|(k, _)| k).find(|k| k.ends_with(".Value")).unwrap_or("none");
        Err(Ec2Error::invalid_value(format!(
            "Kiln's subnets take MapPublicIpOnLaunch only (asked for {})",
            other.trim_end_matches(".Value")
        )))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateDefaultVpc;

impl Decode for CreateDefaultVpc {
    fn decode(_: &Params) -> Result<Self, Ec2Error> {
        Ok(Self)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AllocateAddress {
    pub tags: Vec<Tag>,
}

impl Decode for AllocateAddress {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        if let Some(d) = p.get("Domain") {
            if d != "vpc" && d != "standard" {
                return Err(Ec2Error::invalid_value(format!(
                    "Value ({d}) for parameter domain is invalid. Valid values: vpc, standard"
                )));
            }
        }
        if p.get("Address").is_some() || p.get("PublicIpv4Pool").is_some() || p.get("CustomerOwnedIpv4Pool").is_some() {
            return Err(Ec2Error::invalid_value(
                "Kiln allocates from the host's public pool; a chosen Address or pool is not supported",
            ));
        }
        Ok(Self { tags: tag_specifications(p, "elastic-ip")? })
    }
}

/// An address named by allocation id or public IP.
#[derive(Debug, Clone, PartialEq)]
pub enum AddressName {
    Allocation(AllocationId),
    PublicIp(String),
}

fn address_name(p: &Params) -> Result<AddressName, Ec2Error> {
    match (p.string("AllocationId"), p.string("PublicIp")) {
        (Some(a), None) => Ok(AddressName::Allocation(a.parse()?)),
        (None, Some(ip)) => Ok(AddressName::PublicIp(ip)),
        (None, None) => Err(Ec2Error::missing("AllocationId")),
        (Some(_), Some(_)) => {
            Err(Ec2Error::combination("The parameters AllocationId and PublicIp cannot both be given"))
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AssociateAddress {
    pub address: AddressName,
    pub instance_id: Option<InstanceId>,
    pub interface_id: Option<NetworkInterfaceId>,
    pub allow_reassociation: bool,
}

impl Decode for AssociateAddress {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        let instance_id: Option<InstanceId> = p.string("InstanceId").map(|s| s.parse()).transpose()?;
        let interface_id: Option<NetworkInterfaceId> = p.string("NetworkInterfaceId").map(|s| s.parse()).transpose()?;
        if instance_id.is_none() && interface_id.is_none() {
            return Err(Ec2Error::missing("InstanceId or NetworkInterfaceId"));
        }
        if let Some(ip) = p.get("PrivateIpAddress") {
            if ip.parse::<std::net::Ipv4Addr>().is_err() {
                return Err(Ec2Error::invalid_value(format!("Invalid private IP address {ip}")));
            }
        }
        Ok(Self {
            address: address_name(p)?,
            instance_id,
            interface_id,
            allow_reassociation: p.flag("AllowReassociation")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DisassociateAddress {
    pub association_id: Option<AddressAssociationId>,
    pub public_ip: Option<String>,
}

impl Decode for DisassociateAddress {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        let association_id = p.string("AssociationId").map(|s| s.parse()).transpose()?;
        let public_ip = p.string("PublicIp");
        if association_id.is_none() && public_ip.is_none() {
            return Err(Ec2Error::missing("AssociationId"));
        }
        Ok(Self { association_id, public_ip })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseAddress {
    pub address: AddressName,
}

impl Decode for ReleaseAddress {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self { address: address_name(p)? })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DescribeAddresses {
    pub allocation_ids: Vec<AllocationId>,
    pub public_ips: Vec<String>,
    pub filters: Vec<Filter>,
}

impl Decode for DescribeAddresses {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self { allocation_ids: ids(p, "AllocationId")?, public_ips: p.list("PublicIp"), filters: p.filters()? })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DescribeAddressesAttribute {
    pub allocation_ids: Vec<AllocationId>,
    pub paging: Paging,
}

impl Decode for DescribeAddressesAttribute {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        if let Some(a) = p.get("Attribute") {
            if a != "domain-name" {
                return Err(Ec2Error::invalid_value(format!(
                    "Value ({a}) for parameter attribute is invalid. Valid values: domain-name"
                )));
            }
        }
        Ok(Self { allocation_ids: ids(p, "AllocationId")?, paging: Paging::decode(p)? })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateNetworkAcl {
    pub vpc_id: VpcId,
    pub tags: Vec<Tag>,
}

impl Decode for CreateNetworkAcl {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self { vpc_id: p.required("VpcId")?.parse()?, tags: tag_specifications(p, "network-acl")? })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeleteNetworkAcl {
    pub acl_id: NetworkAclId,
}

impl Decode for DeleteNetworkAcl {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self { acl_id: p.required("NetworkAclId")?.parse()? })
    }
}

/// CreateNetworkAclEntry and ReplaceNetworkAclEntry.
#[derive(Debug, Clone, PartialEq)]
pub struct PutNetworkAclEntry {
    pub acl_id: NetworkAclId,
    pub egress: bool,
    pub rule_number: i64,
    pub protocol: String,
    pub allow: bool,
    pub cidr: String,
    pub from: Option<i64>,
    pub to: Option<i64>,
}

impl Decode for PutNetworkAclEntry {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        if p.get("Ipv6CidrBlock").is_some() {
            return Err(Ec2Error::invalid_value("Kiln's VPCs are IPv4 only (Ipv6CidrBlock)"));
        }
        let allow = match p.required("RuleAction")?.as_str() {
            "allow" => true,
            "deny" => false,
            other => {
                return Err(Ec2Error::invalid_value(format!(
                    "Value ({other}) for parameter ruleAction is invalid. Valid values: allow, deny"
                )))
            }
        };
        let protocol = p.required("Protocol")?;
        let icmp = matches!(protocol.as_str(), "1" | "icmp");
        let (from, to) = if icmp {
            (p.int("IcmpTypeCode.Type")?, p.int("IcmpTypeCode.Code")?)
        } else {
            (p.int("PortRange.From")?, p.int("PortRange.To")?)
        };
        Ok(Self {
            acl_id: p.required("NetworkAclId")?.parse()?,
            egress: p.bool("Egress")?.ok_or_else(|| Ec2Error::missing("Egress"))?,
            rule_number: p.int("RuleNumber")?.ok_or_else(|| Ec2Error::missing("RuleNumber"))?,
            protocol,
            allow,
            cidr: p.required("CidrBlock")?,
            from,
            to,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeleteNetworkAclEntry {
    pub acl_id: NetworkAclId,
    pub egress: bool,
    pub rule_number: i64,
}

impl Decode for DeleteNetworkAclEntry {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self {
            acl_id: p.required("NetworkAclId")?.parse()?,
            egress: p.bool("Egress")?.ok_or_else(|| Ec2Error::missing("Egress"))?,
            rule_number: p.int("RuleNumber")?.ok_or_else(|| Ec2Error::missing("RuleNumber"))?,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReplaceNetworkAclAssociation {
    pub association_id: NetworkAclAssociationId,
    pub acl_id: NetworkAclId,
}

impl Decode for ReplaceNetworkAclAssociation {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self { association_id: p.required("AssociationId")?.parse()?, acl_id: p.required("NetworkAclId")?.parse()? })
    }
}

pub type DescribeDhcpOptions = Describe<DhcpOptionsId>;

impl Decode for DescribeDhcpOptions {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        describe(p, "DhcpOptionsId")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateDhcpOptions {
    /// Each key with its values, in the order given.
    pub values: Vec<(String, Vec<String>)>,
    pub tags: Vec<Tag>,
}

impl Decode for CreateDhcpOptions {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        let values = p
            .members("DhcpConfiguration")
            .iter()
            .map(|m| Ok((m.required("Key")?, m.list("Value"))))
            .collect::<Result<Vec<_>, Ec2Error>>()?;
        if values.is_empty() {
            return Err(Ec2Error::missing("DhcpConfiguration"));
        }
        Ok(Self { values, tags: tag_specifications(p, "dhcp-options")? })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeleteDhcpOptions {
    pub id: DhcpOptionsId,
}

impl Decode for DeleteDhcpOptions {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self { id: p.required("DhcpOptionsId")?.parse()? })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AssociateDhcpOptions {
    /// `None`: `default` (no options set).
    pub id: Option<DhcpOptionsId>,
    pub vpc_id: VpcId,
}

impl Decode for AssociateDhcpOptions {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        let id = match p.required("DhcpOptionsId")?.as_str() {
            "default" => None,
            other => Some(other.parse()?),
        };
        Ok(Self { id, vpc_id: p.required("VpcId")?.parse()? })
    }
}
