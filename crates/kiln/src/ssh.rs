//! `kiln ssh` and the key files it uses: `kiln keys create` saves a new key pair's
//! private key (mode 0600) in the key directory, where `kiln ssh` finds it by the
//! instance's key name; the user is the image's (admin on Debian, ec2-user otherwise).

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
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

/// The running instance `kiln ssh` logs in to, with its public address.
fn target(client: &Client, instance: &str) -> Result<crate::cli::Inst> {
    let i = crate::cli::instances(client, &[instance.to_owned()])?
        .into_iter()
        .next()
        .with_context(|| format!("no instance {instance}"))?;
    if i.state != "running" {
        bail!("{instance} is {}, not running: start it with `kiln start {instance}`", i.state);
    }
    if i.public_ip.is_empty() {
        bail!(
            "{instance} has no public IPv4 address, so the host cannot reach it: launch it in a subnet that maps \
             public addresses, or with --associate-public-ip-address"
        );
    }
    Ok(i)
}

/// The login user of an image: Debian's images use `admin`, the others `ec2-user`.
fn user_of(client: &Client, image_id: &str) -> String {
    let name = client
        .call("DescribeImages", &[("ImageId.1", image_id.to_owned())])
        .ok()
        .and_then(|xml| roxmltree::Document::parse(&xml).ok().and_then(|d| first(&d, "name")))
        .unwrap_or_default();
    if name.starts_with("debian") { "admin" } else { "ec2-user" }.to_owned()
}

/// Replaces this process with ssh to the instance.
pub fn ssh(
    args: &ClientArgs,
    instance: &str,
    identity: Option<PathBuf>,
    user: Option<String>,
    command: &[String],
) -> Result<()> {
    let client = Client::new(args)?;
    let t = target(&client, instance)?;
    let identity = match identity {
        Some(i) => i,
        None => {
            let name = Some(t.key.as_str())
                .filter(|k| !k.is_empty())
                .with_context(|| format!("{instance} was launched without a key pair: give the key with -i FILE"))?;
            let path = key_file(name)?;
            if !path.exists() {
                bail!(
                    "no private key for key pair {name} at {}: give it with -i FILE (`kiln keys create` saves new keys there)",
                    path.display()
                );
            }
            path
        }
    };
    let user = user.unwrap_or_else(|| user_of(&client, &t.image));
    // Addresses are reused by later instances: each instance has its own known host.
    let known = keys_dir()?.join("known_hosts");
    std::fs::create_dir_all(&known)?;
    let err = std::process::Command::new("ssh")
        .arg("-i")
        .arg(&identity)
        .args(["-o", "StrictHostKeyChecking=accept-new", "-o"])
        .arg(format!("UserKnownHostsFile={}", known.join(instance).display()))
        .arg(format!("{user}@{}", t.public_ip))
        .args(command)
        .exec();
    Err(err).context("running ssh (install openssh-client)")
}
