//! The one mapping from control-plane errors to EC2's codes and messages. Internal
//! details (SQL, paths) are logged, never sent to the client.

use kiln_control::Error;
use kiln_ec2::Ec2Error;
use kiln_types::ResourceKind;

pub(crate) fn to_ec2(e: Error) -> Ec2Error {
    match e {
        Error::NotFound { kind, ids } => Ec2Error::not_found(kind, &ids),
        Error::Duplicate { kind, name } => match kind {
            ResourceKind::KeyPair => {
                Ec2Error::new("InvalidKeyPair.Duplicate", format!("The keypair '{name}' already exists."))
            }
            ResourceKind::SecurityGroup => Ec2Error::new("InvalidGroup.Duplicate", name),
            ResourceKind::Image => {
                Ec2Error::new("InvalidAMIName.Duplicate", format!("AMI name {name} is already in use by another AMI"))
            }
            ResourceKind::LaunchTemplate => Ec2Error::new(
                "InvalidLaunchTemplateName.AlreadyExistsException",
                format!("Launch template name already in use: {name}. Add a version to it with CreateLaunchTemplateVersion, or choose another name."),
            ),
            ResourceKind::PlacementGroup => Ec2Error::new(
                "InvalidPlacementGroup.Duplicate",
                format!("The Placement Group '{name}' already exists."),
            ),
            _ => Ec2Error::invalid_value(format!("'{name}' already exists")),
        },
        Error::InvalidParameterValue(m) => Ec2Error::invalid_value(m),
        Error::InvalidKeyFormat(m) => Ec2Error::new("InvalidKey.Format", m),
        Error::DependencyViolation(m) => Ec2Error::new("DependencyViolation", m),
        Error::CannotDelete(m) => Ec2Error::new("CannotDelete", m),
        Error::PermissionDuplicate(m) => Ec2Error::new("InvalidPermission.Duplicate", m),
        Error::PermissionNotFound(m) => Ec2Error::new("InvalidPermission.NotFound", m),
        Error::VpcRange(m) => Ec2Error::new("InvalidVpc.Range", m),
        Error::SubnetRange(m) => Ec2Error::new("InvalidSubnet.Range", m),
        Error::SubnetConflict(m) => Ec2Error::new("InvalidSubnet.Conflict", m),
        Error::TagLimitExceeded(m) => Ec2Error::new("TagLimitExceeded", m),
        Error::IncorrectState(m) => Ec2Error::new("IncorrectState", m),
        Error::SnapshotInUse(m) => Ec2Error::new("InvalidSnapshot.InUse", m),
        Error::ImageNameMalformed(m) => Ec2Error::new("InvalidAMIName.Malformed", m),
        Error::Unauthorized(m) => Ec2Error::new("AuthFailure", m),
        Error::Forbidden(m) => Ec2Error::new("UnauthorizedOperation", m),
        Error::IncorrectInstanceState(m) => Ec2Error::new("IncorrectInstanceState", m),
        Error::OperationNotPermitted(m) => Ec2Error::new("OperationNotPermitted", m),
        Error::InsufficientCapacity(m) => Ec2Error::new("InsufficientInstanceCapacity", m),
        Error::VcpuLimitExceeded(m) => Ec2Error::new("VcpuLimitExceeded", m),
        Error::IdempotentMismatch(m) => Ec2Error::new("IdempotentParameterMismatch", m),
        Error::AddressInUse(m) => Ec2Error::new("InvalidIPAddress.InUse", m),
        Error::InvalidBlockDeviceMapping(m) => Ec2Error::new("InvalidBlockDeviceMapping", m),
        Error::ParameterCombination(m) => Ec2Error::combination(m),
        Error::ImageUnavailable(m) => Ec2Error::new("InvalidAMIID.Unavailable", m),
        Error::AlreadyAssociated(m) => Ec2Error::new("Resource.AlreadyAssociated", m),
        Error::GatewayNotAttached(m) => Ec2Error::new("Gateway.NotAttached", m),
        Error::GatewayNotFound(m) => Ec2Error::new("InvalidGatewayID.NotFound", m),
        Error::RouteAlreadyExists(m) => Ec2Error::new("RouteAlreadyExists", m),
        Error::RouteNotFound(m) => Ec2Error::new("InvalidRoute.NotFound", m),
        Error::AddressNotFound(m) => Ec2Error::new("InvalidAddress.NotFound", m),
        Error::AddressLimitExceeded(m) => Ec2Error::new("AddressLimitExceeded", m),
        Error::DefaultVpcExists(m) => Ec2Error::new("DefaultVpcAlreadyExists", m),
        Error::AclEntryExists(m) => Ec2Error::new("NetworkAclEntryAlreadyExists", m),
        Error::AclEntryNotFound(m) => Ec2Error::new("InvalidNetworkAclEntry.NotFound", m),
        Error::MissingParameter(m) => Ec2Error::new("MissingParameter", m),
        Error::PlacementGroupInUse(m) => Ec2Error::new("InvalidPlacementGroup.InUse", m),
        Error::ParameterDependency(m) => Ec2Error::new("InvalidParameterDependency", m),
        Error::VolumeInUse(m) => Ec2Error::new("VolumeInUse", m),
        Error::ZoneMismatch(m) => Ec2Error::new("InvalidVolume.ZoneMismatch", m),
        Error::IncorrectModificationState(m) => Ec2Error::new("IncorrectModificationState", m),
        Error::InterfaceInUse(m) => Ec2Error::new("InvalidNetworkInterface.InUse", m),
        Error::AttachmentLimitExceeded(m) => Ec2Error::new("AttachmentLimitExceeded", m),
        Error::TemplateNameNotFound(name) => Ec2Error::new(
            "InvalidLaunchTemplateName.NotFoundException",
            format!("At least one of the launch templates specified in the request does not exist: {name}"),
        ),
        Error::TemplateVersionNotFound(m) => Ec2Error::new("InvalidLaunchTemplateId.VersionNotFound", m),
        Error::Unsupported(m) => Ec2Error::new("UnsupportedOperation", m),
        Error::Host { context, detail } => {
            tracing::error!(%context, %detail, "host operation failed");
            Ec2Error::internal()
        }
        Error::Crypto(m) => {
            tracing::error!(error = %m, "key generation failed");
            Ec2Error::internal()
        }
        Error::Store(s) => {
            tracing::error!(error = %s, "store failure");
            Ec2Error::internal()
        }
    }
}
