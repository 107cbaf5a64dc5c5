//! Tags on any resource: existence checks by the ID's kind, the 50-tag limit.

use kiln_store::tags::{self, TagRow};
use kiln_store::{images, instances, key_pairs, routing, security_groups, snapshots, volumes, vpcs, Connection, Scope};
use kiln_types::{InstanceState, ResourceKind};

use crate::{Cloud, Error, Result};

const MAX_TAGS: usize = 50;

pub(crate) fn put_all(
    conn: &Connection,
    scope: &Scope,
    kind: ResourceKind,
    id: &str,
    tags: &[(String, String)],
) -> Result<()> {
    for (k, v) in tags {
        tags::put(conn, scope, kind.resource_type(), id, k, v)?;
    }
    if tags::count(conn, id)? > MAX_TAGS {
        return Err(Error::TagLimitExceeded(format!("The maximum number of tags for resource '{id}' is {MAX_TAGS}")));
    }
    Ok(())
}

/// Whether `id` names a resource of the caller's in this region.
fn exists(conn: &Connection, scope: &Scope, kind: ResourceKind, id: &str) -> Result<bool> {
    Ok(match kind {
        ResourceKind::KeyPair => key_pairs::list(conn, scope)?.iter().any(|k| k.id == id),
        ResourceKind::Vpc => vpcs::list_vpcs(conn, scope)?.iter().any(|v| v.id == id),
        ResourceKind::Subnet => vpcs::list_subnets(conn, scope)?.iter().any(|s| s.id == id),
        ResourceKind::SecurityGroup => security_groups::list(conn, scope)?.iter().any(|g| g.id == id),
        ResourceKind::SecurityGroupRule => security_groups::rules(conn, scope)?.iter().any(|r| r.id == id),
        ResourceKind::Image => {
            images::list_region(conn, &scope.region)?.iter().any(|i| i.id == id && i.account_id == scope.account)
        }
        ResourceKind::Snapshot => snapshots::list_owned(conn, scope)?.iter().any(|s| s.id == id),
        ResourceKind::Instance => instances::get(conn, id)?.is_some_and(|i| {
            i.account_id == scope.account && i.region == scope.region && i.state != InstanceState::Terminated
        }),
        ResourceKind::Volume => {
            volumes::get(conn, id)?.is_some_and(|v| v.account_id == scope.account && v.region == scope.region)
        }
        ResourceKind::InternetGateway => routing::gateways(conn, scope)?.iter().any(|g| g.id == id),
        ResourceKind::RouteTable => routing::tables(conn, scope)?.iter().any(|t| t.id == id),
        ResourceKind::ElasticIp => routing::addresses(conn, scope)?.iter().any(|a| a.allocation_id == id),
        ResourceKind::NetworkAcl => routing::acls(conn, scope)?.iter().any(|a| a.id == id),
        ResourceKind::DhcpOptions => vpcs::dhcp_options(conn, scope)?.iter().any(|d| d.id == id),
        _ => false,
    })
}

fn resolve(conn: &Connection, scope: &Scope, ids: &[String]) -> Result<Vec<ResourceKind>> {
    ids.iter()
        .map(|id| {
            let kind = ResourceKind::of_id(id)
                .ok_or_else(|| Error::InvalidParameterValue(format!("The ID '{id}' is not valid")))?;
            if exists(conn, scope, kind, id)? {
                Ok(kind)
            } else {
                Err(Error::not_found(kind, id.clone()))
            }
        })
        .collect()
}

impl Cloud {
    /// Tags every resource, or none if any is missing.
    pub fn create_tags(&self, scope: &Scope, ids: &[String], tags: &[(String, String)]) -> Result<()> {
        self.store.write(|tx| {
            let kinds = resolve(tx, scope, ids)?;
            for (id, kind) in ids.iter().zip(kinds) {
                put_all(tx, scope, kind, id, tags)?;
            }
            Ok(())
        })
    }

    /// Deletes tags by key (any value) or key and value; no selectors deletes all.
    pub fn delete_tags(&self, scope: &Scope, ids: &[String], selectors: &[(String, Option<String>)]) -> Result<()> {
        self.store.write(|tx| {
            resolve(tx, scope, ids)?;
            for id in ids {
                if selectors.is_empty() {
                    tags::delete(tx, scope, id, None, None)?;
                }
                for (key, value) in selectors {
                    tags::delete(tx, scope, id, Some(key), value.as_deref())?;
                }
            }
            Ok(())
        })
    }

    pub fn tags(&self, scope: &Scope) -> Result<Vec<TagRow>> {
        self.store.read(|c| Ok(tags::list(c, scope)?))
    }

    pub fn tags_by_resource(&self, scope: &Scope) -> Result<std::collections::HashMap<String, Vec<(String, String)>>> {
        self.store.read(|c| Ok(tags::by_resource(c, scope)?))
    }

    /// The tags of a few resources, read by their ids (a point lookup does not read
    /// the scope's every tag).
    pub fn tags_of(
        &self,
        scope: &Scope,
        ids: &[&str],
    ) -> Result<std::collections::HashMap<String, Vec<(String, String)>>> {
        self.store.read(|c| Ok(tags::of_resources(c, scope, ids)?))
    }
}
