//! This machine as a host: the flags of its agent (accelerator, overcommit, network)
//! made into a `LocalAgent` and limits, the tag that keeps two Kilns' network state
//! apart, and `kiln host info`.

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
/// file whose server is gone is unlocked and does not count.
pub(crate) fn claim_pool(dir: &std::path::Path, pool: ipnet::Ipv4Net) -> Result<nix::fcntl::Flock<std::fs::File>> {
    use nix::fcntl::{Flock, FlockArg};
    use std::io::Write as _;
    let registry = std::path::Path::new(POOLS);
    std::fs::create_dir_all(registry).with_context(|| format!("creating {POOLS}"))?;
    let mine = registry.join(kiln_agent::net::net_tag(dir));
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
        if theirs.contains(&pool.network()) || pool.contains(&theirs.network()) {
            bail!(
                "the public address pool {pool} overlaps {theirs}, which the Kiln of {their_dir} is routing on this \
                 machine; start this one with another --public-ip-pool (or --network user)"
            );
        }
    }
    Ok(lock)
}

/// Whether this process can make namespaces and nftables rules.
pub(crate) fn can_network() -> bool {
    let root = nix::unistd::geteuid().is_root();
    let found = |p: &str, v: &str| std::process::Command::new(p).arg(v).output().is_ok_and(|o| o.status.success());
    root && found("ip", "-V") && found("nft", "--version")
}

impl HostArgs {
    pub(crate) fn agent(&self, dir: &std::path::Path) -> Arc<kiln_agent::LocalAgent> {
        let forced = match self.accel.as_str() {
            "kvm" => Some(kiln_agent_api::Accel::Kvm),
            "tcg" => Some(kiln_agent_api::Accel::Tcg),
            _ => None,
        };
        // QEMU runs this binary's `kiln pipe` to bridge a guest's metadata connection.
        let exe = std::env::current_exe().unwrap_or_else(|_| "kiln".into());
        let agent = kiln_agent::LocalAgent::new(dir.to_path_buf(), exe, forced);
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
        }))
    }

    pub(crate) fn limits(&self) -> kiln_control::Limits {
        kiln_control::Limits {
            cpu_overcommit: self.cpu_overcommit,
            memory_overcommit: self.memory_overcommit,
            vcpu_quota: self.vcpu_quota,
        }
    }
}

pub(crate) fn host_info(dir: &std::path::Path, host: &HostArgs) -> Result<()> {
    use kiln_agent_api::HostAgent;
    let agent = host.agent(dir);
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
    let info = agent.info();
    let cloud = open(dir, &default_regions())?;
    let (mut vcpus, mut mem, mut n) = (0i64, 0i64, 0);
    for i in cloud.store.read(kiln_store::instances::all)? {
        if i.state.holds_capacity() {
            vcpus += i.vcpus;
            mem += i.memory_mib;
            n += 1;
        }
    }
    let offered_cpu = info.cpus as f64 * host.cpu_overcommit;
    let offered_mem = info.memory_mib as f64 * host.memory_overcommit;
    println!("accelerator   {}", accel.as_str());
    println!("qemu          {}", info.qemu_version);
    println!("cpus          {} (offering {offered_cpu:.0} vCPUs at {}x)", info.cpus, host.cpu_overcommit);
    println!("memory        {} MiB (offering {offered_mem:.0} MiB at {}x)", info.memory_mib, host.memory_overcommit);
    println!("in use        {n} instances, {vcpus} vCPUs, {mem} MiB");
    for (kind, status, count) in cloud.workflow_counts()? {
        println!("workflows     {kind} {status}: {count}");
    }
    Ok(())
}
