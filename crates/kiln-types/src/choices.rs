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
