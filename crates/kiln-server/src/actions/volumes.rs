//! EBS volume actions: Create, Delete, Attach, Detach, Modify and Describe volumes,
//! their modifications, status and attributes, and the encryption default.

use kiln_control::snapshots::InstanceSnapshots;
use kiln_control::volumes::{NewVolume, VolumeChange};
use kiln_ec2::filter::{self, Field};
use kiln_ec2::requests::volumes::{
    AttachVolume, CreateSnapshot, CreateSnapshots, CreateVolume, DescribeVolumeAttribute, DescribeVolumes,
    DetachVolume, EncryptionByDefault, ModifyVolume, ModifyVolumeAttribute, VolumeAttribute, VolumeQuery,
    VolumeRequest,
};
use kiln_ec2::XmlWriter;
use kiln_store::volumes::{Modification, Volume};

use super::{ack, next_token, tag_pairs, ActionResult, Ctx, OrEc2};

fn write_attachment(w: &mut XmlWriter, v: &Volume) {
    if let Some(i) = &v.instance_id {
        w.elem("volumeId", &v.id)
            .elem("instanceId", i)
            .elem("device", v.device_name.as_deref().unwrap_or_default())
            .elem("status", v.attachment_status())
            .elem("attachTime", v.attach_time.as_deref().unwrap_or(&v.created_at))
            .elem("deleteOnTermination", v.delete_on_termination);
    }
}

fn write_volume(w: &mut XmlWriter, v: &Volume, tags: &[(String, String)]) {
    w.elem("volumeId", &v.id)
        .elem("size", v.size_gib)
        .elem("snapshotId", v.source_snapshot_id.as_deref().unwrap_or_default())
        .elem("availabilityZone", &v.availability_zone)
        .elem("status", v.state.as_str())
        .elem("createTime", &v.created_at);
    w.set("attachmentSet", v.instance_id.iter(), |w, _| write_attachment(w, v));
    w.elem("volumeType", v.volume_type.as_str())
        .opt("iops", v.volume_type.iops_of(v.size_gib, v.iops))
        .opt("throughput", v.throughput)
        .elem("encrypted", v.encrypted)
        .opt("kmsKeyId", v.kms_key_id.as_deref())
        .elem("multiAttachEnabled", v.multi_attach)
        .elem("fastRestored", false);
    w.tags(tags.iter().map(|(a, b)| (a.as_str(), b.as_str())));
}

const FILTERS: &[&str] = &[
    "volume-id",
    "volume-type",
    "size",
    "snapshot-id",
    "status",
    "availability-zone",
    "create-time",
    "encrypted",
    "multi-attach-enabled",
    "fast-restored",
    "attachment.instance-id",
    "attachment.device",
    "attachment.status",
    "attachment.delete-on-termination",
    "attachment.attach-time",
];

pub(crate) fn describe(ctx: &Ctx<'_>, r: DescribeVolumes) -> ActionResult {
    let all = ctx.cloud.volumes(&ctx.scope, &r.ids).ec2()?;
    let tags = ctx.cloud.tags_by_resource(&ctx.scope).ec2()?;
    let tags_of = |id: &str| tags.get(id).cloned().unwrap_or_default();
    let list = filter::apply(
        all,
        &r.filters,
        FILTERS,
        |v, name| {
            let attached = v.instance_id.is_some();
            match name {
                "volume-id" => Field::one(v.id.clone()),
                "volume-type" => Field::one(v.volume_type.as_str()),
                "size" => Field::one(v.size_gib.to_string()),
                "snapshot-id" => Field::opt(v.source_snapshot_id.clone()),
                "status" => Field::one(v.state.as_str()),
                "availability-zone" => Field::one(v.availability_zone.clone()),
                "create-time" => Field::one(v.created_at.clone()),
                "encrypted" => Field::one(v.encrypted.to_string()),
                "multi-attach-enabled" => Field::one(v.multi_attach.to_string()),
                "fast-restored" => Field::one("false"),
                "attachment.instance-id" => Field::opt(v.instance_id.clone()),
                "attachment.device" => Field::opt(v.device_name.clone()),
                "attachment.status" => Field::opt(attached.then(|| v.attachment_status())),
                "attachment.delete-on-termination" => Field::opt(attached.then(|| v.delete_on_termination.to_string())),
                "attachment.attach-time" => Field::opt(v.attach_time.clone()),
                _ => Field::Unknown,
            }
        },
        |v| tags_of(&v.id),
    )?;
    let (page, next) = ctx.page(list, &r.paging, (5, 500), None)?;
    let mut w = ctx.xml("DescribeVolumes");
    w.set("volumeSet", page, |w, v| write_volume(w, &v, &tags_of(&v.id)));
    next_token(&mut w, next);
    Ok(w.finish("DescribeVolumes"))
}

pub(crate) fn create(ctx: &Ctx<'_>, r: CreateVolume) -> ActionResult {
    let new = NewVolume {
        availability_zone: r.availability_zone,
        size_gib: r.size_gib,
        snapshot_id: r.snapshot_id.map(|s| s.to_string()),
        volume_type: r.volume_type,
        iops: r.iops,
        throughput: r.throughput,
        encrypted: r.encrypted,
        kms_key_id: r.kms_key_id,
        multi_attach: r.multi_attach,
        tags: tag_pairs(&r.tags),
        client_token: r.client_token,
    };
    let v = ctx.cloud.create_volume(&ctx.scope, &new).ec2()?;
    let tags = ctx.cloud.tags_of(&ctx.scope, &[v.id.as_str()]).ec2()?;
    let mut w = ctx.xml("CreateVolume");
    write_volume(&mut w, &v, &tags.get(&v.id).cloned().unwrap_or_default());
    Ok(w.finish("CreateVolume"))
}

pub(crate) fn delete(ctx: &Ctx<'_>, r: VolumeRequest) -> ActionResult {
    ctx.cloud.delete_volume(&ctx.scope, &r.volume_id).ec2()?;
    ack(ctx, "DeleteVolume")
}

pub(crate) fn attach(ctx: &Ctx<'_>, r: AttachVolume) -> ActionResult {
    let v = ctx.cloud.attach_volume(&ctx.scope, &r.volume_id, &r.instance_id, &r.device).ec2()?;
    let mut w = ctx.xml("AttachVolume");
    write_attachment(&mut w, &v);
    Ok(w.finish("AttachVolume"))
}

pub(crate) fn detach(ctx: &Ctx<'_>, r: DetachVolume) -> ActionResult {
    let before = ctx.cloud.volumes(&ctx.scope, std::slice::from_ref(&r.volume_id)).ec2()?;
    let v = ctx
        .cloud
        .detach_volume(&ctx.scope, &r.volume_id, r.instance_id.as_deref(), r.device.as_deref(), r.force)
        .ec2()?;
    // The answer describes the attachment that is ending.
    let shown = match (&v.instance_id, before.into_iter().next()) {
        (Some(_), _) => v,
        (None, Some(b)) => Volume { attach_state: Some(kiln_types::VolumeAttachState::Detaching), ..b },
        (None, None) => v,
    };
    let mut w = ctx.xml("DetachVolume");
    write_attachment(&mut w, &shown);
    Ok(w.finish("DetachVolume"))
}

fn write_modification(w: &mut XmlWriter, m: &Modification, multi: bool) {
    w.elem("volumeId", &m.volume_id)
        .elem("modificationState", &m.state)
        .elem("targetSize", m.target_size)
        .opt("targetIops", m.target_iops)
        .elem("targetVolumeType", m.target_type.as_str())
        .opt("targetThroughput", m.target_throughput)
        .elem("targetMultiAttachEnabled", multi)
        .elem("originalSize", m.original_size)
        .opt("originalIops", m.original_iops)
        .elem("originalVolumeType", m.original_type.as_str())
        .opt("originalThroughput", m.original_throughput)
        .elem("originalMultiAttachEnabled", multi)
        .elem("progress", if m.state == "completed" { 100 } else { 0 })
        .elem("startTime", &m.start_time)
        .opt("endTime", m.end_time.as_deref());
}

pub(crate) fn modify(ctx: &Ctx<'_>, r: ModifyVolume) -> ActionResult {
    let change =
        VolumeChange { size_gib: r.size_gib, volume_type: r.volume_type, iops: r.iops, throughput: r.throughput };
    let m = ctx.cloud.modify_volume(&ctx.scope, &r.volume_id, &change).ec2()?;
    let multi = ctx.cloud.volumes(&ctx.scope, std::slice::from_ref(&r.volume_id)).ec2()?.iter().any(|v| v.multi_attach);
    let mut w = ctx.xml("ModifyVolume");
    w.start("volumeModification");
    write_modification(&mut w, &m, multi);
    w.end();
    Ok(w.finish("ModifyVolume"))
}

pub(crate) fn modifications(ctx: &Ctx<'_>, r: VolumeQuery) -> ActionResult {
    let all = ctx.cloud.volume_modifications(&ctx.scope, &r.ids).ec2()?;
    let list = filter::apply(
        all,
        &r.filters,
        &["volume-id", "modification-state", "target-size", "target-volume-type", "original-size", "start-time"],
        |m, name| match name {
            "volume-id" => Field::one(m.volume_id.clone()),
            "modification-state" => Field::one(m.state.clone()),
            "target-size" => Field::one(m.target_size.to_string()),
            "target-volume-type" => Field::one(m.target_type.as_str()),
            "original-size" => Field::one(m.original_size.to_string()),
            "start-time" => Field::one(m.start_time.clone()),
            _ => Field::Unknown,
        },
        |_| Vec::new(),
    )?;
    let (page, next) = ctx.page(list, &r.paging, (5, 500), None)?;
    let mut w = ctx.xml("DescribeVolumesModifications");
    w.set("volumeModificationSet", page, |w, m| write_modification(w, &m, false));
    next_token(&mut w, next);
    Ok(w.finish("DescribeVolumesModifications"))
}

/// DescribeVolumeStatus: every volume's I/O is enabled and its checks pass (Kiln's
/// volumes are local files: there is no impairment to report).
/// A volume's status and its io-enabled check: a volume in `error` has no disk.
fn health(v: &Volume) -> (&'static str, &'static str) {
    if v.state == kiln_types::VolumeState::Error {
        ("impaired", "failed")
    } else {
        ("ok", "passed")
    }
}

pub(crate) fn status(ctx: &Ctx<'_>, r: VolumeQuery) -> ActionResult {
    let all = ctx.cloud.volumes(&ctx.scope, &r.ids).ec2()?;
    let list = filter::apply(
        all,
        &r.filters,
        &["volume-status.status", "volume-status.details-name", "volume-status.details-status", "availability-zone"],
        |v, name| match name {
            "volume-status.status" => Field::one(health(v).0),
            "volume-status.details-name" => Field::many(["io-enabled", "io-performance"]),
            "volume-status.details-status" => Field::many(["passed", "not-applicable"]),
            "availability-zone" => Field::one(v.availability_zone.clone()),
            _ => Field::Unknown,
        },
        |_| Vec::new(),
    )?;
    let (page, next) = ctx.page(list, &r.paging, (5, 1000), None)?;
    let mut w = ctx.xml("DescribeVolumeStatus");
    w.set("volumeStatusSet", page, |w, v| {
        w.elem("volumeId", &v.id).elem("availabilityZone", &v.availability_zone);
        let (status, io) = health(&v);
        w.start("volumeStatus").elem("status", status);
        w.set("details", [("io-enabled", io), ("io-performance", "not-applicable")], |w, (n, s)| {
            w.elem("name", n).elem("status", s);
        });
        w.end();
        w.start("eventsSet").end().start("actionsSet").end();
    });
    next_token(&mut w, next);
    Ok(w.finish("DescribeVolumeStatus"))
}

pub(crate) fn describe_attribute(ctx: &Ctx<'_>, r: DescribeVolumeAttribute) -> ActionResult {
    let v = ctx.cloud.volumes(&ctx.scope, std::slice::from_ref(&r.volume_id)).ec2()?.remove(0);
    let mut w = ctx.xml("DescribeVolumeAttribute");
    w.elem("volumeId", &v.id);
    match r.attribute {
        VolumeAttribute::AutoEnableIo => {
            w.start("autoEnableIO").elem("value", v.auto_enable_io).end();
        }
        VolumeAttribute::ProductCodes => {
            w.start("productCodes").end();
        }
    }
    Ok(w.finish("DescribeVolumeAttribute"))
}

pub(crate) fn modify_attribute(ctx: &Ctx<'_>, r: ModifyVolumeAttribute) -> ActionResult {
    ctx.cloud.set_volume_auto_enable_io(&ctx.scope, &r.volume_id, r.auto_enable_io).ec2()?;
    ack(ctx, "ModifyVolumeAttribute")
}

pub(crate) fn create_snapshot(ctx: &Ctx<'_>, r: CreateSnapshot) -> ActionResult {
    let tags = tag_pairs(&r.tags);
    let s = ctx.cloud.create_snapshot(&ctx.scope, &r.volume_id, &r.description, &tags).ec2()?;
    let provider = ctx.cloud.provider().ec2()?.id;
    let mut w = ctx.xml("CreateSnapshot");
    super::images::write_snapshot(&mut w, &s, &provider, &tags);
    Ok(w.finish("CreateSnapshot"))
}

pub(crate) fn create_snapshots(ctx: &Ctx<'_>, r: CreateSnapshots) -> ActionResult {
    let request = InstanceSnapshots {
        instance_id: r.instance_id.to_string(),
        exclude_boot: r.exclude_boot,
        exclude: r.exclude.iter().map(|v| v.to_string()).collect(),
        description: r.description,
        tags: tag_pairs(&r.tags),
        copy_tags: r.copy_tags,
    };
    let made = ctx.cloud.create_snapshots(&ctx.scope, &request).ec2()?;
    let ids: Vec<&str> = made.iter().map(|s| s.id.as_str()).collect();
    let tags = ctx.cloud.tags_of(&ctx.scope, &ids).ec2()?;
    let mut w = ctx.xml("CreateSnapshots");
    w.set("snapshotSet", made, |w, s| {
        w.elem("snapshotId", &s.id)
            .elem("volumeId", s.volume_id.as_deref().unwrap_or_default())
            .elem("state", &s.state)
            .elem("startTime", &s.created_at)
            .elem("progress", format!("{}%", s.progress))
            .elem("ownerId", &s.account_id)
            .elem("volumeSize", s.volume_size)
            .elem("description", &s.description)
            .elem("encrypted", false);
        let t = tags.get(&s.id).cloned().unwrap_or_default();
        w.tags(t.iter().map(|(a, b)| (a.as_str(), b.as_str())));
    });
    Ok(w.finish("CreateSnapshots"))
}

pub(crate) fn encryption_default(ctx: &Ctx<'_>, action: &'static str, _r: EncryptionByDefault) -> ActionResult {
    let on = match action {
        "EnableEbsEncryptionByDefault" => Some(true),
        "DisableEbsEncryptionByDefault" => Some(false),
        _ => None,
    };
    if let Some(on) = on {
        ctx.cloud.set_ebs_encryption_default(&ctx.scope, on).ec2()?;
    }
    let now = ctx.cloud.ebs_encryption_default(&ctx.scope).ec2()?;
    let mut w = ctx.xml(action);
    w.elem("ebsEncryptionByDefault", now).elem("sseType", "sse-ebs");
    Ok(w.finish(action))
}
