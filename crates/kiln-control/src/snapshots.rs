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

/// Whether `viewer` may see a snapshot and make volumes from it: its own, the
/// provider's (whose Quick Start images anyone may launch), or one shared with it
/// (createVolumePermission for its account or `all`).
pub(crate) fn visible(conn: &Connection, s: &Snapshot, viewer: &str) -> Result<bool> {
    if s.account_id == viewer || is_provider(conn, &s.account_id) {
        return Ok(true);
    }
    Ok(snapshots::permissions(conn, &s.id)?.iter().any(|g| g == viewer || g == "all"))
}

/// A change to who may make volumes from a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grantee {
    Account(String),
    All,
}

impl Grantee {
    fn stored(&self) -> &str {
        match self {
            Grantee::Account(a) => a,
            Grantee::All => "all",
        }
    }
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

/// A new pending snapshot of volume `v`: its layer will be the volume's current file.
pub(crate) fn pending(scope: &Scope, v: &kiln_store::volumes::Volume, description: &str) -> Snapshot {
    Snapshot {
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
    }
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
    if v.state == kiln_types::VolumeState::Error {
        return Err(Error::IncorrectState(format!("Volume {} is in the error state; delete it", v.id)));
    }
    // Whether its VM has the disk is settling: freezing now could switch a disk the VM
    // does not have, or leave one it still writes.
    if let Some(a @ (kiln_types::VolumeAttachState::Attaching | kiln_types::VolumeAttachState::Detaching)) =
        v.attach_state
    {
        return Err(Error::IncorrectState(format!(
            "Volume {} is {a}; snapshot it once it is attached or available",
            v.id
        )));
    }
    let snap = pending(scope, v, description);
    snapshots::insert(conn, &snap)?;
    crate::tags::put_all(conn, scope, ResourceKind::Snapshot, &snap.id, tags)?;
    let freeze = crate::workflows::Freeze {
        volume_id: v.id.clone(),
        snapshot_id: snap.id.clone(),
        new_file: format!("volumes/{}-{}.qcow2", v.id, snap.id),
    };
    Ok((snap, freeze))
}

/// The caller's own snapshot `id` (others', shared or not, are NotFound for changes).
fn owned(conn: &Connection, scope: &Scope, id: &str) -> Result<Snapshot> {
    snapshots::get(conn, id)?
        .filter(|s| s.account_id == scope.account && s.region == scope.region)
        .ok_or_else(|| Error::not_found(ResourceKind::Snapshot, id))
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
        // A DryRun's rows are rolled back: nothing is frozen.
        if instance.is_some() || kiln_store::is_dry_run() {
            return Ok(snap);
        }
        // No VM can have it: frozen here, whole or, on failure, undone.
        if let Err(e) = self.freeze(None, &freeze).and_then(|()| self.snapshot_done(&snap.id)) {
            self.snapshot_failed(None, &freeze)?;
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
    /// overlay (the layer is whole), else gone (its row names the volume's live file)
    /// and a switch recorded but never made undone (`settle_switch`).
    pub(crate) fn snapshot_failed(&self, instance_id: Option<&str>, f: &crate::workflows::Freeze) -> Result<()> {
        let left = self.left_behind(instance_id, std::slice::from_ref(f))?;
        let made = self.store.write(|tx| {
            let made = self.settle_switch(tx, f, &left)?;
            if made {
                snapshots::set_state(tx, &f.snapshot_id, "completed", 100)?;
            } else {
                snapshots::remove(tx, &f.snapshot_id)?;
            }
            Ok::<_, Error>(made)
        })?;
        if !made && left.contains(&f.volume_id) {
            self.drop_overlays(&[f]);
        }
        Ok(())
    }

    /// Snapshots the caller may see, narrowed by ids (all must exist), owners
    /// (`self`, `amazon` or account ids) and RestorableBy (`self` or account ids).
    pub fn snapshots(
        &self,
        scope: &Scope,
        ids: &[kiln_types::SnapshotId],
        owners: &[String],
        restorable_by: &[String],
    ) -> Result<Vec<Snapshot>> {
        self.store.read(|c| {
            let accounts = accounts::list(c)?;
            let provider: Vec<String> = accounts.iter().filter(|a| a.is_provider).map(|a| a.id.clone()).collect();
            let all = if ids.is_empty() {
                let mut all = snapshots::list_owned(c, scope)?;
                for p in provider.iter().filter(|p| **p != scope.account) {
                    all.extend(snapshots::list_owned(c, &Scope { account: p.clone(), region: scope.region.clone() })?);
                }
                all.extend(snapshots::shared_with(c, &scope.account, &scope.region)?);
                all
            } else {
                // Named ones are read by key.
                let mut found: Vec<Snapshot> = Vec::new();
                for id in ids {
                    let s = snapshots::get(c, id)?.filter(|s| s.region == scope.region);
                    if let Some(s) = s {
                        if visible(c, &s, &scope.account)? && !found.iter().any(|f| f.id == s.id) {
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
            }
            if !restorable_by.is_empty() {
                let mut keep = Vec::new();
                for s in out {
                    let mut ok = false;
                    for r in restorable_by {
                        let who = if r == "self" { scope.account.as_str() } else { r.as_str() };
                        ok |= visible(c, &s, who)?;
                    }
                    if ok {
                        keep.push(s);
                    }
                }
                out = keep;
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

    /// CopySnapshot into the caller's region (`scope`) from `source_region`: a new
    /// snapshot on the same layer file (the store counts a file's users before
    /// removing it), so nothing is copied whatever the size or the regions.
    pub fn copy_snapshot(
        &self,
        scope: &Scope,
        source_region: &str,
        source_id: &str,
        description: Option<&str>,
        tags: &[(String, String)],
    ) -> Result<Snapshot> {
        if self.region(source_region).is_none() {
            return Err(Error::InvalidParameterValue(format!("The source region {source_region} is not served here")));
        }
        self.store.write(|tx| {
            let src = snapshots::get(tx, source_id)?
                .filter(|s| s.region == source_region)
                .ok_or_else(|| Error::not_found(ResourceKind::Snapshot, source_id))?;
            if !visible(tx, &src, &scope.account)? {
                return Err(Error::not_found(ResourceKind::Snapshot, source_id));
            }
            if src.state != "completed" {
                return Err(Error::IncorrectState(format!("Snapshot {source_id} is not completed yet")));
            }
            let copy = Snapshot {
                id: ResourceKind::Snapshot.generate(),
                account_id: scope.account.clone(),
                region: scope.region.clone(),
                parent_id: src.parent_id.clone(),
                file: src.file.clone(),
                volume_size: src.volume_size,
                state: "completed".into(),
                progress: 100,
                description: description
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("Copied for DestinationSnapshot from {source_id} ({source_region})")),
                volume_id: None,
                created_at: kiln_store::now(),
            };
            snapshots::insert(tx, &copy)?;
            crate::tags::put_all(tx, scope, ResourceKind::Snapshot, &copy.id, tags)?;
            Ok(copy)
        })
    }

    /// Who besides the owner may make volumes from the caller's snapshot.
    pub fn snapshot_permissions(&self, scope: &Scope, id: &str) -> Result<Vec<Grantee>> {
        self.store.read(|c| {
            owned(c, scope, id)?;
            Ok(snapshots::permissions(c, id)?
                .into_iter()
                .map(|g| if g == "all" { Grantee::All } else { Grantee::Account(g) })
                .collect())
        })
    }

    /// ModifySnapshotAttribute (createVolumePermission): grants and revocations,
    /// together or not at all. Account ids must have EC2's shape (12 digits).
    pub fn modify_snapshot_permissions(
        &self,
        scope: &Scope,
        id: &str,
        add: &[Grantee],
        remove: &[Grantee],
    ) -> Result<()> {
        for g in add.iter().chain(remove) {
            if let Grantee::Account(a) = g {
                if a.len() != 12 || !a.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(Error::InvalidParameterValue(format!("Invalid user id: '{a}' (expecting 12 digits)")));
                }
            }
        }
        self.store.write(|tx| {
            let s = owned(tx, scope, id)?;
            if s.state != "completed" {
                return Err(Error::IncorrectState(format!("Snapshot {id} is not completed yet")));
            }
            for g in add {
                snapshots::add_permission(tx, id, g.stored())?;
            }
            for g in remove {
                snapshots::remove_permission(tx, id, Some(g.stored()))?;
            }
            Ok(())
        })
    }

    /// ResetSnapshotAttribute (createVolumePermission): the snapshot is its owner's alone.
    pub fn reset_snapshot_permissions(&self, scope: &Scope, id: &str) -> Result<()> {
        self.store.write(|tx| {
            owned(tx, scope, id)?;
            Ok(snapshots::remove_permission(tx, id, None)?)
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
        // Under DryRun the rows' removal is rolled back: no file may go (and the loop
        // would never see the rows gone).
        if kiln_store::is_dry_run() {
            return Ok(());
        }
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
