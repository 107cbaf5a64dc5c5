//! Typed requests: every supported action decoded from its parameters in one place, so
//! that handlers never read raw form keys. `ACTIONS` is the code's own list of actions.

pub mod account;
pub mod images;
pub mod instance_types;
pub mod instances;
pub mod interfaces;
pub mod key_pairs;
pub mod launch_templates;
pub mod placement_groups;
pub mod routing;
pub mod security_groups;
pub mod tags;
pub mod volumes;
pub mod vpcs;

use crate::{Ec2Error, Params};

/// Decoding of one action's parameters.
pub trait Decode: Sized {
    fn decode(p: &Params) -> Result<Self, Ec2Error>;
}

macro_rules! actions {
    ($($name:ident => $ty:ty,)*) => {
        /// One decoded request. Requests are decoded once and moved, so their differing
        /// sizes do not matter.
        #[derive(Debug, Clone, PartialEq)]
        #[allow(clippy::large_enum_variant)]
        pub enum Request {
            $($name($ty),)*
        }

        /// Every EC2 action Kiln serves, by its wire name.
        pub const ACTIONS: &[&str] = &[$(stringify!($name),)*];

        /// Each action with the module that decodes it (its area of the API).
        pub const ACTION_MODULES: &[(&str, &str)] = &[$((stringify!($name), stringify!($ty)),)*];

        impl Request {
            /// Decodes `p` as `action`; an action Kiln does not know is `InvalidAction`.
            pub fn decode(action: &str, p: &Params) -> Result<Self, Ec2Error> {
                match action {
                    $(stringify!($name) => Ok(Request::$name(<$ty>::decode(p)?)),)*
                    _ => Err(Ec2Error::new(
                        "InvalidAction",
                        format!("The action {action} is not valid for this web service."),
                    )),
                }
            }

            pub fn action(&self) -> &'static str {
                match self {
                    $(Request::$name(_) => stringify!($name),)*
                }
            }
        }
    };
}

actions! {
    DescribeRegions => account::DescribeRegions,
    DescribeAvailabilityZones => account::DescribeAvailabilityZones,
    DescribeAccountAttributes => account::DescribeAccountAttributes,
    DescribeInstanceTypes => instance_types::DescribeInstanceTypes,
    DescribeInstanceTypeOfferings => instance_types::DescribeInstanceTypeOfferings,
    CreateKeyPair => key_pairs::CreateKeyPair,
    ImportKeyPair => key_pairs::ImportKeyPair,
    DescribeKeyPairs => key_pairs::DescribeKeyPairs,
    DeleteKeyPair => key_pairs::DeleteKeyPair,
    CreatePlacementGroup => placement_groups::CreatePlacementGroup,
    DescribePlacementGroups => placement_groups::DescribePlacementGroups,
    DeletePlacementGroup => placement_groups::DeletePlacementGroup,
    CreateVpc => vpcs::CreateVpc,
    DescribeVpcs => vpcs::DescribeVpcs,
    DeleteVpc => vpcs::DeleteVpc,
    CreateSubnet => vpcs::CreateSubnet,
    DescribeSubnets => vpcs::DescribeSubnets,
    DeleteSubnet => vpcs::DeleteSubnet,
    CreateDefaultVpc => routing::CreateDefaultVpc,
    DescribeVpcAttribute => routing::DescribeVpcAttribute,
    ModifyVpcAttribute => routing::ModifyVpcAttribute,
    ModifySubnetAttribute => routing::ModifySubnetAttribute,
    CreateDhcpOptions => routing::CreateDhcpOptions,
    DescribeDhcpOptions => routing::DescribeDhcpOptions,
    DeleteDhcpOptions => routing::DeleteDhcpOptions,
    AssociateDhcpOptions => routing::AssociateDhcpOptions,
    CreateInternetGateway => routing::CreateInternetGateway,
    DescribeInternetGateways => routing::DescribeInternetGateways,
    AttachInternetGateway => routing::GatewayAttachment,
    DetachInternetGateway => routing::GatewayAttachment,
    DeleteInternetGateway => routing::DeleteInternetGateway,
    CreateRouteTable => routing::CreateRouteTable,
    DescribeRouteTables => routing::DescribeRouteTables,
    DeleteRouteTable => routing::DeleteRouteTable,
    AssociateRouteTable => routing::AssociateRouteTable,
    DisassociateRouteTable => routing::DisassociateRouteTable,
    ReplaceRouteTableAssociation => routing::ReplaceRouteTableAssociation,
    CreateRoute => routing::PutRoute,
    ReplaceRoute => routing::PutRoute,
    DeleteRoute => routing::DeleteRoute,
    DescribeNetworkAcls => routing::DescribeNetworkAcls,
    CreateNetworkAcl => routing::CreateNetworkAcl,
    DeleteNetworkAcl => routing::DeleteNetworkAcl,
    CreateNetworkAclEntry => routing::PutNetworkAclEntry,
    ReplaceNetworkAclEntry => routing::PutNetworkAclEntry,
    DeleteNetworkAclEntry => routing::DeleteNetworkAclEntry,
    ReplaceNetworkAclAssociation => routing::ReplaceNetworkAclAssociation,
    DescribeNetworkInterfaces => interfaces::DescribeNetworkInterfaces,
    CreateNetworkInterface => interfaces::CreateNetworkInterface,
    DeleteNetworkInterface => interfaces::DeleteNetworkInterface,
    AttachNetworkInterface => interfaces::AttachNetworkInterface,
    DetachNetworkInterface => interfaces::DetachNetworkInterface,
    ModifyNetworkInterfaceAttribute => interfaces::ModifyNetworkInterfaceAttribute,
    AllocateAddress => routing::AllocateAddress,
    AssociateAddress => routing::AssociateAddress,
    DisassociateAddress => routing::DisassociateAddress,
    ReleaseAddress => routing::ReleaseAddress,
    DescribeAddresses => routing::DescribeAddresses,
    DescribeAddressesAttribute => routing::DescribeAddressesAttribute,
    DescribeInstanceCreditSpecifications => routing::DescribeInstanceCreditSpecifications,
    DescribeVolumes => volumes::DescribeVolumes,
    CreateVolume => volumes::CreateVolume,
    DeleteVolume => volumes::VolumeRequest,
    AttachVolume => volumes::AttachVolume,
    DetachVolume => volumes::DetachVolume,
    ModifyVolume => volumes::ModifyVolume,
    DescribeVolumesModifications => volumes::VolumeQuery,
    DescribeVolumeStatus => volumes::VolumeQuery,
    DescribeVolumeAttribute => volumes::DescribeVolumeAttribute,
    CreateSnapshot => volumes::CreateSnapshot,
    CreateSnapshots => volumes::CreateSnapshots,
    ModifyVolumeAttribute => volumes::ModifyVolumeAttribute,
    EnableEbsEncryptionByDefault => volumes::EncryptionByDefault,
    DisableEbsEncryptionByDefault => volumes::EncryptionByDefault,
    GetEbsEncryptionByDefault => volumes::EncryptionByDefault,
    CreateSecurityGroup => security_groups::CreateSecurityGroup,
    DescribeSecurityGroups => security_groups::DescribeSecurityGroups,
    DeleteSecurityGroup => security_groups::DeleteSecurityGroup,
    AuthorizeSecurityGroupIngress => security_groups::ChangeRules,
    AuthorizeSecurityGroupEgress => security_groups::ChangeRules,
    RevokeSecurityGroupIngress => security_groups::ChangeRules,
    RevokeSecurityGroupEgress => security_groups::ChangeRules,
    DescribeSecurityGroupRules => security_groups::DescribeSecurityGroupRules,
    CreateTags => tags::CreateTags,
    DeleteTags => tags::DeleteTags,
    DescribeTags => tags::DescribeTags,
    DescribeImages => images::DescribeImages,
    RegisterImage => images::RegisterImage,
    DeregisterImage => images::DeregisterImage,
    CopyImage => images::CopyImage,
    ModifyImageAttribute => images::ModifyImageAttribute,
    DescribeImageAttribute => images::DescribeImageAttribute,
    ResetImageAttribute => images::ResetImageAttribute,
    DescribeSnapshots => images::DescribeSnapshots,
    DeleteSnapshot => images::DeleteSnapshot,
    ModifySnapshotAttribute => images::ModifySnapshotAttribute,
    CopySnapshot => images::CopySnapshot,
    DescribeSnapshotAttribute => images::SnapshotAttributeRequest,
    ResetSnapshotAttribute => images::SnapshotAttributeRequest,
    CreateImage => images::CreateImage,
    ImportSnapshot => images::ImportSnapshot,
    ImportImage => images::ImportImage,
    DescribeImportSnapshotTasks => images::DescribeImportTasks,
    DescribeImportImageTasks => images::DescribeImportTasks,
    RunInstances => instances::RunInstances,
    DescribeInstances => instances::DescribeInstances,
    DescribeInstanceStatus => instances::DescribeInstanceStatus,
    StartInstances => instances::InstanceList,
    StopInstances => instances::InstanceList,
    RebootInstances => instances::InstanceList,
    TerminateInstances => instances::InstanceList,
    GetConsoleOutput => instances::GetConsoleOutput,
    ModifyInstanceAttribute => instances::ModifyInstanceAttribute,
    ModifyInstanceMetadataOptions => instances::ModifyInstanceMetadataOptions,
    DescribeInstanceAttribute => instances::DescribeInstanceAttribute,
    ModifyInstanceCreditSpecification => instances::ModifyInstanceCreditSpecification,
    MonitorInstances => instances::InstanceList,
    UnmonitorInstances => instances::InstanceList,
    CreateLaunchTemplate => launch_templates::CreateLaunchTemplate,
    CreateLaunchTemplateVersion => launch_templates::CreateLaunchTemplateVersion,
    DescribeLaunchTemplates => launch_templates::DescribeLaunchTemplates,
    DescribeLaunchTemplateVersions => launch_templates::DescribeLaunchTemplateVersions,
    ModifyLaunchTemplate => launch_templates::ModifyLaunchTemplate,
    DeleteLaunchTemplate => launch_templates::DeleteLaunchTemplate,
    DeleteLaunchTemplateVersions => launch_templates::DeleteLaunchTemplateVersions,
    GetLaunchTemplateData => launch_templates::GetLaunchTemplateData,
}

/// A tag as given in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// Decodes `Tag.N.{Key,Value}` style members, with EC2's limits.
pub fn decode_tags(members: Vec<Params>) -> Result<Vec<Tag>, Ec2Error> {
    let mut tags: Vec<Tag> = Vec::new();
    for m in members {
        let key = m.raw("Key").unwrap_or_default().to_owned();
        let value = m.raw("Value").unwrap_or_default().to_owned();
        validate_tag(&key, &value)?;
        tags.retain(|t| t.key != key);
        tags.push(Tag { key, value });
    }
    if tags.len() > 50 {
        return Err(Ec2Error::new("TagLimitExceeded", "The maximum number of tags for a resource is 50"));
    }
    Ok(tags)
}

fn validate_tag(key: &str, value: &str) -> Result<(), Ec2Error> {
    if key.is_empty() {
        return Err(Ec2Error::invalid_value("Tag keys must not be empty"));
    }
    if key.chars().count() > 128 {
        return Err(Ec2Error::invalid_value(format!("Tag key exceeds the maximum length of 128 characters: {key}")));
    }
    if value.chars().count() > 256 {
        return Err(Ec2Error::invalid_value(format!(
            "Tag value exceeds the maximum length of 256 characters for key {key}"
        )));
    }
    if key.to_ascii_lowercase().starts_with("aws:") {
        return Err(Ec2Error::invalid_value(format!(
            "Tag keys starting with 'aws:' are reserved for internal use: {key}"
        )));
    }
    Ok(())
}

/// `TagSpecification.N`: the tags for the resource type an action creates. A
/// specification for a type the action does not create is refused.
pub fn tag_specifications(p: &Params, resource_type: &str) -> Result<Vec<Tag>, Ec2Error> {
    let mut out = Vec::new();
    for spec in p.members("TagSpecification") {
        let rt = spec.get("ResourceType").unwrap_or_default();
        if rt != resource_type {
            return Err(Ec2Error::invalid_value(format!(
                "'{rt}' is not a valid taggable resource type for this operation."
            )));
        }
        let tags = decode_tags(spec.members("Tag"))?;
        if tags.is_empty() {
            return Err(Ec2Error::invalid_value("Tag specifications must contain at least one tag"));
        }
        out.extend(tags);
    }
    Ok(out)
}

/// Typed IDs from `prefix.N`, each parsed (a malformed one is its kind's error).
pub fn ids<T>(p: &Params, prefix: &str) -> Result<Vec<T>, Ec2Error>
where
    T: std::str::FromStr<Err = kiln_types::IdError>,
{
    p.list(prefix).iter().map(|id| id.parse().map_err(Ec2Error::from)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_action_is_invalid_action() {
        let err = Request::decode("LaunchRockets", &Params::default()).map_err(|e| e.code);
        assert_eq!(err, Err("InvalidAction".to_string()));
    }

    #[test]
    fn tag_specs_check_type_and_limits() {
        let p = Params::parse(
            "TagSpecification.1.ResourceType=vpc&TagSpecification.1.Tag.1.Key=Name&TagSpecification.1.Tag.1.Value=x",
            b"",
        );
        assert_eq!(tag_specifications(&p, "vpc").expect("tags")[0].key, "Name");
        assert!(tag_specifications(&p, "subnet").is_err());
        let reserved = Params::parse("TagSpecification.1.ResourceType=vpc&TagSpecification.1.Tag.1.Key=aws:x", b"");
        assert!(tag_specifications(&reserved, "vpc").is_err());
    }
}
