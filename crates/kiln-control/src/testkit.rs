//! Test support: a fake host agent that keeps VMs in memory and makes volume files as
//! empty files, with crash injection (a panic at the Nth agent call, before or after
//! its effect), and a world with an account, an image and a store on disk, so that the
//! reconciler, the workflows and CreateImage run without QEMU.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use kiln_agent_api::{AgentError, HostAgent, HostInfo, StorePath, VmSpec, VpcNetwork};
use kiln_store::images::BlockDevice;
use kiln_store::snapshots::{self, Snapshot};
use kiln_store::{Scope, Store};
use kiln_types::{Architecture, RegionConfig};

use crate::images::NewImage;
use crate::instances::RunRequest;
use crate::{Cloud, Limits};

/// Where an injected crash happens relative to the call's effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashAt {
    Before,
    After,
}

/// A VM as the fake host sees it.
#[derive(Debug, Clone)]
pub struct FakeVm {
    /// The file each disk writes to now.
    pub disks: Vec<PathBuf>,
    pub resets: u32,
    /// Its further interfaces.
    pub nics: Vec<String>,
}

#[derive(Default)]
pub struct FakeAgent {
    /// The host's store: where the files the control plane names are.
    store: PathBuf,
    pub vms: Mutex<HashMap<String, FakeVm>>,
    /// Agent calls with an effect left before the injected crash (negative: none).
    countdown: AtomicI64,
    crash_at: Mutex<Option<CrashAt>>,
    /// A guest that ignores the power button.
    pub deaf: Mutex<bool>,
    /// QMP's `transaction` fails: live snapshots switch nothing.
    pub stuck_disks: std::sync::atomic::AtomicBool,
    /// Volume files grown, and to what size.
    pub grown: Mutex<Vec<(PathBuf, u64)>>,
    /// Whether the host gives VPC networking (ports always exist then).
    pub vpc: std::sync::atomic::AtomicBool,
    /// The volumes this (the control plane's own) host serves each joined host.
    pub served: Mutex<HashMap<String, Vec<String>>>,
}

/// The panic an injected crash raises.
pub const CRASH: &str = "injected crash";

impl FakeAgent {
    pub fn new(store: &Path) -> Arc<Self> {
        let a = Self { store: store.to_path_buf(), ..Self::default() };
        a.countdown.store(-1, Ordering::SeqCst);
        Arc::new(a)
    }

    /// Crashes at the `n`th agent call with an effect from now (0: the next one).
    pub fn crash_after(&self, n: i64, at: CrashAt) {
        *self.crash_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(at);
        self.countdown.store(n, Ordering::SeqCst);
    }

    /// Runs an effect, crashing before or after it when the countdown says so.
    fn effect<T>(&self, f: impl FnOnce() -> T) -> T {
        let left = self.countdown.fetch_sub(1, Ordering::SeqCst);
        let at = *self.crash_at.lock().unwrap_or_else(|p| p.into_inner());
        if left == 0 && at == Some(CrashAt::Before) {
            panic!("{CRASH}");
        }
        let out = f();
        if left == 0 && at == Some(CrashAt::After) {
            panic!("{CRASH}");
        }
        out
    }

    fn vms(&self) -> std::sync::MutexGuard<'_, HashMap<String, FakeVm>> {
        self.vms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the fake host runs `id`'s VM now.
    pub fn runs(&self, id: &str) -> bool {
        self.vms().contains_key(id)
    }

    pub fn disk(&self, id: &str, index: usize) -> Option<PathBuf> {
        self.vms().get(id).and_then(|v| v.disks.get(index).cloned())
    }
}

fn fail(msg: &str) -> AgentError {
    AgentError::Failed(msg.into())
}

impl HostAgent for FakeAgent {
    fn info(&self) -> Result<HostInfo, AgentError> {
        Ok(HostInfo { accel: kiln_agent_api::Accel::Tcg, cpus: 8, memory_mib: 64 * 1024, qemu_version: "fake".into() })
    }

    fn create_volume(&self, file: &StorePath, _backing: Option<&StorePath>, _size_gib: u64) -> Result<(), AgentError> {
        let path = file.under(&self.store);
        self.effect(|| {
            if path.exists() {
                return Ok(());
            }
            if let Some(p) = path.parent() {
                std::fs::create_dir_all(p).map_err(|e| fail(&e.to_string()))?;
            }
            std::fs::write(&path, b"qcow2").map_err(|e| fail(&e.to_string()))
        })
    }

    fn fetch_layers(&self, layers: &[kiln_agent_api::Layer]) -> Result<kiln_agent_api::LayersReady, AgentError> {
        let missing: Vec<_> = layers.iter().filter(|l| !l.file.under(&self.store).exists()).collect();
        for l in &missing {
            let path = l.file.under(&self.store);
            std::fs::create_dir_all(path.parent().unwrap_or(&self.store)).map_err(|e| fail(&e.to_string()))?;
            std::fs::write(&path, b"layer").map_err(|e| fail(&e.to_string()))?;
        }
        Ok(kiln_agent_api::LayersReady::Ready { fetched: missing.iter().map(|l| l.size).sum() })
    }

    fn delete_volume(&self, file: &StorePath) -> Result<(), AgentError> {
        self.effect(|| {
            let _ = std::fs::remove_file(file.under(&self.store));
            Ok(())
        })
    }

    fn volume_exists(&self, file: &StorePath) -> Result<bool, AgentError> {
        Ok(file.under(&self.store).exists())
    }

    fn start(&self, spec: &VmSpec) -> Result<(), AgentError> {
        self.effect(|| {
            let mut vms = self.vms();
            let disks = spec.disks.iter().map(|d| d.file.under(&self.store)).collect();
            vms.entry(spec.instance_id.to_string()).or_insert_with(|| FakeVm { disks, resets: 0, nics: Vec::new() });
            Ok(())
        })
    }

    fn is_running(&self, instance_id: &str) -> Result<bool, AgentError> {
        Ok(self.vms().contains_key(instance_id))
    }

    fn powerdown(&self, instance_id: &str) -> Result<(), AgentError> {
        self.effect(|| {
            if !*self.deaf.lock().unwrap_or_else(|p| p.into_inner()) {
                self.vms().remove(instance_id);
            }
            Ok(())
        })
    }

    fn reset(&self, instance_id: &str) -> Result<(), AgentError> {
        self.effect(|| match self.vms().get_mut(instance_id) {
            Some(vm) => {
                vm.resets += 1;
                Ok(())
            }
            None => Err(fail("not running")),
        })
    }

    fn kill(&self, instance_id: &str) -> Result<(), AgentError> {
        self.effect(|| {
            self.vms().remove(instance_id);
            Ok(())
        })
    }

    fn live_snapshot(&self, instance_id: &str, switches: &[(StorePath, StorePath)]) -> Result<(), AgentError> {
        self.effect(|| {
            if self.stuck_disks.load(Ordering::SeqCst) {
                return Err(fail("transaction: the disks would not switch"));
            }
            let mut vms = self.vms();
            let vm = vms.get_mut(instance_id).ok_or_else(|| fail("not running"))?;
            for (current, overlay) in switches {
                let (current, overlay) = (current.under(&self.store), overlay.under(&self.store));
                if vm.disks.contains(&overlay) {
                    continue;
                }
                let disk = vm.disks.iter_mut().find(|d| **d == current).ok_or_else(|| fail("no such disk"))?;
                std::fs::write(&overlay, b"qcow2").map_err(|e| fail(&e.to_string()))?;
                *disk = overlay;
            }
            Ok(())
        })
    }

    fn set_disks(
        &self,
        instance_id: &str,
        disks: &[kiln_agent_api::Disk],
        _force: &[kiln_types::VolumeId],
    ) -> Result<bool, AgentError> {
        self.effect(|| match self.vms().get_mut(instance_id) {
            Some(vm) => {
                vm.disks = disks.iter().map(|d| d.file.under(&self.store)).collect();
                Ok(true)
            }
            None => Err(fail("not running")),
        })
    }

    fn grow_volume(
        &self,
        _volume: &kiln_types::VolumeId,
        file: &StorePath,
        size_gib: u64,
        _instance_id: Option<&str>,
    ) -> Result<(), AgentError> {
        let path = file.under(&self.store);
        self.effect(|| {
            self.grown.lock().unwrap_or_else(|p| p.into_inner()).push((path.clone(), size_gib));
            Ok(())
        })
    }

    fn console(&self, _instance_id: &str, _max: usize) -> Result<Vec<u8>, AgentError> {
        Ok(b"kiln-tiny: ready".to_vec())
    }

    fn forget(&self, _instance_id: &str) -> Result<(), AgentError> {
        Ok(())
    }

    fn running(&self) -> Result<Vec<String>, AgentError> {
        Ok(self.vms().keys().cloned().collect())
    }

    fn vpc_networking(&self) -> Result<bool, AgentError> {
        Ok(self.vpc.load(Ordering::SeqCst))
    }

    fn apply_network(&self, _net: &VpcNetwork) -> Result<(), AgentError> {
        Ok(())
    }

    fn remove_network(&self, _vpc_id: &str) -> Result<(), AgentError> {
        Ok(())
    }

    fn networks(&self) -> Result<Vec<String>, AgentError> {
        Ok(Vec::new())
    }

    fn network_id(&self, _vpc_id: &str) -> Option<u64> {
        self.vpc.load(Ordering::SeqCst).then_some(1)
    }

    fn tap_id(&self, _vpc_id: &str, _interface_id: &str) -> Option<kiln_agent_api::TapId> {
        self.vpc.load(Ordering::SeqCst).then_some(kiln_agent_api::TapId { netns: 1, ifindex: 1 })
    }

    fn seal(&self, _file: &StorePath, _backing: Option<&StorePath>, _frozen: bool) -> Result<(), AgentError> {
        Ok(())
    }

    fn drives_on(&self, instance_id: &str, disks: &[kiln_agent_api::Disk]) -> Result<Vec<bool>, AgentError> {
        let vms = self.vms();
        let vm = vms.get(instance_id).ok_or_else(|| fail("not running"))?;
        Ok(disks.iter().map(|d| vm.disks.contains(&d.file.under(&self.store))).collect())
    }

    fn switch_served(&self, instance_id: &str, disks: &[kiln_agent_api::Disk]) -> Result<(), AgentError> {
        // As a live snapshot of the files: each disk goes from the top it is on (the
        // first layer under its new one) to its new top.
        let switches: Vec<(StorePath, StorePath)> = disks
            .iter()
            .map(|d| Ok((d.below.first().cloned().ok_or_else(|| fail("no layer under the new top"))?, d.file.clone())))
            .collect::<Result<_, AgentError>>()?;
        self.live_snapshot(instance_id, &switches)
    }

    fn serve_volumes(
        &self,
        host: &kiln_agent_api::HostId,
        ip: std::net::IpAddr,
        _tls: &dyn Fn() -> Result<kiln_agent_api::ServerTls, AgentError>,
        exports: &[kiln_agent_api::Disk],
        _keep: bool,
    ) -> Result<Option<std::net::SocketAddr>, AgentError> {
        let mut served = self.served.lock().unwrap_or_else(|p| p.into_inner());
        if exports.is_empty() {
            served.remove(host.as_str());
            return Ok(None);
        }
        served.insert(host.to_string(), exports.iter().map(|d| d.volume_id.to_string()).collect());
        Ok(Some(std::net::SocketAddr::new(ip, 10809)))
    }

    fn set_nics(&self, instance_id: &str, nics: &[kiln_agent_api::Nic]) -> Result<bool, AgentError> {
        self.effect(|| match self.vms().get_mut(instance_id) {
            Some(vm) => {
                vm.nics = nics.iter().map(|n| n.interface_id.clone()).collect();
                Ok(true)
            }
            None => Err(fail("not running")),
        })
    }
}

/// A data directory with a store, an account and a one-volume image, run by a
/// `FakeAgent`.
pub struct World {
    pub dir: PathBuf,
    pub agent: Arc<FakeAgent>,
    pub cloud: Cloud,
    pub scope: Scope,
    pub image_id: kiln_types::ImageId,
}

impl World {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("kiln-world-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("snapshots")).expect("dir");
        let agent = FakeAgent::new(&dir);
        let cloud = Self::open(&dir, &agent);
        let account = cloud.create_account("tester", false).expect("account").account;
        let scope = Scope { account: account.id, region: "us-east-1".into() };
        let base = Snapshot {
            id: kiln_types::ResourceKind::Snapshot.generate(),
            account_id: scope.account.clone(),
            region: scope.region.clone(),
            parent_id: None,
            file: "snapshots/base.qcow2".into(),
            volume_size: 1,
            state: "completed".into(),
            progress: 100,
            description: "base".into(),
            volume_id: None,
            created_at: kiln_store::now(),
        };
        std::fs::write(dir.join(&base.file), b"qcow2").expect("base layer");
        cloud.store.write(|tx| snapshots::insert(tx, &base)).expect("snapshot");
        let devices = vec![BlockDevice {
            device_name: "/dev/xvda".into(),
            snapshot_id: Some(base.id.clone()),
            volume_size: 1,
            volume_type: kiln_types::VolumeType::Gp3,
            delete_on_termination: true,
        }];
        let new = NewImage::new("base".into(), String::new(), Architecture::X86_64, "/dev/xvda".into(), devices);
        let image_id = cloud.register_image(&scope, new, &[]).expect("image").id.parse().expect("an image id");
        Self { dir, agent, cloud, scope, image_id }
    }

    fn open(dir: &Path, agent: &Arc<FakeAgent>) -> Cloud {
        let store = Store::open(&dir.join("kiln.db")).expect("store");
        Cloud::new(store, vec![RegionConfig::with_three_zones("us-east-1")], dir.to_path_buf())
            .with_agent(agent.clone(), Limits::default())
    }

    /// What `kiln serve` does after `kill -9`: a new control plane over the same store
    /// and host (VMs outlive the daemon), the start-up sweeps, then a fresh reconciler.
    pub fn restart(&mut self) {
        self.cloud = Self::open(&self.dir, &self.agent);
        self.cloud.remove_stray_volumes().expect("strays");
        self.cloud.collect_layers().expect("layers");
    }

    pub fn launch(&self) -> kiln_types::InstanceId {
        let r = RunRequest::new(self.image_id.clone());
        let id = self.cloud.run_instances(&self.scope, r).expect("launch").remove(0).id;
        id.parse().expect("an instance id")
    }

    /// Runs reconciler passes (catching injected crashes, which restart the world)
    /// until `done` holds; panics after `max` passes.
    pub fn passes_until(&mut self, max: usize, mut done: impl FnMut(&World) -> bool) -> usize {
        let mut r = crate::reconcile::Reconciler::new();
        let mut crashes = 0;
        for _ in 0..max {
            if done(self) {
                return crashes;
            }
            let pass = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.cloud.reconcile(&r)));
            match pass {
                Ok(result) => result.expect("reconcile pass"),
                Err(_) => {
                    crashes += 1;
                    self.restart();
                    r = crate::reconcile::Reconciler::new();
                }
            }
        }
        panic!("not done after {max} passes");
    }

    pub fn state(&self, id: &str) -> kiln_types::InstanceState {
        self.cloud.instances(&self.scope, &[id.parse().expect("an instance id")]).expect("instance")[0].state
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
