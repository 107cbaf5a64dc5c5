//! Kiln's control plane: the rules of each EC2 resource (what may be created, what
//! conflicts, what depends on what), one module per resource, over `kiln-store`.
//! It knows nothing of HTTP or XML; `kiln-server` maps its errors to EC2's.

pub mod accounts;
pub mod error;
pub mod images;
pub mod key_pairs;
pub mod security_groups;
pub mod snapshots;
pub mod tags;
pub mod vpcs;

pub use error::Error;
pub use kiln_store::Scope;

use std::path::{Path, PathBuf};

use kiln_store::Store;
use kiln_types::RegionConfig;

/// The control plane of one installation.
pub struct Cloud {
    pub store: Store,
    pub regions: Vec<RegionConfig>,
    /// The data directory: layer files and kernels live under it, and no path taken
    /// from a request may leave it.
    data_dir: PathBuf,
}

impl Cloud {
    pub fn new(store: Store, regions: Vec<RegionConfig>, data_dir: PathBuf) -> Self {
        Self { store, regions, data_dir }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn region(&self, name: &str) -> Option<&RegionConfig> {
        self.regions.iter().find(|r| r.name == name)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
