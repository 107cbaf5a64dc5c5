//! Network ACLs as EC2 has them: each VPC's default ACL (allow everything, both ways),
//! ACLs made by CreateNetworkAcl (deny everything until entries say otherwise),
//! numbered stateless entries for ingress and egress, and one association per subnet.
//! The host enforces them (`network.rs` hands each VPC's ACLs to the agent).

use ipnet::Ipv4Net;
use kiln_agent_api::{Acl, AclRule};
use kiln_store::routing::{self, AclAssociation, AclEntry, NetworkAcl};
use kiln_store::{vpcs, Connection, Scope, Transaction};
use kiln_types::ResourceKind;

use crate::network::protocol;
use crate::{narrow, tags, Cloud, Error, Result};

/// The highest rule number a caller may use (32767 is the final deny).
const MAX_RULE: i64 = 32766;

/// An ACL with its entries and subnet associations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclView {
    pub acl: NetworkAcl,
    pub entries: Vec<AclEntry>,
    pub associations: Vec<AclAssociation>,
}

/// One entry as CreateNetworkAclEntry and ReplaceNetworkAclEntry give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryRequest {
    pub egress: bool,
    pub rule_number: i64,
    /// `-1`, `tcp`, `udp`, `icmp` or a protocol number.
    pub protocol: String,
    pub allow: bool,
    pub cidr: String,
    /// Port range (tcp, udp) or icmp type and code.
    pub from: Option<i64>,
    pub to: Option<i64>,
}

/// Makes a VPC's default ACL with its allow-all entries.
pub(crate) fn create_default(tx: &Transaction<'_>, scope: &Scope, vpc_id: &str) -> Result<NetworkAcl> {
    let acl = NetworkAcl {
        id: ResourceKind::NetworkAcl.generate(),
        vpc_id: vpc_id.to_owned(),
        is_default: true,
        created_at: kiln_store::now(),
    };
    routing::insert_acl(tx, scope, &acl)?;
    for egress in [false, true] {
        let entry = AclEntry {
            acl_id: acl.id.clone(),
            egress,
            rule_number: 100,
            protocol: "-1".into(),
            allow: true,
            cidr: "0.0.0.0/0".into(),
            from_port: None,
            to_port: None,
        };
        routing::put_acl_entry(tx, &entry, false)?;
    }
    Ok(acl)
}

/// Puts a new subnet under its VPC's default ACL.
pub(crate) fn adopt_subnet(tx: &Transaction<'_>, scope: &Scope, vpc_id: &str, subnet_id: &str) -> Result<()> {
    let default = routing::acls(tx, scope)?
        .into_iter()
        .find(|a| a.vpc_id == vpc_id && a.is_default)
        .ok_or_else(|| kiln_store::StoreError::Corrupt(format!("{vpc_id} has no default network ACL")))?;
    routing::associate_acl(tx, &ResourceKind::NetworkAclAssociation.generate(), &default.id, subnet_id)?;
    Ok(())
}

/// What blocks deleting a VPC, from ACLs: one of its own. Its default ACL goes with it.
pub(crate) fn release_vpc(tx: &Transaction<'_>, scope: &Scope, vpc_id: &str) -> Result<()> {
    let mine: Vec<NetworkAcl> = routing::acls(tx, scope)?.into_iter().filter(|a| a.vpc_id == vpc_id).collect();
    if let Some(own) = mine.iter().find(|a| !a.is_default) {
        return Err(Error::DependencyViolation(format!(
            "The vpc '{vpc_id}' has dependencies and cannot be deleted: delete network ACL {} first.",
            own.id
        )));
    }
    for a in mine {
        routing::delete_acl(tx, &a.id)?;
    }
    Ok(())
}

fn find(conn: &Connection, scope: &Scope, id: &str) -> Result<NetworkAcl> {
    routing::acls(conn, scope)?
        .into_iter()
        .find(|a| a.id == id)
        .ok_or_else(|| Error::not_found(ResourceKind::NetworkAcl, id))
}

/// The host's form of an ACL's entries: in number order, final deny implied.
pub(crate) fn for_host(id: &str, entries: &[AclEntry]) -> Acl {
    let rule = |e: &AclEntry| -> Option<AclRule> {
        let net: Ipv4Net = e.cidr.parse().ok()?;
        let port = |p: Option<i64>| p.and_then(|v| u16::try_from(v).ok());
        Some(AclRule {
            number: u16::try_from(e.rule_number).ok()?,
            allow: e.allow,
            protocol: protocol(&e.protocol)?,
            from: port(e.from_port),
            to: port(e.to_port),
            cidr: (net.network(), net.prefix_len()),
        })
    };
    let mine = |egress: bool| -> Vec<AclRule> {
        let mut v: Vec<AclRule> =
            entries.iter().filter(|e| e.acl_id == id && e.egress == egress).filter_map(rule).collect();
        v.sort_by_key(|r| r.number);
        v
    };
    Acl { id: id.to_owned(), ingress: mine(false), egress: mine(true) }
}

/// EC2's protocol names as numbers, which is how EC2 shows them back.
fn protocol_number(p: &str) -> Result<String> {
    let n = match p.to_ascii_lowercase().as_str() {
        "-1" | "all" => "-1".to_owned(),
        "tcp" | "6" => "6".to_owned(),
        "udp" | "17" => "17".to_owned(),
        "icmp" | "1" => "1".to_owned(),
        other => match other.parse::<u8>() {
            Ok(n) => n.to_string(),
            Err(_) => {
                return Err(Error::InvalidParameterValue(format!(
                    "Value ({p}) for parameter protocol is invalid. Use -1, tcp, udp, icmp or a protocol number."
                )))
            }
        },
    };
    Ok(n)
}

impl Cloud {
    pub fn create_network_acl(&self, scope: &Scope, vpc_id: &str, tags: &[(String, String)]) -> Result<AclView> {
        let acl = NetworkAcl {
            id: ResourceKind::NetworkAcl.generate(),
            vpc_id: vpc_id.to_owned(),
            is_default: false,
            created_at: kiln_store::now(),
        };
        self.store.write(|tx| {
            crate::vpcs::find_vpc(tx, scope, vpc_id)?;
            routing::insert_acl(tx, scope, &acl)?;
            tags::put_all(tx, scope, ResourceKind::NetworkAcl, &acl.id, tags)?;
            Ok::<_, Error>(())
        })?;
        Ok(AclView { acl, entries: Vec::new(), associations: Vec::new() })
    }

    pub fn network_acls(&self, scope: &Scope, ids: &[impl AsRef<str>]) -> Result<Vec<AclView>> {
        self.store.read(|c| {
            let acls = narrow(routing::acls(c, scope)?, ids, ResourceKind::NetworkAcl, |a| &a.id)?;
            let entries = routing::acl_entries(c, scope)?;
            let assocs = routing::acl_associations(c, scope)?;
            Ok(acls
                .into_iter()
                .map(|acl| AclView {
                    entries: entries.iter().filter(|e| e.acl_id == acl.id).cloned().collect(),
                    associations: assocs.iter().filter(|a| a.acl_id == acl.id).cloned().collect(),
                    acl,
                })
                .collect())
        })
    }

    pub fn delete_network_acl(&self, scope: &Scope, id: &str) -> Result<()> {
        self.store.write(|tx| {
            let acl = find(tx, scope, id)?;
            if acl.is_default {
                return Err(Error::InvalidParameterValue(format!("cannot delete default network ACL {id}")));
            }
            if routing::acl_associations(tx, scope)?.iter().any(|a| a.acl_id == id) {
                return Err(Error::DependencyViolation(format!(
                    "The networkAcl '{id}' has dependencies and cannot be deleted: it is associated with subnets."
                )));
            }
            routing::delete_acl(tx, id)?;
            Ok(())
        })
    }

    /// CreateNetworkAclEntry (`replace` false) or ReplaceNetworkAclEntry.
    pub fn put_network_acl_entry(&self, scope: &Scope, acl_id: &str, e: &EntryRequest, replace: bool) -> Result<()> {
        if !(1..=MAX_RULE).contains(&e.rule_number) {
            return Err(Error::InvalidParameterValue(format!(
                "Value ({}) for parameter ruleNumber is invalid. It must be between 1 and {MAX_RULE}.",
                e.rule_number
            )));
        }
        let proto = protocol_number(&e.protocol)?;
        let net: Ipv4Net = e.cidr.parse().map_err(|_| {
            Error::InvalidParameterValue(format!(
                "Value ({}) for parameter cidrBlock is invalid. This is not a valid CIDR block.",
                e.cidr
            ))
        })?;
        let ported = proto == "6" || proto == "17";
        if ported && (e.from.is_none() || e.to.is_none()) {
            return Err(Error::InvalidParameterValue("TCP and UDP entries need a PortRange (From and To)".into()));
        }
        if let (Some(f), Some(t)) = (e.from, e.to) {
            if ported && (!(0..=65535).contains(&f) || !(0..=65535).contains(&t) || f > t) {
                return Err(Error::InvalidParameterValue(format!("Invalid port range {f}-{t}")));
            }
        }
        let (from, to) = if ported || proto == "1" { (e.from, e.to) } else { (None, None) };
        let entry = AclEntry {
            acl_id: acl_id.to_owned(),
            egress: e.egress,
            rule_number: e.rule_number,
            protocol: proto,
            allow: e.allow,
            cidr: net.trunc().to_string(),
            from_port: from,
            to_port: to,
        };
        self.store.write(|tx| {
            find(tx, scope, acl_id)?;
            if !routing::put_acl_entry(tx, &entry, replace)? {
                let way = if e.egress { "egress" } else { "ingress" };
                return Err(if replace {
                    Error::AclEntryNotFound(format!(
                        "The network acl entry identified by {} ({way}) does not exist in {acl_id}",
                        e.rule_number
                    ))
                } else {
                    Error::AclEntryExists(format!(
                        "The network acl entry identified by {} ({way}) already exists in {acl_id}",
                        e.rule_number
                    ))
                });
            }
            Ok(())
        })
    }

    pub fn delete_network_acl_entry(&self, scope: &Scope, acl_id: &str, egress: bool, rule_number: i64) -> Result<()> {
        self.store.write(|tx| {
            find(tx, scope, acl_id)?;
            if !routing::delete_acl_entry(tx, acl_id, egress, rule_number)? {
                return Err(Error::AclEntryNotFound(format!(
                    "The network acl entry identified by {rule_number} does not exist in {acl_id}"
                )));
            }
            Ok(())
        })
    }

    /// Moves a subnet (named by its current association) to another ACL of its VPC;
    /// returns the new association id.
    pub fn replace_network_acl_association(&self, scope: &Scope, association_id: &str, acl_id: &str) -> Result<String> {
        self.store.write(|tx| {
            let acl = find(tx, scope, acl_id)?;
            let old = routing::acl_associations(tx, scope)?
                .into_iter()
                .find(|a| a.id == association_id)
                .ok_or_else(|| Error::not_found(ResourceKind::NetworkAclAssociation, association_id))?;
            let subnet_vpc =
                vpcs::list_subnets(tx, scope)?.into_iter().find(|s| s.id == old.subnet_id).map(|s| s.vpc_id);
            if subnet_vpc.as_deref() != Some(acl.vpc_id.as_str()) {
                return Err(Error::InvalidParameterValue(format!(
                    "Network ACL {acl_id} and subnet {} belong to different networks",
                    old.subnet_id
                )));
            }
            let id = ResourceKind::NetworkAclAssociation.generate();
            routing::associate_acl(tx, &id, acl_id, &old.subnet_id)?;
            Ok(id)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_reach_the_host_in_number_order() {
        let e = |n: i64, allow: bool, egress: bool| AclEntry {
            acl_id: "acl-1".into(),
            egress,
            rule_number: n,
            protocol: "6".into(),
            allow,
            cidr: "0.0.0.0/0".into(),
            from_port: Some(22),
            to_port: Some(22),
        };
        let acl = for_host("acl-1", &[e(200, true, false), e(50, false, false), e(100, true, true)]);
        assert_eq!(acl.ingress.iter().map(|r| (r.number, r.allow)).collect::<Vec<_>>(), [(50, false), (200, true)]);
        assert_eq!(acl.egress.len(), 1);
        assert_eq!(acl.ingress[0].from, Some(22));
        assert!(protocol_number("banana").is_err());
        assert_eq!(protocol_number("TCP").ok().as_deref(), Some("6"));
    }
}
