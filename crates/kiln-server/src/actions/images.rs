//! Image (AMI) and snapshot actions.

use kiln_control::images::{ImageView, LaunchPermission, NewImage};
use kiln_control::imports::ImportRequest;
use kiln_control::snapshots::Grantee;
use kiln_ec2::filter::{self, Field};
use kiln_ec2::requests::images::{
    CopyImage, CopySnapshot, DeleteSnapshot, DeregisterImage, DescribeImageAttribute, DescribeImages,
    DescribeSnapshots, ImageAttribute, ModifyImageAttribute, ModifySnapshotAttribute, Permission, RegisterImage,
    ResetImageAttribute, SnapshotAttribute, SnapshotAttributeRequest,
};
use kiln_ec2::requests::images::{DescribeImportTasks, DiskContainer};
use kiln_ec2::{Ec2Error, XmlWriter};
use kiln_store::images::BlockDevice;
use kiln_store::imports::ImportTask;
use kiln_store::snapshots::Snapshot;

use super::{ack, next_token, tag_pairs, ActionResult, Ctx, OrEc2};

const IMAGE_FILTERS: &[&str] = &[
    "image-id",
    "name",
    "architecture",
    "state",
    "is-public",
    "owner-id",
    "owner-alias",
    "image-type",
    "root-device-type",
    "root-device-name",
    "virtualization-type",
    "hypervisor",
    "platform",
    "platform-details",
    "product-code",
    "product-code.type",
    "description",
    "creation-date",
    "boot-mode",
    "source-instance-id",
    "block-device-mapping.snapshot-id",
    "block-device-mapping.volume-size",
    "block-device-mapping.volume-type",
    "block-device-mapping.device-name",
    "block-device-mapping.delete-on-termination",
];

fn image_field(v: &ImageView, name: &str) -> Field {
    let i = &v.image;
    let devices = |f: fn(&BlockDevice) -> Option<String>| Field::many(v.devices.iter().filter_map(f));
    match name {
        "image-id" => Field::one(i.id.clone()),
        "name" => Field::one(i.name.clone()),
        "architecture" => Field::one(i.architecture.clone()),
        "state" => Field::one(i.state.clone()),
        "is-public" => Field::one(i.is_public.to_string()),
        "owner-id" => Field::one(i.account_id.clone()),
        "owner-alias" => Field::opt(v.owner_alias),
        "image-type" => Field::one("machine"),
        "root-device-type" => Field::one("ebs"),
        "root-device-name" => Field::one(i.root_device_name.clone()),
        "virtualization-type" => Field::one("hvm"),
        "hypervisor" => Field::one("xen"),
        "platform" => Field::Values(Vec::new()),
        "platform-details" => Field::one("Linux/UNIX"),
        "product-code" => Field::many(i.product_codes.split(',').filter(|c| !c.is_empty()).map(str::to_owned)),
        "product-code.type" => Field::many(i.product_codes.split(',').filter(|c| !c.is_empty()).map(|_| "marketplace")),
        "description" => Field::one(i.description.clone()),
        "creation-date" => Field::one(i.created_at.clone()),
        "boot-mode" => Field::one(i.boot_mode.clone()),
        "source-instance-id" => Field::opt(i.source_instance_id.clone()),
        "block-device-mapping.snapshot-id" => devices(|d| d.snapshot_id.clone()),
        "block-device-mapping.volume-size" => devices(|d| Some(d.volume_size.to_string())),
        "block-device-mapping.volume-type" => devices(|d| Some(d.volume_type.to_string())),
        "block-device-mapping.device-name" => devices(|d| Some(d.device_name.clone())),
        "block-device-mapping.delete-on-termination" => devices(|d| Some(d.delete_on_termination.to_string())),
        _ => Field::Unknown,
    }
}

fn write_devices(w: &mut XmlWriter, devices: &[BlockDevice]) {
    w.set("blockDeviceMapping", devices, |w, d| {
        w.elem("deviceName", &d.device_name);
        w.start("ebs")
            .opt("snapshotId", d.snapshot_id.as_deref())
            .elem("volumeSize", d.volume_size)
            .elem("deleteOnTermination", d.delete_on_termination)
            .elem("volumeType", d.volume_type.as_str())
            .elem("encrypted", "false")
            .end();
    });
}

fn write_image(w: &mut XmlWriter, v: &ImageView, tags: &[(String, String)]) {
    let i = &v.image;
    let owner = v.owner_alias.map(str::to_owned).unwrap_or_else(|| i.account_id.clone());
    w.elem("imageId", &i.id)
        .elem("imageLocation", format!("{owner}/{}", i.name))
        .elem("imageState", &i.state)
        .elem("imageOwnerId", &i.account_id)
        .elem("creationDate", &i.created_at)
        .elem("isPublic", i.is_public)
        .set("productCodes", i.product_codes.split(',').filter(|c| !c.is_empty()), |w, c| {
            w.elem("productCode", c).elem("type", "marketplace");
        })
        .elem("architecture", &i.architecture)
        .elem("imageType", "machine")
        .opt("imageOwnerAlias", v.owner_alias)
        .elem("name", &i.name)
        .elem("description", &i.description)
        .elem("rootDeviceType", "ebs")
        .elem("rootDeviceName", &i.root_device_name);
    write_devices(w, &v.devices);
    w.elem("virtualizationType", "hvm")
        .elem("hypervisor", "xen")
        .elem("enaSupport", "true")
        .elem("bootMode", &i.boot_mode)
        .elem("platformDetails", "Linux/UNIX")
        .elem("usageOperation", "RunInstances")
        .opt("sourceInstanceId", i.source_instance_id.as_deref())
        .opt("deprecationTime", i.deprecation_time.as_deref());
    if let Some(reason) = &i.state_reason {
        w.start("stateReason").elem("code", "Client.ImageBuildFailed").elem("message", reason).end();
    }
    w.tags(tags.iter().map(|(a, b)| (a.as_str(), b.as_str())));
}

pub(crate) fn describe(ctx: &Ctx<'_>, r: DescribeImages) -> ActionResult {
    let images = ctx.cloud.images(&ctx.scope, &r.image_ids, &r.owners, &r.executable_by).ec2()?;
    // Tags are the owner's; others see the image without them, as on EC2.
    let tags = ctx.cloud.tags_by_resource(&ctx.scope).ec2()?;
    let tags_of = |id: &str| tags.get(id).cloned().unwrap_or_default();
    let images = filter::apply(images, &r.filters, IMAGE_FILTERS, image_field, |v| tags_of(&v.image.id))?;
    let (page, next) = ctx.page(images, &r.paging, (5, 1000), None)?;
    let mut w = ctx.xml("DescribeImages");
    w.set("imagesSet", page, |w, v| write_image(w, &v, &tags_of(&v.image.id)));
    next_token(&mut w, next);
    Ok(w.finish("DescribeImages"))
}

pub(crate) fn register(ctx: &Ctx<'_>, r: RegisterImage) -> ActionResult {
    let devices: Vec<BlockDevice> = r
        .block_devices
        .iter()
        .filter(|d| !d.no_device)
        .map(|d| -> Result<BlockDevice, Ec2Error> {
            let size = match (d.volume_size, &d.snapshot_id) {
                (Some(s), _) => s,
                (None, Some(snap)) => ctx.cloud.usable_snapshot(&ctx.scope, snap).ec2()?.volume_size,
                (None, None) => return Err(Ec2Error::missing("BlockDeviceMapping.N.Ebs.VolumeSize")),
            };
            Ok(BlockDevice {
                device_name: d.device_name.clone(),
                snapshot_id: d.snapshot_id.clone().map(String::from),
                volume_size: size,
                volume_type: d.volume_type.unwrap_or(kiln_types::VolumeType::Gp2),
                delete_on_termination: d.delete_on_termination.unwrap_or(true),
            })
        })
        .collect::<Result<_, _>>()?;
    let mut new = NewImage::new(r.name, r.description, r.architecture, r.root_device_name, devices);
    // EC2 registers legacy-bios unless told otherwise.
    new.boot_mode = r.boot_mode.unwrap_or_else(|| "legacy-bios".into());
    let image = ctx.cloud.register_image(&ctx.scope, new, &tag_pairs(&r.tags)).ec2()?;
    let mut w = ctx.xml("RegisterImage");
    w.elem("imageId", &image.id);
    Ok(w.finish("RegisterImage"))
}

pub(crate) fn create(ctx: &Ctx<'_>, r: kiln_ec2::requests::images::CreateImage) -> ActionResult {
    let image = ctx
        .cloud
        .create_image(
            &ctx.scope,
            &r.instance_id,
            &r.name,
            &r.description,
            r.no_reboot,
            &super::instances::volume_requests(r.block_devices),
            &tag_pairs(&r.image_tags),
            &tag_pairs(&r.snapshot_tags),
        )
        .ec2()?;
    let mut w = ctx.xml("CreateImage");
    w.elem("imageId", &image.id);
    Ok(w.finish("CreateImage"))
}

pub(crate) fn deregister(ctx: &Ctx<'_>, r: DeregisterImage) -> ActionResult {
    let deleted = ctx.cloud.deregister_image(&ctx.scope, &r.image_id, r.delete_associated_snapshots).ec2()?;
    let mut w = ctx.xml("DeregisterImage");
    w.elem("return", "true");
    if r.delete_associated_snapshots {
        w.set("deleteSnapshotResultSet", deleted, |w, s| {
            w.elem("snapshotId", s).elem("returnCode", "success");
        });
    }
    Ok(w.finish("DeregisterImage"))
}

pub(crate) fn copy(ctx: &Ctx<'_>, r: CopyImage) -> ActionResult {
    let image = ctx
        .cloud
        .copy_image(&ctx.scope, &r.source_region, &r.source_image_id, &r.name, r.description.as_deref())
        .ec2()?;
    let mut tags = tag_pairs(&r.tags);
    if r.copy_image_tags {
        let source_scope = kiln_control::Scope { account: ctx.scope.account.clone(), region: r.source_region.clone() };
        let mut source_tags =
            ctx.cloud.tags_by_resource(&source_scope).ec2()?.remove(r.source_image_id.as_str()).unwrap_or_default();
        source_tags.retain(|(k, _)| !tags.iter().any(|(t, _)| t == k));
        tags.extend(source_tags);
    }
    if !tags.is_empty() {
        ctx.cloud.create_tags(&ctx.scope, std::slice::from_ref(&image.id), &tags).ec2()?;
    }
    let mut w = ctx.xml("CopyImage");
    w.elem("imageId", &image.id);
    Ok(w.finish("CopyImage"))
}

fn permissions(list: Vec<Permission>) -> Vec<LaunchPermission> {
    list.into_iter()
        .map(|p| match p {
            Permission::User(u) => LaunchPermission::Account(u),
            Permission::All => LaunchPermission::All,
        })
        .collect()
}

pub(crate) fn modify_attribute(ctx: &Ctx<'_>, r: ModifyImageAttribute) -> ActionResult {
    if !r.add.is_empty() || !r.remove.is_empty() {
        ctx.cloud
            .modify_launch_permission(&ctx.scope, &r.image_id, &permissions(r.add), &permissions(r.remove))
            .ec2()?;
    }
    if let Some(d) = &r.description {
        ctx.cloud.set_image_description(&ctx.scope, &r.image_id, d).ec2()?;
    }
    ack(ctx, "ModifyImageAttribute")
}

pub(crate) fn reset_attribute(ctx: &Ctx<'_>, r: ResetImageAttribute) -> ActionResult {
    ctx.cloud.reset_launch_permission(&ctx.scope, &r.image_id).ec2()?;
    ack(ctx, "ResetImageAttribute")
}

pub(crate) fn describe_attribute(ctx: &Ctx<'_>, r: DescribeImageAttribute) -> ActionResult {
    let v = match r.attribute {
        // Anyone who may launch an image may read these; permissions are the owner's.
        ImageAttribute::LaunchPermission => ctx.cloud.owned_image(&ctx.scope, &r.image_id).ec2()?,
        _ => ctx.cloud.launchable_image(&ctx.scope, &r.image_id).ec2()?,
    };
    let mut w = ctx.xml("DescribeImageAttribute");
    w.elem("imageId", &v.image.id);
    match r.attribute {
        ImageAttribute::LaunchPermission => {
            let mut items: Vec<(&str, String)> = v.permissions.iter().map(|p| ("userId", p.clone())).collect();
            if v.image.is_public {
                items.push(("group", "all".into()));
            }
            w.set("launchPermission", items, |w, (k, val)| {
                w.elem(k, val);
            });
        }
        ImageAttribute::Description => {
            w.start("description").elem("value", &v.image.description).end();
        }
        ImageAttribute::BlockDeviceMapping => write_devices(&mut w, &v.devices),
        ImageAttribute::ProductCodes => {
            w.set("productCodes", v.image.product_codes.split(',').filter(|c| !c.is_empty()), |w, c| {
                w.elem("productCode", c).elem("type", "marketplace");
            });
        }
        ImageAttribute::BootMode => {
            w.start("bootMode").elem("value", &v.image.boot_mode).end();
        }
    }
    Ok(w.finish("DescribeImageAttribute"))
}

pub(crate) fn describe_snapshots(ctx: &Ctx<'_>, r: DescribeSnapshots) -> ActionResult {
    let snaps = ctx.cloud.snapshots(&ctx.scope, &r.snapshot_ids, &r.owners, &r.restorable_by).ec2()?;
    let provider = ctx.cloud.provider().ec2()?.id;
    let tags = ctx.cloud.tags_by_resource(&ctx.scope).ec2()?;
    let tags_of = |id: &str| tags.get(id).cloned().unwrap_or_default();
    let snaps = filter::apply(
        snaps,
        &r.filters,
        &[
            "snapshot-id",
            "volume-id",
            "status",
            "owner-id",
            "owner-alias",
            "description",
            "volume-size",
            "progress",
            "start-time",
        ],
        |s, name| match name {
            "snapshot-id" => Field::one(s.id.clone()),
            "volume-id" => Field::opt(s.volume_id.clone()),
            "status" => Field::one(s.state.clone()),
            "owner-id" => Field::one(s.account_id.clone()),
            "owner-alias" => Field::opt((s.account_id == provider).then_some("amazon")),
            "description" => Field::one(s.description.clone()),
            "volume-size" => Field::one(s.volume_size.to_string()),
            "progress" => Field::one(format!("{}%", s.progress)),
            "start-time" => Field::one(s.created_at.clone()),
            _ => Field::Unknown,
        },
        |s| tags_of(&s.id),
    )?;
    let (page, next) = ctx.page(snaps, &r.paging, (5, 1000), None)?;
    let mut w = ctx.xml("DescribeSnapshots");
    w.set("snapshotSet", page, |w, s| write_snapshot(w, &s, &provider, &tags_of(&s.id)));
    next_token(&mut w, next);
    Ok(w.finish("DescribeSnapshots"))
}

/// One snapshot as DescribeSnapshots and CreateSnapshot show it.
pub(crate) fn write_snapshot(w: &mut XmlWriter, s: &Snapshot, provider: &str, tags: &[(String, String)]) {
    w.elem("snapshotId", &s.id)
        .elem("volumeId", s.volume_id.as_deref().unwrap_or("vol-ffffffff"))
        .elem("status", &s.state)
        .elem("startTime", &s.created_at)
        .elem("progress", format!("{}%", s.progress))
        .elem("ownerId", &s.account_id)
        .opt("ownerAlias", (s.account_id == provider).then_some("amazon"))
        .elem("volumeSize", s.volume_size)
        .elem("description", &s.description)
        .elem("encrypted", "false")
        .elem("storageTier", "standard");
    w.tags(tags.iter().map(|(a, b)| (a.as_str(), b.as_str())));
}

fn grantees(list: Vec<Permission>) -> Vec<Grantee> {
    list.into_iter()
        .map(|p| match p {
            Permission::User(a) => Grantee::Account(a),
            Permission::All => Grantee::All,
        })
        .collect()
}

pub(crate) fn copy_snapshot(ctx: &Ctx<'_>, r: CopySnapshot) -> ActionResult {
    let tags = super::tag_pairs(&r.tags);
    let s = ctx
        .cloud
        .copy_snapshot(&ctx.scope, &r.source_region, &r.source_snapshot_id, r.description.as_deref(), &tags)
        .ec2()?;
    let mut w = ctx.xml("CopySnapshot");
    w.elem("snapshotId", &s.id);
    w.tags(tags.iter().map(|(a, b)| (a.as_str(), b.as_str())));
    Ok(w.finish("CopySnapshot"))
}

pub(crate) fn modify_snapshot_attribute(ctx: &Ctx<'_>, r: ModifySnapshotAttribute) -> ActionResult {
    ctx.cloud.modify_snapshot_permissions(&ctx.scope, &r.snapshot_id, &grantees(r.add), &grantees(r.remove)).ec2()?;
    ack(ctx, "ModifySnapshotAttribute")
}

pub(crate) fn describe_snapshot_attribute(ctx: &Ctx<'_>, r: SnapshotAttributeRequest) -> ActionResult {
    let granted = ctx.cloud.snapshot_permissions(&ctx.scope, &r.snapshot_id).ec2()?;
    let mut w = ctx.xml("DescribeSnapshotAttribute");
    w.elem("snapshotId", r.snapshot_id.as_str());
    match r.attribute {
        SnapshotAttribute::CreateVolumePermission => {
            w.set("createVolumePermission", granted, |w, g| match g {
                Grantee::Account(a) => {
                    w.elem("userId", a);
                }
                Grantee::All => {
                    w.elem("group", "all");
                }
            });
        }
        SnapshotAttribute::ProductCodes => {
            w.start("productCodes").end();
        }
    }
    Ok(w.finish("DescribeSnapshotAttribute"))
}

pub(crate) fn reset_snapshot_attribute(ctx: &Ctx<'_>, r: SnapshotAttributeRequest) -> ActionResult {
    if r.attribute != SnapshotAttribute::CreateVolumePermission {
        return Err(kiln_ec2::Ec2Error::invalid_value("Only createVolumePermission can be reset"));
    }
    ctx.cloud.reset_snapshot_permissions(&ctx.scope, &r.snapshot_id).ec2()?;
    ack(ctx, "ResetSnapshotAttribute")
}

pub(crate) fn delete_snapshot(ctx: &Ctx<'_>, r: DeleteSnapshot) -> ActionResult {
    ctx.cloud.delete_snapshot(&ctx.scope, &r.snapshot_id).ec2()?;
    ack(ctx, "DeleteSnapshot")
}

pub(crate) fn import(
    ctx: &Ctx<'_>,
    action: &str,
    disk: DiskContainer,
    description: Option<String>,
    arch: Option<kiln_types::Architecture>,
) -> ActionResult {
    let image = action == "ImportImage";
    let req = ImportRequest {
        image,
        url: disk.url.clone(),
        format: disk.format.clone(),
        description: description.or(disk.description.clone()).unwrap_or_default(),
        architecture: arch,
    };
    let task = ctx.cloud.start_import(&ctx.scope, req).ec2()?;
    let mut w = ctx.xml(action);
    w.elem("importTaskId", &task.id).elem("description", &task.description);
    if image {
        w.elem("status", &task.status).elem("statusMessage", &task.status_message).elem("progress", task.progress);
    } else {
        write_snapshot_detail(&mut w, &task);
    }
    Ok(w.finish(action))
}

fn write_snapshot_detail(w: &mut XmlWriter, t: &ImportTask) {
    w.start("snapshotTaskDetail")
        .elem("description", &t.description)
        .opt("diskImageSize", t.disk_size.map(|g| g << 30))
        .elem("format", t.format.to_uppercase())
        .elem("progress", t.progress)
        .opt("snapshotId", t.snapshot_id.as_deref())
        .elem("status", &t.status)
        .elem("statusMessage", &t.status_message)
        .elem("url", &t.url)
        .end();
}

pub(crate) fn describe_imports(ctx: &Ctx<'_>, action: &str, r: DescribeImportTasks) -> ActionResult {
    let image = action == "DescribeImportImageTasks";
    let tasks = ctx.cloud.import_tasks(&ctx.scope, image, &r.task_ids).ec2()?;
    let mut w = ctx.xml(action);
    let set = if image { "importImageTaskSet" } else { "importSnapshotTaskSet" };
    w.set(set, tasks, |w, t| {
        w.elem("importTaskId", &t.id).elem("description", &t.description);
        if image {
            w.opt("architecture", t.architecture.as_deref())
                .opt("imageId", t.image_id.as_deref())
                .elem("progress", t.progress)
                .elem("status", &t.status)
                .elem("statusMessage", &t.status_message)
                .elem("platform", "Linux");
            w.set("snapshotDetailSet", [()], |w, _| {
                w.elem("description", &t.description)
                    .elem("deviceName", "/dev/sda1")
                    .opt("diskImageSize", t.disk_size.map(|g| g << 30))
                    .elem("format", t.format.to_uppercase())
                    .opt("snapshotId", t.snapshot_id.as_deref())
                    .elem("status", &t.status)
                    .elem("url", &t.url);
            });
        } else {
            write_snapshot_detail(w, &t);
        }
    });
    Ok(w.finish(action))
}
