//! The instance-type catalog: EC2's families and sizes with AWS's published figures.
//!
//! Figures are those `DescribeInstanceTypes` reports for each type (default vCPUs,
//! cores and threads per core, memory, architectures, sustained clock speed, network
//! performance and interface limits, EBS optimisation, hypervisor, boot modes).
//! Previous-generation families (t1, m1, m2, m3, m4, c1, c3, c4, r3, r4) are listed
//! with their figures too; some have instance storage, which Kiln does not provide.

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
    /// Whether EC2 counts the type as current generation (false for t1, m1 … r4).
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

    /// Marks the type free-tier eligible (used while building the table).
    const fn free_tier(mut self) -> Self {
        self.free_tier_eligible = true;
        self
    }

    /// Marks a previous-generation type (used while building the table).
    const fn previous(mut self) -> Self {
        self.current_generation = false;
        self
    }

    /// A type without IPv6 (used while building the table).
    const fn ipv4_only(mut self) -> Self {
        self.ipv6_per_interface = 0;
        self
    }

    /// A type with instance store of `gb` GB (used while building the table).
    const fn storage(mut self, gb: u32) -> Self {
        self.instance_storage_gb = gb;
        self
    }

    /// The sustained clock speed, where AWS publishes one (not for t1, m1, m2, c1).
    pub fn sustained_clock_ghz(&self) -> Option<f32> {
        (self.clock_ghz > 0.0).then_some(self.clock_ghz)
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
/// No published sustained clock speed (t1, m1, m2, c1).
const NULL_GHZ: f32 = 0.0;

// Previous generation (figures from DescribeInstanceTypes as moto's dump records them;
// no published clock speed for t1, m1, m2 and c1: 0.0 means none).
const C1_I386: Profile = profile(X86_I386, 1, Ebs::Unsupported, Hypervisor::Xen, false, BIOS); // c1.medium
const C1: Profile = profile(X86, 1, Ebs::Supported, Hypervisor::Xen, false, BIOS); // c1.xlarge
const C3_I386: Profile = profile(X86_I386, 2, Ebs::Unsupported, Hypervisor::Xen, false, BIOS); // c3.large
const C3: Profile = profile(X86, 2, Ebs::Supported, Hypervisor::Xen, false, BIOS); // c3.xlarge, c3.2xlarge, c3.4xlarge
const C3_8XL: Profile = profile(X86, 2, Ebs::Unsupported, Hypervisor::Xen, false, BIOS); // c3.8xlarge
const C4: Profile = profile(X86, 2, Ebs::Default, Hypervisor::Xen, false, BIOS); // all c4
const M1_I386: Profile = profile(X86_I386, 1, Ebs::Unsupported, Hypervisor::Xen, false, BIOS); // m1.small, m1.medium
const M1: Profile = profile(X86, 1, Ebs::Supported, Hypervisor::Xen, false, BIOS); // m1.large, m1.xlarge
const M2_XL: Profile = profile(X86, 1, Ebs::Unsupported, Hypervisor::Xen, false, BIOS); // m2.xlarge
const M2: Profile = profile(X86, 1, Ebs::Supported, Hypervisor::Xen, false, BIOS); // m2.2xlarge, m2.4xlarge
const M3_MEDIUM: Profile = profile(X86, 1, Ebs::Unsupported, Hypervisor::Xen, false, BIOS); // m3.medium (1 vCPU = 1 core x 1 thread)
const M3_LARGE: Profile = profile(X86, 2, Ebs::Unsupported, Hypervisor::Xen, false, BIOS); // m3.large
const M3: Profile = profile(X86, 2, Ebs::Supported, Hypervisor::Xen, false, BIOS); // m3.xlarge, m3.2xlarge
const M4: Profile = profile(X86, 2, Ebs::Default, Hypervisor::Xen, false, BIOS); // all m4
const R3_NOEBS: Profile = profile(X86, 2, Ebs::Unsupported, Hypervisor::Xen, false, BIOS); // r3.large, r3.8xlarge
const R3: Profile = profile(X86, 2, Ebs::Supported, Hypervisor::Xen, false, BIOS); // r3.xlarge, r3.2xlarge, r3.4xlarge
const R4: Profile = profile(X86, 2, Ebs::Default, Hypervisor::Xen, false, BIOS); // all r4
const T1: Profile = profile(X86_I386, 1, Ebs::Unsupported, Hypervisor::Xen, false, BIOS); // t1.micro (BurstablePerformanceSupported: false)

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
        current_generation: true,
        instance_storage_gb: 0,
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
    // c1
    it(C1_I386, "c1.medium", 2, 1740, NULL_GHZ, "Moderate", 2, 6).ipv4_only().storage(350).previous(),
    it(C1, "c1.xlarge", 8, 7168, NULL_GHZ, "High", 4, 15).ipv4_only().storage(1680).previous(),
    // c3
    it(C3_I386, "c3.large", 2, 3840, 2.8, "Moderate", 3, 10).storage(32).previous(),
    it(C3, "c3.xlarge", 4, 7680, 2.8, "Moderate", 4, 15).storage(80).previous(),
    it(C3, "c3.2xlarge", 8, 15360, 2.8, "High", 4, 15).storage(160).previous(),
    it(C3, "c3.4xlarge", 16, 30720, 2.8, "High", 8, 30).storage(320).previous(),
    it(C3_8XL, "c3.8xlarge", 32, 61440, 2.8, "10 Gigabit", 8, 30).storage(640).previous(),
    // c4
    it(C4, "c4.large", 2, 3840, 2.9, "Moderate", 3, 10).previous(),
    it(C4, "c4.xlarge", 4, 7680, 2.9, "High", 4, 15).previous(),
    it(C4, "c4.2xlarge", 8, 15360, 2.9, "High", 4, 15).previous(),
    it(C4, "c4.4xlarge", 16, 30720, 2.9, "High", 8, 30).previous(),
    it(C4, "c4.8xlarge", 36, 61440, 2.9, "10 Gigabit", 8, 30).previous(),
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
    // m1
    it(M1_I386, "m1.small", 1, 1740, NULL_GHZ, "Low", 2, 4).ipv4_only().storage(160).previous(),
    it(M1_I386, "m1.medium", 1, 3788, NULL_GHZ, "Moderate", 2, 6).ipv4_only().storage(410).previous(),
    it(M1, "m1.large", 2, 7680, NULL_GHZ, "Moderate", 3, 10).ipv4_only().storage(840).previous(),
    it(M1, "m1.xlarge", 4, 15360, NULL_GHZ, "High", 4, 15).ipv4_only().storage(1680).previous(),
    // m2
    it(M2_XL, "m2.xlarge", 2, 17510, NULL_GHZ, "Moderate", 4, 15).ipv4_only().storage(420).previous(),
    it(M2, "m2.2xlarge", 4, 35020, NULL_GHZ, "Moderate", 4, 30).ipv4_only().storage(850).previous(),
    it(M2, "m2.4xlarge", 8, 70041, NULL_GHZ, "High", 8, 30).ipv4_only().storage(1680).previous(),
    // m3
    it(M3_MEDIUM, "m3.medium", 1, 3840, 2.5, "Moderate", 2, 6).ipv4_only().storage(4).previous(),
    it(M3_LARGE, "m3.large", 2, 7680, 2.5, "Moderate", 3, 10).ipv4_only().storage(32).previous(),
    it(M3, "m3.xlarge", 4, 15360, 2.5, "High", 4, 15).ipv4_only().storage(80).previous(),
    it(M3, "m3.2xlarge", 8, 30720, 2.5, "High", 4, 30).ipv4_only().storage(160).previous(),
    // m4
    it(M4, "m4.large", 2, 8192, 2.4, "Moderate", 2, 10).previous(),
    it(M4, "m4.xlarge", 4, 16384, 2.4, "High", 4, 15).previous(),
    it(M4, "m4.2xlarge", 8, 32768, 2.4, "High", 4, 15).previous(),
    it(M4, "m4.4xlarge", 16, 65536, 2.4, "High", 8, 30).previous(),
    it(M4, "m4.10xlarge", 40, 163840, 2.4, "10 Gigabit", 8, 30).previous(),
    it(M4, "m4.16xlarge", 64, 262144, 2.3, "25 Gigabit", 8, 30).previous(),
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
    // r3
    it(R3_NOEBS, "r3.large", 2, 15360, 2.5, "Moderate", 3, 10).storage(32).previous(),
    it(R3, "r3.xlarge", 4, 31232, 2.5, "Moderate", 4, 15).storage(80).previous(),
    it(R3, "r3.2xlarge", 8, 62464, 2.5, "High", 4, 15).storage(160).previous(),
    it(R3, "r3.4xlarge", 16, 124928, 2.5, "High", 8, 30).storage(320).previous(),
    it(R3_NOEBS, "r3.8xlarge", 32, 249856, 2.5, "10 Gigabit", 8, 30).storage(640).previous(),
    // r4
    it(R4, "r4.large", 2, 15616, 2.3, "Up to 10 Gigabit", 3, 10).previous(),
    it(R4, "r4.xlarge", 4, 31232, 2.3, "Up to 10 Gigabit", 4, 15).previous(),
    it(R4, "r4.2xlarge", 8, 62464, 2.3, "Up to 10 Gigabit", 4, 15).previous(),
    it(R4, "r4.4xlarge", 16, 124928, 2.3, "Up to 10 Gigabit", 8, 30).previous(),
    it(R4, "r4.8xlarge", 32, 249856, 2.3, "10 Gigabit", 8, 30).previous(),
    it(R4, "r4.16xlarge", 64, 499712, 2.3, "25 Gigabit", 15, 50).previous(),
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
    // t1
    it(T1, "t1.micro", 1, 627, NULL_GHZ, "Very Low", 2, 2).ipv4_only().previous(),
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
        // 100 current-generation types and 41 of the previous generation.
        assert_eq!(seen.len(), 141);
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
            } else if t.family() == "t2" || !t.current_generation {
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
        for t in INSTANCE_TYPES.iter().filter(|t| t.current_generation) {
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
    fn previous_generations_are_there_with_their_figures() {
        let small = get("m1.small");
        assert!(!small.current_generation);
        assert_eq!((small.vcpus, small.memory_mib), (1, 1740));
        assert_eq!(small.ipv6_per_interface, 0);
        assert!(small.supports(Architecture::I386));
        assert_eq!(small.sustained_clock_ghz(), None);
        let micro = get("t1.micro");
        assert_eq!((micro.memory_mib, micro.network_performance), (627, "Very Low"));
        assert_eq!(get("m4.large").sustained_clock_ghz(), Some(2.4));
        for t in INSTANCE_TYPES.iter().filter(|t| !t.current_generation) {
            assert_eq!(t.vcpus, t.cores * t.threads_per_core, "{}", t.name);
            assert_eq!(t.hypervisor, Hypervisor::Xen, "{}", t.name);
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
