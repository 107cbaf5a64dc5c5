//! Regions, availability zones and account attributes.

use super::Decode;
use crate::{Ec2Error, Filter, Params};

#[derive(Debug, Clone, PartialEq)]
pub struct DescribeRegions {
    pub region_names: Vec<String>,
    pub all_regions: bool,
    pub filters: Vec<Filter>,
}

impl Decode for DescribeRegions {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self { region_names: p.list("RegionName"), all_regions: p.flag("AllRegions")?, filters: p.filters()? })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DescribeAvailabilityZones {
    pub zone_names: Vec<String>,
    pub zone_ids: Vec<String>,
    pub all: bool,
    pub filters: Vec<Filter>,
}

impl Decode for DescribeAvailabilityZones {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self {
            zone_names: p.list("ZoneName"),
            zone_ids: p.list("ZoneId"),
            all: p.flag("AllAvailabilityZones")?,
            filters: p.filters()?,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DescribeAccountAttributes {
    pub names: Vec<String>,
}

impl Decode for DescribeAccountAttributes {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self { names: p.list("AttributeName") })
    }
}
