//! Launch templates: Create, CreateVersion, Describe, DescribeVersions, Modify,
//! Delete, DeleteVersions and GetLaunchTemplateData. RunInstances reads templates in
//! `instances`.

use base64::Engine;
use kiln_control::launch_templates::VersionDeletion;
use kiln_ec2::filter::{self, Field};
use kiln_ec2::requests::images::BlockDeviceMapping;
use kiln_ec2::requests::launch_templates::{
    overlay, CreateLaunchTemplate, CreateLaunchTemplateVersion, DeleteLaunchTemplate, DeleteLaunchTemplateVersions,
    DescribeLaunchTemplateVersions, DescribeLaunchTemplates, GetLaunchTemplateData, LaunchTemplateData,
    ModifyLaunchTemplate, Tags, TemplateInterface, RECORDED, RECORDED_SCALARS,
};
use kiln_ec2::requests::Tag;
use kiln_ec2::{Ec2Error, Params, XmlWriter};
use kiln_store::launch_templates::{LaunchTemplate, TemplateVersion};
use kiln_types::{TemplateRef, VersionRef};

use super::{next_token, tag_pairs, ActionResult, Ctx, OrEc2};

fn created_by(ctx: &Ctx<'_>) -> String {
    format!("arn:aws:iam::{}:root", ctx.scope.account)
}

fn write_template(ctx: &Ctx<'_>, w: &mut XmlWriter, t: &LaunchTemplate, tags: &[(String, String)]) {
    w.elem("launchTemplateId", &t.id)
        .elem("launchTemplateName", &t.name)
        .elem("createTime", &t.created_at)
        .elem("createdBy", created_by(ctx))
        .elem("defaultVersionNumber", t.default_version)
        .elem("latestVersionNumber", t.latest_version)
        .tags(tags.iter().map(|(k, v)| (k.as_str(), v.as_str())));
}

fn write_version(ctx: &Ctx<'_>, w: &mut XmlWriter, v: &TemplateVersion) -> Result<(), Ec2Error> {
    let data = LaunchTemplateData::decode(&Params::from_owned(v.data.iter().cloned()))?;
    w.elem("launchTemplateId", &v.template_id)
        .elem("launchTemplateName", &v.template_name)
        .elem("versionNumber", v.version)
        .opt("versionDescription", v.description.as_deref())
        .elem("createTime", &v.created_at)
        .elem("createdBy", created_by(ctx))
        .elem("defaultVersion", v.is_default);
    w.start("launchTemplateData");
    write_data(w, &data);
    w.end();
    Ok(())
}

fn write_block_device(w: &mut XmlWriter, b: &BlockDeviceMapping) {
    w.elem("deviceName", &b.device_name);
    if b.no_device {
        w.elem("noDevice", "");
        return;
    }
    w.start("ebs")
        .opt("encrypted", b.encrypted)
        .opt("deleteOnTermination", b.delete_on_termination)
        .opt("iops", b.iops)
        .opt("kmsKeyId", b.kms_key_id.as_deref())
        .opt("snapshotId", b.snapshot_id.as_deref())
        .opt("volumeSize", b.volume_size)
        .opt("volumeType", b.volume_type.map(|t| t.as_str()))
        .opt("throughput", b.throughput)
        .end();
}

fn write_interface(w: &mut XmlWriter, n: &TemplateInterface) {
    w.opt("associatePublicIpAddress", n.associate_public_ip)
        .opt("deleteOnTermination", n.delete_on_termination)
        .opt("description", n.description.as_deref())
        .opt("deviceIndex", n.device_index);
    if !n.groups.is_empty() {
        w.start("groupSet");
        for g in &n.groups {
            w.elem("groupId", g);
        }
        w.end();
    }
    w.opt("networkInterfaceId", n.network_interface_id.as_deref())
        .opt("privateIpAddress", n.private_ip.as_deref())
        .opt("subnetId", n.subnet_id.as_deref());
}

/// ResponseLaunchTemplateData: only what the version says, as EC2 shows it.
fn write_data(w: &mut XmlWriter, d: &LaunchTemplateData) {
    if let Some(v) = d.ebs_optimized {
        w.elem("ebsOptimized", v);
    }
    if !d.block_devices.is_empty() {
        w.set("blockDeviceMappingSet", &d.block_devices, write_block_device);
    }
    if !d.network_interfaces.is_empty() {
        w.set("networkInterfaceSet", &d.network_interfaces, write_interface);
    }
    w.opt("imageId", d.image_id.as_deref())
        .opt("instanceType", d.instance_type.as_deref())
        .opt("keyName", d.key_name.as_deref());
    if let Some(on) = d.monitoring {
        w.start("monitoring").elem("enabled", on).end();
    }
    if d.availability_zone.is_some() || d.tenancy.is_some() || d.placement_group.is_some() {
        w.start("placement")
            .opt("availabilityZone", d.availability_zone.as_deref())
            .opt("groupName", d.placement_group.as_deref())
            .opt("tenancy", d.tenancy.as_deref())
            .end();
    }
    w.opt("disableApiTermination", d.disable_api_termination)
        .opt("instanceInitiatedShutdownBehavior", d.shutdown_behavior.map(|s| s.as_str()))
        .opt("userData", d.user_data.as_deref());
    if !d.tag_specs.is_empty() {
        w.set("tagSpecificationSet", &d.tag_specs, |w, (rt, tags)| {
            w.elem("resourceType", rt);
            w.tags(tags.iter().map(|t| (t.key.as_str(), t.value.as_str())));
        });
    }
    if !d.security_group_ids.is_empty() {
        w.strings("securityGroupIdSet", &d.security_group_ids);
    }
    if !d.security_groups.is_empty() {
        w.strings("securityGroupSet", &d.security_groups);
    }
    if let Some(c) = d.cpu_credits {
        w.start("creditSpecification").elem("cpuCredits", c.as_str()).end();
    }
    if d.http_tokens.is_some() || d.http_endpoint.is_some() || d.hop_limit.is_some() {
        w.start("metadataOptions")
            .elem("state", "applied")
            .opt("httpTokens", d.http_tokens.map(|t| t.as_str()))
            .opt("httpPutResponseHopLimit", d.hop_limit)
            .opt("httpEndpoint", d.http_endpoint.map(|e| e.as_str()))
            .end();
    }
    w.opt("disableApiStop", d.disable_api_stop);
    for (param, elem) in RECORDED_SCALARS {
        w.opt(elem, d.recorded(param));
    }
    for &(group, elem, members) in RECORDED {
        if members.iter().all(|(m, _)| d.recorded(&format!("{group}.{m}")).is_none()) {
            continue;
        }
        w.start(elem);
        for (m, e) in members {
            w.opt(e, d.recorded(&format!("{group}.{m}")));
        }
        w.end();
    }
}

pub(crate) fn create(ctx: &Ctx<'_>, r: CreateLaunchTemplate) -> ActionResult {
    let tags = tag_pairs(&r.tags);
    let t = ctx
        .cloud
        .create_launch_template(
            &ctx.scope,
            &r.name,
            r.description.as_deref(),
            &r.data,
            &tags,
            r.client_token.as_deref(),
        )
        .ec2()?;
    answer_template(ctx, "CreateLaunchTemplate", &t)
}

pub(crate) fn create_version(ctx: &Ctx<'_>, r: CreateLaunchTemplateVersion) -> ActionResult {
    let data = match r.source_version {
        None => r.data,
        Some(source) => {
            let base = ctx.cloud.launch_template_version(&ctx.scope, &r.template, source).ec2()?;
            overlay(&base.data, &r.data, Tags::Replace)
        }
    };
    // The laid-over whole must still be valid (a source's list replaced, say).
    LaunchTemplateData::decode(&Params::from_owned(data.iter().cloned()))?;
    let v = ctx
        .cloud
        .create_launch_template_version(
            &ctx.scope,
            &r.template,
            r.description.as_deref(),
            &data,
            r.client_token.as_deref(),
        )
        .ec2()?;
    let mut w = ctx.xml("CreateLaunchTemplateVersion");
    w.start("launchTemplateVersion");
    write_version(ctx, &mut w, &v)?;
    w.end();
    Ok(w.finish("CreateLaunchTemplateVersion"))
}

pub(crate) fn describe(ctx: &Ctx<'_>, r: DescribeLaunchTemplates) -> ActionResult {
    let all = ctx.cloud.launch_templates(&ctx.scope, &r.ids, &r.names).ec2()?;
    let tags = ctx.cloud.tags_by_resource(&ctx.scope).ec2()?;
    let tags_of = |id: &str| tags.get(id).cloned().unwrap_or_default();
    let list = filter::apply(
        all,
        &r.filters,
        &["create-time", "launch-template-name"],
        |t, name| match name {
            "create-time" => Field::one(t.created_at.clone()),
            "launch-template-name" => Field::one(t.name.clone()),
            _ => Field::Unknown,
        },
        |t| tags_of(&t.id),
    )?;
    let (page, token) = ctx.page(list, &r.paging, (1, 200), None)?;
    let mut w = ctx.xml("DescribeLaunchTemplates");
    w.set("launchTemplates", &page, |w, t| write_template(ctx, w, t, &tags_of(&t.id)));
    next_token(&mut w, token);
    Ok(w.finish("DescribeLaunchTemplates"))
}

const VERSION_FILTERS: &[&str] = &[
    "create-time",
    "ebs-optimized",
    "http-endpoint",
    "http-tokens",
    "iam-instance-profile",
    "image-id",
    "instance-type",
    "is-default-version",
    "kernel-id",
    "ram-disk-id",
];

pub(crate) fn describe_versions(ctx: &Ctx<'_>, r: DescribeLaunchTemplateVersions) -> ActionResult {
    let all = ctx
        .cloud
        .launch_template_versions(&ctx.scope, r.template.as_ref(), &r.versions, r.min_version, r.max_version)
        .ec2()?;
    let mut decoded = Vec::with_capacity(all.len());
    for v in all {
        let d = LaunchTemplateData::decode(&Params::from_owned(v.data.iter().cloned()))?;
        decoded.push((v, d));
    }
    let list = filter::apply(
        decoded,
        &r.filters,
        VERSION_FILTERS,
        |(v, d), name| match name {
            "create-time" => Field::one(v.created_at.clone()),
            "ebs-optimized" => Field::opt(d.ebs_optimized.map(|b| b.to_string())),
            "http-endpoint" => Field::opt(d.http_endpoint.map(|e| e.as_str().to_owned())),
            "http-tokens" => Field::opt(d.http_tokens.map(|t| t.as_str().to_owned())),
            "iam-instance-profile" => Field::many(
                ["IamInstanceProfile.Arn", "IamInstanceProfile.Name"]
                    .iter()
                    .filter_map(|k| d.recorded(k))
                    .map(str::to_owned),
            ),
            "image-id" => Field::opt(d.image_id.as_deref().map(str::to_owned)),
            "instance-type" => Field::opt(d.instance_type.clone()),
            "is-default-version" => Field::one(v.is_default.to_string()),
            "kernel-id" => Field::opt(d.recorded("KernelId").map(str::to_owned)),
            "ram-disk-id" => Field::opt(d.recorded("RamDiskId").map(str::to_owned)),
            _ => Field::Unknown,
        },
        |_| Vec::new(),
    )?;
    let (page, token) = ctx.page(list, &r.paging, (1, 200), None)?;
    let mut w = ctx.xml("DescribeLaunchTemplateVersions");
    w.start("launchTemplateVersionSet");
    for (v, _) in &page {
        w.start("item");
        write_version(ctx, &mut w, v)?;
        w.end();
    }
    w.end();
    next_token(&mut w, token);
    Ok(w.finish("DescribeLaunchTemplateVersions"))
}

fn answer_template(ctx: &Ctx<'_>, action: &str, t: &LaunchTemplate) -> ActionResult {
    let tags = ctx.cloud.tags_of(&ctx.scope, &[t.id.as_str()]).ec2()?.remove(&t.id).unwrap_or_default();
    let mut w = ctx.xml(action);
    w.start("launchTemplate");
    write_template(ctx, &mut w, t, &tags);
    w.end();
    Ok(w.finish(action))
}

pub(crate) fn modify(ctx: &Ctx<'_>, r: ModifyLaunchTemplate) -> ActionResult {
    let t = match r.default_version {
        Some(v) => ctx.cloud.set_default_launch_template_version(&ctx.scope, &r.template, v).ec2()?,
        None => ctx.cloud.launch_template(&ctx.scope, &r.template).ec2()?,
    };
    answer_template(ctx, "ModifyLaunchTemplate", &t)
}

pub(crate) fn delete(ctx: &Ctx<'_>, r: DeleteLaunchTemplate) -> ActionResult {
    let tags = match &r.template {
        TemplateRef::Id(id) => ctx.cloud.tags_of(&ctx.scope, &[id.as_str()]).ec2()?.remove(id.as_str()),
        TemplateRef::Name(_) => None,
    };
    let t = ctx.cloud.delete_launch_template(&ctx.scope, &r.template).ec2()?;
    let mut w = ctx.xml("DeleteLaunchTemplate");
    w.start("launchTemplate");
    write_template(ctx, &mut w, &t, &tags.unwrap_or_default());
    w.end();
    Ok(w.finish("DeleteLaunchTemplate"))
}

pub(crate) fn delete_versions(ctx: &Ctx<'_>, r: DeleteLaunchTemplateVersions) -> ActionResult {
    let mut numbers = Vec::new();
    let mut malformed = Vec::new();
    for v in &r.versions {
        match VersionRef::parse(v) {
            Some(VersionRef::Number(n)) => numbers.push(n),
            _ => malformed.push(v.clone()),
        }
    }
    let (t, outcomes) = ctx.cloud.delete_launch_template_versions(&ctx.scope, &r.template, &numbers).ec2()?;
    let mut w = ctx.xml("DeleteLaunchTemplateVersions");
    let deleted = outcomes.iter().filter(|(_, o)| *o == VersionDeletion::Deleted);
    w.set("successfullyDeletedLaunchTemplateVersionSet", deleted, |w, (n, _)| {
        w.elem("launchTemplateId", &t.id).elem("launchTemplateName", &t.name).elem("versionNumber", n);
    });
    w.start("unsuccessfullyDeletedLaunchTemplateVersionSet");
    for (n, outcome) in &outcomes {
        let (code, message) = match outcome {
            VersionDeletion::Deleted => continue,
            VersionDeletion::NotFound => ("launchTemplateVersionDoesNotExist", format!("Version {n} does not exist")),
            VersionDeletion::IsDefault => (
                "unexpectedError",
                format!("Version {n} is the default version: make another the default with ModifyLaunchTemplate, or delete the whole template with DeleteLaunchTemplate"),
            ),
        };
        w.start("item").elem("launchTemplateId", &t.id).elem("launchTemplateName", &t.name).elem("versionNumber", n);
        w.start("responseError").elem("code", code).elem("message", message).end();
        w.end();
    }
    for v in &malformed {
        w.start("item").elem("launchTemplateId", &t.id).elem("launchTemplateName", &t.name);
        w.start("responseError")
            .elem("code", "launchTemplateVersionDoesNotExist")
            .elem("message", format!("'{v}' is not a version number"))
            .end();
        w.end();
    }
    w.end();
    Ok(w.finish("DeleteLaunchTemplateVersions"))
}

/// GetLaunchTemplateData: an instance's launch parameters as template data.
pub(crate) fn get_data(ctx: &Ctx<'_>, r: GetLaunchTemplateData) -> ActionResult {
    let found = ctx.cloud.instances(&ctx.scope, std::slice::from_ref(&r.instance_id)).ec2()?;
    let i = found
        .into_iter()
        .next()
        .ok_or_else(|| Ec2Error::not_found(kiln_types::ResourceKind::Instance, &[r.instance_id.to_string()]))?;
    let volumes = ctx.cloud.instance_volumes(&i.id).ec2()?;
    let tags = ctx.cloud.tags_of(&ctx.scope, &[i.id.as_str()]).ec2()?.remove(&i.id).unwrap_or_default();
    let tags: Vec<Tag> =
        tags.into_iter().filter(|(k, _)| !k.starts_with("aws:")).map(|(key, value)| Tag { key, value }).collect();
    let d = LaunchTemplateData {
        image_id: i.image_id.parse().ok(),
        instance_type: Some(i.instance_type.clone()),
        key_name: i.key_name.clone(),
        network_interfaces: vec![TemplateInterface {
            device_index: Some(0),
            subnet_id: i.subnet_id.parse().ok(),
            groups: i.groups.iter().filter_map(|g| g.parse().ok()).collect(),
            associate_public_ip: Some(i.public_ip.is_some() && !i.elastic_ip),
            private_ip: Some(i.private_ip.clone()),
            delete_on_termination: Some(true),
            ..Default::default()
        }],
        block_devices: volumes
            .iter()
            .map(|v| BlockDeviceMapping {
                device_name: v.device_name.clone().unwrap_or_default(),
                no_device: false,
                snapshot_id: v.source_snapshot_id.as_deref().and_then(|s| s.parse().ok()),
                volume_size: Some(v.size_gib),
                volume_type: Some(v.volume_type),
                delete_on_termination: Some(v.delete_on_termination),
                iops: v.iops,
                throughput: v.throughput,
                encrypted: Some(v.encrypted),
                kms_key_id: v.kms_key_id.clone(),
            })
            .collect(),
        user_data: i.user_data.as_ref().map(|u| base64::engine::general_purpose::STANDARD.encode(u)),
        http_tokens: Some(i.http_tokens),
        http_endpoint: Some(i.http_endpoint),
        hop_limit: Some(i.hop_limit),
        tag_specs: if tags.is_empty() { Vec::new() } else { vec![("instance".into(), tags)] },
        availability_zone: Some(i.availability_zone.clone()),
        tenancy: Some("default".into()),
        cpu_credits: i.options.cpu_credits,
        disable_api_termination: Some(i.disable_api_termination),
        disable_api_stop: Some(i.options.disable_api_stop),
        shutdown_behavior: Some(i.shutdown_behavior),
        ebs_optimized: Some(i.options.ebs_optimized),
        monitoring: Some(i.options.monitoring),
        ..Default::default()
    };
    let mut w = ctx.xml("GetLaunchTemplateData");
    w.start("launchTemplateData");
    write_data(&mut w, &d);
    w.end();
    Ok(w.finish("GetLaunchTemplateData"))
}
