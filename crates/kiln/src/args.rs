//! The command line's schema (clap): every command, its flags and their help.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::serve::OPERATOR;
use crate::{cli, client, data_dir};

#[derive(Parser)]
#[command(name = "kiln", version, about = "An EC2-compatible private cloud that runs real virtual machines")]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options the AWS CLI takes anywhere on the line; Kiln's client commands take them too.
const GLOBAL_OPTIONS: [&str; 4] = ["--endpoint", "--region", "--profile", "--output"];

/// The command line with the global options given before the command moved after it,
/// as the AWS CLI reads `aws --region R ec2 …`. Each command declares these options
/// itself (the server's commands have others), so clap's own `global` arguments, which
/// need one set shared by every command, do not fit; this only reorders the words.
pub(crate) fn with_globals_last(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut out = Vec::with_capacity(args.len());
    let mut moved = Vec::new();
    let mut words = args.into_iter();
    out.extend(words.next()); // the program's name
    let mut rest: Vec<std::ffi::OsString> = Vec::new();
    while let Some(w) = words.next() {
        let text = w.to_string_lossy().into_owned();
        let name = text.split('=').next().unwrap_or_default().to_owned();
        if GLOBAL_OPTIONS.contains(&name.as_str()) {
            moved.push(w);
            if !text.contains('=') {
                moved.extend(words.next());
            }
        } else {
            rest.push(w);
            rest.extend(words.by_ref());
        }
    }
    // After the command's words, but before a `--` that starts a remote command.
    let at = rest.iter().position(|w| w == "--").unwrap_or(rest.len());
    let tail = rest.split_off(at);
    out.extend(rest);
    out.extend(moved);
    out.extend(tail);
    out
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Run the cloud: the EC2 API on --listen, state in --data-dir.
    Serve {
        /// Address and port for the EC2 API.
        #[arg(long, default_value = "127.0.0.1:8787")]
        listen: SocketAddr,
        #[command(flatten)]
        dir: DataDirArg,
        /// Keep the cloud's state in this PostgreSQL database (postgres://USER[:PASSWORD]@HOST[:PORT]/DB;
        /// also $KILN_DATABASE_URL) instead of SQLite in DATA_DIR/kiln.db. Recorded in DATA_DIR/database, so
        /// later `kiln` commands on the same data directory use it too. Several servers may share one.
        #[arg(long)]
        database: Option<String>,
        /// Regions to serve, comma-separated [default: every public EC2 region]. EC2's
        /// regions have their real zones; another name like `lab-east-1` gets zones a, b, c.
        #[arg(long, value_delimiter = ',')]
        regions: Vec<String>,
        /// Largest request body accepted, in bytes.
        #[arg(long, default_value_t = 1024 * 1024)]
        max_body: usize,
        /// Do not build or register the Quick Start images.
        #[arg(long)]
        no_quickstart: bool,
        /// Build only these Quick Start recipes (comma-separated ids, e.g.
        /// kiln-tiny-x86_64) [default: all: kiln-tiny for x86_64, arm64, i386, debian-12-amd64].
        #[arg(long, value_delimiter = ',')]
        quickstart: Vec<String>,
        /// Where downloaded Debian packages are kept [default: DATA_DIR/cache].
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        #[command(flatten)]
        host: HostArgs,
        /// A directory ImportImage and ImportSnapshot may read disk images from (besides
        /// DATA_DIR/imports); repeat for more.
        #[arg(long)]
        import_dir: Vec<PathBuf>,
        /// Serve the hosts' agents (`kiln agent`) here: HTTP/2 over mutual TLS.
        #[arg(long)]
        agent_listen: Option<SocketAddr>,
        /// A name or address agents reach the control plane by, for its certificate
        /// (besides the --agent-listen address, localhost and 127.0.0.1); repeat for more.
        #[arg(long)]
        agent_name: Vec<String>,
    },
    /// Run this machine as a host of a control plane: join it once with a token from
    /// `kiln host join-token`, then report to it.
    Agent {
        /// The control plane's agents' endpoint, https://HOST:PORT (kiln serve --agent-listen).
        #[arg(long)]
        control: String,
        /// The one-time join token (needed only the first time).
        #[arg(long, env = "KILN_JOIN_TOKEN")]
        token: Option<String>,
        /// Renew the host's client certificate now.
        #[arg(long)]
        renew: bool,
        /// The accelerator: probe (auto), or force kvm or tcg.
        #[arg(long, default_value = "auto", value_parser = ["auto", "kvm", "tcg"])]
        accel: String,
        /// Serve the control plane's calls on this address (HTTP/2 over mutual TLS,
        /// with the host's certificate), the one the control plane reaches this host
        /// at: a specific IP address and port, not 0.0.0.0.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Guest networking on this host: vpc (namespaces, taps, nftables; needs root,
        /// iproute2 and nftables), user (QEMU's user-mode network), or auto (vpc where
        /// possible).
        #[arg(long, default_value = "auto", value_parser = ["auto", "vpc", "user"])]
        network: String,
        /// Do not NAT instances' traffic to the outside on this host.
        #[arg(long)]
        no_egress_nat: bool,
        /// How many GiB of copies of the store's image layers and kernels this host
        /// keeps beyond those its VMs use; the least recently used go first.
        #[arg(long, default_value_t = kiln_agent::DEFAULT_LAYER_ROOM >> 30)]
        layer_cache_gib: u64,
        #[command(flatten)]
        dir: DataDirArg,
    },
    /// Bridge standard input and output to a Unix socket (QEMU runs this to carry a
    /// guest's metadata requests to Kiln).
    #[command(hide = true)]
    Pipe { socket: PathBuf },
    /// This host: its accelerator, capacity and what is in use.
    Host {
        #[command(subcommand)]
        command: HostCommand,
    },
    /// The cloud's database: its schema and leases, and moving it to PostgreSQL.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// Manage accounts (local administration of a data directory).
    Account {
        #[command(subcommand)]
        command: AccountCommand,
    },
    /// Machine images: list the catalog by category, build, import, share, deregister.
    #[command(alias = "image")]
    Images {
        #[command(subcommand)]
        command: Option<ImageCommand>,
        #[command(flatten)]
        g: cli::Global,
    },
    /// The Marketplace catalog (operator commands).
    Marketplace {
        #[command(subcommand)]
        command: MarketplaceCommand,
    },
    /// Log in to an instance with ssh, through its public address: the user is the
    /// image's (admin on Debian, ec2-user otherwise) and the key the one `kiln keys
    /// create` saved for the instance's key pair, unless -i gives one.
    Ssh {
        instance: String,
        /// The private key file.
        #[arg(short = 'i', long)]
        identity: Option<PathBuf>,
        /// Log in as this user.
        #[arg(short = 'l', long)]
        user: Option<String>,
        #[command(flatten)]
        client: client::ClientArgs,
        /// A command to run instead of a shell (after --).
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Key pairs; `kiln keys create` keeps the private key where `kiln ssh` finds it.
    Keys {
        #[command(subcommand)]
        command: Option<KeysCommand>,
        #[command(flatten)]
        g: cli::Global,
    },
    /// Launch instances of an image (by name or id).
    Run {
        #[command(flatten)]
        run: cli::RunArgs,
        #[command(flatten)]
        g: cli::Global,
    },
    /// List instances (without the terminated ones unless --all).
    Ls {
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        g: cli::Global,
    },
    /// One instance in detail.
    Show {
        instance: String,
        /// Print only this field's value (e.g. public_ip, state).
        #[arg(long)]
        field: Option<String>,
        #[command(flatten)]
        g: cli::Global,
    },
    /// Stop instances (ACPI power-off; --force ends them at once).
    Stop {
        #[arg(required = true)]
        instances: Vec<String>,
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        g: cli::Global,
    },
    /// Start stopped instances.
    Start {
        #[arg(required = true)]
        instances: Vec<String>,
        #[command(flatten)]
        g: cli::Global,
    },
    /// Reboot instances.
    Reboot {
        #[arg(required = true)]
        instances: Vec<String>,
        #[command(flatten)]
        g: cli::Global,
    },
    /// Terminate instances.
    Rm {
        #[arg(required = true)]
        instances: Vec<String>,
        #[command(flatten)]
        g: cli::Global,
    },
    /// An instance's serial console (--follow keeps printing).
    Console {
        instance: String,
        #[arg(long, short = 'f')]
        follow: bool,
        #[command(flatten)]
        g: cli::Global,
    },
    /// Security groups: list, create, allow, revoke, rm.
    Sg {
        #[command(subcommand)]
        command: Option<SgCommand>,
        #[command(flatten)]
        g: cli::Global,
    },
    /// VPCs: `kiln vpc create CIDR` makes one with a public subnet, an internet gateway
    /// and a default route in one go.
    Vpc {
        #[command(subcommand)]
        command: Option<VpcCommand>,
        #[command(flatten)]
        g: cli::Global,
    },
    /// Elastic IPs: allocate (and associate), associate, release.
    Eip {
        #[command(subcommand)]
        command: Option<EipCommand>,
        #[command(flatten)]
        g: cli::Global,
    },
    /// EBS volumes: create, attach, detach, grow, rm (each waits for the state it makes).
    #[command(alias = "volume")]
    Volumes {
        #[command(subcommand)]
        command: Option<VolumesCommand>,
        #[command(flatten)]
        g: cli::Global,
    },
    /// Your EBS snapshots: create (waits until completed), rm.
    #[command(alias = "snapshot")]
    Snapshots {
        #[command(subcommand)]
        command: Option<SnapshotsCommand>,
        #[command(flatten)]
        g: cli::Global,
    },
    /// Make an AMI of an instance (rebooted for consistency unless --no-reboot).
    CreateImage {
        instance: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        no_reboot: bool,
        /// Answer as soon as the image is pending, as the API does (by default kiln
        /// waits until it is available, showing progress).
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        g: cli::Global,
    },
    /// Instance types (--arch x86_64|arm64|i386 to narrow).
    Types {
        #[arg(long)]
        arch: Option<String>,
        #[command(flatten)]
        g: cli::Global,
    },
    /// Regions and their zones.
    Regions {
        #[command(flatten)]
        g: cli::Global,
    },
    /// The supported EC2 actions, as the README's Markdown table.
    #[command(hide = true)]
    Actions,
    /// Shell completions: `kiln completions bash > /etc/bash_completion.d/kiln`.
    Completions { shell: clap_complete::Shell },
}

#[derive(Subcommand)]
pub(crate) enum ImageCommand {
    /// List the images you may launch, by category (quickstart, mine, shared, marketplace).
    List {
        /// Only this category.
        #[arg(long, value_parser = cli::CATEGORIES.to_vec())]
        category: Option<String>,
        #[command(flatten)]
        g: cli::Global,
    },
    /// Let another account launch one of your images.
    Share {
        image: String,
        account: String,
        #[command(flatten)]
        g: cli::Global,
    },
    /// Take back another account's permission to launch one of your images.
    Unshare {
        image: String,
        account: String,
        #[command(flatten)]
        g: cli::Global,
    },
    /// Deregister one of your images.
    Deregister {
        image: String,
        #[command(flatten)]
        g: cli::Global,
    },
    /// Import a disk image file (raw, qcow2, vmdk, vhd, vhdx) as an AMI.
    Import {
        file: PathBuf,
        /// The account that will own the image.
        #[arg(long, default_value = OPERATOR)]
        account: String,
        /// The region to register it in.
        #[arg(long, default_value = "us-east-1")]
        region: String,
        /// The image's architecture.
        #[arg(long, default_value = "x86_64")]
        architecture: String,
        #[command(flatten)]
        dir: DataDirArg,
    },
    /// Build an image from a recipe (a built-in name such as kiln-tiny-x86_64, or a
    /// .toml file) and register it as an AMI.
    Build {
        recipe: String,
        /// The account that will own the image.
        #[arg(long, default_value = OPERATOR)]
        account: String,
        /// Regions to register it in, comma-separated [default: every region].
        #[arg(long, value_delimiter = ',')]
        region: Vec<String>,
        /// Make the image public.
        #[arg(long)]
        public: bool,
        /// Where downloaded Debian packages are kept [default: DATA_DIR/cache].
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        #[command(flatten)]
        dir: DataDirArg,
    },
}

#[derive(Subcommand)]
pub(crate) enum MarketplaceCommand {
    /// List an AMI in the Marketplace: its owner becomes a vendor (alias
    /// aws-marketplace) and the image public, with the product code.
    Publish {
        image_id: String,
        #[arg(long)]
        product_code: String,
        #[arg(long, default_value = "us-east-1")]
        region: String,
        #[command(flatten)]
        dir: DataDirArg,
    },
}

#[derive(Subcommand)]
pub(crate) enum DbCommand {
    /// Show where the cloud's state is kept, its schema version, which server holds
    /// which lease, and the workflows by kind and status.
    Status {
        #[command(flatten)]
        dir: DataDirArg,
    },
    /// Copy a cloud kept in SQLite (accounts, images, instances and everything else)
    /// into an empty PostgreSQL database, check the counts, and make the data
    /// directory use it. Stop `kiln serve` first; its instances keep running and the
    /// next `kiln serve` adopts them.
    Migrate {
        /// The cloud to copy: sqlite:DATA_DIR (or the path of its kiln.db).
        #[arg(long)]
        from: String,
        /// The database to copy it into: postgres://USER[:PASSWORD]@HOST[:PORT]/DB.
        #[arg(long)]
        to: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum HostCommand {
    /// Print a one-time token a host joins the cloud's ZONE with (`kiln agent --token`).
    JoinToken {
        #[arg(long)]
        zone: String,
        #[command(flatten)]
        dir: DataDirArg,
    },
    /// The joined hosts: zone, state, capacity and last heartbeat.
    List {
        #[command(flatten)]
        dir: DataDirArg,
    },
    /// Stop new placements on HOST and ask for its instances to be moved off.
    Drain {
        host: kiln_agent_api::HostId,
        #[command(flatten)]
        dir: DataDirArg,
    },
    /// Stop new placements on HOST; its instances stay.
    Cordon {
        host: kiln_agent_api::HostId,
        #[command(flatten)]
        dir: DataDirArg,
    },
    /// Take HOST out of the fleet: its certificate is no longer accepted.
    Retire {
        host: kiln_agent_api::HostId,
        #[command(flatten)]
        dir: DataDirArg,
    },
    /// Let HOST take new placements again (after drain or cordon).
    Activate {
        host: kiln_agent_api::HostId,
        #[command(flatten)]
        dir: DataDirArg,
    },
    /// Ask HOST's agent itself, over the control plane's channel to it (`kiln agent
    /// --listen`), for its capacity, the VMs it runs and its VPC networks.
    Status {
        host: kiln_agent_api::HostId,
        #[command(flatten)]
        dir: DataDirArg,
    },
    /// Show the accelerator (KVM or TCG, as probed), capacity and use.
    Info {
        #[command(flatten)]
        host: HostArgs,
        #[command(flatten)]
        dir: DataDirArg,
    },
}

/// How this host runs instances.
#[derive(clap::Args, Clone)]
pub(crate) struct HostArgs {
    /// The accelerator: probe (auto), or force kvm or tcg.
    #[arg(long, default_value = "auto", value_parser = ["auto", "kvm", "tcg"])]
    pub(crate) accel: String,
    /// vCPUs offered per host CPU.
    #[arg(long, default_value_t = 8.0)]
    pub(crate) cpu_overcommit: f64,
    /// Memory offered per MiB of host memory.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) memory_overcommit: f64,
    /// vCPUs one account may run at once in a region.
    #[arg(long, default_value_t = 64)]
    pub(crate) vcpu_quota: u32,
    /// Host memory counted per instance beyond its type's (QEMU's own), MiB.
    #[arg(long, default_value_t = kiln_control::DEFAULT_VM_OVERHEAD_MIB)]
    pub(crate) vm_overhead_mib: u32,
    /// Host memory never offered to instances, MiB.
    #[arg(long, default_value_t = kiln_control::DEFAULT_HOST_RESERVED_MIB)]
    pub(crate) host_reserved_mib: u32,
    /// Each TCG guest's translation cache, MiB, unless its image names its own
    /// (kiln-tiny: 16); 0 keeps QEMU's own default (larger) for every guest.
    #[arg(long, default_value_t = 32)]
    pub(crate) tcg_tb_size: u32,
    /// Start guests without the free-page-reporting balloon (freed guest memory then
    /// stays with QEMU).
    #[arg(long)]
    pub(crate) no_balloon: bool,
    /// Guest networking: vpc (namespaces, taps, nftables; needs root, iproute2 and
    /// nftables), user (QEMU's user-mode network: an unprivileged fallback without
    /// public addresses or security groups), or auto (vpc where possible).
    #[arg(long, default_value = "auto", value_parser = ["auto", "vpc", "user"])]
    pub(crate) network: String,
    /// The pool public IPv4 addresses come from; the host routes it to the VPCs.
    #[arg(long, default_value = kiln_control::DEFAULT_PUBLIC_POOL)]
    pub(crate) public_ip_pool: ipnet::Ipv4Net,
    /// Do not NAT instances' traffic to the outside on the host.
    #[arg(long)]
    pub(crate) no_egress_nat: bool,
}

#[derive(Subcommand)]
pub(crate) enum SgCommand {
    /// List security groups with their ingress rules.
    List {
        #[command(flatten)]
        g: cli::Global,
    },
    /// Create a security group (in the default VPC unless --vpc).
    Create {
        name: String,
        #[arg(long, default_value = "made with kiln")]
        description: String,
        #[arg(long)]
        vpc: Option<String>,
        #[command(flatten)]
        g: cli::Global,
    },
    /// Allow inbound traffic: PORTS is 22, 80/tcp, 8000-8080/udp, icmp or all.
    Allow {
        #[command(flatten)]
        rule: cli::RuleArgs,
        #[command(flatten)]
        g: cli::Global,
    },
    /// Revoke a rule made with allow (same arguments).
    Revoke {
        #[command(flatten)]
        rule: cli::RuleArgs,
        #[command(flatten)]
        g: cli::Global,
    },
    /// Delete a security group.
    Rm {
        group: String,
        #[command(flatten)]
        g: cli::Global,
    },
}

#[derive(Subcommand)]
pub(crate) enum VpcCommand {
    /// List VPCs with their gateways and subnets.
    List {
        #[command(flatten)]
        g: cli::Global,
    },
    /// A VPC with a public subnet (its first /24), an internet gateway, a route table
    /// routing 0.0.0.0/0 to it, and DNS hostnames.
    Create {
        cidr: String,
        /// A Name tag.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        g: cli::Global,
    },
    /// Delete a VPC with its own route tables, subnets and gateway (terminate its
    /// instances first).
    Rm {
        vpc: String,
        #[command(flatten)]
        g: cli::Global,
    },
}

#[derive(Subcommand)]
pub(crate) enum EipCommand {
    /// List Elastic IPs.
    List {
        #[command(flatten)]
        g: cli::Global,
    },
    /// Allocate an Elastic IP; with --instance, associate it at once.
    Allocate {
        #[arg(long)]
        instance: Option<String>,
        #[command(flatten)]
        g: cli::Global,
    },
    /// Associate an Elastic IP (allocation id or address) with an instance.
    Associate {
        address: String,
        instance: String,
        #[command(flatten)]
        g: cli::Global,
    },
    /// Disassociate and release an Elastic IP.
    Rm {
        address: String,
        #[command(flatten)]
        g: cli::Global,
    },
}

#[derive(Subcommand)]
pub(crate) enum VolumesCommand {
    /// List your volumes and what they are attached to.
    List {
        #[command(flatten)]
        g: cli::Global,
    },
    /// Create a volume (blank, or from --snapshot) and wait until it is available.
    Create {
        /// Its size in GiB [default with --snapshot: the snapshot's].
        #[arg(long, required_unless_present = "snapshot")]
        size: Option<u32>,
        /// The volume type: gp3, gp2, io1, io2, st1, sc1 or standard.
        #[arg(long = "type", default_value = "gp3")]
        volume_type: String,
        /// The availability zone [default: the region's first].
        #[arg(long)]
        zone: Option<String>,
        /// Make it from this snapshot.
        #[arg(long)]
        snapshot: Option<String>,
        /// A Name tag.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        g: cli::Global,
    },
    /// Attach a volume to an instance of its zone and wait until it is attached.
    Attach {
        volume: String,
        instance: String,
        /// The device name [default: the first of /dev/sdf to /dev/sdp the instance does not use].
        #[arg(long)]
        device: Option<String>,
        #[command(flatten)]
        g: cli::Global,
    },
    /// Detach a volume and wait until it is available.
    Detach {
        volume: String,
        /// Detach at once, without the guest's cooperation.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        g: cli::Global,
    },
    /// Grow a volume to SIZE GiB (live when attached) and wait until it is done.
    Grow {
        volume: String,
        size: u32,
        #[command(flatten)]
        g: cli::Global,
    },
    /// Delete a volume (detach it first).
    Rm {
        volume: String,
        #[command(flatten)]
        g: cli::Global,
    },
}

#[derive(Subcommand)]
pub(crate) enum SnapshotsCommand {
    /// List your snapshots.
    List {
        #[command(flatten)]
        g: cli::Global,
    },
    /// Snapshot a volume and wait until the snapshot is completed.
    Create {
        volume: String,
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        g: cli::Global,
    },
    /// Delete a snapshot (refused while an image uses it).
    Rm {
        snapshot: String,
        #[command(flatten)]
        g: cli::Global,
    },
}

#[derive(Subcommand)]
pub(crate) enum KeysCommand {
    /// List key pairs, and whether their private keys are saved here.
    List {
        #[command(flatten)]
        g: cli::Global,
    },
    /// Delete a key pair and its saved private key.
    Rm {
        name: String,
        #[command(flatten)]
        g: cli::Global,
    },
    /// CreateKeyPair, saving the private key (mode 0600) in the key directory
    /// ($KILN_KEYS_DIR, else ~/.config/kiln/keys).
    Create {
        name: String,
        /// rsa or ed25519.
        #[arg(long = "type", default_value = "ed25519", value_parser = ["rsa", "ed25519"])]
        key_type: String,
        #[command(flatten)]
        client: client::ClientArgs,
    },
}

#[derive(Subcommand)]
pub(crate) enum AccountCommand {
    /// Create an account and add a profile NAME to DATA_DIR/credentials.
    Create {
        name: String,
        #[command(flatten)]
        dir: DataDirArg,
    },
    /// List accounts.
    List {
        #[command(flatten)]
        dir: DataDirArg,
    },
    /// Set an account's console password (asked twice on a terminal; else read as
    /// the first line of standard input).
    Password {
        name: String,
        #[command(flatten)]
        dir: DataDirArg,
    },
}

#[derive(clap::Args)]
pub(crate) struct DataDirArg {
    /// Where Kiln keeps its state [default: $KILN_HOME, else /var/lib/kiln as root, else ~/.local/share/kiln].
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
}

impl DataDirArg {
    pub(crate) fn resolve(&self) -> Result<PathBuf> {
        data_dir::resolve(self.data_dir.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<std::ffi::OsString> {
        line.split(' ').map(Into::into).collect()
    }

    #[test]
    fn global_options_go_after_the_command() {
        assert_eq!(with_globals_last(words("kiln --endpoint http://x types")), words("kiln types --endpoint http://x"));
        assert_eq!(
            with_globals_last(words("kiln --region=eu-west-1 --output json sg allow web 22")),
            words("kiln sg allow web 22 --region=eu-west-1 --output json")
        );
        assert_eq!(
            with_globals_last(words("kiln --profile p ssh i-1 -- uname -a")),
            words("kiln ssh i-1 --profile p -- uname -a")
        );
        // After the command they stay where they are.
        assert_eq!(with_globals_last(words("kiln ls --region us-west-1")), words("kiln ls --region us-west-1"));
        assert_eq!(with_globals_last(words("kiln")), words("kiln"));
    }
}
