//! Instance actions: RunInstances, DescribeInstances, DescribeInstanceStatus, the
//! lifecycle requests, console output and attributes.

use std::collections::HashMap;

use base64::Engine;
use kiln_control::instances::{InstanceChange, RunRequest, StateChange, VolumeRequest};
use kiln_control::interfaces::{primary, NetworkInterface};
use kiln_ec2::filter::{self, Field};
use kiln_ec2::requests::instances::{
    DescribeInstanceAttribute, DescribeInstanceStatus, DescribeInstances, GetConsoleOutput, InstanceAttribute,
    InstanceAttributeChange, InstanceList, LaunchSpec, ModifyInstanceAttribute, ModifyInstanceCreditSpecification,
    ModifyInstanceMetadataOptions, RunInstances,
};
use kiln_ec2::requests::Tag;
use kiln_ec2::{Ec2Error, XmlWriter};
use kiln_store::instances::Instance;
use kiln_store::volumes::Volume;
use kiln_types::ids::{instance_mac, primary_interface};
use kiln_types::instance_types;

use kiln_control::placement_groups::GroupRef;
use kiln_ec2::requests::placement_groups::PlacementGroupRef;

use super::interfaces::write_interface;
use super::{ack, next_token, tag_pairs, ActionResult, Ctx, OrEc2};

/// What rendering instances needs besides the rows.
struct Extras {
    tags: HashMap<String, Vec<(String, String)>>,
    group_names: HashMap<String, String>,
    volumes: HashMap<String, Vec<Volume>>,
    /// Made interfaces attached to instances of the scope.
    interfaces: Vec<NetworkInterface>,
    /// Instances in a placement group: the membership and the group's name.
    placements: HashMap<String, (kiln_store::placement_groups::Member, String)>,
}

fn extras(ctx: &Ctx<'_>, list: &[Instance]) -> Result<Extras, Ec2Error> {
    let mut x = extras_without_volumes(ctx, list)?;
    add_volumes(ctx, &mut x, list)?;
    Ok(x)
}

/// The volumes of `list` into `x` (one query each; what a page shows).
fn add_volumes(ctx: &Ctx<'_>, x: &mut Extras, list: &[Instance]) -> Result<(), Ec2Error> {
    for i in list {
        x.volumes.insert(i.id.clone(), ctx.cloud.instance_volumes(&i.id).ec2()?);
    }
    Ok(())
}

/// Tags and group names for `list`; volumes are read for a page only, unless a
/// filter needs them.
fn extras_without_volumes(ctx: &Ctx<'_>, list: &[Instance]) -> Result<Extras, Ec2Error> {
    let volumes = HashMap::new();
    // A few instances read their own tags by index; many read the scope's once.
    let tags = if list.len() <= 50 {
        ctx.cloud.tags_of(&ctx.scope, &list.iter().map(|i| i.id.as_str()).collect::<Vec<_>>()).ec2()?
    } else {
        ctx.cloud.tags_by_resource(&ctx.scope).ec2()?
    };
    let interfaces = ctx.cloud.attached_interfaces(&ctx.scope).ec2()?;
    let group_ids: Vec<String> = list
        .iter()
        .flat_map(|i| i.groups.iter().cloned())
        .chain(interfaces.iter().flat_map(|n| n.record.groups.iter().cloned()))
        .collect();
    Ok(Extras {
        tags,
        group_names: ctx.cloud.security_group_names_of(&ctx.scope, group_ids).ec2()?,
        volumes,
        interfaces,
        placements: ctx.cloud.placements(&ctx.scope).ec2()?,
    })
}

use kiln_types::region::{private_dns, public_dns};
use kiln_types::InstanceState;

pub(crate) fn write_groups(w: &mut XmlWriter, groups: &[String], names: &HashMap<String, String>) {
    w.set("groupSet", groups, |w, g| {
        w.elem("groupId", g).opt("groupName", names.get(g));
    });
}

fn write_state(w: &mut XmlWriter, name: &'static str, state: InstanceState) {
    w.start(name).elem("code", state.code()).elem("name", state.as_str()).end();
}

fn write_instance(ctx: &Ctx<'_>, w: &mut XmlWriter, i: &Instance, x: &Extras) {
    let dns = private_dns(&i.region, &i.private_ip);
    let t = instance_types::lookup(&i.instance_type);
    w.elem("instanceId", &i.id).elem("imageId", &i.image_id);
    write_state(w, "instanceState", i.state);
    let terminated = i.state == InstanceState::Terminated;
    w.elem("privateDnsName", if terminated { "" } else { dns.as_str() })
        .elem("dnsName", i.public_ip.as_deref().map(|p| public_dns(&i.region, p)).unwrap_or_default())
        .elem("reason", &i.transition_reason)
        .opt("keyName", i.key_name.as_deref())
        .elem("amiLaunchIndex", i.launch_index)
        .start("productCodes")
        .end()
        .elem("instanceType", &i.instance_type)
        .elem("launchTime", &i.launch_time);
    let placed = x.placements.get(&i.id);
    w.start("placement")
        .elem("availabilityZone", &i.availability_zone)
        .elem("groupName", placed.map(|(_, name)| name.as_str()).unwrap_or_default())
        .opt("groupId", placed.map(|(m, _)| m.group_id.as_str()))
        .opt("partitionNumber", placed.and_then(|(m, _)| m.partition_number))
        // The joined host it runs on, as EC2 names an instance's host (h-…).
        .opt("hostId", i.host_id.as_deref())
        .elem("tenancy", "default")
        .end();
    w.start("monitoring").elem("state", if i.options.monitoring { "enabled" } else { "disabled" }).end();
    if !terminated {
        w.elem("subnetId", &i.subnet_id).elem("vpcId", &i.vpc_id).elem("privateIpAddress", &i.private_ip);
        w.opt("ipAddress", i.public_ip.as_deref());
    }
    w.elem("sourceDestCheck", i.options.source_dest_check);
    write_groups(w, &i.groups, &x.group_names);
    if let (Some(code), Some(msg)) = (&i.state_reason_code, &i.state_reason_message) {
        w.start("stateReason").elem("code", code).elem("message", msg).end();
    }
    w.elem("architecture", &i.architecture).elem("rootDeviceType", "ebs").elem("rootDeviceName", &i.root_device_name);
    let vols = x.volumes.get(&i.id).cloned().unwrap_or_default();
    w.set("blockDeviceMapping", vols, |w, v| {
        w.elem("deviceName", v.device_name.as_deref().unwrap_or_default());
        w.start("ebs")
            .elem("volumeId", &v.id)
            .elem("status", v.attachment_status())
            .elem("attachTime", v.attach_time.as_deref().unwrap_or(&v.created_at))
            .elem("deleteOnTermination", v.delete_on_termination)
            .end();
    });
    w.elem("virtualizationType", "hvm").opt("clientToken", i.client_token.as_deref());
    let tags = x.tags.get(&i.id).cloned().unwrap_or_default();
    w.tags(tags.iter().map(|(a, b)| (a.as_str(), b.as_str())));
    w.elem("hypervisor", "xen");
    if !terminated {
        let more = x.interfaces.iter().filter(|n| n.record.attachment.as_ref().is_some_and(|a| a.instance_id == i.id));
        w.set("networkInterfaceSet", std::iter::once(primary(i)).chain(more.cloned()), |w, n| {
            write_interface(ctx, w, &n, &x.group_names)
        });
    }
    w.elem("ebsOptimized", i.options.ebs_optimized).elem("enaSupport", "true");
    w.start("maintenanceOptions").elem("autoRecovery", "default").end();
    if let Some(t) = t {
        w.start("cpuOptions").elem("coreCount", t.cores).elem("threadsPerCore", t.threads_per_core).end();
    }
    write_metadata_options(w, i, "applied");
    w.elem("platformDetails", "Linux/UNIX").elem("usageOperation", "RunInstances");
}

/// `metadataOptions` (DescribeInstances) or `instanceMetadataOptions` (the Modify answer).
fn write_metadata_options(w: &mut XmlWriter, i: &Instance, state: &str) {
    w.start(if state == "applied" { "metadataOptions" } else { "instanceMetadataOptions" })
        .elem("state", state)
        .elem("httpTokens", i.http_tokens.as_str())
        .elem("httpPutResponseHopLimit", i.hop_limit)
        .elem("httpEndpoint", i.http_endpoint.as_str())
        .elem("httpProtocolIpv6", "disabled")
        .elem("instanceMetadataTags", "disabled")
        .end();
}

fn write_reservation(ctx: &Ctx<'_>, w: &mut XmlWriter, list: &[&Instance], x: &Extras) {
    let Some(first) = list.first() else { return };
    w.elem("reservationId", &first.reservation_id).elem("ownerId", &ctx.scope.account);
    write_groups(w, &first.groups, &x.group_names);
    w.set("instancesSet", list, |w, i| write_instance(ctx, w, i, x));
}

/// A request's BlockDeviceMapping as the control plane takes it.
pub(crate) fn volume_requests(mappings: Vec<kiln_ec2::requests::images::BlockDeviceMapping>) -> Vec<VolumeRequest> {
    mappings
        .into_iter()
        .map(|b| VolumeRequest {
            device_name: b.device_name,
            snapshot_id: b.snapshot_id,
            size_gib: b.volume_size,
            volume_type: b.volume_type,
            delete_on_termination: b.delete_on_termination,
            no_device: b.no_device,
        })
        .collect()
}

/// The launch a RunInstances asks for: as given, or laid over a template version,
/// the instance then carrying the `aws:ec2launchtemplate:*` tags as on EC2.
fn launch_spec(ctx: &Ctx<'_>, r: RunInstances) -> Result<LaunchSpec, Ec2Error> {
    match r {
        RunInstances::Direct(spec) => Ok(*spec),
        RunInstances::FromTemplate { template, version, params } => {
            let v = ctx.cloud.launch_template_version(&ctx.scope, &template, version).ec2()?;
            let mut spec = LaunchSpec::over_template(&v.data, &params)?;
            for (key, value) in
                [("aws:ec2launchtemplate:id", v.template_id), ("aws:ec2launchtemplate:version", v.version.to_string())]
            {
                spec.instance_tags.retain(|t| t.key != key);
                spec.instance_tags.push(Tag { key: key.into(), value });
            }
            Ok(spec)
        }
    }
}

pub(crate) fn run(ctx: &Ctx<'_>, r: RunInstances) -> ActionResult {
    let r = launch_spec(ctx, r)?;
    let req = RunRequest {
        image_id: r.image_id,
        instance_type: r.instance_type,
        min_count: r.min_count,
        max_count: r.max_count,
        key_name: r.key_name,
        group_ids: r.group_ids,
        group_names: r.group_names,
        subnet_id: r.subnet_id,
        private_ip: r.private_ip,
        associate_public_ip: r.associate_public_ip,
        user_data: r.user_data,
        volumes: volume_requests(r.block_devices),
        availability_zone: r.availability_zone,
        placement_group: r.placement_group.map(|g| match g {
            PlacementGroupRef::Name(n) => GroupRef::Name(n),
            PlacementGroupRef::Id(i) => GroupRef::Id(i),
        }),
        partition_number: r.partition_number,
        instance_tags: tag_pairs(&r.instance_tags),
        volume_tags: tag_pairs(&r.volume_tags),
        client_token: r.client_token,
        http_tokens: r.http_tokens,
        http_endpoint: r.http_endpoint,
        hop_limit: r.hop_limit,
        disable_api_termination: r.disable_api_termination,
        options: r.options,
        shutdown_behavior: r.shutdown_behavior,
    };
    let made = ctx.cloud.run_instances(&ctx.scope, req).ec2()?;
    let x = extras(ctx, &made)?;
    let mut w = ctx.xml("RunInstances");
    let refs: Vec<&Instance> = made.iter().collect();
    write_reservation(ctx, &mut w, &refs, &x);
    Ok(w.finish("RunInstances"))
}

const INSTANCE_FILTERS: &[&str] = &[
    "placement-group-name",
    "placement-partition-number",
    "instance-state-name",
    "instance-state-code",
    "instance-id",
    "image-id",
    "instance-type",
    "key-name",
    "availability-zone",
    "vpc-id",
    "subnet-id",
    "private-ip-address",
    "private-dns-name",
    "ip-address",
    "network-interface.addresses.association.public-ip",
    "dns-name",
    "architecture",
    "launch-time",
    "reservation-id",
    "owner-id",
    "client-token",
    "instance.group-id",
    "instance.group-name",
    "root-device-name",
    "root-device-type",
    "network-interface.mac-address",
    "block-device-mapping.volume-id",
    "block-device-mapping.device-name",
    "block-device-mapping.delete-on-termination",
    "block-device-mapping.status",
    "state-reason-code",
    "state-reason-message",
    "reason",
    "monitoring-state",
    "ebs-optimized",
    "source-dest-check",
    "launch-index",
    "hypervisor",
    "virtualization-type",
    "tenancy",
    "platform-details",
    "usage-operation",
    "ena-support",
    "metadata-options.http-tokens",
    "metadata-options.http-endpoint",
    "metadata-options.http-put-response-hop-limit",
    "network-interface.network-interface-id",
    "network-interface.subnet-id",
    "network-interface.vpc-id",
    "network-interface.status",
    "network-interface.group-id",
    "network-interface.group-name",
    "network-interface.private-ip-address",
    "network-interface.addresses.private-ip-address",
    "network-interface.attachment.instance-id",
    "network-interface.attachment.device-index",
    "network-interface.source-dest-check",
];

fn instance_field(i: &Instance, name: &str, x: &Extras, account: &str) -> Field {
    match name {
        "instance-state-name" => Field::one(i.state.as_str()),
        "instance-state-code" => Field::one(i.state.code().to_string()),
        "instance-id" => Field::one(i.id.clone()),
        "image-id" => Field::one(i.image_id.clone()),
        "instance-type" => Field::one(i.instance_type.clone()),
        "placement-group-name" => Field::opt(x.placements.get(&i.id).map(|(_, n)| n.clone())),
        "placement-partition-number" => {
            Field::opt(x.placements.get(&i.id).and_then(|(m, _)| m.partition_number).map(|p| p.to_string()))
        }
        "key-name" => Field::opt(i.key_name.clone()),
        "availability-zone" => Field::one(i.availability_zone.clone()),
        "vpc-id" => Field::one(i.vpc_id.clone()),
        "subnet-id" => Field::one(i.subnet_id.clone()),
        "private-ip-address" => Field::one(i.private_ip.clone()),
        "private-dns-name" => Field::one(private_dns(&i.region, &i.private_ip)),
        "ip-address" | "network-interface.addresses.association.public-ip" => Field::opt(i.public_ip.clone()),
        "dns-name" => Field::opt(i.public_ip.as_deref().map(|p| public_dns(&i.region, p))),
        "architecture" => Field::one(i.architecture.clone()),
        "launch-time" => Field::one(i.launch_time.clone()),
        "reservation-id" => Field::one(i.reservation_id.clone()),
        "owner-id" => Field::one(account),
        "client-token" => Field::opt(i.client_token.clone()),
        "instance.group-id" => Field::many(i.groups.clone()),
        "instance.group-name" => Field::many(i.groups.iter().filter_map(|g| x.group_names.get(g).cloned())),
        "root-device-name" => Field::one(i.root_device_name.clone()),
        "root-device-type" => Field::one("ebs"),
        "network-interface.mac-address" => Field::one(instance_mac(&i.id)),
        "block-device-mapping.volume-id" => {
            Field::many(x.volumes.get(&i.id).into_iter().flatten().map(|v| v.id.clone()))
        }
        "block-device-mapping.device-name" => {
            Field::many(x.volumes.get(&i.id).into_iter().flatten().filter_map(|v| v.device_name.clone()))
        }
        "block-device-mapping.delete-on-termination" => {
            Field::many(x.volumes.get(&i.id).into_iter().flatten().map(|v| v.delete_on_termination.to_string()))
        }
        "block-device-mapping.status" => Field::many(x.volumes.get(&i.id).into_iter().flatten().map(|_| "attached")),
        "state-reason-code" => Field::opt(i.state_reason_code.clone()),
        "state-reason-message" => Field::opt(i.state_reason_message.clone()),
        "reason" => Field::one(i.transition_reason.clone()),
        "monitoring-state" => Field::one(if i.options.monitoring { "enabled" } else { "disabled" }),
        "ebs-optimized" => Field::one(i.options.ebs_optimized.to_string()),
        "source-dest-check" | "network-interface.source-dest-check" => {
            Field::one(i.options.source_dest_check.to_string())
        }
        "launch-index" => Field::one(i.launch_index.to_string()),
        "hypervisor" => Field::one("xen"),
        "virtualization-type" => Field::one("hvm"),
        "tenancy" => Field::one("default"),
        "platform-details" => Field::one("Linux/UNIX"),
        "usage-operation" => Field::one("RunInstances"),
        "ena-support" => Field::one("true"),
        "metadata-options.http-tokens" => Field::one(i.http_tokens.as_str()),
        "metadata-options.http-endpoint" => Field::one(i.http_endpoint.as_str()),
        "metadata-options.http-put-response-hop-limit" => Field::one(i.hop_limit.to_string()),
        // The primary interface, while the instance has one (not once terminated).
        name if name.starts_with("network-interface.") && i.state == InstanceState::Terminated => {
            Field::Values(Vec::new())
        }
        "network-interface.network-interface-id" => Field::one(primary_interface(&i.id)),
        "network-interface.subnet-id" => Field::one(i.subnet_id.clone()),
        "network-interface.vpc-id" => Field::one(i.vpc_id.clone()),
        "network-interface.status" => Field::one("in-use"),
        "network-interface.group-id" => Field::many(i.groups.clone()),
        "network-interface.group-name" => Field::many(i.groups.iter().filter_map(|g| x.group_names.get(g).cloned())),
        "network-interface.private-ip-address" | "network-interface.addresses.private-ip-address" => {
            Field::one(i.private_ip.clone())
        }
        "network-interface.attachment.instance-id" => Field::one(i.id.clone()),
        "network-interface.attachment.device-index" => Field::one("0"),
        _ => Field::Unknown,
    }
}

pub(crate) fn describe(ctx: &Ctx<'_>, r: DescribeInstances) -> ActionResult {
    let list = ctx.cloud.instances(&ctx.scope, &r.instance_ids).ec2()?;
    let volume_filter = r.filters.iter().any(|f| f.name.starts_with("block-device-mapping"));
    let mut x = if volume_filter { extras(ctx, &list)? } else { extras_without_volumes(ctx, &list)? };
    let list = filter::apply(
        list,
        &r.filters,
        INSTANCE_FILTERS,
        |i, name| instance_field(i, name, &x, &ctx.scope.account),
        |i| x.tags.get(&i.id).cloned().unwrap_or_default(),
    )?;
    let (page, next) = ctx.page(list, &r.paging, (5, 1000), None)?;
    if !volume_filter {
        add_volumes(ctx, &mut x, &page)?;
    }
    // Group by reservation, keeping launch order.
    let mut order: Vec<String> = Vec::new();
    let mut groups: HashMap<String, Vec<&Instance>> = HashMap::new();
    for i in &page {
        if !groups.contains_key(&i.reservation_id) {
            order.push(i.reservation_id.clone());
        }
        groups.entry(i.reservation_id.clone()).or_default().push(i);
    }
    let mut w = ctx.xml("DescribeInstances");
    w.set("reservationSet", order, |w, rid| write_reservation(ctx, w, &groups[&rid], &x));
    next_token(&mut w, next);
    Ok(w.finish("DescribeInstances"))
}

pub(crate) fn status(ctx: &Ctx<'_>, r: DescribeInstanceStatus) -> ActionResult {
    let mut list = ctx.cloud.instances(&ctx.scope, &r.instance_ids).ec2()?;
    if !r.include_all {
        list.retain(|i| i.state == InstanceState::Running);
    } else {
        list.retain(|i| i.state != InstanceState::Terminated || !r.instance_ids.is_empty());
    }
    // An instance whose host stopped reporting fails its system status check, as on EC2
    // when the hardware under an instance fails; what the guest does is unknown.
    let silent = ctx.cloud.silent_hosts().ec2()?;
    let silent_since = |i: &Instance| i.host_id.as_ref().and_then(|h| silent.get(h).map(|at| (h.clone(), *at)));
    let status_of = |i: &Instance| -> (&'static str, &'static str) {
        match (i.state, i.ready_at.is_some()) {
            (InstanceState::Running, _) if silent_since(i).is_some() => ("impaired", "insufficient-data"),
            (InstanceState::Running, true) => ("ok", "ok"),
            (InstanceState::Running, false) => ("ok", "initializing"),
            _ => ("not-applicable", "not-applicable"),
        }
    };
    let list = filter::apply(
        list,
        &r.filters,
        &[
            "instance-state-name",
            "instance-state-code",
            "availability-zone",
            "instance-status.status",
            "system-status.status",
        ],
        |i, name| match name {
            "instance-state-name" => Field::one(i.state.as_str()),
            "instance-state-code" => Field::one(i.state.code().to_string()),
            "availability-zone" => Field::one(i.availability_zone.clone()),
            "instance-status.status" => Field::one(status_of(i).1),
            "system-status.status" => Field::one(status_of(i).0),
            _ => Field::Unknown,
        },
        |_| Vec::new(),
    )?;
    let (page, next) = ctx.page(list, &r.paging, (5, 1000), None)?;
    let mut w = ctx.xml("DescribeInstanceStatus");
    w.set("instanceStatusSet", page, |w, i| {
        let (system, instance) = status_of(&i);
        w.elem("instanceId", &i.id).elem("availabilityZone", &i.availability_zone);
        write_state(w, "instanceState", i.state);
        let down = silent_since(&i).filter(|_| i.state == InstanceState::Running);
        let since = down.as_ref().and_then(|(_, at)| chrono::DateTime::from_timestamp_millis(*at));
        let since = since.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        for (name, value) in [("systemStatus", system), ("instanceStatus", instance)] {
            w.start(name).elem("status", value);
            w.set("details", [()], |w, _| {
                let detail = match value {
                    "ok" => "passed",
                    "initializing" => "initializing",
                    "impaired" => "failed",
                    _ => "insufficient-data",
                };
                w.elem("name", "reachability").elem("status", detail);
                if value == "impaired" {
                    w.opt("impairedSince", since.as_deref());
                }
            });
            w.end();
        }
        w.set("eventsSet", down, |w, (host, _)| {
            w.elem("instanceEventId", format!("instance-event-{}", &i.id[2..]))
                .elem("code", "instance-stop")
                .elem(
                    "description",
                    format!(
                        "The instance's host {host} has stopped reporting. Stop the instance with Force to \
                         release it; its VM is ended when the host returns."
                    ),
                )
                .opt("notBefore", since.as_deref());
        });
    });
    next_token(&mut w, next);
    Ok(w.finish("DescribeInstanceStatus"))
}

fn changes(ctx: &Ctx<'_>, action: &str, list: Vec<StateChange>) -> ActionResult {
    let mut w = ctx.xml(action);
    w.set("instancesSet", list, |w, c| {
        w.elem("instanceId", &c.instance_id);
        write_state(w, "currentState", c.current);
        write_state(w, "previousState", c.previous);
    });
    Ok(w.finish(action))
}

pub(crate) fn start(ctx: &Ctx<'_>, r: InstanceList) -> ActionResult {
    changes(ctx, "StartInstances", ctx.cloud.start_instances(&ctx.scope, &r.instance_ids).ec2()?)
}

pub(crate) fn stop(ctx: &Ctx<'_>, r: InstanceList) -> ActionResult {
    changes(ctx, "StopInstances", ctx.cloud.stop_instances(&ctx.scope, &r.instance_ids, r.force).ec2()?)
}

pub(crate) fn terminate(ctx: &Ctx<'_>, r: InstanceList) -> ActionResult {
    changes(ctx, "TerminateInstances", ctx.cloud.terminate_instances(&ctx.scope, &r.instance_ids).ec2()?)
}

pub(crate) fn reboot(ctx: &Ctx<'_>, r: InstanceList) -> ActionResult {
    ctx.cloud.reboot_instances(&ctx.scope, &r.instance_ids).ec2()?;
    ack(ctx, "RebootInstances")
}

pub(crate) fn console(ctx: &Ctx<'_>, r: GetConsoleOutput) -> ActionResult {
    let bytes = ctx.cloud.console_output(&ctx.scope, &r.instance_id, 64 * 1024).ec2()?;
    let mut w = ctx.xml("GetConsoleOutput");
    w.elem("instanceId", &r.instance_id).elem("timestamp", kiln_store::now());
    if !bytes.is_empty() {
        w.elem("output", base64::engine::general_purpose::STANDARD.encode(&bytes));
    }
    Ok(w.finish("GetConsoleOutput"))
}

pub(crate) fn modify_attribute(ctx: &Ctx<'_>, r: ModifyInstanceAttribute) -> ActionResult {
    let change = match r.change {
        InstanceAttributeChange::InstanceType(t) => InstanceChange::InstanceType(t),
        InstanceAttributeChange::UserData(d) => InstanceChange::UserData(d),
        InstanceAttributeChange::DisableApiTermination(b) => InstanceChange::DisableApiTermination(b),
        InstanceAttributeChange::ShutdownBehavior(s) => InstanceChange::ShutdownBehavior(s),
        InstanceAttributeChange::DisableApiStop(b) => InstanceChange::DisableApiStop(b),
        InstanceAttributeChange::EbsOptimized(b) => InstanceChange::EbsOptimized(b),
        InstanceAttributeChange::SourceDestCheck(b) => InstanceChange::SourceDestCheck(b),
        InstanceAttributeChange::Groups(g) => InstanceChange::Groups(g),
        InstanceAttributeChange::DeleteOnTermination(list) => InstanceChange::DeleteOnTermination(list),
    };
    ctx.cloud.modify_instance(&ctx.scope, &r.instance_id, change).ec2()?;
    ack(ctx, "ModifyInstanceAttribute")
}

pub(crate) fn modify_credit_specification(ctx: &Ctx<'_>, r: ModifyInstanceCreditSpecification) -> ActionResult {
    // Each instance succeeds or fails on its own, as EC2 reports them.
    let mut done = Vec::new();
    let mut failed = Vec::new();
    for (id, credits) in r.specs {
        match ctx.cloud.modify_instance(&ctx.scope, &id, InstanceChange::CpuCredits(credits)) {
            Ok(()) => done.push(id.to_string()),
            Err(e) => {
                let e = crate::errors::to_ec2(e);
                failed.push((id.to_string(), e.code, e.message));
            }
        }
    }
    let mut w = ctx.xml("ModifyInstanceCreditSpecification");
    w.set("successfulInstanceCreditSpecificationSet", done, |w, id| {
        w.elem("instanceId", id);
    });
    w.set("unsuccessfulInstanceCreditSpecificationSet", failed, |w, (id, code, message)| {
        w.elem("instanceId", id).start("error").elem("code", code).elem("message", message).end();
    });
    Ok(w.finish("ModifyInstanceCreditSpecification"))
}

/// MonitorInstances and UnmonitorInstances: detailed monitoring is recorded and shown.
pub(crate) fn set_monitoring(ctx: &Ctx<'_>, action: &str, r: InstanceList) -> ActionResult {
    let on = action == "MonitorInstances";
    ctx.cloud.instances(&ctx.scope, &r.instance_ids).ec2()?;
    for id in &r.instance_ids {
        ctx.cloud.modify_instance(&ctx.scope, id, InstanceChange::Monitoring(on)).ec2()?;
    }
    let mut w = ctx.xml(action);
    w.set("instancesSet", &r.instance_ids, |w, id| {
        w.elem("instanceId", id).start("monitoring").elem("state", if on { "enabled" } else { "disabled" }).end();
    });
    Ok(w.finish(action))
}

pub(crate) fn modify_metadata_options(ctx: &Ctx<'_>, r: ModifyInstanceMetadataOptions) -> ActionResult {
    let change = InstanceChange::MetadataOptions {
        http_tokens: r.http_tokens,
        http_endpoint: r.http_endpoint,
        hop_limit: r.hop_limit,
    };
    ctx.cloud.modify_instance(&ctx.scope, &r.instance_id, change).ec2()?;
    let i = ctx.cloud.instances(&ctx.scope, std::slice::from_ref(&r.instance_id)).ec2()?.remove(0);
    let mut w = ctx.xml("ModifyInstanceMetadataOptions");
    w.elem("instanceId", &i.id);
    write_metadata_options(&mut w, &i, "pending");
    Ok(w.finish("ModifyInstanceMetadataOptions"))
}

pub(crate) fn describe_attribute(ctx: &Ctx<'_>, r: DescribeInstanceAttribute) -> ActionResult {
    let i = ctx.cloud.instances(&ctx.scope, std::slice::from_ref(&r.instance_id)).ec2()?.remove(0);
    let mut w = ctx.xml("DescribeInstanceAttribute");
    w.elem("instanceId", &i.id);
    let value = |w: &mut XmlWriter, name: &'static str, v: String| {
        w.start(name).elem("value", v).end();
    };
    match r.attribute {
        InstanceAttribute::InstanceType => value(&mut w, "instanceType", i.instance_type.clone()),
        InstanceAttribute::UserData => {
            w.start("userData");
            if let Some(d) = &i.user_data {
                w.elem("value", base64::engine::general_purpose::STANDARD.encode(d));
            }
            w.end();
        }
        InstanceAttribute::DisableApiTermination => {
            value(&mut w, "disableApiTermination", i.disable_api_termination.to_string())
        }
        InstanceAttribute::DisableApiStop => value(&mut w, "disableApiStop", i.options.disable_api_stop.to_string()),
        InstanceAttribute::EbsOptimized => value(&mut w, "ebsOptimized", i.options.ebs_optimized.to_string()),
        InstanceAttribute::SourceDestCheck => value(&mut w, "sourceDestCheck", i.options.source_dest_check.to_string()),
        InstanceAttribute::EnaSupport => value(&mut w, "enaSupport", "true".into()),
        InstanceAttribute::Kernel => {
            w.start("kernel").end();
        }
        InstanceAttribute::Ramdisk => {
            w.start("ramdisk").end();
        }
        InstanceAttribute::SriovNetSupport => {
            w.start("sriovNetSupport").end();
        }
        InstanceAttribute::ProductCodes => {
            w.start("productCodes").end();
        }
        InstanceAttribute::EnclaveOptions => {
            w.start("enclaveOptions").elem("enabled", "false").end();
        }
        InstanceAttribute::ShutdownBehavior => {
            value(&mut w, "instanceInitiatedShutdownBehavior", i.shutdown_behavior.to_string())
        }
        InstanceAttribute::RootDeviceName => value(&mut w, "rootDeviceName", i.root_device_name.clone()),
        InstanceAttribute::BlockDeviceMapping => {
            let x = extras(ctx, std::slice::from_ref(&i))?;
            let vols = x.volumes.get(&i.id).cloned().unwrap_or_default();
            w.set("blockDeviceMapping", vols, |w, v| {
                w.elem("deviceName", v.device_name.as_deref().unwrap_or_default());
                w.start("ebs")
                    .elem("volumeId", &v.id)
                    .elem("status", "attached")
                    .elem("attachTime", &v.created_at)
                    .elem("deleteOnTermination", v.delete_on_termination)
                    .end();
            });
        }
        InstanceAttribute::GroupSet => {
            let names = ctx.cloud.security_group_names(&ctx.scope).ec2()?;
            w.set("groupSet", &i.groups, |w, g| {
                w.elem("groupId", g).opt("groupName", names.get(g));
            });
        }
    }
    Ok(w.finish("DescribeInstanceAttribute"))
}
