//! CreatePlacementGroup, DescribePlacementGroups, DeletePlacementGroup.

use kiln_control::placement_groups::{GroupRef, NewGroup};
use kiln_ec2::filter::{self, Field};
use kiln_ec2::requests::placement_groups::{
    CreatePlacementGroup, DeletePlacementGroup, DescribePlacementGroups, PlacementGroupRef,
};
use kiln_ec2::xml::XmlWriter;
use kiln_store::placement_groups::PlacementGroup;

use super::{ack, tag_pairs, ActionResult, Ctx, OrEc2};

fn arn(ctx: &Ctx<'_>, g: &PlacementGroup) -> String {
    format!("arn:aws:ec2:{}:{}:placement-group/{}", ctx.scope.region, ctx.scope.account, g.name)
}

fn write(ctx: &Ctx<'_>, w: &mut XmlWriter, g: &PlacementGroup, tags: &[(String, String)]) {
    w.elem("groupName", &g.name)
        .elem("state", "available")
        .elem("strategy", g.strategy.as_str())
        .opt("partitionCount", g.partition_count)
        .elem("groupId", &g.id)
        .elem("groupArn", arn(ctx, g))
        .opt("spreadLevel", g.spread_level.map(|s| s.as_str()))
        .tags(tags.iter().map(|(a, b)| (a.as_str(), b.as_str())));
}

pub(crate) fn create(ctx: &Ctx<'_>, r: CreatePlacementGroup) -> ActionResult {
    let tags = tag_pairs(&r.tags);
    let g = ctx
        .cloud
        .create_placement_group(
            &ctx.scope,
            &NewGroup {
                name: r.group_name,
                strategy: r.strategy,
                partition_count: r.partition_count,
                spread_level: r.spread_level,
                tags: tags.clone(),
            },
        )
        .ec2()?;
    let mut w = ctx.xml("CreatePlacementGroup");
    w.elem("return", "true").start("placementGroup");
    write(ctx, &mut w, &g, &tags);
    w.end();
    Ok(w.finish("CreatePlacementGroup"))
}

pub(crate) fn describe(ctx: &Ctx<'_>, r: DescribePlacementGroups) -> ActionResult {
    let groups = ctx.cloud.placement_groups(&ctx.scope, &r.group_names, &r.group_ids).ec2()?;
    let tags = ctx.cloud.tags_by_resource(&ctx.scope).ec2()?;
    let tags_of = |id: &str| tags.get(id).cloned().unwrap_or_default();
    let groups = filter::apply(
        groups,
        &r.filters,
        &["group-name", "group-arn", "state", "strategy", "spread-level"],
        |g, name| match name {
            "group-name" => Field::one(g.name.clone()),
            "group-arn" => Field::one(arn(ctx, g)),
            "state" => Field::one("available"),
            "strategy" => Field::one(g.strategy.as_str()),
            "spread-level" => Field::opt(g.spread_level.map(|s| s.as_str())),
            _ => Field::Unknown,
        },
        |g| tags_of(&g.id),
    )?;
    let mut w = ctx.xml("DescribePlacementGroups");
    w.set("placementGroupSet", groups, |w, g| write(ctx, w, &g, &tags_of(&g.id)));
    Ok(w.finish("DescribePlacementGroups"))
}

pub(crate) fn delete(ctx: &Ctx<'_>, r: DeletePlacementGroup) -> ActionResult {
    let group = match r.group {
        PlacementGroupRef::Name(n) => GroupRef::Name(n),
        PlacementGroupRef::Id(i) => GroupRef::Id(i),
    };
    ctx.cloud.delete_placement_group(&ctx.scope, &group).ec2()?;
    ack(ctx, "DeletePlacementGroup")
}
