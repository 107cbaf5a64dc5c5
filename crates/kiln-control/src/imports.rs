//! Bringing your own OS: ImportSnapshot and ImportImage from a disk image file on the
//! host (`file://` URLs, confined to the import directories), converted to a qcow2
//! layer with qemu-img by a worker, with progress in the task.

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
                self.store.write(|tx| {
                    Ok::<_, Error>(imports::update(
                        tx,
                        &t.id,
                        "deleted",
                        &format!("ClientError: {msg}"),
                        0,
                        None,
                        None,
                        None,
                    )?)
                })?;
            }
        }
        Ok(())
    }

    fn set_progress(&self, id: &str, message: &str, progress: i64) -> Result<()> {
        self.store.write(|tx| Ok::<_, Error>(imports::update(tx, id, "active", message, progress, None, None, None)?))
    }

    fn run_import(&self, t: &ImportTask) -> Result<()> {
        let source = self.import_path(&t.url)?;
        self.set_progress(&t.id, "validating", 10)?;
        let (detected, size) = inspect(&source)?;
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
        let snap_id = ResourceKind::Snapshot.generate();
        let rel = format!("{}/{snap_id}.qcow2", crate::snapshots::SNAPSHOT_DIR);
        let dest = self.data_dir().join(&rel);
        let partial = dest.with_extension("partial");
        std::fs::create_dir_all(dest.parent().unwrap_or(Path::new(".")))
            .map_err(|e| host("creating the snapshot directory", e))?;
        let out = Command::new("qemu-img")
            .args(["convert", "-q", "-f", detected.as_str(), "-O", "qcow2"])
            .arg(&source)
            .arg(&partial)
            .output()
            .map_err(|e| host("running qemu-img (install qemu-utils)", e))?;
        if !out.status.success() {
            let _ = std::fs::remove_file(&partial);
            return Err(Error::InvalidParameterValue(format!(
                "The disk image could not be converted (corrupt or truncated?): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        std::fs::rename(&partial, &dest).map_err(|e| host("moving the layer into place", e))?;
        let _ = std::fs::set_permissions(&dest, std::os::unix::fs::PermissionsExt::from_mode(0o444));
        let size_gib = size.div_ceil(1 << 30).max(1) as i64;
        let snapshot = Snapshot {
            id: snap_id.clone(),
            account_id: t.account_id.clone(),
            region: t.region.clone(),
            parent_id: None,
            file: rel.clone(),
            volume_size: size_gib,
            state: "completed".into(),
            progress: 100,
            description: if t.description.is_empty() {
                format!("Imported from {}", t.url)
            } else {
                t.description.clone()
            },
            volume_id: None,
            created_at: kiln_store::now(),
        };
        if let Err(e) = self.store.write(|tx| Ok::<_, Error>(snapshots::insert(tx, &snapshot)?)) {
            let _ = std::fs::remove_file(&dest);
            return Err(e);
        }
        let scope = Scope { account: t.account_id.clone(), region: t.region.clone() };
        let image_id = if t.kind == "image" {
            self.set_progress(&t.id, "registering", 90)?;
            let arch: Architecture =
                t.architecture.as_deref().unwrap_or("x86_64").parse().unwrap_or(Architecture::X86_64);
            let devices = vec![kiln_store::images::BlockDevice {
                device_name: "/dev/sda1".into(),
                snapshot_id: Some(snap_id.clone()),
                volume_size: size_gib,
                volume_type: "gp2".into(),
                delete_on_termination: true,
            }];
            let new = NewImage::new(t.id.clone(), snapshot.description.clone(), arch, "/dev/sda1".into(), devices);
            Some(self.register_image(&scope, new, &[])?.id)
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

/// The format qemu-img sees and the virtual size in bytes.
fn inspect(path: &Path) -> Result<(String, u64)> {
    let out = Command::new("qemu-img")
        .args(["info", "--output", "json"])
        .arg(path)
        .output()
        .map_err(|e| host("running qemu-img (install qemu-utils)", e))?;
    if !out.status.success() {
        return Err(Error::InvalidParameterValue(format!(
            "The disk image cannot be read (corrupt or truncated?): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| host("reading qemu-img info", e))?;
    let format = info["format"].as_str().ok_or_else(|| host("reading qemu-img info", "no format"))?.to_owned();
    let size = info["virtual-size"].as_u64().ok_or_else(|| host("reading qemu-img info", "no size"))?;
    Ok((format, size))
}
