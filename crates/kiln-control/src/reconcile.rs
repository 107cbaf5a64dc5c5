//! The reconciler: the store says what each instance should be; this drives the host
//! agent there and records what is. It is the only actor that touches a VM: each pass
//! first runs the workflows (`workflows.rs`), then moves every instance no workflow
//! holds one step, each change of state a compare-and-set from the state it read, so a
//! request that lands during the pass is never overwritten. It runs every half second
//! (a failing instance backs off), and after a restart it simply carries on:
//! interrupted launches finish, stops and terminations complete, running VMs are
//! adopted, and VMs or files nobody owns are removed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kiln_agent_api::{Disk, Network, Nic, StorePath, VmSpec};
use kiln_store::instances::{self, Instance};
use kiln_store::interfaces::{self, Attachment, AttachmentStatus as Status, Interface};
use kiln_store::snapshots;
use kiln_store::volumes::{self, Volume};
use kiln_types::{Architecture, InstanceState, VolumeAttachState, VolumeState};

use crate::workflows::Backoff;
use crate::{Cloud, Error, Result};

/// How long a guest gets to power off before it is ended.
const STOP_GRACE: Duration = Duration::from_secs(45);
/// How long terminated instances stay visible.
const TERMINATED_VISIBLE: chrono::TimeDelta = chrono::TimeDelta::hours(1);
/// A step longer than this is logged: one pass drives every VM, so a slow step holds
/// up every launch, stop and attachment behind it.
const SLOW_STEP: Duration = Duration::from_secs(5);

/// Runs `f`, and with its result how long it took if that was longer than `SLOW_STEP`
/// (for the caller to log as slow, naming what it was for).
pub(crate) fn timed<T>(f: impl FnOnce() -> T) -> (T, Option<Duration>) {
    let started = Instant::now();
    let out = f();
    (out, Some(started.elapsed()).filter(|took| *took > SLOW_STEP))
}

/// The attachments of `i` among `attached`.
fn attachments_of<'a>(i: &'a Instance, attached: &'a [Interface]) -> impl Iterator<Item = &'a Attachment> + 'a {
    attached.iter().filter_map(|e| e.attachment.as_ref()).filter(move |a| a.instance_id == i.id)
}

/// The disks a VM should have: its volumes (root first) but those being detached, as
/// files of its host's store (`Cloud::disks_for` serves them to a joined host).
pub(crate) fn wanted_disks(vols: &[Volume]) -> Result<Vec<Disk>> {
    vols.iter().filter(|v| v.attach_state != Some(VolumeAttachState::Detaching)).map(disk).collect()
}

/// A volume as a disk of the store.
pub(crate) fn disk(v: &Volume) -> Result<Disk> {
    Ok(Disk {
        volume_id: stored_id(&v.id)?,
        file: store_path(&v.file)?,
        below: Vec::new(),
        settling: None,
        served: None,
    })
}

/// The further interfaces `i`'s VM should have, in device order.
fn wanted_nics(i: &Instance, attached: &[Interface]) -> Vec<Nic> {
    let mut list: Vec<(i64, Nic)> = attached
        .iter()
        .filter_map(|e| Some((e, e.attachment.as_ref()?)))
        .filter(|(_, a)| a.instance_id == i.id && crate::interfaces::in_vm(a))
        .map(|(e, a)| (a.device_index, Nic { interface_id: e.id.clone(), mac: kiln_types::ids::instance_mac(&e.id) }))
        .collect();
    list.sort_by_key(|(index, _)| *index);
    list.into_iter().map(|(_, n)| n).collect()
}

/// Markers on the serial console that mean the guest is up.
const READY_MARKERS: &[&[u8]] = &[b"kiln-tiny: ready", b"Cloud-init v.", b"login:"];

/// Remembers when a stop was asked of each VM (not worth persisting: after a restart
/// the power-off is simply asked again).
#[derive(Default)]
pub struct Reconciler {
    /// When the stop was asked, and when the power button was last pressed.
    stopping_since: Mutex<HashMap<String, (Instant, Instant)>>,
    /// The VPC networks as last made on the host.
    /// By host (None: this server's own).
    networks: Mutex<HashMap<Option<String>, HashMap<String, kiln_agent_api::VpcNetwork>>>,
    /// The further interfaces each running VM was last made to have.
    nics: Mutex<HashMap<String, Vec<Nic>>>,
    /// The disks each running VM was last made to have.
    disks: Mutex<HashMap<String, Vec<Disk>>>,
    /// Pacing of failing workflows and instance steps.
    backoff: Mutex<Backoff>,
}

impl Reconciler {
    pub fn new() -> Self {
        Self::default()
    }
}

pub(crate) fn host(context: String) -> impl FnOnce(kiln_agent_api::AgentError) -> Error {
    move |e| Error::Host { context, detail: e.to_string() }
}

/// Whether `agent`'s host gives guests VPC networking.
pub(crate) fn vpc_networking(agent: &dyn kiln_agent_api::HostAgent) -> Result<bool> {
    agent.vpc_networking().map_err(host("asking the host about its network".into()))
}

/// Whether `agent` runs `id`'s VM; a host that cannot say is an error, never a "no".
pub(crate) fn runs(agent: &dyn kiln_agent_api::HostAgent, id: &str) -> Result<bool> {
    agent.is_running(id).map_err(host(format!("asking whether {id} runs")))
}

/// A file the store names, as the host interface names it (a name that would leave
/// the data directory is corrupt data).
pub(crate) fn store_path(file: &str) -> Result<StorePath> {
    StorePath::new(file).map_err(|e| Error::Store(kiln_store::StoreError::Corrupt(e.to_string())))
}

/// An ID the store holds, typed (a malformed one is corrupt data).
pub(crate) fn stored_id<T: std::str::FromStr<Err = kiln_types::IdError>>(id: &str) -> Result<T> {
    id.parse().map_err(|e: kiln_types::IdError| Error::Store(kiln_store::StoreError::Corrupt(e.to_string())))
}

impl Cloud {
    pub(crate) fn spec(&self, i: &Instance, vols: &[Volume]) -> Result<VmSpec> {
        let architecture: Architecture = i
            .architecture
            .parse()
            .map_err(|_| Error::InvalidParameterValue(format!("architecture {}", i.architecture)))?;
        Ok(VmSpec {
            instance_id: stored_id(&i.id)?,
            architecture,
            vcpus: i.vcpus as u32,
            memory_mib: i.memory_mib as u64,
            kernel: i.kernel_file.as_deref().map(store_path).transpose()?,
            initrd: i.ramdisk_file.as_deref().map(store_path).transpose()?,
            cmdline: i.kernel_cmdline.clone(),
            tcg_tb_size_mib: i.tcg_tb_size_mib.and_then(|m| u32::try_from(m).ok()),
            disks: self.disks_for(i, vols)?,
            network: if vpc_networking(self.agent_for(i)?.as_ref())? {
                let attached = self.store.read(|c| Ok::<_, Error>(interfaces::attached(c)?))?;
                Network::Vpc {
                    vpc_id: i.vpc_id.clone(),
                    mac: kiln_types::ids::instance_mac(&i.id),
                    nics: wanted_nics(i, &attached),
                }
            } else {
                Network::User
            },
        })
    }

    /// Brings attachments still in motion to rest once the VM has (or cannot have)
    /// its interfaces: attaching ones are attached, detaching ones are gone.
    fn settle_interfaces(&self, i: &Instance, attached: &[Interface]) -> Result<()> {
        let moving: Vec<&Attachment> = attachments_of(i, attached).filter(|a| a.status != Status::Attached).collect();
        if moving.is_empty() {
            return Ok(());
        }
        self.store.write(|tx| {
            for a in moving {
                match a.status {
                    Status::Attaching => {
                        interfaces::set_status(tx, &a.id, Status::Attaching, Status::Attached)?;
                    }
                    Status::Detaching => interfaces::detach(tx, &a.id)?,
                    Status::Attached => {}
                }
            }
            Ok::<_, Error>(())
        })
    }

    /// Brings volume attachments in motion to rest once the VM has (or cannot have)
    /// its disks: attaching ones are attached, detaching ones available.
    fn settle_disks(&self, vols: &[Volume]) -> Result<()> {
        let moving: Vec<&Volume> =
            vols.iter().filter(|v| matches!(v.attach_state, Some(a) if a != VolumeAttachState::Attached)).collect();
        if moving.is_empty() {
            return Ok(());
        }
        self.store.write(|tx| {
            for v in moving {
                // Only the attachment this pass read: a volume force-detached and
                // attached elsewhere meanwhile is left alone.
                if let (Some(from), Some(owner)) = (v.attach_state, v.instance_id.as_deref()) {
                    volumes::settle(tx, &v.id, owner, from)?;
                }
            }
            Ok::<_, Error>(())
        })
    }

    /// Makes a running VM's disks its instance's volumes: hot-plugs attached ones and
    /// has the guest release detached ones; attachments settle when the VM matches.
    fn sync_disks(&self, r: &Reconciler, i: &Instance, vols: &[Volume]) -> Result<()> {
        let wanted = self.disks_for(i, vols)?;
        let moving = vols.iter().any(|v| matches!(v.attach_state, Some(a) if a != VolumeAttachState::Attached));
        let mut applied = r.disks.lock().unwrap_or_else(|p| p.into_inner());
        if !moving && applied.get(&i.id) == Some(&wanted) {
            return Ok(());
        }
        let force: Vec<kiln_types::VolumeId> = vols
            .iter()
            .filter(|v| v.force_detach && v.attach_state == Some(VolumeAttachState::Detaching))
            .map(|v| stored_id(&v.id))
            .collect::<Result<_>>()?;
        if self.agent_for(i)?.set_disks(&i.id, &wanted, &force).map_err(host(format!("setting {}'s disks", i.id)))? {
            applied.insert(i.id.clone(), wanted);
            drop(applied);
            self.settle_disks(vols)?;
        }
        Ok(())
    }

    /// Makes a running VM's further interfaces those attached to its instance:
    /// hot-plugs new ones once their taps exist, and has the guest let go of detached
    /// ones; attachments settle when the VM matches.
    fn sync_interfaces(&self, r: &Reconciler, i: &Instance, attached: &[Interface]) -> Result<()> {
        let agent = self.agent_for(i)?;
        if !vpc_networking(agent.as_ref())? {
            return Ok(());
        }
        let wanted = wanted_nics(i, attached);
        let moving = attachments_of(i, attached).any(|a| a.status != Status::Attached);
        let mut applied = r.nics.lock().unwrap_or_else(|p| p.into_inner());
        if !moving && applied.get(&i.id) == Some(&wanted) {
            return Ok(());
        }
        if wanted.iter().any(|n| agent.tap_id(&i.vpc_id, &n.interface_id).is_none()) {
            // The network pass makes the tap first.
            return Ok(());
        }
        if agent.set_nics(&i.id, &wanted).map_err(host(format!("setting {}'s interfaces", i.id)))? {
            applied.insert(i.id.clone(), wanted);
            drop(applied);
            self.settle_interfaces(i, attached)?;
        }
        Ok(())
    }

    /// Has a joined host fetch the layers it lacks for `i` (the server's own host has
    /// them all in its store): the image layers under its volumes, so that it boots
    /// from its own copies, and its kernel; whether it has them all now (else the instance waits,
    /// pending, and the next pass asks again).
    fn ship_layers(&self, agent: &dyn kiln_agent_api::HostAgent, i: &Instance) -> Result<bool> {
        use kiln_agent_api::LayersReady;
        let Some(on) = &i.host_id else { return Ok(true) };
        let layers = self.layers_for(i, &self.instance_volumes(&i.id)?)?;
        match agent.fetch_layers(&layers).map_err(host(format!("sending {}'s layers to host {on}", i.id)))? {
            LayersReady::Ready { fetched } => {
                if fetched > 0 {
                    tracing::info!(instance = %i.id, host = %on, bytes = fetched, "the host fetched layers from the store");
                }
                Ok(true)
            }
            LayersReady::Fetching { done, total } => {
                tracing::info!(instance = %i.id, host = %on, done, total, "the host is fetching layers from the store");
                Ok(false)
            }
        }
    }

    /// Makes the volume files an instance needs (idempotent), in the store: this
    /// server's own host serves them to a joined host.
    fn ensure_volumes(&self, i: &Instance) -> Result<Vec<Volume>> {
        let agent = self.agent()?;
        let vols = self.instance_volumes(&i.id)?;
        for v in &vols {
            let file = store_path(&v.file)?;
            let missing = v.state != VolumeState::Creating
                && !agent.volume_exists(&file).map_err(host(format!("looking for {}'s file", v.id)))?;
            if missing && i.host_id.is_some() {
                // Never a fresh disk in its place: a volume made on a joined host before
                // volumes stayed in the store is still there.
                return Err(Error::host(
                    format!("starting {}", i.id),
                    format!(
                        "its volume {} has no file {file} in the store; copy it there from the host's data \
                         directory (as it was before volumes were served from the store)",
                        v.id
                    ),
                ));
            }
            if v.state == VolumeState::Creating || missing {
                let backing = match &v.snapshot_id {
                    Some(s) => {
                        let snap = self
                            .store
                            .read(|c| Ok::<_, Error>(snapshots::get(c, s)?))?
                            .ok_or_else(|| Error::not_found(kiln_types::ResourceKind::Snapshot, s.clone()))?;
                        Some(store_path(&snap.file)?)
                    }
                    None => None,
                };
                // Whole or not at all, and left alone when it exists.
                agent
                    .create_volume(&file, backing.as_ref(), v.size_gib as u64)
                    .map_err(host(format!("creating {}", v.id)))?;
                self.store.write(|tx| Ok::<_, Error>(volumes::set_state(tx, &v.id, VolumeState::InUse)?))?;
            } else if i.host_id.is_none() && self.zone_had_hosts(&v.availability_zone)? {
                // Served to a joined host before (its zone's hosts have all gone): this
                // host's QEMU opens what that host wrote only once it is sealed.
                let under = self.below(v)?.into_iter().next();
                agent.seal(&file, under.as_ref(), false).map_err(host(format!("sealing {}", v.id)))?;
            }
        }
        self.instance_volumes(&i.id)
    }

    /// Whether a joined host ever served `zone` (retired ones count).
    fn zone_had_hosts(&self, zone: &str) -> Result<bool> {
        self.store.read(|c| Ok::<_, Error>(kiln_store::hosts::all(c)?.iter().any(|h| h.zone == zone)))
    }

    /// Moves an instance from the state this pass read to `to` (compare-and-set);
    /// returns whether it moved (a request may have moved it first).
    pub(crate) fn advance(
        &self,
        i: &Instance,
        to: InstanceState,
        reason: Option<&str>,
        sr: Option<(&str, &str)>,
    ) -> Result<bool> {
        self.store.write(|tx| Ok::<_, Error>(instances::transition(tx, &i.id, i.state, to, reason, sr)?))
    }

    /// Ends a VM and disposes of its volumes: those marked DeleteOnTermination go,
    /// the others are detached and stay.
    fn finish_termination(&self, i: &Instance) -> Result<()> {
        let agent = self.agent_for(i)?;
        agent.kill(&i.id).map_err(host(format!("ending {}", i.id)))?;
        for v in self.instance_volumes(&i.id)? {
            if v.delete_on_termination {
                self.agent()?.delete_volume(&store_path(&v.file)?).map_err(host(format!("deleting {}", v.id)))?;
                self.store.write(|tx| Ok::<_, Error>(volumes::delete(tx, &v.id)?))?;
            } else {
                self.store.write(|tx| Ok::<_, Error>(volumes::detach(tx, &v.id)?))?;
            }
        }
        agent.forget(&i.id).map_err(host(format!("removing {}'s directory", i.id)))?;
        let shutting = Instance { state: InstanceState::ShuttingDown, ..i.clone() };
        self.advance(
            &shutting,
            InstanceState::Terminated,
            None,
            i.state_reason_code.as_deref().zip(i.state_reason_message.as_deref()),
        )?;
        self.collect_layers()
    }

    fn step(&self, r: &Reconciler, i: &Instance, attached: &[Interface], vols: &[Volume]) -> Result<()> {
        let agent = self.agent_for(i)?;
        let alive = runs(agent.as_ref(), &i.id)?;
        match i.state {
            InstanceState::Pending => {
                // Only a still-pending instance becomes running: a Stop or Terminate that
                // arrived while the VM was starting wins, and the next pass acts on it.
                let advance = |this: &Self| this.advance(i, InstanceState::Running, None, None).map(|_| ());
                if alive {
                    return advance(self);
                }
                // On a VPC network the VM starts only once its port exists (a pass whose
                // networking failed is simply retried).
                if vpc_networking(agent.as_ref())?
                    && agent.tap_id(&i.vpc_id, &kiln_types::ids::primary_interface(&i.id)).is_none()
                {
                    return Ok(());
                }
                // Where a launch's time goes, for the debug log.
                let t0 = Instant::now();
                let mut marks: Vec<(&str, Duration)> = Vec::new();
                let at = |what| (what, t0.elapsed());
                // A joined host first gets what it lacks of the store's layers: a transfer
                // cut off is retried (and resumed) by the next pass, not a failed launch.
                if !self.ship_layers(agent.as_ref(), i)? {
                    return Ok(());
                }
                marks.push(at("layers"));
                if let Some(h) = i.host_id.as_deref() {
                    // Its volumes are made in the store and served to its host before it
                    // starts; a server not up yet is retried by the next pass.
                    self.ensure_volumes(i)?;
                    marks.push(at("volumes"));
                    self.sync_volume_server_of(h, &[])?;
                    marks.push(at("served"));
                }
                let started = self.ensure_volumes(i).and_then(|vols| {
                    let spec = self.spec(i, &vols)?;
                    marks.push(at("spec"));
                    agent.start(&spec).map_err(host(format!("starting {}", i.id)))?;
                    marks.push(at("started"));
                    tracing::debug!(instance = %i.id, phases = ?marks, "the VM started (times from its port being there)");
                    if let Network::Vpc { nics, .. } = spec.network {
                        r.nics.lock().unwrap_or_else(|p| p.into_inner()).insert(i.id.clone(), nics);
                    }
                    r.disks.lock().unwrap_or_else(|p| p.into_inner()).insert(i.id.clone(), spec.disks);
                    Ok(())
                });
                match started {
                    Ok(()) => {
                        self.settle_interfaces(i, attached)?;
                        self.settle_disks(vols)?;
                        advance(self)
                    }
                    Err(e) => {
                        tracing::error!(instance = %i.id, error = %e, "launch failed");
                        let msg = format!("Server.InternalError: {e}");
                        let failed = self.advance(
                            i,
                            InstanceState::ShuttingDown,
                            Some(""),
                            Some(("Server.InternalError", &msg)),
                        )?;
                        if !failed {
                            return Ok(());
                        }
                        let failed = Instance {
                            state_reason_code: Some("Server.InternalError".into()),
                            state_reason_message: Some(msg),
                            ..i.clone()
                        };
                        self.finish_termination(&failed)
                    }
                }
            }
            InstanceState::Running => {
                if !alive {
                    // The guest powered itself off (or QEMU died).
                    let reason = format!(
                        "Client.InstanceInitiatedShutdown ({} GMT)",
                        chrono::Utc::now().format("%Y-%m-%d %H:%M:%S")
                    );
                    let sr = Some((
                        "Client.InstanceInitiatedShutdown",
                        "Client.InstanceInitiatedShutdown: Instance initiated shutdown",
                    ));
                    if i.shutdown_behavior == kiln_types::ShutdownBehavior::Terminate {
                        if !self.advance(i, InstanceState::ShuttingDown, Some(&reason), sr)? {
                            return Ok(());
                        }
                        let next = Instance {
                            transition_reason: reason,
                            state_reason_code: Some("Client.InstanceInitiatedShutdown".into()),
                            state_reason_message: Some(
                                "Client.InstanceInitiatedShutdown: Instance initiated shutdown".into(),
                            ),
                            ..i.clone()
                        };
                        return self.finish_termination(&next);
                    }
                    return self.advance(i, InstanceState::Stopped, Some(&reason), sr).map(|_| ());
                }
                self.sync_interfaces(r, i, attached)?;
                self.sync_disks(r, i, vols)?;
                if i.ready_at.is_none() {
                    let console =
                        agent.console(&i.id, 256 * 1024).map_err(host(format!("reading {}'s console", i.id)))?;
                    if READY_MARKERS.iter().any(|m| console.windows(m.len()).any(|w| w == *m)) {
                        self.mark_ready(&i.id)?;
                    }
                }
                Ok(())
            }
            InstanceState::Stopping => {
                if !alive {
                    r.stopping_since.lock().unwrap_or_else(|p| p.into_inner()).remove(&i.id);
                    return self
                        .advance(
                            i,
                            InstanceState::Stopped,
                            None,
                            i.state_reason_code.as_deref().zip(i.state_reason_message.as_deref()),
                        )
                        .map(|_| ());
                }
                let mut since = r.stopping_since.lock().unwrap_or_else(|p| p.into_inner());
                match since.get_mut(&i.id) {
                    None => {
                        since.insert(i.id.clone(), (Instant::now(), Instant::now()));
                        drop(since);
                        if agent.powerdown(&i.id).is_err() {
                            agent.kill(&i.id).map_err(host(format!("stopping {}", i.id)))?;
                        }
                    }
                    Some((t, _)) if t.elapsed() > STOP_GRACE => {
                        drop(since);
                        tracing::warn!(instance = %i.id, "the guest did not power off in time; ending it");
                        agent.kill(&i.id).map_err(host(format!("stopping {}", i.id)))?;
                    }
                    Some((_, pressed)) => {
                        // A press early in the guest's boot can go unheard: press again.
                        if pressed.elapsed() > crate::create_image::REPRESS {
                            *pressed = Instant::now();
                            drop(since);
                            let _ = agent.powerdown(&i.id);
                        }
                    }
                }
                Ok(())
            }
            InstanceState::ShuttingDown => self.finish_termination(i),
            InstanceState::Stopped => {
                if alive {
                    agent.kill(&i.id).map_err(host(format!("stopping {}", i.id)))?;
                }
                self.settle_interfaces(i, attached)?;
                self.settle_disks(vols)
            }
            InstanceState::Terminated => {
                let gone = i
                    .terminated_at
                    .as_deref()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .is_some_and(|t| chrono::Utc::now() - t.with_timezone(&chrono::Utc) > TERMINATED_VISIBLE);
                if gone {
                    self.store.write(|tx| Ok::<_, Error>(instances::delete(tx, &i.id)?))?;
                }
                Ok(())
            }
        }
    }

    /// Records that the guest is up (its ready line, or its first metadata request).
    pub fn mark_ready(&self, id: &str) -> Result<()> {
        self.store.write(|tx| Ok::<_, Error>(instances::set_ready(tx, id, &kiln_store::now())?))
    }

    /// One pass over every instance, then over what the host runs that nobody owns.
    pub fn reconcile(&self, r: &Reconciler) -> Result<()> {
        // One read for the whole pass. Networks first: a launching instance's tap must
        // exist before its VM starts.
        let (all, attached, attached_volumes, hosts) = self.store.read(|c| {
            let vols: Vec<Volume> = volumes::all(c)?.into_iter().filter(|v| v.instance_id.is_some()).collect();
            Ok::<_, Error>((instances::all(c)?, interfaces::attached(c)?, vols, kiln_store::hosts::all(c)?))
        })?;
        // The joined hosts this pass calls: those heard from lately that take calls.
        // An instance on any other host is left as it is until its host returns.
        let now = crate::leases::now_ms();
        let reachable: Vec<(kiln_agent_api::HostId, Option<std::net::Ipv4Addr>)> = hosts
            .iter()
            .filter(|h| h.endpoint.is_some() && crate::placement::is_live(h, now))
            .map(|h| (h.host_id.clone(), crate::placement::underlay(h)))
            .collect();
        let reached =
            |i: &Instance| i.host_id.as_deref().is_none_or(|h| reachable.iter().any(|(r, _)| r.as_str() == h));
        let mut nets = r.networks.lock().unwrap_or_else(|p| p.into_inner());
        let (made, slow) = timed(|| self.reconcile_networks(&mut nets, &all, &attached, &reachable));
        if let Err(e) = made {
            tracing::warn!(error = %e, "networking failed; retrying");
        }
        if let Some(took) = slow {
            tracing::warn!(?took, "making the VPC networks was slow and held up the pass");
        }
        drop(nets);
        // Before any VM on a joined host starts or changes disks: each host is served
        // exactly its instances' volumes.
        if let Err(e) = self.sync_volume_servers(&all, &attached_volumes, &hosts) {
            tracing::warn!(error = %e, "serving volumes to hosts failed; retrying");
        }
        // From this pass's read: a public address given just now shows in the next.
        if let Err(e) = self.publish_view(&all, &attached) {
            tracing::warn!(error = %e, "cannot publish the guests' view; keeping the last one");
        }
        let mut backoff = r.backoff.lock().unwrap_or_else(|p| p.into_inner());
        // Workflows first; the instances they hold are theirs for this pass.
        let (held, workflow_ids) = self.run_workflows(&all, reached, &mut backoff)?;
        for i in all.iter().filter(|i| !held.contains(&i.id) && reached(i)) {
            if !backoff.ready(&i.id) {
                continue;
            }
            // Root first, then by device, as the VM has them.
            let mut vols: Vec<Volume> =
                attached_volumes.iter().filter(|v| v.instance_id.as_deref() == Some(i.id.as_str())).cloned().collect();
            vols.sort_by_key(|v| {
                (v.device_name.as_deref() != Some(i.root_device_name.as_str()), v.device_name.clone())
            });
            let (stepped, slow) = timed(|| self.step(r, i, &attached, &vols));
            if let Some(took) = slow {
                tracing::warn!(instance = %i.id, state = %i.state, ?took, "a slow reconcile step held up the others");
            }
            match stepped {
                Ok(()) => backoff.succeeded(&i.id),
                Err(e) => {
                    let (wait, loud) = backoff.failed(&i.id);
                    if loud {
                        tracing::warn!(instance = %i.id, error = %e, retry_in = ?wait, "reconcile step failed; retrying");
                    }
                }
            }
        }
        let mut keys: std::collections::HashSet<String> = all.iter().map(|i| i.id.clone()).collect();
        keys.extend(workflow_ids);
        if let Err(e) = self.make_volumes() {
            tracing::warn!(error = %e, "making volumes failed; retrying");
        }
        match self.apply_modifications(&reached, &mut backoff) {
            Ok(growing) => keys.extend(growing),
            Err(e) => tracing::warn!(error = %e, "growing volumes failed; retrying"),
        }
        backoff.retain(&keys);
        drop(backoff);
        // What each host runs that no instance placed there owns (a VM left by a crash,
        // or one on a host that was away while its instance moved on) is ended: an
        // instance never runs twice.
        let mut first_error = None;
        for h in std::iter::once(None).chain(reachable.iter().map(|(h, _)| Some(h))) {
            if let Err(e) = self.end_orphans(h, &all) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Ends the VMs on `host` (None: this server's own) that no instance placed there
    /// owns.
    fn end_orphans(&self, on: Option<&kiln_agent_api::HostId>, all: &[Instance]) -> Result<()> {
        let host_id = on.map(|h| h.as_str());
        let agent = self.agent_on(host_id)?;
        for id in agent.running().map_err(host("listing the host's VMs".into()))? {
            let owned = all.iter().any(|i| i.id == id && i.state.holds_capacity() && i.host_id.as_deref() == host_id);
            if !owned {
                tracing::warn!(instance = %id, host = host_id.unwrap_or("this server's"), "ending a VM no instance owns");
                let _ = agent.kill(&id);
            }
        }
        Ok(())
    }

    /// Removes volume files that no volume record names (left by a crash between
    /// creating a file and recording it).
    pub fn remove_stray_volumes(&self) -> Result<()> {
        // Frozen layers (CreateImage) stay where they were made, under volumes/.
        let known: Vec<String> = self.store.read(|c| {
            let mut files: Vec<String> = volumes::all(c)?.into_iter().map(|v| v.file).collect();
            files.extend(snapshots::all_files(c)?);
            Ok::<_, Error>(files)
        })?;
        let dir = self.data_dir().join("volumes");
        let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(()) };
        for e in entries.filter_map(std::result::Result::ok) {
            let rel = format!("volumes/{}", e.file_name().to_string_lossy());
            if !known.contains(&rel) {
                tracing::warn!(file = %rel, "removing a volume file nothing owns");
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use kiln_agent_api::HostAgent;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::testkit::World;

    #[test]
    fn a_terminate_during_a_pass_is_not_overwritten() {
        let mut w = World::new("cas-terminate");
        let id = w.launch();
        w.passes_until(10, |w| w.state(&id) == InstanceState::Running);
        // The pass reads the instance running; the guest powers off; a terminate lands.
        let stale = w.cloud.instances(&w.scope, std::slice::from_ref(&id)).expect("read").remove(0);
        w.agent.kill(&id).expect("power off");
        w.cloud.terminate_instances(&w.scope, std::slice::from_ref(&id)).expect("terminate");
        w.cloud.step(&Reconciler::new(), &stale, &[], &[]).expect("step");
        assert_eq!(w.state(&id), InstanceState::ShuttingDown, "the stale pass did not write stopped");
        w.passes_until(5, |w| w.state(&id) == InstanceState::Terminated);
    }

    #[test]
    fn a_stop_during_a_pass_gets_no_public_address() {
        let w = World::new("cas-public-ip");
        let id = w.launch();
        w.cloud.stop_instances(&w.scope, std::slice::from_ref(&id), false).expect("stop");
        let moved = w.cloud.store.write(|tx| instances::set_public_ip(tx, &id, "100.64.0.9")).expect("write");
        assert!(!moved);
        let i = w.cloud.instances(&w.scope, &[id]).expect("read").remove(0);
        assert_eq!(i.public_ip, None);
    }

    #[test]
    fn reboot_and_forced_stop_are_done_by_the_reconciler() {
        let mut w = World::new("wf-reboot");
        let id = w.launch();
        w.passes_until(10, |w| w.state(&id) == InstanceState::Running);
        w.cloud.reboot_instances(&w.scope, std::slice::from_ref(&id)).expect("reboot");
        w.cloud.reboot_instances(&w.scope, std::slice::from_ref(&id)).expect("a second reboot joins the first");
        assert_eq!(w.agent.vms.lock().expect("vms")[id.as_str()].resets, 0, "the request itself touches no VM");
        w.passes_until(3, |w| w.agent.vms.lock().expect("vms")[id.as_str()].resets == 1);
        *w.agent.deaf.lock().expect("deaf") = true;
        w.cloud.stop_instances(&w.scope, std::slice::from_ref(&id), true).expect("force stop");
        assert!(w.agent.runs(&id), "the request itself touches no VM");
        w.passes_until(4, |w| w.state(&id) == InstanceState::Stopped);
        assert!(!w.agent.runs(&id));
    }

    /// Random interleavings of requests, guest power-offs and passes, from fixed
    /// seeds: every change of state anyone observes is one EC2 allows (or two in one
    /// pass), and once the passes settle each VM runs exactly when its instance is
    /// running.
    #[test]
    fn random_interleavings_keep_the_lifecycle_legal() {
        let mut moves = 0;
        for seed in 0..12u64 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut w = World::new(&format!("prop-{seed}"));
            let ids = [w.launch(), w.launch()];
            let mut seen: Vec<InstanceState> = ids.iter().map(|i| w.state(i)).collect();
            let mut r = Reconciler::new();
            for step in 0..60 {
                let n = rng.gen_range(0..ids.len());
                let id = &ids[n];
                let one = std::slice::from_ref(id);
                match rng.gen_range(0..9) {
                    0 => drop(w.cloud.stop_instances(&w.scope, one, rng.gen_bool(0.3))),
                    1 => drop(w.cloud.start_instances(&w.scope, one)),
                    2 if rng.gen_bool(0.3) => drop(w.cloud.terminate_instances(&w.scope, one)),
                    3 => drop(w.cloud.reboot_instances(&w.scope, one)),
                    4 => drop(w.cloud.create_image(
                        &w.scope,
                        id,
                        &format!("i{seed}-{step}"),
                        "",
                        rng.gen_bool(0.5),
                        &[],
                        &[],
                        &[],
                    )),
                    5 => drop(w.agent.kill(id)),
                    6 if rng.gen_bool(0.1) => {
                        w.restart();
                        r = Reconciler::new();
                    }
                    _ => w.cloud.reconcile(&r).expect("pass"),
                }
                for (k, i) in ids.iter().enumerate() {
                    let now = w.state(i);
                    let (from, to) = (seen[k], now);
                    let legal = from == to
                        || from.can_become(to)
                        || InstanceState::ALL.iter().any(|m| from.can_become(*m) && m.can_become(to));
                    assert!(legal, "seed {seed}: {i} went from {from} to {to}");
                    moves += usize::from(from != to);
                    seen[k] = now;
                }
            }
            // Settle: no workflow left, no instance between states.
            w.passes_until(200, |w| {
                let settled = ids.iter().all(|i| {
                    !matches!(
                        w.state(i),
                        InstanceState::Pending | InstanceState::Stopping | InstanceState::ShuttingDown
                    )
                });
                settled && w.cloud.store.read(kiln_store::workflows::running).expect("wf").is_empty()
            });
            w.cloud.reconcile(&Reconciler::new()).expect("pass");
            for i in &ids {
                let running = w.state(i) == InstanceState::Running;
                assert_eq!(w.agent.runs(i), running, "seed {seed}: {i} is {}", w.state(i));
            }
        }
        println!("lifecycle property: 12 seeds, {moves} state changes, all legal");
        assert!(moves > 50, "the random runs moved too little: {moves}");
    }
}
