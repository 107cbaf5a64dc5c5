//! Debian packages for a build: downloaded with `apt-get download` (for any
//! architecture dpkg knows), cached by file name, extracted with `dpkg-deb`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::run::run;
use crate::{io, BuildError};

/// Debian's name for this host's architecture (`amd64`).
pub(crate) fn host_arch() -> Result<String, BuildError> {
    Ok(run("asking dpkg for the host architecture", Command::new("dpkg").arg("--print-architecture"))?
        .trim()
        .to_owned())
}

/// Makes apt able to download packages of `arch`, adding the architecture if needed.
fn enable_arch(arch: &str) -> Result<bool, BuildError> {
    if arch == host_arch()? {
        return Ok(false);
    }
    let foreign =
        run("listing dpkg's foreign architectures", Command::new("dpkg").arg("--print-foreign-architectures"))?;
    if !foreign.lines().any(|l| l.trim() == arch) {
        run(
            &format!("adding the {arch} architecture to dpkg (needs root)"),
            Command::new("dpkg").args(["--add-architecture", arch]),
        )?;
        update();
    }
    Ok(true)
}

/// `apt-get update`. A mirror that is mid-sync fails some indexes while the rest are
/// fine, so a failure is only reported; the download that follows says what is missing.
fn update() {
    if let Err(e) = run("apt-get update", Command::new("apt-get").args(["update", "-qq"])) {
        tracing::warn!(error = %e, "apt-get update reported errors");
    }
}

fn cached(dir: &Path, package: &str) -> Option<PathBuf> {
    let prefix = format!("{package}_");
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb")))
}

fn download(dir: &Path, package: &str, arch: &str, foreign: bool) -> Result<PathBuf, BuildError> {
    if let Some(p) = cached(dir, package) {
        return Ok(p);
    }
    let spec = if foreign { format!("{package}:{arch}") } else { package.to_owned() };
    let attempt = || {
        run(
            &format!("downloading the Debian package {spec}"),
            Command::new("apt-get").args(["download", "-q", &spec]).current_dir(dir),
        )
    };
    if attempt().is_err() {
        // A fresh machine may have no package lists yet.
        update();
        attempt()?;
    }
    cached(dir, package).ok_or_else(|| {
        BuildError::Missing(format!("apt-get downloaded {spec} but no .deb appeared in {}", dir.display()))
    })
}

/// Downloads `packages` for `arch` into `cache/debs/<arch>`; returns the .deb files.
pub fn fetch(arch: &str, packages: &[String], cache: &Path) -> Result<Vec<PathBuf>, BuildError> {
    let dir = cache.join("debs").join(arch);
    std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    let foreign = enable_arch(arch)?;
    packages.iter().map(|p| download(&dir, p, arch, foreign)).collect()
}

/// Downloads a kernel package, following a metapackage (`linux-image-amd64`) to the
/// versioned image it depends on.
pub fn fetch_kernel(arch: &str, package: &str, cache: &Path) -> Result<PathBuf, BuildError> {
    let deb = fetch(arch, &[package.to_owned()], cache)?.remove(0);
    if contains_vmlinuz(&deb)? {
        return Ok(deb);
    }
    let depends =
        run("reading the kernel metapackage", Command::new("dpkg-deb").args(["-f"]).arg(&deb).arg("Depends"))?;
    let real = depends
        .split(',')
        .map(|d| d.split_whitespace().next().unwrap_or_default().to_owned())
        .find(|d| d.starts_with("linux-image-"))
        .ok_or_else(|| BuildError::Missing(format!("{package} does not depend on a linux-image package")))?;
    let deb = fetch(arch, std::slice::from_ref(&real), cache)?.remove(0);
    if !contains_vmlinuz(&deb)? {
        return Err(BuildError::Missing(format!("{real} holds no kernel image")));
    }
    Ok(deb)
}

fn contains_vmlinuz(deb: &Path) -> Result<bool, BuildError> {
    let listing = run("listing a Debian package", Command::new("dpkg-deb").arg("-c").arg(deb))?;
    Ok(listing.lines().any(|l| l.contains("/boot/vmlinuz-") || l.contains("/boot/vmlinux-")))
}

/// Extracts a .deb's files into `dest`.
pub fn extract(deb: &Path, dest: &Path) -> Result<(), BuildError> {
    run(&format!("extracting {}", deb.display()), Command::new("dpkg-deb").arg("-x").arg(deb).arg(dest))?;
    Ok(())
}
