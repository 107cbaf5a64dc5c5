//! This machine as a host: the flags of its agent (accelerator, overcommit, network)
//! made into a `LocalAgent` and limits, the tag that keeps two Kilns' network state
//! apart, and `kiln host info`.

use std::net::Ipv4Addr;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use crate::args::HostArgs;
use crate::serve::{default_regions, open};

/// Where running Kilns say which public address pool they route: one file per data
/// directory, holding the pool, locked while its server runs.
const POOLS: &str = "/run/kiln/pools";

/// Claims `pool` for the Kiln of `dir` on this machine for as long as the returned lock
/// lives. Refuses a pool that overlaps one another running Kiln holds: two Kilns
/// routing one pool would take each other's host routes and cut instances off. A
/// file whose server is gone is unlocked and does not count. With a `shared` store
/// (PostgreSQL) several servers may run on one data directory, each with a file of its
/// own, since the host-work lease decides which of them routes (see `lead`); they must
/// be given the same pool.
pub(crate) fn claim_pool(
    dir: &std::path::Path,
    pool: ipnet::Ipv4Net,
    shared: bool,
) -> Result<nix::fcntl::Flock<std::fs::File>> {
    use nix::fcntl::{Flock, FlockArg};
    use std::io::Write as _;
    let registry = std::path::Path::new(POOLS);
    std::fs::create_dir_all(registry).with_context(|| format!("creating {POOLS}"))?;
    let tag = kiln_agent::net::net_tag(dir);
    let mine = registry.join(if shared { format!("{tag}.{}", std::process::id()) } else { tag.clone() });
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&mine)
        .with_context(|| format!("opening {}", mine.display()))?;
    let mut lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|_| {
        anyhow::anyhow!("another kiln serve is already running with the data directory {}", dir.display())
    })?;
    lock.set_len(0)?;
    writeln!(lock, "{pool} {}", dir.display())?;
    // Checked once ours is written, so two Kilns starting together see each other.
    for entry in std::fs::read_dir(registry)?.filter_map(std::result::Result::ok) {
        let path = entry.path();
        if path == mine {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let same_dir = name.split('.').next() == Some(tag.as_str());
        let Ok(file) = std::fs::File::open(&path) else { continue };
        let held = match Flock::lock(file, FlockArg::LockSharedNonblock) {
            Ok(free) => {
                drop(free);
                false
            }
            Err(_) => true,
        };
        if !held {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let (theirs, their_dir) = text.trim().split_once(' ').unwrap_or((text.trim(), "?"));
        let Ok(theirs) = theirs.parse::<ipnet::Ipv4Net>() else { continue };
        if same_dir {
            if !shared {
                bail!("another kiln serve is already running with the data directory {}", dir.display());
            }
            if theirs != pool {
                bail!(
                    "the other kiln serve of {} routes the pool {theirs}: give this one the same --public-ip-pool",
                    dir.display()
                );
            }
            continue;
        }
        if theirs.contains(&pool.network()) || pool.contains(&theirs.network()) {
            bail!(
                "the public address pool {pool} overlaps {theirs}, which the Kiln of {their_dir} is routing on this \
                 machine; start this one with another --public-ip-pool (or --network user)"
            );
        }
    }
    Ok(lock)
}

/// Whether a `kiln serve` of `dir` is running on this machine (it holds its pool file).
pub(crate) fn serving(dir: &std::path::Path) -> bool {
    use nix::fcntl::{Flock, FlockArg};
    let tag = kiln_agent::net::net_tag(dir);
    let Ok(entries) = std::fs::read_dir(POOLS) else { return false };
    entries.filter_map(std::result::Result::ok).any(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        name.split('.').next() == Some(tag.as_str())
            && std::fs::File::open(e.path()).is_ok_and(|f| Flock::lock(f, FlockArg::LockSharedNonblock).is_err())
    })
}

/// Whether this process can make namespaces and nftables rules.
pub(crate) fn can_network() -> bool {
    let root = nix::unistd::geteuid().is_root();
    let found = |p: &str, v: &str| std::process::Command::new(p).arg(v).output().is_ok_and(|o| o.status.success());
    root && found("ip", "-V") && found("nft", "--version")
}

impl HostArgs {
    /// This server's own host agent; `underlay` is its address on the network between
    /// hosts (`--agent-listen`'s), on which its VPCs reach joined hosts' over VXLAN.
    pub(crate) fn agent(&self, dir: &std::path::Path, underlay: Option<Ipv4Addr>) -> Arc<kiln_agent::LocalAgent> {
        let forced = match self.accel.as_str() {
            "kvm" => Some(kiln_agent_api::Accel::Kvm),
            "tcg" => Some(kiln_agent_api::Accel::Tcg),
            _ => None,
        };
        // QEMU runs this binary's `kiln pipe` to bridge a guest's metadata connection.
        let exe = std::env::current_exe().unwrap_or_else(|_| "kiln".into());
        let agent = kiln_agent::LocalAgent::new(dir.to_path_buf(), exe, forced).with_tuning(kiln_agent::qemu::Tuning {
            tb_size_mib: (self.tcg_tb_size > 0).then_some(self.tcg_tb_size),
            balloon: !self.no_balloon,
        });
        let vpc = match self.network.as_str() {
            "vpc" => true,
            "user" => false,
            _ => {
                let ok = can_network();
                if !ok {
                    tracing::warn!(
                        "VPC networking needs root, iproute2 and nftables; guests get QEMU's user-mode network \
                         instead (no public addresses, security groups not enforced)"
                    );
                }
                ok
            }
        };
        if !vpc {
            return Arc::new(agent);
        }
        Arc::new(agent.with_network(kiln_agent::net::NetConfig {
            tag: kiln_agent::net::net_tag(dir),
            public_pool: (self.public_ip_pool.network(), self.public_ip_pool.prefix_len()),
            egress_nat: !self.no_egress_nat,
            underlay,
        }))
    }

    pub(crate) fn limits(&self) -> kiln_control::Limits {
        kiln_control::Limits {
            cpu_overcommit: self.cpu_overcommit,
            memory_overcommit: self.memory_overcommit,
            vcpu_quota: self.vcpu_quota,
            vm_overhead_mib: self.vm_overhead_mib,
            host_reserved_mib: self.host_reserved_mib,
        }
    }
}

/// An x86 guest kernel in the data directory, copied to `scratch` (builds move and
/// vanish): a finished Quick Start build's (its recipe names an x86_64 or amd64
/// image), or one a build in progress has unpacked (its `vmlinuz` copy is made only
/// once the package is fully unpacked), so the probe need not wait for the image.
fn x86_kernel_copy(dir: &std::path::Path, scratch: &std::path::Path) -> Option<std::path::PathBuf> {
    let builds = std::fs::read_dir(dir.join("builds")).ok()?.filter_map(std::result::Result::ok).map(|e| e.path());
    let kernel = builds.into_iter().find_map(|b| {
        if b.extension().is_some_and(|e| e == "partial") {
            if !b.join("vmlinuz").is_file() {
                return None;
            }
            let boot = std::fs::read_dir(b.join("kernel/boot")).ok()?;
            return boot.filter_map(std::result::Result::ok).map(|e| e.path()).find(|p| {
                p.file_name().is_some_and(|n| {
                    n.to_string_lossy().starts_with("vmlinuz-") && n.to_string_lossy().ends_with("amd64")
                })
            });
        }
        let recipe = std::fs::read_to_string(b.join("recipe")).ok()?;
        let x86 = recipe.trim().ends_with("x86_64") || recipe.trim().ends_with("amd64");
        (x86 && b.join("done").is_file()).then(|| b.join("vmlinuz"))
    })?;
    std::fs::create_dir_all(scratch).ok()?;
    let copy = scratch.join(format!("kvm-probe-{}.vmlinuz", std::process::id()));
    std::fs::copy(&kernel, &copy).ok()?;
    Some(copy)
}

/// Probes KVM in the background as soon as an x86 kernel is unpacked (at once on a
/// data directory that has one), so the first launch does not wait for it: where
/// /dev/kvm exists but cannot run a guest, the probe takes its full 8 s.
pub(crate) fn probe_ahead(
    agent: Arc<kiln_agent::LocalAgent>,
    dir: std::path::PathBuf,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    std::thread::spawn(move || {
        let scratch = dir.join("instances");
        // Done once it is known: forced with --accel, or probed by a launch meanwhile.
        while !stop.load(std::sync::atomic::Ordering::Relaxed) && !agent.accel_settled() {
            if let Some(kernel) = x86_kernel_copy(&dir, &scratch) {
                let accel = agent.probe_with(&kernel);
                let _ = std::fs::remove_file(&kernel);
                tracing::info!(accel = accel.as_str(), "accelerator settled ahead of the first launch");
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
    });
}

pub(crate) fn host_info(dir: &std::path::Path, host: &HostArgs) -> Result<()> {
    let agent = host.agent(dir, None);
    // Probe with a built x86 kernel when there is one.
    let kernel = std::fs::read_dir(dir.join("kernels")).ok().and_then(|d| {
        d.filter_map(std::result::Result::ok).map(|e| e.path()).find(|p| p.to_string_lossy().ends_with("vmlinuz"))
    });
    let accel = match (host.accel.as_str(), kernel) {
        ("kvm", _) => kiln_agent_api::Accel::Kvm,
        ("tcg", _) => kiln_agent_api::Accel::Tcg,
        (_, Some(k)) => kiln_agent::probe_kvm(&k, &dir.join("instances")),
        (_, None) => kiln_agent_api::Accel::Tcg,
    };
    let info = agent.host_info();
    let cloud = open(dir, &default_regions())?;
    let limits = host.limits();
    let (mut vcpus, mut mem, mut n) = (0i64, 0i64, 0);
    for i in cloud.store.read(kiln_store::instances::all)? {
        if i.state.holds_capacity() {
            vcpus += i.vcpus;
            mem += limits.memory_cost_mib(i.memory_mib);
            n += 1;
        }
    }
    let offered_cpu = info.cpus as f64 * host.cpu_overcommit;
    let offered_mem = limits.memory_offered_mib(info.memory_mib);
    let usage = agent.usage();
    println!("accelerator   {}", accel.as_str());
    println!("qemu          {}", info.qemu_version);
    println!("cpus          {} (offering {offered_cpu:.0} vCPUs at {}x)", info.cpus, host.cpu_overcommit);
    println!(
        "memory        {} MiB (offering {offered_mem} MiB: {} MiB kept for the host, then {}x)",
        info.memory_mib, host.host_reserved_mib, host.memory_overcommit
    );
    println!(
        "counted       {n} instances, {vcpus} vCPUs, {mem} MiB (types' memory and {} MiB of QEMU each)",
        host.vm_overhead_mib
    );
    println!(
        "resident      {} MiB in {} QEMU processes{}",
        usage.vm_resident_mib,
        usage.vms,
        if usage.vms == 0 {
            String::new()
        } else {
            format!(" ({} MiB each on average)", usage.vm_resident_mib / u64::from(usage.vms))
        }
    );
    println!("available     {} MiB (the host's MemAvailable)", usage.memory_available_mib);
    for (kind, status, count) in cloud.workflow_counts()? {
        println!("workflows     {kind} {status}: {count}");
    }
    Ok(())
}
