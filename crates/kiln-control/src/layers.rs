//! The store's layers as joined hosts get them: which files an instance's host needs
//! before it can make the instance's volumes and boot it (each volume's snapshot chain,
//! base first, and the image's kernel and initrd), named with the SHA-256 and size of
//! their content; and which files a host may fetch: only those of the instances
//! placed on it, so a host's certificate opens no live volume and no other tenant's
//! image.
//!
//! A layer never changes once frozen, so its hash is computed once per process and
//! kept, keyed by its file's length and modification time.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use kiln_agent_api::{Layer, StorePath};
use kiln_store::instances::Instance;
use kiln_store::snapshots;
use kiln_store::volumes::Volume;

use crate::reconcile::store_path;
use crate::{Cloud, Error, Result};

/// Hashes already computed: file → (length, modified, SHA-256).
#[derive(Default)]
pub(crate) struct Digests(Mutex<HashMap<String, (u64, SystemTime, String)>>);

impl Cloud {
    /// What `i`'s host needs from the store to make `vols` and boot: every layer under
    /// each volume's snapshot, base first, then the kernel and initrd.
    pub(crate) fn layers_for(&self, i: &Instance, vols: &[Volume]) -> Result<Vec<Layer>> {
        self.chain_files(i, vols)?.into_iter().map(|(file, backing)| self.layer(file, backing)).collect()
    }

    /// The files of `layers_for`, each with the one below it.
    fn chain_files(&self, i: &Instance, vols: &[Volume]) -> Result<Vec<(StorePath, Option<StorePath>)>> {
        let mut files: Vec<(StorePath, Option<StorePath>)> = Vec::new();
        for v in vols {
            let mut chain = Vec::new();
            let mut next = v.snapshot_id.clone();
            while let Some(id) = next {
                let s =
                    self.store.read(|c| Ok::<_, Error>(snapshots::get_even_deleted(c, &id)?))?.ok_or_else(|| {
                        Error::Store(kiln_store::StoreError::Corrupt(format!(
                            "snapshot {id} of {}'s chain has no row",
                            v.id
                        )))
                    })?;
                if chain.len() > 1000 {
                    return Err(Error::Store(kiln_store::StoreError::Corrupt(format!(
                        "{}'s snapshot chain loops",
                        v.id
                    ))));
                }
                chain.push(s.clone());
                next = s.parent_id;
            }
            chain.reverse();
            let mut below = None;
            for s in chain {
                let file = store_path(&s.file)?;
                if !files.iter().any(|(f, _)| *f == file) {
                    files.push((file.clone(), below.clone()));
                }
                below = Some(file);
            }
        }
        for f in [&i.kernel_file, &i.ramdisk_file].into_iter().flatten() {
            files.push((store_path(f)?, None));
        }
        Ok(files)
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

    /// Where joined host `host` reads `file` from, if it may: a layer (of a completed
    /// snapshot), kernel or initrd of an instance placed on it that holds capacity.
    pub fn layer_for_host(&self, host: &kiln_agent_api::HostId, file: &str) -> Result<PathBuf> {
        let file = StorePath::new(file).map_err(|e| Error::InvalidParameterValue(e.to_string()))?;
        let refuse = || Error::not_found(kiln_types::ResourceKind::Snapshot, file.as_str());
        let (placed, completed) = self.store.read(|c| {
            let placed: Vec<Instance> = crate::placement::live_instances(c)?
                .into_iter()
                .filter(|i| i.host_id.as_deref() == Some(host.as_str()))
                .collect();
            Ok::<_, Error>((placed, snapshots::is_completed_layer(c, file.as_str())?))
        })?;
        if !completed && !file.as_str().starts_with("kernels/") {
            return Err(refuse());
        }
        let mut needed = false;
        for i in &placed {
            let vols = self.instance_volumes(&i.id)?;
            if self.chain_files(i, &vols)?.iter().any(|(f, _)| *f == file) {
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
