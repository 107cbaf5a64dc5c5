//! `kiln-bench hosts`: what launching on a joined host costs, beside a launch on the
//! control plane's own host in the same run. A `kiln agent` joins a zone of a fresh
//! `kiln serve` on this machine (its own data directory, over loopback); the first
//! kiln-tiny launch there fetches the image's layer and kernel from the store, later ones
//! find them cached, and every one boots from a volume the store serves over NBD on the
//! host's copy of the image's layer. Printed: bytes
//! fetched and seconds from RunInstances to running and to status ok (the guest's first
//! metadata answer, relayed by its host), medians of `runs`, with ratios against the
//! own-host launch.
//!
//! Cross-host ping within a VPC needs hosts on a network of their own (namespaces):
//! `test_hosts.py`'s three-host test prints it, on one host and across hosts.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{median, ok, start_tiny_kiln, tiny_ami, until, Server};

const V: &str = "Version=2016-11-15";
const POOL: &str = "100.64.204.0/24";
const OWN_ZONE: &str = "us-east-1a";
const HOST_ZONE: &str = "us-east-1b";

#[derive(clap::Args)]
pub struct HostsArgs {
    /// Launches timed per case (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Where downloaded Debian packages and built kernels are kept [default: the source tree's .kiln-test-cache].
    #[arg(long)]
    cache_dir: Option<std::path::PathBuf>,
}

/// An agent process, killed with its VMs when dropped.
struct Agent {
    child: Child,
    dir: std::path::PathBuf,
}

impl Drop for Agent {
    /// Ends the agent and what it leaves on this machine: its VMs, its VPC namespaces,
    /// its host table and the public pool's route (a host that is gone cannot be asked).
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("pkill").arg("-9").arg("-f").arg(&self.dir).status();
        let tag = kiln_agent::net::net_tag(&self.dir);
        if let Ok(entries) = std::fs::read_dir("/run/netns") {
            for e in entries.filter_map(std::result::Result::ok) {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(&format!("kiln-{tag}-")) {
                    let _ = Command::new("ip").args(["netns", "del", &name]).status();
                }
            }
        }
        let _ =
            Command::new("nft").args(["delete", "table", "ip", &format!("kiln_{tag}")]).stderr(Stdio::null()).status();
        let _ = Command::new("ip").args(["route", "del", "unreachable", POOL]).stderr(Stdio::null()).status();
    }
}

/// Seconds from RunInstances to running and to status ok.
struct Launch {
    running: f64,
    ok: f64,
}

pub fn run(args: HostsArgs) -> Result<()> {
    println!("kiln-bench hosts: kiln-tiny x86_64 t3.nano, a joined host on this machine; one run");
    let agents_port = crate::free_port()?;
    let listen = format!("127.0.0.1:{agents_port}");
    let (dir, kiln) = start_tiny_kiln("hosts", args.cache_dir.clone(), POOL, &["--agent-listen", &listen])?;
    let result = measure(&dir, &kiln, &format!("https://{listen}"), args.runs.max(1));
    let _ = crate::density::terminate_all(&kiln);
    crate::settle_networks(&dir);
    drop(kiln);
    // The volume servers the server ran for the host (they outlive it, as VMs do).
    let _ = Command::new("pkill").arg("-9").arg("-f").arg(dir.join("nbd")).status();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn measure(dir: &Path, kiln: &Server, control: &str, runs: usize) -> Result<()> {
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(120)).build()?;
    let ami = tiny_ami(&client, kiln)?;
    let agent = join(dir, control)?;
    let fetched = || -> u64 {
        ["snapshots", "volumes", "kernels"]
            .iter()
            .filter_map(|d| std::fs::read_dir(agent.dir.join(d)).ok())
            .flat_map(|d| d.filter_map(std::result::Result::ok))
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    };
    // The own host's first launch warms what is shared (the accelerator probe).
    let _ = launch(&client, kiln, &ami, OWN_ZONE)?;
    let own: Vec<Launch> = (0..runs).map(|_| launch(&client, kiln, &ami, OWN_ZONE)).collect::<Result<_>>()?;
    let first = launch(&client, kiln, &ami, HOST_ZONE)?;
    let first_bytes = fetched();
    let cached: Vec<Launch> = (0..runs).map(|_| launch(&client, kiln, &ami, HOST_ZONE)).collect::<Result<_>>()?;
    let cached_bytes = fetched() - first_bytes;

    let base = (median(own.iter().map(|l| l.running).collect()), median(own.iter().map(|l| l.ok).collect()));
    println!();
    println!("{:<44} {:>12} {:>10} {:>7} {:>10} {:>7}", "launch", "fetched", "running s", "ratio", "ok s", "ratio");
    let row = |label: &str, bytes: Option<u64>, running: f64, ok: f64| {
        let bytes = bytes.map_or("-".to_owned(), |b| format!("{:.1} MiB", b as f64 / 1048576.0));
        println!("{label:<44} {bytes:>12} {running:>10.2} {:>7.2} {ok:>10.2} {:>7.2}", running / base.0, ok / base.1);
    };
    row(&format!("control plane's own host (median of {runs})"), None, base.0, base.1);
    row("joined host, first launch (layers fetched)", Some(first_bytes), first.running, first.ok);
    row(
        &format!("joined host, cached (median of {runs})"),
        Some(cached_bytes),
        median(cached.iter().map(|l| l.running).collect()),
        median(cached.iter().map(|l| l.ok).collect()),
    );
    println!();
    println!("cross-host ping within a VPC: printed by test_hosts.py's three-host test (hosts in namespaces)");
    Ok(())
}

/// Joins a `kiln agent` with its own data directory to `HOST_ZONE`.
fn join(dir: &Path, control: &str) -> Result<Agent> {
    let kiln = crate::kiln_exe()?;
    let out = Command::new(&kiln).args(["host", "join-token", "--zone", HOST_ZONE, "--data-dir"]).arg(dir).output()?;
    if !out.status.success() {
        bail!("kiln host join-token: {}", String::from_utf8_lossy(&out.stderr));
    }
    let token = String::from_utf8(out.stdout)?.trim().to_owned();
    let host_dir = dir.join("joined-host");
    std::fs::create_dir_all(&host_dir)?;
    let log = host_dir.with_extension("log");
    let child = Command::new(&kiln)
        .args(["agent", "--control", control, "--token", &token, "--accel", "tcg", "--listen"])
        .arg(format!("127.0.0.1:{}", crate::free_port()?))
        .arg("--data-dir")
        .arg(&host_dir)
        .stdout(std::fs::File::create(&log)?)
        .stderr(Stdio::null())
        .spawn()
        .context("starting kiln agent")?;
    let agent = Agent { child, dir: host_dir };
    until(Instant::now(), Duration::from_secs(30), || {
        Ok(std::fs::read_to_string(&log).is_ok_and(|l| l.contains("calls on")))
    })
    .context("the joined host did not start serving calls")?;
    Ok(agent)
}

/// One t3.nano in `zone`, timed to running and to status ok, then terminated.
fn launch(client: &reqwest::blocking::Client, kiln: &Server, ami: &str, zone: &str) -> Result<Launch> {
    let t0 = Instant::now();
    let xml = ok(
        client,
        kiln,
        &format!(
            "Action=RunInstances&{V}&ImageId={ami}&InstanceType=t3.nano&MinCount=1&MaxCount=1\
             &Placement.AvailabilityZone={zone}"
        ),
    )?;
    let id = crate::all_ids(&xml).into_iter().next().context("RunInstances launched nothing")?;
    let running = until(t0, Duration::from_secs(300), || {
        let x = ok(client, kiln, &format!("Action=DescribeInstances&{V}&InstanceId.1={id}"))?;
        Ok(x.contains("<name>running</name>"))
    })?;
    let ok_at = until(t0, Duration::from_secs(300), || {
        let x = ok(client, kiln, &format!("Action=DescribeInstanceStatus&{V}&InstanceId.1={id}"))?;
        Ok(x.contains("<instanceStatus><status>ok</status>"))
    })?;
    ok(client, kiln, &format!("Action=TerminateInstances&{V}&InstanceId.1={id}"))?;
    until(Instant::now(), Duration::from_secs(120), || {
        let x = ok(client, kiln, &format!("Action=DescribeInstances&{V}&InstanceId.1={id}"))?;
        Ok(x.contains("<name>terminated</name>"))
    })?;
    Ok(Launch { running: running.as_secs_f64(), ok: ok_at.as_secs_f64() })
}
