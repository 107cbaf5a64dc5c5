//! DescribeInstanceTypes and DescribeInstanceTypeOfferings, from the catalog.

use kiln_ec2::filter::{self, Field};
use kiln_ec2::requests::instance_types::{DescribeInstanceTypeOfferings, DescribeInstanceTypes, LocationType};
use kiln_ec2::{Ec2Error, XmlWriter};
use kiln_types::instance_types::{self, Hypervisor, InstanceTypeInfo};

use super::{next_token, ActionResult, Ctx};

const FILTERS: &[&str] = &[
    "instance-type",
    "vcpu-info.default-vcpus",
    "vcpu-info.default-cores",
    "vcpu-info.default-threads-per-core",
    "memory-info.size-in-mib",
    "processor-info.supported-architecture",
    "processor-info.sustained-clock-speed-in-ghz",
    "current-generation",
    "free-tier-eligible",
    "burstable-performance-supported",
    "bare-metal",
    "hibernation-supported",
    "instance-storage-supported",
    "hypervisor",
    "network-info.network-performance",
    "network-info.maximum-network-interfaces",
    "ebs-info.ebs-optimized-support",
    "supported-boot-mode",
    "supported-root-device-type",
    "supported-usage-class",
    "supported-virtualization-type",
];

fn field(t: &&InstanceTypeInfo, name: &str) -> Field {
    let b = |v: bool| Field::one(v.to_string());
    match name {
        "instance-type" => Field::one(t.name),
        "vcpu-info.default-vcpus" => Field::one(t.vcpus.to_string()),
        "vcpu-info.default-cores" => Field::one(t.cores.to_string()),
        "vcpu-info.default-threads-per-core" => Field::one(t.threads_per_core.to_string()),
        "memory-info.size-in-mib" => Field::one(t.memory_mib.to_string()),
        "processor-info.supported-architecture" => Field::many(t.architectures.iter().map(|a| a.as_str())),
        "processor-info.sustained-clock-speed-in-ghz" => Field::opt(t.sustained_clock_ghz().map(|c| c.to_string())),
        "current-generation" => b(t.current_generation),
        "free-tier-eligible" => b(t.free_tier_eligible),
        "burstable-performance-supported" => b(t.burstable),
        "bare-metal" => b(t.bare_metal()),
        "hibernation-supported" => b(false),
        "instance-storage-supported" => b(t.instance_storage_gb > 0),
        "hypervisor" => Field::opt(t.hypervisor.map(Hypervisor::as_str)),
        "network-info.network-performance" => Field::one(t.network_performance),
        "network-info.maximum-network-interfaces" => Field::one(t.max_network_interfaces.to_string()),
        "network-info.ipv4-addresses-per-interface" => Field::one(t.ipv4_per_interface.to_string()),
        "ebs-info.ebs-optimized-support" => Field::one(t.ebs_optimized.as_str()),
        "supported-boot-mode" => Field::many(t.boot_modes.iter().map(|m| m.as_str())),
        "supported-root-device-type" => Field::one("ebs"),
        "supported-usage-class" => Field::many(["on-demand"]),
        "supported-virtualization-type" => Field::one("hvm"),
        _ => Field::Unknown,
    }
}

fn write_type(w: &mut XmlWriter, t: &InstanceTypeInfo) {
    w.elem("instanceType", t.name)
        .elem("currentGeneration", t.current_generation)
        .elem("freeTierEligible", t.free_tier_eligible)
        .strings("supportedUsageClasses", ["on-demand"])
        .strings("supportedRootDeviceTypes", ["ebs"])
        .strings("supportedVirtualizationTypes", ["hvm"])
        .elem("bareMetal", t.bare_metal())
        .opt("hypervisor", t.hypervisor.map(Hypervisor::as_str));
    w.start("processorInfo")
        .strings("supportedArchitectures", t.architectures.iter().map(|x| x.as_str()))
        .opt("sustainedClockSpeedInGhz", t.sustained_clock_ghz())
        .end();
    w.start("vCpuInfo")
        .elem("defaultVCpus", t.vcpus)
        .elem("defaultCores", t.cores)
        .elem("defaultThreadsPerCore", t.threads_per_core)
        .end();
    w.start("memoryInfo").elem("sizeInMiB", t.memory_mib).end();
    w.elem("instanceStorageSupported", t.instance_storage_gb > 0);
    if t.instance_storage_gb > 0 {
        w.start("instanceStorageInfo").elem("totalSizeInGB", t.instance_storage_gb).end();
    }
    w.start("ebsInfo")
        .elem("ebsOptimizedSupport", t.ebs_optimized.as_str())
        .elem("encryptionSupport", "supported")
        .elem("nvmeSupport", if t.hypervisor == Some(Hypervisor::Xen) { "unsupported" } else { "required" })
        .end();
    w.start("networkInfo")
        .elem("networkPerformance", t.network_performance)
        .elem("maximumNetworkInterfaces", t.max_network_interfaces)
        .elem("maximumNetworkCards", 1)
        .elem("defaultNetworkCardIndex", 0)
        .set("networkCards", [()], |w, _| {
            w.elem("networkCardIndex", 0)
                .elem("networkPerformance", t.network_performance)
                .elem("maximumNetworkInterfaces", t.max_network_interfaces);
        })
        .elem("ipv4AddressesPerInterface", t.ipv4_per_interface)
        .elem("ipv6AddressesPerInterface", t.ipv6_per_interface)
        .elem("ipv6Supported", t.ipv6_per_interface > 0)
        .elem("enaSupport", if t.hypervisor == Some(Hypervisor::Xen) { "unsupported" } else { "required" })
        .elem("efaSupported", "false")
        .elem("encryptionInTransitSupported", "false")
        .end();
    w.start("placementGroupInfo").strings("supportedStrategies", ["cluster", "partition", "spread"]).end();
    w.elem("hibernationSupported", "false")
        .elem("burstablePerformanceSupported", t.burstable)
        .elem("dedicatedHostsSupported", "false")
        .elem("autoRecoverySupported", "true")
        .strings("supportedBootModes", t.boot_modes.iter().map(|x| x.as_str()));
}

pub(crate) fn describe(ctx: &Ctx<'_>, r: DescribeInstanceTypes) -> ActionResult {
    let mut types: Vec<&InstanceTypeInfo> = instance_types::all().iter().collect();
    if !r.instance_types.is_empty() {
        let missing: Vec<&str> =
            r.instance_types.iter().filter(|n| instance_types::lookup(n).is_none()).map(String::as_str).collect();
        if !missing.is_empty() {
            return Err(Ec2Error::new(
                "InvalidInstanceType",
                format!("The following supplied instance types do not exist: [{}]", missing.join(", ")),
            ));
        }
        types.retain(|t| r.instance_types.iter().any(|n| n == t.name));
    }
    let types = filter::apply(types, &r.filters, FILTERS, field, |_| Vec::new())?;
    let (page, next) = ctx.page(types, &r.paging, (5, 100), Some(100))?;
    let mut w = ctx.xml("DescribeInstanceTypes");
    w.set("instanceTypeSet", page, write_type);
    next_token(&mut w, next);
    Ok(w.finish("DescribeInstanceTypes"))
}

pub(crate) fn offerings(ctx: &Ctx<'_>, r: DescribeInstanceTypeOfferings) -> ActionResult {
    let region = ctx.cloud.region(&ctx.scope.region).ok_or_else(Ec2Error::internal)?;
    let locations: Vec<String> = match r.location_type {
        LocationType::Region => vec![region.name.clone()],
        LocationType::AvailabilityZone => region.zones.iter().map(|z| z.name.clone()).collect(),
        LocationType::AvailabilityZoneId => region.zones.iter().map(|z| z.id.clone()).collect(),
    };
    let items: Vec<(&'static str, String)> =
        instance_types::all().iter().flat_map(|t| locations.iter().map(move |l| (t.name, l.clone()))).collect();
    let items = filter::apply(
        items,
        &r.filters,
        &["instance-type", "location"],
        |(t, l), name| match name {
            "instance-type" => Field::one(*t),
            "location" => Field::one(l.clone()),
            _ => Field::Unknown,
        },
        |_| Vec::new(),
    )?;
    let (page, next) = ctx.page(items, &r.paging, (5, 1000), None)?;
    let mut w = ctx.xml("DescribeInstanceTypeOfferings");
    w.set("instanceTypeOfferingSet", page, |w, (t, l)| {
        w.elem("instanceType", t).elem("locationType", r.location_type.as_str()).elem("location", l);
    });
    next_token(&mut w, next);
    Ok(w.finish("DescribeInstanceTypeOfferings"))
}
