//! The `tiny` kind: busybox and a few packages on an ext4 root volume, with a Debian
//! kernel (or one built from source, every driver built in) and a small initramfs
//! (busybox, the block drivers, an `/init` that mounts the root volume) booted
//! directly by QEMU.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::kmod::Modules;
use crate::recipe::{FileSpec, Recipe};
use crate::run::{run, shell};
use crate::{debs, io, kernel, BuildError, Progress};

const STEPS: usize = 6;

pub(crate) fn write_file(root: &Path, rel: &str, f: &FileSpec) -> Result<(), BuildError> {
    let path = root.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
    }
    // Replace symlinks a package may have put there.
    let _ = std::fs::remove_file(&path);
    std::fs::write(&path, &f.contents).map_err(io(format!("writing {}", path.display())))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(f.mode))
        .map_err(io(format!("chmod {}", path.display())))
}

fn mkdirs(root: &Path, dirs: &[(&str, u32)]) -> Result<(), BuildError> {
    for (d, mode) in dirs {
        let p = root.join(d);
        std::fs::create_dir_all(&p).map_err(io(format!("creating {}", p.display())))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode))
            .map_err(io(format!("chmod {}", p.display())))?;
    }
    Ok(())
}

/// The busybox applets (`bin/sh`, `sbin/init`, …), from the image's busybox when it
/// can run here, else from the host's (the same Debian version lists the same).
fn applets(root: &Path, native: bool) -> Result<Vec<String>, BuildError> {
    let own = root.join("bin/busybox");
    let out = if native {
        run("listing busybox applets", Command::new(&own).arg("--list-full"))?
    } else {
        run("listing busybox applets (install busybox-static on the host)", Command::new("busybox").arg("--list-full"))?
    };
    Ok(out.lines().map(str::to_owned).filter(|l| !l.is_empty()).collect())
}

fn copy_modules(list: &[(String, PathBuf)], dest: &Path) -> Result<Vec<String>, BuildError> {
    std::fs::create_dir_all(dest).map_err(io(format!("creating {}", dest.display())))?;
    let mut names = Vec::new();
    for (name, path) in list {
        let file = format!("{name}.ko");
        std::fs::copy(path, dest.join(&file)).map_err(io(format!("copying module {name}")))?;
        names.push(file);
    }
    Ok(names)
}

/// Modules by name and file, in load order.
type Loads = Vec<(String, PathBuf)>;

/// Unpacks the recipe's Debian kernel into `work/vmlinuz`; returns the modules the
/// initramfs loads and those the root filesystem loads later, each in load order.
fn debian_kernel(
    recipe: &Recipe,
    work: &Path,
    cache: &Path,
    progress: &dyn Progress,
) -> Result<(Loads, Loads), BuildError> {
    let kernel_deb = debs::fetch_kernel(recipe.deb_arch(), &recipe.kernel_package, cache)?;
    progress.step(2, STEPS, "unpacking the kernel and its modules");
    let kdir = work.join("kernel");
    debs::extract(&kernel_deb, &kdir)?;
    let version = std::fs::read_dir(kdir.join("lib/modules"))
        .map_err(io("reading the kernel's modules"))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .ok_or_else(|| BuildError::Missing("the kernel package has no modules directory".into()))?;
    let vmlinuz = ["vmlinuz", "vmlinux"]
        .iter()
        .map(|n| kdir.join(format!("boot/{n}-{version}")))
        .find(|p| p.exists())
        .ok_or_else(|| BuildError::Missing(format!("no /boot/vmlinuz-{version} in the kernel package")))?;
    std::fs::copy(&vmlinuz, work.join("vmlinuz")).map_err(io("copying the kernel"))?;
    let modules = Modules::index(&kdir.join("lib/modules").join(&version))?;
    let boot = modules.load_order(&recipe.boot_modules)?;
    let all: Vec<String> = recipe.boot_modules.iter().chain(&recipe.modules).cloned().collect();
    let later: Loads =
        modules.load_order(&all)?.into_iter().filter(|(n, _)| !boot.iter().any(|(b, _)| b == n)).collect();
    Ok((boot, later))
}

/// `work/initrd.img`: busybox, `init` and the modules to load before the root volume
/// can be mounted.
fn initramfs(
    root: &Path,
    init: &FileSpec,
    boot: &Loads,
    work: &Path,
    progress: &dyn Progress,
) -> Result<(), BuildError> {
    progress.step(4, STEPS, "making the initramfs");
    let initrd = work.join("initrd");
    mkdirs(
        &initrd,
        &[("bin", 0o755), ("etc", 0o755), ("dev", 0o755), ("proc", 0o755), ("sys", 0o755), ("newroot", 0o755)],
    )?;
    std::fs::copy(root.join("bin/busybox"), initrd.join("bin/busybox")).map_err(io("copying busybox"))?;
    write_file(&initrd, "init", init)?;
    let boot_files = copy_modules(boot, &initrd.join("lib/modules"))?;
    write_file(&initrd, "etc/modules-boot", &FileSpec { contents: boot_files.join("\n").into_bytes(), mode: 0o644 })?;
    shell(
        "packing the initramfs (cpio, gzip)",
        &initrd,
        "find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 | gzip -6 > ../initrd.img",
    )?;
    Ok(())
}

pub fn build(recipe: &Recipe, work: &Path, cache: &Path, progress: &dyn Progress) -> Result<(), BuildError> {
    let arch = recipe.deb_arch();
    progress.step(1, STEPS, &format!("downloading {} Debian packages and the kernel ({arch})", recipe.packages.len()));
    let debs = debs::fetch(arch, &recipe.packages, cache)?;
    let (boot, later) = match &recipe.kernel_source {
        Some(source) => {
            progress.step(2, STEPS, &format!("the kernel, built from {}", source.package));
            let say = |what: &str| progress.step(2, STEPS, what);
            let image = kernel::build(arch, source, cache, &say)?;
            std::fs::copy(&image, work.join("vmlinuz")).map_err(io("copying the kernel"))?;
            (Vec::new(), Vec::new())
        }
        None => debian_kernel(recipe, work, cache, progress)?,
    };

    progress.step(3, STEPS, "assembling the root filesystem");
    let root = work.join("root");
    for deb in &debs {
        debs::extract(deb, &root)?;
    }
    for junk in ["usr/share/doc", "usr/share/man", "usr/share/locale", "usr/share/lintian", "usr/share/info"] {
        let _ = std::fs::remove_dir_all(root.join(junk));
    }
    mkdirs(
        &root,
        &[
            ("dev", 0o755),
            ("proc", 0o555),
            ("sys", 0o555),
            ("run", 0o755),
            ("tmp", 0o1777),
            ("root", 0o700),
            ("var/log", 0o755),
            ("var/lib/kiln", 0o755),
            ("var/www", 0o755),
            ("etc/dropbear", 0o700),
            ("sbin", 0o755),
            ("usr/bin", 0o755),
            ("usr/sbin", 0o755),
        ],
    )?;
    let native = recipe.deb_arch() == debs::host_arch()?;
    for applet in applets(&root, native)? {
        let link = root.join(&applet);
        if link.symlink_metadata().is_err() {
            if let Some(parent) = link.parent() {
                std::fs::create_dir_all(parent).map_err(io("creating applet directory"))?;
            }
            symlink("/bin/busybox", &link).map_err(io(format!("linking {applet}")))?;
        }
    }
    if root.join("usr/sbin/dropbear").exists() && root.join("sbin/dropbear").symlink_metadata().is_err() {
        symlink("/usr/sbin/dropbear", root.join("sbin/dropbear")).map_err(io("linking dropbear"))?;
    }
    for (path, f) in &recipe.overlay {
        write_file(&root, path, f)?;
    }
    let net = copy_modules(&later, &root.join("lib/modules"))?;
    write_file(&root, "etc/kiln/modules-net", &FileSpec { contents: net.join("\n").into_bytes(), mode: 0o644 })?;
    let user = &recipe.default_user;
    let home = root.join("home").join(user);
    // ~/.ssh is made here so that the boot script only writes the key into it.
    mkdirs(&root, &[(&format!("home/{user}"), 0o755), (&format!("home/{user}/.ssh"), 0o700)])?;
    // The default user owns its home and /var/www; system files stay root's, and the
    // user becomes root with sudo (passwordless, as on EC2's images).
    run("setting owners", Command::new("chown").args(["-R", "1000:1000"]).arg(&home).arg(root.join("var/www")))?;
    let rc_local = root.join("etc/rc.local");
    if !rc_local.exists() {
        write_file(
            &root,
            "etc/rc.local",
            // Executable and open-ended: a line appended to it runs at the next boot.
            &FileSpec {
                contents: b"#!/bin/sh\n# Runs as root at every boot; add commands below.\n".to_vec(),
                mode: 0o755,
            },
        )?;
    }
    // sudoers files must be root's and not writable by others; sudo itself setuid root.
    for f in ["etc/sudoers.d/90-ec2-user", "etc/sudoers"] {
        let path = root.join(f);
        if path.exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o440))
                .map_err(io(format!("making {f} read-only")))?;
        }
    }

    match &recipe.init {
        Some(init) => initramfs(&root, init, &boot, work, progress)?,
        None => progress.step(4, STEPS, "no initramfs: the kernel mounts the root volume itself"),
    }

    progress.step(5, STEPS, &format!("running {} build commands", recipe.commands.len()));
    for c in &recipe.commands {
        if !native {
            return Err(BuildError::Missing(format!(
                "build commands for {arch} need to run on a {arch} host (this recipe has: {c})"
            )));
        }
        run(&format!("build command '{c}'"), Command::new("chroot").arg(&root).args(["/bin/sh", "-c", c]))?;
    }

    progress.step(6, STEPS, &format!("writing the {} GiB root volume (ext4, qcow2)", recipe.root_size_gib));
    crate::run::root_disk(&root, recipe.root_size_gib, "kiln-root", &work.join("root.qcow2"))?;
    for scratch in ["root", "initrd", "kernel"] {
        let p = work.join(scratch);
        let _ = std::fs::remove_dir_all(&p);
        let _ = std::fs::remove_file(&p);
    }
    Ok(())
}
