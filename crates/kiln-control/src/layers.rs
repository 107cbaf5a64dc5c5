//! The store's files as joined hosts get them: which files an instance's host needs
//! before it boots it (the completed layers under each of its volumes, base first, and
//! the image's kernel and initrd), named with the SHA-256 and size of their content;
//! which layers are under a volume (`below`, which its host reads from its own copies
//! where it has them and from the volume server otherwise); and which files a host
//! may fetch: only those of the instances placed on it, so a host's certificate opens
//! no live volume and no other tenant's image.
//!
//! A layer never changes once frozen (and sealed: `HostAgent::seal`), so its hash is
//! computed once per process and kept, keyed by its file's length and modification
//! time.

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

/// What an instance's host boots it with from its own store: the image's kernel and
/// initrd.
fn boot_files(i: &Instance) -> Result<Vec<StorePath>> {
    [&i.kernel_file, &i.ramdisk_file].into_iter().flatten().map(|f| store_path(f)).collect()
}

/// A volume's layers, nearest first, each with whether it is frozen (its snapshot
/// completed).
pub(crate) type Chain = Vec<(StorePath, bool)>;

impl Cloud {
    /// The layers under `v`'s file, nearest first, with whether each is frozen.
    pub(crate) fn chain(&self, v: &Volume) -> Result<Chain> {
        let corrupt = |what: String| Error::Store(kiln_store::StoreError::Corrupt(what));
        self.store.read(|c| {
            let mut chain = Vec::new();
            let mut next = v.snapshot_id.clone();
            while let Some(id) = next {
                let s = snapshots::get_even_deleted(c, &id)?
                    .ok_or_else(|| corrupt(format!("snapshot {id} of {}'s chain has no row", v.id)))?;
                if chain.len() > 1000 {
                    return Err(corrupt(format!("{}'s snapshot chain loops", v.id)));
                }
                chain.push((store_path(&s.file)?, snapshots::is_completed_layer(c, &s.file)?));
                next = s.parent_id;
            }
            Ok(chain)
        })
    }

    /// The layers under `v`'s file, nearest first (a served disk's `below`).
    pub(crate) fn below(&self, v: &Volume) -> Result<Vec<StorePath>> {
        Ok(self.chain(v)?.into_iter().map(|(f, _)| f).collect())
    }

    /// What `i`'s host needs from the store before it boots `i` with `vols`: the frozen
    /// layers under each volume, base first, each with the one under it (up to the
    /// first not yet frozen, which the host reads from the volume server with what is
    /// above it), then its kernel and initrd.
    pub(crate) fn layers_for(&self, i: &Instance, vols: &[Volume]) -> Result<Vec<Layer>> {
        let mut layers: Vec<Layer> = Vec::new();
        for v in vols {
            let mut under = None;
            for (file, frozen) in self.chain(v)?.into_iter().rev() {
                if !frozen {
                    break;
                }
                if !layers.iter().any(|l| l.file == file) {
                    layers.push(self.layer(file.clone(), under.clone())?);
                }
                under = Some(file);
            }
        }
        for file in boot_files(i)? {
            layers.push(self.layer(file, None)?);
        }
        Ok(layers)
    }

    /// A layer of this store, with its content's hash and size.
    fn layer(&self, file: StorePath, backing: Option<StorePath>) -> Result<Layer> {
        let path: PathBuf = file.under(self.data_dir());
        let meta = std::fs::metadata(&path).map_err(|e| Error::host(format!("reading layer {file}"), e))?;
        let (len, modified) =
            (meta.len(), meta.modified().map_err(|e| Error::host(format!("reading layer {file}"), e))?);
        let known = self.digests.0.lock().unwrap_or_else(PoisonError::into_inner).get(file.as_str()).cloned();
        let sha256 = match known {
            Some((l, at, sha)) if l == len && at == modified => sha,
            _ => {
                let sha = Layer::sha256_of(&path).map_err(|e| Error::host(format!("hashing {file}"), e))?;
                self.digests
                    .0
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(file.as_str().to_owned(), (len, modified, sha.clone()));
                sha
            }
        };
        Ok(Layer { file, sha256, size: len, backing })
    }

    /// Where joined host `host` reads `file` from, if it may: the kernel or initrd of
    /// an instance placed on it that holds capacity, or a frozen layer under one of
    /// its volumes.
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
            for v in self.instance_volumes(&i.id)? {
                if self.chain(&v)?.contains(&(file.clone(), true)) {
                    needed = true;
                }
            }
            if needed {
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
