//! Kiln's vocabulary: typed resource IDs, architectures, option enums, regions and the
//! instance-type catalog. Everything here is plain data; this crate must never do I/O.

pub mod choices;
pub mod ids;
pub mod instance_types;
pub mod region;
pub mod state;
pub mod templates;

pub use choices::{
    ChoiceError, CpuCredits, HttpEndpoint, HttpTokens, InstanceOptions, PlacementStrategy, ShutdownBehavior,
    SpreadLevel, VolumeAttachState, VolumeState, VolumeType,
};
pub use ids::{
    AccountId, AddressAssociationId, AllocationId, DhcpOptionsId, IdError, ImageId, InstanceId, InternetGatewayId,
    KeyPairId, LaunchTemplateId, NetworkAclAssociationId, NetworkAclId, NetworkInterfaceAttachmentId,
    NetworkInterfaceId, PlacementGroupId, ReservationId, ResourceKind, RouteTableAssociationId, RouteTableId,
    SecurityGroupId, SecurityGroupRuleId, SnapshotId, SubnetId, VolumeId, VpcId,
};
pub use region::{RegionConfig, Zone};
pub use state::InstanceState;
pub use templates::{TemplateRef, VersionRef};

use std::fmt;
use std::str::FromStr;

/// A CPU architecture as EC2 names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    I386,
    X86_64,
    Arm64,
}

impl Architecture {
    pub const ALL: [Architecture; 3] = [Self::I386, Self::X86_64, Self::Arm64];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::I386 => "i386",
            Self::X86_64 => "x86_64",
            Self::Arm64 => "arm64",
        }
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Architecture {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Self::ALL.into_iter().find(|a| a.as_str() == s).ok_or(())
    }
}

/// A key pair's kind, as EC2 names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Rsa,
    Ed25519,
}

impl KeyType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rsa => "rsa",
            Self::Ed25519 => "ed25519",
        }
    }
}
