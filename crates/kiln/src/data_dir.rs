//! Where Kiln keeps its state, and keeping it private.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// `--data-dir`, else `$KILN_HOME`, else `/var/lib/kiln` as root, else
/// `~/.local/share/kiln`.
pub fn resolve(given: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(d) = given {
        return Ok(d);
    }
    if let Some(home) = std::env::var_os("KILN_HOME").filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(home));
    }
    // Judged from /proc, as the workspace forbids the unsafe call to geteuid.
    if is_root() {
        return Ok(PathBuf::from("/var/lib/kiln"));
    }
    let home = std::env::var_os("HOME").context("HOME is not set: give --data-dir or set KILN_HOME")?;
    Ok(PathBuf::from(home).join(".local/share/kiln"))
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// Creates the directory (mode 0700) if needed.
pub fn prepare(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating the data directory {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("making {} private", dir.display()))?;
    Ok(())
}

/// Makes a file readable by its owner only.
pub fn restrict(path: &Path) -> Result<()> {
    if path.exists() {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("making {} private", path.display()))?;
    }
    Ok(())
}
