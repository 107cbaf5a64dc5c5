//! Kernels built from source: Debian's `linux-source-*` package, `make tinyconfig`, the
//! recipe's config fragment merged on top with the kernel's own `merge_config.sh`, then
//! `make bzImage`. Built once per cache directory and kept there by what went into it
//! (the source package's file name, the fragment, the architecture), since a build
//! takes minutes where the rest of an image takes seconds.
//!
//! Written here rather than taken from a crate: what it does is run the kernel's own
//! build, which no crate wraps.

use std::path::{Path, PathBuf};
use std::process::Command;

use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest, Sha256};

use crate::recipe::KernelSource;
use crate::run::run;
use crate::{debs, io, BuildError};

/// The tools a kernel build runs, and the Debian packages that have them.
const TOOLS: [(&str, &str); 6] =
    [("make", "make"), ("gcc", "gcc"), ("flex", "flex"), ("bison", "bison"), ("bc", "bc"), ("xz", "xz-utils")];
/// Headers the build needs (objtool reads ELF files; the certificate tools, OpenSSL).
const HEADERS: [(&str, &str); 2] =
    [("/usr/include/gelf.h", "libelf-dev"), ("/usr/include/openssl/ssl.h", "libssl-dev")];

/// What is missing on this host to build a kernel, as Debian packages.
fn missing_tools() -> Vec<&'static str> {
    let on_path = |tool: &str| {
        std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
    };
    TOOLS
        .iter()
        .filter(|(tool, _)| !on_path(tool))
        .map(|(_, pkg)| *pkg)
        .chain(HEADERS.iter().filter(|(h, _)| !Path::new(h).exists()).map(|(_, pkg)| *pkg))
        .collect()
}

/// The options the fragment sets to `y`: each must be set in the final configuration.
fn wanted(fragment: &str) -> Vec<&str> {
    fragment
        .lines()
        .map(str::trim)
        .filter_map(|l| l.strip_suffix("=y"))
        .filter(|o| o.starts_with("CONFIG_") && !o.contains(char::is_whitespace))
        .collect()
}

/// The options of `wanted` that `config` (a `.config`) does not set to `y`.
fn unset<'a>(wanted: &[&'a str], config: &str) -> Vec<&'a str> {
    wanted.iter().copied().filter(|o| !config.lines().any(|l| l.strip_suffix("=y") == Some(o))).collect()
}

/// The kernel image for `source`, building it if the cache lacks it. `say` reports the
/// long step before it starts.
pub fn build(arch: &str, source: &KernelSource, cache: &Path, say: &dyn Fn(&str)) -> Result<PathBuf, BuildError> {
    let host = debs::host_arch()?;
    if host != arch {
        return Err(BuildError::Missing(format!(
            "building a kernel for {arch} needs a {arch} host (this one is {host}); give the recipe a kernel_package instead"
        )));
    }
    let deb = debs::fetch(arch, std::slice::from_ref(&source.package), cache)?.remove(0);
    let mut h = Sha256::new();
    h.update(deb.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default().as_bytes());
    h.update(arch.as_bytes());
    h.update(&source.config);
    let key = hex::encode(&h.finalize()[..16]);
    let kernels = cache.join("kernels");
    std::fs::create_dir_all(&kernels).map_err(io(format!("creating {}", kernels.display())))?;
    let image = kernels.join(&key).join("bzImage");
    // One build at a time per cache: servers sharing a cache wait for the first.
    let lock_file =
        std::fs::File::create(kernels.join(format!("{key}.lock"))).map_err(io("creating the kernel lock"))?;
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
        .map_err(|(_, e)| BuildError::Io { context: "locking the kernel build".into(), source: e.into() })?;
    if image.exists() {
        return Ok(image);
    }
    let missing = missing_tools();
    if !missing.is_empty() {
        return Err(BuildError::Missing(format!(
            "building the kernel needs {}: apt-get install {} (scripts/up.sh installs them)",
            missing.join(", "),
            missing.join(" ")
        )));
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    say(&format!(
        "building the kernel from {} with {cpus} jobs (once per cache directory: about 4 minutes on 2 cores)",
        source.package
    ));
    let work = kernels.join(format!("{key}.partial"));
    let _ = std::fs::remove_dir_all(&work);
    let built = compile(&deb, source, &work, cpus);
    // Moved out of the scratch tree (the same directory, so the move is atomic).
    let result = built.and_then(|bz| {
        let dir = kernels.join(&key);
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        std::fs::rename(&bz, &image).map_err(io("keeping the kernel image"))?;
        Ok(image)
    });
    let _ = std::fs::remove_dir_all(&work);
    result
}

/// Unpacks the source in `work`, configures and builds it; returns the bzImage's path.
fn compile(deb: &Path, source: &KernelSource, work: &Path, cpus: usize) -> Result<PathBuf, BuildError> {
    std::fs::create_dir_all(work).map_err(io(format!("creating {}", work.display())))?;
    debs::extract(deb, &work.join("pkg"))?;
    let tarball = std::fs::read_dir(work.join("pkg/usr/src"))
        .map_err(io(format!("reading the contents of {}", source.package)))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".tar.xz"))
        .ok_or_else(|| BuildError::Missing(format!("{} holds no usr/src/*.tar.xz", source.package)))?;
    run("unpacking the kernel source", Command::new("tar").arg("-xJf").arg(&tarball).arg("-C").arg(work))?;
    let _ = std::fs::remove_dir_all(work.join("pkg"));
    let tree = std::fs::read_dir(work)
        .map_err(io("reading the unpacked kernel source"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.join("Makefile").exists())
        .ok_or_else(|| BuildError::Missing(format!("{} unpacked to no kernel tree", source.package)))?;
    let fragment = work.join("kiln.config");
    std::fs::write(&fragment, &source.config).map_err(io("writing the config fragment"))?;
    run("make tinyconfig", Command::new("make").args(["-s", "tinyconfig"]).current_dir(&tree))?;
    run(
        "merging the recipe's kernel config",
        Command::new("scripts/kconfig/merge_config.sh").args(["-m", ".config"]).arg(&fragment).current_dir(&tree),
    )?;
    run("make olddefconfig", Command::new("make").args(["-s", "olddefconfig"]).current_dir(&tree))?;
    let config = std::fs::read_to_string(tree.join(".config")).map_err(io("reading the kernel's .config"))?;
    let text = String::from_utf8_lossy(&source.config);
    let unset = unset(&wanted(&text), &config);
    if !unset.is_empty() {
        return Err(BuildError::Missing(format!(
            "the kernel config leaves {} unset (a dependency is missing from the recipe's fragment)",
            unset.join(", ")
        )));
    }
    run(
        "building the kernel (make bzImage)",
        Command::new("make").args(["-s", &format!("-j{cpus}"), "bzImage"]).current_dir(&tree),
    )?;
    Ok(tree.join("arch/x86/boot/bzImage"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_the_fragment_sets_must_come_out_set() {
        let fragment = "# comment\nCONFIG_A=y\nCONFIG_B=n\n CONFIG_C=y \nCONFIG_D=m\nnot an option=y\n";
        assert_eq!(wanted(fragment), vec!["CONFIG_A", "CONFIG_C"]);
        let config = "CONFIG_A=y\n# CONFIG_C is not set\nCONFIG_CC=y\n";
        assert_eq!(unset(&wanted(fragment), config), vec!["CONFIG_C"]);
        assert!(unset(&wanted(fragment), "CONFIG_C=y\nCONFIG_A=y\n").is_empty());
    }
}
