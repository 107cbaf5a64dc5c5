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
