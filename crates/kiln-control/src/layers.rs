//! The store's files as joined hosts get them: which files an instance's host needs
//! before it can boot it (the image's kernel and initrd; its volumes are served from
//! the store), named with the SHA-256 and size of their content; and which files a
//! host may fetch: only those of the instances placed on it, so a host's certificate
//! opens no volume and no other tenant's image.
//!
//! A layer never changes once frozen, so its hash is computed once per process and
//! kept, keyed by its file's length and modification time.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use kiln_agent_api::{Layer, StorePath};
use kiln_store::instances::Instance;

use crate::reconcile::store_path;
use crate::{Cloud, Error, Result};

/// Hashes already computed: file → (length, modified, SHA-256).
#[derive(Default)]
pub(crate) struct Digests(Mutex<HashMap<String, (u64, SystemTime, String)>>);

/// What an instance's host boots it with: the image's kernel and initrd (its volumes
/// are served from the store, `volume_servers`).
fn boot_files(i: &Instance) -> Result<Vec<StorePath>> {
    [&i.kernel_file, &i.ramdisk_file].into_iter().flatten().map(|f| store_path(f)).collect()
}

impl Cloud {
    /// What `i`'s host needs from the store before it boots `i`: its kernel and initrd.
    pub(crate) fn layers_for(&self, i: &Instance) -> Result<Vec<Layer>> {
        boot_files(i)?.into_iter().map(|file| self.layer(file, None)).collect()
    }

    /// A layer of this store, with its content's hash and size.
    fn layer(&self, file: StorePath, backing: Option<StorePath>) -> Result<Layer> {
        let path: PathBuf = file.under(self.data_dir());
        let meta = std::fs::metadata(&path).map_err(|e| Error::host(format!("reading layer {file}"), e))?;
        let modified = meta.modified().map_err(|e| Error::host(format!("reading layer {file}"), e))?;
        let known = self.digests.0.lock().unwrap_or_else(PoisonError::into_inner).get(file.as_str()).cloned();
        let sha256 = match known {
            Some((len, at, sha)) if len == meta.len() && at == modified => sha,
            _ => {
                let sha = Layer::sha256_of(&path).map_err(|e| Error::host(format!("hashing {file}"), e))?;
                self.digests
                    .0
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(file.as_str().to_owned(), (meta.len(), modified, sha.clone()));
                sha
            }
        };
        Ok(Layer { file, sha256, size: meta.len(), backing })
    }

    /// Where joined host `host` reads `file` from, if it may: the kernel or initrd of
    /// an instance placed on it that holds capacity.
    pub fn layer_for_host(&self, host: &kiln_agent_api::HostId, file: &str) -> Result<PathBuf> {
        let file = StorePath::new(file).map_err(|e| Error::InvalidParameterValue(e.to_string()))?;
        let refuse = || Error::not_found(kiln_types::ResourceKind::Snapshot, file.as_str());
        let placed: Vec<Instance> = self.store.read(|c| {
            Ok::<_, Error>(
                crate::placement::live_instances(c)?
                    .into_iter()
                    .filter(|i| i.host_id.as_deref() == Some(host.as_str()))
                    .collect(),
            )
        })?;
        let mut needed = false;
        for i in &placed {
            if boot_files(i)?.contains(&file) {
                needed = true;
                break;
            }
        }
        let path = file.under(self.data_dir());
        if !needed || !path.is_file() {
            return Err(refuse());
        }
        Ok(path)
    }
}
