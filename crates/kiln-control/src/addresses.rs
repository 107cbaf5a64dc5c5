//! Elastic IP addresses: allocated from the host's public pool (the same pool that
//! auto-assigned addresses come from, so the two never collide), associated with an
//! instance or its primary interface, kept across stop and start, and released. An
//! instance reads as having its Elastic IP as its public address (the store does that),
//! so the host networking, DescribeInstances and the metadata service all follow it.

use std::net::Ipv4Addr;

use kiln_store::routing::{self, Address};
use kiln_store::{instances, Connection, Scope};
use kiln_types::ids::interface_instance;
use kiln_types::{InstanceState, ResourceKind};

use crate::{routing as vpc_routing, tags, Cloud, Error, Result};

/// Elastic IPs an account may hold in a region (EC2's default quota).
pub const MAX_ADDRESSES: usize = 5;

/// An address named as EC2 lets callers name it: by allocation id or by public IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressRef {
    Allocation(String),
    PublicIp(String),
}

/// What an address is associated with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressTarget {
    Instance(String),
    NetworkInterface(String),
}

fn find(conn: &Connection, scope: &Scope, which: &AddressRef) -> Result<Address> {
    let all = routing::addresses(conn, scope)?;
    match which {
        AddressRef::Allocation(id) => all
            .into_iter()
            .find(|a| &a.allocation_id == id)
            .ok_or_else(|| Error::not_found(ResourceKind::ElasticIp, id.clone())),
        AddressRef::PublicIp(ip) => all
            .into_iter()
            .find(|a| &a.public_ip == ip)
            .ok_or_else(|| Error::AddressNotFound(format!("Address '{ip}' not found."))),
    }
}

impl Cloud {
    /// Allocates an address from the public pool (lowest free first).
    pub fn allocate_address(&self, scope: &Scope, tags: &[(String, String)]) -> Result<Address> {
        let pool = self.public_pool;
        self.store.write(|tx| {
            if routing::addresses(tx, scope)?.len() >= MAX_ADDRESSES {
                return Err(Error::AddressLimitExceeded(format!(
                    "The maximum number of addresses has been reached ({MAX_ADDRESSES}); release one you do not use."
                )));
            }
            let mut used = instances::public_ips(tx)?;
            used.extend(routing::all_addresses(tx)?.into_iter().map(|a| a.public_ip));
            let free = pool.hosts().map(|a: Ipv4Addr| a.to_string()).find(|a| !used.contains(a)).ok_or_else(|| {
                Error::AddressLimitExceeded(format!(
                    "No public addresses are free in this host's pool {pool}; give `kiln serve --public-ip-pool` a larger one"
                ))
            })?;
            let address = Address {
                allocation_id: ResourceKind::ElasticIp.generate(),
                public_ip: free,
                instance_id: None,
                association_id: None,
                created_at: kiln_store::now(),
            };
            routing::insert_address(tx, scope, &address)?;
            tags::put_all(tx, scope, ResourceKind::ElasticIp, &address.allocation_id, tags)?;
            Ok(address)
        })
    }

    /// Addresses narrowed by allocation ids and public IPs (all must exist).
    pub fn addresses(&self, scope: &Scope, allocations: &[impl AsRef<str>], ips: &[String]) -> Result<Vec<Address>> {
        let all = self.store.read(|c| Ok::<_, Error>(routing::addresses(c, scope)?))?;
        crate::missing(allocations, ResourceKind::ElasticIp, |id| all.iter().any(|a| a.allocation_id == id))?;
        if let Some(ip) = ips.iter().find(|ip| !all.iter().any(|a| &a.public_ip == *ip)) {
            return Err(Error::AddressNotFound(format!("Address '{ip}' not found.")));
        }
        Ok(all
            .into_iter()
            .filter(|a| allocations.is_empty() || allocations.iter().any(|x| x.as_ref() == a.allocation_id))
            .filter(|a| ips.is_empty() || ips.contains(&a.public_ip))
            .collect())
    }

    /// Associates an address with an instance (or its primary interface); returns the
    /// association id. The instance's own pool address goes back to the pool, and its
    /// public address becomes the Elastic IP within one reconcile pass.
    pub fn associate_address(
        &self,
        scope: &Scope,
        which: &AddressRef,
        target: &AddressTarget,
        allow_reassociation: bool,
    ) -> Result<String> {
        self.store.write(|tx| {
            let address = find(tx, scope, which)?;
            let (instance_id, kind) = match target {
                AddressTarget::Instance(id) => (Some(id.clone()), ResourceKind::Instance),
                AddressTarget::NetworkInterface(eni) => (interface_instance(eni), ResourceKind::NetworkInterface),
            };
            let shown = match target {
                AddressTarget::Instance(id) | AddressTarget::NetworkInterface(id) => id.clone(),
            };
            let instance = instance_id
                .as_deref()
                .map(|id| instances::get(tx, id))
                .transpose()?
                .flatten()
                .filter(|i| i.account_id == scope.account && i.region == scope.region)
                .filter(|i| i.state != InstanceState::Terminated)
                .ok_or_else(|| Error::not_found(kind, shown))?;
            if matches!(instance.state, InstanceState::ShuttingDown) {
                return Err(Error::IncorrectInstanceState(format!(
                    "The instance '{}' is not in a valid state for this operation.",
                    instance.id
                )));
            }
            if !vpc_routing::has_gateway(tx, scope, &instance.vpc_id)? {
                return Err(Error::GatewayNotAttached(format!(
                    "Network {} is not attached to any internet gateway",
                    instance.vpc_id
                )));
            }
            match &address.instance_id {
                Some(at) if *at == instance.id => {
                    return address.association_id.clone().ok_or_else(|| Error::AddressNotFound("association".into()));
                }
                Some(_) if !allow_reassociation => {
                    return Err(Error::AlreadyAssociated(format!(
                        "resource {} is already associated with associate-id {}",
                        address.allocation_id,
                        address.association_id.as_deref().unwrap_or_default()
                    )));
                }
                _ => {}
            }
            // An instance holds one Elastic IP on its primary interface: a new one
            // replaces the old.
            for other in routing::addresses(tx, scope)? {
                if other.instance_id.as_deref() == Some(instance.id.as_str()) {
                    routing::associate_address(tx, &other.allocation_id, None, None)?;
                }
            }
            let association = ResourceKind::AddressAssociation.generate();
            routing::associate_address(tx, &address.allocation_id, Some(&instance.id), Some(&association))?;
            instances::clear_public_ip(tx, &instance.id)?;
            Ok(association)
        })
    }

    /// Disassociates an address (by association id, or by public IP). A running
    /// instance that asked for a public address gets a fresh one from the pool.
    pub fn disassociate_address(&self, scope: &Scope, association: Option<&str>, ip: Option<&str>) -> Result<()> {
        self.store.write(|tx| {
            let all = routing::addresses(tx, scope)?;
            let found = match (association, ip) {
                (Some(id), _) => all
                    .into_iter()
                    .find(|a| a.association_id.as_deref() == Some(id))
                    .ok_or_else(|| Error::not_found(ResourceKind::AddressAssociation, id))?,
                (None, Some(ip)) => find(tx, scope, &AddressRef::PublicIp(ip.to_owned()))?,
                (None, None) => {
                    return Err(Error::ParameterCombination("Either AssociationId or PublicIp must be given".into()))
                }
            };
            if found.instance_id.is_some() {
                routing::associate_address(tx, &found.allocation_id, None, None)?;
            }
            Ok(())
        })
    }

    pub fn release_address(&self, scope: &Scope, which: &AddressRef) -> Result<()> {
        self.store.write(|tx| {
            let address = find(tx, scope, which)?;
            if address.instance_id.is_some() {
                return Err(Error::AddressInUse(format!(
                    "Address {} is in use: disassociate it first.",
                    address.public_ip
                )));
            }
            routing::delete_address(tx, &address.allocation_id)?;
            Ok(())
        })
    }
}
