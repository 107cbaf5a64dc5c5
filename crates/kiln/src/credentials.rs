//! The AWS shared-credentials file (`DATA_DIR/credentials`, mode 0600) and a matching
//! `DATA_DIR/config` naming the default region, so the AWS CLI and SDKs work with two
//! environment variables.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::data_dir::restrict;

/// Adds `[profile]` with the key to `DIR/credentials`; refuses to overwrite a profile.
pub fn add_profile(dir: &Path, profile: &str, access_key_id: &str, secret: &str) -> Result<()> {
    let path = dir.join("credentials");
    let mut text = std::fs::read_to_string(&path).unwrap_or_default();
    if text.lines().any(|l| l.trim() == format!("[{profile}]")) {
        bail!("profile [{profile}] already exists in {}", path.display());
    }
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    let _ = write!(text, "[{profile}]\naws_access_key_id = {access_key_id}\naws_secret_access_key = {secret}\n");
    write_private(&path, &text)
}

/// Gives a named profile the default region in `DIR/config` (the AWS CLI takes a
/// profile's region from there), unless it has a section already.
pub fn add_config_profile(dir: &Path, profile: &str, region: &str) -> Result<()> {
    let path = dir.join("config");
    let mut text = std::fs::read_to_string(&path).unwrap_or_default();
    let header = format!("[profile {profile}]");
    if text.lines().any(|l| l.trim() == header) {
        return Ok(());
    }
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    let _ = write!(text, "{header}\nregion = {region}\noutput = json\n");
    write_private(&path, &text)
}

/// Writes `DIR/config` with the default region, unless it exists.
pub fn write_config(dir: &Path, region: &str) -> Result<()> {
    let path = dir.join("config");
    if path.exists() {
        return Ok(());
    }
    write_private(&path, &format!("[default]\nregion = {region}\noutput = json\n"))
}

/// Writes a private file (0600) whole: beside it first, then renamed over it.
pub(crate) fn write_private(path: &Path, text: &str) -> Result<()> {
    // Write beside and rename, so a crash never leaves half a file.
    let tmp = path.with_extension("tmp");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::io::Write::write_all(&mut f, text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    restrict(path)
}
