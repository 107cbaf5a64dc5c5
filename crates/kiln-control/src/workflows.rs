//! The workflow engine: multi-step work on a VM (CreateImage, reboot, a forced stop)
//! recorded as intent in the transaction that accepts the request, then carried out by
//! the reconciler, the only actor that touches a VM. Each step is idempotent and its
//! progress is saved before the next begins, so a restart after `kill -9` resumes where
//! the work stood; a step that keeps failing ends the workflow with its compensations
//! run, so nothing half-made stays visible. Launch, stop, start and terminate need no
//! workflow row: the instance's own state is their intent (see `reconcile.rs`).
//!
//! This module holds each kind's persisted state (`Work`, and CreateImage's
//! `ImagePlan`); the steps themselves are the `Cloud` methods of their own modules
//! (`create_image.rs`), which use this one and not the other way round.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use kiln_store::instances::Instance;
use kiln_store::workflows::{self, Workflow};
use kiln_store::Connection;
use serde::{Deserialize, Serialize};

use crate::{Cloud, Error, Result};

pub const REBOOT: &str = "reboot";
pub const FORCE_STOP: &str = "force-stop";
pub const CREATE_IMAGE: &str = "create-image";
pub const CREATE_SNAPSHOT: &str = "create-snapshot";

/// Failed attempts at one step before the workflow gives up and compensates.
const MAX_ATTEMPTS: i64 = 8;
/// The longest wait between two attempts at a failing step.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Where a CreateImage workflow stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Power the guest off (only for a reboot of a running instance).
    PowerOff,
    /// Freeze each volume into its snapshot.
    Freeze,
    /// Start the guest again if this workflow powered it off.
    Restart,
    /// Make the image and its snapshots available.
    Register,
}

/// One volume to freeze: the snapshot its current file becomes, and the overlay it
/// goes on on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Freeze {
    pub volume_id: String,
    pub snapshot_id: String,
    /// The new overlay, relative to the data directory.
    pub new_file: String,
}

/// A CreateImage workflow's plan and progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImagePlan {
    pub instance_id: String,
    pub image_id: String,
    /// Power the guest off first (a running instance without NoReboot).
    pub reboot: bool,
    pub volumes: Vec<Freeze>,
    pub phase: Phase,
    /// When the power-off was decided (RFC 3339), and how often and when last the
    /// button was pressed.
    pub asked_at: Option<String>,
    pub presses: u32,
    pub pressed_at: Option<String>,
    /// Whether this workflow powered the guest off (so it owes a restart).
    pub powered_off: bool,
}

/// A workflow's kind, parameters and progress (stored as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Work {
    /// RebootInstances: reset the VM.
    Reboot { instance_id: String },
    /// StopInstances with Force: end the VM at once.
    ForceStop { instance_id: String },
    /// CreateImage (see `create_image.rs`).
    CreateImage(ImagePlan),
    /// CreateSnapshot of a volume attached to an instance (see `snapshots.rs`): the
    /// instance is held while its volume is frozen, live when its VM runs.
    CreateSnapshot { instance_id: String, freeze: Freeze },
    /// CreateSnapshots: every chosen volume of an instance frozen at one instant.
    CreateSnapshots { instance_id: String, freezes: Vec<Freeze> },
}

impl Work {
    pub fn kind(&self) -> &'static str {
        match self {
            Work::Reboot { .. } => REBOOT,
            Work::ForceStop { .. } => FORCE_STOP,
            Work::CreateImage(_) => CREATE_IMAGE,
            Work::CreateSnapshot { .. } | Work::CreateSnapshots { .. } => CREATE_SNAPSHOT,
        }
    }

    pub fn instance_id(&self) -> &str {
        match self {
            Work::Reboot { instance_id }
            | Work::ForceStop { instance_id }
            | Work::CreateSnapshot { instance_id, .. }
            | Work::CreateSnapshots { instance_id, .. } => instance_id,
            Work::CreateImage(p) => &p.instance_id,
        }
    }

    /// The step reached, for people reading the store.
    fn step(&self) -> String {
        match self {
            Work::CreateImage(p) => format!("{:?}", p.phase).to_lowercase(),
            _ => "start".into(),
        }
    }
}

/// What one step did.
pub(crate) enum Step {
    /// Progress was made (the new state is saved); the next step runs in this pass.
    Next(Work),
    /// Waiting on the guest or the host; try again next pass.
    Wait(Work),
    Done,
}

/// Records a workflow in the caller's transaction: it runs at the next pass, or after
/// the workflows already running or queued on the same instance.
pub(crate) fn record(conn: &Connection, work: Work) -> Result<()> {
    let now = kiln_store::now();
    let w = Workflow {
        id: format!("wf-{}", uuid_like()),
        kind: work.kind().to_owned(),
        instance_id: Some(work.instance_id().to_owned()),
        params: serde_json::to_string(&work)
            .map_err(|e| Error::Host { context: "workflow".into(), detail: e.to_string() })?,
        step: work.step(),
        status: "running".into(),
        attempts: 0,
        error: None,
        created_at: now.clone(),
        updated_at: now,
    };
    workflows::insert(conn, &w)?;
    Ok(())
}

/// Whether a workflow of `kind` is running or queued on an instance.
pub(crate) fn pending(conn: &Connection, instance_id: &str, kind: &str) -> Result<bool> {
    Ok(workflows::pending_on(conn, instance_id)?.iter().any(|k| k == kind))
}

fn uuid_like() -> String {
    use rand::Rng;
    format!("{:032x}", rand::thread_rng().gen::<u128>())
}

/// In-memory pacing of failing workflows (not worth persisting: after a restart every
/// workflow is simply tried at once).
#[derive(Default)]
pub struct Backoff {
    next_try: HashMap<String, (Instant, Duration)>,
}

impl Backoff {
    /// Whether `key` may be tried now.
    pub fn ready(&self, key: &str) -> bool {
        self.next_try.get(key).is_none_or(|(t, _)| Instant::now() >= *t)
    }

    /// Records a failure; returns the wait before the next try, and whether this is
    /// worth a warning (the first failure, or the wait doubled to a new power of two
    /// seconds).
    pub fn failed(&mut self, key: &str) -> (Duration, bool) {
        let wait = match self.next_try.get(key) {
            Some((_, w)) => (*w * 2).min(MAX_BACKOFF),
            None => Duration::from_millis(500),
        };
        let first = !self.next_try.contains_key(key);
        let loud = first || (wait < MAX_BACKOFF && wait.as_millis().is_power_of_two());
        self.next_try.insert(key.to_owned(), (Instant::now() + wait, wait));
        (wait, loud)
    }

    pub fn succeeded(&mut self, key: &str) {
        self.next_try.remove(key);
    }

    /// Forgets keys not in `live`.
    pub fn retain(&mut self, live: &HashSet<String>) {
        self.next_try.retain(|k, _| live.contains(k));
    }
}

impl Cloud {
    /// Forgets workflows that ended more than a week ago (at start).
    pub fn purge_finished_workflows(&self) -> Result<usize> {
        self.store.write(|tx| Ok::<_, Error>(workflows::purge_finished(tx, 7)?))
    }

    /// Workflows by kind and status (`kind`, `status`, count).
    pub fn workflow_counts(&self) -> Result<Vec<(String, String, i64)>> {
        self.store.read(|c| Ok::<_, Error>(workflows::counts(c)?))
    }

    /// Runs every running workflow as far as it can go in this pass. Returns the
    /// instances they hold (running or queued), which the reconciler's usual steps
    /// leave alone meanwhile, and the ids of the workflows it found running.
    pub(crate) fn run_workflows(
        &self,
        all: &[Instance],
        reached: impl Fn(&Instance) -> bool,
        backoff: &mut Backoff,
    ) -> Result<(HashSet<String>, Vec<String>)> {
        let (running, held) = self.store.read(|c| Ok::<_, Error>((workflows::running(c)?, workflows::holding(c)?)))?;
        let held: HashSet<String> = held.into_iter().collect();
        let ids: Vec<String> = running.iter().map(|w| w.id.clone()).collect();
        for w in running {
            if !backoff.ready(&w.id) {
                continue;
            }
            let work: Work = match serde_json::from_str(&w.params) {
                Ok(work) => work,
                Err(e) => {
                    tracing::error!(workflow = %w.id, error = %e, "a workflow's parameters cannot be read; ending it");
                    self.store
                        .write(|tx| Ok::<_, Error>(workflows::finish(tx, &w.id, "failed", Some(&e.to_string()))?))?;
                    continue;
                }
            };
            let instance = all.iter().find(|i| Some(&i.id) == w.instance_id.as_ref());
            // Work on a VM whose host is silent waits for the host, but a forced stop,
            // which releases the instance without it.
            let silent = instance.is_some_and(|i| !reached(i));
            if silent && !matches!(work, Work::ForceStop { .. }) {
                continue;
            }
            let (driven, slow) = crate::reconcile::timed(|| self.drive(&w.id, work.clone(), instance, silent));
            if let Some(took) = slow {
                tracing::warn!(workflow = %w.id, kind = %w.kind, ?took, "a slow workflow step held up the pass");
            }
            match driven {
                Ok(()) => {
                    crate::metrics::workflow_step(&w.kind, "ok");
                    backoff.succeeded(&w.id)
                }
                Err(e) => {
                    let attempts =
                        self.store.write(|tx| Ok::<_, Error>(workflows::failed_attempt(tx, &w.id, &e.to_string())?))?;
                    let (wait, loud) = backoff.failed(&w.id);
                    let gives_up = attempts >= MAX_ATTEMPTS || !e.is_transient();
                    crate::metrics::workflow_step(&w.kind, if gives_up { "failed" } else { "retry" });
                    if gives_up {
                        tracing::error!(workflow = %w.id, kind = %w.kind, error = %e, "workflow failed; undoing it");
                        match self.compensate(&w.id, &work, &e) {
                            Ok(()) => backoff.succeeded(&w.id),
                            // Left running: given up again, and undone, in a later pass.
                            Err(ce) => {
                                tracing::warn!(workflow = %w.id, error = %ce, "undoing a workflow failed; retrying")
                            }
                        }
                    } else if loud {
                        tracing::warn!(workflow = %w.id, kind = %w.kind, error = %e, attempts, retry_in = ?wait, "workflow step failed; retrying");
                    }
                }
            }
        }
        Ok((held, ids))
    }

    /// Runs steps until the workflow waits, ends, or fails.
    fn drive(&self, id: &str, mut work: Work, instance: Option<&Instance>, silent: bool) -> Result<()> {
        loop {
            let step = match &work {
                Work::Reboot { instance_id } => self.reboot_step(instance_id, instance)?,
                Work::ForceStop { .. } if silent => {
                    // Its host cannot be asked: the instance is stopped here, and the
                    // VM, if the host comes back with it, is ended then (not placed there
                    // as running, it is an orphan).
                    if let Some(i) = instance.filter(|i| i.state == kiln_types::InstanceState::Stopping) {
                        let reason = i.state_reason_code.as_deref().zip(i.state_reason_message.as_deref());
                        self.advance(i, kiln_types::InstanceState::Stopped, None, reason)?;
                    }
                    Step::Done
                }
                Work::ForceStop { instance_id } => {
                    let agent = self.agent_on(instance.and_then(|i| i.host_id.as_deref()))?;
                    agent.kill(instance_id).map_err(|e| Error::host(format!("ending {instance_id}"), e))?;
                    Step::Done
                }
                Work::CreateImage(plan) => self.image_step(plan.clone(), instance)?,
                Work::CreateSnapshot { instance_id, freeze } => {
                    self.freeze(Some(instance_id), freeze)?;
                    self.snapshot_done(&freeze.snapshot_id)?;
                    Step::Done
                }
                Work::CreateSnapshots { instance_id, freezes } => {
                    self.freeze_all(Some(instance_id), freezes)?;
                    for f in freezes {
                        self.snapshot_done(&f.snapshot_id)?;
                    }
                    Step::Done
                }
            };
            match step {
                Step::Done => {
                    self.store.write(|tx| Ok::<_, Error>(workflows::finish(tx, id, "done", None)?))?;
                    return Ok(());
                }
                Step::Next(next) | Step::Wait(next) if next == work => return Ok(()),
                Step::Next(next) => {
                    self.save(id, &next)?;
                    work = next;
                }
                Step::Wait(next) => return self.save(id, &next),
            }
        }
    }

    fn save(&self, id: &str, work: &Work) -> Result<()> {
        let params = serde_json::to_string(work).map_err(|e| Error::host("workflow", e))?;
        self.store.write(|tx| Ok::<_, Error>(workflows::advance(tx, id, &work.step(), &params)?))?;
        Ok(())
    }

    fn reboot_step(&self, instance_id: &str, instance: Option<&Instance>) -> Result<Step> {
        use kiln_types::InstanceState::*;
        let Some(i) = instance.filter(|i| matches!(i.state, Running | Pending)) else { return Ok(Step::Done) };
        let agent = self.agent_for(i)?;
        if crate::reconcile::runs(agent.as_ref(), instance_id)? {
            agent.reset(instance_id).map_err(|e| Error::host(format!("rebooting {instance_id}"), e))?;
        }
        Ok(Step::Done)
    }

    /// Ends a failed workflow: undoes what it made, then records why it failed.
    fn compensate(&self, id: &str, work: &Work, e: &Error) -> Result<()> {
        match work {
            Work::CreateImage(plan) => self.undo_image(plan, &e.to_string())?,
            Work::CreateSnapshot { instance_id, freeze } => self.snapshot_failed(Some(instance_id), freeze)?,
            Work::CreateSnapshots { instance_id, freezes } => {
                for f in freezes {
                    self.snapshot_failed(Some(instance_id), f)?;
                }
            }
            _ => {}
        }
        self.store.write(|tx| Ok::<_, Error>(workflows::finish(tx, id, "failed", Some(&e.to_string()))?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap_and_resets() {
        let mut b = Backoff::default();
        assert!(b.ready("w"));
        let (w1, loud1) = b.failed("w");
        assert_eq!(w1, Duration::from_millis(500));
        assert!(loud1);
        assert!(!b.ready("w"));
        let mut last = w1;
        for _ in 0..10 {
            last = b.failed("w").0;
        }
        assert_eq!(last, MAX_BACKOFF);
        b.succeeded("w");
        assert!(b.ready("w"));
    }

    #[test]
    fn work_round_trips_as_json() {
        let w = Work::Reboot { instance_id: "i-0123456789abcdef0".into() };
        let back: Work = serde_json::from_str(&serde_json::to_string(&w).expect("json")).expect("parse");
        assert_eq!(back, w);
        assert_eq!(back.kind(), REBOOT);
    }
}
