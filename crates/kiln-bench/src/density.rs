//! `kiln-bench density`: how much of the host one instance costs and how soon it is
//! usable, each beside a baseline from the same run.
//!
//! - Memory: the host RSS of one idle kiln-tiny t3.micro's QEMU some time after status
//!   ok, as it was (Debian's cloud kernel, QEMU's default translation cache, no
//!   balloon), with Kiln's QEMU settings alone (the host's 32 MiB cache, free-page
//!   reporting), and as it is (kiln-tiny's own kernel and its recipe's cache size).
//! - Boot: RunInstances to SSH reachable and to status ok, median of `runs`, beside a
//!   bare QEMU boot of the same kernel, initramfs (if any) and disk with the same
//!   options, timed to the same two points.
//! - Many at once: one RunInstances with MaxCount=`batch`: seconds until every guest
//!   answers on SSH, and the host's memory in use then.
//! - The largest count that fits (`--fill`): t3.nano instances launched until
//!   RunInstances answers InsufficientInstanceCapacity, and the host's free memory then.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{
    bare_boot_as, call, console_shows, median, ok, settle_networks, ssh_banner, ssh_reachable, start_tiny_kiln,
    tiny_ami, until, xml_first, Server, DROPBEAR_LISTENING,
};

const V: &str = "Version=2016-11-15";

#[derive(clap::Args)]
pub struct DensityArgs {
    /// Seconds an instance idles after status ok before its memory is read.
    #[arg(long, default_value_t = 60)]
    idle_secs: u64,
    /// Launches timed for the boot figures (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Instances in the one RunInstances of "many at once" (0 skips it).
    #[arg(long, default_value_t = 20)]
    batch: usize,
    /// Also launch t3.nano instances until the host refuses one (minutes).
    #[arg(long)]
    fill: bool,
    /// Where downloaded Debian packages and built kernels are kept [default: the source tree's .kiln-test-cache].
    #[arg(long)]
    cache_dir: Option<std::path::PathBuf>,
}

/// Room for many small guests: vCPUs are not what this measures.
const ROOMY: [&str; 4] = ["--cpu-overcommit", "64", "--vcpu-quota", "4096"];
const POOL: &str = "100.64.203.0/24";

pub fn run(args: DensityArgs) -> Result<()> {
    println!("kiln-bench density: kiln-tiny x86_64 under the host's accelerator; one machine, one run");
    println!();
    let old =
        memory_case("old: Debian's kernel, old QEMU settings", &["--tcg-tb-size", "0", "--no-balloon"], true, &args)?;
    let tuned = memory_case("Debian's kernel, Kiln's QEMU settings", &[], true, &args)?;
    let new = memory_case("new: kiln-tiny's kernel, Kiln's QEMU settings", &[], false, &args)?;
    println!();
    println!(
        "{:<52} {:<16} {:>8} {:>6}",
        format!("memory of one idle t3.micro (1 GiB), {} s after ok", args.idle_secs),
        "-accel",
        "RSS MiB",
        "ratio"
    );
    let row = |label: &str, m: &Memory| {
        println!("{label:<52} {:<16} {:>8} {:>6.2}", m.accel, m.rss_mib, m.rss_mib as f64 / old.rss_mib as f64)
    };
    row("old: Debian's cloud kernel, QEMU's cache, no balloon", &old);
    row("Debian's cloud kernel, host's cache, free-page rep.", &tuned);
    row("new: kiln-tiny's own kernel and cache, free-page rep.", &new);
    println!();

    let (dir, kiln) = start_tiny_kiln("density", args.cache_dir.clone(), POOL, &ROOMY)?;
    let result = boot_and_many(&dir, &kiln, &args);
    terminate_all(&kiln)?;
    settle_networks(&dir);
    drop(kiln);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// How kiln-tiny x86_64 booted before it had a kernel of its own: Debian's cloud
/// kernel, the initramfs that loads its modules, its command line, the host's
/// translation cache. The "old" of the memory figure.
const DEBIAN_KERNEL: &str = r#"kernel_package = "linux-image-cloud-amd64"
kernel_cmdline = "console=ttyS0 root=/dev/vda quiet cryptomgr.notests i8042.noaux i8042.nokbd i8042.nopnp"
initramfs_init = "kiln-tiny/initramfs/init"
boot_modules = ["virtio_pci", "virtio_blk", "crc32c_generic", "ext4"]
modules = ["virtio_net", "virtio_rng", "virtio_balloon", "evdev", "button"]
"#;

/// Builds and registers, for the operator in `dir`, this source tree's kiln-tiny x86_64
/// recipe with its kernel lines replaced by `DEBIAN_KERNEL`; returns the AMI.
fn debian_kernel_ami(dir: &Path, cache: &Path) -> Result<String> {
    let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../images");
    let own = std::fs::read_to_string(images.join("kiln-tiny-x86_64.toml"))?;
    let rest: String = own
        .lines()
        .filter(|l| {
            !["kernel_source", "kernel_cmdline", "initramfs_init", "tcg_tb_size_mib"].iter().any(|k| l.starts_with(k))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let recipes = dir.join("recipes");
    std::fs::create_dir_all(&recipes)?;
    std::os::unix::fs::symlink(images.join("kiln-tiny"), recipes.join("kiln-tiny"))?;
    let recipe = recipes.join("kiln-tiny-debian-kernel.toml");
    // TOML keys before the first table go anywhere among them; the recipe has no tables.
    std::fs::write(&recipe, format!("{DEBIAN_KERNEL}{rest}"))?;
    eprintln!("  building kiln-tiny on Debian's cloud kernel (the baseline)...");
    let out = std::process::Command::new(crate::kiln_exe()?)
        .args(["images", "build"])
        .arg(&recipe)
        .args(["--region", crate::REGION, "--data-dir"])
        .arg(dir)
        .arg("--cache-dir")
        .arg(cache)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("building the baseline image failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    stdout
        .split_whitespace()
        .find(|w| w.starts_with("ami-"))
        .map(str::to_owned)
        .with_context(|| format!("no AMI in the build's output: {stdout}"))
}

/// What one idle instance's QEMU holds, and the accelerator option it ran with.
struct Memory {
    rss_mib: u64,
    accel: String,
}

/// One server with `flags`; one t3.micro (of kiln-tiny on Debian's kernel if
/// `debian_kernel`) to status ok, idle, then its QEMU's RSS.
fn memory_case(label: &str, flags: &[&str], debian_kernel: bool, args: &DensityArgs) -> Result<Memory> {
    let mut all: Vec<&str> = ROOMY.to_vec();
    all.extend_from_slice(flags);
    let name = format!("density-{}-{}", if flags.is_empty() { "new" } else { "old" }, u8::from(debian_kernel));
    let (dir, kiln) = start_tiny_kiln(&name, args.cache_dir.clone(), POOL, &all)?;
    let result = (|| -> Result<Memory> {
        let client = client()?;
        let ami = if debian_kernel {
            debian_kernel_ami(&dir, &crate::cache_or_shared(args.cache_dir.clone()))?
        } else {
            tiny_ami(&client, &kiln)?
        };
        let ids = launch(&client, &kiln, &ami, "t3.micro", 1, None)?;
        let id = &ids[0];
        until(Instant::now(), Duration::from_secs(300), || status_ok(&client, &kiln, id))?;
        eprintln!("  {label}: {id} is ok; idling {} s", args.idle_secs);
        std::thread::sleep(Duration::from_secs(args.idle_secs));
        let rss = qemu_rss(&dir, id).with_context(|| format!("reading {id}'s QEMU memory"))?;
        eprintln!("  {label}: {rss} MiB resident");
        let accel = crate::boot_options(&dir, id).context("reading the instance's QEMU options")?.accel;
        Ok(Memory { rss_mib: rss, accel })
    })();
    let _ = terminate_all(&kiln);
    settle_networks(&dir);
    drop(kiln);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn boot_and_many(dir: &Path, kiln: &Server, args: &DensityArgs) -> Result<()> {
    let client = client()?;
    let ami = tiny_ami(&client, kiln)?;
    let group = ssh_group(&client, kiln)?;
    let (mut to_ssh, mut to_listening, mut to_ok) = (Vec::new(), Vec::new(), Vec::new());
    let (mut bare_ssh, mut bare_reachable, mut bare) = (Vec::new(), Vec::new(), Vec::new());
    for n in 0..args.runs {
        let t0 = Instant::now();
        let ids = launch(&client, kiln, &ami, "t3.micro", 1, Some(&group))?;
        let id = &ids[0];
        let ip = until(t0, Duration::from_secs(120), || Ok(public_ip(&client, kiln, id)?.is_some()))
            .and_then(|_| public_ip(&client, kiln, id)?.context("no public IP"))?;
        // Each timed on its own: SSH over the network and on the console (as a bare
        // boot is) on threads, the status check here.
        let serial = dir.join("instances").join(id).join("serial.log");
        let (ssh, listening, status) = std::thread::scope(|s| {
            let ssh = s.spawn(|| {
                let addr = format!("{ip}:22").parse::<SocketAddr>().context("the public address")?;
                ssh_reachable(t0, addr, Duration::from_secs(300))
            });
            let listening =
                s.spawn(|| until(t0, Duration::from_secs(300), || Ok(console_shows(&serial, DROPBEAR_LISTENING))));
            let status = until(t0, Duration::from_secs(300), || status_ok(&client, kiln, id));
            let joined = |h: std::thread::ScopedJoinHandle<'_, Result<Duration>>| {
                h.join().unwrap_or_else(|_| bail!("a probe panicked"))
            };
            (joined(ssh), joined(listening), status)
        });
        to_ssh.push(ssh?.as_secs_f64());
        to_listening.push(listening?.as_secs_f64());
        to_ok.push(status?.as_secs_f64());
        let boot = crate::boot_options(dir, id).context("reading the instance's QEMU options")?;
        ok(&client, kiln, &format!("Action=TerminateInstances&{V}&InstanceId.1={id}"))?;
        let b = bare_boot_as(dir, "t3.micro", 1024, &boot)?;
        bare_ssh.push(b.ssh.as_secs_f64());
        bare_reachable.push(b.reachable.as_secs_f64());
        bare.push(b.ready.as_secs_f64());
        eprintln!(
            "  boot {}: SSH {:.2} s (listening {:.2} s), ok {:.2} s; \
             bare: SSH {:.2} s (listening {:.2} s), ready {:.2} s",
            n + 1,
            to_ssh[n],
            to_listening[n],
            to_ok[n],
            bare_reachable[n],
            bare_ssh[n],
            bare[n]
        );
    }
    let (ssh, listening, ok_s) = (median(to_ssh), median(to_listening), median(to_ok));
    let (bare_ssh, bare_reach, bare_s) = (median(bare_ssh), median(bare_reachable), median(bare));
    println!("{:<66} {:>8} {:>8}", format!("boot, t3.micro, median of {}", args.runs), "s", "vs bare");
    let row = |what: &str, s: f64, bare: f64| println!("{what:<66} {s:>8.2} {:>8.2}", s / bare);
    row("RunInstances -> SSH reachable (its banner over the network)", ssh, bare_reach);
    row("bare QEMU -> SSH banner through its user network (forwarded port)", bare_reach, bare_reach);
    row("RunInstances -> SSH listening (dropbear's line on the console)", listening, bare_ssh);
    row("bare QEMU, same kernel, disk, options -> SSH listening", bare_ssh, bare_ssh);
    row("RunInstances -> status ok", ok_s, bare_s);
    row("bare QEMU, same kernel, disk, options -> ready line", bare_s, bare_s);
    println!(
        "overhead of Kiln: {:.0}% to SSH listening, {:.0}% to status ok; SSH reachable {:.0}% against the bare \
         boot's through QEMU's user network, {:.2} s after the listening line (bare: {:.2} s)",
        (listening / bare_ssh - 1.0) * 100.0,
        (ok_s / bare_s - 1.0) * 100.0,
        (ssh / bare_reach - 1.0) * 100.0,
        ssh - listening,
        bare_reach - bare_ssh,
    );
    println!();
    terminate_all(kiln)?;

    if args.batch > 0 {
        let before = used_mib();
        let t0 = Instant::now();
        let ids = launch(&client, kiln, &ami, "t3.micro", args.batch, Some(&group))?;
        let mut ready = std::collections::HashSet::new();
        until(t0, Duration::from_secs(900), || {
            for id in &ids {
                if !ready.contains(id) {
                    if let Some(ip) = public_ip(&client, kiln, id)? {
                        if format!("{ip}:22").parse().is_ok_and(|addr| ssh_banner(addr, Duration::from_millis(150))) {
                            ready.insert(id.clone());
                        }
                    }
                }
            }
            Ok(ready.len() == ids.len())
        })?;
        let took = t0.elapsed().as_secs_f64();
        let rss: u64 = ids.iter().filter_map(|id| qemu_rss(dir, id)).sum();
        let used = used_mib();
        println!(
            "{:<52} {:>10.1}",
            format!("{} x t3.micro in one RunInstances: all SSH reachable, s", ids.len()),
            took
        );
        println!("{:<52} {:>10}", "  host memory in use then, MiB (before the launch)", format!("{used} ({before})"));
        println!("{:<52} {:>10}", "  their QEMUs' RSS together, MiB", rss);
        println!();
        terminate_all(kiln)?;
    }

    if args.fill {
        fill(dir, kiln, &client, &ami)?;
    }
    Ok(())
}

/// t3.nano instances, five per request and then one at a time, until the host refuses.
fn fill(dir: &Path, kiln: &Server, client: &reqwest::blocking::Client, ami: &str) -> Result<()> {
    let mut launched: Vec<String> = Vec::new();
    let refusal = loop {
        let step = if launched.len().is_multiple_of(5) { 5 } else { 1 };
        let (status, text) = call(
            client,
            kiln,
            &format!("Action=RunInstances&{V}&ImageId={ami}&InstanceType=t3.nano&MinCount=1&MaxCount={step}"),
        )?;
        if status != 200 {
            if text.contains("InsufficientInstanceCapacity") {
                break xml_first(&text, "Message").unwrap_or("").to_owned();
            }
            bail!("RunInstances answered {status}: {}", text.chars().take(300).collect::<String>());
        }
        let ids = crate::all_ids(&text);
        for id in &ids {
            until(Instant::now(), Duration::from_secs(600), || status_ok(client, kiln, id))?;
        }
        launched.extend(ids);
        eprintln!("  {} t3.nano running; host MemAvailable {} MiB", launched.len(), available_mib());
    };
    let rss: u64 = launched.iter().filter_map(|id| qemu_rss(dir, id)).sum();
    println!("{:<52} {:>10}", "t3.nano (512 MiB) instances the host holds", launched.len());
    println!("{:<52} {:>10}", "  host MemAvailable at the refusal, MiB", available_mib());
    println!("{:<52} {:>10}", "  their QEMUs' RSS together, MiB", rss);
    println!("  the refusal: InsufficientInstanceCapacity: {refusal}");
    terminate_all(kiln)
}

fn client() -> Result<reqwest::blocking::Client> {
    Ok(reqwest::blocking::Client::builder().timeout(Duration::from_secs(120)).build()?)
}

fn launch(
    client: &reqwest::blocking::Client,
    kiln: &Server,
    ami: &str,
    itype: &str,
    count: usize,
    group: Option<&str>,
) -> Result<Vec<String>> {
    let sg = group.map(|g| format!("&SecurityGroupId.1={g}")).unwrap_or_default();
    let xml = ok(
        client,
        kiln,
        &format!("Action=RunInstances&{V}&ImageId={ami}&InstanceType={itype}&MinCount={count}&MaxCount={count}{sg}"),
    )?;
    let ids = crate::all_ids(&xml);
    if ids.len() != count {
        bail!("RunInstances launched {} of {count}", ids.len());
    }
    Ok(ids)
}

fn status_ok(client: &reqwest::blocking::Client, kiln: &Server, id: &str) -> Result<bool> {
    let x = ok(client, kiln, &format!("Action=DescribeInstanceStatus&{V}&InstanceId.1={id}"))?;
    Ok(x.contains("<instanceStatus><status>ok</status>"))
}

fn public_ip(client: &reqwest::blocking::Client, kiln: &Server, id: &str) -> Result<Option<String>> {
    let x = ok(client, kiln, &format!("Action=DescribeInstances&{V}&InstanceId.1={id}"))?;
    Ok(xml_first(&x, "ipAddress").map(str::to_owned))
}

/// A security group of the default VPC open to SSH from anywhere.
fn ssh_group(client: &reqwest::blocking::Client, kiln: &Server) -> Result<String> {
    let name = format!("density-ssh-{}", std::process::id());
    let x = ok(client, kiln, &format!("Action=CreateSecurityGroup&{V}&GroupName={name}&GroupDescription=ssh"))?;
    let id = xml_first(&x, "groupId").context("CreateSecurityGroup returned no group")?.to_owned();
    ok(
        client,
        kiln,
        &format!(
            "Action=AuthorizeSecurityGroupIngress&{V}&GroupId={id}&IpPermissions.1.IpProtocol=tcp\
             &IpPermissions.1.FromPort=22&IpPermissions.1.ToPort=22&IpPermissions.1.IpRanges.1.CidrIp=0.0.0.0/0"
        ),
    )?;
    Ok(id)
}

/// The resident memory of an instance's QEMU, MiB.
fn qemu_rss(dir: &Path, id: &str) -> Option<u64> {
    let pid: i32 =
        std::fs::read_to_string(dir.join("instances").join(id).join("qemu.pid")).ok()?.trim().parse().ok()?;
    kiln_agent::process_resident_mib(pid)
}

fn available_mib() -> u64 {
    kiln_agent::host_available_mib().unwrap_or(0)
}

/// The host's memory in use: MemTotal less MemAvailable.
fn used_mib() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find(|l| l.starts_with("MemTotal:"))?.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0)
        / 1024;
    total.saturating_sub(available_mib())
}

/// Terminates every instance the bench account has and waits until all are gone.
pub(crate) fn terminate_all(kiln: &Server) -> Result<()> {
    let client = client()?;
    let x = ok(&client, kiln, &format!("Action=DescribeInstances&{V}"))?;
    let live: Vec<String> = crate::all_ids(&x);
    if live.is_empty() {
        return Ok(());
    }
    let mut body = format!("Action=TerminateInstances&{V}");
    for (n, id) in live.iter().enumerate() {
        body.push_str(&format!("&InstanceId.{}={id}", n + 1));
    }
    ok(&client, kiln, &body)?;
    until(Instant::now(), Duration::from_secs(300), || {
        let x = ok(&client, kiln, &format!("Action=DescribeInstances&{V}"))?;
        Ok(x.matches("<name>terminated</name>").count() >= crate::all_ids(&x).len())
    })?;
    Ok(())
}
