//! The control plane's error: what went wrong, in terms of resources. `kiln-server`
//! turns each variant into EC2's code and message.

use kiln_store::StoreError;
use kiln_types::ResourceKind;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{kind:?} not found: {ids:?}")]
    NotFound { kind: ResourceKind, ids: Vec<String> },
    #[error("{kind:?} '{name}' already exists")]
    Duplicate { kind: ResourceKind, name: String },
    #[error("{0}")]
    InvalidParameterValue(String),
    #[error("{0}")]
    InvalidKeyFormat(String),
    #[error("{0}")]
    DependencyViolation(String),
    #[error("{0}")]
    CannotDelete(String),
    #[error("{0}")]
    PermissionDuplicate(String),
    #[error("{0}")]
    PermissionNotFound(String),
    #[error("{0}")]
    VpcRange(String),
    #[error("{0}")]
    SubnetRange(String),
    #[error("{0}")]
    SubnetConflict(String),
    #[error("{0}")]
    TagLimitExceeded(String),
    #[error("{0}")]
    Crypto(String),
    /// A resource is in a state that does not allow the request.
    #[error("{0}")]
    IncorrectState(String),
    #[error("{0}")]
    SnapshotInUse(String),
    #[error("{0}")]
    ImageNameMalformed(String),
    #[error("{0}")]
    Unauthorized(String),
    /// The caller is known but may not do this (EC2's UnauthorizedOperation).
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    IncorrectInstanceState(String),
    #[error("{0}")]
    OperationNotPermitted(String),
    #[error("{0}")]
    InsufficientCapacity(String),
    #[error("{0}")]
    VcpuLimitExceeded(String),
    #[error("{0}")]
    IdempotentMismatch(String),
    #[error("{0}")]
    AddressInUse(String),
    #[error("{0}")]
    InvalidBlockDeviceMapping(String),
    #[error("{0}")]
    ParameterCombination(String),
    #[error("{0}")]
    ImageUnavailable(String),
    /// A gateway, route table or address is already associated where it was asked to go.
    #[error("{0}")]
    AlreadyAssociated(String),
    /// A gateway is not attached to the VPC the request needs it on.
    #[error("{0}")]
    GatewayNotAttached(String),
    /// A route target names a gateway that does not exist.
    #[error("{0}")]
    GatewayNotFound(String),
    #[error("{0}")]
    RouteAlreadyExists(String),
    #[error("{0}")]
    RouteNotFound(String),
    /// An Elastic IP named by its address does not exist (for the caller).
    #[error("{0}")]
    AddressNotFound(String),
    #[error("{0}")]
    AddressLimitExceeded(String),
    #[error("{0}")]
    DefaultVpcExists(String),
    #[error("{0}")]
    AclEntryExists(String),
    #[error("{0}")]
    AclEntryNotFound(String),
    /// A required parameter is absent (one the wire cannot see is required, such as
    /// CreateVolume's size without a snapshot).
    #[error("{0}")]
    MissingParameter(String),
    /// A placement group still has instances.
    #[error("{0}")]
    PlacementGroupInUse(String),
    /// A parameter needs another one (KmsKeyId without Encrypted).
    #[error("{0}")]
    ParameterDependency(String),
    /// A volume is attached.
    #[error("{0}")]
    VolumeInUse(String),
    /// A volume and an instance are in different zones.
    #[error("{0}")]
    ZoneMismatch(String),
    /// A volume is being modified already.
    #[error("{0}")]
    IncorrectModificationState(String),
    /// A network interface is attached (or is an instance's primary one).
    #[error("{0}")]
    InterfaceInUse(String),
    /// An instance has all the interfaces its type allows.
    #[error("{0}")]
    AttachmentLimitExceeded(String),
    /// No launch template has this name (in the caller's scope).
    #[error("launch template '{0}' not found")]
    TemplateNameNotFound(String),
    /// A launch template has no such version.
    #[error("{0}")]
    TemplateVersionNotFound(String),
    /// This Kiln cannot do it at all (a feature its host does not give).
    #[error("{0}")]
    Unsupported(String),
    /// Files on the host failed (copy, link, qemu-img): an internal error.
    #[error("{context}: {detail}")]
    Host { context: String, detail: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Error {
    pub fn not_found(kind: ResourceKind, id: impl Into<String>) -> Self {
        Self::NotFound { kind, ids: vec![id.into()] }
    }

    /// A failure of the host (files, processes, QEMU) while doing `context`.
    pub fn host(context: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        Self::Host { context: context.into(), detail: detail.to_string() }
    }

    /// Whether trying the same work again may succeed: the host or the database
    /// failed, not the request.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Host { .. } | Self::Store(_))
    }
}
