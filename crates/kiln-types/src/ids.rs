//! Typed resource IDs (`sg-0123456789abcdef0`), made from one list so that every kind
//! parses, prints and generates the same way. "Malformed" comes from parsing here.

use std::fmt;
use std::str::FromStr;

use rand::Rng;

/// A kind of resource that has an EC2-style ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    KeyPair,
    Vpc,
    Subnet,
    SecurityGroup,
    SecurityGroupRule,
    Instance,
    Image,
    Snapshot,
    Volume,
    Reservation,
    InternetGateway,
    RouteTable,
    RouteTableAssociation,
    NetworkAcl,
    NetworkInterface,
    ElasticIp,
    AddressAssociation,
    NetworkAclAssociation,
    DhcpOptions,
    NetworkInterfaceAttachment,
    LaunchTemplate,
    PlacementGroup,
}

impl ResourceKind {
    pub const ALL: [ResourceKind; 22] = [
        Self::KeyPair,
        Self::Vpc,
        Self::Subnet,
        Self::SecurityGroupRule,
        Self::SecurityGroup,
        Self::Instance,
        Self::Image,
        Self::Snapshot,
        Self::Volume,
        Self::Reservation,
        Self::InternetGateway,
        Self::RouteTable,
        Self::RouteTableAssociation,
        Self::NetworkAcl,
        Self::NetworkInterface,
        Self::ElasticIp,
        Self::AddressAssociation,
        Self::NetworkAclAssociation,
        Self::DhcpOptions,
        Self::NetworkInterfaceAttachment,
        Self::LaunchTemplate,
        Self::PlacementGroup,
    ];

    /// The ID prefix, without the dash.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::KeyPair => "key",
            Self::Vpc => "vpc",
            Self::Subnet => "subnet",
            Self::SecurityGroup => "sg",
            Self::SecurityGroupRule => "sgr",
            Self::Instance => "i",
            Self::Image => "ami",
            Self::Snapshot => "snap",
            Self::Volume => "vol",
            Self::Reservation => "r",
            Self::InternetGateway => "igw",
            Self::RouteTable => "rtb",
            Self::RouteTableAssociation => "rtbassoc",
            Self::NetworkAcl => "acl",
            Self::NetworkInterface => "eni",
            Self::ElasticIp => "eipalloc",
            Self::AddressAssociation => "eipassoc",
            Self::NetworkAclAssociation => "aclassoc",
            Self::DhcpOptions => "dopt",
            Self::NetworkInterfaceAttachment => "eni-attach",
            Self::LaunchTemplate => "lt",
            Self::PlacementGroup => "pg",
        }
    }

    /// The name DescribeTags and TagSpecification use for this kind.
    pub fn resource_type(self) -> &'static str {
        match self {
            Self::KeyPair => "key-pair",
            Self::Vpc => "vpc",
            Self::Subnet => "subnet",
            Self::SecurityGroup => "security-group",
            Self::SecurityGroupRule => "security-group-rule",
            Self::Instance => "instance",
            Self::Image => "image",
            Self::Snapshot => "snapshot",
            Self::Volume => "volume",
            Self::Reservation => "reservation",
            Self::InternetGateway => "internet-gateway",
            Self::RouteTable => "route-table",
            Self::RouteTableAssociation => "route-table-association",
            Self::NetworkAcl => "network-acl",
            Self::NetworkInterface => "network-interface",
            Self::ElasticIp => "elastic-ip",
            Self::AddressAssociation => "elastic-ip-association",
            Self::NetworkAclAssociation => "network-acl-association",
            Self::DhcpOptions => "dhcp-options",
            Self::NetworkInterfaceAttachment => "network-interface-attachment",
            Self::LaunchTemplate => "launch-template",
            Self::PlacementGroup => "placement-group",
        }
    }

    pub fn from_resource_type(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.resource_type() == s)
    }

    /// The kind an ID belongs to, judged by its prefix alone.
    pub fn of_id(id: &str) -> Option<Self> {
        let (prefix, _) = id.rsplit_once('-')?;
        Self::ALL.into_iter().find(|k| k.prefix() == prefix)
    }

    /// A fresh random ID of this kind: prefix + 17 lower-case hex digits.
    pub fn generate(self) -> String {
        let n: u128 = rand::thread_rng().gen();
        format!("{}-{:017x}", self.prefix(), n & ((1u128 << 68) - 1))
    }

    /// Checks `id` is this kind's prefix followed by 8 or 17 lower-case hex digits.
    pub fn parse(self, id: &str) -> Result<String, IdError> {
        let ok = id.strip_prefix(self.prefix()).and_then(|rest| rest.strip_prefix('-')).is_some_and(|hex| {
            (hex.len() == 8 || hex.len() == 17) && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
        if ok {
            Ok(id.to_owned())
        } else {
            Err(IdError { kind: self, value: id.to_owned() })
        }
    }
}

macro_rules! typed_ids {
    ($($(#[$meta:meta])* $ty:ident => $kind:ident,)*) => {$(
        $(#[$meta])*
        ///
        /// Made only by parsing (which refuses a malformed ID) or by `generate`, so
        /// holding one means the ID has its kind's shape. It reads as a `&str`.
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $ty(String);

        impl $ty {
            pub const KIND: ResourceKind = ResourceKind::$kind;

            /// A fresh random ID.
            pub fn generate() -> Self {
                Self(Self::KIND.generate())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $ty {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::KIND.parse(s).map(Self)
            }
        }

        impl TryFrom<String> for $ty {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                s.parse()
            }
        }

        impl From<$ty> for String {
            fn from(id: $ty) -> String {
                id.0
            }
        }

        impl std::ops::Deref for $ty {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $ty {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $ty {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<String> for $ty {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$ty> for String {
            fn eq(&self, other: &$ty) -> bool {
                *self == other.0
            }
        }
    )*};
}

typed_ids! {
    /// A key pair's ID (`key-…`).
    KeyPairId => KeyPair,
    /// A VPC's ID (`vpc-…`).
    VpcId => Vpc,
    /// A subnet's ID (`subnet-…`).
    SubnetId => Subnet,
    /// A security group's ID (`sg-…`).
    SecurityGroupId => SecurityGroup,
    /// A security group rule's ID (`sgr-…`).
    SecurityGroupRuleId => SecurityGroupRule,
    /// An instance's ID (`i-…`).
    InstanceId => Instance,
    /// An image's ID (`ami-…`).
    ImageId => Image,
    /// An internet gateway's ID (`igw-…`).
    InternetGatewayId => InternetGateway,
    /// A route table's ID (`rtb-…`).
    RouteTableId => RouteTable,
    /// A route table association's ID (`rtbassoc-…`).
    RouteTableAssociationId => RouteTableAssociation,
    /// A network ACL's ID (`acl-…`).
    NetworkAclId => NetworkAcl,
    /// A network interface's ID (`eni-…`).
    NetworkInterfaceId => NetworkInterface,
    /// An Elastic IP's allocation ID (`eipalloc-…`).
    AllocationId => ElasticIp,
    /// An Elastic IP association's ID (`eipassoc-…`).
    AddressAssociationId => AddressAssociation,
    /// A network ACL association's ID (`aclassoc-…`).
    NetworkAclAssociationId => NetworkAclAssociation,
    /// A DHCP options set's ID (`dopt-…`).
    DhcpOptionsId => DhcpOptions,
    /// A snapshot's ID (`snap-…`).
    SnapshotId => Snapshot,
    /// A volume's ID (`vol-…`).
    VolumeId => Volume,
    /// A reservation's ID (`r-…`).
    ReservationId => Reservation,
    /// A network interface attachment's ID (`eni-attach-…`).
    NetworkInterfaceAttachmentId => NetworkInterfaceAttachment,
    /// A launch template's ID (`lt-…`).
    LaunchTemplateId => LaunchTemplate,
    /// A placement group's ID (`pg-…`).
    PlacementGroupId => PlacementGroup,
}

/// An ID that does not have its kind's shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid id: \"{value}\" (expecting \"{}-...\")", kind.prefix())]
pub struct IdError {
    pub kind: ResourceKind,
    pub value: String,
}

/// A stable, locally administered MAC address (`02:…`) for an instance's interface,
/// from its id.
pub fn instance_mac(instance_id: &str) -> String {
    let hex: Vec<u8> = instance_id.bytes().filter(u8::is_ascii_hexdigit).collect();
    let tail: String = hex.iter().rev().take(10).rev().map(|b| *b as char).collect();
    let tail = format!("{tail:0>10}");
    format!("02:{}:{}:{}:{}:{}", &tail[0..2], &tail[2..4], &tail[4..6], &tail[6..8], &tail[8..10])
}

/// The id of an instance's primary network interface: `eni-` with the instance's own
/// hex digits, so each names the other without a lookup table.
pub fn primary_interface(instance_id: &str) -> String {
    format!("eni-{}", instance_id.strip_prefix("i-").unwrap_or(instance_id))
}

/// The instance whose primary interface `eni` is (the inverse of `primary_interface`).
pub fn interface_instance(eni: &str) -> Option<String> {
    eni.strip_prefix("eni-").map(|hex| format!("i-{hex}"))
}

/// A 12-digit AWS account id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(String);

impl AccountId {
    pub fn generate() -> Self {
        let mut rng = rand::thread_rng();
        // Never start with 0, so the id survives tools that treat it as a number.
        let n: u64 = rng.gen_range(100_000_000_000..1_000_000_000_000);
        Self(n.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for AccountId {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(())
        }
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_and_have_17_hex() {
        for kind in ResourceKind::ALL {
            let id = kind.generate();
            assert_eq!(kind.parse(&id), Ok(id.clone()));
            assert_eq!(id.len(), kind.prefix().len() + 1 + 17);
            assert_eq!(ResourceKind::of_id(&id), Some(kind));
        }
    }

    #[test]
    fn malformed_ids_are_refused() {
        let sg = ResourceKind::SecurityGroup;
        assert!(sg.parse("sg-12345678").is_ok());
        for bad in ["sg-1234", "sg-0123456789ABCDEF0", "vpc-12345678", "sg12345678", "", "sg-"] {
            assert!(sg.parse(bad).is_err(), "{bad}");
        }
        // "sgr-" must not be taken for "sg-".
        assert_eq!(ResourceKind::of_id("sgr-12345678"), Some(ResourceKind::SecurityGroupRule));
    }

    #[test]
    fn typed_ids_parse_print_and_refuse() {
        let id = InstanceId::generate();
        let back: InstanceId = id.as_str().parse().expect("own id parses");
        assert_eq!(back, id);
        assert_eq!(id.to_string(), id.as_str());
        assert!(id.starts_with("i-"));
        assert_eq!("sg-12345678".parse::<InstanceId>().expect_err("not an instance id").kind, ResourceKind::Instance);
        let json = serde_json::to_string(&id).expect("serialises");
        assert_eq!(serde_json::from_str::<InstanceId>(&json).expect("deserialises"), id);
        assert!(serde_json::from_str::<InstanceId>("\"i-XYZ\"").is_err());
    }

    #[test]
    fn account_ids_are_12_digits() {
        let a = AccountId::generate();
        assert_eq!(a.as_str().len(), 12);
        assert!("12345".parse::<AccountId>().is_err());
    }
}
