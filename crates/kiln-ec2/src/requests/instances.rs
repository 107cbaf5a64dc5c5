//! Instance requests: RunInstances and the lifecycle and attribute actions.

use base64::Engine;
use kiln_types::{
    CpuCredits, HttpEndpoint, HttpTokens, ImageId, InstanceId, InstanceOptions, SecurityGroupId, ShutdownBehavior,
    SubnetId, TemplateRef, VersionRef,
};

use super::images::{block_device_mappings, BlockDeviceMapping};
use super::launch_templates::{launch_template_spec, overlay, Tags};
use super::placement_groups::PlacementGroupRef;
use super::{decode_tags, ids, Decode, Tag};
use crate::page::Paging;
use crate::{Ec2Error, Filter, Params};

/// Tag specifications for actions that tag several kinds (instance, volume, ...).
fn tag_specs(p: &Params, allowed: &[&str]) -> Result<Vec<(String, Vec<Tag>)>, Ec2Error> {
    let mut out = Vec::new();
    for spec in p.members("TagSpecification") {
        let rt = spec.get("ResourceType").unwrap_or_default().to_owned();
        if !allowed.contains(&rt.as_str()) {
            return Err(Ec2Error::invalid_value(format!(
                "'{rt}' is not a valid taggable resource type for this operation."
            )));
        }
        let tags = decode_tags(spec.members("Tag"))?;
        if tags.is_empty() {
            return Err(Ec2Error::invalid_value("Tag specifications must contain at least one tag"));
        }
        out.push((rt, tags));
    }
    Ok(out)
}

pub(crate) fn decode_user_data(raw: &str) -> Result<Vec<u8>, Ec2Error> {
    let compact: String = raw.split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|_| Ec2Error::new("InvalidUserData.Malformed", "Invalid BASE64 encoding of user data."))
}

/// RunInstances: its parameters decoded, or (with `LaunchTemplate`) the template
/// version to lay them over, which only the control plane can read.
#[derive(Debug, Clone, PartialEq)]
pub enum RunInstances {
    Direct(Box<LaunchSpec>),
    FromTemplate { template: TemplateRef, version: VersionRef, params: Params },
}

impl Decode for RunInstances {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        match launch_template_spec(p)? {
            None => Ok(Self::Direct(Box::new(LaunchSpec::decode(p)?))),
            Some((template, version)) => {
                let params =
                    Params::from_owned(p.pairs().into_iter().filter(|(k, _)| !k.starts_with("LaunchTemplate.")));
                Ok(Self::FromTemplate { template, version, params })
            }
        }
    }
}

impl LaunchSpec {
    /// A launch from a template version's `data` with the request's `params` laid
    /// over it, as EC2 merges them.
    pub fn over_template(data: &[(String, String)], params: &Params) -> Result<Self, Ec2Error> {
        Self::decode(&Params::from_owned(overlay(data, &params.pairs(), Tags::Merge)))
    }
}

/// The parameters of one launch.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchSpec {
    pub image_id: ImageId,
    pub instance_type: String,
    pub min_count: i64,
    pub max_count: i64,
    pub key_name: Option<String>,
    pub group_ids: Vec<SecurityGroupId>,
    pub group_names: Vec<String>,
    pub subnet_id: Option<SubnetId>,
    pub private_ip: Option<String>,
    /// NetworkInterface.1.AssociatePublicIpAddress (else the subnet decides).
    pub associate_public_ip: Option<bool>,
    pub user_data: Option<Vec<u8>>,
    pub block_devices: Vec<BlockDeviceMapping>,
    pub availability_zone: Option<String>,
    pub placement_group: Option<PlacementGroupRef>,
    pub partition_number: Option<i64>,
    pub instance_tags: Vec<Tag>,
    pub volume_tags: Vec<Tag>,
    pub client_token: Option<String>,
    pub http_tokens: Option<HttpTokens>,
    pub http_endpoint: Option<HttpEndpoint>,
    pub hop_limit: Option<i64>,
    pub disable_api_termination: bool,
    pub shutdown_behavior: Option<ShutdownBehavior>,
    pub options: InstanceOptions,
}

impl LaunchSpec {
    pub fn decode(p: &Params) -> Result<Self, Ec2Error> {
        let image_id = p.required("ImageId")?.parse()?;
        let min_count = p.int("MinCount")?.ok_or_else(|| Ec2Error::missing("MinCount"))?;
        let max_count = p.int("MaxCount")?.ok_or_else(|| Ec2Error::missing("MaxCount"))?;
        if min_count < 1 {
            return Err(Ec2Error::invalid_value(format!(
                "Value ({min_count}) for parameter minCount is invalid. Expected a positive integer."
            )));
        }
        if max_count < 1 {
            return Err(Ec2Error::invalid_value(format!(
                "Value ({max_count}) for parameter maxCount is invalid. Expected a positive integer."
            )));
        }
        if min_count > max_count {
            return Err(Ec2Error::invalid_value("MinCount must not exceed MaxCount"));
        }
        let mut group_ids = ids(p, "SecurityGroupId")?;
        let mut subnet_id = match p.get("SubnetId") {
            Some(s) => Some(s.parse()?),
            None => None,
        };
        let mut private_ip = p.string("PrivateIpAddress");
        let mut associate_public_ip = None;
        // The primary network interface may carry the placement instead.
        for ni in p.members("NetworkInterface") {
            if ni.get("DeviceIndex").unwrap_or("0") != "0" {
                return Err(Ec2Error::invalid_value("Kiln gives instances one network interface (DeviceIndex 0)"));
            }
            if let Some(s) = ni.get("SubnetId") {
                subnet_id = Some(s.parse()?);
            }
            group_ids.extend(ids(&ni, "SecurityGroupId")?);
            if let Some(ip) = ni.string("PrivateIpAddress") {
                private_ip = Some(ip);
            }
            if let Some(a) = ni.bool("AssociatePublicIpAddress")? {
                associate_public_ip = Some(a);
            }
        }
        let client_token = p.string("ClientToken");
        if client_token.as_ref().is_some_and(|t| t.len() > 64 || !t.is_ascii()) {
            return Err(Ec2Error::invalid_value("ClientToken must be at most 64 ASCII characters"));
        }
        let user_data = match p.get("UserData") {
            Some(u) if !u.is_empty() => Some(decode_user_data(u)?),
            _ => None,
        };
        let meta = p.sub("MetadataOptions");
        let specs = tag_specs(p, &["instance", "volume", "network-interface"])?;
        let tags_for =
            |kind: &str| specs.iter().filter(|(k, _)| k == kind).flat_map(|(_, t)| t.clone()).collect::<Vec<_>>();
        Ok(Self {
            image_id,
            instance_type: p.string("InstanceType").unwrap_or_else(|| "t3.micro".into()),
            min_count,
            max_count,
            key_name: p.string("KeyName"),
            group_ids,
            group_names: p.list("SecurityGroup"),
            subnet_id,
            private_ip,
            associate_public_ip,
            user_data,
            block_devices: block_device_mappings(p)?,
            availability_zone: p.string("Placement.AvailabilityZone"),
            placement_group: PlacementGroupRef::from(&p.sub("Placement"))?,
            partition_number: p.int("Placement.PartitionNumber")?,
            instance_tags: tags_for("instance"),
            volume_tags: tags_for("volume"),
            client_token,
            http_tokens: meta.choice("HttpTokens")?,
            http_endpoint: meta.choice("HttpEndpoint")?,
            hop_limit: meta.int("HttpPutResponseHopLimit")?,
            disable_api_termination: p.flag("DisableApiTermination")?,
            shutdown_behavior: p.choice("InstanceInitiatedShutdownBehavior")?,
            options: InstanceOptions {
                disable_api_stop: p.flag("DisableApiStop")?,
                ebs_optimized: p.flag("EbsOptimized")?,
                monitoring: p.flag("Monitoring.Enabled")?,
                source_dest_check: true,
                cpu_credits: p.choice("CreditSpecification.CpuCredits")?,
            },
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DescribeInstances {
    pub instance_ids: Vec<InstanceId>,
    pub filters: Vec<Filter>,
    pub paging: Paging,
}

impl Decode for DescribeInstances {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        let instance_ids = ids(p, "InstanceId")?;
        let paging = Paging::decode(p)?;
        if !instance_ids.is_empty() && paging.max_results.is_some() {
            return Err(Ec2Error::combination(
                "The parameter instancesSet cannot be used with the parameter maxResults",
            ));
        }
        Ok(Self { instance_ids, filters: p.filters()?, paging })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DescribeInstanceStatus {
    pub instance_ids: Vec<InstanceId>,
    pub include_all: bool,
    pub filters: Vec<Filter>,
    pub paging: Paging,
}

impl Decode for DescribeInstanceStatus {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        let instance_ids = ids(p, "InstanceId")?;
        let paging = Paging::decode(p)?;
        if !instance_ids.is_empty() && paging.max_results.is_some() {
            return Err(Ec2Error::combination(
                "The parameter instancesSet cannot be used with the parameter maxResults",
            ));
        }
        Ok(Self { instance_ids, include_all: p.flag("IncludeAllInstances")?, filters: p.filters()?, paging })
    }
}

/// Start, Stop, Terminate and Reboot: a list of instances.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceList {
    pub instance_ids: Vec<InstanceId>,
    pub force: bool,
}

impl Decode for InstanceList {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        let instance_ids = ids(p, "InstanceId")?;
        if instance_ids.is_empty() {
            // EC2's answer to a list with no instances.
            return Err(Ec2Error::combination("No instances specified"));
        }
        Ok(Self { instance_ids, force: p.flag("Force")? })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct GetConsoleOutput {
    pub instance_id: InstanceId,
    pub latest: bool,
}

impl Decode for GetConsoleOutput {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self { instance_id: p.required("InstanceId")?.parse()?, latest: p.flag("Latest")? })
    }
}

/// One attribute change.
#[derive(Debug, Clone, PartialEq)]
pub enum InstanceAttributeChange {
    InstanceType(String),
    UserData(Vec<u8>),
    DisableApiTermination(bool),
    DisableApiStop(bool),
    EbsOptimized(bool),
    SourceDestCheck(bool),
    Groups(Vec<SecurityGroupId>),
    ShutdownBehavior(ShutdownBehavior),
    /// BlockDeviceMapping.N: each device's Ebs.DeleteOnTermination.
    DeleteOnTermination(Vec<(String, bool)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModifyInstanceMetadataOptions {
    pub instance_id: InstanceId,
    pub http_tokens: Option<HttpTokens>,
    pub http_endpoint: Option<HttpEndpoint>,
    pub hop_limit: Option<i64>,
}

impl Decode for ModifyInstanceMetadataOptions {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        let instance_id = p.required("InstanceId")?.parse()?;
        if p.get("HttpProtocolIpv6").is_some_and(|v| v != "disabled") {
            return Err(Ec2Error::invalid_value("Kiln's metadata service answers on IPv4 only (HttpProtocolIpv6)"));
        }
        if p.get("InstanceMetadataTags").is_some_and(|v| v != "disabled") {
            return Err(Ec2Error::invalid_value("Instance tags in the metadata service are not supported by Kiln yet"));
        }
        Ok(Self {
            instance_id,
            http_tokens: p.choice("HttpTokens")?,
            http_endpoint: p.choice("HttpEndpoint")?,
            hop_limit: p.int("HttpPutResponseHopLimit")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModifyInstanceAttribute {
    pub instance_id: InstanceId,
    pub change: InstanceAttributeChange,
}

impl Decode for ModifyInstanceAttribute {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        use InstanceAttributeChange as C;
        let instance_id = p.required("InstanceId")?.parse()?;
        let bool_of = |v: &str, what: &str| match v.to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(Ec2Error::invalid_value(format!("Value ({v}) for {what} is invalid. Expected a boolean."))),
        };
        // UserData.Value is a blob: the SDKs send it base64-encoded.
        let user_data = |v: &str| decode_user_data(v);
        let change = if let Some(v) = p.get("InstanceType.Value") {
            C::InstanceType(v.to_owned())
        } else if let Some(v) = p.get("UserData.Value") {
            C::UserData(user_data(v)?)
        } else if let Some(v) = p.get("DisableApiTermination.Value") {
            C::DisableApiTermination(bool_of(v, "disableApiTermination")?)
        } else if let Some(v) = p.get("InstanceInitiatedShutdownBehavior.Value") {
            C::ShutdownBehavior(v.parse()?)
        } else if let Some(v) = p.get("DisableApiStop.Value") {
            C::DisableApiStop(bool_of(v, "disableApiStop")?)
        } else if let Some(v) = p.get("EbsOptimized.Value") {
            C::EbsOptimized(bool_of(v, "ebsOptimized")?)
        } else if let Some(v) = p.get("SourceDestCheck.Value") {
            C::SourceDestCheck(bool_of(v, "sourceDestCheck")?)
        } else if !p.list("GroupId").is_empty() {
            C::Groups(ids(p, "GroupId")?)
        } else if !p.members("BlockDeviceMapping").is_empty() {
            let mut list = Vec::new();
            for m in p.members("BlockDeviceMapping") {
                let device = m.required("DeviceName")?;
                let on = m.bool("Ebs.DeleteOnTermination")?.ok_or_else(|| {
                    Ec2Error::invalid_value(format!(
                        "Only Ebs.DeleteOnTermination can be changed on an instance's mapping ({device})"
                    ))
                })?;
                list.push((device, on));
            }
            C::DeleteOnTermination(list)
        } else if let Some(attr) = p.get("Attribute") {
            let value = p.required("Value")?;
            match attr {
                "instanceType" => C::InstanceType(value),
                "userData" => C::UserData(user_data(&value)?),
                "disableApiTermination" => C::DisableApiTermination(bool_of(&value, "disableApiTermination")?),
                "disableApiStop" => C::DisableApiStop(bool_of(&value, "disableApiStop")?),
                "ebsOptimized" => C::EbsOptimized(bool_of(&value, "ebsOptimized")?),
                "sourceDestCheck" => C::SourceDestCheck(bool_of(&value, "sourceDestCheck")?),
                "instanceInitiatedShutdownBehavior" => C::ShutdownBehavior(value.parse()?),
                other => {
                    return Err(Ec2Error::invalid_value(format!(
                        "Value ({other}) for parameter attribute is invalid. Kiln modifies instanceType, userData, disableApiTermination, disableApiStop, ebsOptimized, sourceDestCheck, groupSet and instanceInitiatedShutdownBehavior."
                    )))
                }
            }
        } else {
            return Err(Ec2Error::missing("Attribute"));
        };
        Ok(Self { instance_id, change })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceAttribute {
    InstanceType,
    UserData,
    DisableApiTermination,
    DisableApiStop,
    ShutdownBehavior,
    RootDeviceName,
    BlockDeviceMapping,
    GroupSet,
    EbsOptimized,
    SourceDestCheck,
    Kernel,
    Ramdisk,
    ProductCodes,
    SriovNetSupport,
    EnaSupport,
    EnclaveOptions,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DescribeInstanceAttribute {
    pub instance_id: InstanceId,
    pub attribute: InstanceAttribute,
}

impl Decode for DescribeInstanceAttribute {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        use InstanceAttribute as A;
        let attribute = match p.required("Attribute")?.as_str() {
            "instanceType" => A::InstanceType,
            "userData" => A::UserData,
            "disableApiTermination" => A::DisableApiTermination,
            "disableApiStop" => A::DisableApiStop,
            "instanceInitiatedShutdownBehavior" => A::ShutdownBehavior,
            "rootDeviceName" => A::RootDeviceName,
            "blockDeviceMapping" => A::BlockDeviceMapping,
            "groupSet" => A::GroupSet,
            "ebsOptimized" => A::EbsOptimized,
            "sourceDestCheck" => A::SourceDestCheck,
            "kernel" => A::Kernel,
            "ramdisk" => A::Ramdisk,
            "productCodes" => A::ProductCodes,
            "sriovNetSupport" => A::SriovNetSupport,
            "enaSupport" => A::EnaSupport,
            "enclaveOptions" => A::EnclaveOptions,
            other => {
                return Err(Ec2Error::invalid_value(format!("Value ({other}) for parameter attribute is invalid.")))
            }
        };
        Ok(Self { instance_id: p.required("InstanceId")?.parse()?, attribute })
    }
}

/// ModifyInstanceCreditSpecification: instances and their new credit option.
#[derive(Debug, Clone, PartialEq)]
pub struct ModifyInstanceCreditSpecification {
    pub specs: Vec<(InstanceId, CpuCredits)>,
}

impl Decode for ModifyInstanceCreditSpecification {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        let specs = p
            .members("InstanceCreditSpecification")
            .iter()
            .map(|m| {
                let credits = m.choice("CpuCredits")?.ok_or_else(|| Ec2Error::missing("CpuCredits"))?;
                Ok((m.required("InstanceId")?.parse()?, credits))
            })
            .collect::<Result<Vec<_>, Ec2Error>>()?;
        if specs.is_empty() {
            return Err(Ec2Error::missing("InstanceCreditSpecification"));
        }
        Ok(Self { specs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_optional_parameters_are_absent_as_terraform_sends_them() {
        // Terraform's AWS provider (v5) for a plain aws_instance.
        let p = Params::parse(
            "",
            b"Action=RunInstances&ImageId=ami-12345678&InstanceType=t3.micro&MinCount=1&MaxCount=1\
&Placement.AvailabilityZone=&Placement.Tenancy=&InstanceInitiatedShutdownBehavior=&MetadataOptions.HttpTokens=\
&TagSpecification.1.ResourceType=instance&TagSpecification.1.Tag.1.Key=Empty&TagSpecification.1.Tag.1.Value=",
        );
        let r = LaunchSpec::decode(&p).expect("decode");
        assert_eq!(r.availability_zone, None);
        assert_eq!(r.shutdown_behavior, None);
        assert_eq!(r.http_tokens, None);
        assert_eq!(r.instance_tags[0].value, "", "a tag's empty value is a value");
    }

    #[test]
    fn run_instances_decodes_the_captured_boto3_request() {
        let p = Params::parse(
            "",
            b"Action=RunInstances&Version=2016-11-15&ImageId=ami-12345678&InstanceType=t3.micro&MinCount=1&MaxCount=1&KeyName=k\
&UserData=IyEvYmluL3NoCmVjaG8gaGk%3D&SecurityGroupId.1=sg-12345678&BlockDeviceMapping.1.DeviceName=%2Fdev%2Fxvda\
&BlockDeviceMapping.1.Ebs.VolumeSize=20&TagSpecification.1.ResourceType=instance&TagSpecification.1.Tag.1.Key=Name\
&TagSpecification.1.Tag.1.Value=web&MetadataOptions.HttpTokens=required&ClientToken=2922b863",
        );
        let r = LaunchSpec::decode(&p).expect("decode");
        assert_eq!(r.user_data.as_deref(), Some(&b"#!/bin/sh\necho hi"[..]));
        assert_eq!(r.group_ids.iter().map(|g| g.as_str()).collect::<Vec<_>>(), vec!["sg-12345678"]);
        assert_eq!(r.block_devices[0].volume_size, Some(20));
        assert_eq!(r.instance_tags[0].value, "web");
        assert_eq!(r.http_tokens, Some(HttpTokens::Required));
        assert_eq!(r.client_token.as_deref(), Some("2922b863"));
    }

    #[test]
    fn bad_counts_and_user_data_are_refused() {
        for q in [
            "ImageId=ami-12345678&MinCount=0&MaxCount=1",
            "ImageId=ami-12345678&MinCount=-1&MaxCount=1",
            "ImageId=ami-12345678&MinCount=3&MaxCount=2",
            "ImageId=ami-12345678&MaxCount=1",
            "ImageId=ami-12345678&MinCount=1&MaxCount=1&UserData=%%%",
            "ImageId=bogus&MinCount=1&MaxCount=1",
        ] {
            assert!(LaunchSpec::decode(&Params::parse(q, b"")).is_err(), "{q}");
        }
    }
}
