//! Security group requests and the IpPermissions structure, in its modern nested form
//! and the legacy flat form (`IpProtocol`, `FromPort`, `ToPort`, `CidrIp`).

use kiln_types::{SecurityGroupId, SecurityGroupRuleId, VpcId};

use super::{ids, tag_specifications, Decode, Tag};
use crate::page::Paging;
use crate::{Ec2Error, Filter, Params};

/// An IP protocol as rules name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    All,
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
    Number(u8),
}

impl Protocol {
    pub fn parse(s: &str) -> Result<Self, Ec2Error> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "-1" | "all" => Self::All,
            "tcp" | "6" => Self::Tcp,
            "udp" | "17" => Self::Udp,
            "icmp" | "1" => Self::Icmp,
            "icmpv6" | "58" => Self::Icmpv6,
            other => match other.parse::<u8>() {
                Ok(n) => Self::Number(n),
                Err(_) => {
                    return Err(Ec2Error::invalid_value(format!(
                        "Invalid value '{s}' for IP protocol. Unknown protocol."
                    )))
                }
            },
        })
    }

    /// The name EC2 echoes back (`tcp`, `-1`, or the number).
    pub fn as_wire(self) -> String {
        match self {
            Self::All => "-1".into(),
            Self::Tcp => "tcp".into(),
            Self::Udp => "udp".into(),
            Self::Icmp => "icmp".into(),
            Self::Icmpv6 => "icmpv6".into(),
            Self::Number(n) => n.to_string(),
        }
    }

    /// Whether this protocol's rules carry ports (or ICMP type and code).
    pub fn has_ports(self) -> bool {
        matches!(self, Self::Tcp | Self::Udp | Self::Icmp | Self::Icmpv6)
    }
}

/// A reference to another security group in a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPair {
    pub group_id: Option<SecurityGroupId>,
    pub group_name: Option<String>,
    pub user_id: Option<String>,
    pub description: Option<String>,
}

/// One IpPermissions item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpPermission {
    pub protocol: Protocol,
    pub from_port: Option<i32>,
    pub to_port: Option<i32>,
    pub ipv4_ranges: Vec<(String, Option<String>)>,
    pub ipv6_ranges: Vec<(String, Option<String>)>,
    pub groups: Vec<GroupPair>,
}

fn port(p: &Params, key: &str) -> Result<Option<i32>, Ec2Error> {
    match p.int(key)? {
        None => Ok(None),
        Some(n) if (-1..=65535).contains(&n) => Ok(Some(n as i32)),
        Some(n) => Err(Ec2Error::invalid_value(format!("Invalid value '{n}' for {key}: ports are -1 to 65535"))),
    }
}

impl IpPermission {
    fn decode_nested(m: &Params) -> Result<Self, Ec2Error> {
        let protocol =
            Protocol::parse(&m.required("IpProtocol").map_err(|_| Ec2Error::missing("IpPermissions.N.IpProtocol"))?)?;
        let ranges = |name: &str, field: &str| -> Result<Vec<(String, Option<String>)>, Ec2Error> {
            m.members(name)
                .into_iter()
                .map(|r| {
                    let cidr = r.required(field).map_err(|_| Ec2Error::missing(&format!("{name}.N.{field}")))?;
                    Ok((cidr, r.string("Description")))
                })
                .collect()
        };
        let groups = m
            .members("Groups")
            .into_iter()
            .map(|g| {
                let group_id = match g.get("GroupId") {
                    Some(id) => Some(id.parse()?),
                    None => None,
                };
                let pair = GroupPair {
                    group_id,
                    group_name: g.string("GroupName"),
                    user_id: g.string("UserId"),
                    description: g.string("Description"),
                };
                if pair.group_id.is_none() && pair.group_name.is_none() {
                    return Err(Ec2Error::missing("Groups.N.GroupId"));
                }
                Ok(pair)
            })
            .collect::<Result<Vec<_>, Ec2Error>>()?;
        let perm = Self {
            protocol,
            from_port: port(m, "FromPort")?,
            to_port: port(m, "ToPort")?,
            ipv4_ranges: ranges("IpRanges", "CidrIp")?,
            ipv6_ranges: ranges("Ipv6Ranges", "CidrIpv6")?,
            groups,
        };
        perm.validate()
    }

    /// Checks ports against the protocol and fills EC2's defaults: `-1` ignores ports;
    /// TCP and UDP need both ports, from ≤ to; ICMP ports are type and code.
    pub fn validate(mut self) -> Result<Self, Ec2Error> {
        match self.protocol {
            Protocol::Tcp | Protocol::Udp => {
                let (Some(from), Some(to)) = (self.from_port, self.to_port) else {
                    return Err(Ec2Error::invalid_value(
                        "Invalid value for portRange. Must specify both from and to ports with TCP/UDP.",
                    ));
                };
                if from < 0 || to < 0 || from > to {
                    return Err(Ec2Error::invalid_value(format!(
                        "Invalid TCP/UDP port range {from}-{to}: ports are 0 to 65535 and from must not exceed to."
                    )));
                }
            }
            Protocol::Icmp | Protocol::Icmpv6 => {
                let from = self.from_port.unwrap_or(-1);
                let to = self.to_port.unwrap_or(-1);
                if !(-1..=255).contains(&from) || !(-1..=255).contains(&to) {
                    return Err(Ec2Error::invalid_value(format!(
                        "Invalid ICMP type {from} or code {to}: each is -1 to 255."
                    )));
                }
                self.from_port = Some(from);
                self.to_port = Some(to);
            }
            Protocol::All | Protocol::Number(_) => {
                self.from_port = None;
                self.to_port = None;
            }
        }
        Ok(self)
    }
}

/// The group a rule change or deletion is aimed at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupRef {
    Id(SecurityGroupId),
    Name(String),
}

fn group_ref(p: &Params, allow_name: bool) -> Result<GroupRef, Ec2Error> {
    if let Some(id) = p.get("GroupId") {
        return Ok(GroupRef::Id(id.parse()?));
    }
    match p.get("GroupName") {
        Some(name) if allow_name && !name.is_empty() => Ok(GroupRef::Name(name.to_owned())),
        _ if allow_name => Err(Ec2Error::missing("GroupId or GroupName")),
        _ => Err(Ec2Error::missing("GroupId")),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateSecurityGroup {
    pub group_name: String,
    pub description: String,
    pub vpc_id: Option<VpcId>,
    pub tags: Vec<Tag>,
}

impl Decode for CreateSecurityGroup {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        let group_name = p.required("GroupName")?;
        if group_name.len() > 255 {
            return Err(Ec2Error::invalid_value("Group names are at most 255 characters"));
        }
        if group_name.starts_with("sg-") {
            return Err(Ec2Error::invalid_value("Group names may not be in the format sg-*"));
        }
        let description = p.required("GroupDescription")?;
        if description.len() > 255 {
            return Err(Ec2Error::invalid_value("Group descriptions are at most 255 characters"));
        }
        let vpc_id = match p.get("VpcId") {
            Some(v) => Some(v.parse()?),
            None => None,
        };
        Ok(Self { group_name, description, vpc_id, tags: tag_specifications(p, "security-group")? })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DescribeSecurityGroups {
    pub group_ids: Vec<SecurityGroupId>,
    pub group_names: Vec<String>,
    pub filters: Vec<Filter>,
    pub paging: Paging,
}

impl Decode for DescribeSecurityGroups {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        let group_ids = ids(p, "GroupId")?;
        let group_names = p.list("GroupName");
        let paging = Paging::decode(p)?;
        if (!group_ids.is_empty() || !group_names.is_empty()) && paging.max_results.is_some() {
            return Err(Ec2Error::combination(
                "The parameter groupIds or groupNames cannot be used with the parameter maxResults",
            ));
        }
        Ok(Self { group_ids, group_names, filters: p.filters()?, paging })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeleteSecurityGroup {
    pub group: GroupRef,
}

impl Decode for DeleteSecurityGroup {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self { group: group_ref(p, true)? })
    }
}

/// Authorize or Revoke, Ingress or Egress: the action name says which.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeRules {
    pub group: GroupRef,
    pub permissions: Vec<IpPermission>,
    /// Revoke only: rules named by their `sgr-` ids.
    pub rule_ids: Vec<SecurityGroupRuleId>,
    pub tags: Vec<Tag>,
}

impl Decode for ChangeRules {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        let group = group_ref(p, true)?;
        let mut permissions =
            p.members("IpPermissions").iter().map(IpPermission::decode_nested).collect::<Result<Vec<_>, _>>()?;
        if let Some(proto) = p.get("IpProtocol") {
            // The legacy flat form: one permission at the top level.
            let groups = match p.string("SourceSecurityGroupName") {
                Some(name) => vec![GroupPair {
                    group_id: None,
                    group_name: Some(name),
                    user_id: p.string("SourceSecurityGroupOwnerId"),
                    description: None,
                }],
                None => Vec::new(),
            };
            let perm = IpPermission {
                protocol: Protocol::parse(proto)?,
                from_port: port(p, "FromPort")?,
                to_port: port(p, "ToPort")?,
                ipv4_ranges: p.string("CidrIp").map(|c| (c, None)).into_iter().collect(),
                ipv6_ranges: Vec::new(),
                groups,
            };
            if perm.ipv4_ranges.is_empty() && perm.groups.is_empty() {
                return Err(Ec2Error::missing("CidrIp or SourceSecurityGroupName"));
            }
            permissions.push(perm.validate()?);
        } else if let Some(cidr) = p.string("CidrIp") {
            // `--cidr` without `--protocol` is an error in EC2 too.
            return Err(Ec2Error::missing(&format!("IpProtocol (for CidrIp {cidr})")));
        } else if let Some(name) = p.string("SourceSecurityGroupName") {
            // `SourceSecurityGroupName` alone grants everything from that group.
            permissions.push(IpPermission {
                protocol: Protocol::All,
                from_port: None,
                to_port: None,
                ipv4_ranges: Vec::new(),
                ipv6_ranges: Vec::new(),
                groups: vec![GroupPair {
                    group_id: None,
                    group_name: Some(name),
                    user_id: p.string("SourceSecurityGroupOwnerId"),
                    description: None,
                }],
            });
        }
        for perm in &permissions {
            if perm.ipv4_ranges.is_empty() && perm.ipv6_ranges.is_empty() && perm.groups.is_empty() {
                return Err(Ec2Error::missing("IpPermissions.N.IpRanges, Ipv6Ranges or Groups"));
            }
        }
        let rule_ids = ids(p, "SecurityGroupRuleId")?;
        if permissions.is_empty() && rule_ids.is_empty() {
            return Err(Ec2Error::missing("IpPermissions"));
        }
        Ok(Self { group, permissions, rule_ids, tags: tag_specifications(p, "security-group-rule")? })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DescribeSecurityGroupRules {
    pub rule_ids: Vec<SecurityGroupRuleId>,
    pub filters: Vec<Filter>,
    pub paging: Paging,
}

impl Decode for DescribeSecurityGroupRules {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self { rule_ids: ids(p, "SecurityGroupRuleId")?, filters: p.filters()?, paging: Paging::decode(p)? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_permissions_decode() {
        let p = Params::parse(
            "GroupId=sg-12345678&IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=22&IpPermissions.1.ToPort=22\
&IpPermissions.1.IpRanges.1.CidrIp=10.0.0.0%2F8&IpPermissions.1.IpRanges.1.Description=ssh\
&IpPermissions.2.IpProtocol=-1&IpPermissions.2.Groups.1.GroupId=sg-87654321",
            b"",
        );
        let r = ChangeRules::decode(&p).expect("decode");
        assert_eq!(r.group, GroupRef::Id("sg-12345678".parse().expect("a group id")));
        assert_eq!(r.permissions[0].protocol, Protocol::Tcp);
        assert_eq!(r.permissions[0].ipv4_ranges, vec![("10.0.0.0/8".into(), Some("ssh".into()))]);
        assert_eq!(r.permissions[1].groups[0].group_id.as_deref(), Some("sg-87654321"));
    }

    #[test]
    fn legacy_flat_form_decodes() {
        let p = Params::parse("GroupName=web&IpProtocol=6&FromPort=80&ToPort=80&CidrIp=0.0.0.0%2F0", b"");
        let r = ChangeRules::decode(&p).expect("decode");
        assert_eq!(r.group, GroupRef::Name("web".into()));
        assert_eq!(r.permissions[0].protocol, Protocol::Tcp);
        assert_eq!(r.permissions[0].from_port, Some(80));
    }

    #[test]
    fn bad_ports_and_protocols_are_refused() {
        for q in [
            "GroupId=sg-12345678&IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=90&IpPermissions.1.ToPort=80&IpPermissions.1.IpRanges.1.CidrIp=1.2.3.4%2F32",
            "GroupId=sg-12345678&IpPermissions.1.IpProtocol=tcp&IpPermissions.1.IpRanges.1.CidrIp=1.2.3.4%2F32",
            "GroupId=sg-12345678&IpPermissions.1.IpProtocol=bogus&IpPermissions.1.IpRanges.1.CidrIp=1.2.3.4%2F32",
            "GroupId=sg-12345678&IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=1&IpPermissions.1.ToPort=70000&IpPermissions.1.IpRanges.1.CidrIp=1.2.3.4%2F32",
            "GroupId=sg-1&IpPermissions.1.IpProtocol=tcp",
        ] {
            assert!(ChangeRules::decode(&Params::parse(q, b"")).is_err(), "{q}");
        }
    }
}
