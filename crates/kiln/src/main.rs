//! The `kiln` binary: `kiln serve` runs the cloud; `kiln account` manages accounts in a
//! data directory; `kiln image` builds images; `kiln bench` measures.

mod bench;
mod cli;
mod client;
mod credentials;
mod data_dir;
mod keys;
mod quickstart;
mod ssh;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use kiln_control::Cloud;
use kiln_store::Store;
use kiln_types::region::{is_valid_region_name, RegionConfig, DEFAULT_REGIONS};
use sha2::Digest as _;

#[derive(Parser)]
#[command(name = "kiln", version, about = "An EC2-compatible private cloud that runs real virtual machines")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the cloud: the EC2 API on --listen, state in --data-dir.
    Serve {
        /// Address and port for the EC2 API.
        #[arg(long, default_value = "127.0.0.1:8787")]
        listen: SocketAddr,
        #[command(flatten)]
        dir: DataDirArg,
        /// Regions to serve, comma-separated (each gets zones a, b and c).
        #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_REGIONS.map(String::from))]
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
    /// Measure the API against a baseline server.
    Bench(bench::BenchArgs),
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
enum ImageCommand {
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
enum MarketplaceCommand {
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
enum HostCommand {
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
struct HostArgs {
    /// The accelerator: probe (auto), or force kvm or tcg.
    #[arg(long, default_value = "auto", value_parser = ["auto", "kvm", "tcg"])]
    accel: String,
    /// vCPUs offered per host CPU.
    #[arg(long, default_value_t = 8.0)]
    cpu_overcommit: f64,
    /// Memory offered per MiB of host memory.
    #[arg(long, default_value_t = 1.0)]
    memory_overcommit: f64,
    /// vCPUs one account may run at once in a region.
    #[arg(long, default_value_t = 64)]
    vcpu_quota: u32,
    /// Guest networking: vpc (namespaces, taps, nftables; needs root, iproute2 and
    /// nftables), user (QEMU's user-mode network: an unprivileged fallback without
    /// public addresses or security groups), or auto (vpc where possible).
    #[arg(long, default_value = "auto", value_parser = ["auto", "vpc", "user"])]
    network: String,
    /// The pool public IPv4 addresses come from; the host routes it to the VPCs.
    #[arg(long, default_value = kiln_control::DEFAULT_PUBLIC_POOL)]
    public_ip_pool: ipnet::Ipv4Net,
    /// Do not NAT instances' traffic to the outside on the host.
    #[arg(long)]
    no_egress_nat: bool,
}

/// The tag of a data directory's namespaces, links and host table: it keeps two Kilns
/// on one machine apart.
fn net_tag(canonical_dir: &std::path::Path) -> String {
    let digest = sha2::Sha256::digest(canonical_dir.as_os_str().as_encoded_bytes());
    hex::encode(&digest[..2])
}

/// Whether this process can make namespaces and nftables rules.
fn can_network() -> bool {
    let root = nix::unistd::geteuid().is_root();
    let found = |p: &str, v: &str| std::process::Command::new(p).arg(v).output().is_ok_and(|o| o.status.success());
    root && found("ip", "-V") && found("nft", "--version")
}

impl HostArgs {
    fn agent(&self, dir: &std::path::Path) -> Arc<kiln_agent::LocalAgent> {
        let forced = match self.accel.as_str() {
            "kvm" => Some(kiln_agent_api::Accel::Kvm),
            "tcg" => Some(kiln_agent_api::Accel::Tcg),
            _ => None,
        };
        let agent = kiln_agent::LocalAgent::new(dir.join("instances"), forced);
        let vpc = match self.network.as_str() {
            "vpc" => true,
            "user" => false,
            _ => {
                let ok = can_network();
                if !ok {
                    tracing::warn!(
                        "VPC networking needs root, iproute2 and nftables; guests get QEMU's user-mode network \
                         instead (no public addresses, security groups not enforced)"
                    );
                }
                ok
            }
        };
        if !vpc {
            return Arc::new(agent);
        }
        let canonical = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        Arc::new(agent.with_network(kiln_agent::net::NetConfig {
            tag: net_tag(&canonical),
            public_pool: (self.public_ip_pool.network(), self.public_ip_pool.prefix_len()),
            egress_nat: !self.no_egress_nat,
        }))
    }

    fn limits(&self) -> kiln_control::Limits {
        kiln_control::Limits {
            cpu_overcommit: self.cpu_overcommit,
            memory_overcommit: self.memory_overcommit,
            vcpu_quota: self.vcpu_quota,
        }
    }
}

#[derive(Subcommand)]
enum SgCommand {
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
enum KeysCommand {
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
enum AccountCommand {
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
}

#[derive(clap::Args)]
struct DataDirArg {
    /// Where Kiln keeps its state [default: $KILN_HOME, else /var/lib/kiln as root, else ~/.local/share/kiln].
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

impl DataDirArg {
    fn resolve(&self) -> Result<PathBuf> {
        data_dir::resolve(self.data_dir.clone())
    }
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("kiln: {e:#}");
        std::process::exit(1);
    }
}

fn default_regions() -> Vec<String> {
    DEFAULT_REGIONS.map(String::from).to_vec()
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve { listen, dir, regions, max_body, no_quickstart, quickstart, cache_dir, host, import_dir } => {
            let dir = dir.resolve()?;
            let cache = cache_dir.unwrap_or_else(|| dir.join("cache"));
            for q in &quickstart {
                if !kiln_builder::Recipe::builtin_ids().contains(q) {
                    bail!(
                        "--quickstart {q}: no such recipe (built-in: {})",
                        kiln_builder::Recipe::builtin_ids().join(", ")
                    );
                }
            }
            serve(listen, dir, &regions, max_body, (!no_quickstart).then_some((cache, quickstart)), &host, import_dir)
        }
        Command::Pipe { socket } => pipe(&socket),
        Command::Host { command: HostCommand::Info { host, dir } } => host_info(&dir.resolve()?, &host),
        Command::Account { command: AccountCommand::Create { name, dir } } => {
            let dir = dir.resolve()?;
            let cloud = open(&dir, &default_regions())?;
            let new = cloud.create_account(&name, false)?;
            credentials::add_profile(&dir, &name, &new.key.access_key_id, &new.key.secret)?;
            credentials::add_config_profile(&dir, &name, DEFAULT_REGIONS[0])?;
            println!("account    {}", new.account.id);
            println!("name       {}", new.account.name);
            println!("access key {}", new.key.access_key_id);
            println!("profile    {name} in {}", dir.join("credentials").display());
            Ok(())
        }
        Command::Account { command: AccountCommand::List { dir } } => {
            let dir = dir.resolve()?;
            let cloud = open(&dir, &default_regions())?;
            println!("{:<14} {:<20} {:<9} CREATED", "ACCOUNT", "NAME", "ROLE");
            for a in cloud.accounts()? {
                let role = if a.is_provider {
                    "provider"
                } else if a.is_vendor {
                    "vendor"
                } else {
                    "user"
                };
                println!("{:<14} {:<20} {:<9} {}", a.id, a.name, role, a.created_at);
            }
            Ok(())
        }
        Command::Images {
            g: _,
            command: Some(ImageCommand::Build { recipe, account, region, public, cache_dir, dir }),
        } => {
            let dir = dir.resolve()?;
            let cloud = open(&dir, &default_regions())?;
            let recipe = kiln_builder::Recipe::load(&recipe)?;
            let owner = cloud
                .account_by_name(&account)?
                .with_context(|| format!("no account named '{account}' (see `kiln account list`)"))?;
            let regions = if region.is_empty() { default_regions() } else { region };
            let cache = cache_dir.unwrap_or_else(|| dir.join("cache"));
            let made = quickstart::build_and_register(&cloud, &recipe, &owner.id, &regions, public, &cache)?;
            if made.is_empty() {
                println!("{} is already registered for {account} in {}", recipe.id, regions.join(", "));
            }
            for (region, image) in made {
                println!("{region}\t{image}");
            }
            Ok(())
        }
        Command::Images { command: None, g } => cli::images(&g, None),
        Command::Images { g: _, command: Some(ImageCommand::List { category, g }) } => {
            cli::images(&g, category.as_deref())
        }
        Command::Images { g: _, command: Some(ImageCommand::Share { image, account, g }) } => {
            cli::share(&g, &image, &account, false)
        }
        Command::Images { g: _, command: Some(ImageCommand::Unshare { image, account, g }) } => {
            cli::share(&g, &image, &account, true)
        }
        Command::Images { g: _, command: Some(ImageCommand::Deregister { image, g }) } => cli::deregister(&g, &image),
        Command::Images { g: _, command: Some(ImageCommand::Import { file, account, region, architecture, dir }) } => {
            import_file(&dir.resolve()?, &file, &account, &region, &architecture)
        }
        Command::Marketplace { command: MarketplaceCommand::Publish { image_id, product_code, region, dir } } => {
            let cloud = open(&dir.resolve()?, &default_regions())?;
            let image = cloud.publish_marketplace(&region, &image_id, &product_code)?;
            println!("{} is listed in the Marketplace with product code(s) {}", image.id, image.product_codes);
            Ok(())
        }
        Command::Bench(args) => bench::run(args),
        Command::Ssh { instance, identity, user, client, command } => {
            ssh::ssh(&client, &instance, identity, user, &command)
        }
        Command::Keys { g: _, command: Some(KeysCommand::Create { name, key_type, client }) } => {
            keys::create_key(&client, &name, &key_type)
        }
        Command::Keys { command: None, g } => cli::keys(&g),
        Command::Keys { g: _, command: Some(KeysCommand::List { g }) } => cli::keys(&g),
        Command::Keys { g: _, command: Some(KeysCommand::Rm { name, g }) } => cli::delete_key(&g, &name),
        Command::Run { run, g } => cli::run(&g, &run),
        Command::Ls { all, g } => cli::ls(&g, all),
        Command::Show { instance, field, g } => cli::show_instance(&g, &instance, field.as_deref()),
        Command::Stop { instances, force, g } => cli::lifecycle(&g, "StopInstances", &instances, force),
        Command::Start { instances, g } => cli::lifecycle(&g, "StartInstances", &instances, false),
        Command::Reboot { instances, g } => cli::lifecycle(&g, "RebootInstances", &instances, false),
        Command::Rm { instances, g } => cli::lifecycle(&g, "TerminateInstances", &instances, false),
        Command::Console { instance, follow, g } => cli::console(&g, &instance, follow),
        Command::Sg { command: None, g } => cli::groups(&g),
        Command::Sg { g: _, command: Some(SgCommand::List { g }) } => cli::groups(&g),
        Command::Sg { g: _, command: Some(SgCommand::Create { name, description, vpc, g }) } => {
            cli::create_group(&g, &name, &description, vpc.as_deref())
        }
        Command::Sg { g: _, command: Some(SgCommand::Allow { rule, g }) } => cli::rule(&g, &rule, false),
        Command::Sg { g: _, command: Some(SgCommand::Revoke { rule, g }) } => cli::rule(&g, &rule, true),
        Command::Sg { g: _, command: Some(SgCommand::Rm { group, g }) } => cli::delete_group(&g, &group),
        Command::CreateImage { instance, name, description, no_reboot, no_wait, g } => {
            cli::create_image(&g, &instance, &name, description.as_deref(), no_reboot, !no_wait)
        }
        Command::Types { arch, g } => cli::types(&g, arch.as_deref()),
        Command::Regions { g } => cli::regions(&g),
        Command::Actions => {
            cli::emit(cli::actions_table().trim_end());
            Ok(())
        }
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut <Cli as clap::CommandFactory>::command(), "kiln", &mut script);
            cli::emit(String::from_utf8_lossy(&script).trim_end());
            Ok(())
        }
    }
}

fn region_configs(names: &[String]) -> Result<Vec<RegionConfig>> {
    if names.is_empty() {
        bail!("--regions needs at least one region");
    }
    names
        .iter()
        .map(|n| {
            if is_valid_region_name(n) {
                Ok(RegionConfig::with_three_zones(n))
            } else {
                bail!("'{n}' is not a region name like us-east-1")
            }
        })
        .collect()
}

/// Opens the data directory's store as a control plane.
fn open(dir: &std::path::Path, regions: &[String]) -> Result<Cloud> {
    data_dir::prepare(dir)?;
    let store =
        Store::open(&dir.join("kiln.db")).with_context(|| format!("opening the database in {}", dir.display()))?;
    data_dir::restrict(&dir.join("kiln.db"))?;
    Ok(Cloud::new(store, region_configs(regions)?, dir.to_path_buf()))
}

/// The account made on first start, whose key is the `[default]` profile.
const OPERATOR: &str = "operator";

fn serve(
    listen: SocketAddr,
    dir: PathBuf,
    regions: &[String],
    max_body: usize,
    quickstart: Option<(PathBuf, Vec<String>)>,
    host: &HostArgs,
    import_dirs: Vec<PathBuf>,
) -> Result<()> {
    let exe = std::env::current_exe().context("finding the kiln binary")?;
    let mut cloud = open(&dir, regions)?.with_agent(host.agent(&dir), host.limits(), exe);
    cloud.import_dirs = import_dirs;
    cloud.public_pool = host.public_ip_pool;
    std::fs::create_dir_all(dir.join("imports")).context("creating DATA_DIR/imports")?;
    let first_start = cloud.account_by_name(OPERATOR)?.is_none();
    if first_start {
        let new = cloud.create_account(OPERATOR, false)?;
        credentials::add_profile(&dir, "default", &new.key.access_key_id, &new.key.secret)?;
        println!("Created the operator account {} and its access key.", new.account.id);
    }
    cloud.ensure_defaults()?;
    credentials::write_config(&dir, &regions[0])?;
    cloud.remove_stray_volumes()?;
    cloud.collect_layers()?;
    cloud.purge_finished_workflows()?;
    // Probed once, here, rather than by the first RunInstances.
    tracing::info!(qemu = %cloud.agent()?.info().qemu_version, "host");
    for action in kiln_builder::clean_interrupted(&dir.join("builds")) {
        tracing::warn!(%action, "cleaning up an interrupted image build");
    }
    cloud.fail_interrupted_builds()?;
    let cloud = Arc::new(cloud);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reconciler = {
        let (cloud, stop) = (cloud.clone(), stop.clone());
        std::thread::spawn(move || {
            let r = kiln_control::reconcile::Reconciler::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Err(e) = cloud.reconcile(&r) {
                    tracing::warn!(error = %e, "reconcile pass failed");
                }
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
        })
    };
    let importer = {
        let (cloud, stop) = (cloud.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Err(e) = cloud.process_imports() {
                    tracing::warn!(error = %e, "import pass failed");
                }
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
        })
    };
    let builder = quickstart.map(|(cache, only)| {
        // The API answers at once; the images appear as they are built.
        let (cloud, stop) = (cloud.clone(), stop.clone());
        std::thread::spawn(move || quickstart::ensure(&cloud, &cache, &only, &stop))
    });

    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}: is another kiln running? try --listen 127.0.0.1:PORT"))?;
        let addr = listener.local_addr()?;
        println!("Kiln is serving the EC2 API on http://{addr} (data in {})", dir.display());
        println!("Use it with:");
        println!(
            "  export AWS_SHARED_CREDENTIALS_FILE={creds} AWS_CONFIG_FILE={config}",
            creds = dir.join("credentials").display(),
            config = dir.join("config").display()
        );
        println!("  aws --endpoint-url http://{addr} ec2 describe-regions");
        tracing::info!(%addr, "listening");
        let (imds_stop, imds_rx) = tokio::sync::watch::channel(false);
        let imds = tokio::spawn(kiln_server::guests::run(cloud.clone(), imds_rx));
        let config = kiln_server::ApiConfig { max_body, ..Default::default() };
        kiln_server::serve(listener, cloud, config, shutdown_signal()).await?;
        let _ = imds_stop.send(true);
        let _ = imds.await;
        Ok::<_, anyhow::Error>(())
    })?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = reconciler.join();
    let _ = importer.join();
    if let Some(b) = builder {
        if !b.is_finished() {
            println!("Waiting for the image build in progress to finish...");
        }
        let _ = b.join();
    }
    println!("Kiln stopped (instances keep running and are adopted at the next start).");
    Ok(())
}

/// `kiln image import`: places the file in DATA_DIR/imports (a hard link, else a
/// copy) and runs the same import the API runs, showing its progress.
fn import_file(dir: &std::path::Path, file: &std::path::Path, account: &str, region: &str, arch: &str) -> Result<()> {
    let cloud = open(dir, &default_regions())?;
    let owner = cloud
        .account_by_name(account)?
        .with_context(|| format!("no account named '{account}' (see `kiln account list`)"))?;
    let architecture =
        arch.parse().map_err(|_| anyhow::anyhow!("unknown architecture '{arch}' (x86_64, i386, arm64)"))?;
    let imports = dir.join("imports");
    std::fs::create_dir_all(&imports)?;
    let name = file.file_name().context("the file has no name")?;
    let placed = imports.join(format!("{}-{}", std::process::id(), name.to_string_lossy()));
    if std::fs::hard_link(file, &placed).is_err() {
        eprintln!("copying {} into {}...", file.display(), imports.display());
        std::fs::copy(file, &placed).with_context(|| format!("copying {}", file.display()))?;
    }
    let scope = kiln_control::Scope { account: owner.id, region: region.to_owned() };
    let request = kiln_control::imports::ImportRequest {
        image: true,
        url: format!("file://{}", placed.display()),
        format: None,
        description: format!("Imported from {}", file.display()),
        architecture: Some(architecture),
    };
    let task = cloud.start_import(&scope, request);
    let result = task.and_then(|t| {
        eprintln!("import task {}: converting...", t.id);
        cloud.process_imports()?;
        cloud.import_tasks(&scope, true, std::slice::from_ref(&t.id))
    });
    let _ = std::fs::remove_file(&placed);
    let task = result?.pop().context("the import task vanished")?;
    match task.image_id {
        Some(image) if task.status == "completed" => {
            println!("{region}\t{image}");
            Ok(())
        }
        _ => bail!("import failed: {}", task.status_message),
    }
}

/// Copies stdin to the socket and the socket to stdout. The write side is not
/// half-closed when stdin ends (the HTTP server would drop its answer); instead the
/// pipe ends when the server closes, or two seconds after stdin ended with nothing
/// more coming back (a kept-alive connection the guest has left).
fn pipe(socket: &std::path::Path) -> Result<()> {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, Ordering};
    let stream = std::os::unix::net::UnixStream::connect(socket)
        .with_context(|| format!("connecting to {}", socket.display()))?;
    stream.set_read_timeout(Some(std::time::Duration::from_millis(500)))?;
    let mut to_socket = stream.try_clone()?;
    let mut from_socket = stream;
    let input_done = Arc::new(AtomicBool::new(false));
    let done = input_done.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        let mut stdin = std::io::stdin();
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 || to_socket.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        done.store(true, Ordering::SeqCst);
    });
    let mut stdout = std::io::stdout();
    let mut buf = [0u8; 16 * 1024];
    let mut idle_since: Option<std::time::Instant> = None;
    loop {
        match from_socket.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if stdout.write_all(&buf[..n]).is_err() {
                    break;
                }
                let _ = stdout.flush();
                idle_since = None;
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                if input_done.load(Ordering::SeqCst) {
                    let since = *idle_since.get_or_insert_with(std::time::Instant::now);
                    if since.elapsed() > std::time::Duration::from_secs(2) {
                        break;
                    }
                }
            }
            Err(_) => break,
        }
    }
    Ok(())
}

fn host_info(dir: &std::path::Path, host: &HostArgs) -> Result<()> {
    use kiln_agent_api::HostAgent;
    let agent = host.agent(dir);
    // Probe with a built x86 kernel when there is one.
    let kernel = std::fs::read_dir(dir.join("kernels")).ok().and_then(|d| {
        d.filter_map(std::result::Result::ok).map(|e| e.path()).find(|p| p.to_string_lossy().ends_with("vmlinuz"))
    });
    let accel = match (host.accel.as_str(), kernel) {
        ("kvm", _) => kiln_agent_api::Accel::Kvm,
        ("tcg", _) => kiln_agent_api::Accel::Tcg,
        (_, Some(k)) => kiln_agent::probe_kvm(&k, &dir.join("instances")),
        (_, None) => kiln_agent_api::Accel::Tcg,
    };
    let info = agent.info();
    let cloud = open(dir, &default_regions())?;
    let (mut vcpus, mut mem, mut n) = (0i64, 0i64, 0);
    for i in cloud.store.read(kiln_store::instances::all)? {
        if i.state.holds_capacity() {
            vcpus += i.vcpus;
            mem += i.memory_mib;
            n += 1;
        }
    }
    let offered_cpu = info.cpus as f64 * host.cpu_overcommit;
    let offered_mem = info.memory_mib as f64 * host.memory_overcommit;
    println!("accelerator   {}", accel.as_str());
    println!("qemu          {}", info.qemu_version);
    println!("cpus          {} (offering {offered_cpu:.0} vCPUs at {}x)", info.cpus, host.cpu_overcommit);
    println!("memory        {} MiB (offering {offered_mem:.0} MiB at {}x)", info.memory_mib, host.memory_overcommit);
    println!("in use        {n} instances, {vcpus} vCPUs, {mem} MiB");
    for (kind, status, count) in cloud.workflow_counts()? {
        println!("workflows     {kind} {status}: {count}");
    }
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutting down");
}
