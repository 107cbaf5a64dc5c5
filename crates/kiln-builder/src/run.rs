//! Running the host tools a build needs (apt-get, dpkg-deb, mkfs.ext4, qemu-img, cpio),
//! with errors that name the tool and show what it said.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::BuildError;

/// Runs `cmd`, failing with its stderr when it exits non-zero.
pub fn run(what: &str, cmd: &mut Command) -> Result<String, BuildError> {
    tracing::debug!(?cmd, "running");
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| BuildError::Command {
        what: what.to_owned(),
        detail: format!(
            "cannot start {:?}: {e} (is it installed? scripts/up.sh installs the build tools)",
            cmd.get_program()
        ),
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(8).collect();
        return Err(BuildError::Command {
            what: what.to_owned(),
            detail: format!("{} ({})", tail.into_iter().rev().collect::<Vec<_>>().join(" | "), out.status),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a shell pipeline in `dir` (for `find | cpio | gzip`, which has no single tool).
pub fn shell(what: &str, dir: &Path, script: &str) -> Result<String, BuildError> {
    run(what, Command::new("sh").arg("-c").arg(script).current_dir(dir))
}

/// Writes the directory `root` as an ext4 filesystem of `size_gib` (labelled `label`)
/// into `dest` as qcow2, through a sparse raw file that is removed afterwards.
pub fn root_disk(root: &Path, size_gib: u64, label: &str, dest: &Path) -> Result<(), BuildError> {
    let raw = dest.with_extension("raw");
    let f = std::fs::File::create(&raw).map_err(crate::io("creating the raw disk"))?;
    f.set_len(size_gib << 30).map_err(crate::io("sizing the raw disk"))?;
    drop(f);
    let made = run(
        "mkfs.ext4 (install e2fsprogs)",
        Command::new("mkfs.ext4").args(["-q", "-F", "-L", label, "-E", "root_owner=0:0", "-d"]).arg(root).arg(&raw),
    )
    .and_then(|_| {
        run(
            "qemu-img convert (install qemu-utils)",
            Command::new("qemu-img").args(["convert", "-q", "-f", "raw", "-O", "qcow2"]).arg(&raw).arg(dest),
        )
    });
    let _ = std::fs::remove_file(&raw);
    made.map(|_| ())
}
