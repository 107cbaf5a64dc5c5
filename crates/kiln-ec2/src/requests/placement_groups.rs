//! Placement group requests, and how RunInstances names a group (`Placement.GroupName`
//! or `Placement.GroupId`).

use kiln_types::{PlacementGroupId, PlacementStrategy, SpreadLevel};

use super::{ids, tag_specifications, Decode, Tag};
use crate::{Ec2Error, Filter, Params};

/// A placement group as a request names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlacementGroupRef {
    Name(String),
    Id(PlacementGroupId),
}

impl PlacementGroupRef {
    /// `GroupId` or `GroupName` in `p` (an empty name is none, as the SDKs send it).
    pub fn from(p: &Params) -> Result<Option<Self>, Ec2Error> {
        Ok(match (p.get("GroupId"), p.get("GroupName")) {
            (Some(id), _) => Some(Self::Id(id.parse()?)),
            (None, Some(name)) if !name.is_empty() => Some(Self::Name(name.to_owned())),
            _ => None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreatePlacementGroup {
    pub group_name: Option<String>,
    pub strategy: Option<PlacementStrategy>,
    pub partition_count: Option<i64>,
    pub spread_level: Option<SpreadLevel>,
    pub tags: Vec<Tag>,
}

impl Decode for CreatePlacementGroup {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self {
            group_name: p.string("GroupName"),
            strategy: p.choice("Strategy")?,
            partition_count: p.int("PartitionCount")?,
            spread_level: p.choice("SpreadLevel")?,
            tags: tag_specifications(p, "placement-group")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DescribePlacementGroups {
    pub group_names: Vec<String>,
    pub group_ids: Vec<PlacementGroupId>,
    pub filters: Vec<Filter>,
}

impl Decode for DescribePlacementGroups {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self { group_names: p.list("GroupName"), group_ids: ids(p, "GroupId")?, filters: p.filters()? })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeletePlacementGroup {
    pub group: PlacementGroupRef,
}

impl Decode for DeletePlacementGroup {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self { group: PlacementGroupRef::from(p)?.ok_or_else(|| Ec2Error::missing("GroupName"))? })
    }
}
