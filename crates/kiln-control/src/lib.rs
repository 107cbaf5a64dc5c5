//! Kiln's control plane: the rules of each EC2 resource (what may be created, what
//! conflicts, what depends on what), one module per resource, over `kiln-store`.
//! It knows nothing of HTTP or XML; `kiln-server` maps its errors to EC2's.

pub mod accounts;
pub mod error;
pub mod key_pairs;
pub mod security_groups;
pub mod tags;
pub mod vpcs;

pub use error::Error;
pub use kiln_store::Scope;

use kiln_store::Store;
use kiln_types::RegionConfig;

/// The control plane of one installation.
pub struct Cloud {
    pub store: Store,
    pub regions: Vec<RegionConfig>,
}

impl Cloud {
    pub fn new(store: Store, regions: Vec<RegionConfig>) -> Self {
        Self { store, regions }
    }

    pub fn region(&self, name: &str) -> Option<&RegionConfig> {
        self.regions.iter().find(|r| r.name == name)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
