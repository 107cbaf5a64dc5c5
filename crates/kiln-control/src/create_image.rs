//! CreateImage: an instance's volumes become a new AMI without copying their data. Each
//! volume's current qcow2 file is frozen as a snapshot layer and the volume continues on
//! a fresh overlay on top of it. A stopped instance is frozen offline; a running one is
//! first powered off and started again (EC2's default, for a consistent image), or with
//! NoReboot frozen live by QEMU (crash-consistent).

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use kiln_store::images::{BlockDevice, Image};
use kiln_store::instances::Instance;
use kiln_store::snapshots::{self, Snapshot};
use kiln_store::volumes::{self, Volume};
use kiln_store::Scope;
use kiln_types::{Architecture, ResourceKind};

use crate::images::{check_name, NewImage};
use crate::{tags, Cloud, Error, Result};

/// How long a running guest gets to power off before CreateImage gives up.
const POWER_OFF_WAIT: Duration = Duration::from_secs(90);
/// How long between presses of the power button.
pub(crate) const REPRESS: Duration = Duration::from_secs(15);

/// Removes the instance from the busy set when dropped.
struct Busy<'a>(&'a Cloud, String);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.busy.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.1);
    }
}

fn host(context: &str, detail: impl std::fmt::Display) -> Error {
    Error::Host { context: context.to_owned(), detail: detail.to_string() }
}

impl Cloud {
    /// Makes an AMI from an instance (running or stopped).
    #[allow(clippy::too_many_arguments)]
    pub fn create_image(
        &self,
        scope: &Scope,
        instance_id: &str,
        name: &str,
        description: &str,
        no_reboot: bool,
        mappings: &[crate::instances::VolumeRequest],
        image_tags: &[(String, String)],
        snapshot_tags: &[(String, String)],
    ) -> Result<Option<Image>> {
        check_name(name)?;
        let i = self.instances(scope, &[instance_id.to_owned()])?.remove(0);
        if !matches!(i.state.as_str(), "running" | "stopped") {
            return Err(Error::IncorrectInstanceState(format!(
                "The instance '{instance_id}' is not in a state from which an image can be made: it is {}.",
                i.state
            )));
        }
        let taken = self.images(scope, &[], &["self".into()], &[])?.iter().any(|v| v.image.name == name);
        if taken {
            return Err(Error::Duplicate { kind: ResourceKind::Image, name: name.to_owned() });
        }
        // The instance's volumes with the request's mapping applied, checked before
        // anything is touched. Volumes excluded with NoDevice are not frozen.
        let vols = self.instance_volumes(&i.id)?;
        let base: Vec<BlockDevice> = vols
            .iter()
            .map(|v| BlockDevice {
                device_name: v.device_name.clone().unwrap_or_else(|| i.root_device_name.clone()),
                snapshot_id: None,
                volume_size: v.size_gib,
                volume_type: v.volume_type.clone(),
                delete_on_termination: v.delete_on_termination,
            })
            .collect();
        let mapping = crate::block_devices::apply(base.clone(), &i.root_device_name, mappings, |s| {
            self.usable_snapshot(scope, s).map(|s| s.volume_size)
        })?;
        let keep: Vec<String> = base
            .iter()
            .filter(|b| mapping.iter().any(|m| m.device_name == b.device_name))
            .map(|b| b.device_name.clone())
            .collect();
        if kiln_store::is_dry_run() {
            // Everything is checked; a dry run touches no VM and no file.
            return Ok(None);
        }
        let agent = self.agent()?.clone();
        {
            let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
            if !busy.insert(i.id.clone()) {
                return Err(Error::IncorrectInstanceState(format!(
                    "The instance '{instance_id}' is already being imaged"
                )));
            }
        }
        let _busy = Busy(self, i.id.clone());
        let live = i.state == "running" && agent.is_running(&i.id);
        let restart = live && !no_reboot;
        if restart {
            agent.powerdown(&i.id).map_err(|e| host("powering off for CreateImage", e))?;
            let t = Instant::now();
            let mut pressed = Instant::now();
            while agent.is_running(&i.id) && t.elapsed() < POWER_OFF_WAIT {
                // A press early in the guest's boot can go unheard: press again.
                if pressed.elapsed() > REPRESS {
                    let _ = agent.powerdown(&i.id);
                    pressed = Instant::now();
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            if agent.is_running(&i.id) {
                return Err(host("CreateImage", "the guest did not power off; try NoReboot=true"));
            }
        }
        let frozen = self.freeze(scope, &i, &keep, live && !restart, snapshot_tags);
        if restart {
            // Whatever happened, the instance runs again.
            let vols = self.instance_volumes(&i.id)?;
            let spec = self.spec(&i, &vols)?;
            agent.start(&spec).map_err(|e| host("restarting after CreateImage", e))?;
            self.store.write(|tx| Ok::<_, Error>(kiln_store::instances::clear_ready(tx, &i.id)?))?;
        }
        let frozen = frozen?;
        // Frozen volumes carry their new snapshots; added devices are as asked.
        let devices: Vec<BlockDevice> = mapping
            .into_iter()
            .map(|m| match frozen.iter().find(|f| f.device_name == m.device_name) {
                Some(f) => BlockDevice { snapshot_id: f.snapshot_id.clone(), ..m },
                None => m,
            })
            .collect();
        let arch: Architecture =
            i.architecture.parse().map_err(|_| Error::InvalidParameterValue("architecture".into()))?;
        let new = NewImage {
            kernel_file: i.kernel_file.clone(),
            ramdisk_file: i.ramdisk_file.clone(),
            kernel_cmdline: i.kernel_cmdline.clone(),
            source_instance_id: Some(i.id.clone()),
            ..NewImage::new(name.to_owned(), description.to_owned(), arch, i.root_device_name.clone(), devices)
        };
        self.register_image(scope, new, image_tags).map(Some)
    }

    /// Freezes the instance's volumes on the devices in `keep` into snapshot layers; the
    /// volumes go on on new overlays. Returns their block devices.
    fn freeze(
        &self,
        scope: &Scope,
        i: &Instance,
        keep: &[String],
        live: bool,
        snapshot_tags: &[(String, String)],
    ) -> Result<Vec<BlockDevice>> {
        let agent = self.agent()?;
        let vols: Vec<Volume> = self.instance_volumes(&i.id)?;
        let mut devices = Vec::new();
        for (index, v) in vols.iter().enumerate() {
            let device = v.device_name.clone().unwrap_or_else(|| i.root_device_name.clone());
            if !keep.contains(&device) {
                continue;
            }
            let stamp = chrono::Utc::now().format("%Y%m%d%H%M%S%3f");
            let new_rel = format!("volumes/{}-{stamp}.qcow2", v.id);
            let old = self.data_dir().join(&v.file);
            let new = self.data_dir().join(&new_rel);
            if live {
                agent.live_snapshot(&i.id, index, &new).map_err(|e| host("freezing a running volume", e))?;
            } else {
                agent
                    .create_volume(&new, Some(&old), v.size_gib as u64)
                    .map_err(|e| host("making the new overlay", e))?;
            }
            let _ = std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o444));
            let snap = Snapshot {
                id: ResourceKind::Snapshot.generate(),
                account_id: scope.account.clone(),
                region: scope.region.clone(),
                parent_id: v.snapshot_id.clone(),
                file: v.file.clone(),
                volume_size: v.size_gib,
                state: "completed".into(),
                progress: 100,
                description: format!("Created by CreateImage({}) for {}", i.id, v.id),
                volume_id: Some(v.id.clone()),
                created_at: kiln_store::now(),
            };
            self.store.write(|tx| {
                snapshots::insert(tx, &snap)?;
                volumes::set_layer(tx, &v.id, &new_rel, &snap.id)?;
                tags::put_all(tx, scope, ResourceKind::Snapshot, &snap.id, snapshot_tags)
            })?;
            devices.push(BlockDevice {
                device_name: device,
                snapshot_id: Some(snap.id),
                volume_size: v.size_gib,
                volume_type: v.volume_type.clone(),
                delete_on_termination: v.delete_on_termination,
            });
        }
        Ok(devices)
    }
}
