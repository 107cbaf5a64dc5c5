//! The instance-type catalog: EC2's whole catalog, current and previous generation, with
//! the figures `DescribeInstanceTypes` reports for each type (default vCPUs, cores and
//! threads per core, memory, architectures, sustained clock speed, network performance
//! and interface limits, EBS optimisation, hypervisor, boot modes, instance storage).
//!
//! The data is `instance_types.tsv` beside this file, compiled in with `include_str!` and
//! parsed on first use. It is generated, one line per type, from moto's dump of EC2's
//! DescribeInstanceTypes (`moto/ec2/resources/instance_types.json.gz`, in the project's
//! venv) by `scripts/gen-instance-types.py`; to regenerate it (after upgrading moto), run
//! that script, which finds the dump in `.venv` or takes its path, and commit the TSV.
//!
//! Left out: the mac* types (`mac1.metal`, `mac2-m2.metal` ...), whose architectures
//! (`x86_64_mac`, `arm64_mac`) [`Architecture`] cannot represent. Every other type is
//! here, GPU, `u-*` and bare metal included. Bare-metal types have no hypervisor. Some
//! types have instance storage, which Kiln does not provide: the figure is only reported.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use crate::Architecture;

/// Whether an instance type supports EBS optimisation, as `DescribeInstanceTypes` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EbsOptimizedSupport {
    /// EBS optimisation is not available (e.g. t2).
    Unsupported,
    /// EBS optimisation can be switched on at launch.
    Supported,
    /// EBS optimisation is always on.
    Default,
}

impl EbsOptimizedSupport {
    /// Every value, for parsing.
    const ALL: [EbsOptimizedSupport; 3] = [Self::Unsupported, Self::Supported, Self::Default];

    /// The wire spelling: `"unsupported"`, `"supported"` or `"default"`.
    pub fn as_str(self) -> &'static str {
        match self {
            EbsOptimizedSupport::Unsupported => "unsupported",
            EbsOptimizedSupport::Supported => "supported",
            EbsOptimizedSupport::Default => "default",
        }
    }
}

/// The hypervisor an instance type runs on (bare-metal types have none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hypervisor {
    /// Xen (t2 and older types such as m4, c4, r4, i3, x1).
    Xen,
    /// The Nitro system.
    Nitro,
}

impl Hypervisor {
    /// Every value, for parsing.
    const ALL: [Hypervisor; 2] = [Self::Xen, Self::Nitro];

    /// The wire spelling: `"xen"` or `"nitro"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Hypervisor::Xen => "xen",
            Hypervisor::Nitro => "nitro",
        }
    }
}

/// A firmware boot mode an instance type supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootMode {
    /// Legacy BIOS boot.
    LegacyBios,
    /// UEFI boot.
    Uefi,
}

impl BootMode {
    /// Every value, in the order EC2 lists them.
    const ALL: [BootMode; 2] = [Self::LegacyBios, Self::Uefi];

    /// The wire spelling: `"legacy-bios"` or `"uefi"`.
    pub fn as_str(self) -> &'static str {
        match self {
            BootMode::LegacyBios => "legacy-bios",
            BootMode::Uefi => "uefi",
        }
    }
}

/// One instance type and its published figures.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceTypeInfo {
    /// The API name, e.g. `"t3.micro"`.
    pub name: &'static str,
    /// Default number of vCPUs.
    pub vcpus: u32,
    /// Default number of physical cores.
    pub cores: u32,
    /// Default threads per core.
    pub threads_per_core: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Supported processor architectures, in [`Architecture::ALL`]'s order.
    pub architectures: &'static [Architecture],
    /// Sustained clock speed in GHz; 0.0 where AWS publishes none (t1, m1, m2, c1).
    pub clock_ghz: f32,
    /// Network performance, exactly as AWS prints it (e.g. `"Up to 5 Gigabit"`).
    pub network_performance: &'static str,
    /// Maximum number of network interfaces.
    pub max_network_interfaces: u32,
    /// Maximum private IPv4 addresses per network interface.
    pub ipv4_per_interface: u32,
    /// Maximum IPv6 addresses per network interface (0: no IPv6).
    pub ipv6_per_interface: u32,
    /// EBS optimisation support.
    pub ebs_optimized: EbsOptimizedSupport,
    /// Hypervisor; `None` for bare-metal types, where `DescribeInstanceTypes` omits it.
    pub hypervisor: Option<Hypervisor>,
    /// Whether this is a burstable-performance type (t2, t3, t3a, t4g).
    pub burstable: bool,
    /// Whether the type is free-tier eligible.
    pub free_tier_eligible: bool,
    /// Supported boot modes, in [`BootMode`]'s order.
    pub boot_modes: &'static [BootMode],
    /// Whether EC2 counts the type as current generation.
    pub current_generation: bool,
    /// Instance store size in GB (0: EBS only). Kiln gives instances no instance
    /// store volumes; the figure is what DescribeInstanceTypes reports.
    pub instance_storage_gb: u32,
}

impl InstanceTypeInfo {
    /// The family part of the name: `"t3"` for `"t3.micro"`.
    pub fn family(&self) -> &'static str {
        let name: &'static str = self.name;
        match name.split_once('.') {
            Some((family, _size)) => family,
            None => name,
        }
    }

    /// Whether the type can run an image of architecture `arch`.
    pub fn supports(&self, arch: Architecture) -> bool {
        self.architectures.contains(&arch)
    }

    /// The sustained clock speed, where AWS publishes one (not for t1, m1, m2, c1).
    pub fn sustained_clock_ghz(&self) -> Option<f32> {
        (self.clock_ghz > 0.0).then_some(self.clock_ghz)
    }

    /// Whether this is a bare-metal type (`*.metal`, `*.metal-48xl` ...): the ones
    /// without a hypervisor.
    pub fn bare_metal(&self) -> bool {
        self.hypervisor.is_none()
    }
}

/// The catalog file, generated by `scripts/gen-instance-types.py`.
const DATA: &str = include_str!("instance_types.tsv");

/// The catalog file's columns, in order; its `# name\tvcpus\t...` line must list exactly these.
const COLUMNS: [&str; 18] = [
    "name",
    "vcpus",
    "cores",
    "threads_per_core",
    "memory_mib",
    "architectures",
    "clock_ghz",
    "network_performance",
    "max_network_interfaces",
    "ipv4_per_interface",
    "ipv6_per_interface",
    "ebs_optimized",
    "hypervisor",
    "burstable",
    "free_tier_eligible",
    "boot_modes",
    "current_generation",
    "instance_storage_gb",
];

/// Every set of architectures, indexed by a bit mask over [`Architecture::ALL`]
/// (bit 0: i386, bit 1: x86_64, bit 2: arm64), each in `ALL`'s order. Parsing never yields
/// the empty set at index 0: a cell names at least one value.
const ARCHITECTURE_SETS: [&[Architecture]; 8] = {
    use crate::Architecture::{Arm64, I386, X86_64};
    [&[], &[I386], &[X86_64], &[I386, X86_64], &[Arm64], &[I386, Arm64], &[X86_64, Arm64], &[I386, X86_64, Arm64]]
};

/// Every set of boot modes, indexed by a bit mask over [`BootMode::ALL`] (as above).
const BOOT_MODE_SETS: [&[BootMode]; 4] =
    [&[], &[BootMode::LegacyBios], &[BootMode::Uefi], &[BootMode::LegacyBios, BootMode::Uefi]];

/// The parsed catalog, with an index by name.
struct Catalog {
    types: Vec<InstanceTypeInfo>,
    by_name: HashMap<&'static str, usize>,
}

static CATALOG: LazyLock<Catalog> = LazyLock::new(|| {
    // `DATA` is fixed at compile time and the unit test `the_shipped_catalog_parses`
    // parses exactly it, so this cannot fail in a build whose tests pass.
    let types = parse(DATA).unwrap_or_else(|e| panic!("instance_types.tsv: {e}"));
    let by_name = types.iter().enumerate().map(|(i, t)| (t.name, i)).collect();
    Catalog { types, by_name }
});

/// Every instance type, sorted by family name, then by size (nano, micro, small, medium,
/// large, xlarge, 2xlarge, 3xlarge, ... by number, the metal variants last).
pub fn all() -> &'static [InstanceTypeInfo] {
    &CATALOG.types
}

/// Finds an instance type by its exact API name (e.g. `"m5.large"`).
pub fn lookup(name: &str) -> Option<&'static InstanceTypeInfo> {
    let catalog: &'static Catalog = &CATALOG;
    catalog.by_name.get(name).map(|&i| &catalog.types[i])
}

/// Parses the catalog file: `#` lines are comments, one of which names the columns (it
/// must list [`COLUMNS`]); every other non-blank line is one type, its cells separated by
/// tabs. Names must be unique. The error names the line and the column at fault.
fn parse(data: &'static str) -> Result<Vec<InstanceTypeInfo>, String> {
    let header = format!("# {}", COLUMNS.join("\t"));
    let mut saw_header = false;
    let mut types = Vec::new();
    let mut names = HashSet::new();
    for (i, line) in data.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}", i + 1);
        if let Some(comment) = line.strip_prefix('#') {
            if comment.trim_start().starts_with("name\t") {
                if line != header {
                    return Err(at(format!("the columns are not Kiln's; expected {header:?}")));
                }
                saw_header = true;
            }
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        if !saw_header {
            return Err(at("a type before the `# name\\tvcpus\\t...` column line".into()));
        }
        let t = parse_row(line).map_err(at)?;
        if !names.insert(t.name) {
            return Err(at(format!("{} is listed twice", t.name)));
        }
        types.push(t);
    }
    if types.is_empty() {
        return Err("no instance types".into());
    }
    Ok(types)
}

/// One row of the catalog file (see [`COLUMNS`]).
fn parse_row(line: &'static str) -> Result<InstanceTypeInfo, String> {
    let cells: Vec<&'static str> = line.split('\t').collect();
    let &[name, vcpus, cores, threads_per_core, memory_mib, architectures, clock_ghz, network_performance, max_network_interfaces, ipv4_per_interface, ipv6_per_interface, ebs_optimized, hypervisor, burstable, free_tier_eligible, boot_modes, current_generation, instance_storage_gb] =
        cells.as_slice()
    else {
        return Err(format!("{} cells, expected {}: {line:?}", cells.len(), COLUMNS.len()));
    };
    let in_type = |e: String| format!("{name}: {e}");
    let shaped = matches!(name.split_once('.'), Some((f, s)) if !f.is_empty() && !s.is_empty() && !s.contains('.'));
    if !shaped || name.contains(char::is_whitespace) {
        return Err(format!("name: {name:?} is not shaped family.size"));
    }
    if network_performance.trim().is_empty() {
        return Err(in_type("network_performance: empty".into()));
    }
    let t = InstanceTypeInfo {
        name,
        vcpus: number("vcpus", vcpus).map_err(in_type)?,
        cores: number("cores", cores).map_err(in_type)?,
        threads_per_core: number("threads_per_core", threads_per_core).map_err(in_type)?,
        memory_mib: number("memory_mib", memory_mib).map_err(in_type)?,
        architectures: set_of(
            "architectures",
            architectures,
            &Architecture::ALL,
            &ARCHITECTURE_SETS,
            Architecture::as_str,
        )
        .map_err(in_type)?,
        clock_ghz: clock("clock_ghz", clock_ghz).map_err(in_type)?,
        network_performance,
        max_network_interfaces: number("max_network_interfaces", max_network_interfaces).map_err(in_type)?,
        ipv4_per_interface: number("ipv4_per_interface", ipv4_per_interface).map_err(in_type)?,
        ipv6_per_interface: number("ipv6_per_interface", ipv6_per_interface).map_err(in_type)?,
        ebs_optimized: one_of("ebs_optimized", ebs_optimized, &EbsOptimizedSupport::ALL, EbsOptimizedSupport::as_str)
            .map_err(in_type)?,
        hypervisor: match hypervisor {
            "-" => None,
            h => Some(one_of("hypervisor", h, &Hypervisor::ALL, Hypervisor::as_str).map_err(in_type)?),
        },
        burstable: flag("burstable", burstable).map_err(in_type)?,
        free_tier_eligible: flag("free_tier_eligible", free_tier_eligible).map_err(in_type)?,
        boot_modes: set_of("boot_modes", boot_modes, &BootMode::ALL, &BOOT_MODE_SETS, BootMode::as_str)
            .map_err(in_type)?,
        current_generation: flag("current_generation", current_generation).map_err(in_type)?,
        instance_storage_gb: number("instance_storage_gb", instance_storage_gb).map_err(in_type)?,
    };
    if t.vcpus == 0 || t.cores.checked_mul(t.threads_per_core) != Some(t.vcpus) {
        return Err(in_type(format!("{} vCPUs is not {} cores x {} threads", t.vcpus, t.cores, t.threads_per_core)));
    }
    Ok(t)
}

fn number<T: std::str::FromStr>(column: &str, cell: &str) -> Result<T, String> {
    cell.parse().map_err(|_| format!("{column}: {cell:?} is not a number"))
}

/// A sustained clock speed in GHz, or `-` for none (0.0).
fn clock(column: &str, cell: &str) -> Result<f32, String> {
    if cell == "-" {
        return Ok(0.0);
    }
    match cell.parse::<f32>() {
        Ok(ghz) if ghz.is_finite() && ghz > 0.0 => Ok(ghz),
        _ => Err(format!("{column}: {cell:?} is neither a speed in GHz nor `-`")),
    }
}

fn flag(column: &str, cell: &str) -> Result<bool, String> {
    match cell {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("{column}: {cell:?} is neither `true` nor `false`")),
    }
}

/// One of `all`, by its wire spelling.
fn one_of<T: Copy>(column: &str, cell: &str, all: &[T], spelling: fn(T) -> &'static str) -> Result<T, String> {
    all.iter().copied().find(|&x| spelling(x) == cell).ok_or_else(|| {
        let known: Vec<&str> = all.iter().map(|&x| spelling(x)).collect();
        format!("{column}: {cell:?} is not one of {}", known.join(", "))
    })
}

/// A comma-separated, non-empty set of values from `all`, as the static slice of `sets`
/// (indexed by a bit mask over `all`) that holds them.
fn set_of<T: Copy>(
    column: &str,
    cell: &str,
    all: &[T],
    sets: &[&'static [T]],
    spelling: fn(T) -> &'static str,
) -> Result<&'static [T], String> {
    let mut mask = 0;
    for item in cell.split(',') {
        let bit = match all.iter().position(|&x| spelling(x) == item) {
            Some(i) => 1 << i,
            None => return Err(format!("{column}: {item:?} (in {cell:?}) is not known")),
        };
        if mask & bit != 0 {
            return Err(format!("{column}: {item:?} is listed twice in {cell:?}"));
        }
        mask |= bit;
    }
    Ok(sets[mask])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Architecture::{Arm64, I386, X86_64};
    use std::collections::BTreeSet;

    fn get(name: &str) -> &'static InstanceTypeInfo {
        lookup(name).unwrap_or_else(|| panic!("{name} missing from the catalog"))
    }

    /// Position of a size suffix in EC2's size order: nano ... xlarge, Nxlarge by N, then
    /// metal, metal-Nxl by N.
    fn size_rank(size: &str) -> (u32, u32) {
        let number = |n: Option<&str>| n.and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("unknown size {size}"));
        match size {
            "nano" => (0, 0),
            "micro" => (0, 1),
            "small" => (0, 2),
            "medium" => (0, 3),
            "large" => (0, 4),
            "xlarge" => (0, 5),
            "metal" => (1, 0),
            other if other.starts_with("metal-") => {
                (1, number(other.strip_prefix("metal-").and_then(|n| n.strip_suffix("xl"))))
            }
            other => (0, 4 + number(other.strip_suffix("xlarge"))),
        }
    }

    fn families(pred: impl Fn(&InstanceTypeInfo) -> bool) -> BTreeSet<&'static str> {
        all().iter().filter(|t| pred(t)).map(|t| t.family()).collect()
    }

    #[test]
    fn the_shipped_catalog_parses() {
        // Proves the `expect` in CATALOG cannot fire: this is the very text it parses.
        let types = parse(DATA).unwrap_or_else(|e| panic!("instance_types.tsv: {e}"));
        let rows = DATA.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).count();
        assert_eq!(types.len(), rows, "every row is a type");
        assert!(types.len() > 1300, "EC2's whole catalog, not {}", types.len());
        assert_eq!(all(), types.as_slice());
        for t in all() {
            assert!(std::ptr::eq(get(t.name), t), "{}", t.name);
        }
    }

    #[test]
    fn bad_rows_are_errors_naming_line_and_column() {
        let header = format!("# {}\n", COLUMNS.join("\t"));
        let good = "t3.micro\t2\t1\t2\t1024\tx86_64\t2.5\tUp to 5 Gigabit\t2\t2\t2\tdefault\tnitro\ttrue\ttrue\tlegacy-bios,uefi\ttrue\t0";
        let ok = |rows: &str| -> Result<Vec<InstanceTypeInfo>, String> {
            parse(Box::leak(format!("# comment\n{header}{rows}\n").into_boxed_str()))
        };
        let t = &ok(good).expect("a good row parses")[0];
        assert_eq!(t, get("t3.micro"));
        let err = |rows: &str| ok(rows).expect_err("a bad row is an error");
        let bad = |from: &str, to: &str| err(&good.replacen(from, to, 1));
        assert_eq!(bad("\t1024\t", "\tlots\t"), "line 3: t3.micro: memory_mib: \"lots\" is not a number");
        assert_eq!(
            bad("x86_64", "x86_64_mac"),
            "line 3: t3.micro: architectures: \"x86_64_mac\" (in \"x86_64_mac\") is not known"
        );
        assert!(bad("x86_64", "x86_64,x86_64").contains("listed twice"));
        assert!(bad("\tnitro", "\tkvm").contains("hypervisor: \"kvm\" is not one of xen, nitro"));
        assert!(bad("\tdefault", "\tmaybe").contains("ebs_optimized"));
        assert!(bad("\ttrue\ttrue\t", "\tyes\ttrue\t").contains("burstable: \"yes\""));
        assert!(bad("legacy-bios,uefi", "").contains("boot_modes"));
        assert!(bad("\t2.5\t", "\t0\t").contains("clock_ghz"));
        assert!(bad("\t2\t1\t2\t", "\t3\t1\t2\t").contains("3 vCPUs is not 1 cores x 2 threads"));
        assert!(bad("t3.micro", "t3micro").starts_with("line 3: name:"));
        assert!(err(&good.replace("\t0", "")).contains("17 cells, expected 18"));
        assert!(err(&format!("{good}\n{good}")).starts_with("line 4: t3.micro is listed twice"));
        assert!(err("").contains("no instance types"));
        assert!(parse(Box::leak(good.to_string().into_boxed_str()))
            .expect_err("no column line")
            .contains("column line"));
        let swapped = DATA.replacen("\tvcpus\tcores\t", "\tcores\tvcpus\t", 1);
        assert!(parse(Box::leak(swapped.into_boxed_str())).expect_err("columns swapped").contains("not Kiln's"));
        // Absent values.
        let metal = &ok(&good.replace("\t2.5\t", "\t-\t").replace("\tnitro\t", "\t-\t")).expect("`-` is absent")[0];
        assert_eq!((metal.sustained_clock_ghz(), metal.hypervisor), (None, None));
    }

    #[test]
    fn value_sets_are_indexed_by_mask() {
        for (mask, set) in ARCHITECTURE_SETS.iter().enumerate() {
            let want: Vec<Architecture> =
                Architecture::ALL.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, &a)| a).collect();
            assert_eq!(*set, want.as_slice());
        }
        for (mask, set) in BOOT_MODE_SETS.iter().enumerate() {
            let want: Vec<BootMode> =
                BootMode::ALL.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, &b)| b).collect();
            assert_eq!(*set, want.as_slice());
        }
    }

    #[test]
    fn t3_micro() {
        let t = get("t3.micro");
        assert_eq!(t.family(), "t3");
        assert_eq!(t.vcpus, 2);
        assert_eq!(t.cores, 1);
        assert_eq!(t.threads_per_core, 2);
        assert_eq!(t.memory_mib, 1024);
        assert!(t.supports(X86_64));
        assert!(!t.supports(I386));
        assert!(!t.supports(Arm64));
        assert!(t.burstable);
        assert!(t.free_tier_eligible);
        assert!(t.current_generation);
        assert_eq!(t.network_performance, "Up to 5 Gigabit");
        assert_eq!(t.max_network_interfaces, 2);
        assert_eq!(t.ipv4_per_interface, 2);
        assert_eq!(t.hypervisor, Some(Hypervisor::Nitro));
        assert_eq!(t.ebs_optimized, EbsOptimizedSupport::Default);
        assert_eq!(t.boot_modes, &[BootMode::LegacyBios, BootMode::Uefi]);
        assert_eq!(t.sustained_clock_ghz(), Some(2.5));
    }

    #[test]
    fn m5_large() {
        let t = get("m5.large");
        assert_eq!(t.vcpus, 2);
        assert_eq!(t.cores, 1);
        assert_eq!(t.memory_mib, 8192);
        assert!(!t.burstable);
        assert!(!t.free_tier_eligible);
        assert_eq!(t.network_performance, "Up to 10 Gigabit");
        assert_eq!(t.max_network_interfaces, 3);
        assert_eq!(t.ipv4_per_interface, 10);
        // EC2 (as moto's dump records it) now lists m5 with the previous generation.
        assert!(!t.current_generation);
    }

    #[test]
    fn a1_medium() {
        let t = get("a1.medium");
        assert_eq!(t.family(), "a1");
        assert_eq!(t.vcpus, 1);
        assert_eq!(t.memory_mib, 2048);
        assert!(t.supports(Arm64));
        assert!(!t.supports(X86_64));
        assert_eq!(t.boot_modes, &[BootMode::Uefi]);
    }

    #[test]
    fn t2_is_xen_and_small_sizes_support_i386() {
        let micro = get("t2.micro");
        assert!(micro.supports(I386));
        assert!(micro.supports(X86_64));
        // EC2 no longer counts t2.micro as free-tier eligible.
        assert!(!micro.free_tier_eligible);
        assert!(micro.current_generation);
        assert_eq!(micro.hypervisor, Some(Hypervisor::Xen));
        assert_eq!(micro.ebs_optimized, EbsOptimizedSupport::Unsupported);
        assert_eq!(micro.boot_modes, &[BootMode::LegacyBios]);
        assert_eq!(micro.network_performance, "Low to Moderate");
        // AWS reports x86_64 only from t2.large up.
        assert!(!get("t2.large").supports(I386));
        assert_eq!(get("t2.xlarge").network_performance, "Moderate");
    }

    #[test]
    fn spot_checks() {
        assert_eq!(get("c5.9xlarge").network_performance, "12 Gigabit");
        assert_eq!(get("c5.9xlarge").memory_mib, 73_728);
        assert_eq!(get("m6i.32xlarge").network_performance, "50 Gigabit");
        assert_eq!(get("m6i.32xlarge").vcpus, 128);
        assert_eq!(get("r6i.32xlarge").memory_mib, 1_048_576);
        assert_eq!(get("m7g.16xlarge").network_performance, "30 Gigabit");
        assert_eq!(get("t3a.small").max_network_interfaces, 2);
        assert_eq!(get("t3.small").max_network_interfaces, 3);
        assert_eq!(get("r5.24xlarge").memory_mib, 786_432);
        // Beyond the families Kiln used to list: GPU, high-memory, dense storage.
        let p5 = get("p5.48xlarge");
        assert_eq!((p5.vcpus, p5.memory_mib, p5.network_performance), (192, 2_097_152, "3200 Gigabit"));
        assert_eq!(p5.instance_storage_gb, 30_400);
        let u = get("u-6tb1.112xlarge");
        assert_eq!((u.family(), u.vcpus, u.cores, u.memory_mib), ("u-6tb1", 448, 224, 6_291_456));
        assert_eq!(get("d3en.12xlarge").instance_storage_gb, 335_520);
        assert_eq!(get("c7i-flex.large").family(), "c7i-flex");
    }

    #[test]
    fn bare_metal_types_have_no_hypervisor() {
        let m = get("m5.metal");
        assert!(m.bare_metal());
        assert_eq!(m.hypervisor, None);
        assert_eq!((m.vcpus, m.memory_mib), (96, 393_216));
        assert!(get("c7i.metal-24xl").bare_metal());
        assert!(!get("m5.24xlarge").bare_metal());
        for t in all() {
            let (_, size) = t.name.split_once('.').expect("family.size");
            assert_eq!(t.bare_metal(), size.starts_with("metal"), "{}", t.name);
        }
    }

    #[test]
    fn mac_types_are_left_out() {
        assert!(lookup("mac1.metal").is_none());
        assert!(lookup("mac2-m2pro.metal").is_none());
        assert!(all().iter().all(|t| !t.family().starts_with("mac")));
    }

    #[test]
    fn architectures_and_boot_modes() {
        for t in all() {
            if t.supports(Arm64) {
                assert_eq!(t.architectures, &[Arm64], "{}", t.name);
                assert_eq!(t.boot_modes, &[BootMode::Uefi], "{}", t.name);
            } else {
                assert!(t.supports(X86_64), "{}", t.name);
                assert!(t.boot_modes.contains(&BootMode::LegacyBios), "{}", t.name);
            }
        }
        let arm = families(|t| t.supports(Arm64));
        assert!(["a1", "t4g", "m7g", "c7g", "r8g", "x2gd", "g5g"].iter().all(|f| arm.contains(f)), "{arm:?}");
        assert!(arm.iter().all(|f| f.contains('g') || *f == "a1"), "{arm:?}");
        let i386: Vec<&str> = all().iter().filter(|t| t.supports(I386)).map(|t| t.name).collect();
        assert_eq!(
            i386,
            [
                "c1.medium",
                "c3.large",
                "m1.small",
                "m1.medium",
                "t1.micro",
                "t2.nano",
                "t2.micro",
                "t2.small",
                "t2.medium"
            ]
        );
    }

    #[test]
    fn figures_are_consistent() {
        for t in all() {
            assert_eq!(t.vcpus, t.cores * t.threads_per_core, "{}", t.name);
            assert!(matches!(t.threads_per_core, 1 | 2), "{}", t.name);
            assert!(t.memory_mib >= 512 && t.max_network_interfaces >= 2 && t.ipv4_per_interface >= 2, "{}", t.name);
            assert!(t.ipv6_per_interface == t.ipv4_per_interface || t.ipv6_per_interface == 0, "{}", t.name);
            let t_family = ["t2", "t3", "t3a", "t4g"].contains(&t.family());
            assert_eq!(t.burstable, t_family, "{}", t.name);
            match t.sustained_clock_ghz() {
                Some(ghz) => assert!((1.5..=6.0).contains(&ghz), "{}", t.name),
                None => assert!(["t1", "m1", "m2", "c1"].contains(&t.family()), "{}", t.name),
            }
            if t.hypervisor == Some(Hypervisor::Xen) {
                assert!(t.boot_modes == [BootMode::LegacyBios], "{}", t.name);
            }
        }
        assert_eq!(families(|t| t.hypervisor.is_some_and(|h| h == Hypervisor::Xen)).len(), 17);
    }

    #[test]
    fn previous_generations_are_there_with_their_figures() {
        let small = get("m1.small");
        assert!(!small.current_generation);
        assert_eq!((small.vcpus, small.memory_mib), (1, 1740));
        assert_eq!(small.instance_storage_gb, 160);
        assert_eq!(small.ipv6_per_interface, 0);
        assert!(small.supports(I386));
        assert_eq!(small.sustained_clock_ghz(), None);
        let micro = get("t1.micro");
        assert!(!micro.current_generation);
        assert_eq!((micro.memory_mib, micro.network_performance), (627, "Very Low"));
        assert_eq!(get("m4.large").sustained_clock_ghz(), Some(2.4));
        let previous = families(|t| !t.current_generation);
        for f in ["t1", "m1", "m2", "m3", "m4", "c1", "c3", "c4", "r3", "r4", "m5", "c5", "r5", "a1"] {
            assert!(previous.contains(f), "{f} is previous generation");
        }
        // A family is all of one generation.
        assert!(previous.is_disjoint(&families(|t| t.current_generation)), "{previous:?}");
        assert!(all().iter().filter(|t| t.current_generation).count() > 1200);
    }

    #[test]
    fn free_tier_types_are_ec2s() {
        let free: Vec<&str> = all().iter().filter(|t| t.free_tier_eligible).map(|t| t.name).collect();
        assert_eq!(
            free,
            [
                "c7i-flex.large",
                "m7i-flex.large",
                "t3.micro",
                "t3.small",
                "t4g.micro",
                "t4g.small",
                "t8i.micro",
                "t8i.small"
            ]
        );
    }

    #[test]
    fn sorted_by_family_then_size() {
        let mut prev: Option<(&str, (u32, u32))> = None;
        for t in all() {
            let (family, size) = t.name.split_once('.').unwrap_or_else(|| panic!("{} has no size", t.name));
            assert_eq!(family, t.family());
            let rank = size_rank(size);
            if let Some((prev_family, prev_rank)) = prev {
                assert!(
                    family > prev_family || (family == prev_family && rank > prev_rank),
                    "{} is out of order",
                    t.name
                );
            }
            prev = Some((family, rank));
        }
        assert_eq!(size_rank("2xlarge"), (0, 6));
        assert!(size_rank("xlarge") < size_rank("2xlarge") && size_rank("224xlarge") < size_rank("metal"));
        assert!(size_rank("metal-24xl") < size_rank("metal-48xl"));
    }

    #[test]
    fn lookup_unknown_is_none() {
        assert!(lookup("nope.large").is_none());
        assert!(lookup("").is_none());
        assert!(lookup("T3.MICRO").is_none());
    }

    #[test]
    fn wire_spellings() {
        assert_eq!(EbsOptimizedSupport::Unsupported.as_str(), "unsupported");
        assert_eq!(EbsOptimizedSupport::Supported.as_str(), "supported");
        assert_eq!(EbsOptimizedSupport::Default.as_str(), "default");
        assert_eq!(Hypervisor::Xen.as_str(), "xen");
        assert_eq!(Hypervisor::Nitro.as_str(), "nitro");
        assert_eq!(BootMode::LegacyBios.as_str(), "legacy-bios");
        assert_eq!(BootMode::Uefi.as_str(), "uefi");
    }
}
