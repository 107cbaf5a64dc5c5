//! Where instances run. RunInstances places each instance on a live, active host of its
//! zone that has room for its type and runs its architecture, spreading the instances
//! of one request; from then on every step reaches the instance's VM through that
//! host's agent, called over the network. A zone no host has joined is served by the
//! serving host's own agent, as a single-host Kiln always was (`host_id` None).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use kiln_agent_api::{AgentError, HostAgent, HostId, HostState};
use kiln_store::db::Connection;
use kiln_store::hosts::{self as store, Host};
use kiln_store::instances::{self, Instance};
use kiln_types::instance_types::InstanceTypeInfo;

use crate::hosts::{Identity, HOST_LIVE};
use crate::leases::now_ms;
use crate::{Cloud, Error, Result};

/// Makes the agent of a joined host, called at `SocketAddr` with the control plane's
/// identity (the network client lives in the binary, not in the control plane).
pub type HostDialer =
    Arc<dyn Fn(&HostId, SocketAddr, &Identity) -> std::result::Result<Arc<dyn HostAgent>, AgentError> + Send + Sync>;

/// How long this process uses one control certificate, and one dialled agent, before
/// making another (certificates live a day).
const IDENTITY_REUSE: Duration = Duration::from_secs(12 * 3600);

/// A host's agent, the endpoint it was dialled at and when (its client presents the
/// control certificate of that time, which lapses: it is dialled again before).
type Dialled = (String, Instant, Arc<dyn HostAgent>);

/// The joined hosts' agents this process has dialled, by host, with the endpoint each
/// was dialled at (a host that reports a new one is dialled again).
#[derive(Default)]
pub(crate) struct Remotes {
    dialer: Option<HostDialer>,
    dialled: Mutex<HashMap<HostId, Dialled>>,
    identity: Mutex<Option<(Instant, Identity)>>,
}

impl Remotes {
    pub(crate) fn new(dialer: HostDialer) -> Self {
        Self { dialer: Some(dialer), ..Self::default() }
    }
}

/// Which of a zone's joined hosts a request's instances may go to (a placement
/// group's rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostRule {
    /// Any host with room.
    Any,
    /// Each on a host none of these (nor the request's others) is on: a spread group.
    Apart(std::collections::HashSet<String>),
    /// All on one host: this one, or the first chosen (a cluster group).
    Together(Option<String>),
    /// A partition group's: the n-th instance of the request goes in partition
    /// `partitions[n]`, on a host no other partition of the group is on (`held`: the
    /// partition each host holds).
    Partitioned { partitions: Vec<Option<i64>>, held: HashMap<String, i64> },
}

/// Whether a host can take new instances now: live, active and serving calls.
pub(crate) fn takes_instances(h: &Host, now: i64) -> bool {
    h.state == HostState::Active && h.endpoint.is_some() && is_live(h, now)
}

/// A host ID the store holds, typed (a malformed one is corrupt data).
fn stored_host(id: &str) -> Result<HostId> {
    id.parse().map_err(|e: AgentError| Error::Store(kiln_store::StoreError::Corrupt(e.to_string())))
}

/// A host's address on the network between hosts: where its agent takes calls, unless
/// that is loopback (a host on the control plane's own machine, with no such network).
pub fn underlay(h: &Host) -> Option<std::net::Ipv4Addr> {
    match h.endpoint.as_deref()?.parse::<std::net::SocketAddr>().ok()?.ip() {
        std::net::IpAddr::V4(a) if !a.is_loopback() && !a.is_unspecified() => Some(a),
        _ => None,
    }
}

/// Whether a host's last heartbeat is recent.
pub fn is_live(h: &Host, now: i64) -> bool {
    now - h.heartbeat_at < HOST_LIVE.as_millis() as i64
}

impl Cloud {
    /// The joined hosts not heard from within `HOST_LIVE` (retired ones aside), each with
    /// when it last was (Unix ms): their instances' system status checks fail.
    pub fn silent_hosts(&self) -> Result<HashMap<String, i64>> {
        let now = now_ms();
        Ok(self
            .store
            .read(|c| Ok::<_, Error>(store::all(c)?))?
            .into_iter()
            .filter(|h| h.state != HostState::Retired && !is_live(h, now))
            .map(|h| (h.host_id.as_str().to_owned(), h.heartbeat_at))
            .collect())
    }

    /// Lets this control plane call joined hosts' agents (`kiln serve` gives it the
    /// network client).
    pub fn with_host_dialer(mut self, dialer: HostDialer) -> Self {
        self.remotes = Remotes::new(dialer);
        self
    }

    /// The agent that drives instance `i`'s VM: its host's, or this server's own.
    pub(crate) fn agent_for(&self, i: &Instance) -> Result<Arc<dyn HostAgent>> {
        self.agent_on(i.host_id.as_deref())
    }

    /// The agent of `host` as the store names it (None: this server's own).
    pub(crate) fn agent_on(&self, host: Option<&str>) -> Result<Arc<dyn HostAgent>> {
        match host {
            None => Ok(Arc::clone(self.agent()?)),
            Some(h) => self.host_agent(&stored_host(h)?),
        }
    }

    /// Joined host `id`'s agent, dialled once per endpoint it reports.
    pub fn host_agent(&self, id: &HostId) -> Result<Arc<dyn HostAgent>> {
        let host = self
            .store
            .read(|c| Ok::<_, Error>(store::get(c, id)?))?
            .ok_or_else(|| Error::InvalidParameterValue(format!("There is no host {id} in this cloud")))?;
        let endpoint = host.endpoint.ok_or_else(|| {
            Error::host(format!("calling host {id}"), "its agent takes no calls (it runs without --listen ADDRESS)")
        })?;
        let mut dialled = self.remotes.dialled.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, when, agent)) = dialled.get(id) {
            if *at == endpoint && when.elapsed() < IDENTITY_REUSE {
                return Ok(Arc::clone(agent));
            }
        }
        let dialer = self.remotes.dialer.as_ref().ok_or_else(|| {
            Error::host(format!("calling host {id}"), "this process cannot call hosts (only `kiln serve` does)")
        })?;
        let addr: SocketAddr = endpoint.parse().map_err(|e| {
            Error::host(format!("calling host {id}"), format!("it reported '{endpoint}', not an address: {e}"))
        })?;
        let identity = self.control_identity()?;
        let agent = dialer(id, addr, &identity).map_err(|e| Error::host(format!("calling host {id}"), e))?;
        dialled.insert(id.clone(), (endpoint, Instant::now(), Arc::clone(&agent)));
        Ok(agent)
    }

    /// This process's control certificate (a day's life), made again when half its
    /// life is gone; a host's agent is dialled again with the new one.
    fn control_identity(&self) -> Result<Identity> {
        let mut held = self.remotes.identity.lock().unwrap_or_else(PoisonError::into_inner);
        match &*held {
            Some((made, identity)) if made.elapsed() < IDENTITY_REUSE => Ok(identity.clone()),
            _ => {
                let identity = self.control_client_identity()?;
                *held = Some((Instant::now(), identity.clone()));
                Ok(identity)
            }
        }
    }

    /// Where up to `want` new instances of `t` (architecture `arch`) go in `zone`: one
    /// entry per instance that fits, each the host it goes on (None: this server's own
    /// host, for a zone no host has joined). Each goes to the host with the most memory
    /// left after those before it, which spreads a request over the zone's hosts, among
    /// those `rule` allows.
    pub(crate) fn place(
        &self,
        conn: &Connection,
        zone: &str,
        arch: &str,
        t: &InstanceTypeInfo,
        want: i64,
        rule: HostRule,
    ) -> Result<Vec<Option<String>>> {
        let joined: Vec<Host> =
            store::all(conn)?.into_iter().filter(|h| h.zone == zone && h.state != HostState::Retired).collect();
        let live = live_instances(conn)?;
        let cost = self.limits.memory_cost_mib(t.memory_mib as i64);
        if joined.is_empty() {
            let (cpu_left, mem_left) = self.room(&live, None)?;
            let fit = (cpu_left / t.vcpus as i64).min(mem_left / cost).clamp(0, want);
            return Ok(vec![None; fit as usize]);
        }
        let now = now_ms();
        // (host, vCPUs left, memory left)
        let mut room: Vec<(&Host, i64, i64)> = Vec::new();
        for h in
            joined.iter().filter(|h| takes_instances(h, now) && h.architectures.split(',').any(|a| a.trim() == arch))
        {
            let (cpu, mem) = self.room(&live, Some(h))?;
            room.push((h, cpu, mem));
        }
        let mut rule = rule;
        let mut placed = Vec::new();
        while (placed.len() as i64) < want {
            let n = placed.len();
            let allowed = |h: &Host| match &rule {
                HostRule::Any | HostRule::Together(None) => true,
                HostRule::Apart(taken) => !taken.contains(h.host_id.as_str()),
                HostRule::Together(Some(only)) => h.host_id.as_str() == only,
                HostRule::Partitioned { partitions, held } => {
                    held.get(h.host_id.as_str()).is_none_or(|p| partitions.get(n).copied().flatten() == Some(*p))
                }
            };
            let best = room
                .iter_mut()
                .filter(|(h, cpu, mem)| allowed(h) && *cpu >= t.vcpus as i64 && *mem >= cost)
                .max_by(|a, b| a.2.cmp(&b.2).then_with(|| b.0.host_id.cmp(&a.0.host_id)));
            let Some((h, cpu, mem)) = best else { break };
            *cpu -= t.vcpus as i64;
            *mem -= cost;
            let id = h.host_id.as_str().to_owned();
            match &mut rule {
                HostRule::Apart(taken) => {
                    taken.insert(id.clone());
                }
                HostRule::Together(only) => *only = Some(id.clone()),
                HostRule::Partitioned { partitions, held } => {
                    if let Some(p) = partitions.get(n).copied().flatten() {
                        held.insert(id.clone(), p);
                    }
                }
                HostRule::Any => {}
            }
            placed.push(Some(id));
        }
        Ok(placed)
    }

    /// Whether one more instance of `t` fits on `host` (None: this server's own), as
    /// StartInstances asks of a stopped instance's host.
    pub(crate) fn fits_on(&self, conn: &Connection, host: Option<&str>, t: &InstanceTypeInfo) -> Result<bool> {
        let live = live_instances(conn)?;
        let host = match host {
            None => None,
            Some(id) => match store::get(conn, &stored_host(id)?)? {
                Some(h) if takes_instances(&h, now_ms()) => Some(h),
                _ => return Ok(false),
            },
        };
        let (cpu, mem) = self.room(&live, host.as_ref())?;
        Ok(cpu >= t.vcpus as i64 && mem >= self.limits.memory_cost_mib(t.memory_mib as i64))
    }

    /// The vCPUs and memory (MiB) `host` (None: this server's own) still offers, after
    /// the `live` instances placed on it.
    fn room(&self, live: &[Instance], host: Option<&Host>) -> Result<(i64, i64)> {
        let (cpus, memory_mib) = match host {
            Some(h) => (h.cpus, h.memory_mib.max(0) as u64),
            None => {
                let info = self.agent()?.info().map_err(|e| Error::host("asking the host its capacity", e))?;
                (i64::from(info.cpus), info.memory_mib)
            }
        };
        let id = host.map(|h| h.host_id.as_str());
        let on = live.iter().filter(|i| i.host_id.as_deref() == id);
        let (vcpus, mem) = on.fold((0, 0), |(c, m), i| (c + i.vcpus, m + self.limits.memory_cost_mib(i.memory_mib)));
        Ok((
            (cpus as f64 * self.limits.cpu_overcommit) as i64 - vcpus,
            self.limits.memory_offered_mib(memory_mib) - mem,
        ))
    }
}

/// The instances that hold capacity where they are placed.
pub(crate) fn live_instances(conn: &Connection) -> Result<Vec<Instance>> {
    Ok(instances::all(conn)?.into_iter().filter(|i| i.state.holds_capacity()).collect())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use kiln_agent_api::{HostAgent, HostId, HostState};
    use kiln_store::hosts::Host;
    use kiln_store::instances;

    use crate::instances::RunRequest;
    use crate::leases::now_ms;
    use crate::testkit::{FakeAgent, World};
    use crate::{Cloud, Error, Limits};

    /// A joined host of `zone` with 4 GiB (two t3.micro under the default limits),
    /// heard from `age_ms` ago.
    fn host(zone: &str, n: u16, age_ms: i64) -> Host {
        Host {
            host_id: HostId::generate(),
            zone: zone.into(),
            hostname: format!("h{n}"),
            state: HostState::Active,
            architectures: "x86_64".into(),
            accel: "tcg".into(),
            cpus: 2,
            memory_mib: 4096,
            qemu_version: "fake".into(),
            cert_sha256: format!("{n:064}"),
            prev_cert_sha256: None,
            cert_expires_at: i64::MAX,
            joined_at: 0,
            heartbeat_at: now_ms() - age_ms,
            vms: 0,
            vm_resident_mib: 0,
            memory_available_mib: 4096,
            endpoint: Some(format!("127.0.0.1:{n}")),
        }
    }

    /// Sets when `host` was last heard from (Unix ms).
    fn heard(w: &World, host: &HostId, at: i64) {
        w.cloud
            .store
            .write(|tx| {
                let sql = "UPDATE hosts SET heartbeat_at = ?1 WHERE host_id = ?2";
                Ok::<_, kiln_store::StoreError>(tx.execute(sql, kiln_store::db::params![at, host.as_str()])?)
            })
            .expect("heartbeat");
    }

    fn run(w: &World, zone: &str, count: i64) -> crate::Result<Vec<instances::Instance>> {
        let mut r = RunRequest::new(w.image_id.clone());
        r.availability_zone = Some(zone.into());
        r.max_count = count;
        w.cloud.run_instances(&w.scope, r)
    }

    /// Instances go to the live hosts of their zone, spread and within each host's
    /// room; a zone whose hosts are all silent has no capacity and says which zone; a
    /// zone no host joined runs on the server's own host. Each VM runs on its
    /// instance's host, and one a host runs for an instance placed elsewhere is ended.
    /// A world whose cloud has `hosts` joined, each a fake agent of its own.
    fn joined(name: &str, hosts: &[Host]) -> (World, Vec<(HostId, Arc<FakeAgent>)>) {
        let mut w = World::new(name);
        let fakes: Vec<(HostId, Arc<FakeAgent>)> = hosts
            .iter()
            .map(|h| {
                let dir = w.dir.join(h.host_id.as_str());
                (h.host_id.clone(), FakeAgent::new(&dir))
            })
            .collect();
        w.cloud.store.write(|tx| hosts.iter().try_for_each(|h| kiln_store::hosts::insert(tx, h))).expect("hosts");
        let dial = fakes.clone();
        let store = kiln_store::Store::open(&w.dir.join("kiln.db")).expect("store");
        w.cloud = Cloud::new(store, vec![kiln_types::RegionConfig::with_three_zones("us-east-1")], w.dir.clone())
            .with_agent(w.agent.clone(), Limits::default())
            .with_host_dialer(Arc::new(move |id, _, _| {
                let (_, agent) = dial.iter().find(|(h, _)| h == id).expect("a known host");
                Ok(Arc::clone(agent) as Arc<dyn HostAgent>)
            }));
        w.cloud.serve_volumes_on(std::net::Ipv4Addr::LOCALHOST.into());
        (w, fakes)
    }

    /// Launches `min`..=`max` t3.micro into group `group` (None: no group) in us-east-1b.
    fn run_grouped(w: &World, group: Option<&str>, min: i64, max: i64) -> crate::Result<Vec<instances::Instance>> {
        let mut r = RunRequest::new(w.image_id.clone());
        r.availability_zone = Some("us-east-1b".into());
        r.placement_group = group.map(|g| crate::placement_groups::GroupRef::Name(g.into()));
        (r.min_count, r.max_count) = (min, max);
        w.cloud.run_instances(&w.scope, r)
    }

    /// A spread group's instances go each on a host of its own, and no more than the
    /// zone has hosts; a cluster group's all on one host, even when another has room.
    #[test]
    fn placement_groups_keep_their_instances_apart_or_together_on_hosts() {
        use crate::placement_groups::NewGroup;
        use kiln_types::PlacementStrategy;
        let hosts = [host("us-east-1b", 1, 0), host("us-east-1b", 2, 0)];
        let (mut w, _) = joined("placement-groups", &hosts);
        for (name, strategy) in [("apart", PlacementStrategy::Spread), ("together", PlacementStrategy::Cluster)] {
            let g = NewGroup { name: Some(name.into()), strategy: Some(strategy), ..NewGroup::default() };
            w.cloud.create_placement_group(&w.scope, &g).expect("group");
        }
        let full = |r: crate::Result<Vec<instances::Instance>>| matches!(r, Err(Error::InsufficientCapacity(_)));
        assert!(full(run_grouped(&w, Some("apart"), 3, 3)), "two hosts hold two of a spread group");
        let apart = run_grouped(&w, Some("apart"), 1, 3).expect("spread");
        assert_eq!(apart.len(), 2);
        assert_ne!(apart[0].host_id, apart[1].host_id);
        assert!(full(run_grouped(&w, Some("apart"), 1, 1)), "every host has one already");

        let ids: Vec<kiln_types::InstanceId> = apart.iter().map(|i| i.id.parse().expect("id")).collect();
        w.cloud.terminate_instances(&w.scope, &ids).expect("terminate");
        w.passes_until(10, |w| apart.iter().all(|i| w.state(&i.id) == kiln_types::InstanceState::Terminated));
        let together = run_grouped(&w, Some("together"), 2, 2).expect("cluster");
        assert_eq!(together[0].host_id, together[1].host_id);
        // That host is full (two t3.micro in 4 GiB): the group does not go elsewhere.
        assert!(full(run_grouped(&w, Some("together"), 1, 1)));
        let other = run_grouped(&w, None, 1, 1).expect("no group");
        assert_ne!(other[0].host_id, together[0].host_id, "the other host has room");
    }

    /// A partition group's partitions are kept to separate hosts: a host holding one
    /// partition's instances takes no other partition's, and a partition whose hosts
    /// are full has no capacity even when another partition's host has room.
    #[test]
    fn a_partition_groups_partitions_are_kept_to_separate_hosts() {
        use crate::placement_groups::NewGroup;
        use kiln_types::PlacementStrategy;
        let hosts = [host("us-east-1b", 1, 0), host("us-east-1b", 2, 0), host("us-east-1b", 3, 0)];
        let (w, _) = joined("partitions", &hosts);
        let g = NewGroup {
            name: Some("parts".into()),
            strategy: Some(PlacementStrategy::Partition),
            partition_count: Some(2),
            ..NewGroup::default()
        };
        let group = w.cloud.create_placement_group(&w.scope, &g).expect("group");
        let placed = run_grouped(&w, Some("parts"), 4, 4).expect("four instances");
        assert!(placed.iter().all(|i| i.host_id.is_some()));
        let members = |w: &World| {
            w.cloud.store.read(|c| kiln_store::placement_groups::live_members(c, &group.id)).expect("members")
        };
        let hosts_of = |w: &World, p: i64| -> std::collections::HashSet<String> {
            members(w).into_iter().filter(|m| m.partition_number == Some(p)).filter_map(|m| m.host_id).collect()
        };
        let (one, two) = (hosts_of(&w, 1), hosts_of(&w, 2));
        assert!(!one.is_empty() && !two.is_empty(), "{one:?} {two:?}");
        assert!(one.is_disjoint(&two), "partitions share a host: {one:?} {two:?}");
        assert_eq!(members(&w).len(), 4);

        // Partition 2's host is full (two t3.micro in 4 GiB) and the others hold
        // partition 1: no room for partition 2, though partition 1's hosts have some.
        assert_eq!(two.len(), 1, "{two:?}");
        let mut r = RunRequest::new(w.image_id.clone());
        r.availability_zone = Some("us-east-1b".into());
        r.placement_group = Some(crate::placement_groups::GroupRef::Name("parts".into()));
        r.partition_number = Some(2);
        assert!(matches!(w.cloud.run_instances(&w.scope, r.clone()), Err(Error::InsufficientCapacity(_))));
        r.partition_number = Some(1);
        let more = w.cloud.run_instances(&w.scope, r).expect("partition 1 has room");
        assert!(one.contains(more[0].host_id.as_deref().expect("a host")), "{more:?}");
        assert!(hosts_of(&w, 1).is_disjoint(&hosts_of(&w, 2)));
    }

    #[test]
    fn instances_are_placed_on_their_zones_live_hosts_and_run_only_there() {
        let hosts = [host("us-east-1b", 1, 0), host("us-east-1b", 2, 0), host("us-east-1c", 3, 60_000)];
        let (mut w, fakes) = joined("placement", &hosts);

        let placed = run(&w, "us-east-1b", 5).expect("launch in 1b");
        assert_eq!(placed.len(), 4, "two t3.micro fit on each 4 GiB host");
        for (id, _) in &fakes[..2] {
            let here = placed.iter().filter(|i| i.host_id.as_deref() == Some(id.as_str())).count();
            assert_eq!(here, 2, "spread over both hosts of the zone");
        }
        match run(&w, "us-east-1b", 1) {
            Err(Error::InsufficientCapacity(m)) => assert!(m.contains("us-east-1b"), "{m}"),
            other => panic!("a full zone must refuse: {other:?}"),
        }
        match run(&w, "us-east-1c", 1) {
            Err(Error::InsufficientCapacity(m)) => assert!(m.contains("us-east-1c"), "{m}"),
            other => panic!("a zone whose hosts are silent must refuse: {other:?}"),
        }
        let local = run(&w, "us-east-1a", 1).expect("launch in 1a").remove(0);
        assert_eq!(local.host_id, None);

        let ids: Vec<String> = placed.iter().map(|i| i.id.clone()).collect();
        w.passes_until(10, |w| ids.iter().chain([&local.id]).all(|i| w.state(i) == kiln_types::InstanceState::Running));
        for i in &placed {
            for (h, fake) in &fakes {
                assert_eq!(fake.runs(&i.id), i.host_id.as_deref() == Some(h.as_str()), "{} only on its host", i.id);
            }
            assert!(!w.agent.runs(&i.id), "{} is not on the server's own host", i.id);
        }
        assert!(w.agent.runs(&local.id) && !fakes.iter().any(|(_, f)| f.runs(&local.id)));
        // Their volumes are files of the server's own store, each served to its host.
        let own = Arc::clone(&w.agent);
        let served = move |h: &HostId| own.served.lock().expect("served").get(h.as_str()).cloned().unwrap_or_default();
        for (h, _) in &fakes[..2] {
            let mut want: Vec<String> = placed
                .iter()
                .filter(|i| i.host_id.as_deref() == Some(h.as_str()))
                .flat_map(|i| w.cloud.instance_volumes(&i.id).expect("volumes"))
                .map(|v| {
                    assert!(w.dir.join(&v.file).is_file(), "{} is in the store", v.id);
                    v.id
                })
                .collect();
            want.sort();
            let mut got = served(h);
            got.sort();
            assert_eq!(got, want, "host {h} is served its instances' volumes");
        }

        // Host 1 runs a VM of an instance placed on host 2 (as a host that was away
        // would): the next pass ends it there and leaves host 2's alone.
        let stray = placed.iter().find(|i| i.host_id.as_deref() == Some(fakes[1].0.as_str())).expect("one on host 2");
        let vols = w.cloud.instance_volumes(&stray.id).expect("volumes");
        let spec = w.cloud.spec(stray, &vols).expect("spec");
        fakes[0].1.start(&spec).expect("a stray VM");
        w.passes_until(3, |_| !fakes[0].1.runs(&stray.id));
        assert!(fakes[1].1.runs(&stray.id));

        // Host 2 falls silent: its instances are left alone (its VMs run on), a forced
        // stop releases one without it (and its volume is no longer served there), it
        // starts on the other host of its zone once that has room, and when the host
        // reports again its VM is ended there.
        heard(&w, &fakes[1].0, now_ms() - 60_000);
        let silent = w.cloud.silent_hosts().expect("silent hosts");
        assert!(silent.contains_key(fakes[1].0.as_str()) && silent.contains_key(hosts[2].host_id.as_str()));
        assert!(!silent.contains_key(fakes[0].0.as_str()));
        let id: kiln_types::InstanceId = stray.id.parse().expect("id");
        w.cloud.stop_instances(&w.scope, std::slice::from_ref(&id), true).expect("forced stop");
        w.passes_until(5, |w| w.state(&stray.id) == kiln_types::InstanceState::Stopped);
        assert!(fakes[1].1.runs(&stray.id), "nobody could ask the silent host");
        let root = w.cloud.instance_volumes(&stray.id).expect("volumes").remove(0).id;
        w.passes_until(3, |_| !served(&fakes[1].0).contains(&root));
        match w.cloud.start_instances(&w.scope, std::slice::from_ref(&id)) {
            Err(Error::InsufficientCapacity(m)) => assert!(m.contains("us-east-1b"), "{m}"),
            other => panic!("no host of the zone has room: {other:?}"),
        }
        let on_first: kiln_types::InstanceId = placed
            .iter()
            .find(|i| i.host_id.as_deref() == Some(fakes[0].0.as_str()))
            .expect("one on host 1")
            .id
            .parse()
            .expect("id");
        w.cloud.terminate_instances(&w.scope, std::slice::from_ref(&on_first)).expect("terminate");
        w.passes_until(10, |w| w.state(on_first.as_ref()) == kiln_types::InstanceState::Terminated);
        w.cloud.start_instances(&w.scope, std::slice::from_ref(&id)).expect("starts on host 1");
        w.passes_until(10, |w| w.state(&stray.id) == kiln_types::InstanceState::Running);
        let moved = w.cloud.instances(&w.scope, std::slice::from_ref(&id)).expect("describe").remove(0);
        assert_eq!(moved.host_id.as_deref(), Some(fakes[0].0.as_str()));
        assert!(fakes[0].1.runs(&stray.id) && served(&fakes[0].0).contains(&root), "on host 1, with its volume");
        heard(&w, &fakes[1].0, now_ms());
        w.passes_until(3, |_| !fakes[1].1.runs(&stray.id));
        assert!(fakes[0].1.runs(&stray.id), "the stale VM is ended, the one on host 1 runs on");
    }

    /// ModifyVolume of a running joined-host instance's volume grows it live through
    /// the VM on that host (whose qcow2 runs over NBD from the store), not on the
    /// store's file under it.
    #[test]
    fn a_volume_grows_live_through_its_vm_on_a_joined_host() {
        let (mut w, fakes) = joined("grow", &[host("us-east-1b", 1, 0)]);
        let i = run(&w, "us-east-1b", 1).expect("launch").remove(0);
        w.passes_until(10, |w| w.state(&i.id) == kiln_types::InstanceState::Running);
        let root = w.cloud.instance_volumes(&i.id).expect("volumes").remove(0);
        let change = crate::volumes::VolumeChange { size_gib: Some(root.size_gib + 1), ..Default::default() };
        w.cloud.modify_volume(&w.scope, &root.id, &change).expect("modify");
        w.passes_until(3, |w| {
            let m = w.cloud.volume_modifications(&w.scope, &[]).expect("modifications");
            m.iter().any(|m| m.volume_id == root.id && m.state == "completed")
        });
        let grown = fakes[0].1.grown.lock().expect("grown").clone();
        assert_eq!(grown.iter().map(|(_, s)| *s).collect::<Vec<_>>(), [root.size_gib as u64 + 1]);
        assert!(w.agent.grown.lock().expect("grown").is_empty(), "not on the store's file");

        // The host falls silent: the instance, stopped by force, has its volume grown
        // on the store's file, and the silent host is not asked.
        heard(&w, &fakes[0].0, now_ms() - 60_000);
        let id: kiln_types::InstanceId = i.id.parse().expect("id");
        w.cloud.stop_instances(&w.scope, std::slice::from_ref(&id), true).expect("forced stop");
        w.passes_until(5, |w| w.state(&i.id) == kiln_types::InstanceState::Stopped);
        let change = crate::volumes::VolumeChange { size_gib: Some(root.size_gib + 2), ..Default::default() };
        w.cloud.modify_volume(&w.scope, &root.id, &change).expect("modify");
        w.passes_until(3, |w| {
            let m = w.cloud.volume_modifications(&w.scope, &[]).expect("modifications");
            m.iter().filter(|m| m.volume_id == root.id).all(|m| m.state == "completed")
        });
        let stored = w.agent.grown.lock().expect("grown").clone();
        assert_eq!(stored.iter().map(|(_, s)| *s).collect::<Vec<_>>(), [root.size_gib as u64 + 2]);
        assert_eq!(fakes[0].1.grown.lock().expect("grown").len(), 1, "the silent host was not asked");
    }

    /// A cluster group whose host went silent: its instance, stopped by force, starts
    /// on another host of the zone (the group's rule names no host that is gone).
    #[test]
    fn a_cluster_groups_instance_starts_again_off_its_silent_host() {
        use crate::placement_groups::NewGroup;
        use kiln_types::PlacementStrategy;
        let hosts = [host("us-east-1b", 1, 0), host("us-east-1b", 2, 60_000)];
        let (mut w, _) = joined("cluster-start", &hosts);
        let g =
            NewGroup { name: Some("near".into()), strategy: Some(PlacementStrategy::Cluster), ..NewGroup::default() };
        w.cloud.create_placement_group(&w.scope, &g).expect("group");
        let placed = run_grouped(&w, Some("near"), 2, 2).expect("cluster");
        assert!(placed.iter().all(|i| i.host_id.as_deref() == Some(hosts[0].host_id.as_str())));
        let ids: Vec<String> = placed.iter().map(|i| i.id.clone()).collect();
        w.passes_until(10, |w| ids.iter().all(|i| w.state(i) == kiln_types::InstanceState::Running));
        heard(&w, &hosts[1].host_id, now_ms());
        heard(&w, &hosts[0].host_id, now_ms() - 60_000);
        let id: kiln_types::InstanceId = placed[0].id.parse().expect("id");
        w.cloud.stop_instances(&w.scope, std::slice::from_ref(&id), true).expect("forced stop");
        w.passes_until(5, |w| w.state(&placed[0].id) == kiln_types::InstanceState::Stopped);
        w.cloud.start_instances(&w.scope, std::slice::from_ref(&id)).expect("starts on the live host");
        let now = w.cloud.store.read(|c| instances::get(c, &placed[0].id)).expect("read").expect("instance");
        assert_eq!(now.host_id.as_deref(), Some(hosts[1].host_id.as_str()));
    }

    /// An instance of a spread group started again off a host that went silent goes to
    /// a host none of its group is on, though another host has more room.
    #[test]
    fn a_spread_groups_instance_starts_again_apart_from_the_others() {
        use crate::placement_groups::NewGroup;
        use kiln_types::PlacementStrategy;
        let mut roomy = host("us-east-1b", 2, 0);
        roomy.memory_mib = 8192;
        let hosts = [host("us-east-1b", 1, 0), roomy, host("us-east-1b", 3, 60_000)];
        let (mut w, _) = joined("spread-start", &hosts);
        let g =
            NewGroup { name: Some("apart".into()), strategy: Some(PlacementStrategy::Spread), ..NewGroup::default() };
        w.cloud.create_placement_group(&w.scope, &g).expect("group");
        let placed = run_grouped(&w, Some("apart"), 2, 2).expect("spread");
        let on = |i: &instances::Instance, h: &Host| i.host_id.as_deref() == Some(h.host_id.as_str());
        let moved = placed.iter().find(|i| on(i, &hosts[0])).expect("one on host 1");
        assert!(placed.iter().any(|i| on(i, &hosts[1])), "the other on the roomy host");
        let ids: Vec<String> = placed.iter().map(|i| i.id.clone()).collect();
        w.passes_until(10, |w| ids.iter().all(|i| w.state(i) == kiln_types::InstanceState::Running));
        // Host 3 comes back, host 1 falls silent: its instance, stopped by force,
        // starts on host 3, not on the roomy host its group already holds.
        heard(&w, &hosts[2].host_id, now_ms());
        heard(&w, &hosts[0].host_id, now_ms() - 60_000);
        let id: kiln_types::InstanceId = moved.id.parse().expect("id");
        w.cloud.stop_instances(&w.scope, std::slice::from_ref(&id), true).expect("forced stop");
        w.passes_until(5, |w| w.state(&moved.id) == kiln_types::InstanceState::Stopped);
        w.cloud.start_instances(&w.scope, std::slice::from_ref(&id)).expect("start");
        let now = w.cloud.store.read(|c| instances::get(c, &moved.id)).expect("read").expect("instance");
        assert_eq!(now.host_id.as_deref(), Some(hosts[2].host_id.as_str()), "apart from the group's other host");
    }

    /// A live snapshot on a joined host whose VM never goes on to its new top is undone
    /// when its work gives up, though the store made the overlay: the volume stays on
    /// the file the VM writes, the overlay goes, and no snapshot claims the live file.
    #[test]
    fn a_joined_hosts_switch_that_never_happens_is_undone() {
        let (mut w, fakes) = joined("switch-stuck", &[host("us-east-1b", 1, 0)]);
        let i = run(&w, "us-east-1b", 1).expect("launch").remove(0);
        w.passes_until(10, |w| w.state(&i.id) == kiln_types::InstanceState::Running);
        let root = w.cloud.instance_volumes(&i.id).expect("volumes").remove(0);
        let file_of = |w: &World| {
            w.cloud.store.read(|c| kiln_store::volumes::get(c, &root.id)).expect("read").expect("volume").file
        };
        fakes[0].1.stuck_disks.store(true, std::sync::atomic::Ordering::SeqCst);
        let snap = w.cloud.create_snapshot(&w.scope, &root.id, "stuck", &[]).expect("snapshot");
        w.passes_until(5, |w| file_of(w) != root.file);
        let recorded = file_of(&w);
        assert!(w.dir.join(&recorded).exists(), "the store made the overlay");
        let freeze = crate::workflows::Freeze {
            volume_id: root.id.clone(),
            snapshot_id: snap.id.clone(),
            new_file: recorded.clone(),
        };
        w.cloud.snapshot_failed(Some(&i.id), &freeze).expect("give up");
        assert_eq!(file_of(&w), root.file, "the volume names the file its VM writes");
        assert!(!w.dir.join(&recorded).exists(), "the overlay nothing went on to is gone");
        let ids = [snap.id.parse::<kiln_types::SnapshotId>().expect("id")];
        assert!(w.cloud.snapshots(&w.scope, &ids, &[], &[]).is_err(), "no snapshot claims the live file");
    }
}
