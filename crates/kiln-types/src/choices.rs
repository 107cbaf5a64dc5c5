//! Closed sets of values EC2 names on the wire (HttpTokens, shutdown behaviour, volume
//! types …), each an enum made from one list so that it parses, prints and stores the
//! same way everywhere. Parsing is where an unknown value is refused.

use std::fmt;

/// A value that is not one of its set's; its message lists the set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Value ({value}) for parameter {name} is invalid. Valid values: {expected}")]
pub struct ChoiceError {
    pub name: &'static str,
    pub value: String,
    pub expected: String,
}

macro_rules! choice {
    ($(#[$meta:meta])* $ty:ident, $wire:literal { $($(#[$vmeta:meta])* $variant:ident = $s:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $ty {
            $($(#[$vmeta])* #[serde(rename = $s)] $variant,)*
        }

        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$variant,)*];
            /// The parameter's name on the wire, for messages.
            pub const NAME: &'static str = $wire;

            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $s,)*
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = ChoiceError;
            fn from_str(s: &str) -> Result<Self, ChoiceError> {
                match s {
                    $($s => Ok($ty::$variant),)*
                    _ => Err(ChoiceError {
                        name: $wire,
                        value: s.to_owned(),
                        expected: [$($s),*].join(", "),
                    }),
                }
            }
        }
    };
}

choice! {
    /// Whether the metadata service wants a session token (IMDSv2).
    HttpTokens, "HttpTokens" {
        Optional = "optional",
        Required = "required",
    }
}

choice! {
    /// Whether the metadata service answers the instance at all.
    HttpEndpoint, "HttpEndpoint" {
        Enabled = "enabled",
        Disabled = "disabled",
    }
}

choice! {
    /// What a shutdown from inside the guest does to the instance.
    ShutdownBehavior, "InstanceInitiatedShutdownBehavior" {
        Stop = "stop",
        Terminate = "terminate",
    }
}

choice! {
    /// How a burstable instance spends CPU credits.
    CpuCredits, "CpuCredits" {
        Standard = "standard",
        Unlimited = "unlimited",
    }
}

impl CpuCredits {
    /// EC2's default for an instance type: `standard` for T2, `unlimited` for the
    /// later T families; `None` for types that are not burstable.
    pub fn default_for(instance_type: &str) -> Option<Self> {
        match instance_type.split('.').next().unwrap_or_default() {
            "t2" => Some(Self::Standard),
            "t3" | "t3a" | "t4g" => Some(Self::Unlimited),
            _ => None,
        }
    }
}

/// Launch options EC2 shows back on an instance, some of which it enforces (stop
/// protection) and some it only records (EBS optimisation, detailed monitoring).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InstanceOptions {
    /// StopInstances is refused while set (EC2's stop protection).
    pub disable_api_stop: bool,
    pub ebs_optimized: bool,
    /// Detailed monitoring (Monitoring.Enabled).
    pub monitoring: bool,
    pub source_dest_check: bool,
    /// For burstable types: how CPU credits are spent.
    pub cpu_credits: Option<CpuCredits>,
}

impl Default for InstanceOptions {
    fn default() -> Self {
        Self {
            disable_api_stop: false,
            ebs_optimized: false,
            monitoring: false,
            source_dest_check: true,
            cpu_credits: None,
        }
    }
}

choice! {
    /// An EBS volume type.
    VolumeType, "VolumeType" {
        Standard = "standard",
        Gp2 = "gp2",
        Gp3 = "gp3",
        Io1 = "io1",
        Io2 = "io2",
        St1 = "st1",
        Sc1 = "sc1",
    }
}

choice! {
    /// Where a volume is in its life, as DescribeVolumes shows it.
    VolumeState, "VolumeState" {
        Creating = "creating",
        Available = "available",
        InUse = "in-use",
        /// Its file cannot be made (its snapshot is gone): it can only be deleted.
        Error = "error",
    }
}

choice! {
    /// Where a volume's attachment is: the guest gains or loses the disk while it runs.
    VolumeAttachState, "VolumeAttachState" {
        Attaching = "attaching",
        Attached = "attached",
        Detaching = "detaching",
    }
}

/// What EC2 allows for one volume type: its sizes (GiB), and its IOPS and throughput
/// (MiB/s) when they are set, with their defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumeLimits {
    pub min_gib: i64,
    pub max_gib: i64,
    /// (min, max, default, max per GiB) where IOPS may be set.
    pub iops: Option<(i64, i64, i64, i64)>,
    /// (min, max, default) where throughput may be set (gp3).
    pub throughput: Option<(i64, i64, i64)>,
}

impl VolumeType {
    /// EC2's documented limits for the type.
    pub fn limits(self) -> VolumeLimits {
        let (min_gib, max_gib, iops, throughput) = match self {
            VolumeType::Gp3 => (1, 16384, Some((3000, 16000, 3000, 500)), Some((125, 1000, 125))),
            VolumeType::Gp2 => (1, 16384, None, None),
            VolumeType::Io1 => (4, 16384, Some((100, 64000, 100, 50)), None),
            VolumeType::Io2 => (4, 65536, Some((100, 256000, 100, 1000)), None),
            VolumeType::St1 | VolumeType::Sc1 => (125, 16384, None, None),
            VolumeType::Standard => (1, 1024, None, None),
        };
        VolumeLimits { min_gib, max_gib, iops, throughput }
    }

    /// The IOPS a volume of this type and size reports (gp2's baseline is 3 per GiB,
    /// 100 to 16000); None for types without IOPS.
    pub fn iops_of(self, size_gib: i64, set: Option<i64>) -> Option<i64> {
        match self {
            VolumeType::Gp2 => Some((size_gib * 3).clamp(100, 16000)),
            _ => self.limits().iops.map(|(_, _, default, _)| set.unwrap_or(default)),
        }
    }

    /// Whether volumes of this type may attach to several instances (io1, io2).
    pub fn multi_attach(self) -> bool {
        matches!(self, VolumeType::Io1 | VolumeType::Io2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_round_trips_and_others_are_refused() {
        for t in VolumeType::ALL {
            assert_eq!(t.as_str().parse::<VolumeType>(), Ok(*t));
        }
        for t in HttpTokens::ALL {
            assert_eq!(t.to_string().parse::<HttpTokens>(), Ok(*t));
        }
        let e = "gp9".parse::<VolumeType>().expect_err("not a volume type");
        assert_eq!(
            e.to_string(),
            "Value (gp9) for parameter VolumeType is invalid. Valid values: standard, gp2, gp3, io1, io2, st1, sc1"
        );
        assert!("Stop".parse::<ShutdownBehavior>().is_err());
        assert!("".parse::<HttpEndpoint>().is_err());
    }
}

choice! {
    /// How a placement group places its instances.
    PlacementStrategy, "Strategy" {
        Cluster = "cluster",
        Spread = "spread",
        Partition = "partition",
    }
}

choice! {
    /// What a spread placement group spreads its instances over.
    SpreadLevel, "SpreadLevel" {
        Host = "host",
        Rack = "rack",
    }
}
