//! `kiln-bench ebs`: what EBS volumes cost in Kiln, each beside a baseline from the
//! same run.
//!
//! - CreateVolume from a snapshot of a 1 GiB volume (256 MiB written) and of a 50 GiB
//!   one (2 GiB written), to `available`, beside a full copy of the snapshot with
//!   `qemu-img convert`: Kiln's time should not follow the size (it is bounded by the
//!   reconciler's half-second pass, which makes the file).
//! - CreateSnapshot of a 10 GiB volume after writing 10 MiB and after writing 500 MiB:
//!   the bytes the snapshot stores, beside what a full copy of the volume stores.
//! - AttachVolume to a running kiln-tiny until the guest sees the disk (its user data
//!   watches `/sys/block` and writes a line to the serial console), beside the time to
//!   `attached` on the host side.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine as _;

use crate::{allocated, median, ok, qemu_img, start_tiny_kiln, tiny_ami, until, xml_first, Server};

const V: &str = "Version=2016-11-15";
const ZONE: &str = "us-east-1a";

/// Writes `mib` MiB of non-zero data at `offset_mib` into a detached volume's file.
fn write(file: &Path, offset_mib: u64, mib: u64) -> Result<()> {
    let mut cmd = Command::new("qemu-io");
    cmd.args(["-f", "qcow2"]);
    // qemu-io takes requests up to 2 GiB: a GiB at a time.
    let mut done = 0;
    while done < mib {
        let n = (mib - done).min(1024);
        cmd.args(["-c", &format!("write -P 0x6b {}M {n}M", offset_mib + done)]);
        done += n;
    }
    let out = cmd.arg(file).output().context("running qemu-io (install qemu-utils)")?;
    if !out.status.success() {
        bail!("qemu-io: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

struct Api<'a> {
    client: reqwest::blocking::Client,
    kiln: &'a Server,
    dir: &'a Path,
}

impl Api<'_> {
    fn call(&self, body: &str) -> Result<String> {
        ok(&self.client, self.kiln, &format!("{body}&{V}"))
    }

    fn field(&self, body: &str, tag: &str) -> Result<String> {
        let xml = self.call(body)?;
        Ok(xml_first(&xml, tag).with_context(|| format!("no <{tag}> in the answer to {body}"))?.to_owned())
    }

    fn volume_state(&self, id: &str) -> Result<String> {
        self.field(&format!("Action=DescribeVolumes&VolumeId.1={id}"), "status")
    }

    fn wait_volume(&self, id: &str, state: &str) -> Result<Duration> {
        until(Instant::now(), Duration::from_secs(300), || Ok(self.volume_state(id)? == state))
    }

    fn create_volume(&self, extra: &str) -> Result<String> {
        self.field(&format!("Action=CreateVolume&AvailabilityZone={ZONE}&VolumeType=gp3{extra}"), "volumeId")
    }

    /// The volume's current file in the data directory.
    fn file_of(&self, volume: &str, snapshot: Option<&str>) -> std::path::PathBuf {
        match snapshot {
            Some(s) => self.dir.join(format!("volumes/{volume}-{s}.qcow2")),
            None => self.dir.join(format!("volumes/{volume}.qcow2")),
        }
    }

    fn snapshot(&self, volume: &str) -> Result<String> {
        let id = self.field(&format!("Action=CreateSnapshot&VolumeId={volume}"), "snapshotId")?;
        until(Instant::now(), Duration::from_secs(300), || {
            Ok(self.field(&format!("Action=DescribeSnapshots&SnapshotId.1={id}"), "status")? == "completed")
        })?;
        Ok(id)
    }
}

pub fn run(runs: usize, cache_dir: Option<std::path::PathBuf>) -> Result<()> {
    let (dir, kiln) = start_tiny_kiln("ebs", cache_dir, "100.64.202.0/24", &[])?;
    let api = Api { client: reqwest::blocking::Client::new(), kiln: &kiln, dir: &dir };
    let result = (|| -> Result<()> {
        println!("kiln-bench ebs: volumes and snapshots; median of {runs} runs where timed");
        from_snapshot(&api, runs)?;
        incremental(&api)?;
        attach(&api, runs)?;
        Ok(())
    })();
    // The server removes its networks a pass after the last instance ends: wait for
    // that before stopping it, so nothing stays on the host.
    crate::settle_networks(&dir);
    drop(kiln);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// CreateVolume from snapshots of a 1 GiB and a 50 GiB volume.
fn from_snapshot(api: &Api<'_>, runs: usize) -> Result<()> {
    println!();
    println!("{:<36} {:>12} {:>14} {:>10}", "CreateVolume from a snapshot", "kiln ms", "full copy ms", "ratio");
    for (size, data) in [(1u64, 256u64), (50, 2048)] {
        let vol = api.create_volume(&format!("&Size={size}"))?;
        api.wait_volume(&vol, "available")?;
        eprintln!("  writing {data} MiB into a {size} GiB volume...");
        write(&api.file_of(&vol, None), 0, data)?;
        let snap = api.snapshot(&vol)?;
        let mut kiln_ms = Vec::new();
        for _ in 0..runs {
            let t0 = Instant::now();
            let made = api.create_volume(&format!("&SnapshotId={snap}"))?;
            api.wait_volume(&made, "available")?;
            kiln_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
            api.call(&format!("Action=DeleteVolume&VolumeId={made}"))?;
        }
        // The baseline: copying the snapshot's data into a volume of its own.
        let layer = api.file_of(&vol, None);
        let copy = api.dir.join(format!("bench-copy-{size}.qcow2"));
        let t0 = Instant::now();
        qemu_img(&["convert", "-q", "-f", "qcow2", "-O", "qcow2", &layer.to_string_lossy(), &copy.to_string_lossy()])?;
        let copy_ms = t0.elapsed().as_secs_f64() * 1000.0;
        let _ = std::fs::remove_file(&copy);
        let k = median(kiln_ms);
        println!("{:<36} {k:>12.1} {copy_ms:>14.1} {:>9.2}x", format!("{size} GiB ({data} MiB written)"), k / copy_ms);
        api.call(&format!("Action=DeleteVolume&VolumeId={vol}"))?;
        api.call(&format!("Action=DeleteSnapshot&SnapshotId={snap}"))?;
    }
    Ok(())
}

/// Snapshots of a 10 GiB volume after 10 MiB and after 500 MiB of writes.
fn incremental(api: &Api<'_>) -> Result<()> {
    println!();
    println!(
        "{:<36} {:>14} {:>16} {:>18}",
        "CreateSnapshot of a 10 GiB volume", "written MiB", "stored MiB", "full copy MiB"
    );
    let vol = api.create_volume("&Size=10")?;
    api.wait_volume(&vol, "available")?;
    let mut snaps = vec![api.snapshot(&vol)?];
    let mut offset = 0;
    let mut total = 0;
    for mib in [10u64, 500] {
        let current = api.file_of(&vol, snaps.last().map(String::as_str));
        write(&current, offset, mib)?;
        offset += mib;
        total += mib;
        snaps.push(api.snapshot(&vol)?);
        // The snapshot's layer is the file the volume was on.
        let stored = allocated(&current) as f64 / (1024.0 * 1024.0);
        let copy = api.dir.join("bench-full.qcow2");
        qemu_img(&[
            "convert",
            "-q",
            "-f",
            "qcow2",
            "-O",
            "qcow2",
            &current.to_string_lossy(),
            &copy.to_string_lossy(),
        ])?;
        let full = allocated(&copy) as f64 / (1024.0 * 1024.0);
        let _ = std::fs::remove_file(&copy);
        println!("{:<36} {mib:>14} {stored:>16.1} {full:>18.1}", format!("after writing {mib} MiB (total {total})"));
    }
    api.call(&format!("Action=DeleteVolume&VolumeId={vol}"))?;
    for s in snaps {
        api.call(&format!("Action=DeleteSnapshot&SnapshotId={s}"))?;
    }
    Ok(())
}

/// The guest's watcher: a numbered line on the console each time a second disk appears.
const WATCH: &str = "#!/bin/sh\n(n=0; seen=0; while true; do if [ -e /sys/block/vdb ]; then \
    if [ $seen = 0 ]; then echo KILN-DISK-$n > /dev/console; seen=1; n=$((n+1)); fi; \
    else seen=0; fi; sleep 0.02; done) >/dev/null 2>&1 &\n";

fn console(api: &Api<'_>, id: &str) -> Result<String> {
    let out = api.field(&format!("Action=GetConsoleOutput&InstanceId={id}"), "output").unwrap_or_default();
    let bytes = base64::engine::general_purpose::STANDARD.decode(out.trim()).unwrap_or_default();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// AttachVolume until the guest sees the disk, `runs` times on one instance.
fn attach(api: &Api<'_>, runs: usize) -> Result<()> {
    let ami = tiny_ami(&api.client, api.kiln)?;
    let data = base64::engine::general_purpose::STANDARD.encode(WATCH);
    let data = data.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D");
    let id = api.field(
        &format!(
            "Action=RunInstances&ImageId={ami}&InstanceType=t3.micro&MinCount=1&MaxCount=1&UserData={data}&Placement.AvailabilityZone={ZONE}"
        ),
        "instanceId",
    )?;
    let result = (|| -> Result<()> {
        until(Instant::now(), Duration::from_secs(300), || {
            let x = api.call(&format!("Action=DescribeInstanceStatus&InstanceId.1={id}"))?;
            Ok(x.contains("<instanceStatus><status>ok</status>"))
        })?;
        let vol = api.create_volume("&Size=1")?;
        api.wait_volume(&vol, "available")?;
        let (mut host, mut guest) = (Vec::new(), Vec::new());
        for n in 0..runs {
            let t0 = Instant::now();
            api.call(&format!("Action=AttachVolume&VolumeId={vol}&InstanceId={id}&Device=/dev/sdf"))?;
            let attached = until(t0, Duration::from_secs(120), || {
                let x = api.call(&format!("Action=DescribeVolumes&VolumeId.1={vol}"))?;
                Ok(x.contains("<status>attached</status>"))
            })?;
            let seen =
                until(t0, Duration::from_secs(120), || Ok(console(api, &id)?.contains(&format!("KILN-DISK-{n}"))))?;
            host.push(attached.as_secs_f64() * 1000.0);
            guest.push(seen.as_secs_f64() * 1000.0);
            api.call(&format!("Action=DetachVolume&VolumeId={vol}"))?;
            api.wait_volume(&vol, "available")?;
        }
        println!();
        println!("{:<36} {:>12}", "AttachVolume to a running kiln-tiny", "median ms");
        println!("{:<36} {:>12.0}", "-> attached (host)", median(host.clone()));
        println!("{:<36} {:>12.0}", "-> disk visible in the guest", median(guest.clone()));
        println!("(console polling adds up to ~100 ms to the guest figure)");
        api.call(&format!("Action=DeleteVolume&VolumeId={vol}"))?;
        Ok(())
    })();
    let _ = api.call(&format!("Action=TerminateInstances&InstanceId.1={id}"));
    let _ = until(Instant::now(), Duration::from_secs(120), || {
        Ok(api.call(&format!("Action=DescribeInstances&InstanceId.1={id}"))?.contains("<name>terminated</name>"))
    });
    result
}
