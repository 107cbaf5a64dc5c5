//! Network interface requests: create, delete, attach, detach, describe and modify.

use std::net::Ipv4Addr;

use kiln_types::{InstanceId, NetworkInterfaceAttachmentId, NetworkInterfaceId, SecurityGroupId, SubnetId};

use super::routing::{describe, Describe};
use super::{ids, tag_specifications, Decode, Tag};
use crate::{Ec2Error, Params};

pub type DescribeNetworkInterfaces = Describe<NetworkInterfaceId>;

impl Decode for DescribeNetworkInterfaces {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        describe(p, "NetworkInterfaceId")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateNetworkInterface {
    pub subnet_id: SubnetId,
    pub private_ip: Option<Ipv4Addr>,
    pub groups: Vec<SecurityGroupId>,
    pub description: String,
    pub tags: Vec<Tag>,
}

fn address(text: &str) -> Result<Ipv4Addr, Ec2Error> {
    text.parse().map_err(|_| Ec2Error::invalid_value(format!("Invalid IPv4 address: {text}")))
}

impl Decode for CreateNetworkInterface {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        let mut private_ip = p.string("PrivateIpAddress").map(|a| address(&a)).transpose()?;
        // PrivateIpAddresses.N: one primary address is what Kiln gives an interface.
        let listed = p.members("PrivateIpAddresses");
        if listed.len() > 1 || listed.iter().any(|m| m.bool("Primary").ok().flatten() == Some(false)) {
            return Err(Ec2Error::invalid_value(
                "Kiln gives a network interface one private IPv4 address: secondary addresses are not supported",
            ));
        }
        if let Some(a) = listed.first().and_then(|m| m.string("PrivateIpAddress")) {
            private_ip = Some(address(&a)?);
        }
        for key in ["SecondaryPrivateIpAddressCount", "Ipv6AddressCount", "Ipv4PrefixCount", "Ipv6PrefixCount"] {
            if p.int(key)?.unwrap_or(0) > 0 {
                return Err(Ec2Error::invalid_value(format!(
                    "{key} is not supported: Kiln gives a network interface one private IPv4 address"
                )));
            }
        }
        if let Some(t) = p.get("InterfaceType") {
            if t != "interface" {
                return Err(Ec2Error::invalid_value(format!(
                    "Interface type {t} is not supported; Kiln makes interfaces of type 'interface'"
                )));
            }
        }
        Ok(Self {
            subnet_id: p.required("SubnetId")?.parse()?,
            private_ip,
            groups: ids(p, "SecurityGroupId")?,
            description: p.string("Description").unwrap_or_default(),
            tags: tag_specifications(p, "network-interface")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeleteNetworkInterface {
    pub id: NetworkInterfaceId,
}

impl Decode for DeleteNetworkInterface {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self { id: p.required("NetworkInterfaceId")?.parse()? })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AttachNetworkInterface {
    pub interface_id: NetworkInterfaceId,
    pub instance_id: InstanceId,
    pub device_index: i64,
}

impl Decode for AttachNetworkInterface {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        let device_index = p.int("DeviceIndex")?.ok_or_else(|| Ec2Error::missing("DeviceIndex"))?;
        if p.int("NetworkCardIndex")?.unwrap_or(0) != 0 {
            return Err(Ec2Error::invalid_value("Kiln's instances have one network card: NetworkCardIndex must be 0"));
        }
        Ok(Self {
            interface_id: p.required("NetworkInterfaceId")?.parse()?,
            instance_id: p.required("InstanceId")?.parse()?,
            device_index,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DetachNetworkInterface {
    pub attachment_id: NetworkInterfaceAttachmentId,
    pub force: bool,
}

impl Decode for DetachNetworkInterface {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self { attachment_id: p.required("AttachmentId")?.parse()?, force: p.flag("Force")? })
    }
}

/// ModifyNetworkInterfaceAttribute: one change to an interface.
#[derive(Debug, Clone, PartialEq)]
pub enum InterfaceChange {
    Groups(Vec<SecurityGroupId>),
    SourceDestCheck(bool),
    Description(String),
    DeleteOnTermination { attachment_id: NetworkInterfaceAttachmentId, on: bool },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModifyNetworkInterfaceAttribute {
    pub interface_id: NetworkInterfaceId,
    pub change: InterfaceChange,
}

impl Decode for ModifyNetworkInterfaceAttribute {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        let interface_id = p.required("NetworkInterfaceId")?.parse()?;
        let groups: Vec<SecurityGroupId> = ids(p, "SecurityGroupId")?;
        let change = if !groups.is_empty() {
            InterfaceChange::Groups(groups)
        } else if let Some(v) = p.bool("SourceDestCheck.Value")? {
            InterfaceChange::SourceDestCheck(v)
        } else if let Some(d) = p.raw("Description.Value") {
            InterfaceChange::Description(d.to_owned())
        } else if let Some(on) = p.bool("Attachment.DeleteOnTermination")? {
            let attachment_id = p
                .string("Attachment.AttachmentId")
                .ok_or_else(|| Ec2Error::missing("Attachment.AttachmentId"))?
                .parse()?;
            InterfaceChange::DeleteOnTermination { attachment_id, on }
        } else {
            return Err(Ec2Error::missing("SecurityGroupId, SourceDestCheck, Description or Attachment"));
        };
        Ok(Self { interface_id, change })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn interface_requests_decode_as_ec2_sends_them() {
        let c = CreateNetworkInterface::decode(&params(&[
            ("SubnetId", "subnet-0123456789abcdef0"),
            ("PrivateIpAddress", "10.0.1.20"),
            ("SecurityGroupId.1", "sg-0123456789abcdef0"),
            ("Description", "second"),
        ]))
        .expect("create");
        assert_eq!(c.private_ip, Some(Ipv4Addr::new(10, 0, 1, 20)));
        assert_eq!((c.groups.len(), c.description.as_str()), (1, "second"));
        let bad = CreateNetworkInterface::decode(&params(&[
            ("SubnetId", "subnet-0123456789abcdef0"),
            ("SecondaryPrivateIpAddressCount", "2"),
        ]));
        assert_eq!(bad.expect_err("secondary").code, "InvalidParameterValue");
        let bad = CreateNetworkInterface::decode(&params(&[
            ("SubnetId", "subnet-0123456789abcdef0"),
            ("PrivateIpAddress", "10.0.1"),
        ]));
        assert_eq!(bad.expect_err("address").code, "InvalidParameterValue");
        let a = AttachNetworkInterface::decode(&params(&[
            ("NetworkInterfaceId", "eni-0123456789abcdef0"),
            ("InstanceId", "i-0123456789abcdef0"),
        ]));
        assert_eq!(a.expect_err("no index").code, "MissingParameter");
        let d = DetachNetworkInterface::decode(&params(&[
            ("AttachmentId", "eni-attach-0123456789abcdef0"),
            ("Force", "true"),
        ]))
        .expect("detach");
        assert!(d.force);
        let d = DetachNetworkInterface::decode(&params(&[("AttachmentId", "eni-0123456789abcdef0")]));
        assert_eq!(d.expect_err("malformed").code, "InvalidAttachmentID.Malformed");
        let m = ModifyNetworkInterfaceAttribute::decode(&params(&[
            ("NetworkInterfaceId", "eni-0123456789abcdef0"),
            ("Description.Value", ""),
        ]))
        .expect("modify");
        assert_eq!(m.change, InterfaceChange::Description(String::new()));
    }
}
