//! The `debian` kind: a full Debian system made by mmdebstrap from Debian's mirror
//! (systemd, cloud-init with its EC2 datasource, OpenSSH, apt), on an ext4 root
//! volume; its own kernel and initramfs are booted directly.

use std::path::Path;
use std::process::Command;

use crate::recipe::Recipe;
use crate::run::run;
use crate::tiny::write_file;
use crate::{io, BuildError, Progress};

const STEPS: usize = 5;

pub fn build(recipe: &Recipe, work: &Path, cache: &Path, progress: &dyn Progress) -> Result<(), BuildError> {
    let arch = recipe.deb_arch();
    let root = work.join("root");
    // mmdebstrap downloads from the mirror each time; the finished build is what is
    // cached (by the recipe's hash).
    let _ = cache;
    progress.step(
        1,
        STEPS,
        &format!(
            "installing Debian {} with {} packages ({arch}; takes a few minutes)",
            recipe.suite,
            recipe.packages.len()
        ),
    );
    let suite = &recipe.suite;
    run(
        "mmdebstrap (install the mmdebstrap package)",
        Command::new("mmdebstrap")
            .args(["--quiet", "--variant=apt", &format!("--architectures={arch}")])
            .arg(format!("--include={}", recipe.packages.join(",")))
            .arg(suite)
            .arg(&root)
            .arg(format!("deb http://deb.debian.org/debian {suite} main"))
            .arg(format!("deb http://deb.debian.org/debian {suite}-updates main"))
            .arg(format!("deb http://deb.debian.org/debian-security {suite}-security main")),
    )?;

    progress.step(2, STEPS, "configuring cloud-init, networking and the default user");
    for (path, f) in &recipe.overlay {
        write_file(&root, path, f)?;
    }
    // Each instance makes its own machine id and SSH host keys.
    std::fs::write(root.join("etc/machine-id"), b"").map_err(io("emptying the machine id"))?;
    if let Ok(entries) = std::fs::read_dir(root.join("etc/ssh")) {
        for e in entries.filter_map(Result::ok) {
            if e.file_name().to_string_lossy().starts_with("ssh_host_") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let _ = std::fs::remove_dir_all(root.join("var/cache/apt/archives"));
    let _ = std::fs::create_dir_all(root.join("var/cache/apt/archives/partial"));

    progress.step(3, STEPS, &format!("running {} build commands", recipe.commands.len()));
    let native = arch == crate::debs::host_arch()?;
    for c in &recipe.commands {
        if !native {
            return Err(BuildError::Missing(format!(
                "build commands for {arch} need a {arch} host (this recipe has: {c})"
            )));
        }
        run(&format!("build command '{c}'"), Command::new("chroot").arg(&root).args(["/bin/sh", "-c", c]))?;
    }

    progress.step(4, STEPS, "taking the kernel and initramfs");
    let boot = root.join("boot");
    let find = |prefix: &str| -> Result<std::path::PathBuf, BuildError> {
        std::fs::read_dir(&boot)
            .map_err(io("reading /boot"))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(prefix)))
            .ok_or_else(|| {
                BuildError::Missing(format!("no /boot/{prefix}* in the image (is a linux-image package included?)"))
            })
    };
    std::fs::copy(find("vmlinuz-")?, work.join("vmlinuz")).map_err(io("copying the kernel"))?;
    std::fs::copy(find("initrd.img-")?, work.join("initrd.img")).map_err(io("copying the initramfs"))?;

    progress.step(5, STEPS, &format!("writing the {} GiB root volume (ext4, qcow2)", recipe.root_size_gib));
    crate::run::root_disk(&root, recipe.root_size_gib, "root", &work.join("root.qcow2"))?;
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}
