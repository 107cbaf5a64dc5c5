//! CreateTags, DeleteTags, DescribeTags.

use kiln_ec2::filter::{self, Field};
use kiln_ec2::requests::tags::{CreateTags, DeleteTags, DescribeTags};

use super::{ack, next_token, tag_pairs, ActionResult, Ctx, OrEc2};

pub(crate) fn create(ctx: &Ctx<'_>, r: CreateTags) -> ActionResult {
    ctx.cloud.create_tags(&ctx.scope, &r.resource_ids, &tag_pairs(&r.tags)).ec2()?;
    ack(ctx, "CreateTags")
}

pub(crate) fn delete(ctx: &Ctx<'_>, r: DeleteTags) -> ActionResult {
    let selectors: Vec<(String, Option<String>)> = r.tags.into_iter().map(|t| (t.key, t.value)).collect();
    ctx.cloud.delete_tags(&ctx.scope, &r.resource_ids, &selectors).ec2()?;
    ack(ctx, "DeleteTags")
}

pub(crate) fn describe(ctx: &Ctx<'_>, r: DescribeTags) -> ActionResult {
    let rows = ctx.cloud.tags(&ctx.scope).ec2()?;
    let rows = filter::apply(
        rows,
        &r.filters,
        &["key", "value", "resource-id", "resource-type"],
        |t, name| match name {
            "key" => Field::one(t.key.clone()),
            "value" => Field::one(t.value.clone()),
            "resource-id" => Field::one(t.resource_id.clone()),
            "resource-type" => Field::one(t.resource_type.clone()),
            _ => Field::Unknown,
        },
        |t| vec![(t.key.clone(), t.value.clone())],
    )?;
    let (page, next) = ctx.page(rows, &r.paging, (5, 1000), None)?;
    let mut w = ctx.xml("DescribeTags");
    w.set("tagSet", page, |w, t| {
        w.elem("resourceId", &t.resource_id)
            .elem("resourceType", &t.resource_type)
            .elem("key", &t.key)
            .elem("value", &t.value);
    });
    next_token(&mut w, next);
    Ok(w.finish("DescribeTags"))
}
