//! CreateTags, DeleteTags and DescribeTags.

use kiln_types::ResourceKind;

use super::{decode_tags, Decode, Tag};
use crate::page::Paging;
use crate::{Ec2Error, Filter, Params};

fn resource_ids(p: &Params) -> Result<Vec<String>, Ec2Error> {
    let ids = p.list("ResourceId");
    if ids.is_empty() {
        return Err(Ec2Error::missing("ResourceId"));
    }
    for id in &ids {
        let kind =
            ResourceKind::of_id(id).ok_or_else(|| Ec2Error::new("InvalidID", format!("The ID '{id}' is not valid")))?;
        kind.parse(id).map_err(|_| Ec2Error::new("InvalidID", format!("The ID '{id}' is not valid")))?;
    }
    Ok(ids)
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateTags {
    pub resource_ids: Vec<String>,
    pub tags: Vec<Tag>,
}

impl Decode for CreateTags {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        let resource_ids = resource_ids(p)?;
        let tags = decode_tags(p.members("Tag"))?;
        if tags.is_empty() {
            return Err(Ec2Error::missing("Tag"));
        }
        Ok(Self { resource_ids, tags })
    }
}

/// A tag to delete: by key alone, or by key and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagSelector {
    pub key: String,
    pub value: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeleteTags {
    pub resource_ids: Vec<String>,
    /// Empty means every tag on the resources.
    pub tags: Vec<TagSelector>,
}

impl Decode for DeleteTags {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        let resource_ids = resource_ids(p)?;
        let tags = p
            .members("Tag")
            .into_iter()
            .map(|m| {
                let key = m.required("Key").map_err(|_| Ec2Error::missing("Tag.N.Key"))?;
                Ok(TagSelector { key, value: m.raw("Value").map(str::to_owned) })
            })
            .collect::<Result<_, Ec2Error>>()?;
        Ok(Self { resource_ids, tags })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DescribeTags {
    pub filters: Vec<Filter>,
    pub paging: Paging,
}

impl Decode for DescribeTags {
    fn decode(p: &Params) -> Result<Self, Ec2Error> {
        Ok(Self { filters: p.filters()?, paging: Paging::decode(p)? })
    }
}
