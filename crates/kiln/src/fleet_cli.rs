//! `kiln host join-token | list | drain | cordon | retire | activate | status`: the
//! hosts joined to this data directory's cloud with `kiln agent`, read and changed in
//! its store; `status` asks a host's agent itself, over the control plane's channel.

use anyhow::{anyhow, Result};
use kiln_agent_api::{HostAgent, HostId, HostState};

use crate::args::HostCommand;
use crate::serve::{default_regions, open};

pub(crate) fn fleet(command: HostCommand) -> Result<()> {
    let (dir, change) = match command {
        HostCommand::Info { .. } => unreachable!("kiln host info is this machine's, handled in main"),
        HostCommand::JoinToken { zone, dir } => {
            let cloud = open(&dir.resolve()?, &default_regions())?;
            println!("{}", cloud.create_join_token(&zone)?);
            eprintln!(
                "Run on the new host, within {} h: kiln agent --control https://THIS-SERVER:PORT --token TOKEN",
                kiln_control::hosts::JOIN_TOKEN_LIFETIME.as_secs() / 3600
            );
            return Ok(());
        }
        HostCommand::List { dir } => return list(&dir.resolve()?),
        HostCommand::Status { host, dir } => return status(&dir.resolve()?, &host),
        HostCommand::Drain { host, dir } => (dir, (host, HostState::Draining)),
        HostCommand::Cordon { host, dir } => (dir, (host, HostState::Cordoned)),
        HostCommand::Retire { host, dir } => (dir, (host, HostState::Retired)),
        HostCommand::Activate { host, dir } => (dir, (host, HostState::Active)),
    };
    let cloud = open(&dir.resolve()?, &default_regions())?;
    let h = cloud.set_host_state(&change.0, change.1)?;
    println!("Host {} ({}) is {}.", h.host_id, h.zone, h.state.as_str());
    Ok(())
}

/// What host `id`'s agent says of itself, asked over the channel the control plane
/// drives hosts by: proof that the channel works, and the host's own view.
fn status(dir: &std::path::Path, id: &HostId) -> Result<()> {
    let cloud = open(dir, &default_regions())?;
    let view = cloud
        .hosts()?
        .into_iter()
        .find(|v| v.host.host_id == *id)
        .ok_or_else(|| anyhow!("No host {id} has joined this cloud (`kiln host list` shows those that have)"))?;
    let h = &view.host;
    let endpoint = h
        .endpoint
        .as_deref()
        .ok_or_else(|| anyhow!("Host {id} takes no calls: its agent runs without --listen ADDRESS"))?
        .parse()
        .map_err(|e| anyhow!("Host {id} reported an endpoint that is not an address: {e}"))?;
    let remote = crate::remote_host::RemoteHost::new(id, endpoint, &cloud.control_client_identity()?)?;
    let t0 = std::time::Instant::now();
    let info = remote.info()?;
    let took = t0.elapsed();
    let vpc = remote.vpc_networking()?;
    let running = remote.running()?;
    let networks = remote.networks()?;
    let list = |v: &[String]| if v.is_empty() { "none".to_owned() } else { v.join(", ") };
    println!("host        {id}");
    println!(
        "zone        {} ({}, {})",
        h.zone,
        h.state.as_str(),
        if view.live { "live" } else { "no recent heartbeat" }
    );
    println!("endpoint    {endpoint} (answered in {} ms)", took.as_millis());
    println!("accel       {}", info.accel.as_str());
    println!("vcpus       {}", info.cpus);
    println!("memory      {} MiB", info.memory_mib);
    println!("qemu        {}", info.qemu_version);
    println!("networking  {}", if vpc { "VPC (namespaces and taps)" } else { "QEMU user-mode only" });
    println!("vms         {}", list(&running));
    println!("vpcs        {}", list(&networks));
    Ok(())
}

fn list(dir: &std::path::Path) -> Result<()> {
    let cloud = open(dir, &default_regions())?;
    let hosts = cloud.hosts()?;
    if hosts.is_empty() {
        println!("No hosts have joined (this server's own host runs every instance).");
        return Ok(());
    }
    let mut t = comfy_table::Table::new();
    t.load_style(comfy_table::presets::NOTHING).set_header([
        "HOST",
        "ZONE",
        "STATE",
        "HEALTH",
        "HOSTNAME",
        "ARCH",
        "ACCEL",
        "VCPUS",
        "MEMORY",
        "IN USE",
        "QEMU",
        "HEARTBEAT",
    ]);
    for v in hosts {
        let h = &v.host;
        t.add_row([
            h.host_id.to_string(),
            h.zone.clone(),
            h.state.as_str().to_owned(),
            if v.live { "live" } else { "lost" }.to_owned(),
            h.hostname.clone(),
            h.architectures.clone(),
            h.accel.clone(),
            h.cpus.to_string(),
            format!("{} MiB", h.memory_mib),
            format!("{} VMs, {} MiB; {} MiB available", h.vms, h.vm_resident_mib, h.memory_available_mib),
            h.qemu_version.clone(),
            format!("{:.1} s ago", v.heartbeat_age_ms as f64 / 1000.0),
        ]);
    }
    println!("{t}");
    Ok(())
}
