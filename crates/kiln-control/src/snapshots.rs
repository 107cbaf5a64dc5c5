//! Snapshots: immutable qcow2 layers under `DATA_DIR/snapshots`, adopted from files the
//! builder or an import made, or frozen from a volume (CreateSnapshot: the volume's
//! current file becomes the layer and the volume goes on a new overlay, so a snapshot
//! stores only what was written since the last one), listed and deleted as EC2 does,
//! and collected once nothing (image, child layer) needs them.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use kiln_store::snapshots::{self, Snapshot};
use kiln_store::{accounts, Connection, Scope};
use kiln_types::ResourceKind;

use crate::{Cloud, Error, Result};

/// Where layer files live, relative to the data directory.
pub const SNAPSHOT_DIR: &str = "snapshots";

fn host(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |e| Error::Host { context, detail: e.to_string() }
}

/// Puts `source` into the store as `snapshots/<id>.qcow2`, read-only: a hard link when
/// the file is on the same filesystem, else a copy. Returns the relative path.
pub(crate) fn adopt_file(data_dir: &Path, id: &str, source: &Path) -> Result<String> {
    let dir = data_dir.join(SNAPSHOT_DIR);
    std::fs::create_dir_all(&dir).map_err(host("creating the snapshot directory"))?;
    let rel = format!("{SNAPSHOT_DIR}/{id}.qcow2");
    let dest = data_dir.join(&rel);
    if std::fs::hard_link(source, &dest).is_err() {
        let tmp = dest.with_extension("partial");
        std::fs::copy(source, &tmp).map_err(host(format!("copying {} into the store", source.display())))?;
        std::fs::rename(&tmp, &dest).map_err(host("moving a layer into place"))?;
    }
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o444))
        .map_err(host("making a layer read-only"))?;
    Ok(rel)
}

/// Whether `viewer` may see a snapshot: its own, or the provider's (whose Quick Start
/// images anyone may launch).
fn visible(conn: &Connection, s: &Snapshot, viewer: &str) -> Result<bool> {
    if s.account_id == viewer {
        return Ok(true);
    }
    Ok(accounts::list(conn)?.iter().any(|a| a.id == s.account_id && a.is_provider))
}

/// Whether `account` is the provider (whose snapshots anyone may use).
pub(crate) fn is_provider(conn: &Connection, account: &str) -> bool {
    accounts::list(conn).is_ok_and(|l| l.iter().any(|a| a.id == account && a.is_provider))
}

/// What CreateSnapshots asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceSnapshots {
    pub instance_id: String,
    pub exclude_boot: bool,
    pub exclude: Vec<String>,
    pub description: String,
    pub tags: Vec<(String, String)>,
    pub copy_tags: bool,
}

/// Records a pending snapshot of volume `v` and the freeze that will make it.
fn plan_snapshot(
    conn: &Connection,
    scope: &Scope,
    v: &kiln_store::volumes::Volume,
    description: &str,
    tags: &[(String, String)],
) -> Result<(Snapshot, crate::workflows::Freeze)> {
    if v.state == kiln_types::VolumeState::Creating {
        return Err(Error::IncorrectState(format!("Volume {} is still being created", v.id)));
    }
    let snap = Snapshot {
        id: ResourceKind::Snapshot.generate(),
        account_id: scope.account.clone(),
        region: scope.region.clone(),
        parent_id: v.snapshot_id.clone(),
        file: v.file.clone(),
        volume_size: v.size_gib,
        state: "pending".into(),
        progress: 0,
        description: description.to_owned(),
        volume_id: Some(v.id.clone()),
        created_at: kiln_store::now(),
    };
    snapshots::insert(conn, &snap)?;
    crate::tags::put_all(conn, scope, ResourceKind::Snapshot, &snap.id, tags)?;
    let freeze = crate::workflows::Freeze {
        volume_id: v.id.clone(),
        snapshot_id: snap.id.clone(),
        new_file: format!("volumes/{}-{}.qcow2", v.id, snap.id),
    };
    Ok((snap, freeze))
}

impl Cloud {
    /// CreateSnapshot of a volume. A detached volume is frozen at once; one attached to
    /// an instance is frozen by a workflow that holds the instance (live, with the guest
    /// paused for QEMU's switch, when its VM runs), and the snapshot is pending until
    /// then.
    pub fn create_snapshot(
        &self,
        scope: &Scope,
        volume_id: &str,
        description: &str,
        tags: &[(String, String)],
    ) -> Result<Snapshot> {
        let (snap, freeze, instance) = self.store.write(|tx| {
            let v = kiln_store::volumes::get(tx, volume_id)?
                .filter(|v| v.account_id == scope.account && v.region == scope.region)
                .ok_or_else(|| Error::not_found(ResourceKind::Volume, volume_id))?;
            let (snap, freeze) = plan_snapshot(tx, scope, &v, description, tags)?;
            if let Some(i) = &v.instance_id {
                crate::workflows::record(
                    tx,
                    crate::workflows::Work::CreateSnapshot { instance_id: i.clone(), freeze: freeze.clone() },
                )?;
            }
            Ok::<_, Error>((snap, freeze, v.instance_id))
        })?;
        if instance.is_some() {
            return Ok(snap);
        }
        // No VM can have it: frozen here, whole or, on failure, undone.
        if let Err(e) = self.freeze(None, &freeze).and_then(|()| self.snapshot_done(&snap.id)) {
            self.snapshot_failed(&freeze)?;
            return Err(e);
        }
        let done = self.store.read(|c| Ok::<_, Error>(snapshots::get(c, &snap.id)?))?;
        done.ok_or_else(|| Error::not_found(ResourceKind::Snapshot, snap.id))
    }

    /// CreateSnapshots: a snapshot of each of an instance's volumes (but those
    /// excluded), all frozen at one instant by a workflow holding the instance; they
    /// are pending until then. `copy_tags` gives each snapshot its volume's tags.
    pub fn create_snapshots(&self, scope: &Scope, request: &InstanceSnapshots) -> Result<Vec<Snapshot>> {
        self.store.write(|tx| {
            let i = kiln_store::instances::get(tx, &request.instance_id)?
                .filter(|i| i.account_id == scope.account && i.region == scope.region)
                .filter(|i| i.state != kiln_types::InstanceState::Terminated)
                .ok_or_else(|| Error::not_found(ResourceKind::Instance, request.instance_id.clone()))?;
            let all = kiln_store::volumes::of_instance(tx, &i.id)?;
            if let Some(x) = request.exclude.iter().find(|x| !all.iter().any(|v| &v.id == *x)) {
                return Err(Error::InvalidParameterValue(format!("Volume {x} is not attached to {}", i.id)));
            }
            let vols: Vec<_> = all
                .into_iter()
                .filter(|v| !(request.exclude_boot && v.device_name.as_deref() == Some(i.root_device_name.as_str())))
                .filter(|v| !request.exclude.contains(&v.id))
                .collect();
            if vols.is_empty() {
                return Err(Error::InvalidParameterValue(format!("No volume of {} is left to snapshot", i.id)));
            }
            let mut made = Vec::new();
            let mut freezes = Vec::new();
            for v in &vols {
                let mut tags = request.tags.clone();
                if request.copy_tags {
                    let of_volume = kiln_store::tags::of_resources(tx, scope, &[v.id.as_str()])?;
                    for (k, val) in of_volume.get(&v.id).cloned().unwrap_or_default() {
                        if !tags.iter().any(|(t, _)| *t == k) {
                            tags.push((k, val));
                        }
                    }
                }
                let (snap, freeze) = plan_snapshot(tx, scope, v, &request.description, &tags)?;
                made.push(snap);
                freezes.push(freeze);
            }
            crate::workflows::record(
                tx,
                crate::workflows::Work::CreateSnapshots { instance_id: i.id.clone(), freezes },
            )?;
            Ok(made)
        })
    }

    /// A frozen snapshot is complete.
    pub(crate) fn snapshot_done(&self, id: &str) -> Result<()> {
        self.store.write(|tx| Ok::<_, Error>(snapshots::set_state(tx, id, "completed", 100)?))
    }

    /// A snapshot that could not be frozen: complete if the volume did switch to its
    /// overlay (the layer is whole), else gone (its row names the volume's live file).
    pub(crate) fn snapshot_failed(&self, f: &crate::workflows::Freeze) -> Result<()> {
        self.store.write(|tx| {
            let switched = kiln_store::volumes::get(tx, &f.volume_id)?.is_some_and(|v| v.file == f.new_file);
            if switched {
                snapshots::set_state(tx, &f.snapshot_id, "completed", 100)?;
            } else {
                snapshots::remove(tx, &f.snapshot_id)?;
            }
            Ok::<_, Error>(())
        })
    }

    /// Snapshots the caller may see, narrowed by ids (all must exist) and owners
    /// (`self`, `amazon` or account ids).
    pub fn snapshots(&self, scope: &Scope, ids: &[kiln_types::SnapshotId], owners: &[String]) -> Result<Vec<Snapshot>> {
        self.store.read(|c| {
            let accounts = accounts::list(c)?;
            let provider: Vec<String> = accounts.iter().filter(|a| a.is_provider).map(|a| a.id.clone()).collect();
            let visible = |s: &Snapshot| {
                s.region == scope.region && (s.account_id == scope.account || provider.contains(&s.account_id))
            };
            let all = if ids.is_empty() {
                let mut all = snapshots::list_owned(c, scope)?;
                for p in provider.iter().filter(|p| **p != scope.account) {
                    all.extend(snapshots::list_owned(c, &Scope { account: p.clone(), region: scope.region.clone() })?);
                }
                all
            } else {
                // Named ones are read by key.
                let mut found: Vec<Snapshot> = Vec::new();
                for id in ids {
                    if let Some(s) = snapshots::get(c, id)?.filter(|s| visible(s)) {
                        if !found.iter().any(|f| f.id == s.id) {
                            found.push(s);
                        }
                    }
                }
                found.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
                found
            };
            let mut out = crate::narrow(all, ids, ResourceKind::Snapshot, |s| &s.id)?;
            if !owners.is_empty() {
                out.retain(|s| {
                    owners.iter().any(|o| match o.as_str() {
                        "self" => s.account_id == scope.account,
                        "amazon" => provider.contains(&s.account_id),
                        id => s.account_id == id,
                    })
                });
            } else if ids.is_empty() {
                // Unscoped, EC2 lists your own and public ones; only the provider's
                // catalog is public here.
                out.retain(|s| s.account_id == scope.account || provider.contains(&s.account_id));
            }
            Ok(out)
        })
    }

    /// A snapshot the caller may use (its own or the provider's).
    pub fn usable_snapshot(&self, scope: &Scope, id: &str) -> Result<Snapshot> {
        self.store.read(|c| {
            let s = snapshots::get(c, id)?.filter(|s| s.region == scope.region);
            match s {
                Some(s) if visible(c, &s, &scope.account)? => Ok(s),
                _ => Err(Error::not_found(ResourceKind::Snapshot, id)),
            }
        })
    }

    /// Deletes a snapshot the caller owns, unless an image uses it.
    pub fn delete_snapshot(&self, scope: &Scope, id: &str) -> Result<()> {
        self.store.write(|tx| {
            let s = snapshots::get(tx, id)?
                .filter(|s| s.account_id == scope.account && s.region == scope.region)
                .ok_or_else(|| Error::not_found(ResourceKind::Snapshot, id))?;
            if s.state == "pending" {
                return Err(Error::IncorrectState(format!(
                    "The snapshot {id} is pending (CreateImage is making it); delete it once it is completed"
                )));
            }
            if let Some(image) = snapshots::used_by_image(tx, &s.id)? {
                return Err(Error::SnapshotInUse(format!("The snapshot {id} is currently in use by {image}")));
            }
            snapshots::mark_deleted(tx, &s.id)?;
            Ok(())
        })?;
        self.collect_layers()
    }

    /// Removes deleted layers that nothing needs, and their files when no other
    /// snapshot shares them. Returns how many files went.
    pub fn collect_layers(&self) -> Result<()> {
        loop {
            let doomed = self.store.write(|tx| {
                let doomed = snapshots::collectable(tx)?;
                let mut files = Vec::new();
                for s in &doomed {
                    snapshots::remove(tx, &s.id)?;
                    if snapshots::file_users(tx, &s.file)? == 0 {
                        files.push(s.file.clone());
                    }
                }
                Ok::<_, Error>((doomed.len(), files))
            })?;
            for f in &doomed.1 {
                let path = self.data_dir().join(f);
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::warn!(file = %path.display(), error = %e, "could not remove a collected layer");
                }
            }
            if doomed.0 == 0 {
                return Ok(());
            }
        }
    }
}
