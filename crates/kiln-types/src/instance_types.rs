//! The instance-type catalog: EC2's families and sizes with AWS's published figures.
//!
//! Figures are those `DescribeInstanceTypes` reports for each type (default vCPUs,
//! cores and threads per core, memory, architectures, sustained clock speed, network
//! performance and interface limits, EBS optimisation, hypervisor, boot modes).
//! None of the catalogued families has instance storage.

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
    /// The wire spelling: `"unsupported"`, `"supported"` or `"default"`.
    pub fn as_str(self) -> &'static str {
        match self {
            EbsOptimizedSupport::Unsupported => "unsupported",
            EbsOptimizedSupport::Supported => "supported",
            EbsOptimizedSupport::Default => "default",
        }
    }
}

/// The hypervisor an instance type runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hypervisor {
    /// Xen (previous-generation types such as t2).
    Xen,
    /// The Nitro system.
    Nitro,
}

impl Hypervisor {
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
    /// Supported processor architectures.
    pub architectures: &'static [Architecture],
    /// Sustained clock speed in GHz.
    pub clock_ghz: f32,
    /// Network performance, exactly as AWS prints it (e.g. `"Up to 5 Gigabit"`).
    pub network_performance: &'static str,
    /// Maximum number of network interfaces.
    pub max_network_interfaces: u32,
    /// Maximum private IPv4 addresses per network interface.
    pub ipv4_per_interface: u32,
    /// Maximum IPv6 addresses per network interface.
    pub ipv6_per_interface: u32,
    /// EBS optimisation support.
    pub ebs_optimized: EbsOptimizedSupport,
    /// Hypervisor.
    pub hypervisor: Hypervisor,
    /// Whether this is a burstable-performance (T) type.
    pub burstable: bool,
    /// Whether the type is free-tier eligible.
    pub free_tier_eligible: bool,
    /// Supported boot modes.
    pub boot_modes: &'static [BootMode],
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

    /// Marks the type free-tier eligible (used while building the table).
    const fn free_tier(mut self) -> Self {
        self.free_tier_eligible = true;
        self
    }
}

const X86: &[Architecture] = &[Architecture::X86_64];
const X86_I386: &[Architecture] = &[Architecture::I386, Architecture::X86_64];
const ARM: &[Architecture] = &[Architecture::Arm64];

const BIOS: &[BootMode] = &[BootMode::LegacyBios];
const BIOS_UEFI: &[BootMode] = &[BootMode::LegacyBios, BootMode::Uefi];
const UEFI: &[BootMode] = &[BootMode::Uefi];

/// What every size of a family (or part of one) has in common.
#[derive(Clone, Copy)]
struct Profile {
    architectures: &'static [Architecture],
    threads_per_core: u32,
    ebs_optimized: EbsOptimizedSupport,
    hypervisor: Hypervisor,
    burstable: bool,
    boot_modes: &'static [BootMode],
}

const fn profile(
    architectures: &'static [Architecture],
    threads_per_core: u32,
    ebs_optimized: EbsOptimizedSupport,
    hypervisor: Hypervisor,
    burstable: bool,
    boot_modes: &'static [BootMode],
) -> Profile {
    Profile { architectures, threads_per_core, ebs_optimized, hypervisor, burstable, boot_modes }
}

use self::EbsOptimizedSupport as Ebs;

// t2 on Xen: nano..medium also report i386; large and up report x86_64 only.
const T2_I386: Profile = profile(X86_I386, 1, Ebs::Unsupported, Hypervisor::Xen, true, BIOS);
const T2: Profile = profile(X86, 1, Ebs::Unsupported, Hypervisor::Xen, true, BIOS);
const T3: Profile = profile(X86, 2, Ebs::Default, Hypervisor::Nitro, true, BIOS_UEFI);
const T3A: Profile = profile(X86, 2, Ebs::Default, Hypervisor::Nitro, true, BIOS_UEFI);
const T4G: Profile = profile(ARM, 1, Ebs::Default, Hypervisor::Nitro, true, UEFI);
const M5: Profile = profile(X86, 2, Ebs::Default, Hypervisor::Nitro, false, BIOS_UEFI);
const M6I: Profile = profile(X86, 2, Ebs::Default, Hypervisor::Nitro, false, BIOS_UEFI);
const M7G: Profile = profile(ARM, 1, Ebs::Default, Hypervisor::Nitro, false, UEFI);
const C5: Profile = profile(X86, 2, Ebs::Default, Hypervisor::Nitro, false, BIOS_UEFI);
const C6I: Profile = profile(X86, 2, Ebs::Default, Hypervisor::Nitro, false, BIOS_UEFI);
const C7G: Profile = profile(ARM, 1, Ebs::Default, Hypervisor::Nitro, false, UEFI);
const R5: Profile = profile(X86, 2, Ebs::Default, Hypervisor::Nitro, false, BIOS_UEFI);
const R6I: Profile = profile(X86, 2, Ebs::Default, Hypervisor::Nitro, false, BIOS_UEFI);
const A1: Profile = profile(ARM, 1, Ebs::Default, Hypervisor::Nitro, false, UEFI);

/// One row of the table. Cores are derived from vCPUs and the family's threads per
/// core; IPv6 addresses per interface equal IPv4 ones for every catalogued type.
#[allow(clippy::too_many_arguments)]
const fn it(
    p: Profile,
    name: &'static str,
    vcpus: u32,
    memory_mib: u64,
    clock_ghz: f32,
    network_performance: &'static str,
    max_network_interfaces: u32,
    ip_per_interface: u32,
) -> InstanceTypeInfo {
    InstanceTypeInfo {
        name,
        vcpus,
        cores: vcpus / p.threads_per_core,
        threads_per_core: p.threads_per_core,
        memory_mib,
        architectures: p.architectures,
        clock_ghz,
        network_performance,
        max_network_interfaces,
        ipv4_per_interface: ip_per_interface,
        ipv6_per_interface: ip_per_interface,
        ebs_optimized: p.ebs_optimized,
        hypervisor: p.hypervisor,
        burstable: p.burstable,
        free_tier_eligible: false,
        boot_modes: p.boot_modes,
    }
}

/// Every catalogued instance type, sorted by family name, then by size
/// (nano, micro, small, medium, large, xlarge, 2xlarge, 4xlarge, ...).
///
/// Columns: profile, name, vCPUs, memory MiB, sustained GHz, network performance,
/// max network interfaces, IPv4 (= IPv6) addresses per interface.
#[rustfmt::skip]
pub static INSTANCE_TYPES: &[InstanceTypeInfo] = &[
    // a1
    it(A1, "a1.medium", 1, 2048, 2.3, "Up to 10 Gigabit", 2, 4),
    it(A1, "a1.large", 2, 4096, 2.3, "Up to 10 Gigabit", 3, 10),
    it(A1, "a1.xlarge", 4, 8192, 2.3, "Up to 10 Gigabit", 4, 15),
    it(A1, "a1.2xlarge", 8, 16384, 2.3, "Up to 10 Gigabit", 4, 15),
    it(A1, "a1.4xlarge", 16, 32768, 2.3, "Up to 10 Gigabit", 8, 30),
    // c5
    it(C5, "c5.large", 2, 4096, 3.4, "Up to 10 Gigabit", 3, 10),
    it(C5, "c5.xlarge", 4, 8192, 3.4, "Up to 10 Gigabit", 4, 15),
    it(C5, "c5.2xlarge", 8, 16384, 3.4, "Up to 10 Gigabit", 4, 15),
    it(C5, "c5.4xlarge", 16, 32768, 3.4, "Up to 10 Gigabit", 8, 30),
    it(C5, "c5.9xlarge", 36, 73728, 3.4, "12 Gigabit", 8, 30),
    it(C5, "c5.12xlarge", 48, 98304, 3.6, "12 Gigabit", 8, 30),
    it(C5, "c5.18xlarge", 72, 147456, 3.4, "25 Gigabit", 15, 50),
    it(C5, "c5.24xlarge", 96, 196608, 3.6, "25 Gigabit", 15, 50),
    // c6i
    it(C6I, "c6i.large", 2, 4096, 3.5, "Up to 12.5 Gigabit", 3, 10),
    it(C6I, "c6i.xlarge", 4, 8192, 3.5, "Up to 12.5 Gigabit", 4, 15),
    it(C6I, "c6i.2xlarge", 8, 16384, 3.5, "Up to 12.5 Gigabit", 4, 15),
    it(C6I, "c6i.4xlarge", 16, 32768, 3.5, "Up to 12.5 Gigabit", 8, 30),
    it(C6I, "c6i.8xlarge", 32, 65536, 3.5, "12.5 Gigabit", 8, 30),
    it(C6I, "c6i.12xlarge", 48, 98304, 3.5, "18.75 Gigabit", 8, 30),
    it(C6I, "c6i.16xlarge", 64, 131072, 3.5, "25 Gigabit", 15, 50),
    it(C6I, "c6i.24xlarge", 96, 196608, 3.5, "37.5 Gigabit", 15, 50),
    it(C6I, "c6i.32xlarge", 128, 262144, 3.5, "50 Gigabit", 15, 50),
    // c7g
    it(C7G, "c7g.medium", 1, 2048, 2.6, "Up to 12.5 Gigabit", 2, 4),
    it(C7G, "c7g.large", 2, 4096, 2.6, "Up to 12.5 Gigabit", 3, 10),
    it(C7G, "c7g.xlarge", 4, 8192, 2.6, "Up to 12.5 Gigabit", 4, 15),
    it(C7G, "c7g.2xlarge", 8, 16384, 2.6, "Up to 15 Gigabit", 4, 15),
    it(C7G, "c7g.4xlarge", 16, 32768, 2.6, "Up to 15 Gigabit", 8, 30),
    it(C7G, "c7g.8xlarge", 32, 65536, 2.6, "15 Gigabit", 8, 30),
    it(C7G, "c7g.12xlarge", 48, 98304, 2.6, "22.5 Gigabit", 8, 30),
    it(C7G, "c7g.16xlarge", 64, 131072, 2.6, "30 Gigabit", 15, 50),
    // m5
    it(M5, "m5.large", 2, 8192, 3.1, "Up to 10 Gigabit", 3, 10),
    it(M5, "m5.xlarge", 4, 16384, 3.1, "Up to 10 Gigabit", 4, 15),
    it(M5, "m5.2xlarge", 8, 32768, 3.1, "Up to 10 Gigabit", 4, 15),
    it(M5, "m5.4xlarge", 16, 65536, 3.1, "Up to 10 Gigabit", 8, 30),
    it(M5, "m5.8xlarge", 32, 131072, 3.1, "10 Gigabit", 8, 30),
    it(M5, "m5.12xlarge", 48, 196608, 3.1, "12 Gigabit", 8, 30),
    it(M5, "m5.16xlarge", 64, 262144, 3.1, "20 Gigabit", 15, 50),
    it(M5, "m5.24xlarge", 96, 393216, 3.1, "25 Gigabit", 15, 50),
    // m6i
    it(M6I, "m6i.large", 2, 8192, 3.5, "Up to 12.5 Gigabit", 3, 10),
    it(M6I, "m6i.xlarge", 4, 16384, 3.5, "Up to 12.5 Gigabit", 4, 15),
    it(M6I, "m6i.2xlarge", 8, 32768, 3.5, "Up to 12.5 Gigabit", 4, 15),
    it(M6I, "m6i.4xlarge", 16, 65536, 3.5, "Up to 12.5 Gigabit", 8, 30),
    it(M6I, "m6i.8xlarge", 32, 131072, 3.5, "12.5 Gigabit", 8, 30),
    it(M6I, "m6i.12xlarge", 48, 196608, 3.5, "18.75 Gigabit", 8, 30),
    it(M6I, "m6i.16xlarge", 64, 262144, 3.5, "25 Gigabit", 15, 50),
    it(M6I, "m6i.24xlarge", 96, 393216, 3.5, "37.5 Gigabit", 15, 50),
    it(M6I, "m6i.32xlarge", 128, 524288, 3.5, "50 Gigabit", 15, 50),
    // m7g
    it(M7G, "m7g.medium", 1, 4096, 2.6, "Up to 12.5 Gigabit", 2, 4),
    it(M7G, "m7g.large", 2, 8192, 2.6, "Up to 12.5 Gigabit", 3, 10),
    it(M7G, "m7g.xlarge", 4, 16384, 2.6, "Up to 12.5 Gigabit", 4, 15),
    it(M7G, "m7g.2xlarge", 8, 32768, 2.6, "Up to 15 Gigabit", 4, 15),
    it(M7G, "m7g.4xlarge", 16, 65536, 2.6, "Up to 15 Gigabit", 8, 30),
    it(M7G, "m7g.8xlarge", 32, 131072, 2.6, "15 Gigabit", 8, 30),
    it(M7G, "m7g.12xlarge", 48, 196608, 2.6, "22.5 Gigabit", 8, 30),
    it(M7G, "m7g.16xlarge", 64, 262144, 2.6, "30 Gigabit", 15, 50),
    // r5
    it(R5, "r5.large", 2, 16384, 3.1, "Up to 10 Gigabit", 3, 10),
    it(R5, "r5.xlarge", 4, 32768, 3.1, "Up to 10 Gigabit", 4, 15),
    it(R5, "r5.2xlarge", 8, 65536, 3.1, "Up to 10 Gigabit", 4, 15),
    it(R5, "r5.4xlarge", 16, 131072, 3.1, "Up to 10 Gigabit", 8, 30),
    it(R5, "r5.8xlarge", 32, 262144, 3.1, "10 Gigabit", 8, 30),
    it(R5, "r5.12xlarge", 48, 393216, 3.1, "12 Gigabit", 8, 30),
    it(R5, "r5.16xlarge", 64, 524288, 3.1, "20 Gigabit", 15, 50),
    it(R5, "r5.24xlarge", 96, 786432, 3.1, "25 Gigabit", 15, 50),
    // r6i
    it(R6I, "r6i.large", 2, 16384, 3.5, "Up to 12.5 Gigabit", 3, 10),
    it(R6I, "r6i.xlarge", 4, 32768, 3.5, "Up to 12.5 Gigabit", 4, 15),
    it(R6I, "r6i.2xlarge", 8, 65536, 3.5, "Up to 12.5 Gigabit", 4, 15),
    it(R6I, "r6i.4xlarge", 16, 131072, 3.5, "Up to 12.5 Gigabit", 8, 30),
    it(R6I, "r6i.8xlarge", 32, 262144, 3.5, "12.5 Gigabit", 8, 30),
    it(R6I, "r6i.12xlarge", 48, 393216, 3.5, "18.75 Gigabit", 8, 30),
    it(R6I, "r6i.16xlarge", 64, 524288, 3.5, "25 Gigabit", 15, 50),
    it(R6I, "r6i.24xlarge", 96, 786432, 3.5, "37.5 Gigabit", 15, 50),
    it(R6I, "r6i.32xlarge", 128, 1048576, 3.5, "50 Gigabit", 15, 50),
    // t2
    it(T2_I386, "t2.nano", 1, 512, 2.4, "Low to Moderate", 2, 2),
    it(T2_I386, "t2.micro", 1, 1024, 2.5, "Low to Moderate", 2, 2).free_tier(),
    it(T2_I386, "t2.small", 1, 2048, 2.5, "Low to Moderate", 3, 4),
    it(T2_I386, "t2.medium", 2, 4096, 2.3, "Low to Moderate", 3, 6),
    it(T2, "t2.large", 2, 8192, 2.3, "Low to Moderate", 3, 12),
    it(T2, "t2.xlarge", 4, 16384, 2.3, "Moderate", 3, 15),
    it(T2, "t2.2xlarge", 8, 32768, 2.3, "Moderate", 3, 15),
    // t3
    it(T3, "t3.nano", 2, 512, 2.5, "Up to 5 Gigabit", 2, 2),
    it(T3, "t3.micro", 2, 1024, 2.5, "Up to 5 Gigabit", 2, 2).free_tier(),
    it(T3, "t3.small", 2, 2048, 2.5, "Up to 5 Gigabit", 3, 4),
    it(T3, "t3.medium", 2, 4096, 2.5, "Up to 5 Gigabit", 3, 6),
    it(T3, "t3.large", 2, 8192, 2.5, "Up to 5 Gigabit", 3, 12),
    it(T3, "t3.xlarge", 4, 16384, 2.5, "Up to 5 Gigabit", 4, 15),
    it(T3, "t3.2xlarge", 8, 32768, 2.5, "Up to 5 Gigabit", 4, 15),
    // t3a
    it(T3A, "t3a.nano", 2, 512, 2.2, "Up to 5 Gigabit", 2, 2),
    it(T3A, "t3a.micro", 2, 1024, 2.2, "Up to 5 Gigabit", 2, 2),
    it(T3A, "t3a.small", 2, 2048, 2.2, "Up to 5 Gigabit", 2, 4),
    it(T3A, "t3a.medium", 2, 4096, 2.2, "Up to 5 Gigabit", 3, 6),
    it(T3A, "t3a.large", 2, 8192, 2.2, "Up to 5 Gigabit", 3, 12),
    it(T3A, "t3a.xlarge", 4, 16384, 2.2, "Up to 5 Gigabit", 4, 15),
    it(T3A, "t3a.2xlarge", 8, 32768, 2.2, "Up to 5 Gigabit", 4, 15),
    // t4g
    it(T4G, "t4g.nano", 2, 512, 2.5, "Up to 5 Gigabit", 2, 2),
    it(T4G, "t4g.micro", 2, 1024, 2.5, "Up to 5 Gigabit", 2, 2),
    it(T4G, "t4g.small", 2, 2048, 2.5, "Up to 5 Gigabit", 3, 4),
    it(T4G, "t4g.medium", 2, 4096, 2.5, "Up to 5 Gigabit", 3, 6),
    it(T4G, "t4g.large", 2, 8192, 2.5, "Up to 5 Gigabit", 3, 12),
    it(T4G, "t4g.xlarge", 4, 16384, 2.5, "Up to 5 Gigabit", 4, 15),
    it(T4G, "t4g.2xlarge", 8, 32768, 2.5, "Up to 5 Gigabit", 4, 15),
];

/// Finds an instance type by its exact API name (e.g. `"m5.large"`).
pub fn lookup(name: &str) -> Option<&'static InstanceTypeInfo> {
    INSTANCE_TYPES.iter().find(|t| t.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn get(name: &str) -> &'static InstanceTypeInfo {
        lookup(name).unwrap_or_else(|| panic!("{name} missing from the catalog"))
    }

    /// Position of a size suffix in EC2's size order.
    fn size_rank(size: &str) -> u32 {
        match size {
            "nano" => 0,
            "micro" => 1,
            "small" => 2,
            "medium" => 3,
            "large" => 4,
            "xlarge" => 5,
            other => {
                let n: u32 = other
                    .strip_suffix("xlarge")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("unknown size {other}"));
                5 + n
            }
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
        assert!(t.supports(Architecture::X86_64));
        assert!(!t.supports(Architecture::I386));
        assert!(!t.supports(Architecture::Arm64));
        assert!(t.burstable);
        assert!(t.free_tier_eligible);
        assert_eq!(t.network_performance, "Up to 5 Gigabit");
        assert_eq!(t.max_network_interfaces, 2);
        assert_eq!(t.ipv4_per_interface, 2);
        assert_eq!(t.hypervisor, Hypervisor::Nitro);
        assert_eq!(t.ebs_optimized, EbsOptimizedSupport::Default);
        assert_eq!(t.boot_modes, &[BootMode::LegacyBios, BootMode::Uefi]);
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
    }

    #[test]
    fn a1_medium() {
        let t = get("a1.medium");
        assert_eq!(t.family(), "a1");
        assert_eq!(t.vcpus, 1);
        assert_eq!(t.memory_mib, 2048);
        assert!(t.supports(Architecture::Arm64));
        assert!(!t.supports(Architecture::X86_64));
        assert_eq!(t.boot_modes, &[BootMode::Uefi]);
    }

    #[test]
    fn t2_is_xen_and_small_sizes_support_i386() {
        let micro = get("t2.micro");
        assert!(micro.supports(Architecture::I386));
        assert!(micro.supports(Architecture::X86_64));
        assert!(micro.free_tier_eligible);
        assert_eq!(micro.hypervisor, Hypervisor::Xen);
        assert_eq!(micro.ebs_optimized, EbsOptimizedSupport::Unsupported);
        assert_eq!(micro.boot_modes, &[BootMode::LegacyBios]);
        assert_eq!(micro.network_performance, "Low to Moderate");
        // AWS reports x86_64 only from t2.large up.
        assert!(!get("t2.large").supports(Architecture::I386));
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
    }

    #[test]
    fn names_are_unique() {
        let mut seen = HashSet::new();
        for t in INSTANCE_TYPES {
            assert!(seen.insert(t.name), "duplicate {}", t.name);
        }
        assert_eq!(seen.len(), 100);
    }

    #[test]
    fn arm_families_support_only_arm64() {
        let arm = ["t4g", "m7g", "c7g", "a1"];
        let mut count = 0;
        for t in INSTANCE_TYPES {
            let is_arm = arm.contains(&t.family());
            if is_arm {
                count += 1;
                assert_eq!(t.architectures.len(), 1, "{}", t.name);
            }
            assert_eq!(t.supports(Architecture::Arm64), is_arm, "{}", t.name);
            assert_eq!(t.supports(Architecture::X86_64), !is_arm, "{}", t.name);
            let boot: &[BootMode] = if is_arm {
                &[BootMode::Uefi]
            } else if t.family() == "t2" {
                &[BootMode::LegacyBios]
            } else {
                &[BootMode::LegacyBios, BootMode::Uefi]
            };
            assert_eq!(t.boot_modes, boot, "{}", t.name);
        }
        assert_eq!(count, 7 + 8 + 8 + 5);
    }

    #[test]
    fn figures_are_consistent() {
        for t in INSTANCE_TYPES {
            let t2 = t.family() == "t2";
            assert_eq!(t.vcpus, t.cores * t.threads_per_core, "{}", t.name);
            assert_eq!(t.ipv4_per_interface, t.ipv6_per_interface, "{}", t.name);
            assert_eq!(t.burstable, t.family().starts_with('t'), "{}", t.name);
            let hv = if t2 { Hypervisor::Xen } else { Hypervisor::Nitro };
            assert_eq!(t.hypervisor, hv, "{}", t.name);
            let ebs = if t2 { EbsOptimizedSupport::Unsupported } else { EbsOptimizedSupport::Default };
            assert_eq!(t.ebs_optimized, ebs, "{}", t.name);
            assert!(t.clock_ghz > 2.0 && t.clock_ghz < 4.0, "{}", t.name);
        }
    }

    #[test]
    fn only_t2_and_t3_micro_are_free_tier() {
        let free: Vec<&str> = INSTANCE_TYPES.iter().filter(|t| t.free_tier_eligible).map(|t| t.name).collect();
        assert_eq!(free, ["t2.micro", "t3.micro"]);
    }

    #[test]
    fn sorted_by_family_then_size() {
        let mut prev: Option<(&str, u32)> = None;
        for t in INSTANCE_TYPES {
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
