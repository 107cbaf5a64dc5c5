//! Block device mappings: an image's (RunInstances) or an instance's (CreateImage)
//! devices with a request's BlockDeviceMapping applied, by EC2's rules: a named device
//! that exists is resized (never shrunk), retyped or excluded (NoDevice, never the
//! root); any other device is added, from a snapshot or empty with a size.

use kiln_store::images::BlockDevice;
use kiln_types::VolumeType;

use crate::{Error, Result};

/// An extra or resized volume asked for at launch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VolumeRequest {
    pub device_name: String,
    pub snapshot_id: Option<kiln_types::SnapshotId>,
    pub size_gib: Option<i64>,
    pub volume_type: Option<VolumeType>,
    pub delete_on_termination: Option<bool>,
    pub no_device: bool,
}

/// `base` with `requests` applied. `snapshot_size` gives the size of a snapshot the
/// caller may use (or its NotFound error).
pub fn apply(
    mut base: Vec<BlockDevice>,
    root: &str,
    requests: &[VolumeRequest],
    snapshot_size: impl Fn(&str) -> Result<i64>,
) -> Result<Vec<BlockDevice>> {
    for (n, r) in requests.iter().enumerate() {
        if requests[..n].iter().any(|o| o.device_name == r.device_name) {
            return Err(Error::InvalidBlockDeviceMapping(format!(
                "The device name {} appears more than once in the block device mapping",
                r.device_name
            )));
        }
        if let Some(existing) = base.iter_mut().find(|d| d.device_name == r.device_name) {
            if r.no_device {
                if r.device_name == root {
                    return Err(Error::InvalidBlockDeviceMapping(format!(
                        "The root device {root} cannot be removed with NoDevice"
                    )));
                }
                base.retain(|d| d.device_name != r.device_name);
                continue;
            }
            if r.snapshot_id.is_some()
                && r.snapshot_id.as_deref() != existing.snapshot_id.as_deref()
                && existing.snapshot_id.is_some()
            {
                return Err(Error::InvalidBlockDeviceMapping(format!(
                    "The snapshot of {} cannot be replaced",
                    r.device_name
                )));
            }
            let size = r.size_gib.unwrap_or(existing.volume_size);
            if size < existing.volume_size {
                return Err(Error::InvalidBlockDeviceMapping(format!(
                    "Volume of size {size}GB is smaller than the {}GB of {}, expect size >= {}GB",
                    existing.volume_size, r.device_name, existing.volume_size
                )));
            }
            existing.volume_size = size;
            if let Some(t) = r.volume_type {
                existing.volume_type = t;
            }
            if let Some(d) = r.delete_on_termination {
                existing.delete_on_termination = d;
            }
            continue;
        }
        if r.no_device {
            continue;
        }
        let size = match &r.snapshot_id {
            Some(s) => {
                let least = snapshot_size(s)?;
                let size = r.size_gib.unwrap_or(least);
                if size < least {
                    return Err(Error::InvalidBlockDeviceMapping(format!(
                        "Volume of size {size}GB is smaller than snapshot '{s}', expect size >= {least}GB"
                    )));
                }
                size
            }
            None => r.size_gib.ok_or_else(|| {
                Error::InvalidBlockDeviceMapping(format!("{} needs a VolumeSize or a SnapshotId", r.device_name))
            })?,
        };
        if !(1..=16384).contains(&size) {
            return Err(Error::InvalidParameterValue(format!("Volume size {size} GiB is not within 1 to 16384")));
        }
        base.push(BlockDevice {
            device_name: r.device_name.clone(),
            snapshot_id: r.snapshot_id.clone().map(String::from),
            volume_size: size,
            volume_type: r.volume_type.unwrap_or(VolumeType::Gp2),
            delete_on_termination: r.delete_on_termination.unwrap_or(true),
        });
    }
    Ok(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(name: &str, snap: Option<&str>, size: i64) -> BlockDevice {
        BlockDevice {
            device_name: name.into(),
            snapshot_id: snap.map(Into::into),
            volume_size: size,
            volume_type: VolumeType::Gp2,
            delete_on_termination: true,
        }
    }

    fn req(name: &str, size: Option<i64>, no_device: bool) -> VolumeRequest {
        VolumeRequest {
            device_name: name.into(),
            snapshot_id: None,
            size_gib: size,
            volume_type: None,
            delete_on_termination: None,
            no_device,
        }
    }

    #[test]
    fn requests_resize_add_and_exclude() {
        let base = vec![dev("/dev/xvda", Some("snap-1"), 1), dev("/dev/xvdf", Some("snap-2"), 2)];
        let out = apply(
            base.clone(),
            "/dev/xvda",
            &[req("/dev/xvda", Some(20), false), req("/dev/xvdf", None, true), req("/dev/xvdg", Some(5), false)],
            |_| Ok(1),
        )
        .expect("applies");
        let names: Vec<(&str, i64)> = out.iter().map(|d| (d.device_name.as_str(), d.volume_size)).collect();
        assert_eq!(names, vec![("/dev/xvda", 20), ("/dev/xvdg", 5)]);
        let shrink = apply(base.clone(), "/dev/xvda", &[req("/dev/xvdf", Some(1), false)], |_| Ok(1));
        assert!(matches!(shrink, Err(Error::InvalidBlockDeviceMapping(_))));
        let root = apply(base.clone(), "/dev/xvda", &[req("/dev/xvda", None, true)], |_| Ok(1));
        assert!(matches!(root, Err(Error::InvalidBlockDeviceMapping(_))));
        let sizeless = apply(base.clone(), "/dev/xvda", &[req("/dev/xvdh", None, false)], |_| Ok(1));
        assert!(matches!(sizeless, Err(Error::InvalidBlockDeviceMapping(_))));
        let twice =
            apply(base, "/dev/xvda", &[req("/dev/xvdh", Some(1), false), req("/dev/xvdh", Some(1), false)], |_| Ok(1));
        assert!(matches!(twice, Err(Error::InvalidBlockDeviceMapping(_))));
    }
}
