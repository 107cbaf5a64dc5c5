//! VPC routing as EC2 has it: internet gateways attached to VPCs, route tables (each
//! VPC's main table and the subnets' own), their routes and associations, and which
//! subnets reach the internet: a subnet does while its table routes a destination to
//! a gateway attached to its VPC. The host networking gives public addresses only to
//! instances in such subnets, so routes are enforced, not just recorded.

use std::collections::HashSet;

use ipnet::Ipv4Net;
use kiln_store::routing::{self, Association, InternetGateway, Route, RouteTable};
use kiln_store::{instances, vpcs, Connection, Scope, Transaction};
use kiln_types::{InstanceState, ResourceKind};

use crate::{narrow, tags, Cloud, Error, Result};

/// Where a route sends traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    /// Within the VPC (the route to its own CIDR).
    Local,
    Gateway(String),
    Instance(String),
    NetworkInterface(String),
}

impl RouteTarget {
    fn of(target: &str) -> Self {
        match ResourceKind::of_id(target) {
            Some(ResourceKind::Instance) => Self::Instance(target.to_owned()),
            Some(ResourceKind::NetworkInterface) => Self::NetworkInterface(target.to_owned()),
            _ => Self::Gateway(target.to_owned()),
        }
    }

    fn id(&self) -> &str {
        match self {
            Self::Local => "local",
            Self::Gateway(id) | Self::Instance(id) | Self::NetworkInterface(id) => id,
        }
    }
}

/// One route as DescribeRouteTables shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteView {
    pub destination: String,
    pub target: RouteTarget,
    /// `false` when the target is gone or detached (EC2's `blackhole`).
    pub active: bool,
    /// Made with the table (the local route) rather than by CreateRoute.
    pub from_table: bool,
}

/// A route table with its routes and associations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTableView {
    pub table: RouteTable,
    pub routes: Vec<RouteView>,
    pub associations: Vec<Association>,
}

fn cidr(value: &str, parameter: &str) -> Result<Ipv4Net> {
    let net: Ipv4Net = value.parse().map_err(|_| {
        Error::InvalidParameterValue(format!(
            "Value ({value}) for parameter {parameter} is invalid. This is not a valid CIDR block."
        ))
    })?;
    if net.trunc() != net {
        return Err(Error::InvalidParameterValue(format!(
            "Value ({value}) for parameter {parameter} is invalid. This is not a valid CIDR block: host bits are set (did you mean {}?)",
            net.trunc()
        )));
    }
    Ok(net)
}

fn new_association() -> String {
    ResourceKind::RouteTableAssociation.generate()
}

/// Makes a VPC's main route table (with its main association).
pub(crate) fn create_main_table(tx: &Transaction<'_>, scope: &Scope, vpc_id: &str) -> Result<RouteTable> {
    let table = RouteTable {
        id: ResourceKind::RouteTable.generate(),
        vpc_id: vpc_id.to_owned(),
        main_association: Some(new_association()),
        created_at: kiln_store::now(),
    };
    routing::insert_table(tx, scope, &table)?;
    Ok(table)
}

/// Gives a (default) VPC an attached gateway and a 0.0.0.0/0 route to it in `table`.
pub(crate) fn open_to_internet(tx: &Transaction<'_>, scope: &Scope, vpc_id: &str, table: &str) -> Result<()> {
    let gateway = InternetGateway {
        id: ResourceKind::InternetGateway.generate(),
        vpc_id: Some(vpc_id.to_owned()),
        created_at: kiln_store::now(),
    };
    routing::insert_gateway(tx, scope, &gateway)?;
    routing::put_route(
        tx,
        &Route { route_table_id: table.to_owned(), destination: "0.0.0.0/0".into(), target: gateway.id },
    )?;
    Ok(())
}

/// What blocks deleting a VPC, from routing: an attached gateway or a table of its own.
/// Its main table goes with it.
pub(crate) fn release_vpc(tx: &Transaction<'_>, scope: &Scope, vpc_id: &str) -> Result<()> {
    if routing::gateways(tx, scope)?.iter().any(|g| g.vpc_id.as_deref() == Some(vpc_id)) {
        return Err(Error::DependencyViolation(format!(
            "The vpc '{vpc_id}' has dependencies and cannot be deleted: detach its internet gateway first."
        )));
    }
    let tables: Vec<RouteTable> = routing::tables(tx, scope)?.into_iter().filter(|t| t.vpc_id == vpc_id).collect();
    if let Some(own) = tables.iter().find(|t| t.main_association.is_none()) {
        return Err(Error::DependencyViolation(format!(
            "The vpc '{vpc_id}' has dependencies and cannot be deleted: delete route table {} first.",
            own.id
        )));
    }
    for t in tables {
        routing::delete_table(tx, &t.id)?;
    }
    Ok(())
}

fn find_table(conn: &Connection, scope: &Scope, id: &str) -> Result<RouteTable> {
    routing::tables(conn, scope)?
        .into_iter()
        .find(|t| t.id == id)
        .ok_or_else(|| Error::not_found(ResourceKind::RouteTable, id))
}

fn find_gateway(conn: &Connection, scope: &Scope, id: &str) -> Result<InternetGateway> {
    routing::gateways(conn, scope)?
        .into_iter()
        .find(|g| g.id == id)
        .ok_or_else(|| Error::not_found(ResourceKind::InternetGateway, id))
}

/// The table a subnet uses: its own association's, else its VPC's main table.
fn table_of<'a>(tables: &'a [RouteTable], assocs: &[Association], subnet: &str, vpc: &str) -> Option<&'a RouteTable> {
    match assocs.iter().find(|a| a.subnet_id == subnet) {
        Some(a) => tables.iter().find(|t| t.id == a.route_table_id),
        None => tables.iter().find(|t| t.vpc_id == vpc && t.main_association.is_some()),
    }
}

/// The subnets of a scope whose route table sends a destination to a gateway attached
/// to their VPC: the only subnets whose instances' public addresses work.
pub(crate) fn internet_subnets(conn: &Connection, scope: &Scope) -> Result<HashSet<String>> {
    let tables = routing::tables(conn, scope)?;
    let assocs = routing::associations(conn, scope)?;
    let routes = routing::routes(conn, scope)?;
    let attached: HashSet<(String, String)> =
        routing::gateways(conn, scope)?.into_iter().filter_map(|g| g.vpc_id.map(|v| (g.id, v))).collect();
    let mut out = HashSet::new();
    for s in vpcs::list_subnets(conn, scope)? {
        let Some(table) = table_of(&tables, &assocs, &s.id, &s.vpc_id) else { continue };
        let open = routes
            .iter()
            .any(|r| r.route_table_id == table.id && attached.contains(&(r.target.clone(), s.vpc_id.clone())));
        if open {
            out.insert(s.id);
        }
    }
    Ok(out)
}

/// Whether a VPC has an internet gateway attached.
pub(crate) fn has_gateway(conn: &Connection, scope: &Scope, vpc_id: &str) -> Result<bool> {
    Ok(routing::gateways(conn, scope)?.iter().any(|g| g.vpc_id.as_deref() == Some(vpc_id)))
}

impl Cloud {
    pub fn create_internet_gateway(&self, scope: &Scope, tags: &[(String, String)]) -> Result<InternetGateway> {
        let gateway = InternetGateway {
            id: ResourceKind::InternetGateway.generate(),
            vpc_id: None,
            created_at: kiln_store::now(),
        };
        self.store.write(|tx| {
            routing::insert_gateway(tx, scope, &gateway)?;
            tags::put_all(tx, scope, ResourceKind::InternetGateway, &gateway.id, tags)?;
            Ok(gateway)
        })
    }

    pub fn internet_gateways(&self, scope: &Scope, ids: &[impl AsRef<str>]) -> Result<Vec<InternetGateway>> {
        let all = self.store.read(|c| Ok::<_, Error>(routing::gateways(c, scope)?))?;
        narrow(all, ids, ResourceKind::InternetGateway, |g| &g.id)
    }

    pub fn attach_internet_gateway(&self, scope: &Scope, id: &str, vpc_id: &str) -> Result<()> {
        self.store.write(|tx| {
            let gateway = find_gateway(tx, scope, id)?;
            crate::vpcs::find_vpc(tx, scope, vpc_id)?;
            if let Some(at) = gateway.vpc_id {
                return Err(Error::AlreadyAssociated(format!("resource {id} is already attached to network {at}")));
            }
            if has_gateway(tx, scope, vpc_id)? {
                return Err(Error::AlreadyAssociated(format!(
                    "Network {vpc_id} already has an internet gateway attached"
                )));
            }
            routing::set_gateway_vpc(tx, id, Some(vpc_id))?;
            Ok(())
        })
    }

    /// Detaches a gateway; EC2 refuses while instances of the VPC have public addresses
    /// mapped through it.
    pub fn detach_internet_gateway(&self, scope: &Scope, id: &str, vpc_id: &str) -> Result<()> {
        self.store.write(|tx| {
            let gateway = find_gateway(tx, scope, id)?;
            crate::vpcs::find_vpc(tx, scope, vpc_id)?;
            if gateway.vpc_id.as_deref() != Some(vpc_id) {
                return Err(Error::GatewayNotAttached(format!("resource {id} is not attached to network {vpc_id}")));
            }
            // An instance's public address reads as its Elastic IP while it has one.
            let mapped = instances::list(tx, scope)?
                .into_iter()
                .any(|i| i.vpc_id == vpc_id && i.state != InstanceState::Terminated && i.public_ip.is_some());
            if mapped {
                return Err(Error::DependencyViolation(format!(
                    "Network {vpc_id} has some mapped public address(es). Please unmap those public address(es) before detaching the gateway."
                )));
            }
            routing::set_gateway_vpc(tx, id, None)?;
            Ok(())
        })
    }

    pub fn delete_internet_gateway(&self, scope: &Scope, id: &str) -> Result<()> {
        self.store.write(|tx| {
            let gateway = find_gateway(tx, scope, id)?;
            if gateway.vpc_id.is_some() {
                return Err(Error::DependencyViolation(format!(
                    "The internetGateway '{id}' has dependencies and cannot be deleted: detach it first."
                )));
            }
            routing::delete_gateway(tx, id)?;
            Ok(())
        })
    }

    pub fn create_route_table(&self, scope: &Scope, vpc_id: &str, tags: &[(String, String)]) -> Result<RouteTableView> {
        let table = RouteTable {
            id: ResourceKind::RouteTable.generate(),
            vpc_id: vpc_id.to_owned(),
            main_association: None,
            created_at: kiln_store::now(),
        };
        self.store.write(|tx| {
            crate::vpcs::find_vpc(tx, scope, vpc_id)?;
            routing::insert_table(tx, scope, &table)?;
            tags::put_all(tx, scope, ResourceKind::RouteTable, &table.id, tags)?;
            Ok::<_, Error>(())
        })?;
        let mut views = self.route_tables(scope, &[table.id.as_str()])?;
        views.pop().ok_or_else(|| Error::not_found(ResourceKind::RouteTable, table.id))
    }

    /// Route tables with their routes (the local route first) and associations.
    pub fn route_tables(&self, scope: &Scope, ids: &[impl AsRef<str>]) -> Result<Vec<RouteTableView>> {
        self.store.read(|c| {
            let tables = narrow(routing::tables(c, scope)?, ids, ResourceKind::RouteTable, |t| &t.id)?;
            let routes = routing::routes(c, scope)?;
            let assocs = routing::associations(c, scope)?;
            let vpcs = vpcs::list_vpcs(c, scope)?;
            let gateways = routing::gateways(c, scope)?;
            let live: HashSet<String> = instances::list(c, scope)?
                .into_iter()
                .filter(|i| i.state != InstanceState::Terminated)
                .flat_map(|i| [kiln_types::ids::primary_interface(&i.id), i.id])
                .collect();
            Ok(tables
                .into_iter()
                .map(|t| {
                    let mut list = Vec::new();
                    if let Some(v) = vpcs.iter().find(|v| v.id == t.vpc_id) {
                        list.push(RouteView {
                            destination: v.cidr.clone(),
                            target: RouteTarget::Local,
                            active: true,
                            from_table: true,
                        });
                    }
                    for r in routes.iter().filter(|r| r.route_table_id == t.id) {
                        let target = RouteTarget::of(&r.target);
                        let active = match &target {
                            RouteTarget::Gateway(g) => {
                                gateways.iter().any(|x| &x.id == g && x.vpc_id.as_deref() == Some(t.vpc_id.as_str()))
                            }
                            RouteTarget::Instance(id) | RouteTarget::NetworkInterface(id) => live.contains(id),
                            RouteTarget::Local => true,
                        };
                        list.push(RouteView { destination: r.destination.clone(), target, active, from_table: false });
                    }
                    let associations = assocs.iter().filter(|a| a.route_table_id == t.id).cloned().collect();
                    RouteTableView { table: t, routes: list, associations }
                })
                .collect())
        })
    }

    pub fn delete_route_table(&self, scope: &Scope, id: &str) -> Result<()> {
        self.store.write(|tx| {
            let table = find_table(tx, scope, id)?;
            let associated = routing::associations(tx, scope)?.iter().any(|a| a.route_table_id == id);
            if table.main_association.is_some() || associated {
                return Err(Error::DependencyViolation(format!(
                    "The routeTable '{id}' has dependencies and cannot be deleted."
                )));
            }
            routing::delete_table(tx, id)?;
            Ok(())
        })
    }

    /// Associates a subnet with a table of its VPC; returns the association id.
    pub fn associate_route_table(&self, scope: &Scope, table_id: &str, subnet_id: &str) -> Result<String> {
        self.store.write(|tx| {
            let table = find_table(tx, scope, table_id)?;
            let subnet = vpcs::list_subnets(tx, scope)?
                .into_iter()
                .find(|s| s.id == subnet_id)
                .ok_or_else(|| Error::not_found(ResourceKind::Subnet, subnet_id))?;
            if subnet.vpc_id != table.vpc_id {
                return Err(Error::InvalidParameterValue(format!(
                    "Route table {table_id} and subnet {subnet_id} belong to different networks"
                )));
            }
            if let Some(a) = routing::associations(tx, scope)?.into_iter().find(|a| a.subnet_id == subnet_id) {
                if a.route_table_id == table_id {
                    // EC2 answers the existing association for the same pair.
                    return Ok(a.id);
                }
                return Err(Error::AlreadyAssociated(format!(
                    "the specified association for route table {table_id} conflicts with an existing association"
                )));
            }
            let id = new_association();
            routing::insert_association(
                tx,
                &Association { id: id.clone(), route_table_id: table_id.to_owned(), subnet_id: subnet_id.to_owned() },
            )?;
            Ok(id)
        })
    }

    pub fn disassociate_route_table(&self, scope: &Scope, association_id: &str) -> Result<()> {
        self.store.write(|tx| {
            if routing::tables(tx, scope)?.iter().any(|t| t.main_association.as_deref() == Some(association_id)) {
                return Err(Error::InvalidParameterValue(format!(
                    "cannot disassociate the main route table association {association_id}"
                )));
            }
            if !routing::associations(tx, scope)?.iter().any(|a| a.id == association_id) {
                return Err(Error::not_found(ResourceKind::RouteTableAssociation, association_id));
            }
            routing::delete_association(tx, association_id)?;
            Ok(())
        })
    }

    /// Points an association (a subnet's, or a VPC's main one) at another table of the
    /// same VPC; returns the new association id.
    pub fn replace_route_table_association(
        &self,
        scope: &Scope,
        association_id: &str,
        table_id: &str,
    ) -> Result<String> {
        self.store.write(|tx| {
            let table = find_table(tx, scope, table_id)?;
            let new_id = new_association();
            if let Some(main) =
                routing::tables(tx, scope)?.into_iter().find(|t| t.main_association.as_deref() == Some(association_id))
            {
                if main.vpc_id != table.vpc_id {
                    return Err(Error::InvalidParameterValue(format!(
                        "Route table {table_id} belongs to another network than association {association_id}"
                    )));
                }
                routing::set_main(tx, &table.vpc_id, table_id, &new_id)?;
                return Ok(new_id);
            }
            let old = routing::associations(tx, scope)?
                .into_iter()
                .find(|a| a.id == association_id)
                .ok_or_else(|| Error::not_found(ResourceKind::RouteTableAssociation, association_id))?;
            let subnet_vpc =
                vpcs::list_subnets(tx, scope)?.into_iter().find(|s| s.id == old.subnet_id).map(|s| s.vpc_id);
            if subnet_vpc.as_deref() != Some(table.vpc_id.as_str()) {
                return Err(Error::InvalidParameterValue(format!(
                    "Route table {table_id} and subnet {} belong to different networks",
                    old.subnet_id
                )));
            }
            routing::delete_association(tx, association_id)?;
            routing::insert_association(
                tx,
                &Association { id: new_id.clone(), route_table_id: table_id.to_owned(), subnet_id: old.subnet_id },
            )?;
            Ok(new_id)
        })
    }

    /// Adds (`replace` false) or replaces a route. Targets must exist in the table's
    /// VPC; a gateway must be attached to it.
    pub fn put_route(
        &self,
        scope: &Scope,
        table_id: &str,
        destination: &str,
        target: RouteTarget,
        replace: bool,
    ) -> Result<()> {
        let dest = cidr(destination, "destinationCidrBlock")?;
        self.store.write(|tx| {
            let table = find_table(tx, scope, table_id)?;
            let vpc = vpcs::list_vpcs(tx, scope)?
                .into_iter()
                .find(|v| v.id == table.vpc_id)
                .ok_or_else(|| Error::not_found(ResourceKind::Vpc, table.vpc_id.clone()))?;
            let vpc_net: Ipv4Net = vpc.cidr.parse().map_err(|_| kiln_store::StoreError::Corrupt(vpc.cidr.clone()))?;
            if vpc_net.contains(&dest) {
                return Err(Error::InvalidParameterValue(format!(
                    "The destination CIDR block {destination} is equal to or more specific than one of this VPC's CIDR blocks. This route can target only an interface or an instance."
                )));
            }
            match &target {
                RouteTarget::Local => {
                    return Err(Error::InvalidParameterValue(
                        "A route to local can only be the VPC's own CIDR, which every route table has".into(),
                    ))
                }
                RouteTarget::Gateway(g) => {
                    let gateway = routing::gateways(tx, scope)?
                        .into_iter()
                        .find(|x| &x.id == g)
                        .ok_or_else(|| Error::GatewayNotFound(format!("The gateway ID '{g}' does not exist")))?;
                    if gateway.vpc_id.as_deref() != Some(table.vpc_id.as_str()) {
                        return Err(Error::InvalidParameterValue(format!(
                            "route table {table_id} and network gateway {g} belong to different networks"
                        )));
                    }
                }
                RouteTarget::Instance(id) | RouteTarget::NetworkInterface(id) => {
                    let owner = instances::list(tx, scope)?.into_iter().find(|i| {
                        i.state != InstanceState::Terminated
                            && (&i.id == id || kiln_types::ids::primary_interface(&i.id) == *id)
                    });
                    let Some(owner) = owner else {
                        let kind = if matches!(target, RouteTarget::Instance(_)) {
                            ResourceKind::Instance
                        } else {
                            ResourceKind::NetworkInterface
                        };
                        return Err(Error::not_found(kind, id.clone()));
                    };
                    if owner.vpc_id != table.vpc_id {
                        return Err(Error::InvalidParameterValue(format!(
                            "route table {table_id} and {id} belong to different networks"
                        )));
                    }
                }
            }
            let exists = routing::routes(tx, scope)?
                .iter()
                .any(|r| r.route_table_id == table_id && r.destination == dest.to_string());
            match (replace, exists) {
                (false, true) => {
                    return Err(Error::RouteAlreadyExists(format!(
                        "The route identified by {dest} already exists."
                    )))
                }
                (true, false) => {
                    return Err(Error::InvalidParameterValue(format!(
                        "There is no route defined for '{dest}' in the route table. Use CreateRoute instead."
                    )))
                }
                _ => {}
            }
            routing::put_route(
                tx,
                &Route { route_table_id: table_id.to_owned(), destination: dest.to_string(), target: target.id().into() },
            )?;
            Ok(())
        })
    }

    pub fn delete_route(&self, scope: &Scope, table_id: &str, destination: &str) -> Result<()> {
        let dest = cidr(destination, "destinationCidrBlock")?;
        self.store.write(|tx| {
            let table = find_table(tx, scope, table_id)?;
            if vpcs::list_vpcs(tx, scope)?.iter().any(|v| v.id == table.vpc_id && v.cidr == dest.to_string()) {
                return Err(Error::InvalidParameterValue(format!(
                    "cannot remove local route {dest} in route table {table_id}"
                )));
            }
            if !routing::delete_route(tx, table_id, &dest.to_string())? {
                return Err(Error::RouteNotFound(format!(
                    "no route with destination-cidr-block {dest} in route table {table_id}"
                )));
            }
            Ok(())
        })
    }
}
