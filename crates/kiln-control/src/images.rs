//! Machine images (AMIs): who may see and launch them (owner, public, launch
//! permissions), the catalog categories, registration from snapshots or from a build,
//! deregistration, copies to other regions, and attributes.

use std::collections::HashMap;

use kiln_store::accounts::{self, Account};
use kiln_store::images::{self, BlockDevice, Image};
use kiln_store::snapshots::{self, Snapshot};
use kiln_store::{Connection, Scope};
use kiln_types::{Architecture, ResourceKind};

use crate::snapshots::adopt_file;
use crate::{tags, Cloud, Error, Result};

/// The provider account's name: it owns the Quick Start catalog, alias `amazon`.
pub const PROVIDER: &str = "kiln-provider";

/// An image with everything DescribeImages shows.
#[derive(Debug, Clone)]
pub struct ImageView {
    pub image: Image,
    pub devices: Vec<BlockDevice>,
    /// Accounts explicitly allowed to launch it.
    pub permissions: Vec<String>,
    /// `amazon` for the provider's images.
    pub owner_alias: Option<&'static str>,
}

impl ImageView {
    /// Whether `account` may see and launch this image.
    pub fn launchable_by(&self, account: &str) -> bool {
        self.image.account_id == account || self.image.is_public || self.permissions.iter().any(|p| p == account)
    }
}

/// What RegisterImage (and the builder) give.
#[derive(Debug, Clone)]
pub struct NewImage {
    pub name: String,
    pub description: String,
    pub architecture: Architecture,
    pub root_device_name: String,
    pub boot_mode: String,
    pub devices: Vec<BlockDevice>,
    pub kernel_file: Option<String>,
    pub ramdisk_file: Option<String>,
    pub kernel_cmdline: Option<String>,
    /// Its own TCG translation-cache size, MiB (None: the host's).
    pub tcg_tb_size_mib: Option<u32>,
    pub source_instance_id: Option<String>,
}

impl NewImage {
    /// The image's record in `scope` (a new id, `available`) and its devices.
    pub(crate) fn into_row(self, scope: &Scope) -> (Image, Vec<BlockDevice>) {
        let image = Image {
            id: ResourceKind::Image.generate(),
            account_id: scope.account.clone(),
            region: scope.region.clone(),
            name: self.name,
            description: self.description,
            architecture: self.architecture.as_str().to_owned(),
            root_device_name: self.root_device_name,
            boot_mode: self.boot_mode,
            kernel_file: self.kernel_file,
            ramdisk_file: self.ramdisk_file,
            kernel_cmdline: self.kernel_cmdline,
            tcg_tb_size_mib: self.tcg_tb_size_mib.map(i64::from),
            default_user: None,
            state: "available".into(),
            state_reason: None,
            is_public: false,
            product_codes: String::new(),
            deprecation_time: None,
            source_instance_id: self.source_instance_id,
            recipe: None,
            recipe_hash: None,
            created_at: kiln_store::now(),
        };
        (image, self.devices)
    }

    /// A private image of `devices`, booted the architecture's usual way from its disk
    /// unless a kernel is set.
    pub fn new(
        name: String,
        description: String,
        architecture: Architecture,
        root_device_name: String,
        devices: Vec<BlockDevice>,
    ) -> Self {
        Self {
            name,
            description,
            architecture,
            root_device_name,
            boot_mode: default_boot_mode(architecture).to_owned(),
            devices,
            kernel_file: None,
            ramdisk_file: None,
            kernel_cmdline: None,
            tcg_tb_size_mib: None,
            source_instance_id: None,
        }
    }
}

/// UEFI on arm64, BIOS elsewhere.
pub fn default_boot_mode(arch: Architecture) -> &'static str {
    if arch == Architecture::Arm64 {
        "uefi"
    } else {
        "legacy-bios"
    }
}

/// EC2's AMI name rule: 3 to 128 characters of letters, digits and `()[]./-'@_ `.
pub fn check_name(name: &str) -> Result<()> {
    let ok = (3..=128).contains(&name.chars().count())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || " ()[]./-'@_".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::ImageNameMalformed(format!(
            "AMI names must be 3 to 128 characters of letters, numbers and ( ) [ ] . / - ' @ _ or space: '{name}'"
        )))
    }
}

/// The images of a region with their devices, permissions and owner alias: all of them
/// (`ids` empty), or those with these ids, read by key.
fn views(conn: &Connection, region: &str, ids: &[&str]) -> Result<Vec<ImageView>> {
    let accounts = accounts::list(conn)?;
    let alias = |owner: &str| {
        accounts.iter().find(|a| a.id == owner).and_then(|a| {
            if a.is_provider {
                Some("amazon")
            } else if a.is_vendor {
                Some("aws-marketplace")
            } else {
                None
            }
        })
    };
    if !ids.is_empty() {
        return images::by_ids(conn, region, ids)?
            .into_iter()
            .map(|image| {
                Ok(ImageView {
                    devices: images::devices_of(conn, &image.id)?,
                    permissions: images::permissions_of(conn, &image.id)?,
                    owner_alias: alias(&image.account_id),
                    image,
                })
            })
            .collect();
    }
    let mut devices: HashMap<String, Vec<BlockDevice>> = HashMap::new();
    for (id, d) in images::devices_in_region(conn, region)? {
        devices.entry(id).or_default().push(d);
    }
    let mut perms: HashMap<String, Vec<String>> = HashMap::new();
    for (id, a) in images::permissions_in_region(conn, region)? {
        perms.entry(id).or_default().push(a);
    }
    Ok(images::list_region(conn, region)?
        .into_iter()
        .map(|image| ImageView {
            devices: devices.remove(&image.id).unwrap_or_default(),
            permissions: perms.remove(&image.id).unwrap_or_default(),
            owner_alias: alias(&image.account_id),
            image,
        })
        .collect())
}

fn owned<'a>(all: &'a [ImageView], scope: &Scope, id: &str) -> Result<&'a ImageView> {
    match all.iter().find(|v| v.image.id == id) {
        Some(v) if v.image.account_id == scope.account => Ok(v),
        Some(v) if v.launchable_by(&scope.account) => Err(Error::Unauthorized(format!(
            "You are not authorized to modify image {id}: it belongs to another account"
        ))),
        _ => Err(Error::not_found(ResourceKind::Image, id)),
    }
}

impl Cloud {
    /// The provider account, made on first use.
    pub fn provider(&self) -> Result<Account> {
        if let Some(a) = self.account_by_name(PROVIDER)? {
            return Ok(a);
        }
        Ok(self.create_account(PROVIDER, true)?.account)
    }

    /// Images the caller may see, narrowed as DescribeImages narrows them: by ids (all
    /// must be visible), owners (`self`, `amazon`, `aws-marketplace`, account ids) and
    /// executable-by (`self`, `all`, account ids).
    pub fn images(
        &self,
        scope: &Scope,
        ids: &[kiln_types::ImageId],
        owners: &[String],
        executable_by: &[String],
    ) -> Result<Vec<ImageView>> {
        let wanted: Vec<&str> = ids.iter().map(|i| i.as_str()).collect();
        let (all, in_use) = self.store.read(|c| {
            // A deregistered image that instances still run from is asked for by id as
            // EC2 answers it: no result, not an error (the error comes once they are gone).
            let mut in_use = Vec::new();
            for id in &wanted {
                if kiln_store::instances::uses_image(c, scope, id)? {
                    in_use.push((*id).to_owned());
                }
            }
            Ok::<_, Error>((views(c, &scope.region, &wanted)?, in_use))
        })?;
        let mut visible: Vec<ImageView> = all.into_iter().filter(|v| v.launchable_by(&scope.account)).collect();
        if !ids.is_empty() {
            crate::missing(ids, ResourceKind::Image, |i| {
                visible.iter().any(|v| v.image.id == i) || in_use.iter().any(|u| u == i)
            })?;
            visible.retain(|v| ids.iter().any(|i| v.image.id == *i));
        }
        if !owners.is_empty() {
            visible.retain(|v| {
                owners.iter().any(|o| match o.as_str() {
                    "self" => v.image.account_id == scope.account,
                    "amazon" => v.owner_alias == Some("amazon"),
                    "aws-marketplace" => v.owner_alias == Some("aws-marketplace"),
                    id => v.image.account_id == id,
                })
            });
        }
        if !executable_by.is_empty() {
            visible.retain(|v| {
                executable_by.iter().any(|e| match e.as_str() {
                    "all" => v.image.is_public,
                    "self" => v.image.account_id == scope.account || v.permissions.contains(&scope.account),
                    id => v.image.is_public || v.image.account_id == id || v.permissions.iter().any(|p| p == id),
                })
            });
        }
        Ok(visible)
    }

    /// An image the caller may launch.
    pub fn launchable_image(&self, scope: &Scope, id: &kiln_types::ImageId) -> Result<ImageView> {
        let mut found = self.images(scope, std::slice::from_ref(id), &[], &[])?;
        found.pop().ok_or_else(|| Error::not_found(ResourceKind::Image, id.as_str()))
    }

    /// Registers an image in the caller's scope. Every snapshot in the mapping must be
    /// one the caller may use, in this region.
    pub fn register_image(&self, scope: &Scope, new: NewImage, tags: &[(String, String)]) -> Result<Image> {
        check_name(&new.name)?;
        let root = new.devices.iter().find(|d| d.device_name == new.root_device_name).ok_or_else(|| {
            Error::InvalidParameterValue(format!(
                "The root device {} has no block device mapping",
                new.root_device_name
            ))
        })?;
        if root.snapshot_id.is_none() {
            return Err(Error::InvalidParameterValue(format!(
                "The root device {} must map a snapshot",
                new.root_device_name
            )));
        }
        for d in &new.devices {
            if let Some(s) = &d.snapshot_id {
                let snap = self.usable_snapshot(scope, s)?;
                if d.volume_size < snap.volume_size {
                    return Err(Error::InvalidParameterValue(format!(
                        "Volume of size {} GiB is smaller than snapshot '{s}', expect size >= {} GiB",
                        d.volume_size, snap.volume_size
                    )));
                }
            }
        }
        let name = new.name.clone();
        let (image, devices) = new.into_row(scope);
        self.store.write(|tx| {
            if !images::insert(tx, &image, &devices)? {
                return Err(Error::Duplicate { kind: ResourceKind::Image, name: name.clone() });
            }
            tags::put_all(tx, scope, ResourceKind::Image, &image.id, tags)?;
            Ok(image)
        })
    }

    /// Deregisters an image the caller owns. Snapshots stay unless asked to go.
    pub fn deregister_image(&self, scope: &Scope, id: &str, delete_snapshots: bool) -> Result<Vec<String>> {
        let all = self.store.read(|c| views(c, &scope.region, &[id]))?;
        let view = owned(&all, scope, id)?.clone();
        self.store.write(|tx| {
            images::delete(tx, scope, id)?;
            Ok::<_, Error>(())
        })?;
        let mut deleted = Vec::new();
        if delete_snapshots {
            for s in view.devices.iter().filter_map(|d| d.snapshot_id.clone()) {
                if self.delete_snapshot(scope, &s).is_ok() {
                    deleted.push(s);
                }
            }
        }
        Ok(deleted)
    }

    /// Copies an image the caller may launch from `source_region` into the caller's
    /// region: a new image and new snapshots that share the source's layer files.
    pub fn copy_image(
        &self,
        scope: &Scope,
        source_region: &str,
        source_id: &kiln_types::ImageId,
        name: &str,
        description: Option<&str>,
    ) -> Result<Image> {
        check_name(name)?;
        if self.region(source_region).is_none() {
            return Err(Error::InvalidParameterValue(format!("Invalid source region: {source_region}")));
        }
        let source_scope = Scope { account: scope.account.clone(), region: source_region.to_owned() };
        let src = self.launchable_image(&source_scope, source_id)?;
        let mut devices = Vec::new();
        let mut new_snaps: Vec<Snapshot> = Vec::new();
        for d in &src.devices {
            let mut d2 = d.clone();
            if let Some(sid) = &d.snapshot_id {
                // As on EC2, copying needs access to the image's storage, not only to the image.
                let s = self.usable_snapshot(&source_scope, sid).map_err(|_| {
                    Error::Unauthorized(format!(
                        "You do not have permission to access the storage of this ami ({source_id})"
                    ))
                })?;
                let copy = Snapshot {
                    id: ResourceKind::Snapshot.generate(),
                    account_id: scope.account.clone(),
                    region: scope.region.clone(),
                    parent_id: s.parent_id.clone(),
                    file: s.file.clone(),
                    volume_size: s.volume_size,
                    state: "completed".into(),
                    progress: 100,
                    description: format!(
                        "Copied for DestinationAmi from SourceAmi {source_id} for SourceSnapshot {sid}"
                    ),
                    volume_id: None,
                    created_at: kiln_store::now(),
                };
                d2.snapshot_id = Some(copy.id.clone());
                new_snaps.push(copy);
            }
            devices.push(d2);
        }
        let image = Image {
            id: ResourceKind::Image.generate(),
            account_id: scope.account.clone(),
            region: scope.region.clone(),
            name: name.to_owned(),
            description: description.map(str::to_owned).unwrap_or_else(|| src.image.description.clone()),
            is_public: false,
            product_codes: String::new(),
            state: "available".into(),
            state_reason: None,
            created_at: kiln_store::now(),
            ..src.image.clone()
        };
        self.store.write(|tx| {
            for s in &new_snaps {
                snapshots::insert(tx, s)?;
            }
            if !images::insert(tx, &image, &devices)? {
                return Err(Error::Duplicate { kind: ResourceKind::Image, name: name.to_owned() });
            }
            Ok(image)
        })
    }

    /// Adds and removes launch permissions: account ids, or the group `all` (public).
    pub fn modify_launch_permission(
        &self,
        scope: &Scope,
        id: &str,
        add: &[LaunchPermission],
        remove: &[LaunchPermission],
    ) -> Result<()> {
        let all = self.store.read(|c| views(c, &scope.region, &[id]))?;
        owned(&all, scope, id)?;
        self.store.write(|tx| {
            let known: Vec<String> = accounts::list(tx)?.into_iter().map(|a| a.id).collect();
            for p in add {
                match p {
                    LaunchPermission::All => images::set_public(tx, id, true)?,
                    LaunchPermission::Account(a) => {
                        if !known.contains(a) {
                            return Err(Error::InvalidParameterValue(format!(
                                "Invalid account id for launch permission: {a}"
                            )));
                        }
                        images::add_permission(tx, id, a)?
                    }
                }
            }
            for p in remove {
                match p {
                    LaunchPermission::All => images::set_public(tx, id, false)?,
                    LaunchPermission::Account(a) => images::remove_permission(tx, id, Some(a))?,
                }
            }
            Ok(())
        })
    }

    /// Makes the image private and shared with nobody.
    pub fn reset_launch_permission(&self, scope: &Scope, id: &str) -> Result<()> {
        let all = self.store.read(|c| views(c, &scope.region, &[id]))?;
        owned(&all, scope, id)?;
        self.store.write(|tx| {
            images::set_public(tx, id, false)?;
            images::remove_permission(tx, id, None)?;
            Ok(())
        })
    }

    pub fn set_image_description(&self, scope: &Scope, id: &str, description: &str) -> Result<()> {
        let all = self.store.read(|c| views(c, &scope.region, &[id]))?;
        owned(&all, scope, id)?;
        self.store.write(|tx| Ok(images::set_description(tx, id, description)?))
    }

    /// An image the caller owns, with permissions (for DescribeImageAttribute).
    pub fn owned_image(&self, scope: &Scope, id: &str) -> Result<ImageView> {
        let all = self.store.read(|c| views(c, &scope.region, &[id]))?;
        owned(&all, scope, id).cloned()
    }

    /// Images the provider has for a recipe hash in a region (the Quick Start cache).
    pub fn images_for_recipe(&self, region: &str, hash: &str) -> Result<Vec<Image>> {
        self.store.read(|c| Ok(images::by_recipe_hash(c, region, hash)?))
    }

    /// Registers the image a build will make, as `pending` with no devices yet, so
    /// that DescribeImages shows it while it builds. Earlier attempts for the same
    /// recipe content that never finished (pending or failed) are removed first.
    pub fn reserve_build(&self, scope: &Scope, build: &BuildProducts, tags: &[(String, String)]) -> Result<Image> {
        check_name(&build.name)?;
        let image = Image {
            id: ResourceKind::Image.generate(),
            account_id: scope.account.clone(),
            region: scope.region.clone(),
            name: build.name.clone(),
            description: build.description.clone(),
            architecture: build.architecture.as_str().to_owned(),
            root_device_name: "/dev/xvda".into(),
            boot_mode: default_boot_mode(build.architecture).into(),
            kernel_file: None,
            ramdisk_file: None,
            kernel_cmdline: None,
            tcg_tb_size_mib: None,
            default_user: Some(build.default_user.clone()),
            state: "pending".into(),
            state_reason: None,
            is_public: build.public,
            product_codes: String::new(),
            deprecation_time: None,
            source_instance_id: None,
            recipe: Some(build.recipe.clone()),
            recipe_hash: Some(build.hash.clone()),
            created_at: kiln_store::now(),
        };
        self.store.write(|tx| {
            for stale in images::by_recipe_hash(tx, &scope.region, &build.hash)? {
                if stale.account_id == scope.account && stale.state != "available" {
                    images::remove(tx, &stale.id)?;
                }
            }
            if !images::insert(tx, &image, &[])? {
                return Err(Error::Duplicate { kind: ResourceKind::Image, name: build.name.clone() });
            }
            tags::put_all(tx, scope, ResourceKind::Image, &image.id, tags)?;
            Ok(image)
        })
    }

    /// At start: images whose build was interrupted (the daemon died) are failed; the
    /// Quick Start retries them.
    pub fn fail_interrupted_builds(&self) -> Result<usize> {
        self.store.write(|tx| {
            Ok(images::fail_pending_builds(
                tx,
                "The image build was interrupted when Kiln stopped; it is retried at the next start",
            )?)
        })
    }

    /// Marks a reserved image `failed`, with the reason DescribeImages shows.
    pub fn fail_build(&self, image_id: &str, reason: &str) -> Result<()> {
        self.store.write(|tx| Ok(images::set_state(tx, image_id, "failed", Some(reason))?))
    }

    /// Completes a reserved image from a finished build: the root disk becomes a
    /// snapshot, kernel and initramfs are kept under `DATA_DIR/kernels`, and the image
    /// becomes `available`. On failure nothing of it is left but the failed image.
    pub fn complete_build(&self, scope: &Scope, image_id: &str, build: &BuildProducts) -> Result<()> {
        let keep = |src: &std::path::Path, name: &str| -> Result<String> {
            let rel = format!("kernels/{}-{name}", build.hash);
            let dest = self.data_dir().join(&rel);
            std::fs::create_dir_all(self.data_dir().join("kernels"))
                .map_err(|e| Error::Host { context: "creating the kernel directory".into(), detail: e.to_string() })?;
            if !dest.exists() && std::fs::hard_link(src, &dest).is_err() {
                std::fs::copy(src, &dest)
                    .map_err(|e| Error::Host { context: format!("keeping {name}"), detail: e.to_string() })?;
            }
            Ok(rel)
        };
        let kernel_file = keep(&build.kernel, "vmlinuz")?;
        let ramdisk_file = build.initrd.as_deref().map(|p| keep(p, "initrd.img")).transpose()?;
        let snap_id = ResourceKind::Snapshot.generate();
        let file = adopt_file(self.data_dir(), &snap_id, &build.root_disk)?;
        let snapshot = Snapshot {
            id: snap_id.clone(),
            account_id: scope.account.clone(),
            region: scope.region.clone(),
            parent_id: None,
            file: file.clone(),
            volume_size: build.root_size_gib as i64,
            state: "completed".into(),
            progress: 100,
            description: format!("Root volume of {} (recipe {})", build.name, build.recipe),
            volume_id: None,
            created_at: kiln_store::now(),
        };
        let device = BlockDevice {
            device_name: "/dev/xvda".into(),
            snapshot_id: Some(snap_id),
            volume_size: build.root_size_gib as i64,
            volume_type: kiln_types::VolumeType::Gp3,
            delete_on_termination: true,
        };
        let done = self.store.write(|tx| {
            snapshots::insert(tx, &snapshot)?;
            let boot = images::Boot {
                kernel_file: &kernel_file,
                ramdisk_file: ramdisk_file.as_deref(),
                kernel_cmdline: &build.kernel_cmdline,
                tcg_tb_size_mib: build.tcg_tb_size_mib.map(i64::from),
            };
            images::complete(tx, image_id, boot, &device)?;
            Ok::<_, Error>(())
        });
        if done.is_err() {
            let _ = std::fs::remove_file(self.data_dir().join(&file));
        }
        done
    }
}

impl Cloud {
    /// Lists an image in the Marketplace: its owner becomes a vendor (alias
    /// `aws-marketplace`), the image carries the product code and is public.
    pub fn publish_marketplace(&self, region: &str, image_id: &str, product_code: &str) -> Result<Image> {
        let ok = !product_code.is_empty()
            && product_code.len() <= 64
            && product_code.chars().all(|c| c.is_ascii_alphanumeric());
        if !ok {
            return Err(Error::InvalidParameterValue(format!(
                "Product code '{product_code}' must be 1 to 64 letters and digits"
            )));
        }
        self.store.write(|tx| {
            let image = images::list_region(tx, region)?
                .into_iter()
                .find(|i| i.id == image_id)
                .ok_or_else(|| Error::not_found(ResourceKind::Image, image_id))?;
            let owner = accounts::list(tx)?.into_iter().find(|a| a.id == image.account_id);
            if owner.as_ref().is_some_and(|a| a.is_provider) {
                return Err(Error::InvalidParameterValue("Quick Start images cannot be Marketplace listings".into()));
            }
            accounts::set_vendor(tx, &image.account_id)?;
            let mut codes: Vec<&str> = image.product_codes.split(',').filter(|c| !c.is_empty()).collect();
            if !codes.contains(&product_code) {
                codes.push(product_code);
            }
            images::set_product_codes(tx, image_id, &codes.join(","))?;
            images::set_public(tx, image_id, true)?;
            Ok(Image { product_codes: codes.join(","), is_public: true, ..image })
        })
    }
}

/// One launch permission: an account, or everyone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaunchPermission {
    Account(String),
    All,
}

/// A finished build, as the image builder hands it over.
#[derive(Debug, Clone)]
pub struct BuildProducts {
    pub name: String,
    pub description: String,
    pub recipe: String,
    pub hash: String,
    pub architecture: Architecture,
    pub root_disk: std::path::PathBuf,
    pub kernel: std::path::PathBuf,
    /// None when the kernel mounts the root volume itself.
    pub initrd: Option<std::path::PathBuf>,
    pub kernel_cmdline: String,
    /// The recipe's own TCG translation-cache size, MiB (None: the host's).
    pub tcg_tb_size_mib: Option<u32>,
    pub root_size_gib: u64,
    pub default_user: String,
    pub public: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ami_names_follow_ec2() {
        assert!(check_name("kiln-tiny-x86_64-20261125").is_ok());
        assert!(check_name("my image (v2) [test]/a@b'c").is_ok());
        assert!(check_name("ab").is_err());
        assert!(check_name("bad*name").is_err());
        assert!(check_name(&"x".repeat(129)).is_err());
    }
}
