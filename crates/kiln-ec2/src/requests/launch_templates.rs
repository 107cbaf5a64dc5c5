//! Launch-template requests, the typed LaunchTemplateData, and the one rule for laying
//! parameters over a template version (RunInstances) or over a source version
//! (CreateLaunchTemplateVersion).
//!
//! A version's data is kept as the flat parameters it was given (`ImageId`,
//! `BlockDeviceMapping.1.Ebs.VolumeSize` …), which are RunInstances' own names: so a
//! launch from a template is the template's parameters with the request's laid over
//! them, decoded as any RunInstances is. `LaunchTemplateData` decodes the same
//! parameters to validate them and to show them back.

use kiln_types::{
    instance_types, CpuCredits, HttpEndpoint, HttpTokens, ImageId, InstanceId, LaunchTemplateId, NetworkInterfaceId,
    SecurityGroupId, ShutdownBehavior, SubnetId, TemplateRef, VersionRef,
};

use super::images::{block_device_mappings, BlockDeviceMapping};
use super::{decode_tags, ids, tag_specifications, Decode, Tag};
use crate::page::Paging;
use crate::{Ec2Error, Filter, Params};

/// A template name as EC2 allows it: 3 to 128 of letters, digits and `-_./()`.
pub fn valid_template_name(name: &str) -> bool {
    (3..=128).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_./()".contains(c))
}

fn template_name(name: String) -> Result<String, Ec2Error> {
    if valid_template_name(&name) {
        Ok(name)
    } else {
        Err(Ec2Error::new(
            "InvalidLaunchTemplateName.MalformedException",
            format!(
                "The launch template name '{name}' is invalid: a name has 3 to 128 characters, letters, digits and '-', '_', '.', '/', '(' and ')'."
            ),
        ))
    }
}

fn version_ref(v: &str) -> Result<VersionRef, Ec2Error> {
    VersionRef::parse(v).ok_or_else(|| {
        Ec2Error::new(
            "InvalidLaunchTemplateId.VersionNotFound",
            format!("The launch template version '{v}' is not a version: give a number, $Latest or $Default."),
        )
    })
}

/// `LaunchTemplateId` or `LaunchTemplateName` (not both); `None` for neither.
fn optional_template(p: &Params) -> Result<Option<TemplateRef>, Ec2Error> {
    match (p.get("LaunchTemplateId"), p.string("LaunchTemplateName")) {
        (Some(_), Some(_)) => Err(Ec2Error::combination(
            "Give the launch template by LaunchTemplateId or by LaunchTemplateName, not both",
        )),
        (Some(id), None) => Ok(Some(TemplateRef::Id(id.parse::<LaunchTemplateId>()?))),
        (None, Some(name)) => Ok(Some(TemplateRef::Name(template_name(name)?))),
        (None, None) => Ok(None),
    }
}

fn required_template(p: &Params) -> Result<TemplateRef, Ec2Error> {
    optional_template(p)?.ok_or_else(|| Ec2Error::missing("LaunchTemplateId or LaunchTemplateName"))
}

/// RunInstances' `LaunchTemplate`: the template and version (`$Default` if none).
pub fn launch_template_spec(p: &Params) -> Result<Option<(TemplateRef, VersionRef)>, Ec2Error> {
    let spec = p.sub("LaunchTemplate");
    let Some(template) = optional_template(&spec)? else {
        if spec.get("Version").is_some() {
            return Err(Ec2Error::missing("LaunchTemplate.LaunchTemplateId or LaunchTemplate.LaunchTemplateName"));
        }
        return Ok(None);
    };
    let version = match spec.get("Version") {
        Some(v) => version_ref(v)?,
        None => VersionRef::Default,
    };
    Ok(Some((template, version)))
}

/// How tag specifications combine when parameters are laid over a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tags {
    /// RunInstances: the template's and the request's both apply; on the same key
    /// the request's value wins.
    Merge,
    /// A new version: the given specifications replace the source's.
    Replace,
}

/// The top-level parameter a key belongs to, and whether that parameter is a list
/// (`BlockDeviceMapping.2.DeviceName` is list `BlockDeviceMapping`).
fn group_of(key: &str) -> (&str, bool) {
    let mut parts = key.splitn(3, '.');
    let head = parts.next().unwrap_or(key);
    let list = parts.next().is_some_and(|second| second.parse::<u32>().is_ok());
    (head, list)
}

/// `over` laid over `base`: a list `over` gives (security groups, interfaces, block
/// devices) replaces the base's whole list; a scalar or a structure's member
/// replaces the same one. Empty values count as not given, as EC2 reads them.
pub fn overlay(base: &[(String, String)], over: &[(String, String)], tags: Tags) -> Vec<(String, String)> {
    let given_lists: Vec<&str> = over
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, _)| group_of(k))
        .filter(|(_, list)| *list)
        .map(|(head, _)| head)
        .filter(|head| !(tags == Tags::Merge && *head == "TagSpecification"))
        .collect();
    let mut out: std::collections::BTreeMap<String, String> =
        base.iter().filter(|(k, _)| !given_lists.contains(&group_of(k).0)).cloned().collect();
    for (k, v) in over {
        let (head, list) = group_of(k);
        if tags == Tags::Merge && head == "TagSpecification" {
            // After the template's, so that the request's value is set last.
            if let Some(rest) = k.strip_prefix("TagSpecification.") {
                if let Some((n, member)) = rest.split_once('.') {
                    if let Ok(n) = n.parse::<u32>() {
                        out.insert(format!("TagSpecification.{}.{member}", 1000 + n), v.clone());
                    }
                }
            }
        } else if if list { given_lists.contains(&head) } else { !v.is_empty() } {
            out.insert(k.clone(), v.clone());
        }
    }
    out.into_iter().collect()
}

/// What a network interface of a template says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TemplateInterface {
    pub device_index: Option<i64>,
    pub network_interface_id: Option<NetworkInterfaceId>,
    pub subnet_id: Option<SubnetId>,
    pub groups: Vec<SecurityGroupId>,
    pub associate_public_ip: Option<bool>,
    pub private_ip: Option<String>,
    pub delete_on_termination: Option<bool>,
    pub description: Option<String>,
}

/// Request names paired with response elements.
pub type Names = &'static [(&'static str, &'static str)];

/// Parameters Kiln records and shows back but does not act on yet: each group with
/// its members, by request name and response element.
pub const RECORDED: &[(&str, &str, Names)] = &[
    ("IamInstanceProfile", "iamInstanceProfile", &[("Arn", "arn"), ("Name", "name")]),
    ("CpuOptions", "cpuOptions", &[("CoreCount", "coreCount"), ("ThreadsPerCore", "threadsPerCore")]),
    ("HibernationOptions", "hibernationOptions", &[("Configured", "configured")]),
    ("EnclaveOptions", "enclaveOptions", &[("Enabled", "enabled")]),
    ("MaintenanceOptions", "maintenanceOptions", &[("AutoRecovery", "autoRecovery")]),
    (
        "PrivateDnsNameOptions",
        "privateDnsNameOptions",
        &[
            ("HostnameType", "hostnameType"),
            ("EnableResourceNameDnsARecord", "enableResourceNameDnsARecord"),
            ("EnableResourceNameDnsAAAARecord", "enableResourceNameDnsAAAARecord"),
        ],
    ),
    (
        "CapacityReservationSpecification",
        "capacityReservationSpecification",
        &[("CapacityReservationPreference", "capacityReservationPreference")],
    ),
    ("InstanceMarketOptions", "instanceMarketOptions", &[("MarketType", "marketType")]),
];

/// Recorded scalars, by request name and response element.
pub const RECORDED_SCALARS: &[(&str, &str)] = &[("KernelId", "kernelId"), ("RamDiskId", "ramDiskId")];

/// The parameters of LaunchTemplateData Kiln acts on.
const SUPPORTED: &[&str] = &[
    "ImageId",
    "InstanceType",
    "KeyName",
    "SecurityGroupId",
    "SecurityGroup",
    "NetworkInterface",
    "BlockDeviceMapping",
    "UserData",
    "MetadataOptions",
    "TagSpecification",
    "Placement",
    "CreditSpecification",
    "DisableApiTermination",
    "DisableApiStop",
    "InstanceInitiatedShutdownBehavior",
    "EbsOptimized",
    "Monitoring",
];

/// The resource types a template may tag at launch (those Kiln makes).
const TAGGED_AT_LAUNCH: &[&str] = &["instance", "volume", "network-interface"];

/// A version's launch parameters, decoded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LaunchTemplateData {
    pub image_id: Option<ImageId>,
    pub instance_type: Option<String>,
    pub key_name: Option<String>,
    pub security_group_ids: Vec<SecurityGroupId>,
    pub security_groups: Vec<String>,
    pub network_interfaces: Vec<TemplateInterface>,
    pub block_devices: Vec<BlockDeviceMapping>,
    /// Base64, as given (validated).
    pub user_data: Option<String>,
    pub http_tokens: Option<HttpTokens>,
    pub http_endpoint: Option<HttpEndpoint>,
    pub hop_limit: Option<i64>,
    pub tag_specs: Vec<(String, Vec<Tag>)>,
    pub availability_zone: Option<String>,
    pub tenancy: Option<String>,
    pub placement_group: Option<String>,
    pub cpu_credits: Option<CpuCredits>,
    pub disable_api_termination: Option<bool>,
    pub disable_api_stop: Option<bool>,
    pub shutdown_behavior: Option<ShutdownBehavior>,
    pub ebs_optimized: Option<bool>,
    pub monitoring: Option<bool>,
    /// RECORDED and RECORDED_SCALARS parameters as given.
    pub recorded: Vec<(String, String)>,
}

impl LaunchTemplateData {
    /// Decodes and validates the parameters under `LaunchTemplateData.`.
    pub fn decode(p: &Params) -> Result<Self, Ec2Error> {
        let mut recorded = Vec::new();
        for (key, value) in p.iter() {
            let (head, _) = group_of(key);
            if SUPPORTED.contains(&head) {
                continue;
            }
            let member = key.split_once('.').map(|(_, m)| m);
            let known = match member {
                None => RECORDED_SCALARS.iter().any(|(k, _)| *k == head),
                Some(m) => RECORDED.iter().any(|(g, _, members)| *g == head && members.iter().any(|(k, _)| *k == m)),
            };
            if !known {
                return Err(Ec2Error::invalid_value(format!(
                    "Kiln does not support LaunchTemplateData.{key} yet; leave it out of the template"
                )));
            }
            recorded.push((key.to_owned(), value.to_owned()));
        }
        let instance_type = p.string("InstanceType");
        if let Some(t) = &instance_type {
            if instance_types::lookup(t).is_none() {
                return Err(Ec2Error::invalid_value(format!(
                    "The instance type '{t}' does not exist. DescribeInstanceTypes lists the types."
                )));
            }
        }
        let mut network_interfaces = Vec::new();
        for ni in p.members("NetworkInterface") {
            let private_ip = ni.string("PrivateIpAddress");
            if let Some(ip) = &private_ip {
                if ip.parse::<std::net::Ipv4Addr>().is_err() {
                    return Err(Ec2Error::invalid_value(format!("Invalid IPv4 address: {ip}")));
                }
            }
            network_interfaces.push(TemplateInterface {
                device_index: ni.int("DeviceIndex")?,
                network_interface_id: ni.get("NetworkInterfaceId").map(str::parse).transpose()?,
                subnet_id: ni.get("SubnetId").map(str::parse).transpose()?,
                groups: ids(&ni, "SecurityGroupId")?,
                associate_public_ip: ni.bool("AssociatePublicIpAddress")?,
                private_ip,
                delete_on_termination: ni.bool("DeleteOnTermination")?,
                description: ni.string("Description"),
            });
        }
        let user_data = p.string("UserData");
        if let Some(u) = &user_data {
            super::instances::decode_user_data(u)?;
        }
        let meta = p.sub("MetadataOptions");
        let hop_limit = meta.int("HttpPutResponseHopLimit")?;
        if hop_limit.is_some_and(|h| !(1..=64).contains(&h)) {
            return Err(Ec2Error::invalid_value("HttpPutResponseHopLimit must be between 1 and 64"));
        }
        let mut tag_specs = Vec::new();
        for spec in p.members("TagSpecification") {
            let rt = spec.get("ResourceType").unwrap_or_default().to_owned();
            if !TAGGED_AT_LAUNCH.contains(&rt.as_str()) {
                return Err(Ec2Error::invalid_value(format!(
                    "'{rt}' is not a resource type a launch template can tag: use instance, volume or network-interface"
                )));
            }
            tag_specs.push((rt, decode_tags(spec.members("Tag"))?));
        }
        let placement = p.sub("Placement");
        let tenancy = placement.string("Tenancy");
        if let Some(t) = &tenancy {
            if !["default", "dedicated", "host"].contains(&t.as_str()) {
                return Err(Ec2Error::invalid_value(format!(
                    "Value ({t}) for parameter Tenancy is invalid. Valid values: default, dedicated, host"
                )));
            }
        }
        Ok(Self {
            image_id: p.get("ImageId").map(str::parse).transpose()?,
            instance_type,
            key_name: p.string("KeyName"),
            security_group_ids: ids(p, "SecurityGroupId")?,
            security_groups: p.list("SecurityGroup"),
            network_interfaces,
            block_devices: block_device_mappings(p)?,
            user_data,
            http_tokens: meta.choice("HttpTokens")?,
            http_endpoint: meta.choice("HttpEndpoint")?,
            hop_limit,
            tag_specs,
            availability_zone: placement.string("AvailabilityZone"),
            tenancy,
            placement_group: placement.string("GroupName"),
            cpu_credits: p.choice("CreditSpecification.CpuCredits")?,
            disable_api_termination: p.bool("DisableApiTermination")?,
            disable_api_stop: p.bool("DisableApiStop")?,
            shutdown_behavior: p.choice("InstanceInitiatedShutdownBehavior")?,
            ebs_optimized: p.bool("EbsOptimized")?,
            monitoring: p.bool("Monitoring.Enabled")?,
            recorded,
        })
    }

    /// A recorded scalar or structure member's value.
    pub fn recorded(&self, key: &str) -> Option<&str> {
        self.recorded.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// The parameters under `LaunchTemplateData.`, validated; refused when there are none.
fn template_data(p: &Params) -> Result<Vec<(String, String)>, Ec2Error> {
    let data = p.sub("LaunchTemplateData");
    if data.is_empty() {
        return Err(Ec2Error::missing("LaunchTemplateData"));
    }
    LaunchTemplateData::decode(&data)?;
    Ok(data.pairs())
}

fn description(p: &Params) -> Result<Option<String>, Ec2Error> {
    let d = p.string("VersionDescription");
    if d.as_ref().is_some_and(|d| d.chars().count() > 255) {
        return Err(Ec2Error::invalid_value("VersionDescription is at most 255 characters"));
    }
    Ok(d)
}

fn client_token(p: &Params) -> Result<Option<String>, Ec2Error> {
    let t = p.string("ClientToken");
    if t.as_ref().is_some_and(|t| t.len() > 128 || !t.is_ascii()) {
        return Err(Ec2Error::invalid_value("ClientToken must be at most 128 ASCII characters"));
    }
    Ok(t)
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateLaunchTemplate {
    pub name: String,
    pub description: Option<String>,
    pub data: Vec<(String, String)>,
    pub tags: Vec<Tag>,
    pub client_token: Option<String>,
}

impl Decode for CreateLaunchTemplate {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self {
            name: template_name(p.required("LaunchTemplateName")?)?,
            description: description(p)?,
            data: template_data(p)?,
            tags: tag_specifications(p, "launch-template")?,
            client_token: client_token(p)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateLaunchTemplateVersion {
    pub template: TemplateRef,
    pub source_version: Option<VersionRef>,
    pub description: Option<String>,
    /// The given parameters only: the source version's are laid under them later.
    pub data: Vec<(String, String)>,
    pub client_token: Option<String>,
}

impl Decode for CreateLaunchTemplateVersion {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self {
            template: required_template(p)?,
            source_version: p.get("SourceVersion").map(version_ref).transpose()?,
            description: description(p)?,
            data: template_data(p)?,
            client_token: client_token(p)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DescribeLaunchTemplates {
    pub ids: Vec<LaunchTemplateId>,
    pub names: Vec<String>,
    pub filters: Vec<Filter>,
    pub paging: Paging,
}

impl Decode for DescribeLaunchTemplates {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        let names = p.list("LaunchTemplateName").into_iter().map(template_name).collect::<Result<Vec<_>, _>>()?;
        Ok(Self { ids: ids(p, "LaunchTemplateId")?, names, filters: p.filters()?, paging: Paging::decode(p)? })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DescribeLaunchTemplateVersions {
    pub template: Option<TemplateRef>,
    pub versions: Vec<VersionRef>,
    pub min_version: Option<i64>,
    pub max_version: Option<i64>,
    pub filters: Vec<Filter>,
    pub paging: Paging,
}

impl Decode for DescribeLaunchTemplateVersions {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        let number = |key: &str| -> Result<Option<i64>, Ec2Error> {
            p.get(key)
                .map(|v| match version_ref(v)? {
                    VersionRef::Number(n) => Ok(n),
                    _ => Err(Ec2Error::invalid_value(format!("{key} is a version number, not {v}"))),
                })
                .transpose()
        };
        Ok(Self {
            template: optional_template(p)?,
            versions: p.list("LaunchTemplateVersion").iter().map(|v| version_ref(v)).collect::<Result<_, _>>()?,
            min_version: number("MinVersion")?,
            max_version: number("MaxVersion")?,
            filters: p.filters()?,
            paging: Paging::decode(p)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModifyLaunchTemplate {
    pub template: TemplateRef,
    pub default_version: Option<VersionRef>,
}

impl Decode for ModifyLaunchTemplate {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self {
            template: required_template(p)?,
            default_version: p.get("SetDefaultVersion").map(version_ref).transpose()?,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeleteLaunchTemplate {
    pub template: TemplateRef,
}

impl Decode for DeleteLaunchTemplate {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self { template: required_template(p)? })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeleteLaunchTemplateVersions {
    pub template: TemplateRef,
    /// Each as given: a number, or what could not be one (answered per version).
    pub versions: Vec<String>,
}

impl Decode for DeleteLaunchTemplateVersions {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        let versions = p.list("LaunchTemplateVersion");
        if versions.is_empty() {
            return Err(Ec2Error::missing("LaunchTemplateVersion"));
        }
        if versions.len() > 200 {
            return Err(Ec2Error::invalid_value("At most 200 versions can be deleted in one request"));
        }
        Ok(Self { template: required_template(p)?, versions })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct GetLaunchTemplateData {
    pub instance_id: InstanceId,
}

impl Decode for GetLaunchTemplateData {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self { instance_id: p.required("InstanceId")?.parse()? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        Params::parse(q, b"").pairs()
    }

    #[test]
    fn request_parameters_win_and_lists_replace_whole() {
        let template = pairs(
            "ImageId=ami-11111111&InstanceType=t3.micro&SecurityGroupId.1=sg-11111111&SecurityGroupId.2=sg-22222222\
&MetadataOptions.HttpTokens=required&MetadataOptions.HttpPutResponseHopLimit=2\
&TagSpecification.1.ResourceType=instance&TagSpecification.1.Tag.1.Key=team&TagSpecification.1.Tag.1.Value=a",
        );
        let request = pairs(
            "InstanceType=t3.small&SecurityGroupId.1=sg-33333333&MetadataOptions.HttpPutResponseHopLimit=3\
&Placement.AvailabilityZone=&TagSpecification.1.ResourceType=instance&TagSpecification.1.Tag.1.Key=team\
&TagSpecification.1.Tag.1.Value=b",
        );
        let merged = Params::from_owned(overlay(&template, &request, Tags::Merge));
        assert_eq!(merged.get("ImageId"), Some("ami-11111111"));
        assert_eq!(merged.get("InstanceType"), Some("t3.small"));
        assert_eq!(merged.list("SecurityGroupId"), vec!["sg-33333333"]);
        assert_eq!(merged.get("MetadataOptions.HttpTokens"), Some("required"), "a structure merges by member");
        assert_eq!(merged.get("MetadataOptions.HttpPutResponseHopLimit"), Some("3"));
        let specs = merged.members("TagSpecification");
        assert_eq!(specs.len(), 2, "both the template's and the request's tags apply");
        assert_eq!(specs[1].members("Tag")[0].get("Value"), Some("b"), "the request's come last, so they win");

        let replaced = Params::from_owned(overlay(&template, &request, Tags::Replace));
        assert_eq!(replaced.members("TagSpecification").len(), 1);
    }

    #[test]
    fn template_data_is_validated() {
        let ok = Params::parse(
            "ImageId=ami-11111111&InstanceType=t3.micro&IamInstanceProfile.Name=web&UserData=aGk%3D\
&BlockDeviceMapping.1.DeviceName=/dev/sdf&BlockDeviceMapping.1.Ebs.VolumeSize=8&BlockDeviceMapping.1.Ebs.Iops=3000",
            b"",
        );
        let d = LaunchTemplateData::decode(&ok).expect("decode");
        assert_eq!(d.recorded("IamInstanceProfile.Name"), Some("web"));
        assert_eq!(d.block_devices[0].iops, Some(3000));
        for bad in [
            "ImageId=nope",
            "InstanceType=t9.huge",
            "UserData=%%%",
            "MetadataOptions.HttpTokens=sometimes",
            "TagSpecification.1.ResourceType=vpc&TagSpecification.1.Tag.1.Key=a",
            "ElasticGpuSpecification.1.Type=eg1.medium",
            "NetworkInterface.1.PrivateIpAddress=10.0.0",
        ] {
            assert!(LaunchTemplateData::decode(&Params::parse(bad, b"")).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_and_versions_are_checked() {
        assert!(valid_template_name("web-server_(v1)/a.b"));
        assert!(!valid_template_name("ab"));
        assert!(!valid_template_name("has space"));
        let p = Params::parse("LaunchTemplate.LaunchTemplateName=web&LaunchTemplate.Version=$Latest", b"");
        assert_eq!(
            launch_template_spec(&p).expect("spec"),
            Some((TemplateRef::Name("web".into()), VersionRef::Latest))
        );
        let p = Params::parse("LaunchTemplate.LaunchTemplateName=web&LaunchTemplate.Version=0", b"");
        assert_eq!(launch_template_spec(&p).map_err(|e| e.code), Err("InvalidLaunchTemplateId.VersionNotFound".into()));
        let p = Params::parse("LaunchTemplate.LaunchTemplateId=lt-1&LaunchTemplate.LaunchTemplateName=web", b"");
        assert!(launch_template_spec(&p).is_err());
        let p = Params::parse("LaunchTemplate.LaunchTemplateId=lt-1", b"");
        assert_eq!(launch_template_spec(&p).map_err(|e| e.code), Err("InvalidLaunchTemplateId.Malformed".into()));
    }
}
