//! EBS volume requests: create, delete, attach, detach, modify and describe volumes,
//! their attributes and status, and the account's encryption default.

use kiln_types::{InstanceId, SnapshotId, VolumeId, VolumeType};

use super::routing::{describe, Describe};
use super::{tag_specifications, Decode, Tag};
use crate::page::Paging;
use crate::{Ec2Error, Filter, Params};

pub type DescribeVolumes = Describe<VolumeId>;

impl Decode for DescribeVolumes {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        describe(p, "VolumeId")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateVolume {
    pub availability_zone: String,
    pub size_gib: Option<i64>,
    pub snapshot_id: Option<SnapshotId>,
    pub volume_type: Option<VolumeType>,
    pub iops: Option<i64>,
    pub throughput: Option<i64>,
    pub encrypted: Option<bool>,
    pub kms_key_id: Option<String>,
    pub multi_attach: bool,
    pub tags: Vec<Tag>,
    pub client_token: Option<String>,
}

impl Decode for CreateVolume {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        let availability_zone = match (p.string("AvailabilityZone"), p.string("AvailabilityZoneId")) {
            (Some(z), _) => z,
            (None, Some(_)) => {
                return Err(Ec2Error::invalid_value(
                    "Give the zone by name (AvailabilityZone); zone ids are not taken here",
                ))
            }
            (None, None) => return Err(Ec2Error::missing("AvailabilityZone")),
        };
        Ok(Self {
            availability_zone,
            size_gib: p.int("Size")?,
            snapshot_id: p.string("SnapshotId").map(|s| s.parse()).transpose()?,
            volume_type: p.choice("VolumeType")?,
            iops: p.int("Iops")?,
            throughput: p.int("Throughput")?,
            encrypted: p.bool("Encrypted")?,
            kms_key_id: p.string("KmsKeyId"),
            multi_attach: p.flag("MultiAttachEnabled")?,
            tags: tag_specifications(p, "volume")?,
            client_token: p.string("ClientToken"),
        })
    }
}

/// A request naming one volume (DeleteVolume).
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeRequest {
    pub volume_id: VolumeId,
}

impl Decode for VolumeRequest {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self { volume_id: p.required("VolumeId")?.parse()? })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AttachVolume {
    pub volume_id: VolumeId,
    pub instance_id: InstanceId,
    pub device: String,
}

impl Decode for AttachVolume {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self {
            volume_id: p.required("VolumeId")?.parse()?,
            instance_id: p.required("InstanceId")?.parse()?,
            device: p.required("Device")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DetachVolume {
    pub volume_id: VolumeId,
    pub instance_id: Option<InstanceId>,
    pub device: Option<String>,
    pub force: bool,
}

impl Decode for DetachVolume {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self {
            volume_id: p.required("VolumeId")?.parse()?,
            instance_id: p.string("InstanceId").map(|s| s.parse()).transpose()?,
            device: p.string("Device"),
            force: p.flag("Force")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModifyVolume {
    pub volume_id: VolumeId,
    pub size_gib: Option<i64>,
    pub volume_type: Option<VolumeType>,
    pub iops: Option<i64>,
    pub throughput: Option<i64>,
}

impl Decode for ModifyVolume {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        if p.flag("MultiAttachEnabled")? {
            return Err(Ec2Error::invalid_value("Kiln does not change MultiAttachEnabled on an existing volume"));
        }
        Ok(Self {
            volume_id: p.required("VolumeId")?.parse()?,
            size_gib: p.int("Size")?,
            volume_type: p.choice("VolumeType")?,
            iops: p.int("Iops")?,
            throughput: p.int("Throughput")?,
        })
    }
}

/// DescribeVolumesModifications and DescribeVolumeStatus: ids, filters and paging.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeQuery {
    pub ids: Vec<VolumeId>,
    pub filters: Vec<Filter>,
    pub paging: Paging,
}

impl Decode for VolumeQuery {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        let d: Describe<VolumeId> = describe(p, "VolumeId")?;
        Ok(Self { ids: d.ids, filters: d.filters, paging: d.paging })
    }
}

/// The attributes of a volume EC2 lets one read and set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeAttribute {
    AutoEnableIo,
    ProductCodes,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DescribeVolumeAttribute {
    pub volume_id: VolumeId,
    pub attribute: VolumeAttribute,
}

impl Decode for DescribeVolumeAttribute {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        let attribute = match p.required("Attribute")?.as_str() {
            "autoEnableIO" => VolumeAttribute::AutoEnableIo,
            "productCodes" => VolumeAttribute::ProductCodes,
            other => {
                return Err(Ec2Error::invalid_value(format!(
                    "Value ({other}) for parameter attribute is invalid. Valid values: autoEnableIO, productCodes"
                )))
            }
        };
        Ok(Self { volume_id: p.required("VolumeId")?.parse()?, attribute })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModifyVolumeAttribute {
    pub volume_id: VolumeId,
    pub auto_enable_io: bool,
}

impl Decode for ModifyVolumeAttribute {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        let auto_enable_io = p.bool("AutoEnableIO.Value")?.ok_or_else(|| Ec2Error::missing("AutoEnableIO"))?;
        Ok(Self { volume_id: p.required("VolumeId")?.parse()?, auto_enable_io })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateSnapshot {
    pub volume_id: VolumeId,
    pub description: String,
    pub tags: Vec<Tag>,
}

impl Decode for CreateSnapshot {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self {
            volume_id: p.required("VolumeId")?.parse()?,
            description: p.string("Description").unwrap_or_default(),
            tags: tag_specifications(p, "snapshot")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateSnapshots {
    pub instance_id: InstanceId,
    pub exclude_boot: bool,
    pub exclude: Vec<VolumeId>,
    pub description: String,
    pub tags: Vec<Tag>,
    pub copy_tags: bool,
}

impl Decode for CreateSnapshots {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        let copy_tags = match p.get("CopyTagsFromSource") {
            None => false,
            Some("volume") => true,
            Some(other) => {
                return Err(Ec2Error::invalid_value(format!(
                    "Value ({other}) for parameter CopyTagsFromSource is invalid. Valid values: volume"
                )))
            }
        };
        if p.get("OutpostArn").is_some() {
            return Err(Ec2Error::invalid_value("Kiln has no Outposts (OutpostArn)"));
        }
        Ok(Self {
            instance_id: p.required("InstanceSpecification.InstanceId")?.parse()?,
            exclude_boot: p.flag("InstanceSpecification.ExcludeBootVolume")?,
            exclude: super::ids(p, "InstanceSpecification.ExcludeDataVolumeId")?,
            description: p.string("Description").unwrap_or_default(),
            tags: tag_specifications(p, "snapshot")?,
            copy_tags,
        })
    }
}

/// Enable, Disable and GetEbsEncryptionByDefault take nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct EncryptionByDefault;

impl Decode for EncryptionByDefault {
    fn decode(_p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn volume_requests_decode_as_ec2_sends_them() {
        let c = CreateVolume::decode(&params(&[
            ("AvailabilityZone", "us-east-1a"),
            ("Size", "8"),
            ("VolumeType", "gp3"),
            ("Iops", "4000"),
            ("Encrypted", "true"),
        ]))
        .expect("create");
        assert_eq!(
            (c.size_gib, c.volume_type, c.iops, c.encrypted),
            (Some(8), Some(VolumeType::Gp3), Some(4000), Some(true))
        );
        let e = CreateVolume::decode(&params(&[("Size", "8")])).expect_err("no zone");
        assert_eq!(e.code, "MissingParameter");
        let e = CreateVolume::decode(&params(&[("AvailabilityZone", "us-east-1a"), ("VolumeType", "gp9")]));
        assert_eq!(e.expect_err("type").code, "InvalidParameterValue");
        let a = AttachVolume::decode(&params(&[
            ("VolumeId", "vol-0123456789abcdef0"),
            ("InstanceId", "i-0123456789abcdef0"),
            ("Device", "/dev/sdf"),
        ]))
        .expect("attach");
        assert_eq!(a.device, "/dev/sdf");
        let d =
            DetachVolume::decode(&params(&[("VolumeId", "vol-0123456789abcdef0"), ("Force", "true")])).expect("detach");
        assert!(d.force && d.instance_id.is_none());
        let e =
            DescribeVolumeAttribute::decode(&params(&[("VolumeId", "vol-0123456789abcdef0"), ("Attribute", "size")]));
        assert_eq!(e.expect_err("attribute").code, "InvalidParameterValue");
    }
}
