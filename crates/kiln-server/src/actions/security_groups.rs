//! Security group actions. Rules are stored one per peer; DescribeSecurityGroups
//! aggregates them into EC2's `ipPermissions` items (one per protocol and port range).

use std::collections::HashMap;

use kiln_control::security_groups::{GroupRef, GroupWithRules, PeerGroup, Permission};
use kiln_ec2::filter::{self, Field};
use kiln_ec2::requests::security_groups::{
    self as req, ChangeRules, CreateSecurityGroup, DeleteSecurityGroup, DescribeSecurityGroupRules,
    DescribeSecurityGroups,
};
use kiln_ec2::XmlWriter;
use kiln_store::security_groups::Rule;

use super::{next_token, tag_pairs, ActionResult, Ctx, OrEc2};

fn group_ref(g: req::GroupRef) -> GroupRef {
    match g {
        req::GroupRef::Id(id) => GroupRef::Id(id.into()),
        req::GroupRef::Name(n) => GroupRef::Name(n),
    }
}

fn permission(p: req::IpPermission) -> Permission {
    Permission {
        protocol: p.protocol.as_wire(),
        from_port: p.from_port,
        to_port: p.to_port,
        ipv4_ranges: p.ipv4_ranges,
        ipv6_ranges: p.ipv6_ranges,
        groups: p
            .groups
            .into_iter()
            .map(|g| PeerGroup {
                group_id: g.group_id,
                group_name: g.group_name,
                user_id: g.user_id,
                description: g.description,
            })
            .collect(),
    }
}

pub(crate) fn create(ctx: &Ctx<'_>, r: CreateSecurityGroup) -> ActionResult {
    let tags = tag_pairs(&r.tags);
    let g =
        ctx.cloud.create_security_group(&ctx.scope, &r.group_name, &r.description, r.vpc_id.as_deref(), &tags).ec2()?;
    let mut w = ctx.xml("CreateSecurityGroup");
    w.elem("return", "true")
        .elem("groupId", &g.id)
        .elem("securityGroupArn", ctx.arn("security-group", &g.id))
        .tags(tags.iter().map(|(a, b)| (a.as_str(), b.as_str())));
    Ok(w.finish("CreateSecurityGroup"))
}

/// Writes rules as EC2's aggregated `ipPermissions` items.
fn write_permissions(w: &mut XmlWriter, name: &'static str, rules: &[&Rule], names: &HashMap<String, String>) {
    let mut keys: Vec<(&str, Option<i32>, Option<i32>)> = Vec::new();
    for r in rules {
        let k = (r.protocol.as_str(), r.from_port, r.to_port);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    w.set(name, keys, |w, (proto, from, to)| {
        let mine: Vec<&&Rule> =
            rules.iter().filter(|r| r.protocol == proto && r.from_port == from && r.to_port == to).collect();
        w.elem("ipProtocol", proto).opt("fromPort", from).opt("toPort", to);
        w.set("groups", mine.iter().filter(|r| r.ref_group_id.is_some()), |w, r| {
            w.opt("description", r.description.as_deref())
                .opt("groupId", r.ref_group_id.as_deref())
                .opt("groupName", r.ref_group_id.as_ref().and_then(|g| names.get(g)))
                .opt("userId", r.ref_user_id.as_deref());
        });
        w.set("ipRanges", mine.iter().filter(|r| r.cidr_ipv4.is_some()), |w, r| {
            w.opt("cidrIp", r.cidr_ipv4.as_deref()).opt("description", r.description.as_deref());
        });
        w.set("ipv6Ranges", mine.iter().filter(|r| r.cidr_ipv6.is_some()), |w, r| {
            w.opt("cidrIpv6", r.cidr_ipv6.as_deref()).opt("description", r.description.as_deref());
        });
        w.start("prefixListIds").end();
    });
}

const GROUP_FILTERS: &[&str] = &[
    "group-id",
    "group-name",
    "vpc-id",
    "owner-id",
    "description",
    "ip-permission.cidr",
    "ip-permission.ipv6-cidr",
    "ip-permission.protocol",
    "ip-permission.from-port",
    "ip-permission.to-port",
    "ip-permission.group-id",
    "ip-permission.group-name",
    "egress.ip-permission.cidr",
    "egress.ip-permission.ipv6-cidr",
    "egress.ip-permission.protocol",
    "egress.ip-permission.from-port",
    "egress.ip-permission.to-port",
    "egress.ip-permission.group-id",
    "egress.ip-permission.group-name",
];

fn group_field(g: &GroupWithRules, name: &str, account: &str, names: &HashMap<String, String>) -> Field {
    let (egress, rule_field) = match name.strip_prefix("egress.ip-permission.") {
        Some(f) => (true, Some(f)),
        None => (false, name.strip_prefix("ip-permission.")),
    };
    if let Some(f) = rule_field {
        let rules = g.rules.iter().filter(|r| r.is_egress == egress);
        let port = |p: Option<i32>| p.map(|p| p.to_string());
        return Field::many(rules.filter_map(|r| match f {
            "cidr" => r.cidr_ipv4.clone(),
            "ipv6-cidr" => r.cidr_ipv6.clone(),
            "protocol" => Some(r.protocol.clone()),
            "from-port" => port(r.from_port),
            "to-port" => port(r.to_port),
            "group-id" => r.ref_group_id.clone(),
            "group-name" => r.ref_group_id.as_ref().and_then(|id| names.get(id).cloned()),
            _ => None,
        }));
    }
    match name {
        "group-id" => Field::one(g.group.id.clone()),
        "group-name" => Field::one(g.group.name.clone()),
        "vpc-id" => Field::one(g.group.vpc_id.clone()),
        "owner-id" => Field::one(account),
        "description" => Field::one(g.group.description.clone()),
        _ => Field::Unknown,
    }
}

pub(crate) fn describe(ctx: &Ctx<'_>, r: DescribeSecurityGroups) -> ActionResult {
    let groups = ctx.cloud.security_groups(&ctx.scope, &r.group_ids, &r.group_names).ec2()?;
    // A lookup by id or name reads only what it shows; a listing reads the scope once.
    let (tags, names) = if r.group_ids.is_empty() && r.group_names.is_empty() {
        (ctx.cloud.tags_by_resource(&ctx.scope).ec2()?, ctx.cloud.security_group_names(&ctx.scope).ec2()?)
    } else {
        let ids: Vec<&str> = groups.iter().map(|g| g.group.id.as_str()).collect();
        (ctx.cloud.tags_of(&ctx.scope, &ids).ec2()?, ctx.cloud.names_around(&ctx.scope, &groups).ec2()?)
    };
    let tags_of = |id: &str| tags.get(id).cloned().unwrap_or_default();
    let groups = filter::apply(
        groups,
        &r.filters,
        GROUP_FILTERS,
        |g, name| group_field(g, name, &ctx.scope.account, &names),
        |g| tags_of(&g.group.id),
    )?;
    let (page, next) = ctx.page(groups, &r.paging, (5, 1000), None)?;
    let mut w = ctx.xml("DescribeSecurityGroups");
    w.set("securityGroupInfo", page, |w, g| {
        w.elem("ownerId", &ctx.scope.account)
            .elem("groupId", &g.group.id)
            .elem("groupName", &g.group.name)
            .elem("groupDescription", &g.group.description)
            .elem("vpcId", &g.group.vpc_id)
            .elem("securityGroupArn", ctx.arn("security-group", &g.group.id));
        let ingress: Vec<&Rule> = g.rules.iter().filter(|r| !r.is_egress).collect();
        let egress: Vec<&Rule> = g.rules.iter().filter(|r| r.is_egress).collect();
        write_permissions(w, "ipPermissions", &ingress, &names);
        write_permissions(w, "ipPermissionsEgress", &egress, &names);
        let t = tags_of(&g.group.id);
        w.tags(t.iter().map(|(a, b)| (a.as_str(), b.as_str())));
    });
    next_token(&mut w, next);
    Ok(w.finish("DescribeSecurityGroups"))
}

pub(crate) fn delete(ctx: &Ctx<'_>, r: DeleteSecurityGroup) -> ActionResult {
    let id = ctx.cloud.delete_security_group(&ctx.scope, &group_ref(r.group)).ec2()?;
    let mut w = ctx.xml("DeleteSecurityGroup");
    w.elem("return", "true").elem("groupId", id);
    Ok(w.finish("DeleteSecurityGroup"))
}

/// One rule as DescribeSecurityGroupRules and the Authorize responses write it.
fn write_rule(ctx: &Ctx<'_>, w: &mut XmlWriter, r: &Rule, tags: &[(String, String)]) {
    w.elem("securityGroupRuleId", &r.id)
        .elem("groupId", &r.group_id)
        .elem("groupOwnerId", &ctx.scope.account)
        .elem("isEgress", r.is_egress)
        .elem("ipProtocol", &r.protocol)
        .elem("fromPort", r.from_port.unwrap_or(-1))
        .elem("toPort", r.to_port.unwrap_or(-1))
        .opt("cidrIpv4", r.cidr_ipv4.as_deref())
        .opt("cidrIpv6", r.cidr_ipv6.as_deref());
    if let Some(g) = &r.ref_group_id {
        w.start("referencedGroupInfo").elem("groupId", g).opt("userId", r.ref_user_id.as_deref()).end();
    }
    w.opt("description", r.description.as_deref())
        .elem("securityGroupRuleArn", ctx.arn("security-group-rule", &r.id))
        .tags(tags.iter().map(|(a, b)| (a.as_str(), b.as_str())));
}

pub(crate) fn authorize(ctx: &Ctx<'_>, action: &str, r: ChangeRules) -> ActionResult {
    let egress = action.ends_with("Egress");
    if egress && matches!(r.group, req::GroupRef::Name(_)) {
        return Err(kiln_ec2::Ec2Error::missing("GroupId"));
    }
    let tags = tag_pairs(&r.tags);
    let perms: Vec<Permission> = r.permissions.into_iter().map(permission).collect();
    let (_, rules) = ctx.cloud.authorize(&ctx.scope, &group_ref(r.group), egress, &perms, &tags).ec2()?;
    let mut w = ctx.xml(action);
    w.elem("return", "true");
    w.set("securityGroupRuleSet", rules, |w, rule| write_rule(ctx, w, &rule, &tags));
    Ok(w.finish(action))
}

pub(crate) fn revoke(ctx: &Ctx<'_>, action: &str, r: ChangeRules) -> ActionResult {
    let egress = action.ends_with("Egress");
    if egress && matches!(r.group, req::GroupRef::Name(_)) {
        return Err(kiln_ec2::Ec2Error::missing("GroupId"));
    }
    let perms: Vec<Permission> = r.permissions.into_iter().map(permission).collect();
    let revoked = ctx.cloud.revoke(&ctx.scope, &group_ref(r.group), egress, &perms, &r.rule_ids).ec2()?;
    let mut w = ctx.xml(action);
    w.elem("return", "true");
    if !revoked.unknown.is_empty() {
        w.set("unknownIpPermissionSet", revoked.unknown, |w, p| {
            w.elem("ipProtocol", &p.protocol).opt("fromPort", p.from_port).opt("toPort", p.to_port);
            w.set("groups", p.groups, |w, g| {
                w.opt("groupId", g.group_id).opt("groupName", g.group_name).opt("userId", g.user_id);
            });
            w.set("ipRanges", p.ipv4_ranges, |w, (c, _)| {
                w.elem("cidrIp", c);
            });
            w.set("ipv6Ranges", p.ipv6_ranges, |w, (c, _)| {
                w.elem("cidrIpv6", c);
            });
        });
    }
    w.set("revokedSecurityGroupRuleSet", revoked.rules, |w, rule| write_rule(ctx, w, &rule, &[]));
    Ok(w.finish(action))
}

pub(crate) fn describe_rules(ctx: &Ctx<'_>, r: DescribeSecurityGroupRules) -> ActionResult {
    let rules = ctx.cloud.security_group_rules(&ctx.scope, &r.rule_ids).ec2()?;
    let tags = ctx.cloud.tags_by_resource(&ctx.scope).ec2()?;
    let tags_of = |id: &str| tags.get(id).cloned().unwrap_or_default();
    let rules = filter::apply(
        rules,
        &r.filters,
        &["group-id", "security-group-rule-id"],
        |rule, name| match name {
            "group-id" => Field::one(rule.group_id.clone()),
            "security-group-rule-id" => Field::one(rule.id.clone()),
            _ => Field::Unknown,
        },
        |rule| tags_of(&rule.id),
    )?;
    let (page, next) = ctx.page(rules, &r.paging, (5, 1000), None)?;
    let mut w = ctx.xml("DescribeSecurityGroupRules");
    w.set("securityGroupRuleSet", page, |w, rule| write_rule(ctx, w, &rule, &tags_of(&rule.id)));
    next_token(&mut w, next);
    Ok(w.finish("DescribeSecurityGroupRules"))
}
