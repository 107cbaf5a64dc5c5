//! Key files: `kiln keys create` saves a new key pair's private key (mode 0600) in the
//! key directory, where `kiln ssh` and `kiln keys list` find it by the key's name.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::client::{first, Client, ClientArgs};

/// `$KILN_KEYS_DIR`, else `$XDG_CONFIG_HOME/kiln/keys`, else `~/.config/kiln/keys`.
pub fn keys_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("KILN_KEYS_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("kiln/keys"));
    }
    let home = std::env::var_os("HOME").context("HOME is not set: set KILN_KEYS_DIR")?;
    Ok(PathBuf::from(home).join(".config/kiln/keys"))
}

/// The file a key pair's private key is kept in. Key names may hold characters that
/// do not belong in a path, so those are replaced.
pub fn key_file(name: &str) -> Result<PathBuf> {
    let safe: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    Ok(keys_dir()?.join(format!("{}.pem", safe.trim_start_matches('.'))))
}

/// CreateKeyPair, then the private key saved where `kiln ssh` looks.
pub fn create_key(args: &ClientArgs, name: &str, key_type: &str) -> Result<()> {
    let path = key_file(name)?;
    if path.exists() {
        bail!("{} exists already: delete it, or choose another key name", path.display());
    }
    let client = Client::new(args)?;
    let xml = client.call("CreateKeyPair", &[("KeyName", name.to_owned()), ("KeyType", key_type.to_owned())])?;
    let doc = roxmltree::Document::parse(&xml)?;
    let material = first(&doc, "keyMaterial").context("CreateKeyPair returned no key material")?;
    let fingerprint = first(&doc, "keyFingerprint").unwrap_or_default();
    let dir = keys_dir()?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("saving the private key to {}", path.display()))?;
    std::io::Write::write_all(&mut f, format!("{}\n", material.trim_end()).as_bytes())?;
    println!("Created key pair {name} ({fingerprint}); private key saved to {}", path.display());
    Ok(())
}
