//! EC2's errors: a code, a message and the HTTP status EC2 answers with.

use kiln_types::{IdError, ResourceKind};

/// An error as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ec2Error {
    pub code: String,
    pub message: String,
}

impl Ec2Error {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { code: code.into(), message: message.into() }
    }

    /// The HTTP status EC2 uses for this code.
    pub fn status(&self) -> u16 {
        match self.code.as_str() {
            "AuthFailure" => 401,
            "UnauthorizedOperation" | "OptInRequired" | "SignatureDoesNotMatch" | "InvalidClientTokenId" => 403,
            "DryRunOperation" => 412,
            "RequestEntityTooLarge" => 413,
            "InternalError" | "InsufficientInstanceCapacity" | "InsufficientCapacity" => 500,
            "RequestLimitExceeded" | "Unavailable" | "ServiceUnavailable" => 503,
            _ => 400,
        }
    }

    pub fn missing(name: &str) -> Self {
        Self::new("MissingParameter", format!("The request must contain the parameter {name}"))
    }

    pub fn invalid_value(message: impl Into<String>) -> Self {
        Self::new("InvalidParameterValue", message)
    }

    pub fn combination(message: impl Into<String>) -> Self {
        Self::new("InvalidParameterCombination", message)
    }

    pub fn dry_run_ok() -> Self {
        Self::new("DryRunOperation", "Request would have succeeded, but DryRun flag is set.")
    }

    pub fn internal() -> Self {
        Self::new("InternalError", "An internal error has occurred")
    }

    /// The `...NotFound` error for IDs or names of `kind`.
    pub fn not_found(kind: ResourceKind, what: &[String]) -> Self {
        let joined = what.join(", ");
        let (code, message) = match kind {
            ResourceKind::KeyPair => ("InvalidKeyPair.NotFound", format!("The key pair '{joined}' does not exist")),
            ResourceKind::Vpc => ("InvalidVpcID.NotFound", format!("The vpc ID '{joined}' does not exist")),
            ResourceKind::Subnet => ("InvalidSubnetID.NotFound", format!("The subnet ID '{joined}' does not exist")),
            ResourceKind::SecurityGroup => {
                ("InvalidGroup.NotFound", format!("The security group '{joined}' does not exist"))
            }
            ResourceKind::SecurityGroupRule => {
                ("InvalidSecurityGroupRuleId.NotFound", format!("The security group rule ID '{joined}' does not exist"))
            }
            ResourceKind::Instance => {
                if what.len() > 1 {
                    ("InvalidInstanceID.NotFound", format!("The instance IDs '{joined}' do not exist"))
                } else {
                    ("InvalidInstanceID.NotFound", format!("The instance ID '{joined}' does not exist"))
                }
            }
            ResourceKind::Image => ("InvalidAMIID.NotFound", format!("The image id '[{joined}]' does not exist")),
            ResourceKind::Snapshot => ("InvalidSnapshot.NotFound", format!("The snapshot '{joined}' does not exist")),
            ResourceKind::Volume => ("InvalidVolume.NotFound", format!("The volume '{joined}' does not exist")),
            ResourceKind::Reservation => {
                ("InvalidReservationID.NotFound", format!("The reservation '{joined}' does not exist"))
            }
            ResourceKind::InternetGateway => {
                ("InvalidInternetGatewayID.NotFound", format!("The internetGateway ID '{joined}' does not exist"))
            }
            ResourceKind::RouteTable => {
                ("InvalidRouteTableID.NotFound", format!("The routeTable ID '{joined}' does not exist"))
            }
            ResourceKind::RouteTableAssociation
            | ResourceKind::AddressAssociation
            | ResourceKind::NetworkAclAssociation => {
                ("InvalidAssociationID.NotFound", format!("The association ID '{joined}' does not exist"))
            }
            ResourceKind::NetworkAcl => {
                ("InvalidNetworkAclID.NotFound", format!("The networkAcl ID '{joined}' does not exist"))
            }
            ResourceKind::DhcpOptions => {
                ("InvalidDhcpOptionID.NotFound", format!("The dhcpOption ID '{joined}' does not exist"))
            }
            ResourceKind::NetworkInterface => {
                ("InvalidNetworkInterfaceID.NotFound", format!("The networkInterface ID '{joined}' does not exist"))
            }
            ResourceKind::ElasticIp => {
                ("InvalidAllocationID.NotFound", format!("The allocation IDs '{joined}' do not exist"))
            }
            ResourceKind::NetworkInterfaceAttachment => {
                ("InvalidAttachmentID.NotFound", format!("The attachment ID '{joined}' does not exist"))
            }
            ResourceKind::LaunchTemplate => (
                "InvalidLaunchTemplateId.NotFound",
                format!("The specified launch template, with template ID {joined}, does not exist."),
            ),
            ResourceKind::PlacementGroup => {
                ("InvalidPlacementGroup.Unknown", format!("The Placement Group '{joined}' is unknown."))
            }
        };
        Self::new(code, message)
    }
}

impl From<IdError> for Ec2Error {
    fn from(e: IdError) -> Self {
        let code = match e.kind {
            ResourceKind::KeyPair => "InvalidKeyPairId.Malformed",
            ResourceKind::Vpc => "InvalidVpcID.Malformed",
            ResourceKind::Subnet => "InvalidSubnetID.Malformed",
            ResourceKind::SecurityGroup => "InvalidGroupId.Malformed",
            ResourceKind::SecurityGroupRule => "InvalidSecurityGroupRuleId.Malformed",
            ResourceKind::Instance => "InvalidInstanceID.Malformed",
            ResourceKind::Image => "InvalidAMIID.Malformed",
            ResourceKind::Snapshot => "InvalidSnapshotID.Malformed",
            ResourceKind::Volume => "InvalidVolumeID.Malformed",
            ResourceKind::Reservation => "InvalidReservationID.Malformed",
            ResourceKind::InternetGateway => "InvalidInternetGatewayId.Malformed",
            ResourceKind::RouteTable => "InvalidRouteTableId.Malformed",
            ResourceKind::RouteTableAssociation
            | ResourceKind::AddressAssociation
            | ResourceKind::NetworkAclAssociation => "InvalidAssociationID.Malformed",
            ResourceKind::NetworkAcl => "InvalidNetworkAclId.Malformed",
            ResourceKind::DhcpOptions => "InvalidDhcpOptionsId.Malformed",
            ResourceKind::NetworkInterface => "InvalidNetworkInterfaceID.Malformed",
            ResourceKind::ElasticIp => "InvalidAllocationID.Malformed",
            ResourceKind::NetworkInterfaceAttachment => "InvalidAttachmentID.Malformed",
            ResourceKind::LaunchTemplate => "InvalidLaunchTemplateId.Malformed",
            ResourceKind::PlacementGroup => "InvalidPlacementGroupId.Malformed",
        };
        Self::new(code, e.to_string())
    }
}

impl From<kiln_types::ChoiceError> for Ec2Error {
    fn from(e: kiln_types::ChoiceError) -> Self {
        Self::invalid_value(e.to_string())
    }
}

impl std::fmt::Display for Ec2Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Ec2Error {}
