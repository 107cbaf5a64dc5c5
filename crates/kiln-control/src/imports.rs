//! Bringing your own OS: ImportSnapshot and ImportImage from a disk image file on the
//! host (`file://` URLs, confined to the import directories), converted to a qcow2
//! layer with qemu-img by a worker, with progress in the task.
//!
//! The files are untrusted. Each is inspected (`qemu-img info --output=json`) before
//! use, and refused if it would make qemu-img read any other file: backing files,
//! qcow2 external data files, multi-file VMDKs. Only raw, qcow2, monolithic VMDK and
//! VHD/VHDX are taken, and qemu-img runs under CPU and memory limits (`prlimit`).
//!
//! A task is resumable: the snapshot id it makes is chosen once and saved in the task
//! before any file is written, the layer is converted under a temporary name and
//! renamed, and an image is found again by its name (the task id), so a re-run after a
//! crash finishes the same snapshot and image instead of making others.

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_store::imports::{self, ImportTask};
use kiln_store::snapshots::{self, Snapshot};
use kiln_store::Scope;
use kiln_types::{Architecture, ResourceKind};
use rand::Rng;

use crate::images::NewImage;
use crate::{Cloud, Error, Result};

/// Disk formats accepted, as EC2 names them and as qemu-img does.
const FORMATS: &[(&str, &str)] =
    &[("raw", "raw"), ("vmdk", "vmdk"), ("vhdx", "vhdx"), ("vhd", "vpc"), ("qcow2", "qcow2")];

/// VMDK subformats kept in one file.
const ONE_FILE_VMDK: &[&str] = &["monolithicSparse", "streamOptimized"];

/// The largest disk taken: EC2's largest volume, 64 TiB.
const MAX_VIRTUAL_SIZE: u64 = 64 << 40;

/// Limits for `qemu-img info` (OpenStack's, after OSSA-2015-014): 1 GiB of address
/// space and 30 s of CPU.
const INFO_LIMITS: [&str; 2] = ["--as=1073741824", "--cpu=30"];
/// Limits for `qemu-img convert`: 2 GiB of address space and an hour of CPU.
const CONVERT_LIMITS: [&str; 2] = ["--as=2147483648", "--cpu=3600"];

/// What an import asks for.
#[derive(Debug, Clone)]
pub struct ImportRequest {
    pub image: bool,
    pub url: String,
    pub format: Option<String>,
    pub description: String,
    pub architecture: Option<Architecture>,
}

fn task_id(image: bool) -> String {
    let n: u128 = rand::thread_rng().gen();
    format!("{}-{:017x}", if image { "import-ami" } else { "import-snap" }, n & ((1u128 << 68) - 1))
}

fn host(context: &str, detail: impl std::fmt::Display) -> Error {
    Error::Host { context: context.to_owned(), detail: detail.to_string() }
}

impl Cloud {
    /// The directories imports may read: `DATA_DIR/imports` and the configured ones.
    pub fn allowed_import_dirs(&self) -> Vec<PathBuf> {
        std::iter::once(self.data_dir().join("imports")).chain(self.import_dirs.iter().cloned()).collect()
    }

    /// The file a `file://` URL names, if it lies inside an import directory (after
    /// resolving `..` and symbolic links).
    pub fn import_path(&self, url: &str) -> Result<PathBuf> {
        let refuse = |why: &str| {
            let dirs: Vec<String> = self.allowed_import_dirs().iter().map(|d| d.display().to_string()).collect();
            Error::InvalidParameterValue(format!(
                "DiskContainer.Url '{url}' {why}. Kiln imports local files given as file:///path inside: {}",
                dirs.join(", ")
            ))
        };
        let path = url.strip_prefix("file://").ok_or_else(|| refuse("is not a file:// URL"))?;
        if !path.starts_with('/') {
            return Err(refuse("is not an absolute path"));
        }
        let real = std::fs::canonicalize(path).map_err(|_| refuse("does not name an existing file"))?;
        if !real.is_file() {
            return Err(refuse("is not a regular file"));
        }
        let inside = self
            .allowed_import_dirs()
            .iter()
            .filter_map(|d| std::fs::canonicalize(d).ok())
            .any(|d| real.starts_with(&d));
        if !inside {
            return Err(refuse("is outside the import directories"));
        }
        Ok(real)
    }

    /// Records an import task; the import worker does the work.
    pub fn start_import(&self, scope: &Scope, r: ImportRequest) -> Result<ImportTask> {
        let format = match &r.format {
            Some(f) => {
                let f = f.to_ascii_lowercase();
                if !FORMATS.iter().any(|(ec2, _)| *ec2 == f) {
                    return Err(Error::InvalidParameterValue(format!(
                        "Unsupported disk format '{f}': use RAW, VMDK, VHD, VHDX or qcow2"
                    )));
                }
                f
            }
            None => String::new(),
        };
        self.import_path(&r.url)?;
        let task = ImportTask {
            id: task_id(r.image),
            account_id: scope.account.clone(),
            region: scope.region.clone(),
            kind: if r.image { "image" } else { "snapshot" }.into(),
            url: r.url,
            format,
            description: r.description,
            architecture: r.architecture.map(|a| a.as_str().to_owned()),
            status: "active".into(),
            status_message: "pending".into(),
            progress: 0,
            snapshot_id: None,
            image_id: None,
            disk_size: None,
            created_at: kiln_store::now(),
        };
        self.store.write(|tx| Ok::<_, Error>(imports::insert(tx, &task)?))?;
        Ok(task)
    }

    pub fn import_tasks(&self, scope: &Scope, image: bool, ids: &[String]) -> Result<Vec<ImportTask>> {
        let all =
            self.store.read(|c| Ok::<_, Error>(imports::list(c, scope, if image { "image" } else { "snapshot" })?))?;
        if let Some(missing) = ids.iter().find(|i| !all.iter().any(|t| &t.id == *i)) {
            return Err(Error::InvalidParameterValue(format!("The import task '{missing}' does not exist")));
        }
        Ok(all.into_iter().filter(|t| ids.is_empty() || ids.contains(&t.id)).collect())
    }

    /// Runs every active import (the worker calls this; after a restart it resumes).
    pub fn process_imports(&self) -> Result<()> {
        let active = self.store.read(|c| Ok::<_, Error>(imports::active(c)?))?;
        for t in active {
            if let Err(e) = self.run_import(&t) {
                let msg = match &e {
                    Error::Host { detail, .. } => detail.clone(),
                    other => other.to_string(),
                };
                tracing::warn!(task = %t.id, error = %msg, "import failed");
                self.undo_import(&t.id)?;
                self.store.write(|tx| Ok::<_, Error>(imports::fail(tx, &t.id, &format!("ClientError: {msg}"))?))?;
            }
        }
        Ok(())
    }

    /// Removes what a failed import made: its image and its snapshot (hidden, then
    /// collected with its file).
    fn undo_import(&self, task_id: &str) -> Result<()> {
        let Some(t) = self.store.read(|c| Ok::<_, Error>(imports::get(c, task_id)?))? else { return Ok(()) };
        let scope = Scope { account: t.account_id.clone(), region: t.region.clone() };
        self.store.write(|tx| {
            if let Some(image) = kiln_store::images::by_name(tx, &scope, &t.id)? {
                kiln_store::images::delete(tx, &scope, &image)?;
            }
            if let Some(s) = &t.snapshot_id {
                snapshots::mark_deleted(tx, s)?;
            }
            Ok::<_, Error>(())
        })?;
        if let Some(s) = &t.snapshot_id {
            // A layer converted but never recorded.
            let _ = std::fs::remove_file(self.data_dir().join(layer_file(s)));
            let _ = std::fs::remove_file(self.data_dir().join(layer_file(s)).with_extension("partial"));
        }
        self.collect_layers()
    }

    fn set_progress(&self, id: &str, message: &str, progress: i64) -> Result<()> {
        self.store.write(|tx| Ok::<_, Error>(imports::update(tx, id, "active", message, progress, None, None, None)?))
    }

    fn run_import(&self, t: &ImportTask) -> Result<()> {
        // The snapshot this task makes, chosen once and saved before any file exists.
        let snap_id = match &t.snapshot_id {
            Some(s) => s.clone(),
            None => {
                let s = ResourceKind::Snapshot.generate();
                self.store.write(|tx| {
                    Ok::<_, Error>(imports::update(tx, &t.id, "active", "validating", 10, Some(&s), None, None)?)
                })?;
                s
            }
        };
        let rel = layer_file(&snap_id);
        let dest = self.data_dir().join(&rel);
        let recorded = self.store.read(|c| Ok::<_, Error>(snapshots::get(c, &snap_id)?))?.is_some();
        if !recorded && !dest.exists() {
            let source = self.import_path(&t.url)?;
            self.set_progress(&t.id, "validating", 10)?;
            let (detected, _) = inspect(&source)?;
            let ec2_format = FORMATS.iter().find(|(_, q)| *q == detected).map(|(e, _)| *e).ok_or_else(|| {
                Error::InvalidParameterValue(format!("The disk image is in an unsupported format ({detected})"))
            })?;
            if !t.format.is_empty() && t.format != ec2_format {
                return Err(Error::InvalidParameterValue(format!(
                    "The disk image is {ec2_format}, not {} as declared (is the file corrupt or truncated?)",
                    t.format
                )));
            }
            self.set_progress(&t.id, "converting", 30)?;
            let partial = dest.with_extension("partial");
            std::fs::create_dir_all(dest.parent().unwrap_or(Path::new(".")))
                .map_err(|e| host("creating the snapshot directory", e))?;
            let out = Command::new("prlimit")
                .args(CONVERT_LIMITS)
                .args(["qemu-img", "convert", "-q", "-f", detected.as_str(), "-O", "qcow2"])
                .arg(&source)
                .arg(&partial)
                .output()
                .map_err(|e| host("running prlimit and qemu-img (install util-linux and qemu-utils)", e))?;
            if !out.status.success() {
                let _ = std::fs::remove_file(&partial);
                return Err(Error::InvalidParameterValue(format!(
                    "The disk image could not be converted (corrupt, truncated or too large?): {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            std::fs::rename(&partial, &dest).map_err(|e| host("moving the layer into place", e))?;
            let _ = std::fs::set_permissions(&dest, std::os::unix::fs::PermissionsExt::from_mode(0o444));
        }
        // Our own file now, inspected the same way.
        let (_, size) = inspect(&dest)?;
        let size_gib = size.div_ceil(1 << 30).max(1) as i64;
        let description =
            if t.description.is_empty() { format!("Imported from {}", t.url) } else { t.description.clone() };
        if !recorded {
            let snapshot = Snapshot {
                id: snap_id.clone(),
                account_id: t.account_id.clone(),
                region: t.region.clone(),
                parent_id: None,
                file: rel.clone(),
                volume_size: size_gib,
                state: "completed".into(),
                progress: 100,
                description: description.clone(),
                volume_id: None,
                created_at: kiln_store::now(),
            };
            self.store.write(|tx| Ok::<_, Error>(snapshots::insert(tx, &snapshot)?))?;
        }
        let scope = Scope { account: t.account_id.clone(), region: t.region.clone() };
        let image_id = if t.kind == "image" {
            self.set_progress(&t.id, "registering", 90)?;
            // Named after the task: a re-run finds the image it made.
            match self.store.read(|c| Ok::<_, Error>(kiln_store::images::by_name(c, &scope, &t.id)?))? {
                Some(id) => Some(id),
                None => {
                    let arch: Architecture =
                        t.architecture.as_deref().unwrap_or("x86_64").parse().unwrap_or(Architecture::X86_64);
                    let devices = vec![kiln_store::images::BlockDevice {
                        device_name: "/dev/sda1".into(),
                        snapshot_id: Some(snap_id.clone()),
                        volume_size: size_gib,
                        volume_type: kiln_types::VolumeType::Gp2,
                        delete_on_termination: true,
                    }];
                    let new = NewImage::new(t.id.clone(), description, arch, "/dev/sda1".into(), devices);
                    Some(self.register_image(&scope, new, &[])?.id)
                }
            }
        } else {
            None
        };
        self.store.write(|tx| {
            Ok::<_, Error>(imports::update(
                tx,
                &t.id,
                "completed",
                "completed",
                100,
                Some(&snap_id),
                image_id.as_deref(),
                Some(size_gib),
            )?)
        })
    }
}

/// Where an imported snapshot's layer lives, relative to the data directory.
fn layer_file(snapshot_id: &str) -> String {
    format!("{}/{snapshot_id}.qcow2", crate::snapshots::SNAPSHOT_DIR)
}

/// The format qemu-img sees and the virtual size in bytes, for a file that passes
/// `check_info`.
fn inspect(path: &Path) -> Result<(String, u64)> {
    let out = Command::new("prlimit")
        .args(INFO_LIMITS)
        .args(["qemu-img", "info", "--output=json"])
        .arg(path)
        .output()
        .map_err(|e| host("running prlimit and qemu-img (install util-linux and qemu-utils)", e))?;
    if !out.status.success() {
        return Err(Error::InvalidParameterValue(format!(
            "The disk image cannot be read (corrupt or truncated?): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| host("reading qemu-img info", e))?;
    check_info(&info, &path.to_string_lossy())
}

/// Judges `qemu-img info --output=json` of an untrusted file: only the accepted
/// formats, and nothing that would make qemu-img open another file (a backing file, a
/// qcow2 external data file, a VMDK extent elsewhere, or any child node but the file
/// itself). Returns the format and the virtual size.
fn check_info(info: &serde_json::Value, path: &str) -> Result<(String, u64)> {
    let refuse = |why: String| Err(Error::InvalidParameterValue(format!("The disk image is refused: {why}")));
    let format = info["format"].as_str().unwrap_or_default().to_owned();
    if !FORMATS.iter().any(|(_, q)| *q == format) {
        return refuse(format!("its format '{format}' is not one of raw, qcow2, vmdk, vhd, vhdx"));
    }
    for key in ["backing-filename", "full-backing-filename", "backing-filename-format"] {
        if let Some(b) = info.get(key) {
            return refuse(format!("it names a backing file ({b}); import a flattened image (qemu-img convert)"));
        }
    }
    let data = &info["format-specific"]["data"];
    if let Some(f) = data.get("data-file") {
        return refuse(format!("it names an external data file ({f}); import a self-contained image"));
    }
    if format == "vmdk" {
        let kind = data["create-type"].as_str().unwrap_or_default();
        if !ONE_FILE_VMDK.contains(&kind) {
            return refuse(format!("VMDK '{kind}' spans several files; use monolithicSparse or streamOptimized"));
        }
        let extents = data["extents"].as_array().map(Vec::as_slice).unwrap_or_default();
        if let Some(e) = extents.iter().find(|e| e["filename"].as_str() != Some(path)) {
            return refuse(format!("a VMDK extent lies in another file ({})", e["filename"]));
        }
    }
    let children = info["children"].as_array().map(Vec::as_slice).unwrap_or_default();
    if let Some(c) = children.iter().find(|c| c["info"]["filename"].as_str() != Some(path)) {
        return refuse(format!("it opens another file ({})", c["info"]["filename"]));
    }
    let size = info["virtual-size"].as_u64().ok_or_else(|| host("reading qemu-img info", "no virtual size"))?;
    if size > MAX_VIRTUAL_SIZE {
        return refuse(format!("its virtual size {size} bytes is over 64 TiB"));
    }
    Ok((format, size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn file_child(path: &str) -> serde_json::Value {
        json!([{ "name": "file", "info": { "filename": path, "format": "file" } }])
    }

    #[test]
    fn plain_images_pass() {
        let qcow = json!({ "format": "qcow2", "virtual-size": 1024, "filename": "/i/a.qcow2",
            "format-specific": { "type": "qcow2", "data": { "compat": "1.1" } }, "children": file_child("/i/a.qcow2") });
        assert_eq!(check_info(&qcow, "/i/a.qcow2").expect("qcow2"), ("qcow2".into(), 1024));
        let vmdk = json!({ "format": "vmdk", "virtual-size": 4096, "children": file_child("/i/a.vmdk"),
            "format-specific": { "type": "vmdk", "data": { "create-type": "monolithicSparse",
                "extents": [{ "filename": "/i/a.vmdk" }] } } });
        assert!(check_info(&vmdk, "/i/a.vmdk").is_ok());
        let raw = json!({ "format": "raw", "virtual-size": 512 });
        assert!(check_info(&raw, "/i/a.raw").is_ok());
    }

    #[test]
    fn anything_that_reads_another_file_is_refused() {
        let backing = json!({ "format": "qcow2", "virtual-size": 1024, "backing-filename": "/etc/shadow",
            "full-backing-filename": "/etc/shadow", "children": file_child("/i/e.qcow2") });
        let e = check_info(&backing, "/i/e.qcow2").expect_err("backing");
        assert!(e.to_string().contains("backing file"), "{e}");
        let data_file = json!({ "format": "qcow2", "virtual-size": 1024, "children": file_child("/i/e.qcow2"),
            "format-specific": { "data": { "data-file": "/etc/shadow" } } });
        assert!(check_info(&data_file, "/i/e.qcow2").expect_err("data file").to_string().contains("data file"));
        let flat = json!({ "format": "vmdk", "virtual-size": 1024,
            "format-specific": { "data": { "create-type": "monolithicFlat", "extents": [{ "filename": "/etc/shadow" }] } } });
        assert!(check_info(&flat, "/i/e.vmdk").is_err());
        let extent = json!({ "format": "vmdk", "virtual-size": 1024,
            "format-specific": { "data": { "create-type": "monolithicSparse", "extents": [{ "filename": "/etc/shadow" }] } } });
        assert!(check_info(&extent, "/i/e.vmdk").is_err());
        let child = json!({ "format": "raw", "virtual-size": 1024, "children": file_child("/etc/shadow") });
        assert!(check_info(&child, "/i/e.raw").is_err());
    }

    #[test]
    fn other_formats_and_huge_disks_are_refused() {
        for f in ["luks", "dmg", "parallels", "qed", "vdi", "file", ""] {
            let info = json!({ "format": f, "virtual-size": 1024 });
            assert!(check_info(&info, "/i/x").is_err(), "{f}");
        }
        let huge = json!({ "format": "raw", "virtual-size": (65u64 << 40) });
        assert!(check_info(&huge, "/i/x").is_err());
    }
}
