//! `kiln ssh`: logs in to a running instance with the key `kiln keys create` saved
//! for its key name (`keys.rs`) as the image's user (admin on Debian, ec2-user
//! otherwise).

use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::client::{first, Client, ClientArgs};
use crate::keys::{key_file, keys_dir};

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
