//! CreateKeyPair, ImportKeyPair, DescribeKeyPairs, DeleteKeyPair.

use kiln_ec2::filter::{self, Field};
use kiln_ec2::requests::key_pairs::{CreateKeyPair, DeleteKeyPair, DescribeKeyPairs, ImportKeyPair, KeyRef};

use super::{ack, tag_pairs, ActionResult, Ctx, OrEc2};

pub(crate) fn create(ctx: &Ctx<'_>, r: CreateKeyPair) -> ActionResult {
    let kind = r.key_type;
    let tags = tag_pairs(&r.tags);
    let created = ctx.cloud.create_key_pair(&ctx.scope, &r.key_name, kind, &tags).ec2()?;
    let k = &created.key_pair;
    let mut w = ctx.xml("CreateKeyPair");
    w.elem("keyName", &k.name)
        .elem("keyFingerprint", &k.fingerprint)
        .elem("keyMaterial", &created.private_key_pem)
        .elem("keyPairId", &k.id)
        .tags(tags.iter().map(|(a, b)| (a.as_str(), b.as_str())));
    Ok(w.finish("CreateKeyPair"))
}

pub(crate) fn import(ctx: &Ctx<'_>, r: ImportKeyPair) -> ActionResult {
    let tags = tag_pairs(&r.tags);
    let k = ctx.cloud.import_key_pair(&ctx.scope, &r.key_name, &r.public_key, &tags).ec2()?;
    let mut w = ctx.xml("ImportKeyPair");
    w.elem("keyFingerprint", &k.fingerprint)
        .elem("keyName", &k.name)
        .elem("keyPairId", &k.id)
        .tags(tags.iter().map(|(a, b)| (a.as_str(), b.as_str())));
    Ok(w.finish("ImportKeyPair"))
}

pub(crate) fn describe(ctx: &Ctx<'_>, r: DescribeKeyPairs) -> ActionResult {
    let keys = ctx.cloud.key_pairs(&ctx.scope, &r.key_names, &r.key_pair_ids).ec2()?;
    let tags = ctx.cloud.tags_by_resource(&ctx.scope).ec2()?;
    let tags_of = |id: &str| tags.get(id).cloned().unwrap_or_default();
    let keys = filter::apply(
        keys,
        &r.filters,
        &["key-name", "key-pair-id", "fingerprint", "key-type"],
        |k, name| match name {
            "key-name" => Field::one(k.name.clone()),
            "key-pair-id" => Field::one(k.id.clone()),
            "fingerprint" => Field::one(k.fingerprint.clone()),
            "key-type" => Field::one(k.key_type.clone()),
            _ => Field::Unknown,
        },
        |k| tags_of(&k.id),
    )?;
    let mut w = ctx.xml("DescribeKeyPairs");
    w.set("keySet", keys, |w, k| {
        w.elem("keyPairId", &k.id);
        w.elem("keyType", &k.key_type);
        let t = tags_of(&k.id);
        w.tags(t.iter().map(|(a, b)| (a.as_str(), b.as_str())));
        w.elem("keyName", &k.name).elem("keyFingerprint", &k.fingerprint).elem("createTime", &k.created_at);
        if r.include_public_key {
            w.elem("publicKey", &k.public_key);
        }
    });
    Ok(w.finish("DescribeKeyPairs"))
}

pub(crate) fn delete(ctx: &Ctx<'_>, r: DeleteKeyPair) -> ActionResult {
    let (name, id) = match &r.key {
        KeyRef::Name(n) => (Some(n.as_str()), None),
        KeyRef::Id(i) => (None, Some(i.as_str())),
    };
    let deleted = ctx.cloud.delete_key_pair(&ctx.scope, name, id).ec2()?;
    match deleted {
        Some(id) => {
            let mut w = ctx.xml("DeleteKeyPair");
            w.elem("return", "true").elem("keyPairId", id);
            Ok(w.finish("DeleteKeyPair"))
        }
        None => ack(ctx, "DeleteKeyPair"),
    }
}
