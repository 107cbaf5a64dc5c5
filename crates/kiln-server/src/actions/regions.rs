//! DescribeRegions, DescribeAvailabilityZones, DescribeAccountAttributes.

use kiln_ec2::filter::{self, Field};
use kiln_ec2::requests::account::{DescribeAccountAttributes, DescribeAvailabilityZones, DescribeRegions};
use kiln_ec2::Ec2Error;
use kiln_types::{RegionConfig, Zone};

use super::{ActionResult, Ctx, OrEc2};

/// EC2's opt-in status of a region for this Kiln: served regions are enabled (those
/// that EC2 makes accounts opt in to show as opted in); the rest show as not opted in.
fn opt_in_status(region: &RegionConfig, served: bool) -> &'static str {
    match (served, region.opt_in) {
        (true, false) => "opt-in-not-required",
        (true, true) => "opted-in",
        (false, _) => "not-opted-in",
    }
}

pub(crate) fn describe_regions(ctx: &Ctx<'_>, r: DescribeRegions) -> ActionResult {
    // Served regions first, then (with AllRegions) EC2's others, which are not enabled.
    let mut regions: Vec<(RegionConfig, bool)> = ctx.cloud.regions.iter().map(|reg| (reg.clone(), true)).collect();
    let all = r.all_regions || !r.region_names.is_empty();
    if all {
        for reg in RegionConfig::catalog() {
            if ctx.cloud.region(&reg.name).is_none() {
                regions.push((reg, false));
            }
        }
    }
    if !r.region_names.is_empty() {
        if let Some(bad) = r.region_names.iter().find(|n| !regions.iter().any(|(reg, _)| &reg.name == *n)) {
            return Err(Ec2Error::invalid_value(format!("Invalid region: {bad}")));
        }
        regions.retain(|(reg, _)| r.region_names.contains(&reg.name));
    }
    if !r.all_regions && r.region_names.is_empty() {
        regions.retain(|(_, served)| *served);
    }
    let regions = filter::apply(
        regions,
        &r.filters,
        &["region-name", "endpoint", "opt-in-status"],
        |(reg, served), name| match name {
            "region-name" => Field::one(reg.name.clone()),
            "endpoint" => Field::one(ctx.host),
            "opt-in-status" => Field::one(opt_in_status(reg, *served)),
            _ => Field::Unknown,
        },
        |_| Vec::new(),
    )?;
    let mut w = ctx.xml("DescribeRegions");
    w.set("regionInfo", regions, |w, (reg, served)| {
        w.elem("regionName", &reg.name)
            .elem("regionEndpoint", ctx.host)
            .elem("optInStatus", opt_in_status(&reg, served));
    });
    Ok(w.finish("DescribeRegions"))
}

pub(crate) fn describe_zones(ctx: &Ctx<'_>, r: DescribeAvailabilityZones) -> ActionResult {
    let region = ctx.cloud.region(&ctx.scope.region).ok_or_else(Ec2Error::internal)?;
    let mut zones: Vec<&Zone> = region.zones.iter().collect();
    for name in &r.zone_names {
        if region.zone(name).is_none() {
            return Err(Ec2Error::invalid_value(format!("The zone '{name}' does not exist in region {}", region.name)));
        }
    }
    for id in &r.zone_ids {
        if !region.zones.iter().any(|z| &z.id == id) {
            return Err(Ec2Error::invalid_value(format!(
                "The zone ID '{id}' does not exist in region {}",
                region.name
            )));
        }
    }
    if !r.zone_names.is_empty() || !r.zone_ids.is_empty() {
        zones.retain(|z| r.zone_names.contains(&z.name) || r.zone_ids.contains(&z.id));
    }
    // A zone with joined hosts is available while one of them is live; a zone without
    // any is served by this server's own host.
    let liveness = ctx.cloud.zone_liveness().ec2()?;
    let state = |z: &Zone| if liveness.get(&z.name) == Some(&false) { "impaired" } else { "available" };
    let zones = filter::apply(
        zones,
        &r.filters,
        &[
            "zone-name",
            "zone-id",
            "state",
            "region-name",
            "zone-type",
            "group-name",
            "network-border-group",
            "opt-in-status",
            "message",
        ],
        |z, name| match name {
            "zone-name" => Field::one(z.name.clone()),
            "zone-id" => Field::one(z.id.clone()),
            "state" => Field::one(state(z)),
            "region-name" => Field::one(region.name.clone()),
            "zone-type" => Field::one("availability-zone"),
            "group-name" | "network-border-group" => Field::one(region.name.clone()),
            "opt-in-status" => Field::one(opt_in_status(region, true)),
            "message" => Field::Values(Vec::new()),
            _ => Field::Unknown,
        },
        |_| Vec::new(),
    )?;
    let mut w = ctx.xml("DescribeAvailabilityZones");
    w.set("availabilityZoneInfo", zones, |w, z| {
        w.elem("zoneName", &z.name)
            .elem("zoneId", &z.id)
            .elem("zoneState", state(z))
            .elem("regionName", &region.name)
            .elem("zoneType", "availability-zone")
            .elem("groupName", &region.name)
            .elem("networkBorderGroup", &region.name)
            .elem("optInStatus", opt_in_status(region, true))
            .start("messageSet")
            .end();
    });
    Ok(w.finish("DescribeAvailabilityZones"))
}

/// The prefix of the attributes Kiln adds to DescribeAccountAttributes.
const KILN_ATTR: &str = "kiln:";
const KILN_HOST_ATTR: &str = "kiln:host-";

pub(crate) fn describe_account_attributes(ctx: &Ctx<'_>, r: DescribeAccountAttributes) -> ActionResult {
    let default_vpc = ctx.cloud.vpcs(&ctx.scope, &[]).ec2()?.into_iter().find(|v| v.is_default).map(|v| v.id);
    let attrs: Vec<(&str, Vec<String>)> = vec![
        ("supported-platforms", vec!["VPC".into()]),
        ("default-vpc", vec![default_vpc.unwrap_or_else(|| "none".into())]),
        ("max-instances", vec!["20".into()]),
        ("vpc-max-security-groups-per-interface", vec!["5".into()]),
        ("max-elastic-ips", vec!["5".into()]),
        ("vpc-max-elastic-ips", vec!["5".into()]),
    ];
    // Kiln's own attributes are answered only when named, so that a plain call looks
    // exactly like EC2's. The host's are the operator's alone.
    let mut attrs = attrs;
    if r.names.iter().any(|n| n.starts_with(KILN_ATTR)) {
        let cap = ctx.cloud.capacity(&ctx.scope).ec2()?;
        attrs.push(("kiln:vcpu-limit", vec![cap.vcpu_limit.to_string()]));
        attrs.push(("kiln:vcpus-in-use", vec![cap.vcpus_in_use.to_string()]));
        if let Some(h) = cap.host {
            attrs.push(("kiln:host-vcpus", vec![h.vcpus.to_string()]));
            attrs.push(("kiln:host-vcpus-in-use", vec![h.vcpus_in_use.to_string()]));
            attrs.push(("kiln:host-memory-mib", vec![h.memory_mib.to_string()]));
            attrs.push(("kiln:host-memory-mib-in-use", vec![h.memory_mib_in_use.to_string()]));
            attrs.push(("kiln:host-instances", vec![h.instances.to_string()]));
        } else if r.names.iter().any(|n| n.starts_with(KILN_HOST_ATTR)) {
            return Err(Ec2Error::new(
                "UnauthorizedOperation",
                "The host's capacity is shown to the operator account only; ask for kiln:vcpu-limit and kiln:vcpus-in-use instead.",
            ));
        }
    }
    if let Some(bad) = r.names.iter().find(|n| !attrs.iter().any(|(a, _)| a == n)) {
        return Err(Ec2Error::invalid_value(format!("Value ({bad}) for parameter attributeName is invalid.")));
    }
    let mut w = ctx.xml("DescribeAccountAttributes");
    w.set(
        "accountAttributeSet",
        attrs.into_iter().filter(|(a, _)| r.names.is_empty() || r.names.iter().any(|n| n == a)),
        |w, (name, values)| {
            w.elem("attributeName", name);
            w.set("attributeValueSet", values, |w, v| {
                w.elem("attributeValue", v);
            });
        },
    );
    Ok(w.finish("DescribeAccountAttributes"))
}
