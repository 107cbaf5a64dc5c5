//! VPC and subnet requests.

use kiln_types::{SubnetId, VpcId};

use super::{ids, tag_specifications, Decode, Tag};
use crate::page::Paging;
use crate::{Ec2Error, Filter, Params};

#[derive(Debug, Clone, PartialEq)]
pub struct CreateVpc {
    pub cidr_block: String,
    pub tags: Vec<Tag>,
}

impl Decode for CreateVpc {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self { cidr_block: p.required("CidrBlock")?, tags: tag_specifications(p, "vpc")? })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DescribeVpcs {
    pub vpc_ids: Vec<VpcId>,
    pub filters: Vec<Filter>,
    pub paging: Paging,
}

impl Decode for DescribeVpcs {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self { vpc_ids: ids(p, "VpcId")?, filters: p.filters()?, paging: Paging::decode(p)? })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeleteVpc {
    pub vpc_id: VpcId,
}

impl Decode for DeleteVpc {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self { vpc_id: p.required("VpcId")?.parse()? })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateSubnet {
    pub vpc_id: VpcId,
    pub cidr_block: String,
    pub availability_zone: Option<String>,
    pub availability_zone_id: Option<String>,
    pub tags: Vec<Tag>,
}

impl Decode for CreateSubnet {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        let availability_zone = p.string("AvailabilityZone");
        let availability_zone_id = p.string("AvailabilityZoneId");
        if availability_zone.is_some() && availability_zone_id.is_some() {
            return Err(Ec2Error::combination(
                "The parameters AvailabilityZone and AvailabilityZoneId cannot be used together",
            ));
        }
        Ok(Self {
            vpc_id: p.required("VpcId")?.parse()?,
            cidr_block: p.required("CidrBlock")?,
            availability_zone,
            availability_zone_id,
            tags: tag_specifications(p, "subnet")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DescribeSubnets {
    pub subnet_ids: Vec<SubnetId>,
    pub filters: Vec<Filter>,
    pub paging: Paging,
}

impl Decode for DescribeSubnets {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self { subnet_ids: ids(p, "SubnetId")?, filters: p.filters()?, paging: Paging::decode(p)? })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeleteSubnet {
    pub subnet_id: SubnetId,
}

impl Decode for DeleteSubnet {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self { subnet_id: p.required("SubnetId")?.parse()? })
    }
}
