//! EBS volumes as an API: CreateVolume (blank, or copy-on-write on a snapshot),
//! DeleteVolume, AttachVolume and DetachVolume (the reconciler hot-plugs the disk into
//! a running VM and has the guest release it, see `reconcile.rs`), ModifyVolume (grown
//! live), their attributes, and the account's encryption default. Instances' own
//! volumes are the same records.

use kiln_store::instances::{self, Instance};
use kiln_store::snapshots;
use kiln_store::volumes::{self, Modification, Volume};
use kiln_store::{Connection, Scope};
use kiln_types::{InstanceState, ResourceKind, VolumeAttachState, VolumeState, VolumeType};

use crate::{tags, Cloud, Error, Result};

/// What CreateVolume asks for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewVolume {
    pub availability_zone: String,
    pub size_gib: Option<i64>,
    pub snapshot_id: Option<String>,
    pub volume_type: Option<VolumeType>,
    pub iops: Option<i64>,
    pub throughput: Option<i64>,
    pub encrypted: Option<bool>,
    pub kms_key_id: Option<String>,
    pub multi_attach: bool,
    pub tags: Vec<(String, String)>,
    pub client_token: Option<String>,
}

/// What ModifyVolume asks to change (absent: as it is).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VolumeChange {
    pub size_gib: Option<i64>,
    pub volume_type: Option<VolumeType>,
    pub iops: Option<i64>,
    pub throughput: Option<i64>,
}

/// A volume's size, type, IOPS and throughput, checked against EC2's limits for the
/// type; returns the IOPS and throughput it records (defaults filled in).
fn check_shape(
    t: VolumeType,
    size: i64,
    iops: Option<i64>,
    throughput: Option<i64>,
) -> Result<(Option<i64>, Option<i64>)> {
    let l = t.limits();
    if size < l.min_gib || size > l.max_gib {
        return Err(Error::InvalidParameterValue(format!(
            "The volume size is invalid for {t} volumes: {} through {}.",
            l.min_gib, l.max_gib
        )));
    }
    let iops = match (l.iops, iops) {
        (None, Some(_)) => {
            return Err(Error::ParameterCombination(format!("The parameter iops is not supported for {t} volumes.")))
        }
        (None, None) => None,
        (Some((_, _, _, _)), None) if matches!(t, VolumeType::Io1 | VolumeType::Io2) => {
            return Err(Error::MissingParameter("The request must contain the parameter iops".into()))
        }
        (Some((_, _, default, _)), None) => Some(default),
        (Some((min, max, _, per_gib)), Some(n)) => {
            if n < min || n > max {
                return Err(Error::InvalidParameterValue(format!(
                    "Volume iops of {n} is too {} for {t}; it must be {min} through {max}.",
                    if n < min { "low" } else { "high" }
                )));
            }
            // gp3's baseline holds at any size; above it, IOPS scale with size.
            let baseline = if t == VolumeType::Gp3 { min } else { 0 };
            if n > baseline && n > size * per_gib {
                return Err(Error::InvalidParameterValue(format!(
                    "Iops to volume size ratio of {:.1} is too high; maximum is {per_gib}.",
                    n as f64 / size as f64
                )));
            }
            Some(n)
        }
    };
    let throughput = match (l.throughput, throughput) {
        (None, Some(_)) => {
            return Err(Error::ParameterCombination(format!(
                "The parameter throughput is not supported for {t} volumes."
            )))
        }
        (None, None) => None,
        (Some((_, _, default)), None) => Some(default),
        (Some((min, max, _)), Some(n)) => {
            if n < min || n > max {
                return Err(Error::InvalidParameterValue(format!(
                    "Throughput of {n} MiB/s is invalid for {t}; it must be {min} through {max}."
                )));
            }
            if iops.is_some_and(|i| n * 4 > i) {
                return Err(Error::InvalidParameterValue(format!(
                    "Throughput (MiBps) to iops ratio of {:.3} is too high; maximum is 0.25 MiBps per iops.",
                    n as f64 / iops.unwrap_or(1) as f64
                )));
            }
            Some(n)
        }
    };
    Ok((iops, throughput))
}

/// EC2's device names for a volume: `/dev/sd[b-z]`, `/dev/xvd[b-z]` (each may take a
/// partition digit 1 to 15 on sd) and `/dev/xvd[b-z][a-z]`.
pub fn valid_device(name: &str) -> bool {
    let letter = |c: u8| c.is_ascii_lowercase() && c != b'a';
    if let Some(rest) = name.strip_prefix("/dev/sd") {
        let b = rest.as_bytes();
        return match b {
            [c] => letter(*c),
            [c, d @ ..] if !d.is_empty() && d.len() <= 2 => {
                letter(*c)
                    && std::str::from_utf8(d)
                        .ok()
                        .and_then(|n| n.parse::<u8>().ok())
                        .is_some_and(|n| (1..=15).contains(&n))
            }
            _ => false,
        };
    }
    if let Some(rest) = name.strip_prefix("/dev/xvd") {
        return match rest.as_bytes() {
            [c] => letter(*c),
            [c, d] => letter(*c) && d.is_ascii_lowercase(),
            _ => false,
        };
    }
    false
}

fn find(conn: &Connection, scope: &Scope, id: &str) -> Result<Volume> {
    volumes::get(conn, id)?
        .filter(|v| v.account_id == scope.account && v.region == scope.region)
        .ok_or_else(|| Error::not_found(ResourceKind::Volume, id))
}

fn find_instance(conn: &Connection, scope: &Scope, id: &str) -> Result<Instance> {
    instances::get(conn, id)?
        .filter(|i| i.account_id == scope.account && i.region == scope.region)
        .ok_or_else(|| Error::not_found(ResourceKind::Instance, id))
}

impl Cloud {
    /// The caller's volumes (instances' and made ones), narrowed to `ids`.
    pub fn volumes(&self, scope: &Scope, ids: &[kiln_types::VolumeId]) -> Result<Vec<Volume>> {
        let all = self.store.read(|c| Ok::<_, Error>(volumes::list(c, scope)?))?;
        crate::narrow(all, ids, ResourceKind::Volume, |v| &v.id)
    }

    /// CreateVolume: recorded `creating`; the reconciler makes its file (a qcow2
    /// overlay on the snapshot's layer: instant whatever the size) and it becomes
    /// `available`. A ClientToken seen before answers the volume it made.
    pub fn create_volume(&self, scope: &Scope, new: &NewVolume) -> Result<Volume> {
        let region = self
            .region(&scope.region)
            .ok_or_else(|| Error::InvalidParameterValue(format!("Region {} is not served", scope.region)))?;
        if region.zone(&new.availability_zone).is_none() {
            return Err(Error::InvalidParameterValue(format!(
                "Invalid availability zone: [{}]",
                new.availability_zone
            )));
        }
        let t = new.volume_type.unwrap_or(VolumeType::Gp2);
        if new.multi_attach && !t.multi_attach() {
            return Err(Error::ParameterCombination(format!(
                "The parameter MultiAttachEnabled is not supported for {t} volumes."
            )));
        }
        self.store.write(|tx| {
            if let Some(token) = &new.client_token {
                if let Some(v) = volumes::by_client_token(tx, scope, token)? {
                    let same = v.availability_zone == new.availability_zone
                        && new.size_gib.is_none_or(|s| s == v.size_gib)
                        && v.volume_type == t
                        && v.source_snapshot_id == new.snapshot_id;
                    if !same {
                        return Err(Error::IdempotentMismatch(format!(
                            "The client token {token} was used with other parameters"
                        )));
                    }
                    return Ok(v);
                }
            }
            let snapshot = match &new.snapshot_id {
                Some(id) => {
                    let found = snapshots::get(tx, id)?.filter(|s| s.region == scope.region && s.state == "completed");
                    match found {
                        Some(s) if crate::snapshots::visible(tx, &s, &scope.account)? => Some(s),
                        _ => return Err(Error::not_found(ResourceKind::Snapshot, id.clone())),
                    }
                }
                None => None,
            };
            let size = match (new.size_gib, &snapshot) {
                (Some(s), Some(snap)) if s < snap.volume_size => {
                    return Err(Error::InvalidParameterValue(format!(
                        "Volume of {s}GiB is too small; minimum is {}GiB (the size of {}).",
                        snap.volume_size, snap.id
                    )))
                }
                (Some(s), _) => s,
                (None, Some(snap)) => snap.volume_size,
                (None, None) => {
                    return Err(Error::MissingParameter(
                        "The request must contain the parameter size or snapshotId".into(),
                    ))
                }
            };
            let (iops, throughput) = check_shape(t, size, new.iops, new.throughput)?;
            let (default_encrypted, default_key) = volumes::encryption_default(tx, scope)?;
            let encrypted = new.encrypted.unwrap_or(default_encrypted);
            if new.kms_key_id.is_some() && !encrypted {
                return Err(Error::ParameterDependency(
                    "The parameter KmsKeyId requires the parameter Encrypted to be set.".into(),
                ));
            }
            let id = ResourceKind::Volume.generate();
            let v = Volume {
                iops,
                throughput,
                encrypted,
                kms_key_id: new.kms_key_id.clone().or(if encrypted { default_key } else { None }),
                multi_attach: new.multi_attach,
                client_token: new.client_token.clone(),
                ..Volume::new(
                    id.clone(),
                    scope,
                    new.availability_zone.clone(),
                    size,
                    t,
                    snapshot.map(|s| s.id),
                    format!("volumes/{id}.qcow2"),
                )
            };
            volumes::insert(tx, &v)?;
            tags::put_all(tx, scope, ResourceKind::Volume, &id, &new.tags)?;
            Ok(v)
        })
    }

    /// DeleteVolume: only one that is not attached. The record goes first; its file
    /// follows (a file left by a crash between the two is a stray, removed at start).
    pub fn delete_volume(&self, scope: &Scope, id: &str) -> Result<()> {
        let v = self.store.write(|tx| {
            let v = find(tx, scope, id)?;
            if let Some(i) = &v.instance_id {
                return Err(Error::VolumeInUse(format!("Volume {id} is currently attached to {i}")));
            }
            volumes::delete(tx, id)?;
            Ok(v)
        })?;
        // A DryRun's writes are rolled back: its file must stay too.
        if kiln_store::is_dry_run() {
            return Ok(());
        }
        let file = crate::reconcile::store_path(&v.file)?;
        if let Err(e) = self.agent()?.delete_volume(&file) {
            tracing::warn!(volume = %id, error = %e, "the volume's file stays until the next start");
        }
        self.collect_layers()
    }

    /// AttachVolume: an available volume joins an instance of its zone at `device`.
    /// A running VM gets the disk hot-plugged within a reconcile pass (attaching, then
    /// attached); a stopped instance has it at its next start.
    pub fn attach_volume(&self, scope: &Scope, id: &str, instance_id: &str, device: &str) -> Result<Volume> {
        if !valid_device(device) {
            return Err(Error::InvalidParameterValue(format!(
                "Invalid value '{device}' for unixDevice. Attachment point {device} is not valid."
            )));
        }
        self.store.write(|tx| {
            let v = find(tx, scope, id)?;
            let i = find_instance(tx, scope, instance_id)?;
            if !matches!(i.state, InstanceState::Running | InstanceState::Stopped) {
                return Err(Error::IncorrectInstanceState(format!(
                    "Instance '{instance_id}' is not 'running' or 'stopped'."
                )));
            }
            if v.state != VolumeState::Available || v.instance_id.is_some() {
                return Err(Error::IncorrectState(format!("{id} is not 'available'.")));
            }
            if v.availability_zone != i.availability_zone {
                return Err(Error::ZoneMismatch(format!(
                    "The volume '{id}' is not in the same availability zone as instance '{instance_id}'"
                )));
            }
            let taken = volumes::of_instance(tx, instance_id)?.iter().any(|o| o.device_name.as_deref() == Some(device))
                || i.root_device_name == device;
            if taken {
                return Err(Error::InvalidParameterValue(format!("Attachment point {device} is already in use")));
            }
            let state = if i.state == InstanceState::Running {
                VolumeAttachState::Attaching
            } else {
                VolumeAttachState::Attached
            };
            if !volumes::attach(tx, id, instance_id, device, state)? {
                return Err(Error::IncorrectState(format!("{id} is not 'available'.")));
            }
            find(tx, scope, id)
        })
    }

    /// DetachVolume: a running VM is asked to release the disk (detaching, then
    /// available); a stopped instance, or `force`, lets go at once. The root volume
    /// stays.
    pub fn detach_volume(
        &self,
        scope: &Scope,
        id: &str,
        instance_id: Option<&str>,
        device: Option<&str>,
        force: bool,
    ) -> Result<Volume> {
        self.store.write(|tx| {
            let v = find(tx, scope, id)?;
            let Some(owner) = v.instance_id.clone() else {
                return Err(Error::IncorrectState(format!("Volume '{id}' is in the 'available' state.")));
            };
            if instance_id.is_some_and(|i| i != owner) || device.is_some_and(|d| Some(d) != v.device_name.as_deref()) {
                return Err(Error::IncorrectState(format!(
                    "Volume '{id}' is not attached to {}",
                    instance_id.or(device).unwrap_or_default()
                )));
            }
            let i = find_instance(tx, scope, &owner)?;
            if v.device_name.as_deref() == Some(i.root_device_name.as_str()) {
                return Err(Error::OperationNotPermitted(format!(
                    "Unable to detach root volume '{id}' from instance '{owner}'"
                )));
            }
            let running = crate::network::has_port(i.state);
            match v.attach_state {
                _ if !running => volumes::detach(tx, id)?,
                // The VM's disk is pulled from under the guest (QEMU closes the file at
                // once); the volume is available when QEMU has let go of it.
                Some(_) if force => {
                    volumes::force_detach(tx, id)?;
                }
                Some(from @ (VolumeAttachState::Attaching | VolumeAttachState::Attached)) => {
                    volumes::set_attach_state(tx, id, from, VolumeAttachState::Detaching)?;
                }
                _ => {}
            }
            find(tx, scope, id)
        })
    }

    /// ModifyVolume: a larger size, another type, IOPS or throughput, checked as
    /// CreateVolume checks them. The reconciler grows the file (live when a VM has
    /// it) and the modification completes.
    pub fn modify_volume(&self, scope: &Scope, id: &str, change: &VolumeChange) -> Result<Modification> {
        self.store.write(|tx| {
            let v = find(tx, scope, id)?;
            if v.state == VolumeState::Creating {
                return Err(Error::IncorrectState(format!("Volume {id} is still being created")));
            }
            if v.state == VolumeState::Error {
                return Err(Error::IncorrectState(format!("Volume {id} is in the error state; delete it")));
            }
            if volumes::modifications(tx, scope)?.iter().any(|m| m.volume_id == id && m.state == "modifying") {
                return Err(Error::IncorrectModificationState(format!(
                    "Volume {id} is already being modified; wait for the modification to complete."
                )));
            }
            let size = change.size_gib.unwrap_or(v.size_gib);
            if size < v.size_gib {
                return Err(Error::InvalidParameterValue(format!(
                    "New size cannot be smaller than existing size ({} GiB).",
                    v.size_gib
                )));
            }
            let t = change.volume_type.unwrap_or(v.volume_type);
            let keep = |now: Option<i64>, asked: Option<i64>| asked.or(if t == v.volume_type { now } else { None });
            let (iops, throughput) =
                check_shape(t, size, keep(v.iops, change.iops), keep(v.throughput, change.throughput))?;
            let m = Modification {
                volume_id: id.to_owned(),
                state: if size > v.size_gib { "modifying".into() } else { "completed".into() },
                original_size: v.size_gib,
                target_size: size,
                original_type: v.volume_type,
                target_type: t,
                original_iops: v.iops,
                target_iops: iops,
                original_throughput: v.throughput,
                target_throughput: throughput,
                start_time: kiln_store::now(),
                end_time: (size == v.size_gib).then(kiln_store::now),
            };
            // The type and performance are records, in effect at once; the size is the
            // file's, grown by the reconciler, and reported once it is.
            volumes::set_shape(tx, id, v.size_gib, t, iops, throughput)?;
            volumes::put_modification(tx, &m)?;
            Ok(m)
        })
    }

    /// The scope's volume modifications, narrowed to `ids`.
    pub fn volume_modifications(&self, scope: &Scope, ids: &[kiln_types::VolumeId]) -> Result<Vec<Modification>> {
        self.store.read(|c| {
            let all = volumes::modifications(c, scope)?;
            for id in ids {
                find(c, scope, id)?;
            }
            Ok(all.into_iter().filter(|m| ids.is_empty() || ids.iter().any(|i| *i == m.volume_id)).collect())
        })
    }

    pub fn set_volume_auto_enable_io(&self, scope: &Scope, id: &str, on: bool) -> Result<()> {
        self.store.write(|tx| {
            find(tx, scope, id)?;
            Ok(volumes::set_auto_enable_io(tx, id, on)?)
        })
    }

    /// The account's EBS encryption default in this region.
    pub fn ebs_encryption_default(&self, scope: &Scope) -> Result<bool> {
        self.store.read(|c| Ok(volumes::encryption_default(c, scope)?.0))
    }

    pub fn set_ebs_encryption_default(&self, scope: &Scope, on: bool) -> Result<()> {
        self.store.write(|tx| Ok(volumes::set_encryption_default(tx, scope, on)?))
    }

    /// Makes the files of volumes CreateVolume recorded (a reconciler step): whole or
    /// not at all, then `available`. Each volume on its own: one that fails is retried
    /// next pass (or, when its snapshot is gone for good, marked `error`) and holds
    /// up no other.
    pub(crate) fn make_volumes(&self) -> Result<()> {
        let todo = self.store.read(|c| Ok::<_, Error>(volumes::to_make(c)?))?;
        if todo.is_empty() {
            return Ok(());
        }
        let agent = self.agent()?;
        for v in todo {
            let made = match &v.snapshot_id {
                Some(s) => {
                    // Deleted since the request, its row and layer stay while this volume
                    // names it: read it hidden or not, and never make a blank disk instead.
                    match self.store.read(|c| Ok::<_, Error>(snapshots::get_even_deleted(c, s)?))? {
                        Some(snap) => crate::reconcile::store_path(&snap.file).map(Some),
                        None => {
                            tracing::warn!(volume = %v.id, snapshot = %s, "the volume's snapshot is gone; marking it error");
                            self.settle_made(&v.id, VolumeState::Error)?;
                            continue;
                        }
                    }
                }
                None => Ok(None),
            }
            .and_then(|backing| {
                let file = crate::reconcile::store_path(&v.file)?;
                agent
                    .create_volume(&file, backing.as_ref(), v.size_gib as u64)
                    .map_err(|e| Error::host(format!("creating {}", v.id), e))
            });
            match made {
                Ok(()) => self.settle_made(&v.id, VolumeState::Available)?,
                Err(e) => tracing::warn!(volume = %v.id, error = %e, "making the volume failed; retrying"),
            }
        }
        Ok(())
    }

    /// Moves a volume out of `creating`, if it is still the same volume being made
    /// (it may have been deleted meanwhile).
    fn settle_made(&self, id: &str, state: VolumeState) -> Result<()> {
        self.store.write(|tx| {
            if volumes::get(tx, id)?.is_some_and(|now| now.state == VolumeState::Creating) {
                volumes::set_state(tx, id, state)?;
            }
            Ok::<_, Error>(())
        })
    }

    /// Grows the files of volumes whose modification asks for more (a reconciler
    /// step): through the VM when one runs the volume (on this host or a joined one,
    /// whose qcow2 grows into its served file's room), else on the file in the store.
    /// `reached`: whether an instance's host is called this pass (one that is not
    /// keeps its volume's modification waiting: its VM may run the volume). Failures
    /// are paced by `backoff`, keyed `grow:VOLUME`; returns the keys in play.
    pub(crate) fn apply_modifications(
        &self,
        reached: &dyn Fn(&Instance) -> bool,
        backoff: &mut crate::workflows::Backoff,
    ) -> Result<Vec<String>> {
        let pending: Vec<(Modification, Volume, Option<Instance>)> = self.store.read(|c| {
            let mut out = Vec::new();
            for m in volumes::pending_modifications(c)? {
                if let Some(v) = volumes::get(c, &m.volume_id)? {
                    let i = v.instance_id.as_deref().map(|i| instances::get(c, i)).transpose()?.flatten();
                    out.push((m, v, i));
                }
            }
            Ok::<_, Error>(out)
        })?;
        let mut keys = Vec::new();
        for (m, v, i) in pending {
            let key = format!("grow:{}", v.id);
            if !backoff.ready(&key) {
                keys.push(key);
                continue;
            }
            // Only an instance that may have a VM has its host asked (a stopped one's
            // volume grows in the store, whatever became of its host).
            let vm = i.as_ref().filter(|i| crate::network::has_port(i.state));
            if vm.is_some_and(|i| !reached(i)) {
                keys.push(key);
                continue;
            }
            let grown = crate::reconcile::store_path(&v.file).and_then(|file| {
                let id: kiln_types::VolumeId = crate::reconcile::stored_id(&v.id)?;
                // The VM's host when one runs the volume, else the store's.
                let on = match vm {
                    Some(i) => {
                        let agent = self.agent_for(i)?;
                        crate::reconcile::runs(agent.as_ref(), &i.id)?.then_some((agent, i.id.as_str()))
                    }
                    None => None,
                };
                let (agent, running) = match on {
                    Some((agent, i)) => (agent, Some(i)),
                    None => (std::sync::Arc::clone(self.agent()?), None),
                };
                agent
                    .grow_volume(&id, &file, m.target_size as u64, running)
                    .map_err(|e| Error::host(format!("growing {}", v.id), e))
            });
            if let Err(e) = grown {
                // Retried later; the other volumes go on.
                let (wait, loud) = backoff.failed(&key);
                if loud {
                    tracing::warn!(volume = %v.id, error = %e, retry_in = ?wait, "growing the volume failed; retrying");
                }
                keys.push(key);
                continue;
            }
            backoff.succeeded(&key);
            let recorded = self.store.write(|tx| {
                volumes::set_shape(tx, &v.id, m.target_size, v.volume_type, v.iops, v.throughput)?;
                volumes::put_modification(
                    tx,
                    &Modification { state: "completed".into(), end_time: Some(kiln_store::now()), ..m.clone() },
                )?;
                Ok::<_, Error>(())
            });
            // Grown: recorded by a later pass (growing again to the same size is a no-op).
            if let Err(e) = recorded {
                tracing::warn!(volume = %v.id, error = %e, "recording a grown volume failed; retrying");
            }
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_follow_ec2s_limits() {
        assert_eq!(check_shape(VolumeType::Gp3, 1, None, None).expect("gp3"), (Some(3000), Some(125)));
        assert!(matches!(check_shape(VolumeType::Gp2, 10, Some(300), None), Err(Error::ParameterCombination(_))));
        assert!(matches!(check_shape(VolumeType::Gp2, 0, None, None), Err(Error::InvalidParameterValue(_))));
        assert!(matches!(check_shape(VolumeType::St1, 100, None, None), Err(Error::InvalidParameterValue(_))));
        assert!(matches!(check_shape(VolumeType::Io1, 10, None, None), Err(Error::MissingParameter(_))));
        assert!(matches!(check_shape(VolumeType::Io1, 10, Some(1000), None), Err(Error::InvalidParameterValue(_))));
        assert_eq!(check_shape(VolumeType::Io2, 10, Some(10000), None).expect("io2"), (Some(10000), None));
        assert!(matches!(check_shape(VolumeType::Gp3, 100, None, Some(800)), Err(Error::InvalidParameterValue(_))));
        assert_eq!(check_shape(VolumeType::Gp3, 100, Some(4000), Some(1000)).expect("gp3"), (Some(4000), Some(1000)));
        assert!(matches!(check_shape(VolumeType::Io1, 10, Some(100), Some(200)), Err(Error::ParameterCombination(_))));
    }

    #[test]
    fn device_names_are_ec2s() {
        for ok in ["/dev/sdf", "/dev/sdp", "/dev/sdb1", "/dev/sdz15", "/dev/xvdf", "/dev/xvdba"] {
            assert!(valid_device(ok), "{ok}");
        }
        for bad in ["/dev/sda", "/dev/sdf0", "/dev/sdf16", "/dev/xvda", "/dev/vdb", "sdf", "/dev/sd", "/dev/xvdf1", ""]
        {
            assert!(!valid_device(bad), "{bad}");
        }
    }

    fn volume(w: &crate::testkit::World, id: &str) -> Volume {
        w.cloud.volumes(&w.scope, &[id.parse().expect("vol")]).expect("volume").remove(0)
    }

    #[test]
    fn one_volume_that_cannot_be_made_holds_up_no_other() {
        let mut w = crate::testkit::World::new("volumes-apart");
        let zone = "us-east-1a".to_string();
        let new = || NewVolume {
            availability_zone: zone.clone(),
            size_gib: Some(1),
            volume_type: Some(VolumeType::Gp3),
            ..NewVolume::default()
        };
        let bad = w.cloud.create_volume(&w.scope, &new()).expect("bad");
        let good = w.cloud.create_volume(&w.scope, &new()).expect("good");
        let file = bad.file.clone();
        // A file the host cannot make (a path out of the data directory).
        let set_file = |w: &crate::testkit::World, f: &str| {
            w.cloud
                .store
                .write(|tx| {
                    tx.execute("UPDATE volumes SET file = ?2 WHERE id = ?1", [bad.id.as_str(), f])?;
                    Ok::<_, kiln_store::StoreError>(())
                })
                .expect("file")
        };
        set_file(&w, "../outside.qcow2");
        w.passes_until(3, |w| volume(w, &good.id).state == VolumeState::Available);
        assert_eq!(volume(&w, &good.id).state, VolumeState::Available);
        assert_eq!(volume(&w, &bad.id).state, VolumeState::Creating, "retried, not given up");
        set_file(&w, &file);
        w.passes_until(3, |w| volume(w, &bad.id).state == VolumeState::Available);
        assert_eq!(volume(&w, &bad.id).state, VolumeState::Available);
    }

    #[test]
    fn a_volume_is_made_attached_grown_detached_and_deleted() {
        let mut w = crate::testkit::World::new("volumes");
        let i = w.launch();
        w.passes_until(10, |w| w.state(&i) == InstanceState::Running);
        let zone = w.cloud.instances(&w.scope, std::slice::from_ref(&i)).expect("i")[0].availability_zone.clone();
        let new = NewVolume {
            availability_zone: zone.clone(),
            size_gib: Some(1),
            volume_type: Some(VolumeType::Gp3),
            client_token: Some("t-1".into()),
            ..NewVolume::default()
        };
        let v = w.cloud.create_volume(&w.scope, &new).expect("create");
        assert_eq!((v.state, v.iops, v.throughput), (VolumeState::Creating, Some(3000), Some(125)));
        assert_eq!(w.cloud.create_volume(&w.scope, &new).expect("again").id, v.id, "the ClientToken's volume");
        w.passes_until(3, |w| volume(w, &v.id).state == VolumeState::Available);
        assert!(w.dir.join(&v.file).exists());

        // Bad input changes nothing.
        let other_zone = NewVolume { availability_zone: "us-east-1q".into(), ..new.clone() };
        assert!(matches!(w.cloud.create_volume(&w.scope, &other_zone), Err(Error::InvalidParameterValue(_))));
        assert!(matches!(w.cloud.attach_volume(&w.scope, &v.id, &i, "/dev/sda"), Err(Error::InvalidParameterValue(_))));
        assert!(matches!(
            w.cloud.attach_volume(&w.scope, &v.id, &i, "/dev/xvda"),
            Err(Error::InvalidParameterValue(_))
        ));
        let shrink = VolumeChange { size_gib: Some(0), ..VolumeChange::default() };
        assert!(matches!(w.cloud.modify_volume(&w.scope, &v.id, &shrink), Err(Error::InvalidParameterValue(_))));
        assert_eq!(volume(&w, &v.id).state, VolumeState::Available);

        let a = w.cloud.attach_volume(&w.scope, &v.id, &i, "/dev/sdf").expect("attach");
        assert_eq!((a.state, a.attach_state), (VolumeState::InUse, Some(VolumeAttachState::Attaching)));
        assert!(matches!(w.cloud.delete_volume(&w.scope, &v.id), Err(Error::VolumeInUse(_))));
        assert!(matches!(w.cloud.attach_volume(&w.scope, &v.id, &i, "/dev/sdg"), Err(Error::IncorrectState(_))));
        w.passes_until(3, |w| volume(w, &v.id).attach_state == Some(VolumeAttachState::Attached));
        let disks = w.agent.disk(&i, 1).expect("the VM's second disk");
        assert_eq!(disks, w.dir.join(&v.file));

        let grow = VolumeChange { size_gib: Some(2), ..VolumeChange::default() };
        let m = w.cloud.modify_volume(&w.scope, &v.id, &grow).expect("grow");
        assert_eq!((m.state.as_str(), m.original_size, m.target_size), ("modifying", 1, 2));
        w.passes_until(3, |w| volume(w, &v.id).size_gib == 2);
        assert_eq!(w.agent.grown.lock().expect("grown").as_slice(), &[(w.dir.join(&v.file), 2)]);
        let ms = w.cloud.volume_modifications(&w.scope, &[]).expect("modifications");
        assert_eq!(ms[0].state, "completed");

        let root = w.cloud.instance_volumes(&i).expect("vols")[0].id.clone();
        assert!(matches!(
            w.cloud.detach_volume(&w.scope, &root, None, None, false),
            Err(Error::OperationNotPermitted(_))
        ));
        let d = w.cloud.detach_volume(&w.scope, &v.id, Some(&i), None, false).expect("detach");
        assert_eq!(d.attach_state, Some(VolumeAttachState::Detaching));
        w.passes_until(3, |w| volume(w, &v.id).state == VolumeState::Available);
        assert!(w.agent.disk(&i, 1).is_none(), "the disk left the VM");
        // DryRun changes nothing: not the row, not the file, and it makes no layer.
        let files = || std::fs::read_dir(w.dir.join("volumes")).expect("volumes").count();
        let before = files();
        kiln_store::dry_run(|| w.cloud.create_snapshot(&w.scope, &v.id, "dry", &[])).expect("dry snapshot");
        kiln_store::dry_run(|| w.cloud.delete_volume(&w.scope, &v.id)).expect("dry delete");
        assert_eq!((files(), volume(&w, &v.id).state), (before, VolumeState::Available));
        assert!(w.dir.join(&v.file).exists());
        w.cloud.delete_volume(&w.scope, &v.id).expect("delete");
        assert!(!w.dir.join(&v.file).exists());
        assert!(matches!(w.cloud.volumes(&w.scope, &[v.id.parse().expect("vol")]), Err(Error::NotFound { .. })));
    }

    #[test]
    fn a_live_snapshot_whose_switch_never_happens_is_undone_not_completed() {
        let mut w = crate::testkit::World::new("snapshot-stuck");
        let i = w.launch();
        w.passes_until(10, |w| w.state(&i) == InstanceState::Running);
        let root = w.cloud.instance_volumes(&i).expect("volumes").remove(0);
        let disk = w.agent.disk(&i, 0).expect("disk");
        w.agent.stuck_disks.store(true, std::sync::atomic::Ordering::SeqCst);
        let snap = w.cloud.create_snapshot(&w.scope, &root.id, "stuck", &[]).expect("snapshot");
        // The switch is recorded first; the VM never makes it.
        w.passes_until(5, |w| volume(w, &root.id).file != root.file);
        let recorded = volume(&w, &root.id);
        assert_ne!(recorded.file, root.file);
        let freeze = crate::workflows::Freeze {
            volume_id: root.id.clone(),
            snapshot_id: snap.id.clone(),
            new_file: recorded.file.clone(),
        };
        w.cloud.snapshot_failed(Some(i.as_ref()), &freeze).expect("give up");
        let after = volume(&w, &root.id);
        assert_eq!(
            (after.file.as_str(), after.snapshot_id.as_deref()),
            (root.file.as_str(), root.snapshot_id.as_deref())
        );
        assert_eq!(w.agent.disk(&i, 0).expect("disk"), disk, "the VM still writes the file the volume names");
        let ids = [snap.id.parse::<kiln_types::SnapshotId>().expect("id")];
        assert!(w.cloud.snapshots(&w.scope, &ids, &[], &[]).is_err(), "no snapshot claims the live file");
    }

    #[test]
    fn an_instances_volumes_are_snapshotted_together() {
        let mut w = crate::testkit::World::new("snapshots-together");
        let i = w.launch();
        w.passes_until(10, |w| w.state(&i) == InstanceState::Running);
        let zone = w.cloud.instances(&w.scope, std::slice::from_ref(&i)).expect("i")[0].availability_zone.clone();
        let new = NewVolume { availability_zone: zone, size_gib: Some(1), ..NewVolume::default() };
        let v = w.cloud.create_volume(&w.scope, &new).expect("create");
        w.passes_until(3, |w| volume(w, &v.id).state == VolumeState::Available);
        w.cloud.attach_volume(&w.scope, &v.id, &i, "/dev/sdf").expect("attach");
        w.passes_until(3, |w| volume(w, &v.id).attach_state == Some(VolumeAttachState::Attached));
        let request = crate::snapshots::InstanceSnapshots { instance_id: i.to_string(), ..Default::default() };
        let made = w.cloud.create_snapshots(&w.scope, &request).expect("snapshots");
        assert_eq!(made.len(), 2);
        assert!(made.iter().all(|s| s.state == "pending"));
        let ids: Vec<kiln_types::SnapshotId> = made.iter().map(|s| s.id.parse().expect("snap")).collect();
        w.passes_until(5, |w| {
            w.cloud.snapshots(&w.scope, &ids, &[], &[]).expect("snaps").iter().all(|s| s.state == "completed")
        });
        // Both disks of the VM went on their new overlays.
        for n in 0..2 {
            let disk = w.agent.disk(&i, n).expect("disk").display().to_string();
            assert!(made.iter().any(|s| disk.ends_with(&format!("-{}.qcow2", s.id))), "{disk}");
        }
        let only_data = crate::snapshots::InstanceSnapshots {
            instance_id: i.to_string(),
            exclude_boot: true,
            exclude: vec![v.id.clone()],
            ..Default::default()
        };
        assert!(matches!(w.cloud.create_snapshots(&w.scope, &only_data), Err(Error::InvalidParameterValue(_))));
    }
}
