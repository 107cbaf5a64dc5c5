//! Security groups as state: EC2's defaults (a new group allows all egress; a VPC's
//! `default` group admits its own members), rule identity and duplicates, references
//! between groups, and what blocks a deletion.

use ipnet::{Ipv4Net, Ipv6Net};
use kiln_store::security_groups::{self, Rule, SecurityGroup};
use kiln_store::{vpcs, Connection, Scope, Transaction};
use kiln_types::ResourceKind;

use crate::{tags, Cloud, Error, Result};

/// A group named in a request: by id, or by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupRef {
    Id(String),
    Name(String),
}

/// A peer group in a permission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerGroup {
    pub group_id: Option<kiln_types::SecurityGroupId>,
    pub group_name: Option<String>,
    pub user_id: Option<String>,
    pub description: Option<String>,
}

/// One IpPermissions item, already decoded and port-checked at the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission {
    /// The protocol as EC2 echoes it: `-1`, `tcp`, `udp`, `icmp`, `icmpv6` or a number.
    pub protocol: String,
    pub from_port: Option<i32>,
    pub to_port: Option<i32>,
    pub ipv4_ranges: Vec<(String, Option<String>)>,
    pub ipv6_ranges: Vec<(String, Option<String>)>,
    pub groups: Vec<PeerGroup>,
}

/// A group with its rules.
#[derive(Debug, Clone)]
pub struct GroupWithRules {
    pub group: SecurityGroup,
    pub rules: Vec<Rule>,
}

/// The outcome of a revoke: the rules removed and the permissions that matched nothing.
pub struct Revoked {
    pub rules: Vec<Rule>,
    pub unknown: Vec<Permission>,
}

fn new_rule(group_id: &str, is_egress: bool, protocol: &str, peer: Peer) -> Rule {
    Rule {
        id: ResourceKind::SecurityGroupRule.generate(),
        group_id: group_id.to_owned(),
        is_egress,
        protocol: protocol.to_owned(),
        from_port: None,
        to_port: None,
        cidr_ipv4: peer.ipv4,
        cidr_ipv6: peer.ipv6,
        ref_group_id: peer.group,
        ref_user_id: peer.user,
        description: peer.description,
    }
}

#[derive(Default)]
struct Peer {
    ipv4: Option<String>,
    ipv6: Option<String>,
    group: Option<String>,
    user: Option<String>,
    description: Option<String>,
}

/// Inserts a VPC's `default` group: all egress, and ingress from its own members.
pub(crate) fn insert_default_group(tx: &Transaction<'_>, scope: &Scope, vpc_id: &str) -> Result<SecurityGroup> {
    let group = SecurityGroup {
        id: ResourceKind::SecurityGroup.generate(),
        vpc_id: vpc_id.to_owned(),
        name: "default".to_owned(),
        description: "default VPC security group".to_owned(),
        created_at: kiln_store::now(),
    };
    security_groups::insert(tx, scope, &group)?;
    let self_ref = Peer { group: Some(group.id.clone()), user: Some(scope.account.clone()), ..Peer::default() };
    security_groups::insert_rule(tx, &new_rule(&group.id, false, "-1", self_ref))?;
    let anywhere = Peer { ipv4: Some("0.0.0.0/0".into()), ..Peer::default() };
    security_groups::insert_rule(tx, &new_rule(&group.id, true, "-1", anywhere))?;
    Ok(group)
}

fn find_group(conn: &Connection, scope: &Scope, group: &GroupRef) -> Result<SecurityGroup> {
    let found = match group {
        GroupRef::Id(id) => security_groups::by_ids(conn, scope, std::slice::from_ref(id))?.pop(),
        GroupRef::Name(name) => {
            // Names are looked up in the default VPC, as EC2 does.
            match vpcs::list_vpcs(conn, scope)?.into_iter().find(|v| v.is_default) {
                Some(vpc) => security_groups::by_name(conn, scope, &vpc.id, name)?,
                None => None,
            }
        }
    };
    found.ok_or_else(|| {
        Error::not_found(
            ResourceKind::SecurityGroup,
            match group {
                GroupRef::Id(s) | GroupRef::Name(s) => s.clone(),
            },
        )
    })
}

fn check_cidr4(cidr: &str) -> Result<String> {
    let net: Ipv4Net =
        cidr.parse().map_err(|_| Error::InvalidParameterValue(format!("CIDR block {cidr} is malformed")))?;
    if net.trunc() != net {
        return Err(Error::InvalidParameterValue(format!(
            "CIDR block {cidr} is malformed: host bits are set (did you mean {}?)",
            net.trunc()
        )));
    }
    Ok(net.to_string())
}

fn check_cidr6(cidr: &str) -> Result<String> {
    let net: Ipv6Net =
        cidr.parse().map_err(|_| Error::InvalidParameterValue(format!("CIDR block {cidr} is malformed")))?;
    if net.trunc() != net {
        return Err(Error::InvalidParameterValue(format!("CIDR block {cidr} is malformed: host bits are set")));
    }
    Ok(net.to_string())
}

/// Turns permissions into one rule per peer, resolving group references.
fn expand(
    conn: &Connection,
    scope: &Scope,
    group: &SecurityGroup,
    is_egress: bool,
    perms: &[Permission],
) -> Result<Vec<Rule>> {
    let mut out = Vec::new();
    for p in perms {
        let mut peers = Vec::new();
        for (cidr, d) in &p.ipv4_ranges {
            peers.push(Peer { ipv4: Some(check_cidr4(cidr)?), description: d.clone(), ..Peer::default() });
        }
        for (cidr, d) in &p.ipv6_ranges {
            peers.push(Peer { ipv6: Some(check_cidr6(cidr)?), description: d.clone(), ..Peer::default() });
        }
        for g in &p.groups {
            if let Some(user) = &g.user_id {
                if user != &scope.account {
                    return Err(Error::InvalidParameterValue(format!(
                        "Referencing security groups of other accounts ({user}) is not supported by Kiln yet"
                    )));
                }
            }
            let peer_ref = match (&g.group_id, &g.group_name) {
                (Some(id), _) => GroupRef::Id(id.to_string()),
                (None, Some(name)) => GroupRef::Name(name.clone()),
                (None, None) => {
                    return Err(Error::InvalidParameterValue("A referenced group needs GroupId or GroupName".into()))
                }
            };
            let peer = find_group(conn, scope, &peer_ref)?;
            if peer.vpc_id != group.vpc_id {
                return Err(Error::InvalidParameterValue(format!(
                    "Security group {} and {} do not belong to the same VPC.",
                    peer.id, group.id
                )));
            }
            peers.push(Peer {
                group: Some(peer.id),
                user: Some(scope.account.clone()),
                description: g.description.clone(),
                ..Peer::default()
            });
        }
        for peer in peers {
            let mut rule = new_rule(&group.id, is_egress, &p.protocol, peer);
            rule.from_port = p.from_port;
            rule.to_port = p.to_port;
            out.push(rule);
        }
    }
    Ok(out)
}

/// Two rules are the same rule when all but id and description agree.
fn same_rule(a: &Rule, b: &Rule) -> bool {
    a.group_id == b.group_id
        && a.is_egress == b.is_egress
        && a.protocol == b.protocol
        && a.from_port == b.from_port
        && a.to_port == b.to_port
        && a.cidr_ipv4 == b.cidr_ipv4
        && a.cidr_ipv6 == b.cidr_ipv6
        && a.ref_group_id == b.ref_group_id
}

fn describe_rule(r: &Rule) -> String {
    let peer = r.cidr_ipv4.as_ref().or(r.cidr_ipv6.as_ref()).or(r.ref_group_id.as_ref()).cloned().unwrap_or_default();
    let proto = if r.protocol == "-1" { "ALL".to_owned() } else { r.protocol.to_uppercase() };
    match (r.from_port, r.to_port) {
        (Some(f), Some(t)) => format!("peer: {peer}, {proto}, from port: {f}, to port: {t}, ALLOW"),
        _ => format!("peer: {peer}, {proto}, ALLOW"),
    }
}

/// The security groups of an interface of `owner` (an instance or an `eni-`) in
/// `vpc_id`: 1 to 5, each the caller's and of that VPC; repeats fold.
pub(crate) fn for_interface(
    conn: &Connection,
    scope: &Scope,
    groups: &[kiln_types::SecurityGroupId],
    vpc_id: &str,
    owner: &str,
) -> Result<Vec<String>> {
    if groups.is_empty() || groups.len() > 5 {
        return Err(Error::InvalidParameterValue("A network interface takes 1 to 5 security groups".into()));
    }
    let all = security_groups::list(conn, scope)?;
    let mut ids = Vec::new();
    for g in groups {
        let found = all
            .iter()
            .find(|x| x.id == g.as_str())
            .ok_or_else(|| Error::not_found(ResourceKind::SecurityGroup, g.to_string()))?;
        if found.vpc_id != vpc_id {
            return Err(Error::InvalidParameterValue(format!(
                "Security group {g} and {owner} belong to different networks."
            )));
        }
        if !ids.contains(&found.id) {
            ids.push(found.id.clone());
        }
    }
    Ok(ids)
}

impl Cloud {
    pub fn create_security_group(
        &self,
        scope: &Scope,
        name: &str,
        description: &str,
        vpc_id: Option<&str>,
        tags: &[(String, String)],
    ) -> Result<SecurityGroup> {
        self.store.write(|tx| {
            let vpcs = vpcs::list_vpcs(tx, scope)?;
            let vpc = match vpc_id {
                Some(id) => vpcs.iter().find(|v| v.id == id).ok_or_else(|| Error::not_found(ResourceKind::Vpc, id))?,
                None => vpcs.iter().find(|v| v.is_default).ok_or_else(|| {
                    Error::InvalidParameterValue("No default VPC for this account in this region; give VpcId".into())
                })?,
            };
            let group = SecurityGroup {
                id: ResourceKind::SecurityGroup.generate(),
                vpc_id: vpc.id.clone(),
                name: name.to_owned(),
                description: description.to_owned(),
                created_at: kiln_store::now(),
            };
            if !security_groups::insert(tx, scope, &group)? {
                return Err(Error::Duplicate {
                    kind: ResourceKind::SecurityGroup,
                    name: format!("The security group '{name}' already exists for VPC '{}'", vpc.id),
                });
            }
            let anywhere = Peer { ipv4: Some("0.0.0.0/0".into()), ..Peer::default() };
            security_groups::insert_rule(tx, &new_rule(&group.id, true, "-1", anywhere))?;
            tags::put_all(tx, scope, ResourceKind::SecurityGroup, &group.id, tags)?;
            Ok(group)
        })
    }

    /// Groups with their rules, narrowed to ids and names (all must exist; names are
    /// looked up in the default VPC).
    /// Groups by id or name (all must exist), or all of the scope's. Ids and names are
    /// looked up by index, with only their own rules.
    pub fn security_groups(
        &self,
        scope: &Scope,
        ids: &[kiln_types::SecurityGroupId],
        names: &[String],
    ) -> Result<Vec<GroupWithRules>> {
        self.store.read(|c| {
            if ids.is_empty() && names.is_empty() {
                let groups = security_groups::list(c, scope)?;
                let mut by_group: std::collections::HashMap<String, Vec<Rule>> = std::collections::HashMap::new();
                for r in security_groups::rules(c, scope)? {
                    by_group.entry(r.group_id.clone()).or_default().push(r);
                }
                return Ok(groups
                    .into_iter()
                    .map(|group| {
                        let rules = by_group.remove(&group.id).unwrap_or_default();
                        GroupWithRules { group, rules }
                    })
                    .collect());
            }
            let mut groups = security_groups::by_ids(c, scope, ids)?;
            crate::missing(ids, ResourceKind::SecurityGroup, |i| groups.iter().any(|g| g.id == i))?;
            for n in names {
                let g = find_group(c, scope, &GroupRef::Name(n.clone()))?;
                if !groups.iter().any(|x| x.id == g.id) {
                    groups.push(g);
                }
            }
            groups.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
            groups
                .into_iter()
                .map(|group| Ok(GroupWithRules { rules: security_groups::rules_of(c, &group.id)?, group }))
                .collect()
        })
    }

    pub fn security_group_names(&self, scope: &Scope) -> Result<std::collections::HashMap<String, String>> {
        self.store.read(|c| Ok(security_groups::list(c, scope)?.into_iter().map(|g| (g.id, g.name)).collect()))
    }

    /// The names of the groups `groups` are or refer to in their rules.
    pub fn names_around(
        &self,
        scope: &Scope,
        groups: &[GroupWithRules],
    ) -> Result<std::collections::HashMap<String, String>> {
        let mut ids: Vec<String> = groups.iter().map(|g| g.group.id.clone()).collect();
        ids.extend(groups.iter().flat_map(|g| g.rules.iter().filter_map(|r| r.ref_group_id.clone())));
        self.security_group_names_of(scope, ids)
    }

    /// The names of some of the scope's groups, by id.
    pub fn security_group_names_of(
        &self,
        scope: &Scope,
        mut ids: Vec<String>,
    ) -> Result<std::collections::HashMap<String, String>> {
        ids.sort();
        ids.dedup();
        self.store.read(|c| Ok(security_groups::by_ids(c, scope, &ids)?.into_iter().map(|g| (g.id, g.name)).collect()))
    }

    pub fn delete_security_group(&self, scope: &Scope, group: &GroupRef) -> Result<String> {
        self.store.write(|tx| {
            let g = find_group(tx, scope, group)?;
            if g.name == "default" {
                return Err(Error::CannotDelete(format!(
                    "the specified group: \"{}\" name: \"default\" cannot be deleted by a user",
                    g.id
                )));
            }
            if kiln_store::instances::uses_group(tx, &g.id)? {
                return Err(Error::DependencyViolation(format!(
                    "resource {} has a dependent object: instances use it",
                    g.id
                )));
            }
            if let Some(other) = security_groups::referencing_groups(tx, &g.id)?.first() {
                return Err(Error::DependencyViolation(format!(
                    "resource {} has a dependent object: it is referenced by a rule of {other}",
                    g.id
                )));
            }
            security_groups::delete(tx, scope, &g.id)?;
            Ok(g.id)
        })
    }

    /// Adds rules; all or none. Returns the rules added.
    pub fn authorize(
        &self,
        scope: &Scope,
        group: &GroupRef,
        is_egress: bool,
        perms: &[Permission],
        tags: &[(String, String)],
    ) -> Result<(String, Vec<Rule>)> {
        self.store.write(|tx| {
            let g = find_group(tx, scope, group)?;
            let new = expand(tx, scope, &g, is_egress, perms)?;
            let existing = security_groups::rules(tx, scope)?;
            for (i, r) in new.iter().enumerate() {
                if existing.iter().chain(&new[..i]).any(|e| same_rule(e, r)) {
                    return Err(Error::PermissionDuplicate(format!(
                        "the specified rule \"{}\" already exists",
                        describe_rule(r)
                    )));
                }
            }
            for r in &new {
                security_groups::insert_rule(tx, r)?;
                tags::put_all(tx, scope, ResourceKind::SecurityGroupRule, &r.id, tags)?;
            }
            Ok((g.id, new))
        })
    }

    /// Removes the rules that match `perms` (ignoring descriptions) or have the ids
    /// given. In the default VPC, permissions that match nothing are reported back; in
    /// other VPCs they are an error and nothing is removed.
    pub fn revoke(
        &self,
        scope: &Scope,
        group: &GroupRef,
        is_egress: bool,
        perms: &[Permission],
        rule_ids: &[kiln_types::SecurityGroupRuleId],
    ) -> Result<Revoked> {
        self.store.write(|tx| {
            let g = find_group(tx, scope, group)?;
            let existing: Vec<Rule> = security_groups::rules(tx, scope)?
                .into_iter()
                .filter(|r| r.group_id == g.id && r.is_egress == is_egress)
                .collect();
            let mut doomed: Vec<Rule> = Vec::new();
            for id in rule_ids {
                let r = existing
                    .iter()
                    .find(|r| &r.id == id)
                    .ok_or_else(|| Error::not_found(ResourceKind::SecurityGroupRule, id.clone()))?;
                doomed.push(r.clone());
            }
            let mut unknown = Vec::new();
            for p in perms {
                let wanted = expand(tx, scope, &g, is_egress, std::slice::from_ref(p))?;
                let mut matched_all = true;
                for w in &wanted {
                    match existing.iter().find(|e| same_rule(e, w)) {
                        Some(e) => {
                            if !doomed.iter().any(|d| d.id == e.id) {
                                doomed.push(e.clone());
                            }
                        }
                        None => matched_all = false,
                    }
                }
                if !matched_all {
                    unknown.push(p.clone());
                }
            }
            if !unknown.is_empty() {
                let is_default_vpc = vpcs::list_vpcs(tx, scope)?.iter().any(|v| v.id == g.vpc_id && v.is_default);
                if !is_default_vpc {
                    return Err(Error::PermissionNotFound(
                        "The specified rule does not exist in this security group.".into(),
                    ));
                }
            }
            for r in &doomed {
                security_groups::delete_rule(tx, &r.id)?;
            }
            Ok(Revoked { rules: doomed, unknown })
        })
    }

    /// Every rule in the scope, narrowed to `ids` (all must exist).
    pub fn security_group_rules(&self, scope: &Scope, ids: &[kiln_types::SecurityGroupRuleId]) -> Result<Vec<Rule>> {
        let all = self.store.read(|c| Ok::<_, Error>(security_groups::rules(c, scope)?))?;
        crate::narrow(all, ids, ResourceKind::SecurityGroupRule, |r| &r.id)
    }
}
