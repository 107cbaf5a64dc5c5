//! VPCs and subnets as state: CIDR rules (sizes, containment, overlap), the default
//! VPC of each region, and what blocks a deletion. The network itself is made by the
//! host agent from this state.

use ipnet::Ipv4Net;
use kiln_store::vpcs::{self, Subnet, Vpc};
use kiln_store::{security_groups, Connection, Scope, Transaction};
use kiln_types::{RegionConfig, ResourceKind};

use crate::{acls, narrow, routing, security_groups as sg, tags, Cloud, Error, Result};

const DEFAULT_VPC_CIDR: &str = "172.31.0.0/16";

/// Parses an IPv4 CIDR with a netmask in `/16..=/28`, in its canonical form: as EC2's
/// CreateVpc and CreateSubnet do, host bits are cleared (100.68.0.18/18 is 100.68.0.0/18).
fn block(cidr: &str, what: &str) -> Result<Ipv4Net> {
    let net: Ipv4Net = cidr.parse::<Ipv4Net>().map(|n| n.trunc()).map_err(|_| {
        Error::InvalidParameterValue(format!(
            "Value ({cidr}) for parameter cidrBlock is invalid. This is not a valid CIDR block."
        ))
    })?;
    if !(16..=28).contains(&net.prefix_len()) {
        let msg = format!("The CIDR '{cidr}' is invalid: a {what} netmask must be between /16 and /28.");
        return Err(if what == "VPC" { Error::VpcRange(msg) } else { Error::SubnetRange(msg) });
    }
    Ok(net)
}

/// The caller's VPC `id`, or InvalidVpcID.NotFound.
pub(crate) fn find_vpc(conn: &Connection, scope: &Scope, id: &str) -> Result<Vpc> {
    vpcs::list_vpcs(conn, scope)?
        .into_iter()
        .find(|v| v.id == id)
        .ok_or_else(|| Error::not_found(ResourceKind::Vpc, id))
}

/// Creates the default VPC, its subnets (one per zone) and its default security group,
/// unless the scope has one already.
pub(crate) fn ensure_default_vpc(tx: &Transaction<'_>, scope: &Scope, region: &RegionConfig) -> Result<()> {
    if vpcs::list_vpcs(tx, scope)?.iter().any(|v| v.is_default) {
        return Ok(());
    }
    let vpc = Vpc {
        id: ResourceKind::Vpc.generate(),
        cidr: DEFAULT_VPC_CIDR.to_owned(),
        is_default: true,
        created_at: kiln_store::now(),
        dns_support: true,
        dns_hostnames: true,
        dhcp_options_id: None,
    };
    vpcs::insert_vpc(tx, scope, &vpc)?;
    sg::insert_default_group(tx, scope, &vpc.id)?;
    acls::create_default(tx, scope, &vpc.id)?;
    let main = routing::create_main_table(tx, scope, &vpc.id)?;
    routing::open_to_internet(tx, scope, &vpc.id, &main.id)?;
    let net: Ipv4Net = DEFAULT_VPC_CIDR.parse().map_err(|_| Error::InvalidParameterValue("default CIDR".into()))?;
    let subnets = net.subnets(20).map_err(|_| Error::InvalidParameterValue("default CIDR".into()))?;
    for (zone, cidr) in region.zones.iter().zip(subnets) {
        let id = ResourceKind::Subnet.generate();
        vpcs::insert_subnet(
            tx,
            scope,
            &Subnet {
                id: id.clone(),
                vpc_id: vpc.id.clone(),
                cidr: cidr.to_string(),
                availability_zone: zone.name.clone(),
                zone_id: zone.id.clone(),
                default_for_az: true,
                map_public_ip: true,
                created_at: kiln_store::now(),
            },
        )?;
        acls::adopt_subnet(tx, scope, &vpc.id, &id)?;
    }
    Ok(())
}

impl Cloud {
    pub fn create_vpc(&self, scope: &Scope, cidr: &str, tags: &[(String, String)]) -> Result<Vpc> {
        let net = block(cidr, "VPC")?;
        let vpc = Vpc {
            id: ResourceKind::Vpc.generate(),
            cidr: net.to_string(),
            is_default: false,
            created_at: kiln_store::now(),
            dns_support: true,
            dns_hostnames: false,
            dhcp_options_id: None,
        };
        self.store.write(|tx| {
            vpcs::insert_vpc(tx, scope, &vpc)?;
            sg::insert_default_group(tx, scope, &vpc.id)?;
            acls::create_default(tx, scope, &vpc.id)?;
            routing::create_main_table(tx, scope, &vpc.id)?;
            tags::put_all(tx, scope, ResourceKind::Vpc, &vpc.id, tags)?;
            Ok(vpc)
        })
    }

    /// VPCs, narrowed to `ids` (all must exist).
    pub fn vpcs(&self, scope: &Scope, ids: &[kiln_types::VpcId]) -> Result<Vec<Vpc>> {
        let all = self.store.read(|c| Ok::<_, Error>(vpcs::list_vpcs(c, scope)?))?;
        narrow(all, ids, ResourceKind::Vpc, |v| &v.id)
    }

    /// Deletes a VPC with no subnets and no security groups but its default one.
    pub fn delete_vpc(&self, scope: &Scope, id: &str) -> Result<()> {
        self.store.write(|tx| {
            find_vpc(tx, scope, id)?;
            if vpcs::list_subnets(tx, scope)?.iter().any(|s| s.vpc_id == id) {
                return Err(Error::DependencyViolation(format!(
                    "The vpc '{id}' has dependencies and cannot be deleted: delete its subnets first."
                )));
            }
            let groups: Vec<_> = security_groups::list(tx, scope)?.into_iter().filter(|g| g.vpc_id == id).collect();
            if groups.iter().any(|g| g.name != "default") {
                return Err(Error::DependencyViolation(format!(
                    "The vpc '{id}' has dependencies and cannot be deleted: delete its security groups first."
                )));
            }
            routing::release_vpc(tx, scope, id)?;
            acls::release_vpc(tx, scope, id)?;
            for g in groups {
                security_groups::delete(tx, scope, &g.id)?;
            }
            vpcs::delete_vpc(tx, scope, id)?;
            Ok(())
        })
    }

    /// Sets EC2's enableDnsSupport or enableDnsHostnames (one per request, as EC2 takes
    /// them); hostnames need DNS support.
    pub fn modify_vpc_dns(
        &self,
        scope: &Scope,
        id: &str,
        support: Option<bool>,
        hostnames: Option<bool>,
    ) -> Result<()> {
        self.store.write(|tx| {
            let vpc = find_vpc(tx, scope, id)?;
            let support_after = support.unwrap_or(vpc.dns_support);
            let hostnames_after = hostnames.unwrap_or(vpc.dns_hostnames);
            if hostnames_after && !support_after {
                return Err(Error::InvalidParameterValue(
                    "enableDnsHostnames cannot be enabled unless enableDnsSupport is enabled".into(),
                ));
            }
            vpcs::set_dns(tx, id, support, hostnames)?;
            Ok(())
        })
    }

    /// ModifySubnetAttribute MapPublicIpOnLaunch.
    pub fn set_map_public_ip(&self, scope: &Scope, id: &str, on: bool) -> Result<()> {
        self.store.write(|tx| {
            if !vpcs::list_subnets(tx, scope)?.iter().any(|s| s.id == id) {
                return Err(Error::not_found(ResourceKind::Subnet, id));
            }
            vpcs::set_map_public_ip(tx, id, on)?;
            Ok(())
        })
    }

    /// CreateDefaultVpc: a default VPC as the region's first one was, unless one exists.
    pub fn create_default_vpc(&self, scope: &Scope) -> Result<Vpc> {
        let region = self
            .region(&scope.region)
            .ok_or_else(|| Error::InvalidParameterValue(format!("Region {} is not served here", scope.region)))?
            .clone();
        self.store.write(|tx| {
            if vpcs::list_vpcs(tx, scope)?.iter().any(|v| v.is_default) {
                return Err(Error::DefaultVpcExists(
                    "A Default VPC already exists for this account in this region.".into(),
                ));
            }
            ensure_default_vpc(tx, scope, &region)?;
            vpcs::list_vpcs(tx, scope)?
                .into_iter()
                .find(|v| v.is_default)
                .ok_or_else(|| Error::DefaultVpcExists("The default VPC could not be made".into()))
        })
    }

    pub fn create_subnet(
        &self,
        scope: &Scope,
        vpc_id: &str,
        cidr: &str,
        zone_name: Option<&str>,
        zone_id: Option<&str>,
        tags: &[(String, String)],
    ) -> Result<Subnet> {
        let region = self
            .region(&scope.region)
            .ok_or_else(|| Error::InvalidParameterValue(format!("Region {} is not served here", scope.region)))?;
        let zone = match (zone_name, zone_id) {
            (Some(name), _) => region.zone(name),
            (None, Some(id)) => region.zones.iter().find(|z| z.id == id),
            // EC2 picks a zone when none is given.
            (None, None) => region.zones.first(),
        }
        .ok_or_else(|| {
            let names: Vec<_> = region.zones.iter().map(|z| z.name.as_str()).collect();
            Error::InvalidParameterValue(format!(
                "Value ({}) for parameter availabilityZone is invalid. Subnets can currently only be created in the following availability zones: {}.",
                zone_name.or(zone_id).unwrap_or_default(),
                names.join(", ")
            ))
        })?
        .clone();
        let net = block(cidr, "subnet")?;
        self.store.write(|tx| {
            let vpc = find_vpc(tx, scope, vpc_id)?;
            let vpc_net: Ipv4Net =
                vpc.cidr.parse().map_err(|_| kiln_store::StoreError::Corrupt(format!("VPC CIDR {}", vpc.cidr)))?;
            if !vpc_net.contains(&net) {
                return Err(Error::SubnetRange(format!(
                    "The CIDR '{cidr}' is invalid: it is not within the VPC's {}.",
                    vpc.cidr
                )));
            }
            for other in vpcs::list_subnets(tx, scope)?.iter().filter(|s| s.vpc_id == vpc_id) {
                if let Ok(o) = other.cidr.parse::<Ipv4Net>() {
                    if o.contains(&net) || net.contains(&o) {
                        return Err(Error::SubnetConflict(format!(
                            "The CIDR '{cidr}' conflicts with another subnet ({}, {}).",
                            other.id, other.cidr
                        )));
                    }
                }
            }
            let subnet = Subnet {
                id: ResourceKind::Subnet.generate(),
                vpc_id: vpc_id.to_owned(),
                cidr: net.to_string(),
                availability_zone: zone.name.clone(),
                zone_id: zone.id.clone(),
                default_for_az: false,
                map_public_ip: false,
                created_at: kiln_store::now(),
            };
            vpcs::insert_subnet(tx, scope, &subnet)?;
            acls::adopt_subnet(tx, scope, vpc_id, &subnet.id)?;
            tags::put_all(tx, scope, ResourceKind::Subnet, &subnet.id, tags)?;
            Ok(subnet)
        })
    }

    pub fn subnets(&self, scope: &Scope, ids: &[kiln_types::SubnetId]) -> Result<Vec<Subnet>> {
        let all = self.store.read(|c| Ok::<_, Error>(vpcs::list_subnets(c, scope)?))?;
        narrow(all, ids, ResourceKind::Subnet, |s| &s.id)
    }

    pub fn delete_subnet(&self, scope: &Scope, id: &str) -> Result<()> {
        self.store.write(|tx| {
            if kiln_store::instances::uses_subnet(tx, id)? {
                return Err(Error::DependencyViolation(format!(
                    "The subnet '{id}' has dependencies and cannot be deleted: terminate its instances first."
                )));
            }
            kiln_store::routing::forget_subnet(tx, id)?;
            if !vpcs::delete_subnet(tx, scope, id)? {
                return Err(Error::not_found(ResourceKind::Subnet, id));
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_rules() {
        assert!(block("10.0.0.0/16", "VPC").is_ok());
        assert!(matches!(block("10.0.0.0/8", "VPC"), Err(Error::VpcRange(_))));
        assert!(matches!(block("10.0.0.0/29", "subnet"), Err(Error::SubnetRange(_))));
        assert_eq!(block("100.68.0.18/18", "VPC").ok().map(|n| n.to_string()).as_deref(), Some("100.68.0.0/18"));
        assert!(matches!(block("10.0.0.0/33", "VPC"), Err(Error::InvalidParameterValue(_))));
        assert!(matches!(block("banana", "VPC"), Err(Error::InvalidParameterValue(_))));
    }
}
