//! DescribeInstanceTypes and DescribeInstanceTypeOfferings.

use super::Decode;
use crate::page::Paging;
use crate::{Ec2Error, Filter, Params};

#[derive(Debug, Clone, PartialEq)]
pub struct DescribeInstanceTypes {
    pub instance_types: Vec<String>,
    pub filters: Vec<Filter>,
    pub paging: Paging,
}

impl Decode for DescribeInstanceTypes {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        let instance_types = p.list("InstanceType");
        let paging = Paging::decode(p)?;
        if !instance_types.is_empty() && paging.max_results.is_some() {
            return Err(Ec2Error::combination(
                "The parameter instanceTypes cannot be used with the parameter maxResults",
            ));
        }
        Ok(Self { instance_types, filters: p.filters()?, paging })
    }
}

/// Where an offering is listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocationType {
    Region,
    AvailabilityZone,
    AvailabilityZoneId,
}

impl LocationType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Region => "region",
            Self::AvailabilityZone => "availability-zone",
            Self::AvailabilityZoneId => "availability-zone-id",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DescribeInstanceTypeOfferings {
    pub location_type: LocationType,
    pub filters: Vec<Filter>,
    pub paging: Paging,
}

impl Decode for DescribeInstanceTypeOfferings {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        let location_type = match p.get("LocationType") {
            None | Some("region") => LocationType::Region,
            Some("availability-zone") => LocationType::AvailabilityZone,
            Some("availability-zone-id") => LocationType::AvailabilityZoneId,
            Some(other) => {
                return Err(Ec2Error::invalid_value(format!(
                    "Value ({other}) for parameter locationType is invalid. Valid values: region, availability-zone, availability-zone-id"
                )))
            }
        };
        Ok(Self { location_type, filters: p.filters()?, paging: Paging::decode(p)? })
    }
}
