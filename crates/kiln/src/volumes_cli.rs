//! The `kiln volumes` and `kiln snapshots` commands: EBS volumes (create, attach,
//! detach, grow, rm) and their snapshots (create, rm); each is the EC2 calls an `aws`
//! user would make, waits (bounded, showing progress) for the state a person would wait
//! for, and shows the result as a table or JSON.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use roxmltree::{Document, Node};

use crate::cli::{call, items, numbered, show, tag, text, Global};
use crate::client::Client;

const VOLUME_COLUMNS: &[&str] = &["id", "size gib", "type", "state", "zone", "instance", "device", "name"];
const SNAPSHOT_COLUMNS: &[&str] = &["id", "volume", "size gib", "state", "progress", "description"];

/// How long each wait may take before the command gives up (the volume or snapshot
/// keeps going on the server).
const CREATE_WAIT: Duration = Duration::from_secs(300);
const ATTACH_WAIT: Duration = Duration::from_secs(120);
const GROW_WAIT: Duration = Duration::from_secs(300);
const SNAPSHOT_WAIT: Duration = Duration::from_secs(900);

fn one(client: &Client, action: &str, params: &[(&str, &str)], path: &[&str]) -> Result<String> {
    let p: Vec<(String, String)> = params.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let xml = call(client, action, &p)?;
    let doc = Document::parse(&xml)?;
    Ok(text(doc.root_element(), path))
}

/// Polls `now` every half second until it answers `target`, printing each new state
/// to standard error (unless the output is JSON); a state in `failed` or more than
/// `limit` of waiting ends it with an error that says what to look at.
fn wait_for(
    g: &Global,
    what: &str,
    target: &str,
    failed: &[&str],
    limit: Duration,
    hint: &str,
    mut now: impl FnMut() -> Result<String>,
) -> Result<()> {
    let t0 = Instant::now();
    let mut last = String::new();
    loop {
        let state = now()?;
        if state != last {
            if g.output != "json" {
                eprintln!("[{:>5.1} s] {what} {state}", t0.elapsed().as_secs_f64());
            }
            last.clone_from(&state);
        }
        if state == target {
            return Ok(());
        }
        if failed.contains(&state.as_str()) {
            bail!("{what} is {state}: {hint}");
        }
        if t0.elapsed() > limit {
            bail!("{what} is still {state} after {} s (it goes on in the background): {hint}", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

// --- volumes ----------------------------------------------------------------------------

fn volume_row(v: Node<'_, '_>) -> Vec<String> {
    let attachment = items(v, "attachmentSet").first().copied();
    let att = |field: &str| attachment.map(|a| text(a, &[field])).unwrap_or_default();
    vec![
        text(v, &["volumeId"]),
        text(v, &["size"]),
        text(v, &["volumeType"]),
        text(v, &["status"]),
        text(v, &["availabilityZone"]),
        att("instanceId"),
        att("device"),
        tag(v, "Name"),
    ]
}

/// DescribeVolumes of `ids` (all the caller's when empty), as rows.
fn volume_rows(client: &Client, ids: &[String]) -> Result<Vec<Vec<String>>> {
    let xml = call(client, "DescribeVolumes", &numbered("VolumeId", ids))?;
    let doc = Document::parse(&xml)?;
    Ok(items(doc.root_element(), "volumeSet").into_iter().map(volume_row).collect())
}

/// One volume's state and its attachment's (`detached` without one).
fn volume_states(client: &Client, id: &str) -> Result<(String, String)> {
    let xml = call(client, "DescribeVolumes", &numbered("VolumeId", &[id.to_owned()]))?;
    let doc = Document::parse(&xml)?;
    let v = items(doc.root_element(), "volumeSet").first().copied().with_context(|| format!("no volume {id}"))?;
    let attachment = items(v, "attachmentSet").first().map(|a| text(*a, &["status"]));
    Ok((text(v, &["status"]), attachment.unwrap_or_else(|| "detached".into())))
}

/// The caller's volumes and what they are attached to.
pub fn volumes(g: &Global) -> Result<()> {
    let client = Client::new(&g.client)?;
    show(g, VOLUME_COLUMNS, volume_rows(&client, &[])?);
    Ok(())
}

/// The region's first zone, where a volume goes unless told otherwise.
fn first_zone(client: &Client) -> Result<String> {
    let xml = call(client, "DescribeAvailabilityZones", &[])?;
    let doc = Document::parse(&xml)?;
    let zones = items(doc.root_element(), "availabilityZoneInfo");
    zones
        .iter()
        .find(|z| text(**z, &["zoneState"]) == "available")
        .or(zones.first())
        .map(|z| text(*z, &["zoneName"]))
        .with_context(|| format!("the region {} has no availability zones: see `kiln regions`", client.region))
}

/// What `kiln volumes create` asks for.
pub struct NewVolume<'a> {
    pub size: Option<u32>,
    pub volume_type: &'a str,
    pub zone: Option<&'a str>,
    pub snapshot: Option<&'a str>,
    pub name: Option<&'a str>,
}

/// Creates a volume (blank, or from a snapshot), waits until it is available and shows it.
pub fn create_volume(g: &Global, new: &NewVolume<'_>) -> Result<()> {
    let client = Client::new(&g.client)?;
    let zone = match new.zone {
        Some(z) => z.to_owned(),
        None => first_zone(&client)?,
    };
    let mut p: Vec<(String, String)> =
        vec![("AvailabilityZone".into(), zone), ("VolumeType".into(), new.volume_type.to_owned())];
    if let Some(s) = new.size {
        p.push(("Size".into(), s.to_string()));
    }
    if let Some(s) = new.snapshot {
        p.push(("SnapshotId".into(), s.to_owned()));
    }
    if let Some(n) = new.name {
        p.push(("TagSpecification.1.ResourceType".into(), "volume".into()));
        p.push(("TagSpecification.1.Tag.1.Key".into(), "Name".into()));
        p.push(("TagSpecification.1.Tag.1.Value".into(), n.to_owned()));
    }
    let xml = call(&client, "CreateVolume", &p)?;
    let id = text(Document::parse(&xml)?.root_element(), &["volumeId"]);
    let hint = format!("see `kiln volumes`, and `kiln volumes rm {id}` to remove it");
    wait_for(g, &id, "available", &["error", "deleting", "deleted"], CREATE_WAIT, &hint, || {
        Ok(volume_states(&client, &id)?.0)
    })?;
    show(g, VOLUME_COLUMNS, volume_rows(&client, std::slice::from_ref(&id))?);
    Ok(())
}

/// Devices Kiln offers for data volumes, in the order `attach` picks them.
fn free_device(client: &Client, instance: &str) -> Result<String> {
    let xml = call(client, "DescribeInstances", &numbered("InstanceId", &[instance.to_owned()]))?;
    let doc = Document::parse(&xml)?;
    let inst = items(doc.root_element(), "reservationSet")
        .into_iter()
        .flat_map(|r| items(r, "instancesSet"))
        .next()
        .with_context(|| format!("no instance {instance}: see `kiln ls`"))?;
    // /dev/sdf and /dev/xvdf are one slot.
    let slot = |d: &str| {
        let d = d.trim_start_matches("/dev/");
        d.strip_prefix("xvd").or_else(|| d.strip_prefix("sd")).unwrap_or(d).to_owned()
    };
    let mut used: Vec<String> =
        items(inst, "blockDeviceMapping").into_iter().map(|b| slot(&text(b, &["deviceName"]))).collect();
    used.push(slot(&text(inst, &["rootDeviceName"])));
    ('f'..='p')
        .map(|c| format!("/dev/sd{c}"))
        .find(|d| !used.contains(&slot(d)))
        .with_context(|| format!("{instance} uses every device from /dev/sdf to /dev/sdp: give one with --device"))
}

/// Attaches a volume to an instance (at `device`, else the first free of /dev/sdf to
/// /dev/sdp) and waits until it is attached.
pub fn attach(g: &Global, volume: &str, instance: &str, device: Option<&str>) -> Result<()> {
    let client = Client::new(&g.client)?;
    let device = match device {
        Some(d) => d.to_owned(),
        None => free_device(&client, instance)?,
    };
    one(&client, "AttachVolume", &[("VolumeId", volume), ("InstanceId", instance), ("Device", &device)], &["status"])?;
    let hint = format!("see `kiln volumes` and `kiln console {instance}`");
    wait_for(g, volume, "attached", &["detached"], ATTACH_WAIT, &hint, || Ok(volume_states(&client, volume)?.1))?;
    show(g, VOLUME_COLUMNS, volume_rows(&client, &[volume.to_owned()])?);
    Ok(())
}

/// Detaches a volume (`force`: without waiting for the guest) and waits until it is
/// available.
pub fn detach(g: &Global, volume: &str, force: bool) -> Result<()> {
    let client = Client::new(&g.client)?;
    let mut p = vec![("VolumeId".to_owned(), volume.to_owned())];
    if force {
        p.push(("Force".into(), "true".into()));
    }
    call(&client, "DetachVolume", &p)?;
    let hint = if force {
        "see `kiln volumes`".to_owned()
    } else {
        format!("see `kiln volumes`; `kiln volumes detach {volume} --force` detaches it without the guest")
    };
    // While in use, the attachment's state (detaching) says more than the volume's.
    wait_for(g, volume, "available", &["error"], ATTACH_WAIT, &hint, || {
        let (volume, attachment) = volume_states(&client, volume)?;
        Ok(if volume == "in-use" { attachment } else { volume })
    })?;
    show(g, VOLUME_COLUMNS, volume_rows(&client, &[volume.to_owned()])?);
    Ok(())
}

/// Grows a volume to `size` GiB (ModifyVolume) and waits for the modification to complete.
pub fn grow(g: &Global, volume: &str, size: u32) -> Result<()> {
    let client = Client::new(&g.client)?;
    let xml =
        call(&client, "ModifyVolume", &[("VolumeId".into(), volume.to_owned()), ("Size".into(), size.to_string())])?;
    let doc = Document::parse(&xml)?;
    let m = doc.root_element();
    let (original, start) =
        (text(m, &["volumeModification", "originalSize"]), text(m, &["volumeModification", "startTime"]));
    let hint = "see `aws ec2 describe-volumes-modifications` and the server's log";
    wait_for(g, &format!("{volume} to {size} GiB:"), "completed", &["failed"], GROW_WAIT, hint, || {
        let xml = call(&client, "DescribeVolumesModifications", &numbered("VolumeId", &[volume.to_owned()]))?;
        let doc = Document::parse(&xml)?;
        let mods = items(doc.root_element(), "volumeModificationSet");
        // This modification: the one that started when ModifyVolume answered, else the newest.
        let this = mods
            .iter()
            .rev()
            .find(|x| text(**x, &["startTime"]) == start)
            .or_else(|| mods.iter().max_by_key(|x| text(**x, &["startTime"])));
        Ok(this.map(|x| text(*x, &["modificationState"])).unwrap_or_else(|| "modifying".into()))
    })?;
    show(
        g,
        &["volume", "original size gib", "size gib", "state"],
        vec![vec![volume.to_owned(), original, size.to_string(), "completed".into()]],
    );
    Ok(())
}

/// Deletes a volume (detach it first, as on EC2).
pub fn delete_volume(g: &Global, volume: &str) -> Result<()> {
    let client = Client::new(&g.client)?;
    one(&client, "DeleteVolume", &[("VolumeId", volume)], &["return"])?;
    if g.output == "table" {
        eprintln!("deleted {volume}");
    }
    Ok(())
}

// --- snapshots --------------------------------------------------------------------------

fn snapshot_rows(client: &Client, ids: &[String]) -> Result<Vec<Vec<String>>> {
    let mut p = numbered("SnapshotId", ids);
    p.push(("Owner.1".into(), "self".into()));
    let xml = call(client, "DescribeSnapshots", &p)?;
    let doc = Document::parse(&xml)?;
    Ok(items(doc.root_element(), "snapshotSet")
        .into_iter()
        .map(|s| {
            vec![
                text(s, &["snapshotId"]),
                text(s, &["volumeId"]),
                text(s, &["volumeSize"]),
                text(s, &["status"]),
                text(s, &["progress"]),
                text(s, &["description"]),
            ]
        })
        .collect())
}

/// The caller's own snapshots (not the catalog's).
pub fn snapshots(g: &Global) -> Result<()> {
    let client = Client::new(&g.client)?;
    show(g, SNAPSHOT_COLUMNS, snapshot_rows(&client, &[])?);
    Ok(())
}

/// Snapshots a volume and waits until the snapshot is completed.
pub fn create_snapshot(g: &Global, volume: &str, description: Option<&str>) -> Result<()> {
    let client = Client::new(&g.client)?;
    let mut p = vec![("VolumeId".to_owned(), volume.to_owned())];
    if let Some(d) = description {
        p.push(("Description".into(), d.to_owned()));
    }
    let xml = call(&client, "CreateSnapshot", &p)?;
    let id = text(Document::parse(&xml)?.root_element(), &["snapshotId"]);
    let hint = format!("see `kiln snapshots`, and `kiln snapshots rm {id}` to remove it");
    wait_for(g, &id, "completed", &["error"], SNAPSHOT_WAIT, &hint, || {
        let rows = snapshot_rows(&client, std::slice::from_ref(&id))?;
        Ok(rows.first().map(|r| r[3].clone()).unwrap_or_default())
    })?;
    show(g, SNAPSHOT_COLUMNS, snapshot_rows(&client, std::slice::from_ref(&id))?);
    Ok(())
}

/// Deletes a snapshot (refused while an image uses it, as on EC2).
pub fn delete_snapshot(g: &Global, snapshot: &str) -> Result<()> {
    let client = Client::new(&g.client)?;
    one(&client, "DeleteSnapshot", &[("SnapshotId", snapshot)], &["return"])?;
    if g.output == "table" {
        eprintln!("deleted {snapshot}");
    }
    Ok(())
}
