//! Image (AMI) and snapshot requests.

use kiln_types::{Architecture, ImageId, InstanceId, SnapshotId, VolumeType};

use super::{ids, tag_specifications, Decode, Tag};
use crate::page::Paging;
use crate::{Ec2Error, Filter, Params};

/// One `BlockDeviceMapping.N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDeviceMapping {
    pub device_name: String,
    pub no_device: bool,
    pub snapshot_id: Option<SnapshotId>,
    pub volume_size: Option<i64>,
    pub volume_type: Option<VolumeType>,
    pub delete_on_termination: Option<bool>,
    /// Ebs.Iops, Ebs.Throughput, Ebs.Encrypted and Ebs.KmsKeyId: recorded (launch
    /// templates show them back); a launch does not act on them yet.
    pub iops: Option<i64>,
    pub throughput: Option<i64>,
    pub encrypted: Option<bool>,
    pub kms_key_id: Option<String>,
}

/// `/dev/xvda`, `/dev/sda1`, `xvdf`: the names EC2 accepts for devices.
pub fn valid_device_name(name: &str) -> bool {
    let bare = name.strip_prefix("/dev/").unwrap_or(name);
    !bare.is_empty()
        && name.len() <= 32
        && bare.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && (bare.starts_with("xvd") || bare.starts_with("sd") || bare.starts_with("hd") || bare.starts_with("nvme"))
}

/// Decodes `BlockDeviceMapping.N.*`.
pub fn block_device_mappings(p: &Params) -> Result<Vec<BlockDeviceMapping>, Ec2Error> {
    let mut out: Vec<BlockDeviceMapping> = Vec::new();
    for m in p.members("BlockDeviceMapping") {
        let device_name = m.required("DeviceName").map_err(|_| Ec2Error::missing("BlockDeviceMapping.N.DeviceName"))?;
        if !valid_device_name(&device_name) {
            return Err(Ec2Error::new("InvalidBlockDeviceMapping", format!("Invalid device name {device_name}")));
        }
        if out.iter().any(|d| d.device_name == device_name) {
            return Err(Ec2Error::new(
                "InvalidBlockDeviceMapping",
                format!("The device {device_name} is mapped twice"),
            ));
        }
        let ebs = m.sub("Ebs");
        let snapshot_id = match ebs.get("SnapshotId") {
            Some(s) => Some(s.parse()?),
            None => None,
        };
        let volume_size = ebs.int("VolumeSize")?;
        if let Some(size) = volume_size {
            if !(1..=16384).contains(&size) {
                return Err(Ec2Error::invalid_value(format!("Volume size {size} GiB is out of range (1 to 16384)")));
            }
        }
        let volume_type = ebs.choice("VolumeType")?;
        out.push(BlockDeviceMapping {
            device_name,
            no_device: m.raw("NoDevice").is_some(),
            snapshot_id,
            volume_size,
            volume_type,
            delete_on_termination: ebs.bool("DeleteOnTermination")?,
            iops: ebs.int("Iops")?,
            throughput: ebs.int("Throughput")?,
            encrypted: ebs.bool("Encrypted")?,
            kms_key_id: ebs.string("KmsKeyId"),
        });
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq)]
pub struct DescribeImages {
    pub image_ids: Vec<ImageId>,
    pub owners: Vec<String>,
    pub executable_by: Vec<String>,
    pub filters: Vec<Filter>,
    pub include_deprecated: bool,
    pub paging: Paging,
}

impl Decode for DescribeImages {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        let owners = p.list("Owner");
        for o in &owners {
            let ok = matches!(o.as_str(), "self" | "amazon" | "aws-marketplace" | "aws-backup-vault")
                || (o.len() == 12 && o.bytes().all(|b| b.is_ascii_digit()));
            if !ok {
                return Err(Ec2Error::invalid_value(format!(
                    "Invalid value for owner: {o}: use self, amazon, aws-marketplace or a 12-digit account id"
                )));
            }
        }
        Ok(Self {
            image_ids: ids(p, "ImageId")?,
            owners,
            executable_by: p.list("ExecutableBy"),
            filters: p.filters()?,
            include_deprecated: p.flag("IncludeDeprecated")?,
            paging: Paging::decode(p)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RegisterImage {
    pub name: String,
    pub description: String,
    pub architecture: Architecture,
    pub root_device_name: String,
    pub block_devices: Vec<BlockDeviceMapping>,
    pub boot_mode: Option<String>,
    pub tags: Vec<Tag>,
}

impl Decode for RegisterImage {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        if p.get("ImageLocation").is_some() {
            return Err(Ec2Error::invalid_value(
                "Instance-store (S3) images are not supported: register from snapshots with BlockDeviceMapping",
            ));
        }
        if p.get("KernelId").is_some() || p.get("RamdiskId").is_some() {
            return Err(Ec2Error::invalid_value(
                "KernelId and RamdiskId are not supported: Kiln boots the image's own kernel",
            ));
        }
        let architecture = match p.get("Architecture") {
            // EC2's default for EBS-backed images.
            None => Architecture::I386,
            Some(a) => a.parse().map_err(|_| {
                Ec2Error::invalid_value(format!(
                    "Value ({a}) for parameter architecture is invalid. Valid values: i386, x86_64, arm64"
                ))
            })?,
        };
        let block_devices = block_device_mappings(p)?;
        if block_devices.is_empty() {
            return Err(Ec2Error::missing("BlockDeviceMapping"));
        }
        let root_device_name = p.required("RootDeviceName")?;
        let boot_mode = p.string("BootMode");
        if let Some(m) = &boot_mode {
            if !matches!(m.as_str(), "legacy-bios" | "uefi" | "uefi-preferred") {
                return Err(Ec2Error::invalid_value(format!(
                    "Value ({m}) for parameter bootMode is invalid. Valid values: legacy-bios, uefi, uefi-preferred"
                )));
            }
        }
        if let Some(v) = p.get("VirtualizationType") {
            if v != "hvm" {
                return Err(Ec2Error::invalid_value("Only hvm virtualization is supported"));
            }
        }
        Ok(Self {
            name: p.required("Name")?,
            description: p.string("Description").unwrap_or_default(),
            architecture,
            root_device_name,
            block_devices,
            boot_mode,
            tags: tag_specifications(p, "image")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeregisterImage {
    pub image_id: ImageId,
    pub delete_associated_snapshots: bool,
}

impl Decode for DeregisterImage {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self {
            image_id: p.required("ImageId")?.parse()?,
            delete_associated_snapshots: p.flag("DeleteAssociatedSnapshots")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CopyImage {
    pub source_image_id: ImageId,
    pub source_region: String,
    pub name: String,
    pub description: Option<String>,
    pub copy_image_tags: bool,
    pub tags: Vec<Tag>,
}

impl Decode for CopyImage {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        if p.flag("Encrypted")? {
            return Err(Ec2Error::invalid_value("Encrypted copies are not supported"));
        }
        Ok(Self {
            source_image_id: p.required("SourceImageId")?.parse()?,
            source_region: p.required("SourceRegion")?,
            name: p.required("Name")?,
            description: p.string("Description"),
            copy_image_tags: p.flag("CopyImageTags")?,
            tags: tag_specifications(p, "image")?,
        })
    }
}

/// A launch permission as requests name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Permission {
    User(String),
    All,
}

fn permissions(members: Vec<Params>) -> Result<Vec<Permission>, Ec2Error> {
    members
        .into_iter()
        .map(|m| match (m.get("UserId"), m.get("Group")) {
            (Some(u), _) => Ok(Permission::User(u.to_owned())),
            (None, Some("all")) => Ok(Permission::All),
            (None, Some(g)) => {
                Err(Ec2Error::invalid_value(format!("Invalid permission group '{g}': only 'all' exists")))
            }
            _ => Err(Ec2Error::invalid_value(
                "Organization and OU permissions are not supported: give UserId or Group=all",
            )),
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModifyImageAttribute {
    pub image_id: ImageId,
    pub add: Vec<Permission>,
    pub remove: Vec<Permission>,
    pub description: Option<String>,
}

impl Decode for ModifyImageAttribute {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        let image_id = p.required("ImageId")?.parse()?;
        let mut add = permissions(p.sub("LaunchPermission").members("Add"))?;
        let mut remove = permissions(p.sub("LaunchPermission").members("Remove"))?;
        let mut description = p.string("Description.Value");
        match p.get("Attribute") {
            None => {}
            Some("launchPermission") => {
                // The legacy form: OperationType with UserId.N / UserGroup.N.
                let mut perms: Vec<Permission> = p.list("UserId").into_iter().map(Permission::User).collect();
                for g in p.list("UserGroup") {
                    if g != "all" {
                        return Err(Ec2Error::invalid_value(format!("Invalid launch permission group '{g}'")));
                    }
                    perms.push(Permission::All);
                }
                match p.get("OperationType") {
                    Some("add") => add.extend(perms),
                    Some("remove") => remove.extend(perms),
                    _ => return Err(Ec2Error::missing("OperationType (add or remove)")),
                }
            }
            Some("description") => description = Some(p.required("Value")?),
            Some(other) => {
                return Err(Ec2Error::invalid_value(format!(
                "Value ({other}) for parameter attribute is invalid. Kiln modifies launchPermission and description."
            )))
            }
        }
        if add.is_empty() && remove.is_empty() && description.is_none() {
            return Err(Ec2Error::missing("LaunchPermission or Description"));
        }
        Ok(Self { image_id, add, remove, description })
    }
}

/// The attributes DescribeImageAttribute answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageAttribute {
    LaunchPermission,
    Description,
    BlockDeviceMapping,
    ProductCodes,
    BootMode,
}

fn attribute(p: &Params) -> Result<ImageAttribute, Ec2Error> {
    Ok(match p.required("Attribute")?.as_str() {
        "launchPermission" => ImageAttribute::LaunchPermission,
        "description" => ImageAttribute::Description,
        "blockDeviceMapping" => ImageAttribute::BlockDeviceMapping,
        "productCodes" => ImageAttribute::ProductCodes,
        "bootMode" => ImageAttribute::BootMode,
        other => {
            return Err(Ec2Error::invalid_value(format!(
                "Value ({other}) for parameter attribute is invalid. Valid values: launchPermission, description, blockDeviceMapping, productCodes, bootMode"
            )))
        }
    })
}

#[derive(Debug, Clone, PartialEq)]
pub struct DescribeImageAttribute {
    pub image_id: ImageId,
    pub attribute: ImageAttribute,
}

impl Decode for DescribeImageAttribute {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self { image_id: p.required("ImageId")?.parse()?, attribute: attribute(p)? })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResetImageAttribute {
    pub image_id: ImageId,
}

impl Decode for ResetImageAttribute {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        let image_id = p.required("ImageId")?.parse()?;
        if attribute(p)? != ImageAttribute::LaunchPermission {
            return Err(Ec2Error::invalid_value("Only launchPermission can be reset"));
        }
        Ok(Self { image_id })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DescribeSnapshots {
    pub snapshot_ids: Vec<SnapshotId>,
    pub owners: Vec<String>,
    pub restorable_by: Vec<String>,
    pub filters: Vec<Filter>,
    pub paging: Paging,
}

impl Decode for DescribeSnapshots {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self {
            snapshot_ids: ids(p, "SnapshotId")?,
            owners: p.list("Owner"),
            restorable_by: p.list("RestorableBy"),
            filters: p.filters()?,
            paging: Paging::decode(p)?,
        })
    }
}

/// ModifySnapshotAttribute: createVolumePermission grants and revocations, in the
/// structured form (CreateVolumePermission.Add.N) or the legacy one (OperationType
/// with UserId.N / UserGroup.N).
#[derive(Debug, Clone, PartialEq)]
pub struct ModifySnapshotAttribute {
    pub snapshot_id: SnapshotId,
    pub add: Vec<Permission>,
    pub remove: Vec<Permission>,
}

impl Decode for ModifySnapshotAttribute {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        let snapshot_id = p.required("SnapshotId")?.parse()?;
        let mut add = permissions(p.sub("CreateVolumePermission").members("Add"))?;
        let mut remove = permissions(p.sub("CreateVolumePermission").members("Remove"))?;
        match p.get("Attribute") {
            None | Some("createVolumePermission") => {}
            Some(other) => {
                return Err(Ec2Error::invalid_value(format!(
                    "Value ({other}) for parameter attribute is invalid. Valid values: createVolumePermission"
                )))
            }
        }
        let mut legacy: Vec<Permission> = p.list("UserId").into_iter().map(Permission::User).collect();
        // UserGroup.N on the wire (the SDKs' GroupNames).
        for g in p.list("UserGroup").into_iter().chain(p.list("GroupName")) {
            if g != "all" {
                return Err(Ec2Error::invalid_value(format!("Invalid permission group '{g}': only 'all' exists")));
            }
            legacy.push(Permission::All);
        }
        if !legacy.is_empty() {
            match p.get("OperationType") {
                Some("add") => add.extend(legacy),
                Some("remove") => remove.extend(legacy),
                _ => return Err(Ec2Error::missing("OperationType (add or remove)")),
            }
        }
        if add.is_empty() && remove.is_empty() {
            return Err(Ec2Error::missing("CreateVolumePermission"));
        }
        Ok(Self { snapshot_id, add, remove })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CopySnapshot {
    pub source_region: String,
    pub source_snapshot_id: SnapshotId,
    pub description: Option<String>,
    pub tags: Vec<super::Tag>,
}

impl Decode for CopySnapshot {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        if p.bool("Encrypted")? == Some(true) || p.get("KmsKeyId").is_some() {
            return Err(Ec2Error::invalid_value("Kiln does not encrypt snapshot copies (Encrypted, KmsKeyId)"));
        }
        Ok(Self {
            source_region: p.required("SourceRegion")?,
            source_snapshot_id: p.required("SourceSnapshotId")?.parse()?,
            description: p.string("Description"),
            tags: super::tag_specifications(p, "snapshot")?,
        })
    }
}

/// The snapshot attributes DescribeSnapshotAttribute answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotAttribute {
    CreateVolumePermission,
    ProductCodes,
}

/// DescribeSnapshotAttribute and ResetSnapshotAttribute.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotAttributeRequest {
    pub snapshot_id: SnapshotId,
    pub attribute: SnapshotAttribute,
}

impl Decode for SnapshotAttributeRequest {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        let attribute = match p.required("Attribute")?.as_str() {
            "createVolumePermission" => SnapshotAttribute::CreateVolumePermission,
            "productCodes" => SnapshotAttribute::ProductCodes,
            other => {
                return Err(Ec2Error::invalid_value(format!(
                    "Value ({other}) for parameter attribute is invalid. Valid values: createVolumePermission, productCodes"
                )))
            }
        };
        Ok(Self { snapshot_id: p.required("SnapshotId")?.parse()?, attribute })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeleteSnapshot {
    pub snapshot_id: SnapshotId,
}

impl Decode for DeleteSnapshot {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self { snapshot_id: p.required("SnapshotId")?.parse()? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_device_mappings_decode_and_validate() {
        let p = Params::parse(
            "BlockDeviceMapping.1.DeviceName=%2Fdev%2Fxvda&BlockDeviceMapping.1.Ebs.SnapshotId=snap-12345678\
&BlockDeviceMapping.1.Ebs.VolumeSize=8&BlockDeviceMapping.1.Ebs.DeleteOnTermination=true",
            b"",
        );
        let b = block_device_mappings(&p).expect("bdm");
        assert_eq!(b[0].device_name, "/dev/xvda");
        assert_eq!(b[0].snapshot_id.as_deref(), Some("snap-12345678"));
        assert_eq!(b[0].volume_size, Some(8));
        for bad in [
            "BlockDeviceMapping.1.DeviceName=%2Fetc%2Fpasswd",
            "BlockDeviceMapping.1.DeviceName=%2Fdev%2Fxvda&BlockDeviceMapping.1.Ebs.VolumeSize=0",
            "BlockDeviceMapping.1.DeviceName=%2Fdev%2Fxvda&BlockDeviceMapping.1.Ebs.VolumeType=floppy",
            "BlockDeviceMapping.1.DeviceName=%2Fdev%2Fxvda&BlockDeviceMapping.1.Ebs.SnapshotId=vol-12345678",
        ] {
            assert!(block_device_mappings(&Params::parse(bad, b"")).is_err(), "{bad}");
        }
    }

    #[test]
    fn launch_permissions_decode_in_both_forms() {
        let modern = Params::parse(
            "ImageId=ami-12345678&LaunchPermission.Add.1.UserId=123456789012&LaunchPermission.Remove.1.Group=all",
            b"",
        );
        let m = ModifyImageAttribute::decode(&modern).expect("modern");
        assert_eq!(m.add, vec![Permission::User("123456789012".into())]);
        assert_eq!(m.remove, vec![Permission::All]);
        let legacy =
            Params::parse("ImageId=ami-12345678&Attribute=launchPermission&OperationType=add&UserGroup.1=all", b"");
        assert_eq!(ModifyImageAttribute::decode(&legacy).expect("legacy").add, vec![Permission::All]);
    }
}

/// One disk to import: where it is and in which format.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskContainer {
    pub url: String,
    pub format: Option<String>,
    pub description: Option<String>,
}

fn disk_container(p: &Params) -> Result<DiskContainer, Ec2Error> {
    if p.get("UserBucket.S3Bucket").is_some() {
        return Err(Ec2Error::invalid_value("S3 buckets are not supported: give DiskContainer.Url as file:///path"));
    }
    Ok(DiskContainer {
        url: p.required("Url").map_err(|_| Ec2Error::missing("DiskContainer.Url"))?,
        format: p.string("Format"),
        description: p.string("Description"),
    })
}

#[derive(Debug, Clone, PartialEq)]
pub struct ImportSnapshot {
    pub disk: DiskContainer,
    pub description: Option<String>,
}

impl Decode for ImportSnapshot {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self { disk: disk_container(&p.sub("DiskContainer"))?, description: p.string("Description") })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ImportImage {
    pub disk: DiskContainer,
    pub description: Option<String>,
    pub architecture: Option<Architecture>,
}

impl Decode for ImportImage {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        let disks = p.members("DiskContainer");
        let [disk] = &disks[..] else {
            return Err(Ec2Error::invalid_value("ImportImage takes exactly one DiskContainer"));
        };
        let architecture = match p.get("Architecture") {
            None => None,
            Some(a) => Some(a.parse().map_err(|_| Ec2Error::invalid_value(format!("Invalid architecture '{a}'")))?),
        };
        Ok(Self { disk: disk_container(disk)?, description: p.string("Description"), architecture })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DescribeImportTasks {
    pub task_ids: Vec<String>,
}

impl Decode for DescribeImportTasks {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self { task_ids: p.list("ImportTaskId") })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateImage {
    pub instance_id: InstanceId,
    pub name: String,
    pub description: String,
    pub no_reboot: bool,
    pub block_devices: Vec<BlockDeviceMapping>,
    pub image_tags: Vec<Tag>,
    pub snapshot_tags: Vec<Tag>,
}

impl Decode for CreateImage {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        let mut image_tags = Vec::new();
        let mut snapshot_tags = Vec::new();
        for spec in p.members("TagSpecification") {
            let tags = super::decode_tags(spec.members("Tag"))?;
            match spec.get("ResourceType") {
                Some("image") => image_tags.extend(tags),
                Some("snapshot") => snapshot_tags.extend(tags),
                other => {
                    return Err(Ec2Error::invalid_value(format!(
                        "'{}' is not a valid taggable resource type for this operation.",
                        other.unwrap_or_default()
                    )))
                }
            }
        }
        Ok(Self {
            instance_id: p.required("InstanceId")?.parse()?,
            name: p.required("Name")?,
            description: p.string("Description").unwrap_or_default(),
            no_reboot: p.flag("NoReboot")?,
            block_devices: block_device_mappings(p)?,
            image_tags,
            snapshot_tags,
        })
    }
}
