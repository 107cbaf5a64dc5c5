//! CreateImage: an instance's volumes become a new AMI without copying their data. Each
//! volume's current qcow2 file is frozen as a snapshot layer and the volume continues on
//! a fresh overlay on top of it. A stopped instance is frozen offline; a running one is
//! first powered off and started again (EC2's default, for a consistent image), or with
//! NoReboot frozen live by QEMU (crash-consistent).
//!
//! The request records everything at once, in one transaction: the image and its
//! snapshots as `pending`, and a workflow holding the plan (which snapshot id and which
//! new overlay file each volume gets). It answers with the image id at once, as EC2
//! does. The reconciler then runs the plan's phases (power off, freeze, restart,
//! register), each idempotent. A volume's switch to its new overlay is recorded before
//! the file is made, so that whatever instant the daemon dies, the store names both the
//! frozen layer and the overlay, and no file the VM writes is taken for a stray.

use std::time::Duration;

use kiln_agent_api::StorePath;
use kiln_store::images::{self, BlockDevice};
use kiln_store::instances::{self, Instance};
use kiln_store::snapshots::{self, Snapshot};
use kiln_store::volumes;
use kiln_store::Scope;
use kiln_types::{Architecture, InstanceState, ResourceKind};

use crate::images::{check_name, NewImage};
use crate::workflows::{Freeze, ImagePlan, Phase, Step, Work};
use crate::{tags, Cloud, Error, Result};

/// How long a running guest gets to power off before CreateImage gives up.
const POWER_OFF_WAIT: Duration = Duration::from_secs(90);
/// How long between presses of the power button.
pub(crate) const REPRESS: Duration = Duration::from_secs(15);

fn since(t: &Option<String>) -> Duration {
    t.as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .and_then(|t| (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).to_std().ok())
        .unwrap_or(Duration::MAX)
}

impl Cloud {
    /// CreateImage: checks everything, records the pending image, its pending snapshots
    /// and the workflow that makes them, and answers at once.
    #[allow(clippy::too_many_arguments)]
    pub fn create_image(
        &self,
        scope: &Scope,
        instance_id: &kiln_types::InstanceId,
        name: &str,
        description: &str,
        no_reboot: bool,
        mappings: &[crate::instances::VolumeRequest],
        image_tags: &[(String, String)],
        snapshot_tags: &[(String, String)],
    ) -> Result<kiln_store::images::Image> {
        check_name(name)?;
        let i = self.instances(scope, std::slice::from_ref(instance_id))?.remove(0);
        if !matches!(i.state, InstanceState::Running | InstanceState::Stopped) {
            return Err(Error::IncorrectInstanceState(format!(
                "The instance '{instance_id}' is not in a state from which an image can be made: it is {}.",
                i.state
            )));
        }
        // The instance's volumes with the request's mapping applied, checked before
        // anything is recorded. Volumes excluded with NoDevice are not frozen.
        let vols = self.instance_volumes(&i.id)?;
        let base: Vec<BlockDevice> = vols
            .iter()
            .map(|v| BlockDevice {
                device_name: v.device_name.clone().unwrap_or_else(|| i.root_device_name.clone()),
                snapshot_id: None,
                volume_size: v.size_gib,
                volume_type: v.volume_type,
                delete_on_termination: v.delete_on_termination,
            })
            .collect();
        let mapping = crate::block_devices::apply(base.clone(), &i.root_device_name, mappings, |s| {
            self.usable_snapshot(scope, s).map(|s| s.volume_size)
        })?;
        let mut plan = Vec::new();
        let mut snaps = Vec::new();
        for (v, b) in vols.iter().zip(&base) {
            if !mapping.iter().any(|m| m.device_name == b.device_name) {
                continue;
            }
            let snap = crate::snapshots::pending(scope, v, &format!("Created by CreateImage({}) for {}", i.id, v.id));
            plan.push((
                b.device_name.clone(),
                Freeze {
                    volume_id: v.id.clone(),
                    snapshot_id: snap.id.clone(),
                    // Named after the snapshot, unique: two CreateImage requests of one
                    // instance within a millisecond once got one name, and the second
                    // took the first's overlay for its own.
                    new_file: format!("volumes/{}-{}.qcow2", v.id, snap.id),
                },
            ));
            snaps.push(snap);
        }
        // Frozen devices carry their snapshots; added devices are as asked.
        let devices: Vec<BlockDevice> = mapping
            .into_iter()
            .map(|m| match plan.iter().find(|(d, _)| *d == m.device_name) {
                Some((_, f)) => BlockDevice { snapshot_id: Some(f.snapshot_id.clone()), ..m },
                None => m,
            })
            .collect();
        let arch: Architecture =
            i.architecture.parse().map_err(|_| Error::InvalidParameterValue("architecture".into()))?;
        let new = NewImage {
            kernel_file: i.kernel_file.clone(),
            ramdisk_file: i.ramdisk_file.clone(),
            kernel_cmdline: i.kernel_cmdline.clone(),
            tcg_tb_size_mib: i.tcg_tb_size_mib.and_then(|m| u32::try_from(m).ok()),
            source_instance_id: Some(i.id.clone()),
            ..NewImage::new(name.to_owned(), description.to_owned(), arch, i.root_device_name.clone(), devices)
        };
        let (mut image, devices) = new.into_row(scope);
        image.state = "pending".into();
        let work = Work::CreateImage(ImagePlan {
            instance_id: i.id.clone(),
            image_id: image.id.clone(),
            reboot: !no_reboot && i.state == InstanceState::Running,
            volumes: plan.into_iter().map(|(_, f)| f).collect(),
            phase: Phase::PowerOff,
            asked_at: None,
            presses: 0,
            pressed_at: None,
            powered_off: false,
        });
        self.store.write(|tx| {
            // Compare-and-set on what was checked: the state read above still holds.
            let now = instances::get(tx, &i.id)?.map(|n| n.state);
            if now != Some(i.state) {
                return Err(Error::IncorrectInstanceState(format!(
                    "The instance '{instance_id}' changed state meanwhile; try again."
                )));
            }
            for s in &snaps {
                snapshots::insert(tx, s)?;
                tags::put_all(tx, scope, ResourceKind::Snapshot, &s.id, snapshot_tags)?;
            }
            if !images::insert(tx, &image, &devices)? {
                return Err(Error::Duplicate { kind: ResourceKind::Image, name: name.to_owned() });
            }
            tags::put_all(tx, scope, ResourceKind::Image, &image.id, image_tags)?;
            // Behind any CreateImage already under way on this instance.
            crate::workflows::record(tx, work.clone())?;
            Ok(image.clone())
        })
    }

    /// One phase of a CreateImage workflow (the reconciler calls this; see `workflows`).
    pub(crate) fn image_step(&self, mut p: ImagePlan, i: Option<&Instance>) -> Result<Step> {
        let Some(i) = i else {
            return Err(Error::IncorrectInstanceState(format!("The instance {} is gone", p.instance_id)));
        };
        let agent = self.agent_for(i)?;
        match p.phase {
            Phase::PowerOff => {
                let live = i.state == InstanceState::Running && crate::reconcile::runs(agent.as_ref(), &i.id)?;
                if !p.reboot || !live {
                    // Nothing to power off, or the guest is off (as asked, or by itself).
                    p.phase = Phase::Freeze;
                    return Ok(Step::Next(Work::CreateImage(p)));
                }
                if p.asked_at.is_none() {
                    // Saved before the first press: from here on a restart is owed.
                    p.asked_at = Some(kiln_store::now());
                    p.powered_off = true;
                    return Ok(Step::Next(Work::CreateImage(p)));
                }
                if since(&p.asked_at) > POWER_OFF_WAIT {
                    return Err(Error::IncorrectInstanceState(format!(
                        "The guest of {} did not power off within {} s; try CreateImage with NoReboot=true",
                        i.id,
                        POWER_OFF_WAIT.as_secs()
                    )));
                }
                // A press early in the guest's boot can go unheard: press again.
                if p.presses == 0 || since(&p.pressed_at) > REPRESS {
                    agent.powerdown(&i.id).map_err(|e| Error::host("powering off for CreateImage", e))?;
                    p.presses += 1;
                    p.pressed_at = Some(kiln_store::now());
                }
                Ok(Step::Wait(Work::CreateImage(p)))
            }
            Phase::Freeze => {
                for f in &p.volumes {
                    self.freeze(Some(&i.id), f)?;
                }
                p.phase = Phase::Restart;
                Ok(Step::Next(Work::CreateImage(p)))
            }
            Phase::Restart => {
                // Read afresh: a Stop or Terminate may have come meanwhile, and then the
                // guest stays off.
                let now = self.store.read(|c| Ok::<_, Error>(instances::get(c, &i.id)?));
                if p.powered_off {
                    self.restart_after_image(now?.as_ref())?;
                }
                p.phase = Phase::Register;
                Ok(Step::Next(Work::CreateImage(p)))
            }
            Phase::Register => {
                self.store.write(|tx| {
                    let made = images::finish_pending(tx, &p.image_id, "available", None)?;
                    for f in &p.volumes {
                        snapshots::set_state(tx, &f.snapshot_id, "completed", 100)?;
                        if !made {
                            // The image was deregistered while it was being made: its
                            // layers stay hidden while the volumes build on them.
                            snapshots::mark_deleted(tx, &f.snapshot_id)?;
                        }
                    }
                    Ok::<_, Error>(())
                })?;
                self.collect_layers()?;
                Ok(Step::Done)
            }
        }
    }

    /// Starts the guest again after its power-off for CreateImage, unless the instance
    /// has been stopped or terminated meanwhile.
    fn restart_after_image(&self, i: Option<&Instance>) -> Result<()> {
        let Some(i) = i.filter(|i| i.state == InstanceState::Running) else { return Ok(()) };
        let agent = self.agent_for(i)?;
        if crate::reconcile::runs(agent.as_ref(), &i.id)? {
            return Ok(());
        }
        let vols = self.instance_volumes(&i.id)?;
        let spec = self.spec(i, &vols)?;
        agent.start(&spec).map_err(|e| Error::host("restarting after CreateImage", e))?;
        self.store.write(|tx| Ok::<_, Error>(instances::clear_ready(tx, &i.id)?))
    }

    /// Freezes one volume (idempotent): its current file becomes the snapshot's layer
    /// and it goes on on the new overlay, live through QEMU if the VM runs.
    pub(crate) fn freeze(&self, instance_id: Option<&str>, f: &Freeze) -> Result<()> {
        self.freeze_all(instance_id, std::slice::from_ref(f))
    }

    /// Freezes volumes of one instance at one instant (idempotent): each switch is
    /// recorded first, then a running VM switches every disk in one QMP transaction;
    /// without a VM, each overlay is made on its file.
    pub(crate) fn freeze_all(&self, instance_id: Option<&str>, freezes: &[Freeze]) -> Result<()> {
        let agent = self.agent()?;
        let mut switches = Vec::new();
        let mut seals = Vec::new();
        for f in freezes {
            let (vol, snap) = self
                .store
                .read(|c| Ok::<_, Error>((volumes::get(c, &f.volume_id)?, snapshots::get(c, &f.snapshot_id)?)))?;
            let (Some(vol), Some(snap)) = (vol, snap) else {
                return Err(Error::IncorrectState(format!(
                    "Volume {} or snapshot {} is gone; the snapshot cannot be made",
                    f.volume_id, f.snapshot_id
                )));
            };
            let snap = if vol.file != f.new_file {
                // Recorded before the file changes: from now on the volume's current file
                // is the snapshot's layer and the overlay the volume's, whatever happens
                // next. (Taken now, not at the request: an earlier workflow queued on the
                // same instance may have moved the volume on since.)
                self.store.write(|tx| {
                    snapshots::set_origin(tx, &snap.id, &vol.file, vol.snapshot_id.as_deref())?;
                    if instance_id.is_some() {
                        // The workflow holds the instance: nothing else moves the volume.
                        volumes::set_layer(tx, &vol.id, &f.new_file, Some(&f.snapshot_id))?;
                    } else if !volumes::set_layer_if_detached(tx, &vol.id, &vol.file, &f.new_file, &f.snapshot_id)? {
                        // Attached or moved on since it was read: not frozen here.
                        return Err(Error::IncorrectState(format!(
                            "Volume {} changed while being snapshotted; try again",
                            vol.id
                        )));
                    }
                    Ok::<_, Error>(Snapshot { file: vol.file.clone(), parent_id: vol.snapshot_id.clone(), ..snap })
                })?
            } else {
                snap
            };
            let old = crate::reconcile::store_path(&snap.file)?;
            let new = crate::reconcile::store_path(&f.new_file)?;
            // The layer the store says is under the old file, which its sealing checks.
            let under = match &snap.parent_id {
                Some(p) => match self.store.read(|c| Ok::<_, Error>(snapshots::get_even_deleted(c, p)?))? {
                    Some(parent) => Some(crate::reconcile::store_path(&parent.file)?),
                    None => {
                        return Err(Error::Store(kiln_store::StoreError::Corrupt(format!(
                            "snapshot {p} under {} has no row",
                            snap.id
                        ))))
                    }
                },
                None => None,
            };
            seals.push((old.clone(), under));
            switches.push((old, new, vol.size_gib as u64));
        }
        let instance = match instance_id {
            Some(id) => self.store.read(|c| Ok::<_, Error>(instances::get(c, id)?))?,
            None => None,
        };
        if let Some((i, host)) = instance.as_ref().and_then(|i| Some((i, i.host_id.as_deref()?))) {
            // A joined host's volumes are served from the store: each overlay is made
            // here and exported (the file it is on stays exported, as a layer), and a
            // running VM goes on to it before the snapshot counts as made.
            for (old, new, size) in &switches {
                agent.create_volume(new, Some(old), *size).map_err(|e| Error::host("making the new overlay", e))?;
            }
            self.sync_volume_server_of(host, &[])?;
            let on_host = self.agent_for(i)?;
            if crate::reconcile::runs(on_host.as_ref(), &i.id)? {
                let vols = self.instance_volumes(&i.id)?;
                let disks: Vec<_> = self
                    .disks_for(i, &vols)?
                    .into_iter()
                    .filter(|d| switches.iter().any(|(_, new, _)| *new == d.file))
                    .collect();
                on_host.switch_served(&i.id, &disks).map_err(|e| Error::host("freezing running volumes", e))?;
            }
            // No VM writes the old files now: their server serves them read-only, sealed
            // against what the host wrote into them, before the snapshot counts as made.
            let olds: Vec<StorePath> = seals.iter().map(|(old, _)| old.clone()).collect();
            self.sync_volume_server_of(host, &olds)?;
            return self.seal_all(agent.as_ref(), &seals);
        }
        let running = match instance_id {
            Some(id) => crate::reconcile::runs(agent.as_ref(), id)?.then_some(id),
            None => None,
        };
        if let Some(id) = running {
            // Idempotent in the agent: a disk already on its overlay is left as it is.
            let pairs: Vec<_> = switches.into_iter().map(|(old, new, _)| (old, new)).collect();
            agent.live_snapshot(id, &pairs).map_err(|e| Error::host("freezing running volumes", e))?;
        } else {
            for (old, new, size) in switches {
                // Whole or not at all, and left alone when it exists (a retry).
                agent.create_volume(&new, Some(&old), size).map_err(|e| Error::host("making the new overlay", e))?;
            }
            // A detached volume may have been served to a host, which wrote its file.
            self.seal_all(agent.as_ref(), &seals)?;
        }
        Ok(())
    }

    /// Seals files that have become layers (`HostAgent::seal`), each against the layer
    /// under it.
    fn seal_all(&self, agent: &dyn kiln_agent_api::HostAgent, seals: &[(StorePath, Option<StorePath>)]) -> Result<()> {
        for (layer, under) in seals {
            agent.seal(layer, under.as_ref(), true).map_err(|e| Error::host(format!("sealing {layer}"), e))?;
        }
        Ok(())
    }

    /// The volumes of `freezes` whose VM runs and is not on their overlay (`drives_on`
    /// asked of its host), for work that gives up: asked before `settle_switch`, out
    /// of the store's transaction. A host that cannot say is an error: the work's undoing
    /// waits for it (never judged made while its VM may still write the file before).
    pub(crate) fn left_behind(&self, instance_id: Option<&str>, freezes: &[Freeze]) -> Result<Vec<String>> {
        {
            let Some(id) = instance_id else { return Ok(Vec::new()) };
            let Some(i) = self.store.read(|c| Ok::<_, Error>(instances::get(c, id)?))? else {
                return Ok(Vec::new());
            };
            let agent = self.agent_for(&i)?;
            if !crate::reconcile::runs(agent.as_ref(), id)? {
                return Ok(Vec::new());
            }
            let disks = freezes
                .iter()
                .map(|f| {
                    Ok(kiln_agent_api::Disk {
                        volume_id: crate::reconcile::stored_id(&f.volume_id)?,
                        file: crate::reconcile::store_path(&f.new_file)?,
                        below: Vec::new(),
                        settling: None,
                        served: None,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let on = agent.drives_on(id, &disks).map_err(|e| Error::host(format!("asking {id}'s disks"), e))?;
            Ok(freezes.iter().zip(on).filter(|(_, on)| !on).map(|(f, _)| f.volume_id.clone()).collect())
        }
    }

    /// Removes the overlays of `undone` switches (after the transaction that put their
    /// volumes back on their files). A file left by a failure here is a stray, swept at
    /// the next start.
    pub(crate) fn drop_overlays(&self, undone: &[&Freeze]) {
        for f in undone {
            let gone = crate::reconcile::store_path(&f.new_file).and_then(|file| {
                self.agent()?.delete_volume(&file).map_err(|e| Error::host(format!("removing {file}"), e))
            });
            if let Err(e) = gone {
                tracing::warn!(file = %f.new_file, error = %e, "cannot remove an overlay nothing went on to");
            }
        }
    }

    /// Whether `f`'s volume really went on to its overlay, for work that gives up. The
    /// switch is recorded before it is made, and the agent removes an overlay a VM did
    /// not switch to (as `create_volume` makes one whole or not at all), so it was made
    /// when the store says so and the overlay exists, unless its VM is known to be
    /// still on the file before (`left`, from `left_behind`: a joined host's overlay is
    /// made in the store before its VM switches). A switch recorded but never made is
    /// undone here: the volume is on its old file (the VM still writes it) again; an
    /// overlay nothing went on to is for the caller to drop once this commits
    /// (`drop_overlays`).
    pub(crate) fn settle_switch(&self, tx: &kiln_store::Connection, f: &Freeze, left: &[String]) -> Result<bool> {
        let Some(vol) = volumes::get(tx, &f.volume_id)? else { return Ok(false) };
        if vol.file != f.new_file {
            return Ok(false);
        }
        let new_file = crate::reconcile::store_path(&f.new_file)?;
        let agent = self.agent()?;
        let exists = agent.volume_exists(&new_file).map_err(|e| Error::host(format!("looking for {new_file}"), e))?;
        if exists && !left.contains(&f.volume_id) {
            return Ok(true);
        }
        let snap = snapshots::get_even_deleted(tx, &f.snapshot_id)?.ok_or_else(|| {
            Error::Store(kiln_store::StoreError::Corrupt(format!(
                "volume {} names snapshot {} as its layer, which has no row",
                vol.id, f.snapshot_id
            )))
        })?;
        tracing::warn!(volume = %vol.id, snapshot = %snap.id, "the switch to a new overlay was recorded but never made; undoing it");
        volumes::set_layer(tx, &vol.id, &snap.file, snap.parent_id.as_deref())?;
        Ok(false)
    }

    /// Undoes a CreateImage that cannot finish: the guest runs again if the workflow
    /// powered it off; snapshots already frozen stay as hidden layers under their
    /// volumes; the others go; the image is `failed` with the reason.
    pub(crate) fn undo_image(&self, p: &ImagePlan, reason: &str) -> Result<()> {
        if p.powered_off {
            let now = self.store.read(|c| Ok::<_, Error>(instances::get(c, &p.instance_id)?))?;
            if let Err(e) = self.restart_after_image(now.as_ref()) {
                tracing::error!(instance = %p.instance_id, error = %e, "could not restart after a failed CreateImage");
            }
        }
        let left = self.left_behind(Some(&p.instance_id), &p.volumes)?;
        let undone = self.store.write(|tx| {
            let mut undone = Vec::new();
            for f in &p.volumes {
                if self.settle_switch(tx, f, &left)? {
                    snapshots::set_state(tx, &f.snapshot_id, "completed", 100)?;
                    snapshots::mark_deleted(tx, &f.snapshot_id)?;
                } else {
                    // Its row names the volume's live file: only the row goes.
                    images::unmap_snapshot(tx, &f.snapshot_id)?;
                    snapshots::remove(tx, &f.snapshot_id)?;
                    if left.contains(&f.volume_id) {
                        undone.push(f);
                    }
                }
            }
            images::finish_pending(tx, &p.image_id, "failed", Some(&format!("Client.CreateImageFailed: {reason}")))?;
            Ok::<_, Error>(undone)
        })?;
        self.drop_overlays(&undone);
        self.collect_layers()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::PathBuf;

    use kiln_store::workflows;

    use super::*;
    use crate::testkit::{CrashAt, World, CRASH};

    /// Silences the panics of injected crashes (others still print).
    fn quiet_crashes() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                let msg = info.payload().downcast_ref::<String>().map(String::as_str).unwrap_or_default();
                if msg != CRASH {
                    previous(info);
                }
            }));
        });
    }

    fn running_instance(w: &mut World) -> kiln_types::InstanceId {
        let id = w.launch();
        w.passes_until(10, |w| w.state(&id) == InstanceState::Running && w.agent.runs(&id));
        id
    }

    fn image_state(w: &World, id: &str) -> Option<String> {
        w.cloud.store.read(|c| images::state(c, id)).expect("image state")
    }

    /// Every file the store names exists, and every file under volumes/ and
    /// snapshots/ is one the store names.
    fn no_orphans_nothing_missing(w: &World) {
        let (vols, snaps) =
            w.cloud.store.read(|c| Ok::<_, Error>((volumes::all(c)?, snapshots::all_files(c)?))).expect("files");
        let known: BTreeSet<String> = vols.iter().map(|v| v.file.clone()).chain(snaps).collect();
        for f in &known {
            assert!(w.dir.join(f).exists(), "the store names {f}, which is missing");
        }
        for sub in ["volumes", "snapshots"] {
            for e in std::fs::read_dir(w.dir.join(sub)).into_iter().flatten().flatten() {
                let rel = format!("{sub}/{}", e.file_name().to_string_lossy());
                assert!(known.contains(&rel), "{rel} is an orphan");
            }
        }
    }

    /// After CreateImage of `id` (whose root was `before` when it was asked): the image
    /// is available and alone of its name, its root snapshot is the file the VM wrote
    /// before, and the VM (running) writes to the file the store names, so no guest
    /// write is lost at the next start.
    fn image_made_nothing_lost(w: &World, id: &str, image: &str, name: &str, before: &PathBuf) {
        assert_eq!(image_state(w, image).as_deref(), Some("available"));
        let named = w.cloud.images(&w.scope, &[], &["self".into()], &[]).expect("images");
        assert_eq!(named.iter().filter(|v| v.image.name == name).count(), 1, "one image of that name");
        let view = named.iter().find(|v| v.image.id == image).expect("the image");
        let snap_id = view.devices[0].snapshot_id.clone().expect("root snapshot");
        let snap = w.cloud.store.read(|c| snapshots::get(c, &snap_id)).expect("read").expect("snapshot");
        assert_eq!(snap.state, "completed");
        assert_eq!(&w.dir.join(&snap.file), before, "the snapshot is the layer the VM wrote until then");
        let vol = &w.cloud.instance_volumes(id).expect("volumes")[0];
        assert_eq!(vol.snapshot_id.as_deref(), Some(snap_id.as_str()));
        assert_eq!(w.state(id), InstanceState::Running);
        assert_eq!(w.agent.disk(id, 0), Some(w.dir.join(&vol.file)), "the VM writes the file the store names");
        let running = w.cloud.store.read(workflows::running).expect("workflows");
        assert!(!running.iter().any(|wf| wf.params.contains(image)), "{running:?}");
        no_orphans_nothing_missing(w);
    }

    #[test]
    fn create_image_answers_pending_and_the_reconciler_makes_it() {
        for no_reboot in [true, false] {
            let mut w = World::new(&format!("ci-{no_reboot}"));
            let id = running_instance(&mut w);
            let before = w.agent.disk(&id, 0).expect("disk");
            let image = w.cloud.create_image(&w.scope, &id, "img", "", no_reboot, &[], &[], &[]).expect("create");
            assert_eq!(image.state, "pending");
            // The snapshot shows as pending meanwhile, and cannot be deleted.
            let snaps = w.cloud.snapshots(&w.scope, &[], &["self".into()], &[]).expect("snapshots");
            let pending: Vec<_> = snaps.iter().filter(|s| s.state == "pending").collect();
            assert_eq!(pending.len(), 1);
            assert!(matches!(w.cloud.delete_snapshot(&w.scope, &pending[0].id), Err(Error::IncorrectState(_))));
            // A second CreateImage of the same instance waits its turn, then freezes
            // what the first left (its layer builds on the first image's).
            let second = w.cloud.create_image(&w.scope, &id, "img2", "", true, &[], &[], &[]).expect("queued");
            w.passes_until(20, |w| image_state(w, &image.id).as_deref() != Some("pending"));
            let after_first = w.agent.disk(&id, 0).expect("disk");
            image_made_nothing_lost(&w, &id, &image.id, "img", &before);
            w.passes_until(20, |w| image_state(w, &second.id).as_deref() != Some("pending"));
            image_made_nothing_lost(&w, &id, &second.id, "img2", &after_first);
            let first_root = w.cloud.images(&w.scope, &[image.id.parse().expect("id")], &[], &[]).expect("img")[0]
                .devices[0]
                .snapshot_id
                .clone();
            let second_root = w.cloud.images(&w.scope, &[second.id.parse().expect("id")], &[], &[]).expect("img2")[0]
                .devices[0]
                .snapshot_id
                .clone()
                .expect("snapshot");
            let parent =
                w.cloud.store.read(|c| snapshots::get(c, &second_root)).expect("read").expect("snap").parent_id;
            assert_eq!(parent, first_root);
        }
    }

    #[test]
    fn a_crash_at_any_point_of_create_image_loses_nothing() {
        quiet_crashes();
        let mut cycles = 0;
        let mut crashed = 0;
        for no_reboot in [true, false] {
            for at in [CrashAt::Before, CrashAt::After] {
                // Past the last host effect nothing crashes: those cycles check a plain run.
                for n in 0..4 {
                    let mut w = World::new(&format!("crash-{no_reboot}-{at:?}-{n}"));
                    let id = running_instance(&mut w);
                    let before = w.agent.disk(&id, 0).expect("disk");
                    let image =
                        w.cloud.create_image(&w.scope, &id, "img", "", no_reboot, &[], &[], &[]).expect("create");
                    w.agent.crash_after(n, at);
                    crashed += w.passes_until(30, |w| {
                        image_state(w, &image.id).as_deref() != Some("pending") && w.agent.runs(&id)
                    });
                    // Passes after the crash changed nothing that matters.
                    let mut n = 0;
                    w.passes_until(3, |_| {
                        n += 1;
                        n > 2
                    });
                    image_made_nothing_lost(&w, &id, &image.id, "img", &before);
                    cycles += 1;
                }
            }
        }
        println!("CreateImage crash injection: {cycles} cycles, {crashed} crashes, every invariant held");
        // NoReboot has one host effect (the live snapshot); a reboot has three (power
        // off, new overlay, start): eight crash points, before and after each.
        assert_eq!(crashed, 8, "every crash point was reached once");
    }

    #[test]
    fn a_guest_that_never_powers_off_fails_the_image_and_keeps_running() {
        let mut w = World::new("deaf");
        let id = running_instance(&mut w);
        *w.agent.deaf.lock().expect("deaf") = true;
        let image = w.cloud.create_image(&w.scope, &id, "img", "", false, &[], &[], &[]).expect("create");
        // Pretend the power-off was asked long ago.
        let wf = w.cloud.store.read(workflows::running).expect("wf").remove(0);
        let mut work: crate::workflows::Work = serde_json::from_str(&wf.params).expect("params");
        if let crate::workflows::Work::CreateImage(p) = &mut work {
            p.asked_at = Some("2020-01-01T00:00:00.000Z".into());
            p.powered_off = true;
            p.presses = 1;
            p.pressed_at = p.asked_at.clone();
        }
        let params = serde_json::to_string(&work).expect("json");
        w.cloud.store.write(|tx| workflows::advance(tx, &wf.id, "poweroff", &params)).expect("save");
        w.passes_until(10, |w| image_state(w, &image.id).as_deref() != Some("pending"));
        assert_eq!(image_state(&w, &image.id).as_deref(), Some("failed"));
        assert_eq!(w.state(&id), InstanceState::Running);
        assert!(w.agent.runs(&id));
        // Nothing of the failed image is visible but the image itself, in `failed`.
        let snaps = w.cloud.snapshots(&w.scope, &[], &["self".into()], &[]).expect("snapshots");
        assert!(snaps.iter().all(|s| s.description == "base"), "{snaps:?}");
        no_orphans_nothing_missing(&w);
    }
}
